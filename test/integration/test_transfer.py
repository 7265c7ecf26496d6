"""Nothing shared but the ROS graph (the model half): a trainer with its own data folder (the
"workstation") and camera, collector and classifier with another (the "robot"); the trained
model reaches the classifier over ROS (``get_model``), checked by size and SHA-256."""
from __future__ import annotations

import time

import pytest
from gesture_interfaces.msg import ModelInfo

from gesture_classifier.bringup import NODES
from gesture_classifier.client import TrainStatus
from gesture_classifier.nodes.common import MODEL_QOS

from .conftest import THUMBS, connect, graph_overrides, seed_dataset, start_nodes

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope='module')
def two_sides(tmp_path_factory):
    if not THUMBS.is_dir():
        pytest.skip(f'shared test data not found: {THUMBS}')
    root = tmp_path_factory.mktemp('transfer')
    workstation, robot = root / 'workstation', root / 'robot'
    seed_dataset(workstation, 4)  # the trainer's own copy of the dataset
    overrides = graph_overrides(
        robot, camera=dict(source=str(THUMBS / 'thumbs_up'), rate=10.0, loop=True, width=0,
                           height=0),
        trainer=dict(data_dir=str(workstation), val_fraction=0.0))
    log = root / 'nodes.log'
    with open(log, 'w') as out:
        nodes = start_nodes(NODES, overrides, out)
        gc = None
        try:
            gc = connect([nodes], log, timeout=300)  # four node processes start at once
            yield dict(client=gc, nodes=nodes, log=log, workstation=workstation, robot=robot)
        finally:
            if gc is not None:
                gc.close()
            nodes.stop()
    print(f'\n--- node log ---\n{log.read_text()[-3000:]}')


def test_a_model_trained_on_the_workstation_reaches_the_robots_classifier(two_sides):
    gc = two_sides['client']
    outcome = gc.train(epochs=1, timeout=300)
    assert outcome.status is TrainStatus.SUCCEEDED, outcome.result.message
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
