"""What a robot's other software sees of the running system, over the real middleware:
``/diagnostics`` from every node, and what ``backend: auto`` chose and why."""
from __future__ import annotations

import threading

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus

from gesture_classifier.core.backends import available_backends

from .conftest import THUMBS, graph_overrides, graph_root, running_graph

pytestmark = [pytest.mark.graph, pytest.mark.timeout(300)]


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


class Diagnostics:
    """The newest status of each name on ``/diagnostics``, kept from the start of the module."""

    def __init__(self, node):
        self.latest: dict[str, DiagnosticStatus] = {}
        self._cond = threading.Condition()
        self._sub = node.create_subscription(DiagnosticArray, '/diagnostics', self._on, 10)

    def _on(self, msg: DiagnosticArray) -> None:
        with self._cond:
            for s in msg.status:
                self.latest[s.name] = s
            self._cond.notify_all()

    def wait(self, predicate, what: str, timeout: float = 30.0) -> dict[str, DiagnosticStatus]:
        """The statuses once ``predicate(statuses, values)`` holds (``values``: name -> key ->
        value); fails after ``timeout`` s (discovery of a new subscription can take a few
        seconds on the loaded 2-core machine, then each node reports once a second)."""
        def ok():
            values = {n: {kv.key: kv.value for kv in s.values} for n, s in self.latest.items()}
            return NAMES <= set(self.latest) and predicate(self.latest, values)
        with self._cond:
            assert self._cond.wait_for(ok, timeout), f'no {what} within {timeout} s: ' \
                f'{ {n: s.message for n, s in self.latest.items()} }'
            return dict(self.latest)


@pytest.fixture(scope='module')
def diagnostics(robot):
    d = Diagnostics(robot.client.node)
    yield d
    robot.client.node.destroy_subscription(d._sub)


def test_every_node_reports_on_diagnostics(robot, diagnostics):
    statuses = diagnostics.wait(lambda s, v: v['camera: source']['frames published'] != '0',
                                'status of every node, with frames published')
    values = {name: {kv.key: kv.value for kv in s.values} for name, s in statuses.items()}
    cam = values['camera: source']
    # OK while publishing; WARN only for a measured rate below half the configured 10 Hz,
    # which a loaded 2-core CI machine can cause (the rate itself: bench/camera.py).
    camera = statuses['camera: source']
    if float(cam['measured rate (Hz)']) >= 5.0:
        assert camera.level == DiagnosticStatus.OK, camera
    else:
        assert camera.level == DiagnosticStatus.OK or (
            camera.level == DiagnosticStatus.WARN and 'Hz of 10 Hz' in camera.message), camera
    assert cam['source'] == str(THUMBS / 'thumbs_up') and cam['configured rate (Hz)'] == '10'
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


def test_diagnostics_follow_what_happens(robot, diagnostics):
    gc = robot.client
    assert not gc.collect('../../etc').success
    assert gc.collect('thumbs_up', wait_for_frame=10).success
    robot.client.set_camera_source(str(robot.data_dir / 'no_such_camera'))
    try:
        statuses = diagnostics.wait(
            lambda s, v: v['collector: dataset']['collected'] == '1' and
            s['camera: source'].level == DiagnosticStatus.ERROR and
            int(v['camera: source']['reopen count']) >= 1,
            'the collect and the camera error on /diagnostics')
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


def test_auto_backend_says_what_it_chose_and_why(robot, diagnostics):
    statuses = diagnostics.wait(lambda s, v: True, 'the classifier\'s status')
    values = {kv.key: kv.value for kv in statuses['classifier: inference'].values}
    expected = 'onnxruntime' if 'onnxruntime' in available_backends() else 'pytorch'
    assert values['backend'] == expected
    assert values['backend chosen because'].startswith('auto: no TensorRT on cpu')
    assert values['precision'] == 'fp32'
    assert f"backend {expected} (auto: no TensorRT on cpu" in robot.log.read_text()
