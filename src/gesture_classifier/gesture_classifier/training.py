"""Fine-tuning recipe of the NVIDIA DLI classification tool, as plain functions.

Recipe: ResNet-18 (all layers trained) with a new ``fc`` layer, Adam (lr 1e-3), batch size 8,
cross-entropy loss, ``ColorJitter(0.2, 0.2, 0.2, 0.2)`` augmentation, the shared
:mod:`.preprocess` (resize to 224, ImageNet normalisation). Added here: a stratified held-out
validation split (``val_fraction``) so the result reports accuracy on unseen images, a seed for
repeatable runs, and hooks for progress (called after every batch) and cancellation (checked
before every batch).

Layout after torchvision ``references/classification/train.py``: :func:`train_one_epoch`,
:func:`evaluate`, and :func:`fit` over epochs; :func:`train_task` goes from a task's folders to
a saved model file.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from collections.abc import Callable

import torch
from torch import nn
from torchvision.transforms import v2 as T

from .dataset import ImageSet, load_images, split_indices
from .model import ModelFile, create_model, load_initial_weights, new_model_id, save_model
from .preprocess import PreprocessSpec, normalize
from .tasks import Task

__all__ = ['TrainConfig', 'Progress', 'FitResult', 'TrainOutcome', 'train_one_epoch',
           'evaluate', 'fit', 'train_task', 'resolve_device']

LOG = logging.getLogger(__name__)
DEFAULT_SPEC = PreprocessSpec()  # frozen, so one shared instance is safe


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run.

    Attributes:
        epochs: passes over the training images, >= 1.
        batch_size: images per optimisation step, >= 1 (DLI: 8).
        learning_rate: Adam learning rate, > 0 (DLI / Adam default: 1e-3).
        val_fraction: share of each class held out for validation, [0, 0.9].
        seed: seeds the split, the augmentation, the batch order and the new layers.
        augment: apply ColorJitter(0.2, 0.2, 0.2, 0.2) to training images.
        device: torch device string ('cpu', 'cuda', 'cuda:0').
    """

    epochs: int
    batch_size: int = 8
    learning_rate: float = 1e-3
    val_fraction: float = 0.2
    seed: int = 0
    augment: bool = True
    device: str = 'cpu'

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f'epochs must be >= 1, got {self.epochs}')
        if self.batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {self.batch_size}')
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f'learning_rate must be a positive number, got {self.learning_rate}')
        if not 0.0 <= self.val_fraction <= 0.9:
            raise ValueError(f'val_fraction must be in [0, 0.9], got {self.val_fraction}')


@dataclass(frozen=True)
class Progress:
    """Sent after every batch. epoch/batch are 1-based; progress in [0, 1]; loss is the mean
    cross-entropy (nats) and accuracy the share of correct training images in this epoch so
    far; val_accuracy is from the previous epoch (-1 before the first / without validation)."""

    epoch: int
    epochs: int
    batch: int
    batches: int
    progress: float
    loss: float
    accuracy: float
    val_accuracy: float


@dataclass(frozen=True)
class FitResult:
    """epochs_completed counts whole epochs; accuracies as in Progress (last epoch)."""

    epochs_completed: int
    train_accuracy: float
    val_accuracy: float
    cancelled: bool


@dataclass(frozen=True)
class TrainOutcome:
    """What :func:`train_task` did. ``model`` is None when cancelled (nothing saved)."""

    fit: FitResult
    model: ModelFile | None
    train_images: int
    val_images: int
    skipped: int
    pretrained: bool
    weights_message: str


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; anything else is passed to torch.device.

    Raises:
        ValueError: unknown device string, or CUDA asked for but not available.
    """
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"bad device {name!r}: use 'auto', 'cpu' or 'cuda[:N]'") from exc
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'device {name!r} asked for, but CUDA is not available here')
    return device


def _augmenter() -> T.Transform:
    return T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.2)


def train_one_epoch(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
                    optimizer: torch.optim.Optimizer, spec: PreprocessSpec, cfg: TrainConfig,
                    generator: torch.Generator, report: Callable[[int, int, float, float], None],
                    should_stop: Callable[[], bool]) -> tuple[float, float, bool]:
    """One pass over ``images`` (uint8 ``(N, 3, S, S)``) in a random order.

    ``report(batch, batches, mean_loss, accuracy)`` is called after every batch;
    ``should_stop()`` before every batch - when it returns True the epoch ends at once.

    Returns:
        (mean loss, accuracy, stopped) over the batches done.
    """
    model.train()
    device = next(model.parameters()).device
    criterion = nn.CrossEntropyLoss()
    augment = _augmenter() if cfg.augment else None
    order = torch.randperm(len(targets), generator=generator)
    batches = math.ceil(len(order) / cfg.batch_size)
    loss_sum, correct, seen = 0.0, 0, 0
    for b in range(batches):
        if should_stop():
            return (loss_sum / max(b, 1), correct / max(seen, 1), True)
        idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        batch = images[idx].to(device, non_blocking=True)
        if augment is not None:
            batch = torch.stack([augment(img) for img in batch])
        x = normalize(batch, spec)
        y = targets[idx].to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = criterion(logits, y)
        loss.backward()
        optimizer.step()
        loss_sum += float(loss.detach())
        correct += int((logits.argmax(1) == y).sum())
        seen += len(idx)
        report(b + 1, batches, loss_sum / (b + 1), correct / seen)
    return loss_sum / max(batches, 1), correct / max(seen, 1), False


def evaluate(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
             spec: PreprocessSpec, batch_size: int = 32) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on uint8 ``images``; -1.0 for an empty set."""
    if len(targets) == 0:
        return -1.0
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(targets), batch_size):
            x = normalize(images[start:start + batch_size].to(device), spec)
            pred = model(x).argmax(1).cpu()
            correct += int((pred == targets[start:start + batch_size]).sum())
    return correct / len(targets)


def fit(model: nn.Module, train_images: torch.Tensor, train_targets: torch.Tensor,
        val_images: torch.Tensor, val_targets: torch.Tensor, spec: PreprocessSpec,
        cfg: TrainConfig, on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None) -> FitResult:
    """Train ``model`` (already on its device) for ``cfg.epochs`` epochs with Adam.

    Cancellation: ``should_stop`` is checked before every batch, so a stop takes effect within
    one batch; the returned FitResult then has ``cancelled=True``.
    """
    on_progress = on_progress or (lambda p: None)
    should_stop = should_stop or (lambda: False)
    generator = torch.Generator().manual_seed(cfg.seed)
    # ColorJitter draws from torch's global generator: seed it here (not at import) so a run
    # is repeatable for a given seed.
    torch.manual_seed(cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    batches = math.ceil(len(train_targets) / cfg.batch_size)
    total = cfg.epochs * batches
    val_acc, train_acc = -1.0, 0.0
    for epoch in range(1, cfg.epochs + 1):
        def report(batch, n, loss, acc, epoch=epoch, val_acc=val_acc):
            done = (epoch - 1) * batches + batch
            on_progress(Progress(epoch, cfg.epochs, batch, n, done / total, loss, acc, val_acc))

        _, train_acc, stopped = train_one_epoch(model, train_images, train_targets, optimizer,
                                                spec, cfg, generator, report, should_stop)
        if stopped:
            return FitResult(epoch - 1, train_acc, val_acc, cancelled=True)
        val_acc = evaluate(model, val_images, val_targets, spec)
        LOG.info('epoch %d/%d: train accuracy %.3f, val accuracy %.3f', epoch, cfg.epochs,
                 train_acc, val_acc)
    return FitResult(cfg.epochs, train_acc, val_acc, cancelled=False)


def train_task(task: Task, cfg: TrainConfig, initial_weights: str = 'imagenet',
               spec: PreprocessSpec = DEFAULT_SPEC,
               on_progress: Callable[[Progress], None] | None = None,
               should_stop: Callable[[], bool] | None = None,
               data: ImageSet | None = None) -> TrainOutcome:
    """Load the task's images, fine-tune a new ResNet-18 and save it to ``task.model_path``.

    The model file is replaced atomically only when training completes; a cancelled run saves
    nothing and the previous model stays.

    Raises:
        DatasetError: the dataset is unusable (see dataset.load_images).
        ModelFileError: ``initial_weights`` is a path that cannot be loaded.
        OSError: the model could not be saved (the previous one stays intact).
    """
    data = data if data is not None else load_images(task, spec)
    generator = torch.Generator().manual_seed(cfg.seed)
    train_idx, val_idx = split_indices(data.targets, cfg.val_fraction, generator)
    torch.manual_seed(cfg.seed)  # the new fc layer's initialisation
    model = create_model(len(task.classes))
    weights = load_initial_weights(model, initial_weights)
    LOG.info('%s', weights.message)
    model.to(torch.device(cfg.device))
    result = fit(model, data.images[train_idx], data.targets[train_idx],
                 data.images[val_idx], data.targets[val_idx], spec, cfg,
                 on_progress, should_stop)
    mf = None
    if not result.cancelled:
        mf = ModelFile(model=model, class_names=task.classes, spec=spec, task=task.name,
                       model_id=new_model_id(task.name), initial_weights=weights.source,
                       pretrained=weights.pretrained, epochs=result.epochs_completed,
                       train_accuracy=result.train_accuracy, val_accuracy=result.val_accuracy)
        save_model(mf, task.model_path)
        model.eval()
    return TrainOutcome(fit=result, model=mf, train_images=len(train_idx),
                        val_images=len(val_idx), skipped=len(data.skipped),
                        pretrained=weights.pretrained, weights_message=weights.message)
