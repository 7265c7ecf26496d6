"""Tasks: a name and an ordered list of classes, as ``TASK`` / ``CATEGORIES`` in the NVIDIA DLI
classification tool, plus where a task keeps its dataset and its model.

On-disk layout under a data directory ``<data_dir>`` (each task separate, never mixed)::

    <data_dir>/<task>/dataset/<class>/<uuid>.jpg   samples (DLI layout <task>/<category>/*.jpg)
    <data_dir>/<task>/models/resnet18.pt           the current model of the task
    <data_dir>/<task>/models/<model_id>.pt         every kept model version (see versions.py)
    <data_dir>/<task>/trash/<class>/...            deleted samples, restorable (samples.py)

``dataset_dir`` and ``model_path`` may be given explicitly instead, e.g. to train on data
collected with the DLI notebook (``~/nvdli-data/classification/thumbs_A``).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ['PRESETS', 'LABEL_PATTERN', 'Task', 'validate_name', 'InvalidNameError']

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


class InvalidNameError(ValueError):
    """A task or class name that is not a safe single path component."""


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
        classes = tuple(validate_name(c, 'class name') for c in classes)
        if len(classes) < 2:
            raise ValueError(f'task {name!r} needs at least 2 classes, got {list(classes)}')
        if len(set(classes)) != len(classes):
            raise ValueError(f'task {name!r} has duplicate classes: {list(classes)}')
        root = Path(os.path.expanduser(os.fspath(data_dir))).resolve() / name
        ds = Path(os.path.expanduser(os.fspath(dataset_dir))).resolve() if dataset_dir else \
            root / 'dataset'
        mp = Path(os.path.expanduser(os.fspath(model_path))).resolve() if model_path else \
            root / 'models' / MODEL_FILE_NAME
        return cls(name=name, classes=classes, dataset_dir=ds, model_path=mp,
                   trash_dir=root / 'trash')

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
