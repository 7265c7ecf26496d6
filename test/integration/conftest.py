"""Fixtures that run the real nodes, as separate processes over the real middleware, with a
client in the test process. Camera input is real: folders of real photos and a real video
from ../shared/data, replayed by the camera node through the same FrameSource interface a
V4L2 device uses."""
from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from gesture_classifier.tools.bringup import NODES, NodeGroup, default_params_file
from gesture_classifier.tools.cli import stamp_seconds
from gesture_classifier.ros.client import GestureClient, TrainOutcome, TrainStatus

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


def graph_overrides(data_dir, **per_node) -> dict:
    """Parameter overrides of every node for a test graph: ``data_dir``, the thumbs task,
    CPU, the pytorch backend, random initial weights (ImageNet weights cannot be had on CI),
    small batches; then ``per_node`` updates, e.g. ``camera={'source': ...}``."""
    common = {'data_dir': str(data_dir), 'task': 'thumbs', 'classes': list(CLASSES)}
    overrides = {name: dict(common) for name in NODES}
    overrides['trainer'].update(initial_weights='none', batch_size=4, device='cpu')
    overrides['classifier'].update(device='cpu')
    for name in ('trainer', 'classifier'):  # the tests compare with PyTorch in-process; the
        overrides[name]['backend'] = 'pytorch'  # default 'auto' is tested on its own
    for name, params in per_node.items():
        overrides[name].update(params)
    return overrides


def seed_dataset(data_dir: Path, per_class: int) -> Path:
    """Copy the first ``per_class`` real thumbs photos of each class into the thumbs task's
    dataset under ``data_dir`` (so a model can be trained without collecting); returns the
    dataset folder."""
    dataset = Path(data_dir) / 'thumbs' / 'dataset'
    for label in CLASSES:
        (dataset / label).mkdir(parents=True)
        for src in sorted((THUMBS / label).glob('*.jpg'))[:per_class]:
            shutil.copyfile(src, dataset / label / src.name)
    return dataset


def start_nodes(names, overrides, out) -> NodeGroup:
    """Start ``names`` with the project's parameter file plus ``overrides``, logging to
    ``out``."""
    return NodeGroup(names, default_params_file(), overrides=overrides, stdout=out, stderr=out)


def connect(groups, log: Path, timeout: float = 120.0) -> GestureClient:
    """A client, once the collect service, train action and camera parameters answer; fails
    with the node log as soon as a node process of ``groups`` exits."""
    client = GestureClient()
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.wait_for_system(timeout=1.0)
            return client
        except Exception:
            exited = {n: c for g in groups for n, c in g.poll().items()}
            if exited or time.monotonic() > deadline:
                client.close()
                raise RuntimeError(f'nodes did not come up: exited {exited}\n'
                                   f'{log.read_text()[-4000:]}') from None


def graph_root(tmp_path_factory, name: str) -> Path:
    """A fresh temporary folder for a module's graph; skips the module when the shared test
    data (real photos) is missing."""
    if not THUMBS.is_dir():
        pytest.skip(f'shared test data not found: {THUMBS}')
    return tmp_path_factory.mktemp(name)


def wait_until(predicate, timeout: float, what: str):
    """The first truthy value of ``predicate()``, polled every 50 ms; fails (naming ``what``)
    after ``timeout`` s. How a graph test waits for a condition, never with a bare sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout} s waiting for {what}')
        time.sleep(0.05)


def no_more_predictions(client: GestureClient, quiet: float = 0.5,
                        timeout: float = 15.0) -> None:
    """Until no prediction has come for ``quiet`` s (those of frames already in flight)."""
    from gesture_classifier.ros.client import ClientError
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.wait_for_prediction(timeout=quiet)
        except ClientError:
            return
        assert time.monotonic() < deadline, 'the classifier goes on predicting'


def wait_for_subscribers(pub, count: int, timeout: float = 20.0) -> None:
    """Until ``count`` subscriptions have matched ``pub`` (a message published before
    discovery is lost on a best-effort topic); the test then fails on its own if not."""
    deadline = time.monotonic() + timeout
    while pub.get_subscription_count() < count and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture(scope='module')
def system(tmp_path_factory):
    """camera, collector, trainer and classifier with the project's parameter file plus
    test overrides (a temporary data_dir, the camera on real thumbs-up photos)."""
    tmp = graph_root(tmp_path_factory, 'system')
    data_dir = tmp / 'data'
    overrides = graph_overrides(
        data_dir, camera=dict(source=str(THUMBS / 'thumbs_up'), width=0, height=0, rate=10.0,
                              loop=True, reopen_delay=0.2),
        trainer=dict(val_fraction=0.25))
    with running_graph(overrides, data_dir, tmp / 'nodes.log') as system:
        system.client.wait_for_image(timeout=20)
        yield system


@contextlib.contextmanager
def running_graph(overrides: dict, data_dir: Path, log: Path, names=tuple(NODES),
                  watch_images: bool = True):
    """The nodes ``names`` (default: the four of the system) with ``overrides``, logging to
    ``log``, and a connected client (that keeps camera images unless ``watch_images`` is
    false); everything is stopped afterwards and the log tail printed. Up to 300 s to connect:
    four node processes importing torch at once took over 120 s on the loaded 2-core machine;
    a node that exits fails at once."""
    with open(log, 'w') as out:
        nodes = start_nodes(names, overrides, out)
        try:
            client = connect([nodes], log, timeout=300)
            try:
                if watch_images:
                    client.watch_images()
                yield System(client, nodes, data_dir, log)
            finally:
                client.close()
        finally:
            nodes.stop()
    print(f'\n--- node log ({log}) ---\n{log.read_text()[-3000:]}')


def use_source(system: System, source, **more) -> float:
    """Point the camera at ``source`` and return the time after which frames are from it."""
    return system.client.set_camera_source(str(source), **more)


def collect_n(client: GestureClient, label: str, n: int) -> list:
    """Point the camera at the real photos of ``label`` and collect ``n`` of its frames
    through the service, one per new frame."""
    after = client.set_camera_source(str(THUMBS / label), loop=True)
    responses = []
    for _ in range(n):
        image = client.wait_for_image(newer_than=after, timeout=10)
        after = stamp(image)
        time.sleep(0.06)  # the collector gets the same frame; stays under max_collect_rate
        responses.append(client.collect(label, wait_for_frame=10.0))
    return responses


@pytest.fixture(scope='module')
def dataset(system):
    """6 collected frames per class."""
    return {label: collect_n(system.client, label, 6) for label in CLASSES}


@pytest.fixture(scope='module')
def trained(system, dataset) -> tuple[TrainOutcome, list]:
    """A model trained through the action (2 epochs), with the feedback received."""
    feedback = []
    outcome = system.client.train(epochs=2, on_feedback=feedback.append, timeout=300)
    assert outcome.status is TrainStatus.SUCCEEDED, outcome.result.message
    return outcome, feedback


def probe_photos():
    """The two real photos :func:`probe_model` is fitted to: the first thumbs-up and the first
    thumbs-down photo, as uint8 BGR frames."""
    import cv2
    return tuple(cv2.imread(str(sorted((THUMBS / label).glob('*.jpg'))[0]))
                 for label in CLASSES)


def probe_model(path: Path, confidence: float = 0.9, model_id: str = 'probe-1') -> Path:
    """Save a thumbs model whose predictions are known in advance: a seeded, randomly
    initialised ResNet-18 backbone with its class layer fitted exactly to the two real
    :func:`probe_photos`, so that the classifier gives the thumbs-up photo thumbs_up and the
    thumbs-down photo thumbs_down, each with probability ``confidence``. (Training a model
    that reliable takes minutes here; the tests of gesture events, compressed input and the
    overlay need known outputs, not a good model.)"""
    import math

    import torch

    from gesture_classifier.core.model import ModelFile, create_model, save_model
    from gesture_classifier.core.preprocess import PreprocessSpec, preprocess_frame

    up_image, down_image = probe_photos()
    torch.manual_seed(0)
    net = create_model(len(CLASSES)).eval()
    fc, net.fc = net.fc, torch.nn.Identity()
    spec = PreprocessSpec()
    with torch.inference_mode():
        f_up, f_down = (net(preprocess_frame(img, 'bgr', spec))[0].double()
                        for img in (up_image, down_image))
    mid, d = (f_up + f_down) / 2, f_up - f_down
    scale = (f_up - mid) @ d  # projection of f on d, normalised to +1 at up and -1 at down
    half = 0.5 * math.log(confidence / (1 - confidence))  # logit difference 2*half at anchors
    with torch.no_grad():
        w = (half * d / scale).float()
        b = float(-half * (mid @ d) / scale)
        fc.weight.copy_(torch.stack([w, -w]))
        fc.bias.copy_(torch.tensor([b, -b]))
    net.fc = fc
    return save_model(ModelFile(net, CLASSES, spec, task='thumbs', model_id=model_id), path)


def _policy(node: str, enclave: str):
    import xml.etree.ElementTree as ET
    root = ET.parse(POLICY).getroot()
    assert root.tag == 'policy' and root.get('version') == '0.2.0'
    enclaves = {e.get('path'): e for e in root.iter('enclave')}
    profiles = {p.get('node'): p for p in
                enclaves[f'/gesture_classifier/{enclave}'].findall('profiles/profile')}
    profile = profiles[node]
    assert profile.get('ns') == '/'

    def names(tag, attr, value, child):
        out = set()
        for group in profile.findall(tag):
            if group.get(attr) == value:
                for item in group.findall(child):
                    text = item.text.strip()
                    out.add(f'/{node}/{text[2:]}' if text.startswith('~/') else '/' + text)
        return out

    return (names('topics', 'publish', 'ALLOW', 'topic'),
            names('topics', 'subscribe', 'ALLOW', 'topic'),
            names('services', 'reply', 'ALLOW', 'service'),
            names('actions', 'execute', 'ALLOW', 'action'),
            names('services', 'request', 'ALLOW', 'service'),
            names('actions', 'call', 'ALLOW', 'action'))


def assert_policy_matches_graph(graph, node: str, enclave: str | None = None) -> None:
    """The SROS2 policy's profile of ``node`` in ``enclave`` (default: the node's own)
    allows exactly the topics, services and actions the running node has on the graph (seen
    by the rclpy node ``graph``)."""
    pub = {t for t, _ in graph.get_publisher_names_and_types_by_node(node, '/')}
    sub = {t for t, _ in graph.get_subscriber_names_and_types_by_node(node, '/')}
    srv = {t for t, _ in graph.get_service_names_and_types_by_node(node, '/')}
    cli = {t for t, _ in graph.get_client_names_and_types_by_node(node, '/')}
    p_pub, p_sub, p_srv, p_actions, p_cli, p_calls = _policy(node, enclave or node)
    action_services = ('send_goal', 'cancel_goal', 'get_result')
    for action in p_actions:  # an action server is 3 services and 2 topics on the graph
        p_srv |= {f'{action}/_action/{s}' for s in action_services}
        p_pub |= {f'{action}/_action/{t}' for t in ('feedback', 'status')}
    for action in p_calls:  # ... and an action client 3 clients and 2 subscriptions
        p_cli |= {f'{action}/_action/{s}' for s in action_services}
        p_sub |= {f'{action}/_action/{t}' for t in ('feedback', 'status')}
    assert pub == p_pub
    # image_transport: a node subscribes image_raw or image_raw/compressed (its parameter
    # image_transport, raw here); the policy allows both.
    assert sub <= p_sub and p_sub - sub <= {'/image_raw/compressed'}
    assert cli == p_cli
    # get_type_description exists from Jazzy on; the policy may allow it on Humble too.
    assert srv <= p_srv and p_srv - srv <= {f'/{node}/get_type_description'}
