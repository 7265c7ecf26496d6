"""Property-based hostile input (hypothesis) to every entry point of the running nodes:
``image_raw``, ``collect`` (and bursts), ``record``, ``delete_samples``, ``undo_collect``,
``restore_samples``, ``select_model``, ``import_model``, ``export_model``, ``train`` (with
its start / from_model_id fields), ``evaluate``, ``label_review``, ``get_review_frame`` and
``add_sample``, in many bounded rounds. Afterwards every
node must be alive and answering, nothing may have been written outside the dataset, model,
trash and transfer folders, and every sample acknowledged with success must be on disk and
readable."""
from __future__ import annotations

import array
import math
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from gesture_interfaces.msg import ModelInfo
from sensor_msgs.msg import Image

from gesture_classifier.ros.client import TrainStatus
from gesture_classifier.core.imaging import ENCODINGS
from gesture_classifier.ros.topics import IMAGE_PUB_QOS, MODEL_QOS
from gesture_classifier.core.versions import MODEL_ID_PATTERN

from .conftest import (CLASSES, COUNTS, THUMBS, graph_overrides, graph_root, running_graph,
                       seed_dataset, wait_for_subscribers, wait_until)

pytestmark = [pytest.mark.graph, pytest.mark.timeout(900)]
HYPO = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope='module')
def hostile(tmp_path_factory):
    root = graph_root(tmp_path_factory, 'hostile')
    data_dir = root / 'data'
    dataset = seed_dataset(data_dir, 4)  # a few real samples so a model can be trained first
    # The test is the only source of frames: the camera points at nothing.
    overrides = graph_overrides(data_dir, camera=dict(source=str(root / 'no_camera')),
                               collector=dict(max_collect_rate=1000.0),
                               trainer=dict(val_fraction=0.0, max_epochs=100))
    with running_graph(overrides, data_dir, root / 'nodes.log',
                       watch_images=False) as system:
        gc = system.client
        outcome = gc.train(epochs=1, timeout=300)
        assert outcome.status is TrainStatus.SUCCEEDED, outcome.result.message
        pub = gc.node.create_publisher(Image, 'image_raw', IMAGE_PUB_QOS)
        wait_for_subscribers(pub, 2)
        before = {p for p in root.rglob('*') if p.is_file()}
        yield dict(client=gc, nodes=system.nodes, root=root, dataset=dataset, pub=pub,
                   log=system.log, model=data_dir / 'thumbs' / 'models' / 'resnet18.pt',
                   before=before, acknowledged=[], trash=data_dir / 'thumbs' / 'trash',
                   transfer=data_dir / 'thumbs' / 'transfer')


def _count(key):
    COUNTS[key] = COUNTS.get(key, 0) + 1


def _cancel_and_wait(gc, handle, timeout: float = 120.0) -> None:
    """Cancel the accepted goal and wait for its end (keeps each round bounded)."""
    gc.cancel_training()
    res = gc.result_async(handle)
    deadline = time.monotonic() + timeout
    while not res.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert res.done()


# -- images --------------------------------------------------------------------------------
encodings = st.one_of(st.sampled_from(sorted(ENCODINGS)),
                      st.sampled_from(['yuv422', '16UC1', 'bayer_rggb8', '32FC1', 'RGB8',
                                       'bgr8 ', '']),
                      st.text(max_size=40))
dims = st.one_of(st.integers(0, 64), st.sampled_from([0, 1, 2 ** 16, 2 ** 31, 2 ** 32 - 1]))


def _alive(hostile) -> None:
    """Every node process still runs."""
    exited = hostile['nodes'].poll()
    assert not exited, f'node(s) died: {exited}\n{hostile["log"].read_text()[-3000:]}'


def _still_answering(hostile, tag: str) -> None:
    """The nodes live, the classifier classifies a good frame and the collector answers."""
    _alive(hostile)
    gc = hostile['client']
    msg = _good_frame(tag)
    for _ in range(40):
        msg.header.stamp = gc.node.get_clock().now().to_msg()
        hostile['pub'].publish(msg)
        try:
            gc.wait_for_prediction(lambda p: p.header.frame_id == tag, 0.5)
            break
        except Exception:
            continue
    else:
        raise AssertionError(f'the classifier does not answer any more ({tag})'
                             f'{_state(hostile)}')
    assert gc.collect('nope', timeout=10).message, 'the collector does not answer'


def test_malformed_and_extreme_images(hostile):
    """150 malformed and extreme images on image_raw; then the nodes live and answer."""
    @given(encoding=encodings, width=dims, height=dims,
           step=st.one_of(st.integers(0, 256), st.sampled_from([2 ** 31, 2 ** 32 - 1])),
           size=st.integers(0, 20000), bigendian=st.integers(0, 1), fill=st.integers(0, 255))
    @HYPO
    def publish(encoding, width, height, step, size, bigendian, fill):
        msg = Image(encoding=encoding, width=width, height=height, step=step,
                    is_bigendian=bigendian, data=array.array('B', bytes([fill]) * size))
        msg.header.stamp = hostile['client'].node.get_clock().now().to_msg()
        hostile['pub'].publish(msg)
        _count('images')
        _alive(hostile)

    publish()
    _still_answering(hostile, 'after-malformed-images')


def test_nan_and_inf_like_pixels_in_float_encodings_are_refused(hostile):
    data = np.array([np.nan, np.inf, -np.inf, 1e38] * 48, np.float32).tobytes()
    msg = Image(encoding='32FC1', width=12, height=16, step=48, data=array.array('B', data))
    hostile['pub'].publish(msg)
    _count('images')
    _still_answering(hostile, 'after-nan-images')


# -- collect ---------------------------------------------------------------------------------
escapes = st.sampled_from(['../x', '../../x', '/etc/passwd', '..', '.', '~', 'thumbs_up/..',
                           'thumbs_up/../../x', '\\..\\x', 'thumbs_up\n', ' thumbs_up',
                           'ｔhumbs_up', 'thumbs\u200bup', 'THUMBS_UP', 'thumbs_up' * 10, '',
                           'x' * 10000, '%2e%2e%2fx', 'thumbs_up;rm -rf /'])
labels = st.one_of(escapes, st.sampled_from(CLASSES),
                   st.text(st.characters(blacklist_categories=('Cs',)), max_size=300))


@given(label=labels, send_frame=st.booleans())
@HYPO
def test_hostile_labels_and_bursts(hostile, label, send_frame):
    gc = hostile['client']
    if send_frame:  # a valid frame so that well-formed requests can succeed
        rgb = np.full((48, 64, 3), 127, np.uint8)
        msg = Image(encoding='rgb8', width=64, height=48, step=192,
                    data=array.array('B', rgb.tobytes()))
        msg.header.stamp = gc.node.get_clock().now().to_msg()
        hostile['pub'].publish(msg)
        time.sleep(0.01)
    r = gc.collect(label, timeout=10)
    _count('collect calls')
    if r.success:
        _count('collects acknowledged')
        assert label.split('\x00')[0] in CLASSES
        hostile['acknowledged'].append(r.path)
    else:
        assert r.message and r.path == ''
    _alive(hostile)


# -- train -----------------------------------------------------------------------------------
u32 = st.one_of(st.integers(0, 3), st.integers(0, 2 ** 32 - 1), st.sampled_from([100, 101]))
rates = st.floats(allow_nan=True, allow_infinity=True, width=32)


@given(epochs=u32, batch_size=u32, learning_rate=rates)
@settings(HYPO, max_examples=80)
def test_absurd_goals(hostile, epochs, batch_size, learning_rate):
    gc = hostile['client']
    handle = gc.send_train_goal(epochs, batch_size, learning_rate, timeout=30)
    _count('goals')
    valid = (0 <= epochs <= 100 and batch_size <= 64 and  # 0: auto
             (learning_rate == 0 or (math.isfinite(learning_rate) and 0 < learning_rate <= 1)))
    assert (handle is not None) == valid, (epochs, batch_size, learning_rate)
    if handle is not None:  # cancel right away, and wait, to keep the rounds bounded
        _cancel_and_wait(gc, handle)
        _count('goals accepted then cancelled')
    _alive(hostile)


def test_goals_during_a_running_goal_and_a_cancel_storm(hostile):
    gc = hostile['client']
    model_before = hostile['model'].read_bytes()
    handle = gc.send_train_goal(epochs=50)
    assert handle is not None
    for _ in range(10):
        assert gc.send_train_goal(epochs=1) is None, 'a second goal must be rejected'
        _count('goals during a running goal')
    # Waves of 8 concurrent cancels: a wave stays within the service queue depth (10), beyond
    # which DDS drops requests before the trainer sees them.
    res = gc.result_async(handle)
    for _ in range(3):
        futures = [gc.cancel_async(handle) for _ in range(8)]
        COUNTS['cancel storm requests'] = COUNTS.get('cancel storm requests', 0) + 8
        deadline = time.monotonic() + 30
        while not all(f.done() for f in futures) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert all(f.done() for f in futures), 'cancel requests went unanswered'
    deadline = time.monotonic() + 60
    while not res.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert res.done() and TrainStatus(res.result().status) is TrainStatus.CANCELED
    assert hostile['model'].read_bytes() == model_before


# -- samples: delete, undo, restore, record ------------------------------------------------
def _samples(hostile):
    return sorted(str(p) for p in hostile['dataset'].rglob('*') if p.is_file())


def _path_strategy(hostile_dataset_files):
    return st.one_of(escapes, labels, st.sampled_from(hostile_dataset_files),
                     st.sampled_from(['thumbs_up/x.jpg', '/tmp/x.jpg', 'thumbs_up/.hidden.jpg',
                                      'thumbs_down/../thumbs_up/a.jpg', '//etc//passwd',
                                      'thumbs_up/a.jpg\x00.png']))


SEEDED = sorted(str(p.relative_to(THUMBS)) for c in CLASSES
                for p in sorted((THUMBS / c).glob('*.jpg'))[:4])


@given(paths=st.lists(_path_strategy(SEEDED), min_size=0, max_size=4))
@HYPO
def test_hostile_delete_and_restore_paths(hostile, paths):
    gc = hostile['client']
    before = _samples(hostile)
    r = gc.delete_samples(paths)
    _count('delete calls')
    if r.success:  # every path named an existing sample: they went to the trash, all of them
        _count('deletes acknowledged')
        assert len(r.deleted) == len(paths) and set(r.deleted) <= set(before)
        assert _samples(hostile) == sorted(set(before) - set(r.deleted))
        back = gc.restore(r.deleted)
        assert back.success, back.message
    else:
        assert r.message and not r.deleted
    assert _samples(hostile) == before
    r = gc.restore(paths)  # nothing named here is in the trash
    _count('restore calls')
    assert not r.success and r.message and _samples(hostile) == before
    _alive(hostile)


@given(label=st.one_of(st.just(''), labels), count=u32)
@settings(HYPO, max_examples=60)
def test_hostile_undo(hostile, label, count):
    gc = hostile['client']
    before = _samples(hostile)
    r = gc.undo(count, label)
    _count('undo calls')
    if r.success:
        _count('undos acknowledged')
        assert 1 <= len(r.deleted) <= max(count, 1) and (not label or label in CLASSES)
        assert gc.restore().success
    else:
        assert r.message and not r.deleted
    assert _samples(hostile) == before
    _alive(hostile)


@given(label=labels, max_count=u32, interval=rates, duration=rates, burst=st.booleans())
@settings(HYPO, max_examples=60)
def test_hostile_record_and_burst_requests(hostile, label, max_count, interval, duration,
                                           burst):
    gc = hostile['client']
    if burst:
        r = gc.collect(label, count=max_count, interval=interval, timeout=20)
        _count('burst calls')
        # the test publishes no frames here: a valid burst ends without a new frame
        assert r.message
        hostile['acknowledged'].extend(r.paths)
        _alive(hostile)
        return
    r = gc.record_start(label, max_count=max_count, interval=interval, max_duration=duration)
    _count('record calls')
    stop = gc.record_stop()
    if r.success:
        _count('recordings started')
        assert label.split('\x00')[0] in CLASSES
        hostile['acknowledged'].extend(stop.paths)
    else:
        assert r.message
    assert not gc.dataset_state(lambda s: not s.recording, timeout=10).recording
    _alive(hostile)


# -- model versions --------------------------------------------------------------------------
ids = st.one_of(escapes, labels, st.sampled_from(['nope', 'thumbs-1', 'resnet18', 'a' * 129]))


@given(model_id=ids, path=st.one_of(escapes, labels, st.sampled_from(
    ['x.pt', 'sub/x.pt', '../models/resnet18.pt', '/etc/passwd', 'x.pt/', '.pt'])),
    overwrite=st.booleans(), select=st.booleans())
@settings(HYPO, max_examples=60)
def test_hostile_model_version_requests(hostile, model_id, path, overwrite, select):
    gc = hostile['client']
    current = hostile['model'].read_bytes()
    r = gc.select_model(model_id)
    _count('select calls')
    assert not r.success and r.message  # none of these ids is a kept version
    r = gc.export_model(path, model_id='', overwrite=overwrite)
    _count('export calls')
    if r.success:
        _count('exports acknowledged')
        assert hostile['transfer'] in Path(r.path).parents
    r = gc.import_model(path, select)
    _count('import calls')
    if r.success:  # only a file this suite exported into transfer_dir can be imported
        _count('imports acknowledged')
        assert (hostile['transfer'] / path).is_file() and r.model.model_id
    else:
        assert r.message
    if not (r.success and select):
        assert hostile['model'].read_bytes() == current
    _alive(hostile)


@given(epochs=st.integers(1, 3), start=st.one_of(st.integers(0, 3), st.integers(0, 255)),
       from_model_id=st.one_of(st.just(''), ids))
@settings(HYPO, max_examples=40)
def test_hostile_train_start_fields(hostile, epochs, start, from_model_id):
    gc = hostile['client']
    handle = gc.send_train_goal(epochs, start=start, from_model_id=from_model_id, timeout=30)
    _count('train goals (start fields)')
    valid = start <= 2 and (not from_model_id or MODEL_ID_PATTERN.fullmatch(from_model_id))
    assert (handle is not None) == bool(valid), (start, from_model_id)
    if handle is not None:
        _cancel_and_wait(gc, handle)
    _alive(hostile)


@given(model_id=st.one_of(st.just(''), ids), batch_size=u32)
@settings(HYPO, max_examples=25)
def test_hostile_evaluate_goals(hostile, model_id, batch_size):
    gc = hostile['client']
    out = gc.evaluate(model_id=model_id, batch_size=batch_size, timeout=120)
    _count('evaluate goals')
    if out.result is None:
        _count('evaluate goals rejected')
    elif out.status is TrainStatus.SUCCEEDED:
        _count('evaluations')
        assert model_id == '' and 1 <= (batch_size or 32) <= 64
        v, t = out.result.validation, out.result.training
        assert v.images + t.images == len(_samples(hostile))
    else:
        assert out.result.message
    _alive(hostile)


# -- announced models ------------------------------------------------------------------------
def _good_frame(frame_id):
    frame = cv2.imread(str(sorted((THUMBS / 'thumbs_up').glob('*.jpg'))[-1]))
    msg = Image(encoding='bgr8', width=224, height=224, step=672,
                data=array.array('B', frame.tobytes()))
    msg.header.frame_id = frame_id
    return msg


def _prediction(hostile, predicate, timeout):
    """Publish good frames until a prediction satisfying ``predicate`` arrives."""
    gc, msg = hostile['client'], _good_frame('announce')
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg.header.stamp = gc.node.get_clock().now().to_msg()
        hostile['pub'].publish(msg)
        try:
            return gc.wait_for_prediction(lambda p: p.header.frame_id == 'announce' and
                                          predicate(p), 0.5)
        except Exception:
            continue
    raise AssertionError(f'no matching prediction within {timeout} s{_state(hostile)}')


def _state(hostile) -> str:
    """What a failure message needs to tell a dead node from a deaf client: the exited
    node processes, whether the client still spins, and the end of the nodes' log."""
    thread = hostile['client']._thread
    return (f'; exited nodes: {hostile["nodes"].poll() or "none"}; client spinning: '
            f'{thread is not None and thread.is_alive()}; the nodes\' log ends with:\n'
            f'{hostile["log"].read_text()[-4000:]}')


def _announce(pub, model_id, path):
    pub.publish(ModelInfo(task='thumbs', model_id=model_id, path=str(path),
                          class_names=list(CLASSES), architecture='resnet18', input_size=224))


def _fifo(models, _):
    os.mkfifo(models / 'fifo.pt')  # nobody ever writes: a blocking open() never returns
    return models / 'fifo.pt'


def _directory(models, _):
    (models / 'dir.pt').mkdir()
    return models / 'dir.pt'


def _symlink_loop(models, _):
    (models / 'loop_a.pt').symlink_to(models / 'loop_b.pt')
    (models / 'loop_b.pt').symlink_to(models / 'loop_a.pt')
    return models / 'loop_a.pt'


def _huge(models, _):
    with open(models / 'huge.pt', 'wb') as f:  # sparse: 64 GiB declared, nothing on disk
        f.truncate(64 << 30)
    return models / 'huge.pt'


def _device_via_symlink(models, _):
    (models / 'zero.pt').symlink_to('/dev/zero')  # endless bytes, outside the models folder
    return models / 'zero.pt'


def _device(models, _):
    return Path('/dev/zero')


def _changing(models, stop):
    """A path that flips between a FIFO and a regular file, rewritten in place, many times a
    second while the classifier reads it."""
    fifo, regular, link = models / 'flip_fifo', models / 'flip_file', models / 'flip.pt'
    os.mkfifo(fifo)
    real = hostile_model_bytes[0]

    def churn():
        i = 0
        while not stop.is_set():
            with open(regular, 'wb') as f:  # rewritten in place: sizes and contents change
                f.write(real[:len(real) // (1 + i % 3)])
            tmp = models / 'flip.tmp'
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(fifo if i % 2 else regular)
            os.replace(tmp, link)
            i += 1
            time.sleep(0.001)

    threading.Thread(target=churn, daemon=True).start()
    return link


hostile_model_bytes: list[bytes] = []


@pytest.mark.parametrize('make', [_fifo, _directory, _symlink_loop, _huge, _device,
                                  _device_via_symlink, _changing])
@pytest.mark.timeout(120)
def test_a_hostile_model_announcement_never_stalls_the_next_good_one(hostile, make):
    from gesture_classifier.core.model import load_model, save_model
    gc, models = hostile['client'], hostile['model'].parent
    if not hostile_model_bytes:
        hostile_model_bytes.append(hostile['model'].read_bytes())
    stop = threading.Event()
    path = make(models, stop)
    pub = gc.node.create_publisher(ModelInfo, 'model', MODEL_QOS)
    log = hostile['log']
    try:
        bad_id = f'hostile-{make.__name__}'
        _announce(pub, bad_id, path)
        if make is not _changing:  # the loader has read it (and refused it) before going on
            wait_until(lambda: f"refused model: {path}" in log.read_text() or
                       f'refused model {bad_id!r}' in log.read_text(), 30, 'the refusal')
        # A genuine model announced meanwhile is loaded promptly.
        mf = load_model(hostile['model'])
        mf.model_id = f'genuine-after{make.__name__}'
        good = save_model(mf, models / f'genuine{make.__name__}.pt')
        _announce(pub, mf.model_id, good)
        _prediction(hostile, lambda p: p.model_id == mf.model_id, 30)  # loaded: not stalled
        _count('hostile model announcements')
        stop.set()
        if make is not _changing:  # (a flipping path may have been read between two flips)
            assert f"refused model: {path}" in log.read_text() or \
                f'refused model {bad_id!r}' in log.read_text()
            # Re-announced: not read again (one refusal line however often it is announced).
            refusals = log.read_text().count(f'refused model: {path}')
            for _ in range(5):
                _announce(pub, bad_id, path)
                _announce(pub, mf.model_id, good)
            # then the task's own model again: once it classifies, every announcement before
            # it has been handled (one callback, in order)
            original = load_model(hostile['model']).model_id
            _announce(pub, original, hostile['model'])
            _prediction(hostile, lambda p: p.model_id == original, 30)
            assert log.read_text().count(f'refused model: {path}') == refusals
    finally:
        stop.set()
        gc.node.destroy_publisher(pub)
    assert not hostile['nodes'].poll()


# -- afterwards ------------------------------------------------------------------------------
# -- the review queue and add_sample --------------------------------------------------------
review_ids = st.one_of(st.integers(0, 3), st.integers(0, 2 ** 64 - 1))
_JPEG = cv2.imencode('.jpg', np.full((32, 32, 3), 90, np.uint8))[1].tobytes()
_PNG_BOMB = (b'\x89PNG\r\n\x1a\n' + b'\x00\x00\x00\rIHDR' + (10 ** 5).to_bytes(4, 'big') * 2
             + b'\x08\x02\x00\x00\x00' + b'\x00' * 4)
images = st.one_of(st.binary(max_size=2000), st.just(_JPEG), st.just(_PNG_BOMB),
                   st.just(_JPEG[:100]))
formats = st.one_of(st.sampled_from(['jpeg', 'png', 'bgr8; jpeg compressed bgr8', '']),
                    st.text(max_size=40))


@given(frame_id=review_ids, label=st.one_of(st.just(''), labels), discard=st.booleans())
@settings(HYPO, max_examples=60)
def test_hostile_review_requests(hostile, frame_id, label, discard):
    """label_review / get_review_frame with any id and label: a clear answer, a stored frame
    only under a class of the task."""
    gc = hostile['client']
    r = gc.label_review(frame_id, label, discard, timeout=20)
    _count('label_review calls')
    if r.success:
        assert discard or label.split('\x00')[0] in CLASSES
        if r.path:
            hostile['acknowledged'].append(r.path)
    else:
        assert r.message and r.path == ''
    try:
        gc.get_review_frame(frame_id, timeout=20)
    except Exception as exc:  # ClientError: the message says why
        assert str(exc)
    _alive(hostile)


@given(label=labels, data=images, fmt=formats)
@settings(HYPO, max_examples=60)
def test_hostile_add_sample_requests(hostile, label, data, fmt):
    """add_sample with any label, format and bytes: stored only for a class of the task and a
    decodable image; refused with a reason otherwise."""
    from gesture_interfaces.srv import AddSample
    from sensor_msgs.msg import CompressedImage

    from gesture_classifier.ros.client import wait_future
    gc = hostile['client']
    if 'add_sample' not in hostile:
        hostile['add_sample'] = gc.node.create_client(AddSample, 'add_sample')
        assert hostile['add_sample'].wait_for_service(timeout_sec=30)
    r = wait_future(hostile['add_sample'].call_async(AddSample.Request(
        label=label, image=CompressedImage(format=fmt, data=data))), 20, 'add_sample')
    _count('add_sample calls')
    if r.success:
        _count('add_samples acknowledged')
        assert label.split('\x00')[0] in CLASSES and cv2.imread(r.path) is not None
        hostile['acknowledged'].append(r.path)
    else:
        assert r.message and r.path == ''
    _alive(hostile)


def test_after_all_that_every_node_answers_and_nothing_leaked(hostile):
    gc = hostile['client']
    exited = hostile['nodes'].poll()
    assert not exited, f'node(s) died: {exited}\n{hostile["log"].read_text()[-3000:]}'
    # The classifier still classifies a good frame.
    frame = cv2.imread(str(sorted((THUMBS / 'thumbs_up').glob('*.jpg'))[-1]))
    msg = Image(encoding='bgr8', width=224, height=224, step=672,
                data=array.array('B', frame.tobytes()))
    msg.header.frame_id = 'after_hostile'
    for _ in range(20):
        msg.header.stamp = gc.node.get_clock().now().to_msg()
        hostile['pub'].publish(msg)
        try:
            gc.wait_for_prediction(lambda p: p.header.frame_id == 'after_hostile', 0.5)
            break
        except Exception:
            continue
    else:
        raise AssertionError('classifier does not answer any more')
    r = gc.collect('thumbs_down')
    assert r.success, r.message
    hostile['acknowledged'].append(r.path)
    assert gc.train(epochs=1, timeout=300).status is TrainStatus.SUCCEEDED
    # Every acknowledged sample is on disk and readable, inside its class folder.
    for path in hostile['acknowledged']:
        assert cv2.imread(path) is not None, path
    # Nothing new outside the dataset and model folders (the node log aside).
    allowed = (hostile['dataset'], hostile['model'].parent, hostile['trash'],
               hostile['transfer'])
    new = {p for p in hostile['root'].rglob('*') if p.is_file()} - hostile['before']
    outside = [p for p in new if p != hostile['log']
               and not any(a in p.parents for a in allowed)]
    assert not outside, outside
    for p in new:
        if hostile['dataset'] in p.parents:
            assert p.parent.name in CLASSES and p.parent.parent == hostile['dataset']
    print(f'\n{len(hostile["acknowledged"])} acknowledged samples all on disk and readable')
