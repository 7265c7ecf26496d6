"""Moving a model file between computers in chunks, checked by size and SHA-256.

Plain Python: the trainer node serves :func:`read_chunk` on its ``get_model`` service; the
classifier node fetches with :func:`fetch_file`, giving it a function that asks the service for
one chunk. Nothing partial is ever used: the file is written with :func:`.fsutil.atomic_write`
and only renamed into place when its size and hash match the announcement.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

from .fsutil import atomic_write

__all__ = ['CHUNK_BYTES', 'TransferError', 'file_digest', 'read_chunk', 'fetch_file',
           'SHA256_PATTERN']

#: Bytes per request: 4 MiB keeps each service response well inside the 16 MiB Fast DDS
#: segments of config/fastdds.xml; a ResNet-18 file is 11 requests.
CHUNK_BYTES = 4 * 1024 * 1024
SHA256_PATTERN = re.compile(r'[0-9a-f]{64}')


class TransferError(RuntimeError):
    """A transfer that failed or whose result does not match the announcement."""


def file_digest(path: str | os.PathLike) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex) of a file, read in 1 MiB blocks."""
    h, size = hashlib.sha256(), 0
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def read_chunk(path: str | os.PathLike, offset: int, length: int) -> tuple[int, bytes]:
    """(file size, bytes [offset, offset + length)) of ``path``.

    Raises:
        ValueError: ``length`` not in 1..CHUNK_BYTES or ``offset`` beyond the end.
        OSError: the file cannot be read.
    """
    if not 1 <= length <= CHUNK_BYTES:
        raise ValueError(f'length must be in 1..{CHUNK_BYTES}, got {length}')
    with open(path, 'rb') as f:
        size = os.fstat(f.fileno()).st_size
        if offset > size:
            raise ValueError(f'offset {offset} is beyond the end ({size} bytes)')
        f.seek(offset)
        return size, f.read(length)


def fetch_file(get_chunk: Callable[[int, int], tuple[int, bytes]], dest: str | os.PathLike,
               size: int, sha256: str, max_bytes: int) -> Path:
    """Fetch ``size`` bytes with ``get_chunk(offset, length) -> (total size, data)`` into
    ``dest`` (atomically) and check them against ``size`` and ``sha256``.

    Raises:
        TransferError: an announcement without a valid size/hash or over ``max_bytes``, a
            source whose size differs from the announcement, a short chunk, or a hash that
            does not match; ``dest`` is then untouched (nothing partial is kept).
        OSError: ``dest`` cannot be written (no space, permissions).
        Whatever ``get_chunk`` raises (timeouts, refusals).
    """
    if not SHA256_PATTERN.fullmatch(sha256 or ''):
        raise TransferError(f'announcement has no valid SHA-256 ({str(sha256)[:80]!r})')
    if not 0 < size <= max_bytes:
        raise TransferError(f'announced size {size} is not in 1..{max_bytes} bytes')

    def write(f) -> None:
        h, offset = hashlib.sha256(), 0
        while offset < size:
            length = min(CHUNK_BYTES, size - offset)
            total, data = get_chunk(offset, length)
            if len(data) > length:
                raise TransferError(f'the source sent {len(data)} bytes for {length} asked')
            if total != size:
                raise TransferError(f'the source has {total} bytes, the announcement says '
                                    f'{size}: the model changed or the announcement is wrong')
            if not data:
                raise TransferError(f'the source sent no data at offset {offset}')
            f.write(data)
            h.update(data)
            offset += len(data)
        if h.hexdigest() != sha256:
            raise TransferError(f'SHA-256 {h.hexdigest()} of the received {size} bytes does '
                                f'not match the announced {sha256}')

    return atomic_write(dest, write, expected_size=size)
