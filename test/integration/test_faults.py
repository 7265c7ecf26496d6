"""Faults at the node level: the data folder on a small file system (tmpfs) that fills up
during collect and during a model save, and a classifier restarted after a failed save."""
from __future__ import annotations

import shutil

import pytest
from gesture_interfaces.action import Train

from gesture_classifier.ros.client import TrainStatus
from gesture_classifier.core.dataset import list_images

from .conftest import (CLASSES, THUMBS, collect_n, connect, graph_overrides,
                       no_more_predictions, start_nodes)

pytestmark = [pytest.mark.graph, pytest.mark.timeout(600)]


@pytest.fixture(scope='module')
def small_system(tmp_path_factory, mounted_tmpfs):
    if not THUMBS.is_dir():
        pytest.skip(f'shared test data not found: {THUMBS}')
    tmp = tmp_path_factory.mktemp('faults')
    mnt = tmp / 'fs'
    mnt.mkdir()
    overrides = graph_overrides(mnt, camera=dict(source=str(THUMBS / 'thumbs_up'), width=0,
                                                height=0, rate=10.0),
                               trainer=dict(val_fraction=0.0))
    log = tmp / 'nodes.log'
    with mounted_tmpfs(mnt), open(log, 'w') as out:
        nodes = start_nodes(['camera', 'collector', 'trainer'], overrides, out)
        # The classifier runs apart so that the test can restart it.
        classifier = [start_nodes(['classifier'], overrides, out)]
        gc = None
        try:
            gc = connect([nodes, classifier[0]], log)
            gc.watch_images()
            yield dict(client=gc, fs=mnt, log=log, classifier=classifier,
                       start_classifier=lambda: start_nodes(['classifier'], overrides, out),
                       model=mnt / 'thumbs' / 'models' / 'resnet18.pt',
                       dataset=mnt / 'thumbs' / 'dataset')
        finally:
            if gc is not None:
                gc.close()
            classifier[0].stop()
            nodes.stop()
    print(f'\n--- node log ---\n{log.read_text()[-3000:]}')


def test_full_disk_during_collect_and_model_save(small_system):
    s = small_system
    gc = s['client']
    for label in CLASSES:
        assert all(r.success for r in collect_n(gc, label, 4))
    first = gc.train(epochs=1, timeout=300)
    assert first.status is TrainStatus.SUCCEEDED, first.result.message
    model_bytes = s['model'].read_bytes()
    gc.wait_for_prediction(lambda p: p.model_id == first.result.model_id, 60)

    free = shutil.disk_usage(s['fs']).free
    with open(s['fs'] / 'filler', 'wb') as f:  # leave less than a model and the 1 MiB margin
        f.write(b'\0' * max(0, free - 512 * 1024))
    before = sorted(list_images(s['dataset'] / 'thumbs_up'))
    r = collect_n(gc, 'thumbs_up', 1)[0]
    assert not r.success and 'space' in r.message, r.message
    assert r.count == len(before)
    assert sorted(list_images(s['dataset'] / 'thumbs_up')) == before

    second = gc.train(epochs=1, timeout=300)
    assert second.status is TrainStatus.ABORTED
    assert second.result.error_code == Train.Result.SAVE_ERROR
    assert 'previous model kept' in second.result.message
    assert second.result.model_path == str(s['model'])
    assert s['model'].read_bytes() == model_bytes
    p = gc.wait_for_prediction(timeout=30)
    assert p.model_id == first.result.model_id

    # A classifier started now (e.g. after a reboot) loads the last good model by itself.
    s['classifier'][0].stop()
    no_more_predictions(gc)
    s['classifier'][0] = s['start_classifier']()
    p = gc.wait_for_prediction(timeout=90)
    assert p.model_id == first.result.model_id
