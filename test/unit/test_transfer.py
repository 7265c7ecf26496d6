"""Chunked model transfer checked by size and SHA-256 (plain Python, no ROS)."""
from __future__ import annotations

import hashlib

import pytest

from gesture_classifier import transfer
from gesture_classifier.transfer import (TransferError, fetch_file, file_digest, read_chunk)


@pytest.fixture
def source(tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, 'CHUNK_BYTES', 1000)  # several chunks for a small file
    path = tmp_path / 'model.pt'
    path.write_bytes(bytes(range(256)) * 20)  # 5120 bytes
    return path


def _served(path):
    return lambda offset, length: read_chunk(path, offset, length)


def test_fetch_round_trip(source, tmp_path):
    size, digest = file_digest(source)
    assert (size, digest) == (5120, hashlib.sha256(source.read_bytes()).hexdigest())
    calls = []

    def get(offset, length):
        calls.append((offset, length))
        return read_chunk(source, offset, length)

    dest = fetch_file(get, tmp_path / 'got.pt', size, digest, 10**6)
    assert dest.read_bytes() == source.read_bytes()
    assert calls == [(0, 1000), (1000, 1000), (2000, 1000), (3000, 1000), (4000, 1000),
                     (5000, 120)]


@pytest.mark.parametrize('change', ['hash', 'size+1', 'size-1', 'tampered'])
def test_a_mismatch_is_refused_and_nothing_is_kept(source, tmp_path, change):
    size, digest = file_digest(source)
    get = _served(source)
    if change == 'hash':
        digest = '0' * 64
    elif change == 'size+1':
        size += 1
    elif change == 'size-1':
        size -= 1
    else:
        def get(offset, length):  # a man in the middle flips one byte
            total, data = read_chunk(source, offset, length)
            return total, (bytes([data[0] ^ 1]) + data[1:]) if offset == 2000 else data
    dest = tmp_path / 'got.pt'
    dest.write_bytes(b'previous')
    with pytest.raises(TransferError):
        fetch_file(get, dest, size, digest, 10**6)
    assert dest.read_bytes() == b'previous', 'the previous file stays, nothing partial'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['got.pt', 'model.pt']


@pytest.mark.parametrize('size,digest,match', [
    (5120, '', 'no valid SHA-256'), (5120, '../../etc/passwd' + '0' * 48, 'no valid SHA-256'),
    (5120, 'A' * 64, 'no valid SHA-256'), (0, '0' * 64, 'not in 1..'),
    (10**7, '0' * 64, 'not in 1..')])
def test_bad_announcements_are_refused_before_fetching(source, tmp_path, size, digest, match):
    def get(offset, length):
        raise AssertionError('nothing may be fetched')
    with pytest.raises(TransferError, match=match):
        fetch_file(get, tmp_path / 'got.pt', size, digest, 10**6)


def test_a_source_sending_more_than_asked_is_refused(source, tmp_path):
    size, digest = file_digest(source)
    with pytest.raises(TransferError, match='bytes for'):
        fetch_file(lambda o, n: (size, b'x' * (n + 1)), tmp_path / 'got.pt', size, digest,
                   10**6)


def test_read_chunk_checks_its_range(source):
    with pytest.raises(ValueError, match='length'):
        read_chunk(source, 0, 0)
    with pytest.raises(ValueError, match='beyond the end'):
        read_chunk(source, 6000, 10)
    assert read_chunk(source, 5120, 10) == (5120, b'')
