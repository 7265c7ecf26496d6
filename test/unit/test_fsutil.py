"""Crash-safe writes and free-space checks."""
from __future__ import annotations

import errno
import os
import stat

import pytest

from gesture_classifier.fsutil import atomic_write, ensure_private_dir, require_free_space


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
