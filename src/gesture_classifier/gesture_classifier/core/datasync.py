"""Mirroring a task's dataset from the collector's computer to the trainer's, over ROS,
incrementally and checked by SHA-256. Plain Python: the collector node serves
:func:`list_samples` and :func:`read_samples` on its ``list_samples`` / ``get_samples`` services
(gesture_interfaces/srv/ListSamples, GetSamples); a trainer with ``dataset_source: collector``
runs :func:`sync_dataset` before each goal with two functions that call those services.

What the trainer's copy (its own ``<dataset_dir>``) becomes: exactly the collector's samples.
A sample it already holds with the same bytes (same SHA-256) is not fetched again; a missing or
different one is fetched, checked against the listed size and SHA-256 and only then written
(atomically, :func:`.fsutil.atomic_write`); a sample the collector no longer has is moved to
the trainer's trash (restorable, see samples.py), never deleted. A sample that fails its check
is refused and reported; nothing partial is ever used.

The names on the wire come from another computer and are untrusted on both sides: a label must
be one of the task's classes, a file name one safe path component (:data:`SAMPLE_NAME`), sizes
and counts are bounded, and the collector reads files only through
:func:`.fsutil.read_untrusted_file` inside its dataset folder.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .imagefiles import IMAGE_SUFFIXES, list_images
from .fsutil import atomic_write, ensure_private_dir, read_untrusted_file, require_free_space
from .samples import MAX_PATHS, SampleError, delete_samples
from .tasks import Task
from .transfer import CHUNK_BYTES, SHA256_PATTERN, file_digest

__all__ = ['SAMPLE_NAME', 'MAX_SAMPLE_BYTES', 'BATCH_BYTES', 'MAX_PAGE', 'MAX_BATCH',
           'MAX_SAMPLES', 'SampleEntry', 'Listing', 'SampleData', 'SyncReport',
           'DatasetSyncError', 'SyncCancelled', 'DigestCache', 'check_sample_name', 'list_samples',
           'listing_digest', 'read_listing', 'read_samples', 'sync_dataset']

LOG = logging.getLogger(__name__)

#: A transferable sample file name: one path component of 1-200 characters, letters, digits,
#: space, ``._()+-``, not starting with ``.`` (no hidden files, ``.`` or ``..``), no ``/`` or
#: NUL; it must also end with one of dataset.IMAGE_SUFFIXES. Collected samples
#: (``<uuid1>.jpg``) and the DLI notebook's names match.
SAMPLE_NAME = re.compile(r'[A-Za-z0-9_][A-Za-z0-9 ._()+-]{0,199}')
#: Largest sample file transferred (4 MiB, transfer.CHUNK_BYTES: one message); a collected
#: 640x480 JPEG is about 50-150 kB.
MAX_SAMPLE_BYTES = CHUNK_BYTES
#: Most sample bytes in one ``get_samples`` response (the first sample is always sent).
BATCH_BYTES = CHUNK_BYTES
#: Most listing entries per ``list_samples`` page, and most samples per ``get_samples`` call.
MAX_PAGE = 5000
MAX_BATCH = 64
#: Most samples a listing may announce (a bound against a hostile or broken collector).
MAX_SAMPLES = 200_000
#: Times a listing is read again when the dataset changed between its pages.
LISTING_ATTEMPTS = 3


class DatasetSyncError(RuntimeError):
    """The dataset could not be mirrored: the collector is unreachable or refused, its task
    has other classes, its listing is malformed, or the local copy cannot be changed."""


class SyncCancelled(DatasetSyncError):
    """``should_stop`` returned True (the goal was cancelled)."""


@dataclass(frozen=True)
class SampleEntry:
    """One listed sample: class label, file name, size in bytes, SHA-256 (64 hex digits)."""

    label: str
    name: str
    size: int
    sha256: str

    @property
    def key(self) -> str:
        """``'<label>/<name>'`` (as dataset.sample_name names a training image)."""
        return f'{self.label}/{self.name}'


@dataclass(frozen=True)
class Listing:
    """A dataset listing (ListSamples.srv): the entries in class then name order, the task's
    classes, how many image files were left out (``untransferable``) and why (``note``: the
    first few ``<label>/<name>: reason``)."""

    task: str
    class_names: tuple[str, ...]
    entries: tuple[SampleEntry, ...]
    untransferable: int = 0
    note: str = ''

    @property
    def digest(self) -> str:
        return listing_digest(self.entries)


@dataclass(frozen=True)
class SampleData:
    """One ``get_samples`` answer entry (SampleFile.msg): bytes and their SHA-256, or why not."""

    label: str
    name: str
    sha256: str = ''
    data: bytes = b''
    error: str = ''


@dataclass
class SyncReport:
    """What :func:`sync_dataset` did.

    Attributes:
        fetched / fetched_bytes: samples written from the collector and their bytes.
        unchanged: samples the local copy already held with the same SHA-256.
        removed: local samples moved to the trash because the collector no longer has them.
        refused: ``(key, reason)`` of listed samples not written (bad name or size, failed
            check, deleted on the collector meanwhile).
        untransferable: image files the collector could not list (names or size).
    """

    fetched: int = 0
    fetched_bytes: int = 0
    unchanged: int = 0
    removed: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)
    untransferable: int = 0

    def describe(self) -> str:
        """One line for logs and result messages."""
        text = (f'dataset from the collector: {self.fetched} sample(s) fetched '
                f'({self.fetched_bytes / 1e6:.1f} MB), {self.unchanged} unchanged, '
                f'{self.removed} moved to the trash')
        if self.refused:
            shown = '; '.join(f'{k}: {r}' for k, r in self.refused[:3])
            more = '; ...' if len(self.refused) > 3 else ''
            text += f', {len(self.refused)} refused ({shown}{more})'
        if self.untransferable:
            text += f', {self.untransferable} not transferable on the collector'
        return text


def check_sample_name(name: object) -> str:
    """``name`` if it is a transferable sample file name (:data:`SAMPLE_NAME` and an image
    suffix), else ValueError saying why (the value shown with ``repr``)."""
    if not isinstance(name, str) or not SAMPLE_NAME.fullmatch(name):
        shown = repr(name[:80] if isinstance(name, str) else name)
        raise ValueError(f'file name {shown} is not a safe sample name (one path component '
                         'of letters, digits, space and ._()+-, not starting with ".")')
    if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f'file name {name!r} is not an image ({", ".join(IMAGE_SUFFIXES)})')
    return name


def _check_label(task: Task, label: object) -> str:
    if not isinstance(label, str) or label not in task.classes:
        shown = repr(label[:80] if isinstance(label, str) else label)
        raise ValueError(f'label {shown} is not a class of task {task.name!r} '
                         f'{list(task.classes)}')
    return label


class DigestCache:
    """SHA-256 of files, recomputed only when a file's (inode, size, mtime, ctime) changed, so
    listing a dataset of hundreds of samples again costs a ``stat`` per file. Thread-safe."""

    def __init__(self, max_entries: int = MAX_SAMPLES):
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple[int, int, int, int], str]] = {}
        self._max = max_entries

    def digest(self, path: Path, st: os.stat_result | None = None) -> tuple[int, str]:
        """(size in bytes, SHA-256 hex) of ``path``. Raises OSError (gone, unreadable)."""
        st = st or path.stat()
        key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        with self._lock:
            hit = self._cache.get(str(path))
        if hit and hit[0] == key:
            return st.st_size, hit[1]
        size, sha = file_digest(path)
        with self._lock:
            if len(self._cache) >= self._max:
                self._cache.clear()
            self._cache[str(path)] = (key, sha)
        return size, sha


def _local_samples(task: Task, cache: DigestCache, only_transferable: bool):
    """Yield ``(label, path, size, sha256 | None, reason)`` for the image files of every class
    folder (the files dataset.list_images reads for training)."""
    for label in task.classes:
        for path in list_images(task.dataset_dir / label):
            try:
                if only_transferable:
                    check_sample_name(path.name)
                st = path.stat()
                if only_transferable and st.st_size > MAX_SAMPLE_BYTES:
                    raise ValueError(f'{st.st_size} bytes, more than the {MAX_SAMPLE_BYTES} '
                                     'a transfer allows')
                size, sha = cache.digest(path, st)
            except (OSError, ValueError) as exc:
                yield label, path, 0, None, str(exc)
                continue
            yield label, path, size, sha, ''


def list_samples(task: Task, cache: DigestCache) -> Listing:
    """The collector's side of ``list_samples``: every transferable image file of the task's
    class folders with its size and SHA-256, in class then name order; files with unsafe names,
    over :data:`MAX_SAMPLE_BYTES` or unreadable go to ``untransferable`` (not an error)."""
    entries, left_out = [], []
    for label, path, size, sha, reason in _local_samples(task, cache, True):
        if sha is None:
            left_out.append((f'{label}/{path.name}', reason))
        elif size > 0:
            entries.append(SampleEntry(label, path.name, size, sha))
        else:
            left_out.append((f'{label}/{path.name}', 'empty file'))
    note = '; '.join(f'{k}: {r}' for k, r in left_out[:3]) + ('; ...' if len(left_out) > 3
                                                              else '')
    return Listing(task.name, task.classes, tuple(entries[:MAX_SAMPLES]), len(left_out), note)


def listing_digest(entries: Sequence[SampleEntry]) -> str:
    """SHA-256 over ``"<label>/<name> <size> <sha256>\\n"`` per entry, in order."""
    h = hashlib.sha256()
    for e in entries:
        h.update(f'{e.key} {e.size} {e.sha256}\n'.encode())
    return h.hexdigest()


def read_samples(task: Task, wanted: Sequence[tuple[str, str]],
                 max_bytes: int = BATCH_BYTES) -> list[SampleData]:
    """The collector's side of ``get_samples``: the bytes of ``wanted`` ``(label, name)``
    samples, in order, while their total stays within ``max_bytes`` (the first is always
    included). A sample that cannot be served (unknown label, unsafe name, no such file, not a
    regular file, over :data:`MAX_SAMPLE_BYTES`, outside the dataset through a symlink) gets an
    ``error`` instead of data.

    Raises:
        ValueError: no entries or more than :data:`MAX_BATCH`.
    """
    if not 1 <= len(wanted) <= MAX_BATCH:
        raise ValueError(f'ask for 1..{MAX_BATCH} samples per call, not {len(wanted)}')
    out, total = [], 0
    for label, name in wanted:
        try:
            _check_label(task, label)
            check_sample_name(name)
            data = read_untrusted_file(task.dataset_dir / label / name, MAX_SAMPLE_BYTES,
                                       allowed_dirs=[task.dataset_dir])
        except FileNotFoundError:
            out.append(SampleData(str(label)[:80], str(name)[:200],
                                  error='no such sample (deleted since it was listed?)'))
            continue
        except (OSError, ValueError) as exc:  # UntrustedFileError is an OSError
            out.append(SampleData(str(label)[:80], str(name)[:200], error=str(exc)))
            continue
        if out and total + len(data) > max_bytes:
            break  # the caller asks again for the rest
        total += len(data)
        out.append(SampleData(label, name, hashlib.sha256(data).hexdigest(), data))
    return out


def _checked_listing(task: Task, listing: Listing) -> tuple[list[SampleEntry],
                                                            list[tuple[str, str]]]:
    """Entries fit to fetch and ``(key, reason)`` of the others; DatasetSyncError when the
    collector's task does not match this one."""
    if tuple(listing.class_names) != task.classes:
        raise DatasetSyncError(
            f"the collector's task {listing.task!r} has the classes "
            f"{list(listing.class_names)}, this trainer's task {task.name!r} has "
            f'{list(task.classes)}: set the same task and classes on both computers')
    good, refused, seen = [], [], set()
    for e in listing.entries:
        key = f'{str(e.label)[:80]}/{str(e.name)[:200]}'
        try:
            _check_label(task, e.label)
            check_sample_name(e.name)
            if not 0 < e.size <= MAX_SAMPLE_BYTES:
                raise ValueError(f'listed size {e.size} is not in 1..{MAX_SAMPLE_BYTES}')
            if not SHA256_PATTERN.fullmatch(e.sha256 or ''):
                raise ValueError('listed without a valid SHA-256')
            if e.key in seen:
                raise ValueError('listed twice')
        except ValueError as exc:
            refused.append((key, str(exc)))
            continue
        seen.add(e.key)
        good.append(e)
    return good, refused


def _write_sample(task: Task, entry: SampleEntry, item: SampleData) -> str:
    """Check ``item`` against ``entry`` and write it; '' or the reason it was refused."""
    if item.error:
        return f'the collector could not send it: {item.error}'
    if (item.label, item.name) != (entry.label, entry.name):
        return f'the collector sent {item.label}/{item.name} instead'
    if len(item.data) != entry.size:
        return f'{len(item.data)} bytes received, {entry.size} listed'
    sha = hashlib.sha256(item.data).hexdigest()
    if sha != entry.sha256:
        return f'SHA-256 {sha} of the received bytes does not match the listed {entry.sha256}'
    folder = ensure_private_dir(task.dataset_dir / entry.label)
    atomic_write(folder / entry.name, lambda f: f.write(item.data), expected_size=entry.size)
    return ''


def sync_dataset(task: Task, get_page: Callable[[int, int], tuple[Listing, int, str]],
                 get_samples: Callable[[list[tuple[str, str]]], list[SampleData]],
                 cache: DigestCache, should_stop: Callable[[], bool] = lambda: False,
                 page_size: int = MAX_PAGE, batch_size: int = MAX_BATCH) -> SyncReport:
    """Make ``task.dataset_dir`` a copy of the collector's dataset, fetching only what differs.

    Args:
        get_page: ``(offset, max_count) -> (page listing, total, listing_sha256)``: one
            ``list_samples`` call; raises on failure.
        get_samples: ``[(label, name), ...] -> [SampleData, ...]``: one ``get_samples`` call
            (an answer may be shorter than the request; the rest is asked for again).
        cache: digests of the local files (kept between calls by the trainer).
        should_stop: polled between calls; True stops with DatasetSyncError (a cancel).

    Returns:
        What was done (:class:`SyncReport`).

    Raises:
        DatasetSyncError: the collector failed or refused, its classes differ, its listing is
            inconsistent or malformed, a fetch made no progress, or ``should_stop``. Samples
            written before the error stay (each complete and checked): the next call goes on.
        OSError: the local copy cannot be written (no space, permissions).
    """
    listing = read_listing(get_page, page_size, should_stop)
    entries, refused = _checked_listing(task, listing)
    report = SyncReport(refused=refused, untransferable=listing.untransferable)
    wanted = {e.key: e for e in entries}
    local = {f'{label}/{path.name}': (path, sha)
             for label, path, _, sha, _ in _local_samples(task, cache, False)}
    to_fetch = []
    for key, e in wanted.items():
        have = local.get(key)
        if have is not None and have[1] == e.sha256:
            report.unchanged += 1
        else:
            to_fetch.append(e)
    stale = [str(path) for key, (path, _) in local.items() if key not in wanted]
    if to_fetch:
        ensure_private_dir(task.dataset_dir)
        require_free_space(task.dataset_dir, sum(e.size for e in to_fetch))
    pending = list(to_fetch)
    while pending:
        if should_stop():
            raise SyncCancelled(f'stopped; {report.describe()}')
        batch = pending[:batch_size]
        answer = get_samples([(e.label, e.name) for e in batch])
        if not answer or len(answer) > len(batch):
            raise DatasetSyncError(f'get_samples answered {len(answer)} sample(s) for '
                                   f'{len(batch)} asked; {report.describe()}')
        for entry, item in zip(batch, answer):
            reason = _write_sample(task, entry, item)
            if reason:
                LOG.warning('refused sample %s from the collector: %s', entry.key, reason)
                report.refused.append((entry.key, reason))
            else:
                report.fetched += 1
                report.fetched_bytes += entry.size
        pending = pending[len(answer):]
    for start in range(0, len(stale), MAX_PATHS):  # moved to the trash, restorable
        try:
            report.removed += len(delete_samples(task, stale[start:start + MAX_PATHS]))
        except SampleError as exc:  # e.g. a symlink someone put into the copy
            raise DatasetSyncError(f'could not move samples the collector no longer has to '
                                   f'the trash: {exc}; {report.describe()}') from exc
    return report


def read_listing(get_page: Callable[[int, int], tuple[Listing, int, str]],
                 page_size: int = MAX_PAGE,
                 should_stop: Callable[[], bool] = lambda: False) -> Listing:
    """All pages of one consistent listing (same listing_sha256 on every page, and matching
    the entries received); read again up to LISTING_ATTEMPTS times when the dataset changed.
    ``get_page`` as for :func:`sync_dataset` (the web page's export uses it too).

    Raises:
        DatasetSyncError: the listing kept changing, is inconsistent or too long; whatever
            ``get_page`` raises.
    """
    if not 1 <= page_size <= MAX_PAGE:
        raise ValueError(f'page_size must be in 1..{MAX_PAGE}, got {page_size}')
    for _ in range(LISTING_ATTEMPTS):
        first, total, digest = get_page(0, page_size)
        if not 0 <= total <= MAX_SAMPLES:
            raise DatasetSyncError(f'the collector lists {total} samples (at most '
                                   f'{MAX_SAMPLES} are accepted)')
        entries = list(first.entries)
        consistent = True
        while len(entries) < total:
            if should_stop():
                raise SyncCancelled('stopped while reading the listing')
            page, page_total, page_digest = get_page(len(entries), page_size)
            if (page_total, page_digest) != (total, digest):
                consistent = False  # the dataset changed meanwhile
                break
            if not page.entries:
                raise DatasetSyncError(f'the collector listed {total} samples but sent only '
                                       f'{len(entries)}')
            entries += page.entries
        if consistent and len(entries) == total and listing_digest(entries) == digest:
            return Listing(first.task, tuple(first.class_names), tuple(entries),
                           first.untransferable, first.note)
    raise DatasetSyncError(f'the collector\'s dataset kept changing while it was listed '
                           f'({LISTING_ATTEMPTS} attempts); try again when collecting stops')
