"""Moving a model file between computers in chunks, checked by size and SHA-256.

Plain Python: the trainer node serves :func:`read_chunk` on its ``get_model`` service; the
classifier node fetches with :func:`fetch_file`, giving it a function that asks the service for
one chunk. Nothing partial is ever used: the file is written with :func:`.fsutil.atomic_write`
and only renamed into place when its size and hash match the announcement. The other way (an
upload to the trainer's ``put_model``), :class:`ChunkReceiver` puts the chunks together and
hands over the file only once it is complete and its hash matches.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from .fsutil import atomic_write, require_free_space

__all__ = ['CHUNK_BYTES', 'TransferError', 'file_digest', 'read_chunk', 'fetch_file',
           'SHA256_PATTERN', 'ChunkReceiver', 'MAX_UPLOAD_BYTES', 'UPLOAD_ID_PATTERN']

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


#: Largest model file a client may upload (put_model): a ResNet-18 file is about 45 MB.
MAX_UPLOAD_BYTES = 256 * 1024 * 1024
UPLOAD_ID_PATTERN = re.compile(r'[A-Za-z0-9_-]{1,64}')


class ChunkReceiver:
    """The receiving end of a chunked upload (the trainer's ``put_model``; :func:`fetch_file`
    is the fetching end of ``get_model``): chunks appended in order into a hidden file in
    ``folder``, the whole checked against the size and SHA-256 the client announced.

    One upload at a time. A chunk at offset 0 starts an upload and abandons one in progress
    (its file is deleted); every error abandons the current upload too, so nothing partial
    is ever left or used. Not thread-safe: the caller holds its own lock.

    Args:
        folder: where the upload is written (created when missing); best on the file system
            the file ends up on.
        max_bytes: largest file accepted (default :data:`MAX_UPLOAD_BYTES`).
    """

    def __init__(self, folder: str | os.PathLike, max_bytes: int = MAX_UPLOAD_BYTES):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._id = ''
        self._file = None
        self._path: Path | None = None
        self._hash = hashlib.sha256()
        self._size = 0
        self._sha256 = ''
        self.received = 0

    def put(self, upload_id: str, size: int, sha256: str, offset: int,
            data: bytes) -> Path | None:
        """Append ``data`` at ``offset`` to upload ``upload_id`` of a ``size``-byte file with
        SHA-256 ``sha256``. Returns None while bytes are missing, and the path of the complete,
        checked file with the last chunk: the caller's to use and delete (:meth:`discard`).

        Raises:
            TransferError: a hostile or inconsistent chunk (the id, size, hash, offset or length
                out of range or unlike the upload's; a file whose hash does not match); the
                upload is abandoned.
            OSError: the file cannot be written (no space: checked first, for the whole size);
                the upload is abandoned.
        """
        try:
            return self._put(upload_id, size, sha256, offset, data)
        except BaseException:
            self.discard()
            raise

    def _put(self, upload_id, size, sha256, offset, data) -> Path | None:
        if not UPLOAD_ID_PATTERN.fullmatch(upload_id or ''):
            raise TransferError(f'upload_id {str(upload_id)[:80]!r} is not 1 to 64 characters '
                                'of [A-Za-z0-9_-]')
        if not SHA256_PATTERN.fullmatch(sha256 or ''):
            raise TransferError(f'sha256 {str(sha256)[:80]!r} is not 64 lowercase hex digits')
        if not 0 < size <= self.max_bytes:
            raise TransferError(f'size {size} is not in 1..{self.max_bytes} bytes')
        if not 0 < len(data) <= CHUNK_BYTES:
            raise TransferError(f'a chunk must hold 1..{CHUNK_BYTES} bytes, got {len(data)}')
        if offset == 0:
            self.discard()
            self.folder.mkdir(parents=True, exist_ok=True)
            require_free_space(self.folder, size)
            fd, name = tempfile.mkstemp(prefix='.upload-', suffix='.pt', dir=self.folder)
            self._file, self._path = os.fdopen(fd, 'wb'), Path(name)
            self._id, self._size, self._sha256 = upload_id, size, sha256
            self._hash, self.received = hashlib.sha256(), 0
        elif upload_id != self._id:
            raise TransferError(f'no upload {upload_id!r} in progress (another one started, or '
                                'it failed): start again at offset 0')
        if (size, sha256) != (self._size, self._sha256):
            raise TransferError('size and sha256 must be the same in every chunk of an upload')
        if offset != self.received:
            raise TransferError(f'offset {offset} is not the {self.received} bytes received '
                                'so far (chunks go in order)')
        if offset + len(data) > size:
            raise TransferError(f'the chunk ends at {offset + len(data)}, past the file\'s '
                                f'{size} bytes')
        self._file.write(data)
        self._hash.update(data)
        self.received += len(data)
        if self.received < size:
            return None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        if self._hash.hexdigest() != sha256:
            raise TransferError(f'SHA-256 {self._hash.hexdigest()} of the {size} bytes '
                                f'received does not match the announced {sha256}')
        self._id = ''  # complete: no more chunks; the file is the caller's
        return self._path

    def discard(self) -> None:
        """Abandon the upload in progress, or delete the complete file :meth:`put` returned."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()
            self._path = None
        self._id, self.received = '', 0
