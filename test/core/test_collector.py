"""The collector's work without ROS (gesture_classifier.core.collector): collect, bursts and
recordings on real photos, the dataset index against the disk, and that encoding and writing
happen outside the lock and without listing the dataset."""
from __future__ import annotations

import shutil
import time
from types import SimpleNamespace

import cv2
import pytest

from gesture_classifier.core import collector as collector_module
from gesture_classifier.core import samples as samples_module
from gesture_classifier.core.collector import NO_FRAME_YET, Collector, CollectorSettings
from gesture_classifier.core.imaging import array_to_image_fields
from gesture_classifier.core.samples import summarize
from gesture_classifier.core.tasks import Task


def frame(path, stamp_ns: int):
    """A bgr8 sensor_msgs/Image-like message of a real photo, stamped ``stamp_ns``."""
    fields = array_to_image_fields(cv2.imread(str(path)), 'bgr8')
    header = SimpleNamespace(stamp=SimpleNamespace(sec=stamp_ns // 10**9,
                                                   nanosec=stamp_ns % 10**9))
    return SimpleNamespace(header=header, **fields)


@pytest.fixture
def task(tmp_path):
    return Task.create('thumbs', ['thumbs_up', 'thumbs_down'], tmp_path / 'data')


@pytest.fixture
def states():
    return []


@pytest.fixture
def col(task, states):
    return Collector(task, CollectorSettings(max_collect_rate=1000.0), 'image_raw',
                     lambda s, rec, revision: states.append((s, revision)))


def test_collect_needs_a_fresh_frame_and_a_known_label(col, thumbs_images):
    assert col.collect('thumbs_up').message.startswith(NO_FRAME_YET)
    col.offer(frame(thumbs_images['thumbs_up'][0], 1), now=time.monotonic() - 5.0)
    stale = col.collect('thumbs_up')
    assert not stale.success and stale.message.startswith('newest frame is')
    bad = col.collect('../x')
    assert not bad.success and bad.count == 0 and 'label_pattern' in bad.message
    assert col.refused == {'no frame': 1, 'stale frame': 1, 'label': 1}


def test_collected_samples_are_the_frames_and_counted(col, task, thumbs_images, states):
    for i, label in enumerate(['thumbs_up', 'thumbs_up', 'thumbs_down']):
        col.offer(frame(thumbs_images[label][i], i + 1))
        answer = col.collect(label)
        assert answer.success and answer.saved == 1 and answer.paths == [answer.path]
        saved = cv2.imread(answer.path)
        assert saved.shape == (224, 224, 3)
        original = cv2.imread(str(thumbs_images[label][i]))
        assert abs(saved.astype(int) - original).mean() < 4  # JPEG at quality 95
    assert answer.count == 1 and col.count('thumbs_up') == 2
    assert [s.counts for s, _ in states] == [(1, 0), (2, 0), (2, 1)]
    assert [revision for _, revision in states] == [1, 2, 3]


def test_a_frame_is_encoded_and_written_outside_the_lock(col, thumbs_images, monkeypatch):
    write = collector_module.write_sample
    held = []

    def checking_write(*args):
        held.append(col.lock.locked())
        return write(*args)

    monkeypatch.setattr(collector_module, 'write_sample', checking_write)
    col.offer(frame(thumbs_images['thumbs_up'][0], 1))
    assert col.collect('thumbs_up').success
    rec = col.record('thumbs_down', max_count=2, interval=0.0, max_duration=0.0)
    assert rec.success
    for i in range(2):
        col.offer(frame(thumbs_images['thumbs_down'][i], 10 + i), now=time.monotonic() + i)
    assert held == [False, False, False]
    assert col.stop().saved == 2


def test_no_listing_of_the_dataset_per_saved_frame(col, thumbs_images, monkeypatch):
    """The index is kept by the collector's own changes: saving frames lists nothing."""
    col.offer(frame(thumbs_images['thumbs_up'][0], 1))
    listed = []
    for module, name in ((samples_module, 'list_images'), (samples_module, '_class_files'),
                         (samples_module, 'list_trash')):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, real=real, name=name:
                            listed.append(name) or real(*a))
    for i in range(5):
        col.offer(frame(thumbs_images['thumbs_up'][i], i + 2))
        assert col.collect('thumbs_up').success
    col.refresh()  # nothing changed on disk but its own saves: no rescan, no trash listing
    assert listed == []
    assert col.count('thumbs_up') == 5


def test_the_index_matches_the_disk_after_every_kind_of_change(col, task, thumbs_images):
    def check():
        with col.lock:
            mine = col.index.summary()
        disk = summarize(task)
        assert (mine.counts, mine.newest, mine.size_bytes, mine.trash) == \
            (disk.counts, disk.newest, disk.size_bytes, disk.trash)

    paths = []
    for i in range(4):
        label = ('thumbs_up', 'thumbs_down')[i % 2]
        col.offer(frame(thumbs_images[label][i], i + 1))
        paths.append(col.collect(label).path)
        check()
    assert col.delete([paths[0]]).deleted == [paths[0]]
    check()
    assert len(col.undo('', 2).deleted) == 2
    check()
    assert col.restore([]).success  # the undo's two come back
    check()
    # someone else copies a photo in and removes a sample: seen at the next refresh
    shutil.copy(thumbs_images['thumbs_up'][9], task.dataset_dir / 'thumbs_up' / 'extra.jpg')
    (task.dataset_dir / 'thumbs_down' / paths[1].rsplit('/', 1)[1]).unlink()
    col.refresh()
    check()
    assert col.count('thumbs_up') == 2  # paths[2] and extra.jpg (paths[0] is in the trash)


def test_a_frame_written_after_its_recording_stopped_is_not_kept(col, task, thumbs_images,
                                                                   monkeypatch):
    write = collector_module.write_sample
    col.offer(frame(thumbs_images['thumbs_up'][0], 1))
    assert col.record('thumbs_up', max_count=0, interval=0.0, max_duration=0.0).success
    written = []

    def write_then_stop(*args):
        written.append(write(*args))
        stopped.append(col.stop())  # the user lets go while the frame is being written
        return written[-1]

    stopped = []
    monkeypatch.setattr(collector_module, 'write_sample', write_then_stop)
    col.offer(frame(thumbs_images['thumbs_up'][1], 2))
    assert stopped[0].success and stopped[0].saved == 0
    assert not written[0].exists() and col.count('thumbs_up') == 0


def test_a_burst_saves_new_frames_only(col, thumbs_images):
    import threading
    col.offer(frame(thumbs_images['thumbs_down'][0], 1))
    answers = []
    burst = threading.Thread(target=lambda: answers.append(col.collect('thumbs_down', 3, 0.0)))
    burst.start()
    deadline = time.monotonic() + 10
    while col._recording is None and time.monotonic() < deadline:
        time.sleep(0.01)
    for i in range(6):  # each frame twice: the same stamp is never saved twice
        msg = frame(thumbs_images['thumbs_down'][i // 2], 100 + i // 2)
        col.offer(msg, now=time.monotonic() + i)
    burst.join(10)
    (answer,) = answers
    assert answer.success and answer.saved == 3 and len(set(answer.paths)) == 3
    assert col.count('thumbs_down') == 3


def test_a_burst_begun_without_waiting_ends_by_the_frames_offered_in_the_same_thread(
        col, thumbs_images):
    """What the collector node does on its one executor thread: begin the burst, keep offering
    frames, and answer when the recording's done callback fires."""
    col.offer(frame(thumbs_images['thumbs_up'][0], 1))
    rec = col.begin_collect('thumbs_up', 2, 0.0)
    ended = []
    rec.add_done_callback(lambda: ended.append(rec.reason))
    assert rec.running and not ended
    assert col.begin_collect('thumbs_up', 2, 0.0).message.startswith('a recording under')
    now = time.monotonic()
    for i in range(2):
        col.offer(frame(thumbs_images['thumbs_up'][i + 1], 10 + i), now=now + i)
    assert ended == ['saved all 2 frames']
    answer = col.burst_answer(rec)
    assert answer.success and answer.saved == 2 and col.count('thumbs_up') == 2
    assert col._recording is None  # another collect may start
    assert col.begin_collect('nope', 3).message.startswith('unknown label')


def test_a_burst_that_is_answered_early_is_stopped(col, thumbs_images):
    col.offer(frame(thumbs_images['thumbs_up'][0], 1))
    rec = col.begin_collect('thumbs_up', 5, 0.0)
    answer = col.burst_answer(rec)
    assert not answer.success and answer.saved == 0 and 'stopped' in answer.message
    assert not rec.running and col._recording is None


def compressed(data: bytes, fmt: str = 'jpeg'):
    """A sensor_msgs/CompressedImage-like message."""
    header = SimpleNamespace(stamp=SimpleNamespace(sec=1, nanosec=0), frame_id='camera')
    return SimpleNamespace(header=header, format=fmt, data=data)


def test_add_sample_stores_a_given_image_with_the_checks_of_collect(col, task, thumbs_images):
    """add_sample (the classifier's review queue labels through it): a real JPEG is decoded,
    re-encoded and stored under the label without any camera frame; a hostile label, bytes
    that are no image and a running recording are refused and write nothing."""
    photo = cv2.imread(str(thumbs_images['thumbs_down'][0]))
    jpeg = cv2.imencode('.jpg', photo)[1].tobytes()
    answer = col.add_sample('thumbs_down', compressed(jpeg))
    assert answer.success and answer.count == 1, answer.message
    stored = cv2.imread(answer.path)
    assert stored is not None and stored.shape == photo.shape
    assert answer.path.startswith(str(task.dataset_dir / 'thumbs_down'))
    for label, data, expected in (('../../x', jpeg, 'label_pattern'),
                                  ('thumbs_sideways', jpeg, 'thumbs_sideways'),
                                  ('thumbs_up', b'not an image at all', 'malformed')):
        refused = col.add_sample(label, compressed(data))
        assert not refused.success and expected in refused.message, refused.message
    col.offer(frame(thumbs_images['thumbs_up'][0], 1))
    assert col.record('thumbs_up', 0, 0.0, 5.0).success
    busy = col.add_sample('thumbs_up', compressed(jpeg))
    col.stop()
    assert not busy.success and 'recording' in busy.message
    assert not list((task.dataset_dir / 'thumbs_up').glob('*.jpg')), 'a refusal wrote a file'
    assert len(list((task.dataset_dir / 'thumbs_down').glob('*.jpg'))) == 1


def test_a_class_added_at_run_time_is_listed_collected_and_published(col, task, thumbs_images,
                                                                     states):
    """set_task (the node's `classes` grew): a folder the new class already has on disk is
    counted, the state is published at once with the new class, and it can be collected."""
    (task.dataset_dir / 'ok_sign').mkdir(parents=True)
    shutil.copy(thumbs_images['thumbs_up'][0], task.dataset_dir / 'ok_sign' / 'old.jpg')
    assert not col.collect('ok_sign').success  # not a class yet
    before = len(states)
    col.set_task(task.with_classes([*task.classes, 'ok_sign']))
    assert len(states) == before + 1
    summary, _ = states[-1]
    assert summary.counts == (0, 0, 1)
    col.offer(frame(thumbs_images['thumbs_down'][0], 7))
    answer = col.collect('ok_sign')
    assert answer.success and answer.count == 2
    assert tuple(summarize(col.task).counts) == tuple(col.index.counts()) == (0, 0, 2)
