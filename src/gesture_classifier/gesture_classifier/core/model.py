"""ResNet-18 for N gesture classes: creation, initial weights and model files.

Model file format (``FORMAT``): ``torch.save`` of a dict holding only tensors and plain values,
so it loads with ``torch.load(weights_only=True)`` and no pickled code ever runs::

    format          'gesture_classifier/1'
    architecture    'resnet18'
    state_dict      the network's weights (fc sized to the classes)
    class_names     list[str], output order
    input_size      int, mean/std: list[float] (see preprocess.PreprocessSpec)
    white_balance   str, preprocess.WHITE_BALANCES: 'gray_world' = the gray-world white
                    balance before the normalisation; absent (= 'none') in older files, and
                    an unknown value is refused (the model would get other inputs than
                    it was trained on)
    channel_order   'rgb'
    task, model_id, created (ISO 8601 UTC), initial_weights, pretrained (bool),
    recipe (training recipe name, see training.RECIPES; '' in files written before recipes),
    epochs, train_accuracy, val_accuracy
    parent_model_id, total_epochs, saved_epoch, best_epoch_selected: lineage and which epoch
        was kept (train more / keep the best epoch); '' / epochs / 0 / False in older files
    train_files     list[str] '<class>/<file>' of the images the model trained on (also its
                    parents'), so `evaluate` can tell held-out images from training ones
    validation, training: evaluation.Figures.to_dict() of the saved epoch, or {} when unknown
    temperature     float in calibration.TEMPERATURE_RANGE: the classifier's probabilities are
                    softmax(logits / temperature) (see calibration.py); 1.0 in older files
    calibration     str, how the temperature was obtained ('' in older files)
    ood             dict, trust.OodReference.to_dict(): what turns a frame's logits into its
                    out-of-distribution score; {} in older files (every frame trusted)

Initial weights (``initial_weights`` setting): ``'imagenet'`` loads torchvision's
``ResNet18_Weights.IMAGENET1K_V1`` through torchvision's own weights API and cache
(``$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth``); ``'none'`` starts from random
weights; any other value is a path to a ResNet-18 state_dict or to one of our model files.
"""
from __future__ import annotations

import datetime as _dt
import io
import logging
import math
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torchvision import models

from .calibration import check_temperature
from .fsutil import UntrustedFileError, atomic_write, ensure_private_dir, read_untrusted_file
from .preprocess import WHITE_BALANCES, PreprocessSpec
from .trust import OodReference, check_ood_reference

__all__ = ['FORMAT', 'ARCHITECTURES', 'ModelFileError', 'InitialWeights', 'create_model',
           'load_initial_weights', 'ModelFile', 'save_model', 'load_model',
           'IMAGENET_WEIGHTS_FILE', 'MAX_MODEL_FILE_BYTES']

LOG = logging.getLogger(__name__)

FORMAT = 'gesture_classifier/1'
ARCHITECTURES = ('resnet18',)
#: File name torchvision caches the ImageNet ResNet-18 weights under.
IMAGENET_WEIGHTS_FILE = os.path.basename(models.ResNet18_Weights.IMAGENET1K_V1.url)
#: Upper bound of a ResNet-18 model file (about 45 MB), used for the free-space check.
_MODEL_FILE_BYTES = 50 * 1024 * 1024
#: The most :func:`load_model` reads: a file announced as a model is refused unread beyond this
#: (a ResNet-18 file is about 45 MB; its class layer adds 2 kB per class).
MAX_MODEL_FILE_BYTES = 128 * 1024 * 1024


#: Said wherever a model starts from random weights (measured: near chance on new people, see
#: the README's learning benchmark).
NOT_GENERALISING = ('a model trained from random weights on a few dozen images learns its '
                    'teacher, not the gesture, and will not recognise people, cameras or rooms '
                    'it was not taught in')


class ModelFileError(ValueError):
    """A model file that cannot be used: unreadable, not ours, or not matching its metadata."""


@dataclass(frozen=True)
class InitialWeights:
    """Where the backbone's weights came from.

    Attributes:
        source: the setting asked for ('imagenet', 'none' or a path).
        pretrained: True only when ImageNet weights were actually loaded.
        message: one sentence for logs and results; says what to do when ImageNet weights were
            asked for but could not be loaded.
    """

    source: str
    pretrained: bool
    message: str


def create_model(num_classes: int, architecture: str = 'resnet18') -> nn.Module:
    """A randomly initialised ResNet-18 whose last layer (``fc``) has ``num_classes`` outputs.

    Raises:
        ValueError: unknown architecture (the message lists the supported ones) or
            ``num_classes < 2``.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f'unknown architecture {architecture!r}; supported: {ARCHITECTURES}')
    if num_classes < 2:
        raise ValueError(f'need at least 2 classes, got {num_classes}')
    model = models.resnet18(weights=None)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def _load_backbone(model: nn.Module, state_dict: dict) -> None:
    """Copy every weight except ``fc.*`` (the class layer) into ``model``; strict otherwise."""
    backbone = {k: v for k, v in state_dict.items() if not k.startswith('fc.')}
    try:
        missing, unexpected = model.load_state_dict(backbone, strict=False)
    except (RuntimeError, TypeError) as exc:  # wrong tensor shapes or non-tensor values
        raise ModelFileError(f'weights do not fit ResNet-18: {str(exc).splitlines()[0]}') \
            from exc
    missing = [k for k in missing if not k.startswith('fc.')]
    if missing or unexpected:
        raise ModelFileError(f'weights do not fit ResNet-18: missing {missing[:5]}, '
                             f'unexpected {unexpected[:5]}')


def load_initial_weights(model: nn.Module, source: str) -> InitialWeights:
    """Load the backbone weights named by ``source`` into ``model`` (``fc`` stays random).

    Never raises for unavailable ImageNet weights: the model then keeps its random weights and
    the returned :class:`InitialWeights` says so (``pretrained=False``) and how to fix it.

    Raises:
        ModelFileError: ``source`` is a path whose file cannot be loaded or does not fit.
    """
    if source in ('none', ''):
        return InitialWeights('none', False, 'backbone starts from random weights '
                              f'(initial_weights=none): {NOT_GENERALISING}')
    if source == 'imagenet':
        weights = models.ResNet18_Weights.IMAGENET1K_V1
        try:
            # torch.hub unpickles without restrictions unless told: the cache is a file
            # on disk like any other, so it gets the same weights_only loading.
            state = weights.get_state_dict(progress=False, check_hash=True,
                                           weights_only=True)
        except Exception as exc:  # offline, proxy, corrupt cache: all mean "not available"
            cache = Path(torch.hub.get_dir()) / 'checkpoints' / IMAGENET_WEIGHTS_FILE
            msg = (f'ImageNet weights could not be loaded ({type(exc).__name__}: {exc}); the '
                   f'backbone starts from RANDOM weights: {NOT_GENERALISING}. Copy '
                   f'{IMAGENET_WEIGHTS_FILE} to {cache} (or set initial_weights to its path)')
            LOG.warning(msg)
            return InitialWeights('imagenet', False, msg)
        try:
            _load_backbone(model, state)
        except ModelFileError as exc:
            msg = (f'cached ImageNet weights {IMAGENET_WEIGHTS_FILE} do not fit ({exc}); the '
                   f'backbone starts from RANDOM weights: {NOT_GENERALISING}. Delete the file '
                   'so torchvision downloads it again')
            LOG.warning(msg)
            return InitialWeights('imagenet', False, msg)
        return InitialWeights('imagenet', True, 'backbone starts from torchvision ImageNet '
                              'weights (ResNet18_Weights.IMAGENET1K_V1)')
    path = Path(os.path.expanduser(source))
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:
        raise ModelFileError(f'cannot load initial weights from {path}: {exc}') from exc
    state = obj.get('state_dict', obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise ModelFileError(f'{path} holds no state_dict')
    _load_backbone(model, state)
    return InitialWeights(str(path), False, f'backbone starts from the weights in {path}')


@dataclass
class ModelFile:
    """A trained model and what is needed to use it (see the module docstring)."""

    model: nn.Module
    class_names: tuple[str, ...]
    spec: PreprocessSpec = field(default_factory=PreprocessSpec)
    architecture: str = 'resnet18'
    task: str = ''
    model_id: str = ''
    created: str = ''
    initial_weights: str = ''
    pretrained: bool = False
    recipe: str = ''
    epochs: int = 0
    train_accuracy: float = -1.0
    val_accuracy: float = -1.0
    path: Path | None = None
    parent_model_id: str = ''
    total_epochs: int = 0
    saved_epoch: int = 0
    best_epoch_selected: bool = False
    train_files: tuple[str, ...] = ()
    validation: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    temperature: float = 1.0
    calibration: str = ''
    ood: OodReference = field(default_factory=OodReference)


def new_model_id(task: str) -> str:
    """``<task>-<UTC time>-<8 random hex>``, unique per training run."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime('%Y%m%dT%H%M%SZ')
    return f'{task}-{stamp}-{uuid.uuid4().hex[:8]}'


def save_model(mf: ModelFile, path: str | os.PathLike) -> Path:
    """Write ``mf`` to ``path`` atomically (see :mod:`.fsutil`), creating the folder owner-only.

    Fills ``mf.model_id`` / ``mf.created`` when empty and sets ``mf.path``.

    Raises:
        OSError: no space or I/O error; the previous file at ``path`` stays intact.
    """
    path = Path(path)
    ensure_private_dir(path.parent)
    for stale in path.parent.glob(f'.{path.name}.*.tmp'):  # left by a writer that was killed
        stale.unlink(missing_ok=True)
    if not mf.model_id:
        mf.model_id = new_model_id(mf.task or 'model')
    if not mf.created:
        mf.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')
    payload = {
        'format': FORMAT,
        'architecture': mf.architecture,
        'state_dict': {k: v.detach().cpu() for k, v in mf.model.state_dict().items()},
        'class_names': list(mf.class_names),
        'input_size': int(mf.spec.input_size),
        'mean': [float(x) for x in mf.spec.mean],
        'std': [float(x) for x in mf.spec.std],
        'white_balance': str(mf.spec.white_balance),
        'channel_order': 'rgb',
        'task': mf.task,
        'model_id': mf.model_id,
        'created': mf.created,
        'initial_weights': mf.initial_weights,
        'pretrained': bool(mf.pretrained),
        'recipe': str(mf.recipe),
        'epochs': int(mf.epochs),
        'train_accuracy': float(mf.train_accuracy),
        'val_accuracy': float(mf.val_accuracy),
        'parent_model_id': str(mf.parent_model_id),
        'total_epochs': int(mf.total_epochs or mf.epochs),
        'saved_epoch': int(mf.saved_epoch),
        'best_epoch_selected': bool(mf.best_epoch_selected),
        'train_files': [str(f) for f in mf.train_files],
        'validation': dict(mf.validation),
        'training': dict(mf.training),
        'temperature': float(mf.temperature),
        'calibration': str(mf.calibration),
        'ood': mf.ood.to_dict() if mf.ood.method else {},
    }
    atomic_write(path, lambda f: torch.save(payload, f), expected_size=_MODEL_FILE_BYTES)
    mf.path = path.resolve()
    return mf.path


def _require(cond: bool, path: Path, what: str) -> None:
    if not cond:
        raise ModelFileError(f'{path}: {what}')


def load_model(path: str | os.PathLike, device: torch.device | str = 'cpu',
               expected_classes: tuple[str, ...] | None = None,
               allowed_dirs=None, earlier_classes_ok: bool = False) -> ModelFile:
    """Load a model file with ``torch.load(weights_only=True)`` and check it before use.

    The file is read as untrusted input (:func:`.fsutil.read_untrusted_file`): only a regular
    file of at most :data:`MAX_MODEL_FILE_BYTES`, without blocking on FIFOs or devices, and
    from ``allowed_dirs`` when given.

    Args:
        path: model file written by :func:`save_model`.
        device: where to put the network (it is returned in ``eval()`` mode).
        expected_classes: when given, the file's class names must equal these (same order).
        allowed_dirs: folders the (resolved) path must lie in; None: anywhere.
        earlier_classes_ok: also accept a file whose class names are the first ones of
            ``expected_classes`` (a model trained before classes were added to the task,
            ``Task.with_classes``: its outputs still mean those classes). For using a
            model, not for continuing its training (its head has fewer outputs).

    Raises:
        ModelFileError: missing/unreadable/garbage file, not a regular file, too big, outside
            ``allowed_dirs``, changed while read, a pickle that needs code to load,
            another format or architecture, class names that are not a list of >= 2 unique
            strings or differ from ``expected_classes``, or weights that do not fit.
    """
    path = Path(path)
    try:
        data = read_untrusted_file(path, MAX_MODEL_FILE_BYTES, allowed_dirs)
    except FileNotFoundError:
        raise ModelFileError(f'{path}: no such file') from None
    except UntrustedFileError as exc:
        raise ModelFileError(f'{path}: {exc.strerror}') from None
    except OSError as exc:
        raise ModelFileError(f'{path}: cannot read ({exc.strerror or exc})') from None
    try:
        obj = torch.load(io.BytesIO(data), map_location='cpu', weights_only=True)
    except Exception as exc:
        raise ModelFileError(f'{path}: not a loadable model file ({type(exc).__name__}: '
                             f'{str(exc).splitlines()[0] if str(exc) else ""})') from exc
    _require(isinstance(obj, dict) and obj.get('format') == FORMAT, path,
             f'not a gesture_classifier model (format {FORMAT!r} expected)')
    arch = obj.get('architecture')
    _require(arch in ARCHITECTURES, path, f'unsupported architecture {arch!r}')
    names = obj.get('class_names')
    _require(isinstance(names, list) and len(names) >= 2 and
             all(isinstance(n, str) for n in names) and len(set(names)) == len(names),
             path, 'class_names must be a list of at least 2 unique strings')
    if expected_classes is not None:
        expected = tuple(expected_classes)
        _require(tuple(names) == (expected[:len(names)] if earlier_classes_ok else expected),
                 path, f'classes {names} differ from the task classes {list(expected)}')
    size, mean, std = obj.get('input_size'), obj.get('mean'), obj.get('std')
    _require(isinstance(size, int) and 32 <= size <= 1024, path, f'bad input_size {size!r}')
    _require(isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == 3
             and all(isinstance(m, float) and math.isfinite(m) for m in mean)
             and all(isinstance(s, float) and math.isfinite(s) and s > 0 for s in std),
             path, 'mean/std must be 3 finite floats each, std > 0')
    balance = obj.get('white_balance', 'none')
    _require(balance in WHITE_BALANCES, path, f'unknown white_balance {balance!r} (this version '
             f'knows {", ".join(WHITE_BALANCES)}): its inputs could not be prepared as in '
             'its training')
    state = obj.get('state_dict')
    _require(isinstance(state, dict), path, 'no state_dict')
    model = create_model(len(names), arch)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError) as exc:
        raise ModelFileError(f'{path}: weights do not fit {arch} with {len(names)} classes: '
                             f'{str(exc).splitlines()[0]}') from exc
    try:
        extra = dict(task=str(obj.get('task', '')), created=str(obj.get('created', '')),
                     initial_weights=str(obj.get('initial_weights', '')),
                     pretrained=bool(obj.get('pretrained', False)),
                     recipe=str(obj.get('recipe', '')),
                     epochs=int(obj.get('epochs', 0)),
                     train_accuracy=float(obj.get('train_accuracy', -1.0)),
                     val_accuracy=float(obj.get('val_accuracy', -1.0)),
                     parent_model_id=str(obj.get('parent_model_id', '')),
                     saved_epoch=int(obj.get('saved_epoch', 0)),
                     best_epoch_selected=bool(obj.get('best_epoch_selected', False)),
                     train_files=tuple(str(f) for f in obj.get('train_files', ())),
                     validation=dict(obj.get('validation') or {}),
                     training=dict(obj.get('training') or {}))
        extra['total_epochs'] = int(obj.get('total_epochs', extra['epochs']))
        extra['calibration'] = str(obj.get('calibration', ''))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f'{path}: bad metadata value ({exc})') from exc
    extra['temperature'], why = check_temperature(obj.get('temperature'))
    if why:  # the model still works, with the softmax as trained
        (LOG.info if 'temperature' not in obj else LOG.warning)('%s: %s', path, why)
        extra['calibration'] = why
    extra['ood'], why = check_ood_reference(obj.get('ood'))
    if why:  # the model still works; its frames are all called trusted
        (LOG.info if not obj.get('ood') else LOG.warning)('%s: %s', path, why)
    model.to(device).eval()
    return ModelFile(model=model, class_names=tuple(names),
                     spec=PreprocessSpec(size, tuple(mean), tuple(std), balance),
                     architecture=arch,
                     model_id=str(obj.get('model_id', '')) or path.name, path=path.resolve(),
                     **extra)
