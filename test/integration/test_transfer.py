"""Nothing shared but the ROS graph: a trainer with its own data folder (the "workstation",
``dataset_source: collector``) and camera, collector and classifier with another (the
"robot"). The trainer copies the robot's dataset over ROS (``list_samples`` / ``get_samples``,
only what it lacks, checked by SHA-256), and the trained model reaches the classifier over ROS
(``get_model``), checked by size and SHA-256."""
from __future__ import annotations

import time

import pytest
from gesture_interfaces.msg import ModelInfo
from gesture_interfaces.srv import GetSamples, ListSamples

from gesture_classifier.ros.client import TrainStatus, wait_future
from gesture_classifier.ros.topics import MODEL_QOS

from .conftest import (CLASSES, THUMBS, collect_n, graph_overrides, graph_root, running_graph,
                       seed_dataset)

pytestmark = [pytest.mark.graph, pytest.mark.timeout(600)]


@pytest.fixture(scope='module')
def two_sides(tmp_path_factory):
    root = graph_root(tmp_path_factory, 'transfer')
    workstation, robot = root / 'workstation', root / 'robot'
    seed_dataset(robot, 4)  # collected on the robot; the workstation starts with nothing
    overrides = graph_overrides(
        robot, camera=dict(source=str(THUMBS / 'thumbs_up'), rate=10.0, loop=True, width=0,
                           height=0),
        trainer=dict(data_dir=str(workstation), val_fraction=0.0, dataset_source='collector'))
    with running_graph(overrides, robot, root / 'nodes.log') as system:
        yield dict(client=system.client, nodes=system.nodes, log=system.log,
                   workstation=workstation, robot=robot)


def _samples(data_dir) -> dict[str, bytes]:
    dataset = data_dir / 'thumbs' / 'dataset'
    return {f'{p.parent.name}/{p.name}': p.read_bytes() for p in dataset.glob('*/*')}


def test_a_model_trained_on_the_workstation_reaches_the_robots_classifier(two_sides):
    gc = two_sides['client']
    assert not (two_sides['workstation'] / 'thumbs' / 'dataset').exists()
    outcome = gc.train(epochs=1, timeout=300)
    assert outcome.status is TrainStatus.SUCCEEDED, outcome.result.message
    assert (outcome.result.samples_fetched, outcome.result.samples_removed) == (8, 0)
    assert outcome.result.train_images == 8
    assert _samples(two_sides['workstation']) == _samples(two_sides['robot'])
    assert 'dataset from the collector: 8 sample(s) fetched' in outcome.result.message
    model_id = outcome.result.model_id
    trained = two_sides['workstation'] / 'thumbs' / 'models' / 'resnet18.pt'
    assert outcome.result.model_path == str(trained)
    p = gc.wait_for_prediction(lambda p: p.model_id == model_id, 120)
    received = list((two_sides['robot'] / 'thumbs' / 'models').glob('received-*.pt'))
    assert len(received) == 1 and received[0].read_bytes() == trained.read_bytes()
    assert 'fetched model' in two_sides['log'].read_text()
    assert p.label in ('thumbs_up', 'thumbs_down')


def test_a_forged_announcement_is_refused_and_nothing_partial_is_kept(two_sides):
    """A ModelInfo naming the workstation's file with a made-up model_id and hash: the trainer
    serves only its current model, so the fetch fails; the classifier keeps its model and no
    file. (A hash that does not match the bytes is refused by transfer.fetch_file, see
    test/unit/test_transfer.py: through the nodes it would need the trainer's current model_id,
    which the classifier already uses and therefore ignores.)"""
    gc = two_sides['client']
    current = gc.wait_for_prediction(timeout=30).model_id
    models = two_sides['robot'] / 'thumbs' / 'models'
    before = sorted(p.name for p in models.iterdir())
    trained = two_sides['workstation'] / 'thumbs' / 'models' / 'resnet18.pt'
    pub = gc.node.create_publisher(ModelInfo, 'model', MODEL_QOS)
    try:
        info = ModelInfo(task='thumbs', model_id=current, path=str(trained),
                         class_names=['thumbs_up', 'thumbs_down'], architecture='resnet18',
                         input_size=224, size=trained.stat().st_size, sha256='ab' * 32)
        info.model_id = current + '-forged'
        pub.publish(info)
        deadline = time.monotonic() + 60
        while 'forged' not in two_sides['log'].read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        gc.node.destroy_publisher(pub)
    log = two_sides['log'].read_text()
    assert f"refused model '{current}-forged': fetching it over ROS failed" in log
    assert sorted(p.name for p in models.iterdir()) == before, 'nothing partial kept'
    assert gc.wait_for_prediction(timeout=10).model_id == current
    assert not two_sides['nodes'].poll()


def test_the_next_training_fetches_only_what_changed_on_the_robot(two_sides):
    """Two samples collected and one deleted on the robot: the next goal fetches the two and
    moves the deleted one to the workstation's trash; the copies are equal again."""
    gc = two_sides['client']
    responses = collect_n(gc, 'thumbs_down', 2)
    assert all(r.success for r in responses), [r.message for r in responses]
    victim = sorted((two_sides['robot'] / 'thumbs' / 'dataset' / 'thumbs_up').iterdir())[0]
    deleted = gc.delete_samples([str(victim)])
    assert deleted.success, deleted.message
    outcome = gc.train(epochs=1, timeout=300)
    assert outcome.status is TrainStatus.SUCCEEDED, outcome.result.message
    assert (outcome.result.samples_fetched, outcome.result.samples_removed) == (2, 1)
    assert outcome.result.train_images == 9
    assert _samples(two_sides['workstation']) == _samples(two_sides['robot'])
    assert list((two_sides['workstation'] / 'thumbs' / 'trash').rglob(f'*{victim.name}'))


def test_hostile_sample_requests_are_refused_and_the_collector_lives(two_sides):
    gc = two_sides['client']
    get = gc.node.create_client(GetSamples, 'get_samples')
    listing = gc.node.create_client(ListSamples, 'list_samples')
    try:
        assert get.wait_for_service(timeout_sec=30)
        bad = GetSamples.Request(labels=['thumbs_up', '../..', 'thumbs_up', 'thumbs_up'],
                                 names=['../../../etc/passwd', 'x.jpg', '.hidden.jpg',
                                        'missing.jpg'])
        res = wait_future(get.call_async(bad), 30, 'get_samples')
        assert res.success and len(res.samples) == 4
        assert all(s.error and not len(s.data) for s in res.samples), res.samples
        uneven = GetSamples.Request(labels=['thumbs_up'], names=[])
        res = wait_future(get.call_async(uneven), 30, 'get_samples')
        assert not res.success and 'same length' in res.message
        too_many = GetSamples.Request(labels=['thumbs_up'] * 65, names=['a.jpg'] * 65)
        res = wait_future(get.call_async(too_many), 30, 'get_samples')
        assert not res.success and '1..64' in res.message
        res = wait_future(listing.call_async(ListSamples.Request(offset=2**32 - 1)), 30,
                          'list_samples')
        assert res.success and res.total > 0 and not res.labels
        assert list(res.class_names) == list(CLASSES)
        res = wait_future(listing.call_async(ListSamples.Request(max_count=10**6)), 30,
                          'list_samples')
        assert not res.success and 'max_count' in res.message
    finally:
        gc.node.destroy_client(get)
        gc.node.destroy_client(listing)
    assert not two_sides['nodes'].poll()
    assert gc.collect('thumbs_up', wait_for_frame=10.0).success
