"""Reviewing a task's samples: the dataset's state, deleting and undoing samples into a trash
folder, and restoring them. Plain Python (the collector node wires it to ROS services).

Trash layout: ``<trash>/<class>/<deleted_ns>-<file name>``, where ``deleted_ns`` is the
deletion time in integer nanoseconds since the epoch, the same for every file of one delete or
undo call (a *batch*). The original path is ``<dataset_dir>/<class>/<file name>``, so nothing
but the folder tree is needed to restore a file, after a restart too.

Paths given by a client are checked by :func:`resolve_sample` before anything is touched:
only regular image files directly in ``<dataset_dir>/<class>/`` of one of the task's classes,
no ``..``, no symbolic link (neither the file nor its class folder), nothing that resolves
elsewhere. Every call is all or nothing: one refused path and no file is moved; a move that
fails half way (I/O error) is rolled back.
"""
from __future__ import annotations

import errno
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from .imagefiles import IMAGE_SUFFIXES, list_images
from .fsutil import client_path, ensure_private_dir
from .tasks import InvalidNameError, Task, validate_name

__all__ = ['SampleError', 'TrashEntry', 'DatasetSummary', 'DatasetIndex', 'resolve_sample',
           'summarize', 'free_space', 'class_counts', 'delete_samples', 'newest_samples',
           'list_trash', 'restore_samples', 'prune_trash', 'MAX_PATHS']

#: Most paths one delete/restore call may name (and most samples one undo may remove).
MAX_PATHS = 1000


class SampleError(ValueError):
    """A refused request: a path outside the dataset, unknown sample, nothing to undo, ..."""


@dataclass(frozen=True)
class TrashEntry:
    """A deleted sample.

    Attributes:
        original: absolute path it had in the dataset (where restore puts it back).
        path: where it is in the trash.
        deleted_ns: deletion time, nanoseconds since the epoch (one value per batch).
        size: bytes.
    """

    original: Path
    path: Path
    deleted_ns: int
    size: int


@dataclass(frozen=True)
class DatasetSummary:
    """What the dataset holds (see gesture_interfaces/msg/DatasetState).

    Attributes:
        counts: image files per class, in the task's class order.
        newest: per class, ``(path, mtime in s)`` of the newest sample, or ``(None, 0.0)``.
        size_bytes: bytes of all samples. free_bytes: free bytes on the dataset's file system.
        trash: the trash, newest deletion first.
    """

    counts: tuple[int, ...]
    newest: tuple[tuple[Path | None, float], ...]
    size_bytes: int
    free_bytes: int
    trash: tuple[TrashEntry, ...]

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def trash_bytes(self) -> int:
        return sum(e.size for e in self.trash)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def _class_files(task: Task, label: str) -> list[tuple[Path, os.stat_result]]:
    """The image files of one class with their lstat (regular files only)."""
    folder = task.dataset_dir / label
    st = _lstat(folder)
    if st is None or not stat.S_ISDIR(st.st_mode):
        return []
    out = []
    for path in list_images(folder):
        st = _lstat(path)
        if st is not None and stat.S_ISREG(st.st_mode):
            out.append((path, st))
    return out


def class_counts(task: Task) -> list[int]:
    """Image files per class, in the task's class order."""
    return [len(list_images(task.dataset_dir / label)) for label in task.classes]


def summarize(task: Task) -> DatasetSummary:
    """Read the dataset's state from disk (one directory listing and one ``lstat`` per file;
    about 1 ms per 100 samples)."""
    counts, newest, size = [], [], 0
    for label in task.classes:
        files = _class_files(task, label)
        counts.append(len(files))
        size += sum(st.st_size for _, st in files)
        if files:
            path, st = max(files, key=lambda f: (f[1].st_mtime_ns, f[0].name))
            newest.append((path, st.st_mtime_ns / 1e9))
        else:
            newest.append((None, 0.0))
    return DatasetSummary(tuple(counts), tuple(newest), size, free_space(task.dataset_dir),
                          tuple(list_trash(task)))


def free_space(folder: Path) -> int:
    """Free bytes on the file system of ``folder`` (or of its nearest existing parent)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


class DatasetIndex:
    """What the dataset holds, kept up to date by the caller's own changes instead of listing
    the folder each time (the collector saves a frame, deletes, restores): counts, sizes and
    the newest sample per class, and the trash. :meth:`refresh` notices changes made by others
    (files copied in or removed: a class or trash folder's modification time moved) and only
    then lists the dataset again.

    Not thread-safe: the caller holds its lock around every call.
    """

    def __init__(self, task: Task):
        self.task = task
        self.rescan()

    def _folders(self) -> list[Path]:
        return [self.task.dataset_dir, self.task.trash,
                *(self.task.dataset_dir / c for c in self.task.classes),
                *(self.task.trash / c for c in self.task.classes)]

    @staticmethod
    def _mtime(folder: Path) -> int | None:
        st = _lstat(folder)
        return st.st_mtime_ns if st is not None else None

    def rescan(self) -> None:
        """List the dataset and the trash from disk."""
        self._seen = {f: self._mtime(f) for f in self._folders()}
        self._files: dict[str, dict[str, tuple[int, int]]] = {
            label: {p.name: (st.st_size, st.st_mtime_ns)
                    for p, st in _class_files(self.task, label)}
            for label in self.task.classes}
        self._size = {label: sum(s for s, _ in files.values())
                      for label, files in self._files.items()}
        self._newest = {label: self._find_newest(label) for label in self.task.classes}
        self.trash = tuple(list_trash(self.task))

    def refresh(self) -> bool:
        """Rescan when a folder changed since it was seen (someone else changed the dataset);
        True when it did."""
        if all(self._mtime(f) == seen for f, seen in self._seen.items()):
            return False
        self.rescan()
        return True

    def _find_newest(self, label: str) -> tuple[str, int] | None:
        files = self._files[label]
        if not files:
            return None
        name = max(files, key=lambda n: (files[n][1], n))
        return name, files[name][1]

    def _saw(self, folder: Path) -> None:
        if folder in self._seen:
            self._seen[folder] = self._mtime(folder)

    def added(self, path: Path) -> None:
        """``path`` (a file of a class folder) was written or restored."""
        label, st = path.parent.name, _lstat(path)
        files = self._files.get(label)
        if files is None or st is None or not stat.S_ISREG(st.st_mode):
            return
        old = files.get(path.name)
        self._size[label] += st.st_size - (old[0] if old else 0)
        files[path.name] = (st.st_size, st.st_mtime_ns)
        newest = self._newest[label]
        if newest is None or (st.st_mtime_ns, path.name) >= (newest[1], newest[0]):
            self._newest[label] = (path.name, st.st_mtime_ns)
        self._saw(path.parent)
        self._saw(self.task.dataset_dir)

    def removed(self, path: Path) -> None:
        """``path`` left its class folder (deleted, moved to the trash)."""
        label = path.parent.name
        files = self._files.get(label)
        if files is None or path.name not in files:
            return
        self._size[label] -= files.pop(path.name)[0]
        if self._newest[label] and self._newest[label][0] == path.name:
            self._newest[label] = self._find_newest(label)
        self._saw(path.parent)

    def trash_changed(self) -> None:
        """The trash changed (a delete, restore or prune): list it again (at most
        trash_max_files entries, not the dataset)."""
        self.trash = tuple(list_trash(self.task))
        for folder in (self.task.trash, *(self.task.trash / c for c in self.task.classes)):
            self._saw(folder)

    def count(self, label: str) -> int:
        files = self._files.get(label)
        return len(files) if files is not None else 0

    def counts(self) -> list[int]:
        """Samples per class, in the task's class order."""
        return [len(self._files[label]) for label in self.task.classes]

    def summary(self) -> DatasetSummary:
        """The dataset's state, as :func:`summarize` would read it from disk."""
        newest = []
        for label in self.task.classes:
            n = self._newest[label]
            newest.append((self.task.dataset_dir / label / n[0], n[1] / 1e9) if n else
                          (None, 0.0))
        return DatasetSummary(tuple(self.counts()), tuple(newest), sum(self._size.values()),
                              free_space(self.task.dataset_dir), self.trash)


def resolve_sample(task: Task, path: str) -> Path:
    """Check a sample path given by a client and return it as an absolute path.

    Accepts ``<dataset_dir>/<class>/<file>`` (absolute) or ``<class>/<file>`` (relative to the
    dataset), where ``<class>`` is one of the task's classes and ``<file>`` an existing regular
    image file (not hidden, an image suffix).

    Raises:
        SampleError: anything else, with the reason: empty, NUL bytes, ``..``, another folder,
            a symbolic link (file or class folder), not an image, missing.
    """
    try:
        p = client_path(path, task.dataset_dir)
    except ValueError as exc:
        raise SampleError(str(exc)) from None
    shown = repr(path if len(path) <= 200 else path[:200] + '...')
    if p.parent.parent != task.dataset_dir:
        raise SampleError(f'path {shown} is not a sample of the dataset {task.dataset_dir} '
                          '(<dataset>/<class>/<file>)')
    label = p.parent.name
    try:
        validate_name(label, 'class')
    except InvalidNameError as exc:
        raise SampleError(f'path {shown}: {exc}') from None
    if label not in task.classes:
        raise SampleError(f'path {shown}: {label!r} is not a class of task {task.name!r}')
    if p.name.startswith('.') or p.suffix.lower() not in IMAGE_SUFFIXES:
        raise SampleError(f'path {shown} is not a sample image ({", ".join(IMAGE_SUFFIXES)})')
    folder = _lstat(p.parent)
    if folder is None or not stat.S_ISDIR(folder.st_mode):
        raise SampleError(f'path {shown}: class folder {p.parent} is missing or a symbolic link')
    st = _lstat(p)
    if st is None:
        raise SampleError(f'path {shown}: no such sample')
    if stat.S_ISLNK(st.st_mode):
        raise SampleError(f'path {shown} is a symbolic link (refused)')
    if not stat.S_ISREG(st.st_mode):
        raise SampleError(f'path {shown} is not a regular file')
    return p


def _move(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` (never replacing an existing ``dst``); across file systems,
    copy + fsync + unlink."""
    if dst.exists() or dst.is_symlink():
        raise FileExistsError(errno.EEXIST, f'{dst} already exists')
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.copy2(src, dst)
        with open(dst, 'rb') as f:
            os.fsync(f.fileno())
        os.unlink(src)


def _trash_path(task: Task, original: Path, deleted_ns: int) -> Path:
    return task.trash / original.parent.name / f'{deleted_ns}-{original.name}'


def _move_all(pairs: list[tuple[Path, Path]]) -> None:
    """Move every ``(src, dst)``; on an error move the ones done back and re-raise."""
    done = []
    try:
        for src, dst in pairs:
            ensure_private_dir(dst.parent)
            _move(src, dst)
            done.append((src, dst))
    except OSError:
        for src, dst in reversed(done):
            try:
                _move(dst, src)
            except OSError:
                pass
        raise


def delete_samples(task: Task, paths: list[str], now_ns: int | None = None) -> list[Path]:
    """Move the samples named by ``paths`` (see :func:`resolve_sample`) to the trash, as one
    batch. All or nothing.

    Returns:
        The original absolute paths, in request order.

    Raises:
        SampleError: no paths, more than MAX_PATHS, a duplicate or a refused path (nothing moved).
        OSError: a move failed (the ones already moved are moved back).
    """
    if not paths:
        raise SampleError('no paths given')
    if len(paths) > MAX_PATHS:
        raise SampleError(f'at most {MAX_PATHS} paths per call, got {len(paths)}')
    resolved = [resolve_sample(task, p) for p in paths]
    if len(set(resolved)) != len(resolved):
        raise SampleError('the same sample is named twice')
    now_ns = time.time_ns() if now_ns is None else now_ns
    _move_all([(p, _trash_path(task, p, now_ns)) for p in resolved])
    return resolved


def newest_samples(task: Task, count: int, label: str = '') -> list[Path]:
    """The ``count`` newest samples (by modification time, then name), of ``label`` or of all
    classes when it is ''; newest first.

    Raises:
        SampleError: unknown or unsafe label, count outside 1..MAX_PATHS.
    """
    if not 1 <= count <= MAX_PATHS:
        raise SampleError(f'count must be in 1..{MAX_PATHS}, got {count}')
    if label:
        try:
            task.class_dir(label)
        except ValueError as exc:
            raise SampleError(str(exc)) from None
    labels = [label] if label else list(task.classes)
    files = [f for lb in labels for f in _class_files(task, lb)]
    files.sort(key=lambda f: (f[1].st_mtime_ns, f[0].name), reverse=True)
    return [p for p, _ in files[:count]]


def list_trash(task: Task) -> list[TrashEntry]:
    """Everything in the trash, newest deletion first. Files not named
    ``<deleted_ns>-<name>`` under a class folder are ignored (never restored or deleted)."""
    out = []
    root = task.trash
    for label in task.classes:
        folder = root / label
        st = _lstat(folder)
        if st is None or not stat.S_ISDIR(st.st_mode):
            continue
        for entry in os.scandir(folder):
            stamp, sep, name = entry.name.partition('-')
            if not (sep and stamp.isdigit() and name) or not entry.is_file(follow_symlinks=False):
                continue
            out.append(TrashEntry(task.dataset_dir / label / name, Path(entry.path),
                                  int(stamp), entry.stat(follow_symlinks=False).st_size))
    out.sort(key=lambda e: (e.deleted_ns, str(e.original)), reverse=True)
    return out


def restore_samples(task: Task, paths: list[str]) -> list[Path]:
    """Move samples back from the trash to their original paths. ``paths`` are original
    dataset paths (absolute or ``<class>/<file>``); empty = the most recent batch. All or
    nothing.

    Returns:
        The restored absolute dataset paths.

    Raises:
        SampleError: empty trash, more than MAX_PATHS, a path not in the trash or outside the
            dataset, or a file already at the original path (nothing moved).
        OSError: a move failed (the ones already moved go back to the trash).
    """
    if len(paths) > MAX_PATHS:
        raise SampleError(f'at most {MAX_PATHS} paths per call, got {len(paths)}')
    trash = list_trash(task)
    if not trash:
        raise SampleError('the trash is empty')
    if not paths:
        chosen = [e for e in trash if e.deleted_ns == trash[0].deleted_ns]
    else:
        by_original: dict[Path, TrashEntry] = {}
        for e in reversed(trash):  # the newest deletion of a name wins
            by_original[e.original] = e
        chosen = []
        for raw in paths:
            try:
                p = client_path(raw, task.dataset_dir)
            except ValueError as exc:
                raise SampleError(f'{exc}: not a dataset path') from None
            if p not in by_original:
                raise SampleError(f'{raw!r} is not in the trash')
            chosen.append(by_original[p])
        if len({e.original for e in chosen}) != len(chosen):
            raise SampleError('the same sample is named twice')
    for e in chosen:
        if e.original.exists() or e.original.is_symlink():
            raise SampleError(f'{e.original} exists already; not restored')
        folder = _lstat(e.original.parent)
        if folder is not None and not stat.S_ISDIR(folder.st_mode):
            raise SampleError(f'{e.original.parent} is not a folder')
    _move_all([(e.path, e.original) for e in chosen])
    return [e.original for e in chosen]


def prune_trash(task: Task, max_age: float, max_files: int, now_ns: int | None = None,
                trash: list[TrashEntry] | None = None) -> int:
    """Delete from the trash for good what is older than ``max_age`` seconds (0: no age limit)
    and the oldest beyond ``max_files`` entries. Returns the number of files deleted.
    ``trash``: the trash as listed already (list_trash; a DatasetIndex keeps it)."""
    trash = list_trash(task) if trash is None else list(trash)
    now_ns = time.time_ns() if now_ns is None else now_ns
    doomed = trash[max(max_files, 0):]
    if max_age > 0:
        limit = now_ns - int(max_age * 1e9)
        doomed += [e for e in trash[:max(max_files, 0)] if e.deleted_ns < limit]
    removed = 0
    for e in doomed:
        try:
            e.path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed
