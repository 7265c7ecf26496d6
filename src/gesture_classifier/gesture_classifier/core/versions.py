"""Model versions of a task: every trained or imported model is kept as
``<models folder>/<model_id>.pt`` (the folder of the task's ``model_path``); the current one is
also ``model_path`` itself (``resnet18.pt`` by default), which the classifier loads at start.

Selecting a version makes ``model_path`` a hard link to the version's file, replaced
atomically (``os.replace`` of a link made under a temporary name), so ``model_path`` is always
a complete model file and no 45 MB copy is made; where hard links are impossible, the file is
copied with fsutil.atomic_write. Versions beyond ``keep`` are deleted oldest first, never the
current one. Import and export (the DLI tool's "load model" / "save model") go through a
``transfer_dir``: paths are checked by :func:`resolve_transfer_path` so a remote caller cannot
read or write anywhere else.

Plain Python; the trainer node wires it to ``select_model``, ``import_model``,
``export_model`` and the ``models`` topic.
"""
from __future__ import annotations

import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import torch

from .fsutil import atomic_write, client_path, ensure_private_dir
from .model import FORMAT, ModelFile, ModelFileError, load_model, new_model_id, save_model
from .tasks import Task

__all__ = ['MODEL_ID_PATTERN', 'VersionError', 'Version', 'ModelStore',
           'resolve_transfer_path', 'read_metadata']

LOG = logging.getLogger(__name__)

#: A model_id that can be a file name: 1..128 ASCII letters, digits, '_' and '-'.
MODEL_ID_PATTERN = re.compile(r'[A-Za-z0-9][A-Za-z0-9_-]{0,127}')
#: Metadata keys read for the version list (everything but the weights).
_META_KEYS = ('task', 'model_id', 'created', 'initial_weights', 'pretrained', 'recipe',
              'epochs', 'train_accuracy', 'val_accuracy', 'parent_model_id', 'total_epochs',
              'saved_epoch', 'best_epoch_selected', 'validation', 'training', 'class_names',
              'architecture', 'input_size', 'train_files')


class VersionError(ValueError):
    """A refused version request: unknown model_id, a path outside transfer_dir, ..."""


@dataclass(frozen=True)
class Version:
    """One kept model: its id, file, metadata (the model file's plain values) and mtime."""

    model_id: str
    path: Path
    meta: dict
    mtime: float

    @property
    def created(self) -> str:
        return str(self.meta.get('created', ''))


def read_metadata(path: Path) -> dict:
    """The plain values of a model file without reading its weights (``torch.load`` with
    ``weights_only=True`` and ``mmap=True``).

    Raises:
        ModelFileError: not a readable model file of ours.
    """
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception as exc:
        raise ModelFileError(f'{path}: not a loadable model file ({type(exc).__name__})') \
            from exc
    if not isinstance(obj, dict) or obj.get('format') != FORMAT:
        raise ModelFileError(f'{path}: not a gesture_classifier model')
    return {k: obj[k] for k in _META_KEYS if k in obj}


def resolve_transfer_path(transfer_dir: Path, path: str, *, must_exist: bool) -> Path:
    """Check a client's import/export path and return it absolute.

    ``path`` is absolute or relative to ``transfer_dir``; it must stay inside it after
    normalisation, contain no ``..``, no NUL, and no component below ``transfer_dir`` may be a
    symbolic link. ``must_exist``: the file must exist (import) - else its folder must (export).

    Raises:
        VersionError: with the reason.
    """
    root = transfer_dir.resolve()
    try:
        p = client_path(path, root)
    except ValueError as exc:
        raise VersionError(str(exc)) from None
    shown = repr(path if len(path) <= 200 else path[:200] + '...')
    if p == root or root not in p.parents:
        raise VersionError(f'path {shown} is outside transfer_dir {root} (the only folder '
                           'models are imported from and exported to)')
    probe = root
    for part in p.relative_to(root).parts:
        probe = probe / part
        try:
            st = os.lstat(probe)
        except FileNotFoundError:
            if must_exist or probe != p:
                raise VersionError(f'{probe} does not exist') from None
            return p
        if stat.S_ISLNK(st.st_mode):
            raise VersionError(f'{probe} is a symbolic link (refused)')
    if not stat.S_ISREG(os.lstat(p).st_mode):
        raise VersionError(f'{p} is not a regular file')
    return p


class ModelStore:
    """The kept model versions of ``task``; at most ``keep`` (>= 1) of them.

    Not thread-safe: the trainer calls it from one goal or service at a time (its lock).
    """

    def __init__(self, task: Task, keep: int = 10):
        if keep < 1:
            raise ValueError(f'keep must be >= 1, got {keep}')
        self.task, self.keep = task, keep
        self.folder = task.model_path.parent
        self._cache: dict[Path, tuple[float, int, Version]] = {}

    # -- reading ---------------------------------------------------------------------------
    def path_of(self, model_id: str) -> Path:
        """File of version ``model_id``. Raises VersionError for an unsafe id."""
        if not isinstance(model_id, str) or not MODEL_ID_PATTERN.fullmatch(model_id):
            raise VersionError(f'model_id {model_id[:80]!r} is not a valid model id')
        return self.folder / f'{model_id}.pt'

    def _version(self, path: Path) -> Version | None:
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        cached = self._cache.get(path)
        if cached and cached[0] == st.st_mtime and cached[1] == st.st_ino:
            return cached[2]
        try:
            meta = read_metadata(path)
        except ModelFileError as exc:
            LOG.warning('ignoring %s in the models folder: %s', path.name, exc)
            return None
        if meta.get('model_id') != path.stem:
            return None  # another file of ours under another name (e.g. the current one)
        v = Version(path.stem, path, meta, st.st_mtime)
        self._cache[path] = (st.st_mtime, st.st_ino, v)
        return v

    def versions(self) -> list[Version]:
        """Every kept version, newest first (creation time, then file time)."""
        if not self.folder.is_dir():
            return []
        out = []
        for path in self.folder.glob('*.pt'):
            if path == self.task.model_path or not MODEL_ID_PATTERN.fullmatch(path.stem):
                continue
            v = self._version(path)
            if v is not None:
                out.append(v)
        out.sort(key=lambda v: (v.created, v.mtime), reverse=True)
        return out

    def get(self, model_id: str) -> Version:
        """Raises VersionError when there is no such version."""
        v = self._version(self.path_of(model_id))
        if v is None:
            raise VersionError(f'no model version {model_id!r} in {self.folder}')
        return v

    def current_id(self) -> str:
        """model_id of ``model_path`` ('' when there is none or it is unreadable)."""
        try:
            st = os.stat(self.task.model_path)
        except OSError:
            return ''
        for v in self.versions():
            try:
                if os.stat(v.path).st_ino == st.st_ino:
                    return v.model_id
            except OSError:
                continue
        try:
            return str(read_metadata(self.task.model_path).get('model_id', ''))
        except ModelFileError:
            return ''

    def load(self, model_id: str = '', device='cpu') -> ModelFile:
        """Load a version ('' = the current model) fully, checked (model.load_model) against
        the task's classes.

        Raises:
            VersionError: no such version / no current model.
            ModelFileError: the file is unusable.
        """
        if not model_id:
            if not self.task.model_path.exists():
                raise VersionError('there is no current model yet')
            return load_model(self.task.model_path, device, expected_classes=self.task.classes)
        return load_model(self.get(model_id).path, device, expected_classes=self.task.classes)

    # -- changing --------------------------------------------------------------------------
    def adopt_current(self) -> str:
        """Give a current model that has no version file yet (written before versions
        existed, or by hand) its version file; returns its id ('' when none)."""
        path = self.task.model_path
        if not path.exists():
            return ''
        try:
            meta = read_metadata(path)
        except ModelFileError as exc:
            LOG.warning('current model %s is not usable: %s', path, exc)
            return ''
        model_id = str(meta.get('model_id', ''))
        if not MODEL_ID_PATTERN.fullmatch(model_id):
            return ''
        target = self.path_of(model_id)
        if not target.exists():
            self._link_or_copy(path, target)
        return model_id

    def add(self, mf: ModelFile, select: bool = True) -> Version:
        """Save ``mf`` as a new version (fills its model_id when empty), make it current when
        ``select``, and prune. Raises OSError (nothing changes) or VersionError."""
        if not mf.model_id:
            mf.model_id = new_model_id(mf.task or self.task.name)
        target = self.path_of(mf.model_id)
        if target.exists():
            raise VersionError(f'a version {mf.model_id!r} exists already')
        save_model(mf, target)
        if select:
            self.select(mf.model_id)
        self.prune()
        return self.get(mf.model_id)

    def select(self, model_id: str) -> Version:
        """Make version ``model_id`` current (``model_path`` replaced atomically).

        Raises:
            VersionError: unknown id. ModelFileError: the version's file is unusable (the
            current model stays). OSError: could not write (the current model stays).
        """
        v = self.get(model_id)
        # checked before use; a model from before classes were added is still usable
        load_model(v.path, 'cpu', expected_classes=self.task.classes, earlier_classes_ok=True)
        ensure_private_dir(self.task.model_path.parent)
        self._link_or_copy(v.path, self.task.model_path)
        return v

    def _link_or_copy(self, src: Path, dst: Path) -> None:
        tmp = dst.with_name(f'.{dst.name}.link.tmp')
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            data = src.read_bytes()
            atomic_write(dst, lambda f: f.write(data), expected_size=len(data))
            return
        os.replace(tmp, dst)
        dir_fd = os.open(dst.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def prune(self) -> list[str]:
        """Delete the oldest versions beyond ``keep`` (never the current one) and their
        backend exports; returns the ids deleted."""
        current = self.current_id()
        versions = self.versions()
        doomed = [v for v in reversed(versions) if v.model_id != current]
        removed = []
        for v in doomed[:max(0, len(versions) - self.keep)]:
            for path in [v.path] + [v.path.with_suffix(s) for s in ('.onnx', '.engine',
                                                                  '.engine.json')]:
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
            self._cache.pop(v.path, None)
            removed.append(v.model_id)
        if removed:
            LOG.info('pruned model version(s) beyond keep_models=%d: %s', self.keep,
                     ', '.join(removed))
        return removed

    def import_file(self, src: Path) -> ModelFile:
        """Import a model file as a new version (not selected). It is loaded and checked like
        any model file (weights_only, format, architecture, the task's classes or its first
        ones, from before classes were added) and written
        anew, so nothing but the checked values reaches the models folder.

        Raises:
            ModelFileError: unusable file (reason inside). VersionError / OSError.
        """
        mf = load_model(src, 'cpu', expected_classes=self.task.classes, earlier_classes_ok=True)
        if mf.task and mf.task != self.task.name:
            raise ModelFileError(f'{src}: the model is for task {mf.task!r}, not '
                                 f'{self.task.name!r}')
        if not MODEL_ID_PATTERN.fullmatch(mf.model_id) or self.path_of(mf.model_id).exists():
            mf.model_id = new_model_id(self.task.name)
        mf.task = mf.task or self.task.name
        self.add(mf, select=False)
        return mf

    def export(self, model_id: str, dest: Path, overwrite: bool = False) -> Path:
        """Write version ``model_id`` ('' = current) to ``dest`` atomically.

        Raises:
            VersionError: unknown id, no current model, ``dest`` exists and not ``overwrite``.
            OSError: could not write (nothing partial is left).
        """
        src = self.get(model_id).path if model_id else self.task.model_path
        if not src.exists():
            raise VersionError('there is no current model yet')
        if dest.suffix != '.pt':
            raise VersionError(f'export path {dest} must end in .pt')
        if dest.exists() and not overwrite:
            raise VersionError(f'{dest} exists (set overwrite to replace it)')
        data = src.read_bytes()
        atomic_write(dest, lambda f: f.write(data), expected_size=len(data))
        return dest
