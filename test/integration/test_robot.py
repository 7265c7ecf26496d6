"""What a robot's other software sees of the running system, over the real middleware:
``/diagnostics`` from every node, and what ``backend: auto`` chose and why."""
from __future__ import annotations

import threading
import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

from gesture_classifier.backends import available_backends

from .conftest import THUMBS, graph_overrides, graph_root, running_graph

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope='module')
def robot(tmp_path_factory):
    """All four nodes, the camera replaying real thumbs-up photos at 10 Hz."""
    tmp = graph_root(tmp_path_factory, 'robot')
    overrides = graph_overrides(
        tmp / 'data', camera=dict(source=str(THUMBS / 'thumbs_up'), width=0, height=0,
                                  rate=10.0, loop=True),
        classifier=dict(backend='auto'))  # the default, which the other graphs pin
    with running_graph(overrides, tmp / 'data', tmp / 'nodes.log') as system:
        system.client.wait_for_image(timeout=30)
        yield system


NAMES = {'camera: source', 'collector: dataset', 'trainer: training', 'classifier: inference'}


def _diagnostics(client, seconds: float, timeout: float = 15.0) -> dict[str, DiagnosticStatus]:
    """The newest status of each name received on /diagnostics, listening for ``seconds`` and
    on until every node's status has arrived (at most ``timeout`` s: discovery of a new
    subscription can take a few seconds on the loaded 2-core machine)."""
    latest, lock = {}, threading.Lock()
    start = time.monotonic()

    def on_array(msg: DiagnosticArray):
        with lock:
            for s in msg.status:
                if s.name not in latest:
                    print(f'{time.monotonic() - start:5.2f} s: first status of {s.name}')
                latest[s.name] = s

    sub = client.node.create_subscription(DiagnosticArray, '/diagnostics', on_array, 10)
    try:
        time.sleep(seconds)
        while time.monotonic() - start < timeout:
            with lock:
                if NAMES <= set(latest):
                    break
            time.sleep(0.1)
    finally:
        client.node.destroy_subscription(sub)
    with lock:
        return dict(latest)


def test_every_node_reports_on_diagnostics(robot):
    statuses = _diagnostics(robot.client, 3.5)
    assert NAMES <= set(statuses)
    values = {name: {kv.key: kv.value for kv in s.values} for name, s in statuses.items()}
    cam = values['camera: source']
    assert statuses['camera: source'].level == DiagnosticStatus.OK, statuses['camera: source']
    assert cam['source'] == str(THUMBS / 'thumbs_up') and cam['configured rate (Hz)'] == '10'
    assert 5.0 <= float(cam['measured rate (Hz)']) <= 11.0, cam
    assert int(cam['reopen count']) == 0 and cam['last error'] == ''
    # No model yet: the classifier says so (WARN) and what it would run.
    cls = statuses['classifier: inference']
    assert cls.level == DiagnosticStatus.WARN and 'no model' in cls.message
    assert {'model id', 'backend', 'device', 'rate (Hz)', 'latency p50 (ms)', 'input stale',
            'rejected frames'} <= set(values['classifier: inference'])
    col = values['collector: dataset']
    assert col['samples thumbs_up'] == '0' and float(col['free disk (MB)']) > 0
    assert 'refused: label' in col
    trainer = statuses['trainer: training']
    assert trainer.level == DiagnosticStatus.OK and values['trainer: training']['state'] == \
        'idle'
    assert all(s.hardware_id for s in statuses.values())


def test_diagnostics_follow_what_happens(robot):
    gc = robot.client
    assert not gc.collect('../../etc').success
    assert gc.collect('thumbs_up', wait_for_frame=10).success
    robot.client.set_camera_source(str(robot.data_dir / 'no_such_camera'))
    try:
        time.sleep(1.5)
        statuses = _diagnostics(gc, 2.5)
    finally:
        robot.client.set_camera_source(str(THUMBS / 'thumbs_up'))
    col = {kv.key: kv.value for kv in statuses['collector: dataset'].values}
    assert col['samples thumbs_up'] == '1' and col['collected'] == '1'
    assert int(col['refused: label']) >= 1
    cam = statuses['camera: source']
    assert cam.level == DiagnosticStatus.ERROR and 'no_such_camera' in cam.message
    cam_values = {kv.key: kv.value for kv in cam.values}
    assert int(cam_values['reopen count']) >= 1 and 'no_such_camera' in cam_values['last error']
    robot.alive()


def test_auto_backend_says_what_it_chose_and_why(robot):
    statuses = _diagnostics(robot.client, 1.5)
    values = {kv.key: kv.value for kv in statuses['classifier: inference'].values}
    expected = 'onnxruntime' if 'onnxruntime' in available_backends() else 'pytorch'
    assert values['backend'] == expected
    assert values['backend chosen because'].startswith('auto: no TensorRT on cpu')
    assert values['precision'] == 'fp32'
    assert f"backend {expected} (auto: no TensorRT on cpu" in robot.log.read_text()
