"""Faults on real file systems and real processes: a full disk (a small tmpfs) while saving
samples and models, and a model writer killed with SIGKILL in the middle of a save."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from gesture_classifier.core.dataset import list_images, save_sample
from gesture_classifier.core.fsutil import atomic_write
from gesture_classifier.core.model import ModelFile, create_model, load_model, save_model
from gesture_classifier.core.tasks import Task, read_saved_classes, save_classes

CLASSES = ('thumbs_up', 'thumbs_down')


@pytest.fixture
def small_fs(tmp_path, mounted_tmpfs):
    """A real 60 MiB tmpfs, mounted for the test."""
    mnt = tmp_path / 'small_fs'
    mnt.mkdir()
    with mounted_tmpfs(mnt):
        yield mnt


def _fill(fs: Path, leave: int) -> Path:
    """Fill ``fs`` with one file until about ``leave`` bytes are free."""
    import shutil
    filler = fs / 'filler'
    free = shutil.disk_usage(fs).free
    with open(filler, 'wb') as f:
        f.write(b'\0' * max(0, free - leave))
    return filler


def _frame(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)


def test_collect_on_a_full_disk_fails_cleanly_and_keeps_the_dataset(small_fs):
    task = Task.create('thumbs', list(CLASSES), small_fs)
    saved = [save_sample(task, 'thumbs_up', _frame(i), 'bgr')[0] for i in range(3)]
    before = {p: p.read_bytes() for p in saved}
    _fill(small_fs, leave=300 * 1024)   # less than the 1 MiB margin of the free-space check
    with pytest.raises(OSError) as exc:
        save_sample(task, 'thumbs_up', _frame(9), 'bgr')
    assert exc.value.errno == errno.ENOSPC and 'free space' in str(exc.value)
    files = list_images(task.class_dir('thumbs_up'))
    assert files == sorted(before), 'a failed collect must not add or remove samples'
    assert all(p.read_bytes() == data for p, data in before.items())
    assert all(cv2.imread(str(p)) is not None for p in files)
    assert not [p for p in task.class_dir('thumbs_up').iterdir() if p.suffix == '.tmp']


def test_adding_a_class_on_a_full_disk_fails_and_keeps_the_saved_classes(small_fs):
    task = Task.create('thumbs', list(CLASSES), small_fs)
    save_classes(task.with_classes([*CLASSES, 'ok']))
    _fill(small_fs, leave=0)
    with pytest.raises(OSError) as exc:
        save_classes(task.with_classes([*CLASSES, 'ok', 'fist']))
    assert exc.value.errno == errno.ENOSPC
    assert read_saved_classes(task) == (*CLASSES, 'ok')
    assert sorted(p.name for p in (small_fs / 'thumbs').iterdir()) == ['classes.yaml']


def test_a_write_that_hits_enospc_midway_leaves_the_old_file(small_fs):
    target = small_fs / 'file.bin'
    target.write_bytes(b'old content')
    _fill(small_fs, leave=64 * 1024)
    with pytest.raises(OSError) as exc:  # no pre-check: the real write runs out of space
        atomic_write(target, lambda f: f.write(b'x' * (1024 * 1024)))
    assert exc.value.errno == errno.ENOSPC
    assert target.read_bytes() == b'old content'
    assert sorted(p.name for p in small_fs.iterdir()) == ['file.bin', 'filler']


def test_model_save_on_a_full_disk_keeps_the_previous_model(small_fs):
    path = small_fs / 'thumbs' / 'models' / 'resnet18.pt'
    first = save_model(ModelFile(create_model(2), CLASSES, task='thumbs'), path)
    first_id = load_model(first).model_id
    with pytest.raises(OSError) as exc:  # 60 MiB fs, 45 MB model: the second cannot fit
        save_model(ModelFile(create_model(2), CLASSES, task='thumbs'), path)
    assert exc.value.errno == errno.ENOSPC
    assert load_model(path).model_id == first_id
    assert sorted(p.name for p in path.parent.iterdir()) == ['resnet18.pt']


SPAWNER = textwrap.dedent('''
    import os, sys
    import torch
    torch.set_num_threads(1)
    from gesture_classifier.core.model import ModelFile, create_model, save_model
    path = sys.argv[1]
    for line in sys.stdin:  # a round: fork a writer that saves models back to back
        r = int(line)
        pid = os.fork()
        if pid == 0:
            i = 0
            while True:
                save_model(ModelFile(create_model(2), ('thumbs_up', 'thumbs_down'),
                                     task='thumbs', model_id=f'r{r}m{i}'), path)
                print(f'saved r{r}m{i}', flush=True)
                i += 1
        print(f'pid {pid}', flush=True)
        os.waitpid(pid, 0)  # until the test kills it
        print(f'done {r}', flush=True)
''')


def test_a_writer_killed_mid_save_leaves_a_complete_model(tmp_path):
    """SIGKILL a process that saves models back to back while it writes: the model file is
    always a complete, loadable one (the newest finished save), and the next save cleans up
    the killed writer's temporary file. (The writers are forked from one process that
    imported torch once.)"""
    path = tmp_path / 'models' / 'resnet18.pt'
    rounds, kills_mid_write = 4, 0
    spawner = subprocess.Popen([sys.executable, '-c', SPAWNER, str(path)], text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        for r in range(rounds):
            spawner.stdin.write(f'{r}\n')
            spawner.stdin.flush()
            lines = [spawner.stdout.readline().strip() for _ in range(2)]  # pid, first save
            pid = int(next(x for x in lines if x.startswith('pid '))[4:])
            finished = [x for x in lines if x.startswith('saved ')]
            while not finished:
                line = spawner.stdout.readline().strip()
                if line.startswith('saved '):
                    finished.append(line)
            deadline = time.monotonic() + 60  # kill it while it writes the next save
            while not list(path.parent.glob('.resnet18.pt.*.tmp')):
                assert time.monotonic() < deadline, 'no save started'
                time.sleep(0.002)
            os.kill(pid, signal.SIGKILL)
            while (line := spawner.stdout.readline().strip()) != f'done {r}':
                assert line, 'the spawner ended'
                finished.append(line)
            leftovers = list(path.parent.glob('.resnet18.pt.*.tmp'))
            kills_mid_write += bool(leftovers)
            loaded = int(load_model(path).model_id.split('m')[1])
            last = int(finished[-1].split('m')[1])
            # the last save it reported, or one that completed its rename just before the kill
            assert last <= loaded <= last + 1, (loaded, last)
    finally:
        spawner.kill()
        spawner.communicate()
    print(f'{rounds} kills, {kills_mid_write} of them in the middle of a write')
    assert kills_mid_write >= 1, 'no kill hit a save in progress'
    save_model(ModelFile(create_model(2), CLASSES, task='thumbs'), path)
    assert not list(path.parent.glob('.resnet18.pt.*.tmp'))
