"""Tasks: a name and an ordered list of classes, as ``TASK`` / ``CATEGORIES`` in the NVIDIA DLI
classification tool, plus where a task keeps its dataset and its model.

On-disk layout under a data directory ``<data_dir>`` (each task separate, never mixed)::

    <data_dir>/<task>/dataset/<class>/<uuid>.jpg   samples (DLI layout <task>/<category>/*.jpg)
    <data_dir>/<task>/models/resnet18.pt           the current model of the task
    <data_dir>/<task>/models/<model_id>.pt         every kept model version (see versions.py)
    <data_dir>/<task>/trash/<class>/...            deleted samples, restorable (samples.py)
    <data_dir>/<task>/classes.yaml                 the classes, once one was added at run time

A task's classes may grow while the nodes run (``Task.with_classes``: append-only, so a trained
model's outputs keep their meaning); the grown list is kept in ``classes.yaml``
(:func:`save_classes`) and preferred at the next start when it extends the configured list
(:func:`resolve_classes`).

``dataset_dir`` and ``model_path`` may be given explicitly instead, e.g. to train on data
collected with the DLI notebook (``~/nvdli-data/classification/thumbs_A``).
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from .fsutil import atomic_write, ensure_private_dir

__all__ = ['PRESETS', 'LABEL_PATTERN', 'MAX_CLASSES', 'Task', 'validate_name',
           'InvalidNameError', 'read_saved_classes', 'save_classes', 'resolve_classes']

#: Classes of the tasks in the DLI "classification_interactive" notebook.
PRESETS: dict[str, tuple[str, ...]] = {
    'thumbs': ('thumbs_up', 'thumbs_down'),
    'emotions': ('none', 'happy', 'sad', 'angry'),
    'fingers': ('1', '2', '3', '4', '5'),
}

#: A task or class name: 1..64 characters, ASCII letters, digits, '_' and '-', not starting
#: with '-' or '_'. This excludes path separators, '.', '..', NUL, whitespace and unicode
#: look-alikes, so a name can be used as a single path component safely.
LABEL_PATTERN = re.compile(r'[A-Za-z0-9][A-Za-z0-9_-]{0,63}')

MODEL_FILE_NAME = 'resnet18.pt'
CLASSES_FILE_NAME = 'classes.yaml'
#: Most classes a task may have: each is a card on the page and a folder of samples; the
#: DLI tool's tasks have 2-5.
MAX_CLASSES = 64
#: Most bytes read from a classes file (64 names of 64 characters fit in a few KB).
MAX_CLASSES_FILE_BYTES = 64 * 1024


class InvalidNameError(ValueError):
    """A task or class name that is not a safe single path component."""


def _checked_classes(task: str, classes) -> tuple[str, ...]:
    """``classes`` as a tuple, checked: 2..MAX_CLASSES unique safe names."""
    if isinstance(classes, str) or not isinstance(classes, (list, tuple)):
        raise ValueError(f'the classes of task {task!r} must be a list of names, got '
                         f'{type(classes).__name__}')
    classes = tuple(validate_name(c, 'class name') for c in classes)
    if len(classes) < 2:
        raise ValueError(f'task {task!r} needs at least 2 classes, got {list(classes)}')
    if len(classes) > MAX_CLASSES:
        raise ValueError(f'task {task!r} has {len(classes)} classes; at most {MAX_CLASSES}')
    if len(set(classes)) != len(classes):
        raise ValueError(f'task {task!r} has duplicate classes: {list(classes)}')
    return classes


def validate_name(name: object, what: str = 'label') -> str:
    """Return ``name`` if it matches :data:`LABEL_PATTERN`, else raise :class:`InvalidNameError`
    saying why (the offending value is shown with ``repr`` so control characters are visible)."""
    if not isinstance(name, str):
        raise InvalidNameError(f'{what} must be a string, got {type(name).__name__}')
    if not LABEL_PATTERN.fullmatch(name):
        shown = repr(name if len(name) <= 80 else name[:80] + '...')
        raise InvalidNameError(
            f'{what} {shown} is not a safe name: use 1-64 ASCII letters, digits, "_" or "-", '
            'starting with a letter or digit')
    return name


@dataclass(frozen=True)
class Task:
    """A classification task and its folders.

    Attributes:
        name: task name (safe name, see :func:`validate_name`).
        classes: class names in model output order, at least 2, unique, each a safe name.
        dataset_dir: folder holding ``<class>/`` sub-folders of images.
        model_path: the task's current model file.
        trash_dir: where deleted samples wait to be restored (``<data_dir>/<task>/trash``, also
            when ``dataset_dir`` is given explicitly); None = ``<dataset_dir>/../trash``.
    """

    name: str
    classes: tuple[str, ...]
    dataset_dir: Path
    model_path: Path
    trash_dir: Path | None = None

    @classmethod
    def create(cls, name: str, classes: list[str] | tuple[str, ...] | None = None,
               data_dir: str | os.PathLike = '~/.ros/gesture_classifier',
               dataset_dir: str | os.PathLike | None = None,
               model_path: str | os.PathLike | None = None) -> Task:
        """Build a task; empty ``classes`` selects the DLI preset of that name.

        Raises:
            InvalidNameError: unsafe task or class name.
            ValueError: no classes and no preset of that name, fewer than 2 or duplicate classes.
        """
        validate_name(name, 'task name')
        if not classes:
            if name not in PRESETS:
                raise ValueError(f'task {name!r} has no classes; set `classes` or use one of '
                                 f'the presets {sorted(PRESETS)}')
            classes = PRESETS[name]
        classes = _checked_classes(name, classes)
        root = Path(os.path.expanduser(os.fspath(data_dir))).resolve() / name
        ds = Path(os.path.expanduser(os.fspath(dataset_dir))).resolve() if dataset_dir else \
            root / 'dataset'
        mp = Path(os.path.expanduser(os.fspath(model_path))).resolve() if model_path else \
            root / 'models' / MODEL_FILE_NAME
        return cls(name=name, classes=classes, dataset_dir=ds, model_path=mp,
                   trash_dir=root / 'trash')

    def with_classes(self, classes: list[str] | tuple[str, ...]) -> Task:
        """This task with ``classes``: the current classes first, in the same order, then new
        ones (append-only: a trained model's output ``i`` keeps meaning class ``i``, and the
        samples of every class stay where they are). Equal lists give an equal task.

        Raises:
            InvalidNameError: an unsafe class name.
            ValueError: a current class missing or moved, duplicates, more than
                :data:`MAX_CLASSES`.
        """
        classes = _checked_classes(self.name, classes)
        if classes[:len(self.classes)] != self.classes:
            raise ValueError(f'classes can only be added after the current ones: '
                             f'{list(classes)} does not start with {list(self.classes)} '
                             '(removing, renaming or reordering a class needs a restart with '
                             'the new `classes`)')
        return dataclasses.replace(self, classes=classes)

    @property
    def classes_file(self) -> Path:
        """``<data_dir>/<task>/classes.yaml``: where :func:`save_classes` keeps the classes."""
        return self.trash.parent / CLASSES_FILE_NAME

    @property
    def trash(self) -> Path:
        """The trash folder (see ``trash_dir``)."""
        return self.trash_dir if self.trash_dir is not None else \
            self.dataset_dir.parent / 'trash'

    def class_dir(self, label: str) -> Path:
        """Folder of one class's images. Raises InvalidNameError / ValueError (unknown class)."""
        validate_name(label)
        if label not in self.classes:
            raise ValueError(f'unknown label {label!r}: task {self.name!r} has classes '
                             f'{list(self.classes)}')
        return self.dataset_dir / label


def read_saved_classes(task: Task) -> tuple[str, ...] | None:
    """The classes :func:`save_classes` kept for ``task`` (``task.classes_file``), None when
    there is no such file.

    Raises:
        ValueError: the file cannot be read, is not ``{task: <name>, classes: [<name>, ...]}``
            (YAML, read with ``yaml.safe_load``: no objects are built), is for another task or
            its classes are invalid (see :meth:`Task.create`).
    """
    path = task.classes_file
    try:
        with open(path, 'rb') as f:
            text = f.read(MAX_CLASSES_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f'cannot read {path}: {exc}') from exc
    if len(text) > MAX_CLASSES_FILE_BYTES:
        raise ValueError(f'{path} is larger than {MAX_CLASSES_FILE_BYTES} bytes')
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f'{path} is not YAML: {exc}') from exc
    if not isinstance(doc, dict) or set(doc) != {'task', 'classes'}:
        raise ValueError(f'{path} must hold exactly the keys "task" and "classes"')
    if doc['task'] != task.name:
        raise ValueError(f'{path} is for task {doc["task"]!r}, not {task.name!r}')
    return _checked_classes(task.name, doc['classes'])


def save_classes(task: Task) -> Path:
    """Keep ``task.classes`` in ``task.classes_file`` (written atomically: a reader sees the
    old or the new list, never a part), for the next start (:func:`resolve_classes`).

    Raises:
        OSError: the folder cannot be made or the file written (full disk, permissions); the
            previous file is unchanged.
    """
    doc = yaml.safe_dump({'task': task.name, 'classes': list(task.classes)},
                         sort_keys=False).encode()
    ensure_private_dir(task.classes_file.parent)
    return atomic_write(task.classes_file, lambda f: f.write(doc), mode=0o644)


def resolve_classes(task: Task, saved: tuple[str, ...] | None) -> tuple[Task, str]:
    """The task to start with, from the configured ``task`` and the ``saved`` classes
    (:func:`read_saved_classes`), and a note for the log ('' when there is nothing to say).

    Saved classes that extend the configured ones win: classes added at run time survive a
    restart with the same configuration. Configured classes that extend the saved ones win
    (classes added to the configuration). Otherwise the two differ and the configuration wins,
    with a note: it is what the user set last.
    """
    if saved is None or saved == task.classes:
        return task, ''
    if saved[:len(task.classes)] == task.classes:
        return (task.with_classes(saved),
                f'classes {list(saved[len(task.classes):])} added at run time '
                f'({task.classes_file})')
    if task.classes[:len(saved)] == saved:
        return task, ''
    return task, (f'the classes kept in {task.classes_file} ({list(saved)}) differ from the '
                  f'configured ones ({list(task.classes)}); using the configured ones')
