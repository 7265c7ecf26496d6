"""Evaluate a saved model on the task's dataset as it is now (the ``evaluate`` action).

The images are split by what the model was trained on (``ModelFile.train_files``): the ones it
never saw are the *validation* figures (its held-out split plus anything collected since), the
rest the *training* figures. A model without a record of its training images (imported, or
made before this was recorded) counts every image as validation, and the result says so.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .dataset import load_images, sample_name
from .evaluation import TRAINING, VALIDATION, Figures, figures
from .model import ModelFile
from .tasks import Task
from .training import predict_batches

__all__ = ['Review', 'evaluate_model']


@dataclass(frozen=True)
class Review:
    """Figures per split; ``skipped``: undecodable files; ``cancelled``: stopped early (the
    figures are then empty); ``notes``: sentences for the result message."""

    validation: Figures
    training: Figures
    skipped: int
    cancelled: bool
    notes: tuple[str, ...] = ()


def evaluate_model(task: Task, mf: ModelFile, batch_size: int = 32,
                   on_progress: Callable[[int, int], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> Review:
    """Classify every image of ``task`` with ``mf`` (its own preprocessing, no augmentation).

    ``on_progress(done, total)`` after every batch; ``should_stop()`` before every batch.

    Raises:
        DatasetError: no dataset folder or no readable image at all (a class without images
            is fine: its recall is -1 and a note says so).
        ValueError: batch_size < 1.
    """
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    on_progress = on_progress or (lambda done, total: None)
    should_stop = should_stop or (lambda: False)
    data = load_images(task, mf.spec, allow_empty=True)
    known = set(mf.train_files)
    trained = torch.tensor([sample_name(p) in known for p in data.paths], dtype=torch.bool)
    notes = []
    if not known:
        notes.append('the model file does not record its training images: every image counts '
                     'as validation')
    empty = [c for i, c in enumerate(task.classes) if not int((data.targets == i).sum())]
    if empty:
        notes.append(f'no images of {", ".join(empty)}: recall undefined (-1)')
    total, done = len(data), 0
    out = {}
    for split, mask in ((VALIDATION, ~trained), (TRAINING, trained)):
        idx = torch.nonzero(mask).flatten()
        probs = []
        for start in range(0, len(idx), batch_size):
            if should_stop():
                return Review(Figures(), Figures(), len(data.skipped), True, tuple(notes))
            chunk = idx[start:start + batch_size]
            probs.append(predict_batches(mf.model, data.images[chunk], mf.spec, batch_size))
            done += len(chunk)
            on_progress(done, total)
        p = torch.cat(probs) if probs else torch.empty(0, len(task.classes))
        out[split] = figures(split, p, data.targets[idx], task.classes,
                             [data.paths[i] for i in idx.tolist()])
    return Review(out[VALIDATION], out[TRAINING], len(data.skipped), False, tuple(notes))
