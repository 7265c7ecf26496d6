"""Dataset archives: a task's samples as one zip file, to export from the page and import
again (here or on another robot), as users of the DLI tool and Teachable Machine expect.
Plain Python: the web node builds an archive from the bytes the collector's ``get_samples``
sends and stores an imported archive's images through the collector's ``add_sample``; this
module only writes zips and checks them.

The archive::

    <class>/<name>.jpg ...   the samples (stored, not compressed: JPEGs do not shrink)
    manifest.json            {"format": FORMAT, "task": str, "classes": [str, ...],
                              "files": [{"path": "<class>/<name>", "size": bytes,
                                         "sha256": 64 hex digits}, ...]}

An archive to import comes from anywhere and is checked member by member before any byte of
it is used (:func:`check_archive`, :func:`read_member`):

- the whole archive is refused (:class:`ArchiveError`) when it is not a zip, has more than
  :data:`MAX_MEMBERS` members, declares more than :data:`MAX_TOTAL_BYTES` uncompressed, or
  its ``manifest.json`` is missing, twice, over :data:`MAX_MANIFEST_BYTES` or malformed;
- a member is refused (with a reason) when its name is not exactly ``<class>/<safe name>``
  with an image suffix (:data:`IMPORT_SUFFIXES`) and the class one of the task's (``../``,
  absolute names, backslashes, empty or extra components all fail this), it is a symbolic
  link, a directory other than a class folder, encrypted, compressed with another method than
  stored or deflate, appears twice, is not in the manifest (or the manifest lists it with
  another size), declares more than :data:`MAX_MEMBER_BYTES` or a compression ratio over
  :data:`MAX_RATIO`; when read (at most the declared size plus one byte, never trusting the
  header), its bytes must have the listed size and SHA-256 and start like a JPEG or PNG;
- a manifest entry with no member is reported refused too.
"""
from __future__ import annotations

import hashlib
import json
import stat
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

from .datasync import MAX_SAMPLE_BYTES, check_sample_name
from .tasks import InvalidNameError, validate_name
from .transfer import SHA256_PATTERN

__all__ = ['FORMAT', 'MANIFEST', 'MAX_MEMBERS', 'MAX_MEMBER_BYTES', 'MAX_TOTAL_BYTES',
           'MAX_ARCHIVE_BYTES',
           'MAX_RATIO', 'MAX_MANIFEST_BYTES', 'IMPORT_SUFFIXES', 'ArchiveError', 'Member',
           'Refusal', 'CheckedArchive', 'ImportReport', 'ArchiveWriter', 'check_member_name',
           'check_archive', 'read_member', 'image_format', 'import_archive']

#: The manifest's ``format`` value.
FORMAT = 'gesture_classifier.dataset/1'
#: The manifest's member name.
MANIFEST = 'manifest.json'
#: Most members an archive may have (samples plus the manifest and class folders).
MAX_MEMBERS = 20_000
#: Largest sample member, bytes (a transferable sample, datasync.MAX_SAMPLE_BYTES: 4 MiB).
MAX_MEMBER_BYTES = MAX_SAMPLE_BYTES
#: Most uncompressed bytes all members may declare together (256 MiB; the web node's upload
#: limit is the same, and stored JPEGs do not shrink).
MAX_TOTAL_BYTES = 256 * 1024 * 1024
#: Largest archive file accepted, bytes: the members' bytes plus their headers and the
#: manifest (the web node's upload limit).
MAX_ARCHIVE_BYTES = MAX_TOTAL_BYTES + 8 * 1024 * 1024
#: Largest uncompressed / compressed size of a member (JPEG and PNG hardly compress: a ratio
#: near 1; a zip bomb's is in the hundreds or more).
MAX_RATIO = 20
#: Largest manifest, bytes (about 150 bytes per entry).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
#: The image files an archive may carry (what the collector's add_sample decodes).
IMPORT_SUFFIXES = ('.jpg', '.jpeg', '.png')
_MAGIC = {b'\xff\xd8\xff': 'jpeg', b'\x89PNG\r\n\x1a\n': 'png'}


class ArchiveError(ValueError):
    """The whole archive is refused (not a zip, too many members or bytes, no manifest)."""


@dataclass(frozen=True)
class Member:
    """A member that passed the checks of its entry: ``path`` = ``'<label>/<name>'``; its
    bytes must have ``size`` bytes and SHA-256 ``sha256`` (the manifest's)."""

    path: str
    label: str
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Refusal:
    """A refused member: its name (shown with ``repr`` cut to 200 characters), a short
    ``kind`` to count by (``name``, ``link``, ``duplicate``, ``foreign``, ``size``, ``bomb``,
    ``missing``, ``hash``, ``image``, ``unreadable``, ``collector``) and the full reason."""

    path: str
    kind: str
    reason: str


@dataclass
class CheckedArchive:
    """What :func:`check_archive` found: the manifest's task and classes, the members to read
    (in archive order) and the refused ones."""

    task: str
    classes: tuple[str, ...]
    members: list[Member] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


@dataclass
class ImportReport:
    """Outcome of an import, per file: ``added`` samples and the refusals."""

    added: int = 0
    refused: list[Refusal] = field(default_factory=list)

    def to_dict(self, shown: int = 20) -> dict:
        """JSON for the page: ``added``, ``refused`` (count), ``by_kind`` (kind -> count) and
        the first ``shown`` refusals as ``{"path", "kind", "reason"}``."""
        return {'added': self.added, 'refused': len(self.refused),
                'by_kind': dict(Counter(r.kind for r in self.refused)),
                'refusals': [{'path': r.path, 'kind': r.kind, 'reason': r.reason}
                             for r in self.refused[:shown]]}


def _shown(name: str) -> str:
    return name if len(name) <= 200 else name[:200] + '...'


def image_format(data: bytes) -> str | None:
    """'jpeg' or 'png' from the first bytes of ``data``; None for anything else."""
    for magic, fmt in _MAGIC.items():
        if data.startswith(magic):
            return fmt
    return None


def check_member_name(name: str, classes: Sequence[str]) -> tuple[str, str]:
    """``(label, file name)`` of a member named exactly ``<class>/<safe name>`` with an image
    suffix (:data:`IMPORT_SUFFIXES`), the class one of ``classes``.

    Raises:
        ValueError: anything else (absolute, ``..``, backslash, empty or extra components,
            unknown class, unsafe file name or suffix), the reason in the message.
    """
    if '\\' in name:
        raise ValueError('a backslash in the name')
    if name.startswith('/') or (len(name) > 1 and name[1] == ':'):
        raise ValueError('an absolute name')
    parts = name.split('/')
    if any(p in ('', '.', '..') for p in parts):
        raise ValueError('an empty, "." or ".." path component')
    if len(parts) != 2:
        raise ValueError('not <class>/<file>')
    label, file = parts
    try:
        validate_name(label, 'class')
    except InvalidNameError as exc:
        raise ValueError(str(exc)) from None
    if label not in classes:
        raise ValueError(f'class {label!r} is not one of the task\'s {list(classes)}')
    check_sample_name(file)
    if not file.lower().endswith(IMPORT_SUFFIXES):
        raise ValueError(f'not one of {", ".join(IMPORT_SUFFIXES)}')
    return label, file


def _read_capped(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    """At most ``cap`` + 1 bytes of ``info`` (the caller compares with what it expects)."""
    with zf.open(info) as f:
        return f.read(cap + 1)


def _manifest(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> tuple[str, tuple, dict]:
    found = [i for i in infos if i.filename == MANIFEST]
    if len(found) != 1:
        raise ArchiveError(f'the archive must hold one {MANIFEST}, it holds {len(found)}')
    info = found[0]
    if info.file_size > MAX_MANIFEST_BYTES or info.flag_bits & 0x1:
        raise ArchiveError(f'{MANIFEST} is over {MAX_MANIFEST_BYTES} bytes or encrypted')
    try:
        raw = _read_capped(zf, info, MAX_MANIFEST_BYTES)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ArchiveError(f'{MANIFEST} is over {MAX_MANIFEST_BYTES} bytes')
        doc = json.loads(raw.decode('utf-8'))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
            RuntimeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArchiveError(f'{MANIFEST} cannot be read: {exc}') from None
    if not isinstance(doc, dict) or doc.get('format') != FORMAT or \
            not isinstance(doc.get('files'), list) or not isinstance(doc.get('task'), str) \
            or not isinstance(doc.get('classes'), list):
        raise ArchiveError(f'{MANIFEST} is not a {FORMAT} manifest (format, task, classes, '
                           'files)')
    listed: dict[str, tuple[int, str]] = {}
    for entry in doc['files']:
        ok = isinstance(entry, dict) and isinstance(entry.get('path'), str) and \
            isinstance(entry.get('size'), int) and not isinstance(entry.get('size'), bool) \
            and isinstance(entry.get('sha256'), str) and \
            SHA256_PATTERN.fullmatch(entry['sha256'])
        if not ok:
            raise ArchiveError(f'{MANIFEST}: an entry is not {{"path", "size", "sha256"}}')
        if entry['path'] in listed:
            raise ArchiveError(f'{MANIFEST} lists {_shown(entry["path"])!r} twice')
        listed[entry['path']] = (entry['size'], entry['sha256'])
    classes = tuple(str(c)[:64] for c in doc['classes'][:100])
    return doc['task'][:64], classes, listed


def check_archive(zf: zipfile.ZipFile, classes: Sequence[str]) -> CheckedArchive:
    """Check an archive's members by their entries (names, kinds, declared sizes, the
    manifest), without reading a sample; see the module's text for the rules.

    Args:
        zf: the archive, opened for reading (``zipfile.ZipFile(file)``).
        classes: the task's classes (a member's class must be one of them).

    Returns:
        The members to read with :func:`read_member` and the refused ones.

    Raises:
        ArchiveError: the whole archive is refused.
    """
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise ArchiveError(f'{len(infos)} members; at most {MAX_MEMBERS}')
    declared = sum(i.file_size for i in infos)
    if declared > MAX_TOTAL_BYTES:
        raise ArchiveError(f'the members declare {declared} bytes uncompressed; at most '
                           f'{MAX_TOTAL_BYTES}')
    task, manifest_classes, listed = _manifest(zf, infos)
    out = CheckedArchive(task, manifest_classes)
    times = Counter(i.filename for i in infos)
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        if name == MANIFEST:
            continue
        seen.add(name)
        kind, reason = _entry_problem(info, classes, listed, times[name])
        if kind:
            out.refused.append(Refusal(_shown(name), kind, reason))
        elif not info.is_dir():
            label, file = name.split('/')
            out.members.append(Member(name, label, file, *listed[name]))
    for path in listed:
        if path not in seen:
            out.refused.append(Refusal(_shown(path), 'missing',
                                       'listed in the manifest but not in the archive'))
    return out


def _entry_problem(info: zipfile.ZipInfo, classes: Sequence[str],
                   listed: dict[str, tuple[int, str]], times: int) -> tuple[str, str]:
    """('', '') for a fit entry (or a class folder, skipped), else (kind, reason)."""
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return 'link', 'a symbolic link'
    if times > 1:
        return 'duplicate', f'the archive holds {times} members of this name'
    if info.is_dir():
        if name.rstrip('/') in classes and name.count('/') == 1:
            return '', ''
        return 'foreign', 'a folder other than a class folder'
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        return 'foreign', 'not a regular file'
    try:
        check_member_name(name, classes)
    except ValueError as exc:
        return 'name', str(exc)
    if name not in listed:
        return 'foreign', 'not in the manifest'
    size = listed[name][0]
    if info.flag_bits & 0x1:
        return 'unreadable', 'encrypted'
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return 'unreadable', f'compression method {info.compress_type} (stored or deflate only)'
    if not 0 < size <= MAX_MEMBER_BYTES or info.file_size > MAX_MEMBER_BYTES:
        return 'size', f'{max(size, info.file_size)} bytes; a sample is 1..{MAX_MEMBER_BYTES}'
    if info.file_size != size:
        return 'size', f'declares {info.file_size} bytes, the manifest {size}'
    if info.file_size > MAX_RATIO * max(info.compress_size, 1):
        return 'bomb', (f'compression ratio {info.file_size / max(info.compress_size, 1):.0f}'
                        f' (at most {MAX_RATIO})')
    return '', ''


def read_member(zf: zipfile.ZipFile, member: Member) -> tuple[bytes, str]:
    """``(bytes, 'jpeg' | 'png')`` of a checked member: at most its size plus one byte are
    decompressed (the header is not trusted), and they must have the manifest's size and
    SHA-256 and start like a JPEG or PNG.

    Raises:
        ValueError: refused; ``args[0]`` is the kind (see :class:`Refusal`), ``args[1]`` the
            reason.
    """
    try:
        data = _read_capped(zf, zf.getinfo(member.path), member.size)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
            RuntimeError) as exc:  # a bad CRC is a BadZipFile
        raise ValueError('unreadable', f'cannot be read: {exc}') from None
    if len(data) != member.size:
        raise ValueError('size', f'{"more than " if len(data) > member.size else ""}'
                         f'{min(len(data), member.size)} bytes, the manifest lists '
                         f'{member.size}')
    sha = hashlib.sha256(data).hexdigest()
    if sha != member.sha256:
        raise ValueError('hash', f'SHA-256 {sha[:16]}... does not match the manifest\'s '
                         f'{member.sha256[:16]}...')
    fmt = image_format(data)
    if fmt is None:
        raise ValueError('image', 'not a JPEG or PNG image')
    return data, fmt


class ArchiveWriter:
    """Writes an archive as a stream, never holding more than the member being added:
    ``add`` each sample, take the bytes made so far with ``drain`` (send them), ``close``
    writes the manifest of what was added and the zip's directory.

    Memory: the bytes not drained yet (about one sample) plus about 200 bytes per member.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._zip = zipfile.ZipFile(self, 'w', zipfile.ZIP_STORED)  # unseekable: streamed
        self._files: list[dict] = []
        self._paths: set[str] = set()

    # the file-like side zipfile writes to (no tell/seek: it writes data descriptors)
    def write(self, data: bytes) -> int:
        self._buf += data
        return len(data)

    def flush(self) -> None:
        pass

    def add(self, label: str, name: str, data: bytes) -> None:
        """Add ``data`` as ``<label>/<name>``.

        Raises:
            ValueError: an unsafe label or name, or a name added before.
        """
        validate_name(label, 'class')
        check_sample_name(name)
        path = f'{label}/{name}'
        if path in self._paths:
            raise ValueError(f'{path} added twice')
        info = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        self._zip.writestr(info, data)
        self._paths.add(path)
        self._files.append({'path': path, 'size': len(data),
                            'sha256': hashlib.sha256(data).hexdigest()})

    def drain(self) -> bytes:
        """The archive's bytes made since the last call."""
        out, self._buf = bytes(self._buf), bytearray()
        return out

    def close(self, task: str, classes: Sequence[str]) -> bytes:
        """Write the manifest and the zip's directory; the remaining bytes (drain)."""
        manifest = {'format': FORMAT, 'task': task, 'classes': list(classes),
                    'files': self._files}
        info = zipfile.ZipInfo(MANIFEST, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        self._zip.writestr(info, json.dumps(manifest, indent=1).encode())
        self._zip.close()
        return self.drain()

    @property
    def count(self) -> int:
        """Samples added so far."""
        return len(self._files)


def import_archive(file: IO[bytes], classes: Sequence[str],
                   store: Callable[[Member, bytes, str], str]) -> ImportReport:
    """Check the archive in ``file`` (seekable) and hand each accepted image to ``store``
    (``(member, bytes, 'jpeg' | 'png') -> ''`` when stored, else the reason it was refused),
    one at a time: at most one member's bytes (<= MAX_MEMBER_BYTES) are held.

    Raises:
        ArchiveError: the whole archive is refused (nothing is stored).
    """
    try:
        zf = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ArchiveError(f'not a zip archive: {exc}') from None
    with zf:
        checked = check_archive(zf, classes)
        report = ImportReport(refused=list(checked.refused))
        for member in checked.members:
            try:
                data, fmt = read_member(zf, member)
            except ValueError as exc:
                report.refused.append(Refusal(member.path, *exc.args))
                continue
            reason = store(member, data, fmt)
            if reason:
                report.refused.append(Refusal(member.path, 'collector', reason))
            else:
                report.added += 1
    return report
