"""Mirroring the collector's dataset to the trainer's computer (plain Python, no ROS): two
tasks with separate folders stand for the two computers, the functions the services call are
wired directly to each other, and the samples are real photos from ../shared/data."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from gesture_classifier.core import datasync
from gesture_classifier.core.datasync import (DatasetSyncError, DigestCache, Listing, SampleData,
                                         SyncCancelled, check_sample_name, list_samples,
                                         listing_digest, read_samples, sync_dataset)
from gesture_classifier.core.tasks import Task

CLASSES = ('thumbs_up', 'thumbs_down')


def _task(root: Path, classes=CLASSES) -> Task:
    return Task.create('thumbs', list(classes), data_dir=root)


@pytest.fixture
def robot(tmp_path, thumbs_images) -> Task:
    """The collector's task with 5 real photos per class."""
    task = _task(tmp_path / 'robot')
    for label in CLASSES:
        (task.dataset_dir / label).mkdir(parents=True)
        for src in thumbs_images[label][:5]:
            shutil.copyfile(src, task.dataset_dir / label / src.name)
    return task


@pytest.fixture
def workstation(tmp_path) -> Task:
    return _task(tmp_path / 'workstation')


class Wire:
    """The two service calls, served in-process by the collector's functions, counting what
    crosses (as ROS would carry it)."""

    def __init__(self, task: Task):
        self.task, self.cache = task, DigestCache()
        self.pages, self.requested, self.sent_bytes = 0, [], 0
        self.tamper = None  # optional function SampleData -> SampleData
        self.max_bytes = datasync.BATCH_BYTES

    def get_page(self, offset, count):
        self.pages += 1
        listing = list_samples(self.task, self.cache)
        page = Listing(listing.task, listing.class_names,
                       listing.entries[offset:offset + count], listing.untransferable,
                       listing.note)
        return page, len(listing.entries), listing.digest

    def get_samples(self, wanted):
        self.requested += wanted
        out = read_samples(self.task, wanted, self.max_bytes)
        if self.tamper:
            out = [self.tamper(item) for item in out]
        self.sent_bytes += sum(len(item.data) for item in out)
        return out

    def sync(self, dest: Task, **kw):
        return sync_dataset(dest, self.get_page, self.get_samples, DigestCache(), **kw)


def _files(task: Task) -> dict[str, bytes]:
    return {f'{p.parent.name}/{p.name}': p.read_bytes()
            for p in sorted(task.dataset_dir.glob('*/*'))}


def test_the_first_sync_copies_everything_and_the_next_only_what_changed(robot, workstation,
                                                                         thumbs_images):
    wire = Wire(robot)
    report = wire.sync(workstation)
    assert (report.fetched, report.unchanged, report.removed, report.refused) == (10, 0, 0, [])
    assert _files(workstation) == _files(robot)
    assert report.fetched_bytes == sum(len(b) for b in _files(robot).values())

    wire.requested.clear()
    again = wire.sync(workstation)
    assert (again.fetched, again.unchanged, again.removed) == (0, 10, 0)
    assert wire.requested == [], 'nothing fetched twice'

    # the robot collects two more and one sample is deleted there
    new = [thumbs_images['thumbs_up'][7], thumbs_images['thumbs_down'][8]]
    for src, label in zip(new, CLASSES):
        shutil.copyfile(src, robot.dataset_dir / label / src.name)
    gone = sorted((robot.dataset_dir / 'thumbs_up').iterdir())[0]
    gone_bytes = gone.read_bytes()
    gone.unlink()
    wire.requested.clear()
    third = wire.sync(workstation)
    assert (third.fetched, third.unchanged, third.removed) == (2, 9, 1)
    assert sorted(wire.requested) == sorted([('thumbs_up', new[0].name),
                                             ('thumbs_down', new[1].name)])
    assert _files(workstation) == _files(robot)
    trashed = list(workstation.trash.rglob(f'*{gone.name}'))
    assert len(trashed) == 1, 'removed from the copy into its trash, not deleted'
    assert trashed[0].read_bytes() == gone_bytes
    assert 'fetched' in third.describe() and 'moved to the trash' in third.describe()


def test_a_local_file_with_other_bytes_is_fetched_again(robot, workstation):
    wire = Wire(robot)
    wire.sync(workstation)
    victim = sorted((workstation.dataset_dir / 'thumbs_down').iterdir())[2]
    victim.write_bytes(b'corrupt')
    report = wire.sync(workstation)
    assert (report.fetched, report.unchanged) == (1, 9)
    assert _files(workstation) == _files(robot)


@pytest.mark.parametrize('change', ['bytes', 'shorter', 'name', 'error'])
def test_a_sample_that_fails_its_check_is_refused_and_nothing_partial_is_written(
        robot, workstation, change):
    wire = Wire(robot)
    target = sorted((robot.dataset_dir / 'thumbs_up').iterdir())[1].name

    def tamper(item: SampleData) -> SampleData:
        if item.name != target:
            return item
        if change == 'bytes':
            data = bytearray(item.data)
            data[len(data) // 2] ^= 0xFF
            return SampleData(item.label, item.name, item.sha256, bytes(data))
        if change == 'shorter':
            return SampleData(item.label, item.name, item.sha256, item.data[:-10])
        if change == 'name':
            return SampleData(item.label, 'other.jpg', item.sha256, item.data)
        return SampleData(item.label, item.name, error='disk on fire')

    wire.tamper = tamper
    report = wire.sync(workstation)
    assert report.fetched == 9
    assert [key for key, _ in report.refused] == [f'thumbs_up/{target}']
    assert not (workstation.dataset_dir / 'thumbs_up' / target).exists()
    leftovers = [p for p in workstation.dataset_dir.rglob('*') if p.name.startswith('.')]
    assert leftovers == [], 'no temporary file left behind'
    wire.tamper = None
    assert wire.sync(workstation).fetched == 1, 'the next sync fetches it'


def test_the_collector_lists_sizes_and_hashes_and_leaves_out_untransferable_files(robot):
    (robot.dataset_dir / 'thumbs_up' / 'bad name;rm.jpg').write_bytes(b'x' * 10)
    (robot.dataset_dir / 'thumbs_up' / 'empty.jpg').write_bytes(b'')
    with open(robot.dataset_dir / 'thumbs_down' / 'huge.jpg', 'wb') as f:
        f.truncate(datasync.MAX_SAMPLE_BYTES + 1)
    (robot.dataset_dir / 'thumbs_up' / 'notes.txt').write_text('not an image')
    listing = list_samples(robot, DigestCache())
    assert len(listing.entries) == 10 and listing.untransferable == 3
    assert 'huge.jpg' in listing.note or 'bad name' in listing.note
    for e in listing.entries:
        data = (robot.dataset_dir / e.label / e.name).read_bytes()
        assert (e.size, e.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert [e.label for e in listing.entries] == ['thumbs_up'] * 5 + ['thumbs_down'] * 5
    assert listing.digest == listing_digest(listing.entries)


def test_the_digest_cache_rehashes_only_changed_files(tmp_path, monkeypatch):
    path = tmp_path / 'a.jpg'
    path.write_bytes(b'one')
    cache, calls = DigestCache(), []
    real = datasync.file_digest
    monkeypatch.setattr(datasync, 'file_digest', lambda p: calls.append(1) or real(p))
    first = cache.digest(path)
    assert cache.digest(path) == first and len(calls) == 1
    path.write_bytes(b'two!')
    assert cache.digest(path) == (4, hashlib.sha256(b'two!').hexdigest()) and len(calls) == 2


@pytest.mark.parametrize('label,name,why', [
    ('thumbs_up', '../../etc/passwd', 'not a safe sample name'),
    ('thumbs_up', '..', 'not a safe sample name'),
    ('thumbs_up', '.hidden.jpg', 'not a safe sample name'),
    ('thumbs_up', 'a/b.jpg', 'not a safe sample name'),
    ('thumbs_up', 'x\x00.jpg', 'not a safe sample name'),
    ('thumbs_up', 'notes.txt', 'not an image'),
    ('../thumbs_up', 'a.jpg', 'not a class'),
    ('dataset', 'a.jpg', 'not a class'),
    ('thumbs_up', 'missing.jpg', 'no such sample'),
])
def test_the_collector_refuses_hostile_requests(robot, label, name, why):
    (item,) = read_samples(robot, [(label, name)])
    assert why in item.error and item.data == b'' and item.sha256 == ''


def test_the_collector_never_reads_outside_its_dataset_or_blocks(robot, tmp_path):
    secret = tmp_path / 'secret.jpg'
    secret.write_bytes(b'secret')
    folder = robot.dataset_dir / 'thumbs_up'
    (folder / 'link.jpg').symlink_to(secret)
    os.mkfifo(folder / 'pipe.jpg')
    (folder / 'dir.jpg').mkdir()
    items = read_samples(robot, [('thumbs_up', 'link.jpg'), ('thumbs_up', 'pipe.jpg'),
                                 ('thumbs_up', 'dir.jpg')])
    assert 'outside the allowed folders' in items[0].error
    assert 'FIFO' in items[1].error
    assert 'directory' in items[2].error or 'Is a directory' in items[2].error
    assert all(item.data == b'' for item in items)
    with pytest.raises(ValueError, match='1..64'):
        read_samples(robot, [])
    with pytest.raises(ValueError, match='1..64'):
        read_samples(robot, [('thumbs_up', 'a.jpg')] * 65)


def test_a_response_holds_at_most_the_byte_budget_and_the_rest_is_asked_again(
        robot, workstation):
    sizes = sorted(p.stat().st_size for p in robot.dataset_dir.glob('*/*'))
    budget = sizes[-1] + sizes[-2] - 1  # at most two of the largest per answer
    wanted = [(e.label, e.name) for e in list_samples(robot, DigestCache()).entries]
    answer = read_samples(robot, wanted[:10], max_bytes=budget)
    assert 1 <= len(answer) < 10 and sum(len(a.data) for a in answer) <= budget
    assert [(a.label, a.name) for a in answer] == wanted[:len(answer)]

    wire = Wire(robot)
    wire.max_bytes, sent = budget, []
    serve = wire.get_samples
    wire.get_samples = lambda wanted: sent.append(len(wanted)) or serve(wanted)
    report = wire.sync(workstation, batch_size=3)
    assert report.fetched == 10 and _files(workstation) == _files(robot)
    assert len(sent) > 4, 'short answers: the rest was asked for again'


def test_a_listing_in_pages_and_one_that_changes_between_pages(robot, workstation,
                                                              thumbs_images):
    wire = Wire(robot)
    calls = []

    def changing(offset, count):
        calls.append(offset)
        if len(calls) == 2:  # the dataset grows while the trainer reads page 2
            src = thumbs_images['thumbs_up'][20]
            shutil.copyfile(src, robot.dataset_dir / 'thumbs_up' / src.name)
        return wire.get_page(offset, count)

    report = sync_dataset(workstation, changing, wire.get_samples, DigestCache(), page_size=4)
    assert report.fetched == 11 and _files(workstation) == _files(robot)
    assert calls[:2] == [0, 4] and calls[2] == 0, 'started again after the change'

    def always_changing(offset, count):
        page, total, _ = wire.get_page(offset, count)
        return page, total, os.urandom(32).hex()

    with pytest.raises(DatasetSyncError, match='kept changing'):
        sync_dataset(workstation, always_changing, wire.get_samples, DigestCache(),
                     page_size=4)


def test_a_collector_of_another_task_or_a_malformed_listing_is_refused(robot, tmp_path):
    wire = Wire(robot)
    other = _task(tmp_path / 'other', ('thumbs_down', 'thumbs_up'))  # other output order
    with pytest.raises(DatasetSyncError, match='set the same task and classes'):
        wire.sync(other)
    assert not other.dataset_dir.exists(), 'nothing written'

    def lying(offset, count):
        page, total, digest = wire.get_page(offset, count)
        return page, total + 5, digest

    with pytest.raises(DatasetSyncError):
        sync_dataset(_task(tmp_path / 'w2'), lying, wire.get_samples, DigestCache())

    def absurd(offset, count):
        page, _, digest = wire.get_page(offset, count)
        return page, datasync.MAX_SAMPLES + 1, digest

    with pytest.raises(DatasetSyncError, match='at most'):
        sync_dataset(_task(tmp_path / 'w3'), absurd, wire.get_samples, DigestCache())


def test_hostile_listing_entries_are_refused_and_the_rest_is_copied(robot, workstation):
    wire = Wire(robot)
    good = list_samples(robot, DigestCache()).entries
    bad = [datasync.SampleEntry('thumbs_up', '../../escape.jpg', 10, 'a' * 64),
           datasync.SampleEntry('nope', 'x.jpg', 10, 'a' * 64),
           datasync.SampleEntry('thumbs_up', 'big.jpg', datasync.MAX_SAMPLE_BYTES + 1,
                                'a' * 64),
           datasync.SampleEntry('thumbs_up', 'nohash.jpg', 10, 'xyz'),
           good[0]]  # listed twice
    entries = tuple(good) + tuple(bad)

    def hostile(offset, count):
        page = entries[offset:offset + count]
        return (Listing('thumbs', CLASSES, page), len(entries), listing_digest(entries))

    report = sync_dataset(workstation, hostile, wire.get_samples, DigestCache())
    assert report.fetched == 10 and len(report.refused) == 5
    assert _files(workstation) == _files(robot)
    assert not (workstation.dataset_dir.parent.parent / 'escape.jpg').exists()
    assert [p.name for p in (workstation.dataset_dir.parent).iterdir()] == ['dataset']


def test_a_cancel_stops_between_calls(robot, workstation):
    wire = Wire(robot)
    asked = []

    def stop():
        asked.append(1)
        return len(asked) > 1

    with pytest.raises(SyncCancelled):
        wire.sync(workstation, should_stop=stop, batch_size=4)
    assert len(_files(workstation)) == 4, 'the first batch is kept, complete and checked'
    assert wire.sync(workstation).fetched == 6, 'the next sync goes on'


def test_a_full_disk_is_refused_before_anything_is_fetched(robot, workstation, mounted_tmpfs,
                                                           thumbs_images):
    big = robot.dataset_dir / 'thumbs_up' / 'big.png'
    big.write_bytes(os.urandom(3 * 1024 * 1024))  # 3 MiB, transferable
    workstation.dataset_dir.mkdir(parents=True)
    with mounted_tmpfs(workstation.dataset_dir, size='2m'):
        wire = Wire(robot)
        with pytest.raises(OSError):
            wire.sync(workstation)
        assert wire.requested == [], 'refused before fetching'
        assert list(workstation.dataset_dir.rglob('*.*')) == []


def test_sample_names():
    for ok in ('0a1b2c3d-ca98-11ea-b20d-667196321cb1.jpg', 'IMG 001 (2).JPG', 'a.png'):
        assert check_sample_name(ok) == ok
    for bad in ('', '.', '..', '.x.jpg', 'a/b.jpg', 'x.txt', 'a' * 300 + '.jpg', None, 7):
        with pytest.raises(ValueError):
            check_sample_name(bad)
