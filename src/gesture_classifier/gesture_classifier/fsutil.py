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
import tempfile
from pathlib import Path
from typing import BinaryIO
from collections.abc import Callable

__all__ = ['atomic_write', 'ensure_private_dir', 'require_free_space', 'client_path']


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
