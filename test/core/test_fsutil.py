"""Crash-safe writes and free-space checks."""
from __future__ import annotations

import errno
import os
import stat

import pytest

from gesture_classifier.core import fsutil
from gesture_classifier.core.fsutil import (UntrustedFileError, atomic_write, ensure_private_dir,
                                       read_untrusted_file, require_free_space)


def _entries(d):
    return sorted(os.listdir(d))


def test_atomic_write_writes_content_with_private_mode(tmp_path):
    target = tmp_path / 'file.bin'
    result = atomic_write(target, lambda f: f.write(b'hello world'))
    assert result == target
    assert target.read_bytes() == b'hello world'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert _entries(tmp_path) == ['file.bin']


def test_atomic_write_custom_mode_and_replace(tmp_path):
    target = tmp_path / 'f'
    atomic_write(target, lambda f: f.write(b'one'), mode=0o640)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    atomic_write(target, lambda f: f.write(b'two'), expected_size=3)
    assert target.read_bytes() == b'two'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert _entries(tmp_path) == ['f']


def test_require_free_space(tmp_path):
    require_free_space(tmp_path, 1)  # a byte is there
    with pytest.raises(OSError) as info:
        require_free_space(tmp_path, 1 << 62)
    assert info.value.errno == errno.ENOSPC
    assert str(tmp_path) in str(info.value)


def test_atomic_write_checks_free_space_first(tmp_path):
    target = tmp_path / 'big'
    target.write_bytes(b'previous')
    called = []
    with pytest.raises(OSError) as info:
        atomic_write(target, called.append, expected_size=1 << 62)
    assert info.value.errno == errno.ENOSPC
    assert called == [], 'nothing may be written without the space'
    assert target.read_bytes() == b'previous'
    assert _entries(tmp_path) == ['big']


@pytest.mark.parametrize('exc', [OSError(errno.EIO, 'simulated I/O error'),
                                 RuntimeError('bug in the writer'), KeyboardInterrupt()])
def test_failed_write_keeps_previous_content_and_no_temp_file(tmp_path, exc):
    target = tmp_path / 'data.bin'
    target.write_bytes(b'previous content')

    def write(f):
        f.write(b'partial new content')
        raise exc

    with pytest.raises(type(exc)):
        atomic_write(target, write)
    assert target.read_bytes() == b'previous content'
    assert _entries(tmp_path) == ['data.bin']


def test_failed_first_write_leaves_nothing(tmp_path):
    def write(f):
        raise OSError(errno.ENOSPC, 'disk full (simulated)')

    with pytest.raises(OSError):
        atomic_write(tmp_path / 'new', write)
    assert _entries(tmp_path) == []


def test_atomic_write_into_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / 'absent' / 'f', lambda f: f.write(b'x'))
    assert _entries(tmp_path) == []


def test_ensure_private_dir(tmp_path):
    d = ensure_private_dir(tmp_path / 'private')
    assert d == tmp_path / 'private' and d.is_dir()
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert ensure_private_dir(d) == d  # exists: fine


def test_ensure_private_dir_parents(tmp_path):
    old = os.umask(0o022)  # the usual umask, whatever the test runner's is
    try:
        leaf = ensure_private_dir(tmp_path / 'a' / 'b' / 'c')
    finally:
        os.umask(old)
    for d in (tmp_path / 'a', tmp_path / 'a' / 'b', leaf):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


# -- reading files named by someone else (announced model paths) ---------------------------
@pytest.fixture
def folder(tmp_path):
    d = tmp_path / 'allowed'
    d.mkdir()
    return d


def _refused(path, match, max_bytes=1 << 20, allowed=None):
    with pytest.raises(UntrustedFileError, match=match):
        read_untrusted_file(path, max_bytes, allowed)


def test_untrusted_read_returns_a_regular_files_bytes(folder):
    f = folder / 'model.pt'
    f.write_bytes(b'x' * 5000)
    assert read_untrusted_file(f, 5000, [folder]) == b'x' * 5000
    link = folder / 'link.pt'  # a symlink inside the allowed folder to a file inside it
    link.symlink_to(f)
    assert read_untrusted_file(link, 5000, [folder]) == b'x' * 5000


@pytest.mark.timeout(10)  # a read that blocked would end the test here
def test_untrusted_read_refuses_a_fifo_without_blocking(folder):
    fifo = folder / 'model.pt'
    os.mkfifo(fifo)  # no writer: a plain open() for reading would block forever
    _refused(fifo, 'named pipe', allowed=[folder])


@pytest.mark.parametrize('device', ['/dev/zero', '/dev/null', '/dev/urandom'])
def test_untrusted_read_refuses_devices(device):
    _refused(device, 'character device')


def test_untrusted_read_refuses_a_directory_and_a_symlink_loop(folder):
    (folder / 'dir.pt').mkdir()
    _refused(folder / 'dir.pt', 'directory', allowed=[folder])
    (folder / 'a').symlink_to(folder / 'b')
    (folder / 'b').symlink_to(folder / 'a')
    _refused(folder / 'a', 'symlink loop', allowed=[folder])


def test_untrusted_read_refuses_a_huge_file_unread(folder, monkeypatch):
    huge = folder / 'huge.pt'
    with open(huge, 'wb') as f:  # sparse: 64 GiB declared, nothing on disk
        f.truncate(64 << 30)
    reads = []
    monkeypatch.setattr(fsutil.os, 'read', lambda *a: reads.append(a) or b'')
    _refused(huge, 'more than the 1048576 allowed', allowed=[folder])
    assert not reads, 'nothing may be read from a file over the limit'


def test_untrusted_read_refuses_paths_outside_the_allowed_folders(folder, tmp_path):
    outside = tmp_path / 'outside.pt'
    outside.write_bytes(b'y')
    _refused(outside, 'outside the allowed folders', allowed=[folder])
    _refused(folder / '..' / 'outside.pt', 'outside the allowed folders', allowed=[folder])
    (folder / 'escape.pt').symlink_to(outside)  # a link out of the folder is judged by target
    _refused(folder / 'escape.pt', 'outside the allowed folders', allowed=[folder])
    with pytest.raises(FileNotFoundError):
        read_untrusted_file(folder / 'missing.pt', 10, [folder])


def test_untrusted_read_refuses_a_file_that_changes_while_read(folder, monkeypatch):
    f = folder / 'model.pt'
    f.write_bytes(b'a' * (3 << 20))  # three 1 MiB chunks
    real_read = os.read

    def read_then_append(fd, n):  # another writer appends after the first chunk
        data = real_read(fd, n)
        with open(f, 'ab') as w:
            w.write(b'b')
        return data

    monkeypatch.setattr(fsutil.os, 'read', read_then_append)
    _refused(f, 'changed while being read', max_bytes=8 << 20, allowed=[folder])


def test_untrusted_read_of_a_file_replaced_by_rename_is_consistent(folder, monkeypatch):
    f = folder / 'model.pt'
    f.write_bytes(b'a' * (3 << 20))
    real_read = os.read

    def read_then_replace(fd, n):  # an atomic writer replaces the file meanwhile
        data = real_read(fd, n)
        (folder / 'new').write_bytes(b'b' * 10)
        os.replace(folder / 'new', f)
        return data

    monkeypatch.setattr(fsutil.os, 'read', read_then_replace)
    assert read_untrusted_file(f, 8 << 20, [folder]) == b'a' * (3 << 20)
