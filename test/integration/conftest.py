"""Fixtures that run the real nodes, as separate processes over the real middleware, with a
client in the test process. Camera input is real: folders of real photos and a real video
from ../shared/data, replayed by the camera node through the same FrameSource interface a
V4L2 device uses."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gesture_classifier.bringup import NODES, NodeGroup, default_params_file
from gesture_classifier.cli import stamp_seconds
from gesture_classifier.client import GestureClient, TrainOutcome, TrainStatus

SHARED_DATA = Path(__file__).resolve().parents[2].parent / 'shared' / 'data'
THUMBS = SHARED_DATA / 'thumbs_wincle626'
VIDEO = SHARED_DATA / 'videos' / 'upgrad_gesture_clips' / 'thumbs_up.mp4'
CLASSES = ('thumbs_up', 'thumbs_down')
POLICY = Path(__file__).resolve().parents[2] / 'config' / 'sros2' / 'policy.xml'


#: What the hostile-input suite tried, printed at the end of the run.
COUNTS: dict[str, int] = {}


def pytest_terminal_summary(terminalreporter):
    if COUNTS:
        terminalreporter.write_sep('-', 'hostile input tried')
        terminalreporter.write_line(', '.join(f'{k}: {v}' for k, v in COUNTS.items()))


def stamp(msg) -> float:
    """header.stamp of a message in seconds."""
    return stamp_seconds(msg.header.stamp)


@dataclass
class System:
    client: GestureClient
    nodes: NodeGroup
    data_dir: Path
    log: Path
    sources: dict = field(default_factory=dict)

    @property
    def dataset(self) -> Path:
        return self.data_dir / 'thumbs' / 'dataset'

    @property
    def model_path(self) -> Path:
        return self.data_dir / 'thumbs' / 'models' / 'resnet18.pt'

    def alive(self) -> None:
        """Fail (with the node log) if a node process has exited."""
        exited = self.nodes.poll()
        assert not exited, f'node(s) exited: {exited}\n{self.log.read_text()[-4000:]}'


@pytest.fixture(scope='module')
def system(tmp_path_factory):
    """camera, collector, trainer and classifier with the project's parameter file plus
    test overrides (a temporary data_dir, the camera on real thumbs-up photos, random initial
    weights: ImageNet weights cannot be had on CI)."""
    if not THUMBS.is_dir():
        pytest.skip(f'shared test data not found: {THUMBS}')
    tmp = tmp_path_factory.mktemp('system')
    data_dir = tmp / 'data'
    common = {'data_dir': str(data_dir), 'task': 'thumbs', 'classes': list(CLASSES)}
    overrides = {name: dict(common) for name in NODES}
    overrides['camera'].update(source=str(THUMBS / 'thumbs_up'), width=0, height=0,
                               rate=10.0, loop=True, reopen_delay=0.2)
    overrides['trainer'].update(initial_weights='none', val_fraction=0.25, batch_size=4,
                                device='cpu')
    overrides['classifier'].update(device='cpu')
    log = tmp / 'nodes.log'
    with open(log, 'w') as out:
        nodes = NodeGroup(NODES, default_params_file(), overrides=overrides, stdout=out,
                          stderr=out)
        client = GestureClient()
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    client.wait_for_system(timeout=1.0)
                    break
                except Exception:
                    if nodes.poll() or time.monotonic() > deadline:
                        raise RuntimeError(f'nodes did not come up: {nodes.poll()}\n'
                                           f'{log.read_text()[-4000:]}') from None
            client.watch_images()
            client.wait_for_image(timeout=20)
            yield System(client, nodes, data_dir, log,
                         sources={c: THUMBS / c for c in CLASSES})
        finally:
            client.close()
            nodes.stop()
    print(f'\n--- node log ({log}) ---\n{log.read_text()[-3000:]}')


def use_source(system: System, source, **more) -> float:
    """Point the camera at ``source`` and return the time after which frames are from it."""
    return system.client.set_camera_source(str(source), **more)


def collect_n(system: System, label: str, n: int) -> list:
    """Collect ``n`` frames of the real photos of ``label`` through the service."""
    after = use_source(system, system.sources[label], loop=True)
    responses = []
    for _ in range(n):
        image = system.client.wait_for_image(newer_than=after, timeout=10)
        after = stamp(image)
        time.sleep(0.06)  # the collector gets the same frame; stays under max_collect_rate
        responses.append(system.client.collect(label, wait_for_frame=10.0))
    return responses


@pytest.fixture(scope='module')
def dataset(system):
    """6 collected frames per class."""
    return {label: collect_n(system, label, 6) for label in CLASSES}


@pytest.fixture(scope='module')
def trained(system, dataset) -> tuple[TrainOutcome, list]:
    """A model trained through the action (2 epochs), with the feedback received."""
    feedback = []
    outcome = system.client.train(epochs=2, on_feedback=feedback.append, timeout=300)
    assert outcome.status is TrainStatus.SUCCEEDED, outcome.result.message
    return outcome, feedback
