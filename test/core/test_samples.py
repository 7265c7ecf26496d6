"""Reviewing samples on real photos: state, delete, undo, trash, restore, hostile paths."""
from __future__ import annotations

import os
import time

import pytest

from gesture_classifier.core.samples import (MAX_PATHS, SampleError, delete_samples, list_trash,
                                        newest_samples, prune_trash, resolve_sample,
                                        restore_samples, summarize)
from gesture_classifier.core.tasks import Task


@pytest.fixture
def task(tmp_path):
    return Task.create('thumbs', data_dir=tmp_path / 'data')


@pytest.fixture
def files(task, make_dataset):
    copied = make_dataset(task.dataset_dir, 4)
    # distinct modification times, oldest first: up[0], down[0], up[1], down[1], ...
    t = time.time() - 100
    for i in range(4):
        for label in ('thumbs_up', 'thumbs_down'):
            t += 1
            os.utime(copied[label][i], (t, t))
    return copied


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob('*'))


def test_summary_counts_sizes_newest(task, files):
    s = summarize(task)
    assert s.counts == (4, 4) and s.total == 8
    assert s.size_bytes == sum(p.stat().st_size for ps in files.values() for p in ps)
    assert s.free_bytes > 0
    assert s.newest[0][0] == files['thumbs_up'][3]
    assert s.newest[1][0] == files['thumbs_down'][3]
    assert s.newest[1][1] == pytest.approx(files['thumbs_down'][3].stat().st_mtime)
    assert s.trash == () and s.trash_bytes == 0


def test_summary_of_missing_dataset(task):
    s = summarize(task)
    assert s.counts == (0, 0) and s.newest == ((None, 0.0), (None, 0.0)) and s.free_bytes > 0


def test_delete_then_restore_round_trip(task, files):
    victim = files['thumbs_up'][1]
    content = victim.read_bytes()
    deleted = delete_samples(task, [str(victim)], now_ns=123)
    assert deleted == [victim] and not victim.exists()
    assert summarize(task).counts == (3, 4)
    trash = list_trash(task)
    assert [e.original for e in trash] == [victim]
    assert trash[0].path.parent.parent == task.trash and trash[0].deleted_ns == 123
    assert summarize(task).trash_bytes == len(content)
    assert restore_samples(task, [str(victim)]) == [victim]
    assert victim.read_bytes() == content and list_trash(task) == []
    assert summarize(task).counts == (4, 4)


def test_relative_paths_and_latest_batch_restore(task, files):
    a, b = files['thumbs_up'][0], files['thumbs_down'][2]
    delete_samples(task, [f'thumbs_up/{a.name}'], now_ns=1)
    delete_samples(task, [str(b), str(files['thumbs_down'][0])], now_ns=2)
    restored = restore_samples(task, [])  # the latest batch: b and down[0]
    assert sorted(restored) == sorted([b, files['thumbs_down'][0]])
    assert not a.exists() and [e.original for e in list_trash(task)] == [a]
    assert restore_samples(task, []) == [a]
    with pytest.raises(SampleError, match='empty'):
        restore_samples(task, [])


@pytest.mark.parametrize('make_path, reason', [
    (lambda t, f: '', 'empty'),
    (lambda t, f: str(f) + '\0.jpg', 'NUL'),
    (lambda t, f: f'thumbs_up/../thumbs_up/{f.name}', '".."'),
    (lambda t, f: str(t.dataset_dir / 'thumbs_up' / '..' / '..' / 'x.jpg'), '".."'),
    (lambda t, f: '/etc/passwd', 'not a sample'),
    (lambda t, f: str(t.dataset_dir / 'thumbs_up'), 'not a sample'),
    (lambda t, f: str(t.dataset_dir.parent / 'models' / 'x' / 'y.jpg'), 'not a sample'),
    (lambda t, f: 'other/x.jpg', 'not a class'),
    (lambda t, f: 'thumbs_up/missing.jpg', 'no such sample'),
    (lambda t, f: 'thumbs_up/notes.txt', 'not a sample image'),
    (lambda t, f: 'thumbs_up/.hidden.jpg', 'not a sample image'),
    (lambda t, f: 'thumbs_up/link.jpg', 'symbolic link'),
    (lambda t, f: 'thumbs_up/dir.jpg', 'not a regular file'),
])
def test_hostile_paths_are_refused_and_nothing_moves(task, files, tmp_path, make_path, reason):
    outside = tmp_path / 'outside.jpg'
    outside.write_bytes(b'precious')
    (task.dataset_dir / 'thumbs_up' / 'link.jpg').symlink_to(outside)
    (task.dataset_dir / 'thumbs_up' / 'dir.jpg').mkdir()
    (task.dataset_dir / 'thumbs_up' / 'notes.txt').write_text('x')
    before = _tree(tmp_path)
    good = files['thumbs_up'][0]
    with pytest.raises(SampleError, match=reason):
        delete_samples(task, [str(good), make_path(task, good)])
    assert _tree(tmp_path) == before and outside.read_bytes() == b'precious'


def test_symlinked_class_folder_is_refused(tmp_path, make_dataset):
    task = Task.create('thumbs', data_dir=tmp_path / 'data')
    elsewhere = tmp_path / 'elsewhere'
    make_dataset(elsewhere, 1)
    task.dataset_dir.mkdir(parents=True)
    (task.dataset_dir / 'thumbs_up').symlink_to(elsewhere / 'thumbs_up')
    victim = next((elsewhere / 'thumbs_up').iterdir())
    with pytest.raises(SampleError, match='symbolic link'):
        resolve_sample(task, f'thumbs_up/{victim.name}')
    assert victim.exists()


def test_duplicates_and_too_many_paths(task, files):
    p = str(files['thumbs_up'][0])
    with pytest.raises(SampleError, match='twice'):
        delete_samples(task, [p, f'thumbs_up/{files["thumbs_up"][0].name}'])
    with pytest.raises(SampleError, match='at most'):
        delete_samples(task, [p] * (MAX_PATHS + 1))
    with pytest.raises(SampleError, match='no paths'):
        delete_samples(task, [])
    assert files['thumbs_up'][0].exists()


def test_newest_samples_for_undo(task, files):
    assert newest_samples(task, 1) == [files['thumbs_down'][3]]
    assert newest_samples(task, 3) == [files['thumbs_down'][3], files['thumbs_up'][3],
                                       files['thumbs_down'][2]]
    assert newest_samples(task, 2, 'thumbs_up') == [files['thumbs_up'][3], files['thumbs_up'][2]]
    assert len(newest_samples(task, 100)) == 8
    for bad in ('nope', '../x', 'a/b'):
        with pytest.raises(SampleError):
            newest_samples(task, 1, bad)
    with pytest.raises(SampleError, match='count'):
        newest_samples(task, 0)


def test_restore_refuses_unknown_and_occupied(task, files):
    victim = files['thumbs_up'][0]
    delete_samples(task, [str(victim)])
    with pytest.raises(SampleError, match='not in the trash'):
        restore_samples(task, [str(files['thumbs_up'][1])])
    with pytest.raises(SampleError, match='not a dataset path'):
        restore_samples(task, ['../../etc/passwd'])
    victim.write_bytes(b'a new file with the same name')
    with pytest.raises(SampleError, match='exists already'):
        restore_samples(task, [str(victim)])
    assert victim.read_bytes() == b'a new file with the same name'
    assert len(list_trash(task)) == 1


def test_prune_by_count_and_age(task, files):
    now = time.time_ns()
    for i, p in enumerate(files['thumbs_up']):
        delete_samples(task, [str(p)], now_ns=now - (10 - i) * 10**9)  # 10, 9, 8, 7 s ago
    assert prune_trash(task, max_age=0, max_files=3, now_ns=now) == 1
    assert [e.original for e in list_trash(task)] == files['thumbs_up'][:0:-1]
    assert prune_trash(task, max_age=8.5, max_files=100, now_ns=now) == 1
    assert [e.original for e in list_trash(task)] == [files['thumbs_up'][3],
                                                      files['thumbs_up'][2]]
    # files in the trash that are not ours are left alone
    (task.trash / 'thumbs_up' / 'README').write_text('not ours')
    assert prune_trash(task, max_age=0, max_files=0, now_ns=now) == 2
    assert (task.trash / 'thumbs_up' / 'README').exists()


def test_failed_move_is_rolled_back(task, files):
    a, b = files['thumbs_up'][0], files['thumbs_down'][0]
    # the trash folder for thumbs_down cannot be created: a file is in its way
    task.trash.mkdir(parents=True)
    (task.trash / 'thumbs_down').write_bytes(b'in the way')
    with pytest.raises(OSError):
        delete_samples(task, [str(a), str(b)])
    assert a.exists() and b.exists()
    assert list((task.trash / 'thumbs_up').iterdir()) == []
