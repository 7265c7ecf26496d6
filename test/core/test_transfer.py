"""Chunked model transfer checked by size and SHA-256 (plain Python, no ROS)."""
from __future__ import annotations

import hashlib

import pytest

from gesture_classifier.core import transfer
from gesture_classifier.core.transfer import (ChunkReceiver, TransferError, fetch_file,
                                              file_digest, read_chunk)


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


# -- the receiving end: an upload in chunks (the trainer's put_model) ---------------------------
def _chunks(data: bytes, size: int = 1000):
    return [(offset, data[offset:offset + size]) for offset in range(0, len(data), size)]


def test_an_upload_in_order_gives_the_checked_file(source, tmp_path):
    data = source.read_bytes()
    receiver = ChunkReceiver(tmp_path / 'uploads', max_bytes=10**6)
    digest = hashlib.sha256(data).hexdigest()
    answers = [receiver.put('up-1', len(data), digest, offset, chunk)
               for offset, chunk in _chunks(data)]
    assert answers[:-1] == [None] * 5 and receiver.received == len(data)
    assert answers[-1].read_bytes() == data and answers[-1].parent == tmp_path / 'uploads'
    receiver.discard()  # the caller's, once used
    assert list((tmp_path / 'uploads').iterdir()) == []


@pytest.mark.parametrize('fault, match', [
    ('offset', 'offset 2000 is not the 1000 bytes'),
    ('other id', "no upload 'up-2' in progress"),
    ('size changes', 'must be the same in every chunk'),
    ('hash', 'does not match the announced'),
    ('past the end', 'past the file'),
    ('empty chunk', 'must hold 1..1000 bytes'),
])
def test_a_chunk_out_of_order_or_unlike_its_upload_abandons_it(source, tmp_path, fault, match):
    data = source.read_bytes()
    size = 1500 if fault == 'past the end' else len(data)
    digest = '0' * 64 if fault == 'hash' else hashlib.sha256(data).hexdigest()
    receiver = ChunkReceiver(tmp_path / 'uploads', max_bytes=10**6)
    assert receiver.put('up-1', size, digest, 0, data[:1000]) is None
    second = {  # the next chunk: (upload_id, size, offset, data)
        'offset': ('up-1', size, 2000, data[2000:3000]),
        'other id': ('up-2', size, 1000, data[1000:2000]),
        'size changes': ('up-1', size + 1, 1000, data[1000:2000]),
        'hash': ('up-1', size, 1000, data[1000:]),  # the rest, in one go: complete
        'past the end': ('up-1', size, 1000, data[1000:2000]),
        'empty chunk': ('up-1', size, 1000, b''),
    }[fault]
    upload_id, size, offset, chunk = second
    receiver.max_bytes = 10**6
    with pytest.raises(TransferError, match=match):
        if fault == 'hash':  # chunks of at most 1000 bytes
            for at in range(1000, len(data), 1000):
                receiver.put(upload_id, size, digest, at, data[at:at + 1000])
        else:
            receiver.put(upload_id, size, digest, offset, chunk)
    assert receiver.received == 0 and list((tmp_path / 'uploads').iterdir()) == []
    with pytest.raises(TransferError, match='no upload'):  # abandoned: only offset 0 restarts
        receiver.put('up-1', len(data), digest, 1000, data[1000:2000])


@pytest.mark.parametrize('upload_id, size, digest, match', [
    ('../../x', 10, 'a' * 64, 'upload_id'),
    ('', 10, 'a' * 64, 'upload_id'),
    ('x' * 65, 10, 'a' * 64, 'upload_id'),
    ('up', 10, 'A' * 64, 'sha256'),
    ('up', 10, 'a' * 63, 'sha256'),
    ('up', 0, 'a' * 64, 'size 0'),
    ('up', 10**6 + 1, 'a' * 64, 'size 1000001'),
])
def test_hostile_uploads_are_refused_before_anything_is_written(tmp_path, upload_id, size,
                                                                   digest, match):
    receiver = ChunkReceiver(tmp_path / 'uploads', max_bytes=10**6)
    with pytest.raises(TransferError, match=match):
        receiver.put(upload_id, size, digest, 0, b'x' * 10)
    assert not (tmp_path / 'uploads').exists()


def test_a_new_upload_abandons_the_one_in_progress(source, tmp_path):
    data = source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    receiver = ChunkReceiver(tmp_path / 'uploads', max_bytes=10**6)
    receiver.put('first', len(data), digest, 0, data[:1000])
    receiver.put('second', len(data), digest, 0, data[:1000])
    assert len(list((tmp_path / 'uploads').iterdir())) == 1  # the first one's file is gone
    with pytest.raises(TransferError, match="no upload 'first'"):
        receiver.put('first', len(data), digest, 1000, data[1000:2000])
