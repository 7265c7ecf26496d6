"""Crash-safe file writes.

A file written with :func:`atomic_write` is either absent or complete under its final name:
the data goes to a temporary file in the same directory, is flushed and fsync'ed, renamed over
the target (``os.replace`` is atomic on POSIX within one file system) and the directory entry
is fsync'ed. A crash or a full disk at any point leaves the previous file untouched.
"""
from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO
from collections.abc import Callable

__all__ = ['atomic_write', 'ensure_private_dir', 'require_free_space', 'client_path',
           'UntrustedFileError', 'read_untrusted_file', 'is_within']


def ensure_private_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and parents) owner-only (mode 0o700) if missing; return it as a Path.

    Raises:
        OSError: the directory cannot be created (permissions, read-only or full disk).
    """
    p = Path(path)
    missing = []
    for parent in (p, *p.parents):
        if parent.exists():
            break
        missing.append(parent)
    for folder in reversed(missing):  # mkdir(parents=True) would give parents the umask mode
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
    if not p.is_dir():
        raise NotADirectoryError(f'{p} exists and is not a directory')
    return p


def require_free_space(directory: str | os.PathLike, nbytes: int, margin: int = 1 << 20) -> None:
    """Raise ``OSError(ENOSPC)`` unless ``directory``'s file system has ``nbytes + margin``
    bytes free for an unprivileged writer (``shutil.disk_usage(...).free``)."""
    free = shutil.disk_usage(directory).free
    if free < nbytes + margin:
        raise OSError(errno.ENOSPC,
                      f'not enough free space in {directory}: {free} bytes free, '
                      f'{nbytes + margin} needed')


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], *,
                 expected_size: int = 0, mode: int = 0o600) -> Path:
    """Write a file atomically.

    Args:
        path: final file name; its directory must exist.
        write: called with a binary file object open on the temporary file.
        expected_size: bytes the file will take, checked against free space first (0: no check).
        mode: permission bits of the new file (default owner read/write only).

    Returns:
        The final path.

    Raises:
        OSError: no space (``errno.ENOSPC``), permissions, I/O error. The temporary file is
            removed and any previous file at ``path`` is left unchanged.
    """
    target = Path(path)
    directory = target.parent
    if expected_size:
        require_free_space(directory, expected_size)
    fd, tmp = tempfile.mkstemp(prefix=f'.{target.name}.', suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            os.fchmod(f.fileno(), mode)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target


def client_path(path: object, base: Path) -> Path:
    """A path a client sent, as a normalised absolute path: relative ones are taken from
    ``base``. Only the text is checked here; callers check where it points.

    Raises:
        ValueError: not a string, empty, a NUL byte or a ``..`` component (the message shows
            the value with ``repr``, cut at 200 characters).
    """
    if not isinstance(path, str) or not path:
        raise ValueError('empty path')
    shown = repr(path if len(path) <= 200 else path[:200] + '...')
    if '\0' in path:
        raise ValueError(f'path {shown} contains a NUL byte')
    p = Path(path)
    if '..' in p.parts:
        raise ValueError(f'path {shown} contains ".."')
    return Path(os.path.normpath(p if p.is_absolute() else base / p))


class UntrustedFileError(OSError):
    """A file named by someone else (e.g. an announced model path) that must not be read: not a
    regular file, too big, outside the allowed folders, or changed while it was read."""


def is_within(path: str | os.PathLike, folders) -> bool:
    """True when ``path`` (already resolved) is one of ``folders`` (resolved) or below one."""
    p = Path(path)
    return any(p == Path(f) or Path(f) in p.parents for f in folders)


def read_untrusted_file(path: str | os.PathLike, max_bytes: int, allowed_dirs=None) -> bytes:
    """Read the whole of a regular file named by an untrusted party, without ever blocking on it
    and without reading more than ``max_bytes``.

    The path is resolved (symlinks followed, loops refused) and must lie in one of
    ``allowed_dirs`` (resolved; None: anywhere). It is opened with ``O_NONBLOCK | O_NOFOLLOW |
    O_NOCTTY`` (so a FIFO or a device cannot stall the reader and the last component cannot be
    swapped for a symlink after the check) and ``fstat``'ed before any byte is read: only a
    regular file of at most ``max_bytes`` is read. Size and modification time are compared
    before and after reading, so a file rewritten in place meanwhile is refused rather than
    returned half old, half new (a file replaced by rename is harmless: the open descriptor
    keeps reading the old one).

    Returns:
        The file's bytes.

    Raises:
        FileNotFoundError: no such file.
        UntrustedFileError: outside ``allowed_dirs``, a symlink loop, not a regular file (FIFO,
            device, socket, directory), larger than ``max_bytes``, or changed while read.
        OSError: other I/O errors (permissions, ...).
    """
    try:
        real = Path(os.path.realpath(os.fspath(path), strict=True))
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, 'no such file', os.fspath(path)) from None
    except (OSError, RuntimeError) as exc:  # ELOOP; RuntimeError from Python < 3.13
        if isinstance(exc, OSError) and exc.errno != errno.ELOOP:
            raise
        raise UntrustedFileError(errno.ELOOP, 'symlink loop', os.fspath(path)) from None
    if allowed_dirs is not None:
        allowed = [os.path.realpath(os.fspath(d)) for d in allowed_dirs]
        if not is_within(real, allowed):
            raise UntrustedFileError(errno.EACCES, 'outside the allowed folders '
                                     f'({", ".join(allowed)})', os.fspath(path))
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, 'O_NOCTTY', 0) | \
        getattr(os, 'O_CLOEXEC', 0)
    try:
        fd = os.open(real, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the last component became a symlink after realpath
            raise UntrustedFileError(errno.ELOOP, 'became a symlink', os.fspath(path)) from None
        raise
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            kind = {stat.S_IFIFO: 'a named pipe (FIFO)', stat.S_IFCHR: 'a character device',
                    stat.S_IFBLK: 'a block device', stat.S_IFSOCK: 'a socket',
                    stat.S_IFDIR: 'a directory'}.get(stat.S_IFMT(before.st_mode), 'special')
            raise UntrustedFileError(errno.EINVAL, f'not a regular file: {kind}',
                                     os.fspath(path))
        if before.st_size > max_bytes:
            raise UntrustedFileError(errno.EFBIG, f'{before.st_size} bytes, more than the '
                                     f'{max_bytes} allowed', os.fspath(path))
        os.set_blocking(fd, True)  # regular files never block on O_NONBLOCK anyway
        # Exactly the size fstat gave, then one byte more to see whether it grew: a file that
        # keeps growing costs at most size / 1 MiB + 1 reads, never a trickle up to max_bytes.
        chunks, total = [], 0
        while total < before.st_size:
            chunk = os.read(fd, min(1 << 20, before.st_size - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        grew = bool(os.read(fd, 1))
        after = os.fstat(fd)
        if grew or total != before.st_size or (after.st_size, after.st_mtime_ns) != \
                (before.st_size, before.st_mtime_ns):
            raise UntrustedFileError(errno.EAGAIN, 'changed while being read',
                                     os.fspath(path))
        return b''.join(chunks)
    finally:
        os.close(fd)
