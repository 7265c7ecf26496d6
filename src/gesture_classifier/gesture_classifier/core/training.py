"""Fine-tuning of ResNet-18 on a task's images, as plain functions, with named recipes.

A :class:`Recipe` says which layers train, how BatchNorm behaves, the optimiser, the
augmentation and whether weights are averaged. Presets (:data:`RECIPES`):

- ``generalise`` (the default): the stem, ``layer1`` and ``layer2`` keep their pretrained
  weights; one epoch trains only the new ``fc`` (linear probe), then ``layer3``, ``layer4`` and
  ``fc`` fine-tune with AdamW (``fc`` 1e-3, backbone 1e-4, weight decay 1e-4, cosine decay),
  BatchNorm frozen, label smoothing 0.1, "camera" augmentation (crop/zoom/aspect, rotation,
  colour, grayscale, blur); the saved weights are the average of the epochs after the first
  third (SWA). WiSE-FT (a blend with the model after the warm-up) is available as a setting
  but not used: it hurt when the warm-up head was poor (see the README).
  Chosen by the learning benchmark (``bench/learning.py``; figures in the README) for the
  accuracy of its *worst* seed on people the model was not trained on.
- ``dli``: the NVIDIA DLI notebook's recipe (every layer, Adam 1e-3, BatchNorm re-estimated on
  batches of 8, ``ColorJitter(0.2, 0.2, 0.2, 0.2)``), to reproduce the course.
- ``layer4``, ``linear_probe``: fewer trained layers, for comparison.

Common to all: batch size 8, cross-entropy, the shared :mod:`.preprocess` (the whole frame
resized to 224, ImageNet normalisation) at training and at inference, a stratified held-out
validation split (``val_fraction``), a seed for repeatable runs, and hooks for progress
(called after every batch) and cancellation (checked before every batch).

Layout after torchvision ``references/classification/train.py``: :func:`train_one_epoch`,
:func:`evaluate`, and :func:`fit` over epochs; :func:`train_task` goes from a task's folders to
a saved model file.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import math
from dataclasses import dataclass, field
from collections.abc import Callable

import torch
from torch import nn
from torchvision.transforms import v2 as T

from .calibration import fit_temperature
from .trust import fit_ood_reference
from .dataset import ImageSet, load_images, sample_name, split_indices
from .evaluation import TRAINING, VALIDATION, Figures, cross_entropy, figures
from .model import ModelFile, create_model, load_initial_weights, new_model_id, save_model
from .preprocess import PreprocessSpec, normalize
from .tasks import Task

__all__ = ['STAGES', 'AUGMENTATIONS', 'AVERAGING', 'Recipe', 'RECIPES', 'DEFAULT_RECIPE', 'DLI',
           'get_recipe', 'TrainConfig', 'Progress', 'FitResult', 'TrainOutcome', 'augmenter',
           'set_train_mode', 'trainable_parameters', 'make_optimizer', 'train_one_epoch',
           'logits_batches', 'predict_batches', 'evaluate', 'validate', 'wise_blend', 'fit',
           'train_task', 'resolve_device', 'L2SP', 'RandomGamma', 'RandomWhiteBalance',
           'auto_epochs', 'auto_steps', 'AUTO_EPOCHS_RANGE', 'shuffle_tiles', 'OUTLIER_GRID']

LOG = logging.getLogger(__name__)
#: The preprocessing of a new model (frozen, so one shared instance is safe): 224 px, ImageNet
#: statistics, and the gray-world white balance (docs/learning.md: what it does to each
#: test set). A model trained further keeps its parent's.
DEFAULT_SPEC = PreprocessSpec(white_balance='gray_world')


#: ResNet-18 stages in forward order; ``Recipe.train_from`` names the first one that trains.
STAGES = ('conv1', 'layer1', 'layer2', 'layer3', 'layer4', 'fc')
AUGMENTATIONS = ('none', 'dli', 'camera', 'robust')
AVERAGING = ('none', 'swa', 'dense')
#: Fewest and most epochs :func:`auto_epochs` chooses.
AUTO_EPOCHS_RANGE = (10, 100)


@dataclass(frozen=True)
class Recipe:
    """How a model is fine-tuned: which layers train, how BatchNorm behaves, the optimiser,
    the augmentation and whether weights are averaged. Named presets are in :data:`RECIPES`.

    Attributes:
        name: preset name, or ``'custom'`` after :meth:`replace`.
        train_from: first trained stage of :data:`STAGES`; the stages before it keep their
            initial weights ('conv1' = every layer, 'fc' = a linear probe).
        freeze_batchnorm: BatchNorm layers stay in eval mode (running statistics frozen) and
            their scale/shift are not trained, as detection codebases do (torchvision
            ``FrozenBatchNorm2d``): statistics re-estimated on batches of 8 are noisy.
        learning_rate: AdamW learning rate of ``fc``, > 0.
        backbone_lr_factor: trained backbone stages use ``learning_rate * factor``, in (0, 1].
        weight_decay: AdamW decoupled weight decay, >= 0 (0 = plain Adam, as the DLI).
        label_smoothing: cross-entropy label smoothing, [0, 0.5).
        augmentation: 'none'; 'dli' = ``ColorJitter(0.2, 0.2, 0.2, 0.2)`` only; 'camera' =
            random crop/zoom/aspect (``RandomResizedCrop``, scale [0.5, 1], ratio [3/4, 4/3]),
            small rotation (+-``rotation`` degrees), colour/brightness jitter, grayscale and
            blur: how a hand appears at other distances, positions, cameras and light;
            'robust' = 'camera' plus a white balance (red/blue gains up to 1.5x,
            :class:`RandomWhiteBalance`), a tone curve (:class:`RandomGamma`) and JPEG
            artefacts (torchvision >= 0.19).
        head_warmup_epochs: epochs at the start in which only ``fc`` trains (linear probe,
            then fine-tune: Kumar et al., ICLR 2022), 0..epochs.
        cosine: learning rate follows a cosine from its value to 0 over the fine-tuning steps
            (after the warm-up); otherwise constant.
        average: 'swa' = the saved weights are the mean of the weights at the end of each
            fine-tuning epoch after the first third of the epochs (stochastic weight averaging,
            Izmailov et al., UAI 2018; needs ``freeze_batchnorm``); 'dense' = the mean of the
            weights after every optimisation step from the same point on (dense averaging as
            SWAD, Cha et al., NeurIPS 2021, with its window the whole last two thirds);
            'none' = last epoch.
        rotation: largest random rotation of the 'camera' and 'robust' augmentations, in
            degrees either way (``RandomRotation``), 0..45: a thumb held at a slant; beyond
            45 degrees a thumbs-up could pass for a thumbs-down turned on its side.
        crop_scale: (low, high) area share of the random crops of the 'camera' and 'robust'
            augmentations (``RandomResizedCrop(scale=...)``), 0 < low <= high <= 1: a low
            value zooms in (a hand that fills more of the frame).
        mix: MixUp / CutMix (Zhang et al., ICLR 2018; Yun et al., ICCV 2019), one of the two
            chosen at random per batch, with Beta(mix, mix) mixing weights; 0 = off, else
            in (0, 2].
        auto_steps_per_class: optimisation steps per class an ``epochs=0`` ("auto") goal aims
            for (a two-class task: twice this, five classes: five times): the epochs are
            chosen by :func:`auto_epochs` so that small datasets get enough steps to fit and
            large ones do not take needlessly long, >= 1.
        l2sp: pull of the trained backbone weights back toward their starting (pretrained)
            values after every step, ``w -= lr * l2sp * (w - w0)`` (L2-SP, Li et al., ICML
            2018, in AdamW's decoupled form; the backbone then gets no plain weight decay);
            0 = off, else in (0, 1].
        outlier_exposure: weight of an outlier-exposure term (Hendrycks et al., ICLR 2019)
            with synthetic outliers made from the batch itself: half of each batch's images,
            cut into a :data:`OUTLIER_GRID` x :data:`OUTLIER_GRID` grid of tiles shuffled
            (:func:`shuffle_tiles`: the room's colours and textures without a whole hand), are
            trained toward the uniform distribution over the classes (cross-entropy to
            uniform, added to the loss with this weight), meant to give a frame without a
            taught gesture low confidence and a high OOD score; on real such frames it did
            not (seed 0, docs/learning.md), so it is off by default; 0 = off, else in (0, 2].
            Off with ``augment=False``.
        wise_alpha: weight-space ensemble of the fine-tuned and the linear-probe model
            (WiSE-FT, Wortsman et al., CVPR 2022): the saved weights are
            ``(1 - wise_alpha) * probe + wise_alpha * fine_tuned``, where ``probe`` is the
            model at the end of the head warm-up (pretrained backbone, trained ``fc``).
            In (0, 1]; 1 = the fine-tuned weights only. Needs ``freeze_batchnorm`` and a head
            warm-up; skipped (1) when the goal is too short to have one.
    """

    name: str
    train_from: str
    freeze_batchnorm: bool
    learning_rate: float
    backbone_lr_factor: float = 1.0
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    augmentation: str = 'dli'
    head_warmup_epochs: int = 0
    cosine: bool = False
    average: str = 'none'
    wise_alpha: float = 1.0
    crop_scale: tuple[float, float] = (0.5, 1.0)
    mix: float = 0.0
    l2sp: float = 0.0
    auto_steps_per_class: int = 300
    outlier_exposure: float = 0.0
    rotation: float = 10.0

    def __post_init__(self):
        if self.train_from not in STAGES:
            raise ValueError(f'train_from must be one of {STAGES}, got {self.train_from!r}')
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f'learning_rate must be a positive number, got '
                             f'{self.learning_rate}')
        if not 0 < self.backbone_lr_factor <= 1:
            raise ValueError(f'backbone_lr_factor must be in (0, 1], got '
                             f'{self.backbone_lr_factor}')
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f'weight_decay must be >= 0, got {self.weight_decay}')
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f'label_smoothing must be in [0, 0.5), got '
                             f'{self.label_smoothing}')
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f'augmentation must be one of {AUGMENTATIONS}, got '
                             f'{self.augmentation!r}')
        if self.head_warmup_epochs < 0:
            raise ValueError(f'head_warmup_epochs must be >= 0, got {self.head_warmup_epochs}')
        if self.average not in AVERAGING:
            raise ValueError(f'average must be one of {AVERAGING}, got {self.average!r}')
        if self.average != 'none' and not self.freeze_batchnorm:
            raise ValueError('weight averaging needs freeze_batchnorm (averaged weights would '
                             'not match BatchNorm statistics re-estimated while training)')
        low, high = self.crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError(f'crop_scale must be (low, high) with 0 < low <= high <= 1, got '
                             f'{self.crop_scale}')
        if not (0 <= self.mix <= 2 and math.isfinite(self.mix)):
            raise ValueError(f'mix must be in [0, 2], got {self.mix}')
        if not (isinstance(self.auto_steps_per_class, int) and self.auto_steps_per_class >= 1):
            raise ValueError(f'auto_steps_per_class must be an integer >= 1, got '
                             f'{self.auto_steps_per_class!r}')
        if not (0 <= self.l2sp <= 1 and math.isfinite(self.l2sp)):
            raise ValueError(f'l2sp must be in [0, 1], got {self.l2sp}')
        if not (0 <= self.outlier_exposure <= 2 and math.isfinite(self.outlier_exposure)):
            raise ValueError(f'outlier_exposure must be in [0, 2], got {self.outlier_exposure}')
        if not (0 <= self.rotation <= 45 and math.isfinite(self.rotation)):
            raise ValueError(f'rotation must be in [0, 45] degrees, got {self.rotation}')
        if not 0 < self.wise_alpha <= 1:
            raise ValueError(f'wise_alpha must be in (0, 1], got {self.wise_alpha}')
        if self.wise_alpha < 1 and not (self.freeze_batchnorm and self.head_warmup_epochs):
            raise ValueError('wise_alpha < 1 needs freeze_batchnorm and head_warmup_epochs >= 1 '
                             '(it blends with the model at the end of the head warm-up)')

    def replace(self, **changes) -> Recipe:
        """A copy with ``changes`` (validated); named 'custom' unless ``name`` is given."""
        changes.setdefault('name', 'custom' if changes else self.name)
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """One line for logs and results."""
        return (f"recipe {self.name!r}: train from {self.train_from}, BatchNorm "
                f"{'frozen' if self.freeze_batchnorm else 'training'}, AdamW lr "
                f"{self.learning_rate:g} (backbone x{self.backbone_lr_factor:g}), weight decay "
                f"{self.weight_decay:g}, label smoothing {self.label_smoothing:g}, "
                f"augmentation {self.augmentation}, head warm-up {self.head_warmup_epochs} "
                f"epoch(s), {'cosine' if self.cosine else 'constant'} lr, average "
                f"{self.average}, WiSE-FT alpha {self.wise_alpha:g}, crop scale "
                f"{self.crop_scale[0]:g}-{self.crop_scale[1]:g}, mix {self.mix:g}, L2-SP "
                f"{self.l2sp:g}, outlier exposure {self.outlier_exposure:g}, rotation "
                f"{self.rotation:g} deg")


#: The DLI notebook's recipe, kept so a course user can reproduce the course.
DLI = Recipe(name='dli', train_from='conv1', freeze_batchnorm=False, learning_rate=1e-3,
             augmentation='dli')

#: Named presets (``recipe`` parameter and goal field). See the README's learning benchmark
#: for how they compare on people the model never saw.
RECIPES: dict[str, Recipe] = {r.name: r for r in (
    DLI,
    Recipe(name='linear_probe', train_from='fc', freeze_batchnorm=True, learning_rate=1e-3,
           weight_decay=1e-4, augmentation='camera'),
    Recipe(name='layer4', train_from='layer4', freeze_batchnorm=True, learning_rate=1e-3,
           backbone_lr_factor=0.1, weight_decay=1e-4, augmentation='camera'),
    Recipe(name='generalise', train_from='layer3', freeze_batchnorm=True, learning_rate=1e-3,
           backbone_lr_factor=0.1, weight_decay=1e-4, label_smoothing=0.1,
           augmentation='camera', head_warmup_epochs=1, cosine=True, average='swa'),
)}
DEFAULT_RECIPE = 'generalise'


def get_recipe(name: str) -> Recipe:
    """The preset called ``name``.

    Raises:
        ValueError: unknown name (the message lists the presets).
    """
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f'unknown recipe {name!r}; presets: {", ".join(RECIPES)}') from None


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run.

    Attributes:
        epochs: passes over the training images, >= 1; 0 = "auto": :func:`train_task` picks
            them for the training split's size with :func:`auto_epochs` (at most
            ``max_auto_epochs``).
        batch_size: images per optimisation step, >= 1 (DLI: 8).
        learning_rate: overrides ``recipe.learning_rate`` when > 0; 0 = the recipe's.
        val_fraction: share of each class held out for validation, [0, 0.9].
        seed: seeds the split, the augmentation, the batch order and the new layers.
        augment: False turns the recipe's augmentation off.
        hflip: mirrored images may be used for training (a mirrored thumbs-up is still one;
            "point left" is not): a property of the task.
        device: torch device string ('cpu', 'cuda', 'cuda:0').
        recipe: how to fine-tune (see :class:`Recipe`).
        keep_best: keep the weights of the best-validating epoch (highest validation accuracy;
            ties: lower validation loss, then the later epoch), as jetson-inference's
            ``model_best``; False, or no validation images: the last epoch.
    """

    epochs: int
    batch_size: int = 8
    learning_rate: float = 0.0
    val_fraction: float = 0.2
    seed: int = 0
    augment: bool = True
    hflip: bool = True
    device: str = 'cpu'
    recipe: Recipe = field(default_factory=lambda: RECIPES[DEFAULT_RECIPE])
    keep_best: bool = True
    max_auto_epochs: int = AUTO_EPOCHS_RANGE[1]

    def __post_init__(self):
        if self.epochs < 0:
            raise ValueError(f'epochs must be >= 1, or 0 for auto; got {self.epochs}')
        if self.batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {self.batch_size}')
        if not (self.learning_rate >= 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f'learning_rate must be 0 (the recipe\'s) or a positive number, '
                             f'got {self.learning_rate}')
        if not 0.0 <= self.val_fraction <= 0.9:
            raise ValueError(f'val_fraction must be in [0, 0.9], got {self.val_fraction}')

    @property
    def lr(self) -> float:
        """The learning rate of ``fc`` in effect."""
        return self.learning_rate or self.recipe.learning_rate


@dataclass(frozen=True)
class Progress:
    """Sent after every batch. epoch/batch are 1-based; progress in [0, 1]; loss is the mean
    cross-entropy (nats) and accuracy the share of correct training images in this epoch so
    far; val_accuracy / val_loss are from the previous epoch (-1 before the first / without
    validation); best_epoch / best_val_accuracy: the best-validating epoch so far (0 / -1)."""

    epoch: int
    epochs: int
    batch: int
    batches: int
    progress: float
    loss: float
    accuracy: float
    val_accuracy: float
    val_loss: float = -1.0
    best_epoch: int = 0
    best_val_accuracy: float = -1.0


@dataclass(frozen=True)
class FitResult:
    """epochs_completed counts whole epochs; train/val_accuracy as in Progress (last epoch;
    with weight averaging, val_accuracy is of the averaged weights).

    The model :func:`fit` leaves is the one of ``saved_epoch`` (1-based), with
    ``saved_train_accuracy`` / ``saved_val_accuracy``; ``best_selected`` says it is the
    best-validating epoch chosen over a later one. ``best_*``: the best-validating epoch and
    its figures (0 / -1 without validation images); ``last_val_loss`` in nats (-1 without).
    """

    epochs_completed: int
    train_accuracy: float
    val_accuracy: float
    cancelled: bool
    last_val_loss: float = -1.0
    best_epoch: int = 0
    best_val_accuracy: float = -1.0
    best_val_loss: float = -1.0
    saved_epoch: int = 0
    saved_train_accuracy: float = -1.0
    saved_val_accuracy: float = -1.0
    best_selected: bool = False


@dataclass(frozen=True)
class TrainOutcome:
    """What :func:`train_task` did. ``model`` is None when cancelled (nothing saved).
    ``parent``: model_id continued from ('' = initial weights). ``validation`` /
    ``training``: the saved model evaluated on the split with its calibrated probabilities
    (empty Figures when cancelled). ``temperature`` / ``calibration``: fitted on the
    validation split after training and how (see calibration.fit_temperature)."""

    fit: FitResult
    model: ModelFile | None
    train_images: int
    val_images: int
    skipped: int
    pretrained: bool
    weights_message: str
    parent: str = ''
    validation: Figures = field(default_factory=Figures)
    training: Figures = field(default_factory=Figures)
    temperature: float = 1.0
    calibration: str = ''


def auto_steps(recipe: Recipe, classes: int) -> int:
    """Optimisation steps an ``epochs=0`` goal aims for: ``recipe.auto_steps_per_class``
    times the task's number of classes (``classes`` >= 1; 600 for a two-class task with the
    default recipe, 1500 for five)."""
    return recipe.auto_steps_per_class * max(classes, 1)


def auto_epochs(train_images: int, classes: int, batch_size: int, recipe: Recipe,
                max_epochs: int = AUTO_EPOCHS_RANGE[1]) -> int:
    """Epochs for an ``epochs=0`` goal: enough passes for :func:`auto_steps` optimisation
    steps of ``batch_size`` images, within ``[AUTO_EPOCHS_RANGE[0], max_epochs]``.

    Why steps and not epochs: with ~45 images a class, 10 epochs are about 200 steps and leave
    the five-class fingers task under-trained (training accuracy 0.86); the same 10 epochs of
    a 5,000-image dataset are 6,000 steps. Why per class: 600 steps fit thumbs (2 classes) and
    twice as many moved its new person by under a point (0.974 -> 0.982), while fingers
    (5 classes) gained on held-out photos from 600 to 1500 (docs/learning.md has the
    measurements).

    Raises:
        ValueError: ``train_images`` < 1 or ``batch_size`` < 1.
    """
    if train_images < 1 or batch_size < 1:
        raise ValueError(f'need >= 1 training image and batch size, got {train_images} and '
                         f'{batch_size}')
    batches = math.ceil(train_images / batch_size)
    wanted = math.ceil(auto_steps(recipe, classes) / batches)
    return max(min(AUTO_EPOCHS_RANGE[0], max_epochs), min(wanted, max_epochs))


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


def augmenter(recipe: Recipe, hflip: bool) -> T.Transform | None:
    """The training augmentation of ``recipe`` for one uint8 ``(3, S, S)`` image (same size
    out), or None for 'none'. Never used at evaluation or by the classifier."""
    if recipe.augmentation == 'none':
        return None
    if recipe.augmentation == 'dli':
        return T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.2)
    steps = [
        T.RandomResizedCrop(DEFAULT_SPEC.input_size, scale=recipe.crop_scale,
                            ratio=(3 / 4, 4 / 3), antialias=True),
        T.RandomHorizontalFlip(0.5 if hflip else 0.0),
        T.RandomRotation(recipe.rotation),
        T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.05),
        T.RandomGrayscale(0.1),
        T.RandomApply([T.GaussianBlur(5, sigma=(0.1, 1.5))], p=0.2),
    ]
    if recipe.augmentation == 'robust':
        # what other cameras and rooms add: a white balance (an untuned CSI camera's colour
        # cast), a tone curve (gamma), JPEG artefacts
        steps.append(T.RandomApply([RandomWhiteBalance(1.5)], p=0.5))
        steps.append(T.RandomApply([RandomGamma((0.6, 1.6))], p=0.5))
        if hasattr(T, 'JPEG'):  # torchvision >= 0.19
            steps.append(T.RandomApply([T.JPEG((40, 95))], p=0.3))
    return T.Compose(steps)


class RandomGamma(T.Transform):
    """``x -> 255 * (x / 255) ** gamma`` on a uint8 image, gamma drawn log-uniformly from
    ``gammas`` (low, high): > 1 darkens the mid-tones, < 1 brightens them (a camera's tone
    curve; brightness jitter only scales)."""

    def __init__(self, gammas: tuple[float, float]):
        super().__init__()
        self.gammas = gammas

    def make_params(self, flat_inputs):
        low, high = math.log(self.gammas[0]), math.log(self.gammas[1])
        return {'gamma': math.exp(low + (high - low) * float(torch.rand(())))}

    def transform(self, inpt, params):
        return T.functional.adjust_gamma(inpt, params['gamma'])

    # torchvision < 0.21 (JetPack's builds) calls the private names
    _get_params, _transform = make_params, transform


class RandomWhiteBalance(T.Transform):
    """A camera's white balance on a uint8 RGB image: red and blue multiplied by gains drawn
    log-uniformly from ``[1 / max_gain, max_gain]`` each, green kept (cameras balance red and
    blue against green), clipped to 0..255. A colour cast like an untuned CSI camera's
    (pink/purple) is such a gain; ``ColorJitter``'s hue rotates every colour instead."""

    def __init__(self, max_gain: float):
        super().__init__()
        if not max_gain >= 1:
            raise ValueError(f'max_gain must be >= 1, got {max_gain}')
        self.max_gain = max_gain

    def make_params(self, flat_inputs):
        log_gains = (torch.rand(2) * 2 - 1) * math.log(self.max_gain)
        red, blue = torch.exp(log_gains).tolist()
        return {'gains': (red, 1.0, blue)}

    def transform(self, inpt, params):
        gains = torch.tensor(params['gains'], dtype=torch.float32).view(3, 1, 1)
        return inpt.float().mul_(gains).clamp_(0, 255).to(inpt.dtype)

    _get_params, _transform = make_params, transform  # torchvision < 0.21


def _is_batchnorm(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def set_train_mode(model: nn.Module, recipe: Recipe) -> None:
    """``model.train()``, except that BatchNorm layers stay in eval mode (frozen running
    statistics) when ``recipe.freeze_batchnorm``."""
    model.train()
    if recipe.freeze_batchnorm:
        for module in model.modules():
            if _is_batchnorm(module):
                module.eval()


def _stage_of(name: str) -> str:
    """'layer3.1.conv2.weight' -> 'layer3'; 'bn1.weight' -> 'conv1' (the stem)."""
    head = name.split('.', 1)[0]
    return head if head in STAGES else 'conv1'


def trainable_parameters(model: nn.Module, recipe: Recipe,
                         head_only: bool = False) -> list[nn.Parameter]:
    """Set ``requires_grad`` on every parameter as ``recipe`` says (stages from
    ``recipe.train_from`` on, BatchNorm scale/shift only when BatchNorm is not frozen; only
    ``fc`` when ``head_only``) and return the trained ones."""
    first = STAGES.index('fc' if head_only else recipe.train_from)
    bn_params = {id(p) for m in model.modules() if _is_batchnorm(m) for p in m.parameters()}
    trained = []
    for name, param in model.named_parameters():
        train = STAGES.index(_stage_of(name)) >= first and not (
            recipe.freeze_batchnorm and id(param) in bn_params)
        param.requires_grad_(train)
        if train:
            trained.append(param)
    return trained


def make_optimizer(model: nn.Module, recipe: Recipe, lr: float) -> torch.optim.Optimizer:
    """AdamW (Adam when weight decay is 0) over the stages ``recipe`` trains: ``fc`` at ``lr``,
    the backbone at ``lr * backbone_lr_factor``. Every parameter of those stages is in the
    optimizer, so a head warm-up can freeze and later unfreeze them."""
    trainable_parameters(model, recipe)
    head = [p for n, p in model.named_parameters() if n.startswith('fc.') and p.requires_grad]
    body = [p for n, p in model.named_parameters()
            if not n.startswith('fc.') and p.requires_grad]
    groups = [{'params': head, 'lr': lr}]
    if body:
        groups.append({'params': body, 'lr': lr * recipe.backbone_lr_factor,
                       'weight_decay': 0.0 if recipe.l2sp else recipe.weight_decay})
    return torch.optim.AdamW(groups, weight_decay=recipe.weight_decay)


class L2SP:
    """Decoupled L2-SP (see Recipe.l2sp): after each optimiser step, every trained backbone
    weight moves back toward its value when this object was made, by ``lr * l2sp`` of the
    gap (``lr`` of its parameter group, so the pull follows the schedule)."""

    def __init__(self, optimizer: torch.optim.Optimizer, strength: float):
        self.strength = strength
        self.groups = [(g, [p.detach().clone() for p in g['params']])
                       for g in optimizer.param_groups[1:]]  # [0] is fc: no anchor

    @torch.no_grad()
    def step(self) -> None:
        for group, anchors in self.groups:
            rate = group['lr'] * self.strength
            for param, anchor in zip(group['params'], anchors):
                param.lerp_(anchor, rate)


def train_one_epoch(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
                    optimizer: torch.optim.Optimizer, spec: PreprocessSpec, cfg: TrainConfig,
                    generator: torch.Generator, report: Callable[[int, int, float, float], None],
                    should_stop: Callable[[], bool],
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    augment: T.Transform | None = None, mixer: T.Transform | None = None,
                    l2sp: L2SP | None = None,
                    after_step: Callable[[], None] | None = None) -> tuple[float, float, bool]:
    """One pass over ``images`` (uint8 ``(N, 3, S, S)``) in a random order, in the training
    mode of ``cfg.recipe`` (see :func:`set_train_mode`).

    ``augment`` (see :func:`augmenter`) is applied to each image; ``mixer`` (MixUp/CutMix,
    see Recipe.mix) to each normalised batch and its labels; unless ``cfg.augment`` is False,
    half of each batch also goes through :func:`shuffle_tiles` for Recipe.outlier_exposure;
    ``scheduler``, ``l2sp`` and ``after_step()`` run after every batch's optimiser step, in
    that order. ``report(batch, batches, mean_loss,
    accuracy)`` is called after every batch; ``should_stop()`` before every batch - when it
    returns True the epoch ends at once.

    Returns:
        (mean loss, accuracy, stopped) over the batches done.
    """
    set_train_mode(model, cfg.recipe)
    device = next(model.parameters()).device
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.recipe.label_smoothing)
    exposure = cfg.recipe.outlier_exposure if cfg.augment else 0.0
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
        x, soft = mixer(x, y) if mixer is not None else (x, y)
        optimizer.zero_grad(set_to_none=True)
        if exposure:
            outliers = shuffle_tiles(x[:max(1, len(x) // 2)], OUTLIER_GRID)
            both = model(torch.cat([x, outliers]))
            logits = both[:len(x)]
            # cross-entropy to the uniform distribution: -mean over classes of log p
            loss = criterion(logits, soft) + exposure * \
                -both[len(x):].log_softmax(1).mean(1).mean()
        else:
            logits = model(x)
            loss = criterion(logits, soft)
        loss.backward()
        optimizer.step()
        if l2sp is not None:
            l2sp.step()
        if scheduler is not None:
            scheduler.step()
        if after_step is not None:
            after_step()
        loss_sum += float(loss.detach())
        correct += int((logits.argmax(1) == y).sum())
        seen += len(idx)
        report(b + 1, batches, loss_sum / (b + 1), correct / seen)
    return loss_sum / max(batches, 1), correct / max(seen, 1), False


def logits_batches(model: nn.Module, images: torch.Tensor, spec: PreprocessSpec,
                   batch_size: int = 32) -> torch.Tensor:
    """Logits, float32 ``(N, classes)`` on the CPU, of ``model`` in eval mode on uint8
    ``images`` ``(N, 3, S, S)`` (no augmentation: what the classifier computes)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = normalize(images[start:start + batch_size].to(device), spec)
            out.append(model(x).float().cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


def predict_batches(model: nn.Module, images: torch.Tensor, spec: PreprocessSpec,
                    batch_size: int = 32, temperature: float = 1.0) -> torch.Tensor:
    """Probabilities ``softmax(logits / temperature)``, float32 ``(N, classes)`` on the CPU
    (see :func:`logits_batches`; ``temperature`` > 0, from the model file)."""
    logits = logits_batches(model, images, spec, batch_size)
    return (logits / temperature).softmax(1) if logits.numel() else logits


def validate(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
             spec: PreprocessSpec, batch_size: int = 32) -> tuple[float, float]:
    """(top-1 accuracy in [0, 1], mean cross-entropy in nats) of ``model``; (-1, -1) for an
    empty set."""
    if len(targets) == 0:
        return -1.0, -1.0
    probs = predict_batches(model, images, spec, batch_size)
    return int((probs.argmax(1) == targets).sum()) / len(targets), cross_entropy(probs, targets)


def _better(acc: float, loss: float, best: tuple | None) -> bool:
    """Higher accuracy, then lower (or equal: the later epoch wins) loss than ``best``."""
    return best is None or acc > best[1] or (acc == best[1] and loss <= best[2])


def evaluate(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
             spec: PreprocessSpec, batch_size: int = 32) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on uint8 ``images``; -1.0 for an empty set."""
    if len(targets) == 0:
        return -1.0
    pred = predict_batches(model, images, spec, batch_size).argmax(1)
    return int((pred == targets).sum()) / len(targets)


def wise_blend(probe: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor],
               alpha: float) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * probe + alpha * tuned`` for every floating-point tensor of two
    state_dicts of the same network (WiSE-FT); integer buffers (BatchNorm's batch counter)
    come from ``tuned``."""
    return {k: torch.lerp(probe[k], v, alpha) if v.is_floating_point() else v
            for k, v in tuned.items()}


#: Tiles per side of :func:`shuffle_tiles` for Recipe.outlier_exposure: 56-pixel tiles at
#: 224 px, smaller than a hand in the DLI tool's frames, larger than its fingers.
OUTLIER_GRID = 4


def shuffle_tiles(x: torch.Tensor, grid: int) -> torch.Tensor:
    """Synthetic outliers: each image of ``x`` (``(B, C, H, W)``, any dtype, H and W >=
    ``grid``) cut into ``grid`` x ``grid`` tiles of ``H // grid`` x ``W // grid`` pixels, put back
    in a random order of its own (torch's global generator; a border that does not fill a
    whole tile stays). Local colour and texture stay, the shape of what spans tiles (a hand)
    does not. Returns a new tensor of the same shape, dtype and device."""
    b, c, h, w = x.shape
    th, tw = h // grid, w // grid
    out = x.clone()
    region = x[:, :, :grid * th, :grid * tw]
    tiles = region.reshape(b, c, grid, th, grid, tw).permute(0, 2, 4, 1, 3, 5) \
        .reshape(b, grid * grid, c, th, tw)
    order = torch.rand(b, grid * grid).argsort(1).to(x.device)
    tiles = tiles[torch.arange(b, device=x.device)[:, None], order]
    out[:, :, :grid * th, :grid * tw] = tiles.reshape(b, grid, grid, c, th, tw) \
        .permute(0, 3, 1, 4, 2, 5).reshape(b, c, grid * th, grid * tw)
    return out


def _mixer(alpha: float, classes: int) -> T.Transform:
    """MixUp or CutMix, one drawn per batch, Beta(alpha, alpha) weights; labels become class
    probabilities (``(B, classes)``)."""
    return T.RandomChoice([T.MixUp(alpha=alpha, num_classes=classes),
                           T.CutMix(alpha=alpha, num_classes=classes)])


def _schedule(optimizer, steps: int, cosine: bool):
    if not cosine or steps <= 0:
        return None
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))


def fit(model: nn.Module, train_images: torch.Tensor, train_targets: torch.Tensor,
        val_images: torch.Tensor, val_targets: torch.Tensor, spec: PreprocessSpec,
        cfg: TrainConfig, on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None) -> FitResult:
    """Train ``model`` (already on its device) for ``cfg.epochs`` epochs with ``cfg.recipe``.

    The first ``recipe.head_warmup_epochs`` epochs train ``fc`` only; then the stages from
    ``recipe.train_from`` on train, with a cosine schedule when the recipe says so. With
    ``average='swa'``, ``model`` ends holding the mean of the weights after each fine-tuning
    epoch after the first third (``torch.optim.swa_utils.AveragedModel``), with
    ``average='dense'`` of the weights after every step of those epochs; with ``wise_alpha``
    < 1 that is then blended with the model at the end of the warm-up (:func:`wise_blend`).
    The returned validation accuracy is that of the final weights.

    Best epoch: with ``cfg.keep_best``, validation images and a recipe that does not average
    weights (``average='none'``, ``wise_alpha=1``: ``dli``, ``layer4``, ``linear_probe``),
    ``model`` ends holding the best-validating weights (see TrainConfig.keep_best) and
    FitResult says which epoch that was. A recipe that averages (``generalise``) keeps its
    average: the validation images come from the same people and rooms as the training
    images, and picking one epoch by them undid the averaging that made the recipe recognise
    new people (see the README's learning benchmark); the best epoch is still reported.

    Cancellation: ``should_stop`` is checked before every batch, so a stop takes effect within
    one batch; the returned FitResult then has ``cancelled=True`` and ``model`` is left as it
    was at the stop (not averaged).
    """
    if cfg.epochs < 1:
        raise ValueError('fit needs epochs >= 1 (epochs=0, auto, is resolved by train_task)')
    on_progress = on_progress or (lambda p: None)
    should_stop = should_stop or (lambda: False)
    recipe = cfg.recipe
    generator = torch.Generator().manual_seed(cfg.seed)
    # The augmentation draws from torch's global generator: seed it here (not at import) so a
    # run is repeatable for a given seed.
    torch.manual_seed(cfg.seed)
    augment = augmenter(recipe, cfg.hflip) if cfg.augment else None
    mixer = _mixer(recipe.mix, model.fc.out_features) if cfg.augment and recipe.mix else None
    optimizer = make_optimizer(model, recipe, cfg.lr)
    l2sp = L2SP(optimizer, recipe.l2sp) if recipe.l2sp else None
    batches = math.ceil(len(train_targets) / cfg.batch_size)
    warmup = min(recipe.head_warmup_epochs, cfg.epochs - 1)
    scheduler = _schedule(optimizer, (cfg.epochs - warmup) * batches, recipe.cosine)
    # SWA over the fine-tuning epochs after the first third (at least the last one); dense
    # averaging over every step of those epochs.
    first_averaged = max(warmup + 1, cfg.epochs // 3 + 1)
    averaged, probe = None, None
    total = cfg.epochs * batches
    val_acc, train_acc = -1.0, 0.0
    val_loss, best, history = -1.0, None, {}  # best: (epoch, acc, loss, state or None)
    has_val = len(val_targets) > 0
    keep_best = cfg.keep_best and recipe.average == 'none' and recipe.wise_alpha == 1
    for epoch in range(1, cfg.epochs + 1):
        trainable_parameters(model, recipe, head_only=epoch <= warmup)
        best_so_far = (best[0], best[1]) if best else (0, -1.0)

        def report(batch, n, loss, acc, epoch=epoch, val_acc=val_acc, val_loss=val_loss,
                   best_so_far=best_so_far):
            done = (epoch - 1) * batches + batch
            on_progress(Progress(epoch, cfg.epochs, batch, n, done / total, loss, acc, val_acc,
                                 val_loss, *best_so_far))

        if recipe.average != 'none' and epoch >= first_averaged and averaged is None:
            averaged = torch.optim.swa_utils.AveragedModel(model)  # counts nothing yet
        dense = recipe.average == 'dense' and averaged is not None
        _, train_acc, stopped = train_one_epoch(
            model, train_images, train_targets, optimizer, spec, cfg, generator, report,
            should_stop, scheduler if epoch > warmup else None, augment, mixer, l2sp,
            functools.partial(averaged.update_parameters, model) if dense else None)
        if stopped:
            return FitResult(epoch - 1, train_acc, val_acc, cancelled=True)
        if epoch == warmup and recipe.wise_alpha < 1:
            probe = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if recipe.average == 'swa' and averaged is not None:
            averaged.update_parameters(model)
        val_acc, val_loss = validate(model, val_images, val_targets, spec)
        history[epoch] = train_acc
        LOG.info('epoch %d/%d: train accuracy %.3f, val accuracy %.3f, val loss %.3f', epoch,
                 cfg.epochs, train_acc, val_acc, val_loss)
        if has_val and epoch < cfg.epochs and _better(val_acc, val_loss, best):
            # a copy of the weights only where they may be kept (the last epoch never needs one)
            state = {k: v.detach().clone() for k, v in model.state_dict().items()} \
                if keep_best else None
            best = (epoch, val_acc, val_loss, state)
    if averaged is not None:
        model.load_state_dict(averaged.module.state_dict())
    if probe is not None:
        model.load_state_dict(wise_blend(probe, model.state_dict(), recipe.wise_alpha))
    if averaged is not None or probe is not None:
        val_acc, val_loss = validate(model, val_images, val_targets, spec)
    saved, best_selected = cfg.epochs, False
    if has_val and _better(val_acc, val_loss, best):
        best = (cfg.epochs, val_acc, val_loss, None)  # the final weights are the best
    elif best is not None and keep_best:
        model.load_state_dict(best[3])
        saved, best_selected = best[0], True
    for param in model.parameters():
        param.requires_grad_(True)
    saved_val = best[1] if best_selected else val_acc
    return FitResult(cfg.epochs, train_acc, val_acc, cancelled=False, last_val_loss=val_loss,
                     best_epoch=best[0] if best else 0,
                     best_val_accuracy=best[1] if best else -1.0,
                     best_val_loss=best[2] if best else -1.0, saved_epoch=saved,
                     saved_train_accuracy=history[saved], saved_val_accuracy=saved_val,
                     best_selected=best_selected)


def train_task(task: Task, cfg: TrainConfig, initial_weights: str = 'imagenet',
               spec: PreprocessSpec = DEFAULT_SPEC,
               on_progress: Callable[[Progress], None] | None = None,
               should_stop: Callable[[], bool] | None = None,
               data: ImageSet | None = None, parent: ModelFile | None = None,
               save: Callable[[ModelFile], object] | None = None) -> TrainOutcome:
    """Load the task's images, fine-tune a ResNet-18 and save it.

    Args:
        parent: continue training this model (same classes and architecture, checked by the
            caller) instead of starting from ``initial_weights``: its weights are the start, the
            images it trained on (``parent.train_files``) stay training images, and the new model
            records ``parent_model_id`` and ``total_epochs`` (parent's + this run's). Its
            preprocessing ``spec`` is used. A copy of ``parent.model`` trains: the parent
            object is left as it was (a caller may still use or continue it).
        save: writes the finished ModelFile (e.g. versions.ModelStore.add); default: to
            ``task.model_path``.

    The model file is replaced atomically only when training completes; a cancelled run saves
    nothing and the previous model stays. The saved model is the best-validating epoch (see
    TrainConfig.keep_best) and carries its evaluation figures (validation and training split).

    Raises:
        DatasetError: the dataset is unusable (see dataset.load_images).
        ModelFileError: ``initial_weights`` is a path that cannot be loaded.
        OSError: the model could not be saved (the previous one stays intact).
    """
    if parent is not None:
        spec = parent.spec
    data = data if data is not None else load_images(task, spec)
    names = [sample_name(p) for p in data.paths]
    forced = None
    if parent is not None and parent.train_files:
        known = set(parent.train_files)
        forced = torch.tensor([n in known for n in names], dtype=torch.bool)
    generator = torch.Generator().manual_seed(cfg.seed)
    train_idx, val_idx = split_indices(data.targets, cfg.val_fraction, generator, forced)
    torch.manual_seed(cfg.seed)  # the new fc layer's initialisation
    if parent is None:
        model = create_model(len(task.classes))
        weights = load_initial_weights(model, initial_weights)
        source, pretrained, message = weights.source, weights.pretrained, weights.message
    else:
        model = copy.deepcopy(parent.model)
        source, pretrained = parent.initial_weights, parent.pretrained
        so_far = parent.total_epochs or parent.epochs
        message = (f'continues from model {parent.model_id} ({so_far} epoch(s) so far; its '
                   f'backbone started from {parent.initial_weights or "unknown weights"})')
    if cfg.epochs == 0:
        classes = len(task.classes)
        cfg = dataclasses.replace(cfg, epochs=auto_epochs(
            len(train_idx), classes, cfg.batch_size, cfg.recipe, cfg.max_auto_epochs))
        LOG.info('auto: %d epochs for %d training images of %d classes (about %d steps of %d)',
                 cfg.epochs, len(train_idx), classes, auto_steps(cfg.recipe, classes),
                 cfg.batch_size)
    LOG.info('%s; %s', message, cfg.recipe.describe())
    model.to(torch.device(cfg.device))
    result = fit(model, data.images[train_idx], data.targets[train_idx],
                 data.images[val_idx], data.targets[val_idx], spec, cfg,
                 on_progress, should_stop)
    mf, val_fig, train_fig = None, Figures(), Figures()
    temperature, calibration = 1.0, ''
    if not result.cancelled:
        logits = {VALIDATION: logits_batches(model, data.images[val_idx], spec),
                  TRAINING: logits_batches(model, data.images[train_idx], spec)}
        temperature, calibration = fit_temperature(logits[VALIDATION].numpy(),
                                                   data.targets[val_idx].numpy())
        LOG.info('calibration: %s', calibration)
        ood = fit_ood_reference(logits[VALIDATION].numpy(), temperature, VALIDATION)
        if not ood.method:  # too few held-out images: the training images, less strict
            ood = fit_ood_reference(logits[TRAINING].numpy(), temperature, TRAINING)
        val_fig, train_fig = (
            figures(split, (logits[split] / temperature).softmax(1), data.targets[idx],
                    task.classes, [data.paths[i] for i in idx.tolist()])
            for split, idx in ((VALIDATION, val_idx), (TRAINING, train_idx)))
        train_files = sorted(set(parent.train_files if parent else ()) |
                             {names[i] for i in train_idx.tolist()})
        parent_epochs = (parent.total_epochs or parent.epochs) if parent else 0
        mf = ModelFile(model=model, class_names=task.classes, spec=spec, task=task.name,
                       model_id=new_model_id(task.name), initial_weights=source,
                       pretrained=pretrained, recipe=cfg.recipe.name,
                       epochs=result.epochs_completed,
                       train_accuracy=result.saved_train_accuracy,
                       val_accuracy=result.saved_val_accuracy,
                       parent_model_id=parent.model_id if parent else '',
                       total_epochs=parent_epochs + result.epochs_completed,
                       saved_epoch=result.saved_epoch,
                       best_epoch_selected=result.best_selected, train_files=tuple(train_files),
                       validation=val_fig.to_dict(), training=train_fig.to_dict(),
                       temperature=temperature, calibration=calibration, ood=ood)
        if save is None:
            save_model(mf, task.model_path)
        else:
            save(mf)
        model.eval()
    return TrainOutcome(fit=result, model=mf, train_images=len(train_idx),
                        val_images=len(val_idx), skipped=len(data.skipped),
                        pretrained=pretrained, weights_message=message,
                        parent=parent.model_id if parent else '', validation=val_fig,
                        training=train_fig, temperature=temperature, calibration=calibration)
