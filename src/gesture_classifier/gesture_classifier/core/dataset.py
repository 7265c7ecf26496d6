"""Gesture datasets on disk: ``<dataset_dir>/<class>/*.jpg`` (the DLI tool's layout).

Training images are decoded and resized **once** (:func:`load_images`) into a uint8 tensor;
epochs then only augment and normalise in memory. Unreadable files are reported and skipped.
The image files themselves (which files count, writing a sample) are :mod:`.imagefiles`,
which needs no torch; their names are re-exported here.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from .imagefiles import (IMAGE_SUFFIXES, JPEG_QUALITY, count_images, encode_sample,
                         list_images, save_sample, write_sample)
from .preprocess import PreprocessSpec, resize, to_chw_rgb
from .tasks import Task

__all__ = ['IMAGE_SUFFIXES', 'JPEG_QUALITY', 'DatasetError', 'ImageSet', 'count_images',
           'list_images', 'load_images', 'encode_sample', 'write_sample', 'save_sample',
           'split_indices', 'sample_name']

LOG = logging.getLogger(__name__)

class DatasetError(ValueError):
    """A dataset that cannot be trained on (missing folder, empty class, < 2 classes)."""


@dataclass
class ImageSet:
    """Decoded images of a task.

    Attributes:
        images: uint8 ``(N, 3, S, S)`` RGB tensor, resized with preprocess.resize.
        targets: int64 ``(N,)`` class indices into ``class_names``.
        class_names: the task's classes.
        paths: the N source files.
        skipped: ``(path, reason)`` of files that could not be decoded.
    """

    images: torch.Tensor
    targets: torch.Tensor
    class_names: tuple[str, ...]
    paths: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.targets.numel())


def _decode(path: Path) -> np.ndarray | None:
    """BGR uint8 image, or None if the file is not a decodable image."""
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def load_images(task: Task, spec: PreprocessSpec, allow_empty: bool = False) -> ImageSet:
    """Decode every image of every class of ``task`` once, resized to ``spec.input_size``.

    Args:
        allow_empty: a class without images is fine (evaluation) as long as some class has
            one; training needs every class (False).

    Raises:
        DatasetError: the dataset folder is missing, or a class has no readable image (the
            message names the class and folder; a model needs every class of the task), or,
            with ``allow_empty``, no class has one.
    """
    if not task.dataset_dir.is_dir():
        raise DatasetError(f'dataset folder {task.dataset_dir} does not exist: collect images '
                           f'for the classes {list(task.classes)} first')
    images, targets, paths, skipped = [], [], [], []
    empty = []
    for index, label in enumerate(task.classes):
        found = 0
        for path in list_images(task.class_dir(label)):
            try:
                bgr = _decode(path)
            except OSError as exc:
                bgr, reason = None, str(exc)
            else:
                reason = 'not a decodable image'
            if bgr is None:
                LOG.warning('skipping %s: %s', path, reason)
                skipped.append((path, reason))
                continue
            images.append(resize(to_chw_rgb(bgr, 'bgr'), spec).contiguous())
            targets.append(index)
            paths.append(path)
            found += 1
        if not found:
            empty.append(label)
    if empty and (not allow_empty or len(empty) == len(task.classes)):
        raise DatasetError(f'no readable images for class(es) {empty} in {task.dataset_dir} '
                           f'(every class of task {task.name!r} needs at least one)')
    return ImageSet(images=torch.stack(images), targets=torch.tensor(targets, dtype=torch.int64),
                    class_names=task.classes, paths=paths, skipped=skipped)


def split_indices(targets: torch.Tensor, val_fraction: float,
                  generator: torch.Generator,
                  forced_train: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified random split into (train, val) index tensors.

    Each class gives ``floor(n * val_fraction)`` images to validation, but always keeps at least
    one for training; ``val_fraction=0`` gives an empty validation set.

    Args:
        forced_train: optional bool ``(N,)`` mask of images that must be training images
            (those a parent model trained on, when training continues): validation images are
            drawn from the others only, so fewer may be held out.

    Raises:
        ValueError: val_fraction outside [0, 0.9], or a mask of the wrong shape.
    """
    if not 0.0 <= val_fraction <= 0.9:
        raise ValueError(f'val_fraction must be in [0, 0.9], got {val_fraction}')
    if forced_train is not None and forced_train.shape != targets.shape:
        raise ValueError(f'forced_train has shape {tuple(forced_train.shape)}, expected '
                         f'{tuple(targets.shape)}')
    train, val = [], []
    for cls in torch.unique(targets):
        idx = torch.nonzero(targets == cls).flatten()
        forced = idx[forced_train[idx]] if forced_train is not None else idx[:0]
        free = idx[~forced_train[idx]] if forced_train is not None else idx
        free = free[torch.randperm(free.numel(), generator=generator)]
        n_val = min(int(idx.numel() * val_fraction), free.numel(), idx.numel() - 1)
        val.append(free[:n_val])
        train.append(torch.cat([free[n_val:], forced]))
    return torch.cat(train).sort().values, torch.cat(val).sort().values


def sample_name(path: Path) -> str:
    """``'<class>/<file>'``: how model files name their training images (independent of where
    the dataset folder is)."""
    return f'{path.parent.name}/{path.name}'
