"""The four real nodes over the real middleware: every topic, the service and the action,
including feedback, cancel, a rejected second goal, the hot model switch, and bad input."""
from __future__ import annotations

import array
import math
import threading
import time

import cv2
import numpy as np
import pytest
from gesture_interfaces.action import Train
from gesture_interfaces.msg import ModelInfo, Prediction
from gesture_interfaces.srv import Collect
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from gesture_classifier.ros.client import ClientError, TrainStatus
from gesture_classifier.core.model import load_model
from gesture_classifier.ros.topics import IMAGE_PUB_QOS, IMAGE_SUB_QOS, MODEL_QOS
from gesture_classifier.core.training import DEFAULT_RECIPE

from .conftest import (CLASSES, THUMBS, VIDEO, assert_policy_matches_graph,
                       no_more_predictions, stamp, use_source, wait_until)

pytestmark = [pytest.mark.graph, pytest.mark.timeout(600)]


def _stop_camera(system) -> None:
    """Point the camera at a source that does not exist: it reports it and publishes nothing.
    Returns once no frame has come for 0.5 s."""
    gc = system.client
    after = use_source(system, system.data_dir.parent / 'no_such_camera', loop=True)
    deadline = time.monotonic() + 15
    while True:
        try:
            after = stamp(gc.wait_for_image(newer_than=after, timeout=0.5))
        except ClientError:
            return
        assert time.monotonic() < deadline, 'the camera goes on publishing'



# -- camera ---------------------------------------------------------------------------------
@pytest.mark.parametrize('size', [(640, 480), (1280, 720)])
def test_camera_sized_frames_reach_best_effort_subscribers(system, size):
    """Frames above Fast DDS's default 512 KiB shared-memory segment (640x480 rgb/bgr8 is
    900 KiB) used to reach sensor-data (best-effort) subscribers at 1-2 of 30 FPS; with
    config/fastdds.xml (set by the nodes and the client) they arrive: of 30 frames a reliable
    subscriber received, at least 60 % (a loaded CI machine may miss some) reach a subscriber
    with the classifier's QoS, in this process. (Rates: bench/camera.py.)"""
    gc = system.client
    width, height = size
    best_effort, reliable = set(), set()

    def keep(into):
        return lambda m: into.add(stamp(m)) if (m.width, m.height) == size else None

    subs = [gc.node.create_subscription(Image, 'image_raw', keep(best_effort), IMAGE_SUB_QOS),
            gc.node.create_subscription(Image, 'image_raw', keep(reliable), QoSProfile(
                depth=10, reliability=ReliabilityPolicy.RELIABLE))]
    try:
        use_source(system, THUMBS / 'thumbs_up', loop=True, width=width, height=height,
                   rate=10.0)
        wait_until(lambda: best_effort and
                    len([t for t in reliable if t >= min(best_effort)]) >= 31, 60,
                    f'30 {width}x{height} frames')
        first = min(best_effort)  # from the best-effort subscriber's first frame on
        counted = sorted(t for t in reliable if t >= first)[:30]
        got = len(best_effort & set(counted))
    finally:
        for sub in subs:
            gc.node.destroy_subscription(sub)
        gc.set_camera_parameters(width=0, height=0)
    assert got >= 0.6 * len(counted), \
        f'only {got} of {len(counted)} {width}x{height} frames reached the best-effort subscriber'
    system.alive()


def test_camera_publishes_real_frames(system):
    gc = system.client
    use_source(system, THUMBS / 'thumbs_up', loop=True)
    image = gc.wait_for_image(newer_than=gc.now(), timeout=10)
    assert (image.encoding, image.width, image.height) == ('bgr8', 224, 224)
    assert image.step == 224 * 3 and len(image.data) == image.step * image.height
    assert image.header.frame_id == 'camera_optical_frame'
    assert abs(gc.now() - stamp(image)) < 2.0, 'header.stamp is not the capture time'
    pixels = np.frombuffer(image.data, np.uint8).reshape(224, 224, 3)
    originals = [cv2.imread(str(p)) for p in sorted((THUMBS / 'thumbs_up').glob('*.jpg'))]
    assert any(np.array_equal(pixels, o) for o in originals), \
        'published frame is not one of the source photos'


def test_camera_runtime_source_and_size_change(system):
    """(The rate the camera keeps is timing: bench/camera.py measures it.)"""
    gc = system.client
    after = use_source(system, VIDEO, loop=True)
    frames = []
    while len(frames) < 10:
        frames.append(gc.wait_for_image(newer_than=after, timeout=10))
        after = stamp(frames[-1])
    assert {(f.width, f.height) for f in frames} == {(160, 120)}
    gc.set_camera_parameters(width=320, height=240)
    after = gc.now()
    resized = gc.wait_for_image(newer_than=after, timeout=10)
    assert (resized.width, resized.height) == (320, 240)
    gc.set_camera_parameters(width=0, height=0)
    with pytest.raises(ClientError, match='source'):
        gc.set_camera_parameters(source='')
    system.alive()


def test_camera_recovers_when_source_comes_back(system, tmp_path):
    gc = system.client
    folder = tmp_path / 'camera'
    after = use_source(system, folder, loop=True)  # missing: reported, retried
    with pytest.raises(ClientError):
        gc.wait_for_image(newer_than=after, timeout=1.0)
    folder.mkdir()
    for p in sorted((THUMBS / 'thumbs_down').glob('*.jpg'))[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    image = gc.wait_for_image(newer_than=after, timeout=10)  # re-opened by itself
    assert (image.width, image.height) == (224, 224)
    system.alive()


# -- classifier before any model --------------------------------------------------------------
def test_no_predictions_without_a_model(system):
    assert not system.model_path.exists()
    use_source(system, THUMBS / 'thumbs_up', loop=True)
    with pytest.raises(ClientError):
        system.client.wait_for_prediction(timeout=2.0)
    system.alive()


def test_train_without_data_is_aborted_with_a_reason(system):
    outcome = system.client.train(epochs=1, timeout=60)
    assert outcome.status is TrainStatus.ABORTED
    assert outcome.result.error_code == Train.Result.DATASET_ERROR
    assert 'thumbs' in outcome.result.message and not outcome.result.success


class _SlowSender:
    """Stands between an ActionClient and its rcl handle: after each request is sent, the
    sending thread pauses, as a preempted thread would, before the client can register the
    request's future. An answer that arrives meanwhile must not be lost (ros2/rclpy#1123)."""

    def __init__(self, handle, pause: float):
        self._handle, self._pause, self.sent = handle, pause, 0

    def __getattr__(self, name):
        attr = getattr(self._handle, name)
        if not name.startswith('send_'):
            return attr

        def send(*args):
            number = attr(*args)
            self.sent += 1
            time.sleep(self._pause)
            return number
        return send


def test_an_answer_that_arrives_before_the_client_registers_it_is_not_lost(system):
    """The train action client pauses 1 s after sending each request (goal, then result): the
    trainer's answers (a rejected-for-no-data goal ends at once) arrive during the pause."""
    action = system.client._train
    real = action._client_handle
    action._client_handle = slow = _SlowSender(real, 1.0)
    try:
        outcome = system.client.train(epochs=1, timeout=30)
    finally:
        action._client_handle = real
    assert slow.sent == 2, 'goal and result requests went through the pause'
    assert outcome.status is TrainStatus.ABORTED
    assert outcome.result.error_code == Train.Result.DATASET_ERROR


class _LosingReceiver:
    """Stands between an ActionClient and its rcl handle and loses the first goal response
    and the first result response it takes (taken from the middleware, then reported as
    nothing taken), as a response the middleware dropped would be lost."""

    def __init__(self, handle):
        self._handle, self.lost = handle, []

    def __getattr__(self, name):
        attr = getattr(self._handle, name)
        if name not in ('take_goal_response', 'take_result_response'):
            return attr

        def take(*args):
            taken = attr(*args)
            if all(taken) and name not in self.lost:
                self.lost.append(name)
                return None, None
            return taken
        return take


def test_a_lost_goal_answer_and_a_lost_result_are_recovered(system):
    """The goal is found on the action's status topic, and the result asked for again once the
    status says the goal ended (GestureClient._send_goal, wait_for_result)."""
    action = system.client._train
    real = action._client_handle
    action._client_handle = losing = _LosingReceiver(real)
    try:
        outcome = system.client.train(epochs=1, timeout=60)
    finally:
        action._client_handle = real
    assert losing.lost == ['take_goal_response', 'take_result_response']
    assert outcome.status is TrainStatus.ABORTED
    assert outcome.result.error_code == Train.Result.DATASET_ERROR


@pytest.fixture
def web_node(system):
    """A web node in this process (its internals reachable), on the running graph."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from gesture_classifier.nodes.web import WebNode
    ctx = Context()
    rclpy.init(args=['--ros-args', '-r', '__node:=web_in_test', '-p',
                     f'data_dir:={system.data_dir}', '-p', 'port:=0', '-p',
                     'call_timeout:=3.0'], context=ctx)
    node = WebNode(context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        yield node.start()
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        spin.join(timeout=5.0)


def test_the_web_page_recovers_a_lost_goal_answer_and_a_lost_result(system, web_node):
    """The same two answers dropped at the web node's action client: the page still learns
    that its goal ended and how (the web node is a client of GestureClient, which recovers
    them; before, the page showed the goal running until the node restarted)."""
    import http.client
    import json
    action = web_node.client._train
    assert action.wait_for_server(timeout_sec=30)
    real = action._client_handle
    action._client_handle = losing = _LosingReceiver(real)
    try:
        # http.client, not urllib: urllib keeps the proxies of its first use in the process
        conn = http.client.HTTPConnection('127.0.0.1', web_node.port, timeout=60)
        try:
            conn.request('POST', '/api/train', json.dumps({'epochs': 1, 'start': 'auto'}),
                         {'Content-Type': 'application/json'})
            answer = conn.getresponse()
            assert (answer.status, json.loads(answer.read())) == \
                (200, {'accepted': True, 'epochs': 1})
        finally:
            conn.close()
        training = wait_until(
            lambda: (t := web_node.page.snapshot()['training'])['state'] not in
            ('sending', 'running') and t, 60, 'the end of the page\'s goal')
    finally:
        action._client_handle = real
    assert losing.lost == ['take_goal_response', 'take_result_response']
    assert training['state'] == 'failed' and 'thumbs' in training['message'], training


# -- collector ----------------------------------------------------------------------------------
def test_collect_stores_frames_under_the_label(system, dataset):
    for label, responses in dataset.items():
        assert all(r.success for r in responses), [r.message for r in responses]
        counts = [r.count for r in responses]
        assert counts == list(range(1, len(responses) + 1))
        for r in responses:
            assert r.path.startswith(str(system.dataset / label) + '/')
            image = cv2.imread(r.path)
            assert image is not None and image.shape == (224, 224, 3)


# A NUL cannot be tested here: ROS strings end at the first NUL on the wire, so the
# collector receives 'thumbs_up' for 'thumbs_up\x00' (validate_name's unit tests cover NUL).
@pytest.mark.parametrize('label', ['../../x', '/etc/passwd', '..', 'thumbs_up/../../x',
                                   'thumbs_up\n', 'nope', '', 'ｔhumbs_up', 'x' * 500])
def test_collect_refuses_unsafe_and_unknown_labels(system, label):
    before = sorted(p.relative_to(system.data_dir.parent)
                    for p in system.data_dir.parent.rglob('*'))
    r = system.client.collect(label)
    assert not r.success and r.path == '' and r.message
    after = sorted(p.relative_to(system.data_dir.parent)
                   for p in system.data_dir.parent.rglob('*'))
    assert after == before, 'a refused collect wrote something'


def test_collect_refuses_malformed_and_stale_frames(system, dataset):
    gc = system.client
    _stop_camera(system)
    pub = gc.node.create_publisher(Image, 'image_raw', IMAGE_PUB_QOS)
    try:
        bad = Image(height=224, width=224, encoding='bgr8', step=100,
                    data=array.array('B', bytes(224 * 100)))  # step < width * 3
        wait_until(lambda: pub.get_subscription_count() >= 3, 10, 'image subscribers')
        # No frame for 0.5 s: once the camera's last good frame is older than max_frame_age
        # (1 s), it is refused. (Before, a collect racing the first bad frame saved it.)
        time.sleep(1.0)
        r = gc.collect('thumbs_up')
        assert not r.success and 'old' in r.message, r.message

        def refused(reason):  # (a bad frame, sent again until the collector has it)
            bad.header.stamp = gc.node.get_clock().now().to_msg()
            pub.publish(bad)
            r = gc.collect('thumbs_up')
            assert not r.success, r.message
            return reason in r.message

        wait_until(lambda: refused('malformed'), 10, 'a malformed-frame refusal')
        # no more frames: once the newest is older than max_frame_age, it is refused
        wait_until(lambda: 'old' in gc.collect('thumbs_up').message, 10,
                    'a stale-frame refusal')
    finally:
        gc.node.destroy_publisher(pub)
        use_source(system, THUMBS / 'thumbs_up', loop=True)
    system.alive()


# -- trainer and hot switch -------------------------------------------------------------------
def test_train_reports_feedback_and_saves_the_model(system, trained):
    outcome, feedback = trained
    result = outcome.result
    assert result.success and result.error_code == Train.Result.NONE
    assert result.epochs_completed == 2 and result.model_id
    assert result.model_path == str(system.model_path) and system.model_path.is_file()
    assert result.train_images + result.val_images == 12 and result.val_images == 2
    assert 0.0 <= result.train_accuracy <= 1.0 and 0.0 <= result.val_accuracy <= 1.0
    assert not result.pretrained and 'random' in result.message.lower()
    assert 'will not recognise people' in result.message and result.initial_weights == 'none'
    assert result.recipe == DEFAULT_RECIPE and repr(DEFAULT_RECIPE) in result.message
    assert load_model(system.model_path).recipe == DEFAULT_RECIPE
    batches = math.ceil(result.train_images / 4)
    assert len(feedback) == 2 * batches, 'feedback must come once per batch'
    progress = [f.progress for f in feedback]
    assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0)
    assert [(f.epoch, f.batch) for f in feedback] == \
        [(e, b) for e in (1, 2) for b in range(1, batches + 1)]
    assert all(f.epochs == 2 and f.batches == batches and f.loss >= 0 for f in feedback)


def test_classifier_switches_to_the_new_model_and_publishes_predictions(system, trained):
    outcome, _ = trained
    gc = system.client
    seen_images = {}
    lock = threading.Lock()

    def on_image(msg):
        with lock:
            seen_images[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = msg.header.frame_id

    sub = gc.node.create_subscription(Image, 'image_raw', on_image, IMAGE_SUB_QOS)
    try:
        use_source(system, THUMBS / 'thumbs_down', loop=True)
        first = gc.wait_for_prediction(lambda p: p.model_id == outcome.result.model_id, 30)
        ps = [gc.wait_for_prediction(timeout=10) for _ in range(5)]
    finally:
        gc.node.destroy_subscription(sub)
    for p in [first, *ps]:
        assert isinstance(p, Prediction)
        assert list(p.class_names) == list(CLASSES)
        probs = np.asarray(p.probabilities, dtype=np.float64)
        assert probs.shape == (2,) and np.all((probs >= 0) & (probs <= 1))
        assert probs.sum() == pytest.approx(1.0, abs=1e-5)
        assert p.label == CLASSES[int(probs.argmax())]
        assert p.confidence == pytest.approx(probs.max(), abs=1e-6)
        assert p.model_id == outcome.result.model_id and p.inference_time > 0
        assert p.header.frame_id == 'camera_optical_frame'
    with lock:
        stamps = set(seen_images)
    assert any((q.header.stamp.sec, q.header.stamp.nanosec) in stamps for q in ps), \
        'prediction headers must be copied from the classified images'


def test_second_goal_is_rejected_and_cancel_keeps_the_model(system, trained):
    gc = system.client
    model_before = system.model_path.read_bytes()
    current_id = trained[0].result.model_id
    first_feedback = threading.Event()
    handle = gc.send_train_goal(epochs=50, on_feedback=lambda fb: first_feedback.set())
    assert handle is not None, 'first goal rejected'
    assert first_feedback.wait(60), 'no feedback from the running goal'
    assert gc.send_train_goal(epochs=1) is None, 'a second goal must be rejected'
    gc._goal_handle = handle
    assert gc.cancel_training()
    res = gc.result_async(handle)
    wait_until(res.done, 30, 'the cancelled goal to end (within a batch)')
    result = res.result()
    assert TrainStatus(result.status) is TrainStatus.CANCELED
    assert result.result.error_code == Train.Result.CANCELED and not result.result.success
    assert result.result.epochs_completed < 50
    assert system.model_path.read_bytes() == model_before, 'cancel must keep the old model'
    p = gc.wait_for_prediction(timeout=10)
    assert p.model_id == current_id
    system.alive()


@pytest.mark.parametrize('goal', [dict(epochs=100000),
                                  dict(epochs=1, batch_size=100000),
                                  dict(epochs=1, learning_rate=float('nan')),
                                  dict(epochs=1, learning_rate=5.0),
                                  dict(epochs=1, recipe='bogus'),
                                  dict(epochs=1, recipe='../dli')])
def test_out_of_range_goals_are_rejected(system, goal):
    assert system.client.send_train_goal(**goal) is None


def test_hot_switch_to_a_retrained_model(system, trained):
    gc = system.client
    old_id = trained[0].result.model_id
    outcome = gc.train(epochs=1, timeout=300)
    assert outcome.status is TrainStatus.SUCCEEDED, outcome.result.message
    assert outcome.result.model_id != old_id
    p = gc.wait_for_prediction(lambda p: p.model_id == outcome.result.model_id, 30)
    assert p.model_id == outcome.result.model_id
    system.alive()


# -- bad input to the classifier ----------------------------------------------------------------
def _malformed_images():
    ok = dict(height=48, width=64, encoding='rgb8', step=64 * 3)
    yield dict(ok, encoding='yuv422')                      # unsupported encoding
    yield dict(ok, encoding='')                            # no encoding
    yield dict(ok, step=10)                                # step < width * channels
    yield dict(ok, height=4800)                            # data shorter than step * height
    yield dict(ok, width=0, step=0)                        # empty
    yield dict(ok, height=2 ** 31, step=2 ** 31)           # absurd size
    yield dict(ok, encoding='16UC1')                       # 16-bit: not supported


def test_classifier_survives_malformed_images(system, trained):
    gc = system.client
    model_id = gc.wait_for_prediction(timeout=30).model_id
    _stop_camera(system)
    pub = gc.node.create_publisher(Image, 'image_raw', IMAGE_PUB_QOS)
    try:
        wait_until(lambda: pub.get_subscription_count() >= 3, 10, 'image subscribers')
        for fields in _malformed_images():
            msg = Image(**fields, data=array.array('B', bytes(48 * 64 * 3)))
            msg.header.stamp = gc.node.get_clock().now().to_msg()
            pub.publish(msg)
            time.sleep(0.1)
        good = cv2.imread(str(sorted((THUMBS / 'thumbs_up').glob('*.jpg'))[0]))
        rgb = np.ascontiguousarray(good[:, :, ::-1])
        msg = Image(height=224, width=224, encoding='rgb8', step=224 * 3 + 32)
        padded = np.zeros((224, 224 * 3 + 32), np.uint8)   # row padding in step
        padded[:, :224 * 3] = rgb.reshape(224, -1)
        msg.data = array.array('B', padded.tobytes())
        msg.header.frame_id = 'test_frame'
        for _ in range(20):
            msg.header.stamp = gc.node.get_clock().now().to_msg()
            pub.publish(msg)
            try:
                p = gc.wait_for_prediction(lambda p: p.header.frame_id == 'test_frame', 0.5)
                break
            except ClientError:
                continue
        else:
            raise AssertionError('no prediction for a valid image after malformed ones\n'
                                 + system.log.read_text()[-3000:])
        assert p.model_id == model_id
    finally:
        gc.node.destroy_publisher(pub)
        use_source(system, THUMBS / 'thumbs_up', loop=True)
    system.alive()
    assert 'skipping malformed image' in system.log.read_text()


def test_classifier_reports_stale_input_and_never_repeats_old_results(system, trained):
    gc = system.client
    gc.wait_for_prediction(timeout=30)
    _stop_camera(system)
    no_more_predictions(gc)
    try:
        received = []
        gc.add_prediction_listener(received.append)
        # the classifier reports stale input after stale_after (2 s) without frames; no old
        # result may be repeated meanwhile
        wait_until(lambda: 'input stale' in system.log.read_text(), 10, 'a stale-input report')
        assert received == [], 'a prediction without a new frame'
    finally:
        after = use_source(system, THUMBS / 'thumbs_up', loop=True)
    p = gc.wait_for_prediction(lambda p: stamp(p) > after, timeout=30)
    assert p.label in CLASSES
    wait_until(lambda: 'arriving again' in system.log.read_text(), 10, 'the recovery report')


def test_collect_bursts_are_rate_limited_and_acknowledged_samples_are_on_disk(system, dataset):
    gc = system.client
    use_source(system, THUMBS / 'thumbs_up', loop=True)
    gc.wait_for_image(newer_than=gc.now(), timeout=10)
    # 8 at once: within the default service queue depth (10), beyond which DDS itself would
    # drop requests before the collector could see them.
    futures = [gc.call_async('collect', Collect.Request(label='thumbs_up')) for _ in range(8)]
    wait_until(lambda: all(f.done() for f in futures), 30, 'the burst to be answered')
    responses = [f.result() for f in futures]
    ok = [r for r in responses if r.success]
    refused = [r for r in responses if not r.success]
    assert ok and refused, 'a burst must be partly served and partly refused'
    assert all('too many requests' in r.message for r in refused)
    for r in ok:
        assert cv2.imread(r.path) is not None, f'acknowledged sample {r.path} is not readable'
    system.alive()


# -- the SROS2 policy names exactly what the nodes use -------------------------------------------
@pytest.mark.parametrize('node, enclave', [
    ('camera', None), ('collector', None), ('trainer', None), ('classifier', None),
    ('classifier_client', 'classifier')])  # beside the classifier, in its process
def test_sros2_policy_names_exactly_the_interfaces_on_the_graph(system, node, enclave):
    assert_policy_matches_graph(system.client.node, node, enclave)


def _garbage_model(folder):
    path = folder / 'garbage.pt'
    path.write_bytes(b'\x80\x04 this is not a model' * 100)
    return path, 'refused model'


def _three_class_model(folder):
    from gesture_classifier.core.model import ModelFile, create_model, save_model
    three = ('thumbs_up', 'thumbs_down', 'fist')
    return (save_model(ModelFile(create_model(3), three, task='thumbs', model_id='three-1'),
                       folder / 'three.pt'), 'differ from the task classes')


@pytest.mark.parametrize('make', [_garbage_model, _three_class_model],
                         ids=['garbage', 'other-classes'])
def test_unusable_model_file_is_refused_and_running_model_stays(system, trained, make):
    gc = system.client
    model_id = gc.wait_for_prediction(timeout=30).model_id
    path, reason = make(system.model_path.parent)  # where announced models may come from
    pub = gc.node.create_publisher(ModelInfo, 'model', MODEL_QOS)
    try:
        pub.publish(ModelInfo(task='thumbs', model_id=f'bad-{path.stem}', path=str(path),
                              class_names=list(CLASSES), architecture='resnet18',
                              input_size=224))
        wait_until(lambda: path.name in system.log.read_text(), 15, 'the refusal')
    finally:
        gc.node.destroy_publisher(pub)
    assert reason in system.log.read_text()
    p = gc.wait_for_prediction(timeout=10)
    assert p.model_id == model_id, 'the running model must stay after a bad file'
    system.alive()


# -- how far a prediction can be trusted; the review queue (active learning) ---------------------
def test_unsure_frames_are_queued_then_labelled_into_the_dataset_or_discarded(system, trained):
    """Predictions carry ood_score and trusted. With review_min_uncertainty 0 the classifier
    queues live frames (published on review_queue, latched); a queued frame's JPEG is served;
    labelling stores it through the collector's add_sample (a real JPEG under the label) and
    takes it off the queue; a hostile label or an unknown id is refused and loses nothing;
    discard drops a frame without storing it. add_sample itself refuses bytes that are no
    image and hostile labels."""
    from gesture_interfaces.srv import AddSample
    from sensor_msgs.msg import CompressedImage

    from gesture_classifier.ros.client import wait_future

    gc = system.client
    use_source(system, THUMBS / 'thumbs_up', loop=True)
    p = gc.wait_for_prediction(lambda p: p.model_id, timeout=60)
    assert math.isfinite(p.ood_score) and p.trusted == (p.ood_score <= 1.0)
    gc.set_parameters('classifier', timeout=60, review_min_uncertainty=0.0, review_min_interval=0.2)
    try:
        queue = gc.review_queue(lambda q: len(q.items) >= 2, timeout=60)
        first, second = queue.items[0], queue.items[1]
        assert queue.capacity == 20 and first.class_names == list(CLASSES)
        assert first.uncertainty >= second.uncertainty and 0 <= first.uncertainty <= 2
        image = gc.get_review_frame(first.id)
        pixels = cv2.imdecode(np.frombuffer(bytes(image.data), np.uint8), cv2.IMREAD_COLOR)
        assert image.format == 'jpeg' and pixels.shape == (first.height, first.width, 3)
        assert image.header.stamp == first.header.stamp
        for frame_id, label, why in ((first.id, '../../x', 'not a class'),
                                     (2**63, 'thumbs_up', 'not in the review queue')):
            r = gc.label_review(frame_id, label)
            assert not r.success and why in r.message, r.message
        gc.review_queue(lambda q: first.id in [i.id for i in q.items], timeout=10)
        stored = gc.label_review(first.id, 'thumbs_down')
        assert stored.success, stored.message
        path = system.dataset / 'thumbs_down' / stored.path.rsplit('/', 1)[-1]
        assert stored.path == str(path) and cv2.imread(stored.path) is not None
        gc.review_queue(lambda q: first.id not in [i.id for i in q.items], timeout=10)
        assert not gc.label_review(first.id, 'thumbs_down').success, 'labelled twice'
        dropped = gc.label_review(second.id, discard=True)
        assert dropped.success and dropped.path == ''
    finally:
        gc.set_parameters('classifier', timeout=60, review_min_uncertainty=0.5,
                          review_min_interval=1.0)
    add = gc.node.create_client(AddSample, 'add_sample')
    try:
        assert add.wait_for_service(timeout_sec=10)
        jpeg = cv2.imencode('.jpg', pixels)[1].tobytes()
        for label, data, why in (('thumbs_up', b'not an image', 'malformed'),
                                 ('../../x', jpeg, 'label')):
            request = AddSample.Request(label=label, image=CompressedImage(format='jpeg',
                                                                             data=data))
            for _ in range(20):  # the store above may be < 1 / max_collect_rate ago
                r = wait_future(add.call_async(request), 10, 'add')
                if not r.message.startswith('too many requests'):
                    break
                time.sleep(0.1)
            assert not r.success and why in r.message, r.message
    finally:
        gc.node.destroy_client(add)
    system.alive()
