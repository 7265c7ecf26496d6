"""Gesture events and the overlay over the real middleware: the classifier process debounces
its predictions of real photos into ``gestures``, its thresholds change while it runs, and it
draws ``overlay`` only while someone subscribes."""
from __future__ import annotations

import threading
import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from gesture_interfaces.msg import GestureEvent
from sensor_msgs.msg import Image

from gesture_classifier.ros.client import ClientError, GestureClient
from gesture_classifier.core.imaging import array_to_image_fields
from gesture_classifier.ros.topics import IMAGE_PUB_QOS, IMAGE_SUB_QOS

from .conftest import THUMBS, graph_overrides, probe_model, probe_photos, start_nodes

pytestmark = [pytest.mark.graph, pytest.mark.timeout(300)]


@pytest.fixture(scope='module')
def graph(tmp_path_factory):
    """The classifier alone, on a model that gives the two chosen photos 0.9 each, fed frame
    by frame by the test (each frame is classified before the next is sent)."""
    if not THUMBS.is_dir():
        pytest.skip(f'shared test data not found: {THUMBS}')
    root = tmp_path_factory.mktemp('gestures')
    up, down = probe_photos()
    probe_model(root / 'data' / 'thumbs' / 'models' / 'resnet18.pt', 0.9)
    overrides = graph_overrides(root / 'data', classifier=dict(
        gesture_threshold=0.6, gesture_smoothing=0.0, gesture_min_frames=3))
    log = root / 'nodes.log'
    with open(log, 'w') as out:
        nodes = start_nodes(['classifier'], overrides, out)
        gc = GestureClient()
        try:
            pub = gc.node.create_publisher(Image, 'image_raw', IMAGE_PUB_QOS)
            feeder = Feeder(gc, pub, {'up': up, 'down': down})
            deadline = time.monotonic() + 120
            while True:  # until the classifier is up and has loaded its model
                assert not nodes.poll(), log.read_text()[-3000:]
                try:
                    feeder.send('down', timeout=1.0)
                    break
                except ClientError:
                    assert time.monotonic() < deadline, log.read_text()[-3000:]
            yield feeder
        finally:
            gc.close()
            nodes.stop()
    print(f'\n--- node log ---\n{log.read_text()[-3000:]}')


class Feeder:
    """Sends real photos one at a time and waits for each one's prediction."""

    def __init__(self, client, pub, frames):
        self.client, self.pub, self.n = client, pub, 0
        self.frames = {k: array_to_image_fields(v, 'bgr8') for k, v in frames.items()}

    def send(self, name: str, timeout: float = 10.0, frame_id: str = ''):
        if not frame_id:
            self.n += 1
            frame_id = f'{name}-{self.n}'
        msg = Image(**self.frames[name])
        msg.header.frame_id = frame_id
        msg.header.stamp = self.client.node.get_clock().now().to_msg()
        deadline = time.monotonic() + timeout
        while True:  # best effort: resend until this frame's prediction arrives
            self.pub.publish(msg)
            try:
                return self.client.wait_for_prediction(
                    lambda p: p.header.frame_id == msg.header.frame_id, 0.5)
            except ClientError:
                if time.monotonic() > deadline:
                    raise

    def run(self, names, events: int = 0) -> list[GestureEvent]:
        """Send ``names`` in order; the gesture events they caused, waiting (10 s at most)
        until at least ``events`` of them have arrived. The classifier publishes a frame's
        event right after the frame's prediction: once the prediction of one more frame (a
        repeat of the last, so it changes nothing) has arrived, every event of the frames
        before has been *published*; but events travel on another topic than predictions, so
        the client may receive that prediction before an earlier event (CI saw it)."""
        before = len(self.client.gestures())
        preds = [self.send(n) for n in names]
        self.sentinels = getattr(self, 'sentinels', 0) + 1
        self.send(names[-1], frame_id=f'sentinel-{self.sentinels}')
        self.labels = [p.label for p in preds]
        sent = {p.header.frame_id for p in preds}

        def caused():
            return [e for e in self.client.gestures()[before:] if e.header.frame_id in sent]

        deadline = time.monotonic() + 10.0
        while len(caused()) < events and time.monotonic() < deadline:
            time.sleep(0.02)  # polling a condition with a deadline
        return caused()


def test_a_stable_run_of_one_class_gives_one_event(graph):
    graph.run(['down'] * 4)  # start from a known stable state
    events = graph.run(['up'] * 5, events=1)
    assert graph.labels == ['thumbs_up'] * 5
    assert [(e.kind, e.label, e.previous_label) for e in events] == [
        (GestureEvent.CHANGE, 'thumbs_up', 'thumbs_down')]
    e = events[0]
    assert e.header.frame_id == f'up-{graph.n - 2}', 'decided by the 3rd frame of the run'
    assert e.since.sec * 10**9 + e.since.nanosec < \
        e.header.stamp.sec * 10**9 + e.header.stamp.nanosec, 'since = the run start'
    assert e.confidence == pytest.approx(0.9, abs=0.01) and e.model_id == 'probe-1'


def test_a_single_frame_flicker_gives_no_event(graph):
    graph.run(['up'] * 4)
    events = graph.run(['up', 'up', 'down', 'up', 'up', 'down', 'up'])
    assert graph.labels.count('thumbs_down') == 2, 'the flickers were classified'
    assert events == []


def test_a_threshold_change_at_run_time_takes_effect(graph):
    gc = graph.client
    graph.run(['up'] * 4)
    gc.set_parameters('classifier', gesture_threshold=0.95)  # above the 0.9 of the photos
    events = graph.run(['up'] * 4, events=1)
    assert [(e.label, e.previous_label) for e in events] == [('', 'thumbs_up')], \
        'nothing is shown clearly enough any more: the stable state becomes none'
    gc.set_parameters('classifier', gesture_threshold=0.6, gesture_min_frames=1)
    events = graph.run(['up'], events=1)
    assert [(e.label, e.previous_label) for e in events] == [('thumbs_up', '')]


@pytest.mark.parametrize('values,reason', [
    (dict(gesture_threshold=1.5), 'out of range|range'),
    (dict(gesture_smoothing=-0.1), 'range'),
    (dict(gesture_min_frames=0), 'range'),
    (dict(gesture_min_frames=2.5), 'type'),
    (dict(gesture_threshold='high'), 'type'),
])
def test_invalid_gesture_parameters_are_refused_with_a_reason(graph, values, reason):
    with pytest.raises(ClientError, match=reason):
        graph.client.set_parameters('classifier', **values)
    graph.run(['up'])  # still classifying


def _overlays_published(client) -> int:
    """The classifier's 'overlays published' from a /diagnostics status made after this call
    (the first one received at least 1.1 s later: the period is 1 s)."""
    got, done = [], threading.Event()
    start = time.monotonic()

    def on_array(msg):
        for st in msg.status:
            if st.name == 'classifier: inference' and time.monotonic() - start >= 1.1:
                got.append({kv.key: kv.value for kv in st.values})
                done.set()

    sub = client.node.create_subscription(DiagnosticArray, '/diagnostics', on_array, 10)
    try:
        assert done.wait(15), 'no diagnostics from the classifier'
    finally:
        client.node.destroy_subscription(sub)
    return int(got[0]['overlays published'])


def test_overlay_is_published_only_while_someone_subscribes(graph):
    gc = graph.client
    graph.run(['up'] * 3)
    assert _overlays_published(gc) == 0, 'nobody subscribed: nothing drawn'
    received = []
    sub = gc.node.create_subscription(Image, 'overlay', received.append, IMAGE_SUB_QOS)
    try:
        deadline = time.monotonic() + 20
        while not received:  # until the classifier has matched the subscriber and draws
            assert time.monotonic() < deadline, 'no overlay for a subscriber'
            graph.run(['up'])
        graph.run(['up', 'down', 'up'])
        ids = {f'up-{graph.n - 2}', f'down-{graph.n - 1}', f'up-{graph.n}'}
        deadline = time.monotonic() + 10
        while not ids <= {m.header.frame_id for m in received}:
            assert time.monotonic() < deadline, {m.header.frame_id for m in received}
            graph.run(['up'])
    finally:
        gc.node.destroy_subscription(sub)
    m = received[-1]
    assert (m.encoding, m.width, m.height) == ('bgr8', 224, 224)
    # The subscriber left: once the classifier has noticed, nothing more is drawn.
    count, deadline = _overlays_published(gc), time.monotonic() + 30
    assert count >= 3
    while True:
        graph.run(['up'] * 3)
        now = _overlays_published(gc)
        if now == count:
            break
        assert time.monotonic() < deadline, 'still drawing after the subscriber left'
        count = now
