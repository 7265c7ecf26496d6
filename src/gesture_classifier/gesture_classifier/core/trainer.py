"""The trainer node's work in plain Python: checking a goal, one training run, one evaluation.

A run returns a report whose fields are those of the action's result (``TrainReport`` ~
``Train.Result``, ``EvaluateReport`` ~ ``Evaluate.Result``), so nodes/trainer.py only converts
it (gesture_classifier.ros.messages.to_msg) and ends the goal. Errors are report codes, never
exceptions out of a run: a bug fails the goal, not the node.
"""
from __future__ import annotations

import dataclasses
import enum
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .backends import AUTO, BackendError, available_backends, export, require_usable
from .dataset import DatasetError
from .datasync import DatasetSyncError, DigestCache, SyncCancelled, SyncReport, sync_dataset
from .evaluation import Figures
from .model import ModelFile, ModelFileError
from .quantize import export_int8, task_images
from .review import evaluate_model
from .tasks import Task
from .transfer import ChunkReceiver, TransferError
from .training import (AUGMENTATIONS, AUTO_EPOCHS_RANGE, AVERAGING, DEFAULT_SPEC, RECIPES, STAGES,
                       Progress, Recipe, TrainConfig, auto_steps, get_recipe, resolve_device,
                       train_task)
from .versions import MODEL_ID_PATTERN, ModelStore, VersionError, resolve_transfer_path

__all__ = ['Start', 'TrainError', 'EvaluateError', 'TrainerSettings', 'TrainRequest',
           'TrainReport', 'EvaluateReport', 'RECIPE_SETTINGS', 'DatasetMirror', 'Versions',
           'VersionAnswer', 'status',
           'goal_error', 'evaluate_goal_error', 'run_training', 'run_evaluation']

LOG = logging.getLogger(__name__)


class Start(enum.IntEnum):
    """Where a training starts (Train.Goal's START_* constants; a test checks they agree)."""

    AUTO = 0      # continue from the current model when it fits the task, else fresh
    CONTINUE = 1  # continue, or fail
    FRESH = 2     # from the initial weights


class TrainError(enum.IntEnum):
    """Train.Result's error codes."""

    NONE = 0
    CANCELED = 1
    DATASET_ERROR = 2
    SAVE_ERROR = 3
    INTERNAL_ERROR = 4
    MODEL_MISMATCH = 5


class EvaluateError(enum.IntEnum):
    """Evaluate.Result's error codes."""

    NONE = 0
    CANCELED = 1
    NO_MODEL = 2
    DATASET_ERROR = 3
    MODEL_ERROR = 4
    INTERNAL_ERROR = 5


@dataclass(frozen=True)
class TrainerSettings:
    """The trainer's parameters a run uses (nodes/trainer.py has their defaults and ranges):
    the limits of a goal, the initial weights, the backend exported for after training, and
    the training settings a goal does not give (TrainConfig's)."""

    device: object  # a torch.device or its name
    initial_weights: str
    recipe: Recipe
    max_epochs: int
    max_batch_size: int
    batch_size: int
    learning_rate: float
    val_fraction: float
    seed: int
    augment: bool
    hflip: bool
    backend: str
    white_balance: str = DEFAULT_SPEC.white_balance

    @classmethod
    def from_parameters(cls, values: dict, recipe: dict) -> TrainerSettings:
        """The settings of the trainer's parameter values (``recipe``: the ``recipe.<field>``
        values, which override the ``recipe`` preset's).

        Raises:
            ValueError: an unknown recipe, device or white balance, a recipe setting out of
                range, or a backend whose package is missing (the node does not start).
        """
        preset = get_recipe(values['recipe'])
        # PreprocessSpec refuses an unknown white balance (ValueError): checked where it is kept
        dataclasses.replace(DEFAULT_SPEC, white_balance=values['white_balance'])
        backend = values['backend']
        if backend == AUTO:
            backend = 'onnxruntime' if 'onnxruntime' in available_backends() else 'pytorch'
        require_usable(backend)
        return cls(device=resolve_device(values['device']),
                   initial_weights=values['initial_weights'], backend=backend,
                   recipe=preset.replace(**{k: v for k, v in recipe.items()
                                            if getattr(preset, k) != v}),
                   **{k: values[k] for k in ('max_epochs', 'max_batch_size', 'batch_size',
                                             'learning_rate', 'val_fraction', 'seed',
                                             'augment', 'hflip', 'white_balance')})


#: What each Recipe setting does (the trainer's ``recipe.<field>`` parameters): field ->
#: (description, range or None, constraint text).
RECIPE_SETTINGS = {
    'train_from': ('First trained ResNet-18 stage; earlier ones keep their initial weights',
                   None, f'one of {", ".join(STAGES)}'),
    'freeze_batchnorm': ('BatchNorm statistics and scale/shift stay as loaded', None, ''),
    'learning_rate': ('AdamW learning rate of the last layer', (1e-7, 1.0), ''),
    'backbone_lr_factor': ('Backbone learning rate = learning_rate x this', (1e-4, 1.0), ''),
    'weight_decay': ('AdamW decoupled weight decay', (0.0, 1.0), ''),
    'label_smoothing': ('Cross-entropy label smoothing', (0.0, 0.49), ''),
    'augmentation': ("Training augmentation: 'none', 'dli' (ColorJitter only), 'camera' "
                     "(crop/zoom, rotation, colour, grayscale, blur) or 'robust' (camera plus "
                     'gamma and JPEG artefacts)', None,
                     f'one of {", ".join(AUGMENTATIONS)}'),
    'head_warmup_epochs': ('Epochs at the start that train only the last layer', (0, 100), ''),
    'cosine': ('Cosine learning-rate decay to 0', None, ''),
    'average': ("Weight averaging: 'none', 'swa' (mean of the epochs after the first third) "
                "or 'dense' (mean of every step after the first third)",
                None, f'one of {", ".join(AVERAGING)}'),
    'wise_alpha': ('WiSE-FT: share of the fine-tuned weights in a blend with the model after '
                   'the head warm-up (1 = fine-tuned only)', (0.01, 1.0), ''),
    'mix': ('MixUp/CutMix Beta(mix, mix) mixing per batch; 0 = off', (0.0, 2.0), ''),
    'l2sp': ('L2-SP: pull of the backbone toward its pretrained weights per step; 0 = off',
             (0.0, 1.0), ''),
    'outlier_exposure': ('Outlier exposure: weight of training tile-shuffled copies of the '
                         'images toward "no class"; 0 = off', (0.0, 2.0), ''),
    'rotation': ("Largest random rotation of the 'camera' and 'robust' augmentations, in "
                 'degrees either way', (0.0, 45.0), ''),
    'auto_steps_per_class': ('Optimisation steps per class an epochs=0 (auto) goal aims for '
                             '(thumbs, 2 classes: twice this; fingers, 5: five times)',
                             (1, 50000), ''),
}


@dataclass(frozen=True)
class TrainRequest:
    """A train goal (the fields of Train.Goal)."""

    epochs: int
    batch_size: int = 0
    learning_rate: float = 0.0
    recipe: str = ''
    start: int = Start.AUTO
    from_model_id: str = ''
    keep_last_epoch: bool = False


@dataclass
class _Report:
    """How a goal ended: success, an error code (0: none, 1: cancelled in both actions) and
    the message."""

    success: bool = False
    error_code: int = 0
    message: str = ''

    @property
    def canceled(self) -> bool:
        return self.error_code == TrainError.CANCELED == EvaluateError.CANCELED


@dataclass
class TrainReport(_Report):
    """How a training ended: the fields of Train.Result (values, not messages)."""

    model_path: str = ''
    model_id: str = ''
    epochs_completed: int = 0
    train_accuracy: float = 0.0
    val_accuracy: float = -1.0
    train_images: int = 0
    val_images: int = 0
    pretrained: bool = False
    initial_weights: str = ''
    recipe: str = ''
    continued: bool = False
    parent_model_id: str = ''
    total_epochs: int = 0
    saved_epoch: int = 0
    best_epoch_selected: bool = False
    best_epoch: int = 0
    best_val_accuracy: float = -1.0
    best_val_loss: float = -1.0
    last_train_accuracy: float = -1.0
    last_val_accuracy: float = -1.0
    last_val_loss: float = -1.0
    validation: Figures | None = None
    training: Figures | None = None
    samples_fetched: int = 0
    samples_removed: int = 0
    temperature: float = 1.0


@dataclass
class EvaluateReport(_Report):
    """How an evaluation ended: the fields of Evaluate.Result."""

    model_id: str = ''
    validation: Figures | None = None
    training: Figures | None = None
    skipped: int = 0


class DatasetMirror:
    """``task``'s dataset folder as a copy of the collector's (dataset_source: collector),
    made before every goal by :func:`~.datasync.sync_dataset` over ``get_page`` and
    ``get_samples`` (the collector's services; they raise DatasetSyncError). Train and
    evaluate goals share it; ``last`` is the last sync's report or why it failed."""

    def __init__(self, task: Task, get_page, get_samples):
        self.task, self._get_page, self._get_samples = task, get_page, get_samples
        self._lock = threading.Lock()
        self._digests = DigestCache()
        self.last: SyncReport | str | None = None

    def sync(self, should_stop: Callable[[], bool]) -> SyncReport:
        """Raises DatasetSyncError (SyncCancelled), OSError."""
        with self._lock:
            try:
                report = sync_dataset(self.task, self._get_page, self._get_samples,
                                      self._digests, should_stop)
            except (DatasetSyncError, OSError) as exc:
                self.last = f'failed: {exc}'
                raise
        self.last = report
        LOG.info(report.describe())
        return report

    def set_task(self, task: Task) -> None:
        """Follow ``task`` (classes added; the collector's must match at the next sync)."""
        with self._lock:
            self.task = task

    def describe(self) -> str:
        return self.last.describe() if isinstance(self.last, SyncReport) else self.last or ''


@dataclass(frozen=True)
class VersionAnswer:
    """The answer of a select/import/export request: ``model_id`` of the version selected or
    imported, ``current`` when the current model changed (to announce), ``path`` exported."""

    success: bool
    message: str
    model_id: str = ''
    current: bool = False
    path: str = ''
    received: int = 0


class Versions:
    """The kept model versions (a :class:`~.versions.ModelStore`) behind one lock, shared by
    the training's save, the version requests and the version list; import and export only
    inside ``transfer_dir``."""

    def __init__(self, task: Task, keep: int, transfer_dir):
        self.store = ModelStore(task, keep)
        self.lock = threading.RLock()
        self.transfer_dir = transfer_dir
        self.uploads = ChunkReceiver(self.store.folder / '.uploads')

    def set_task(self, task: Task) -> None:
        """Follow ``task`` (classes added): versions are checked against its classes from now
        on: a kept model of the old classes can still be selected, not continued."""
        with self.lock:
            self.store.task = task

    def _run(self, what: str, work) -> VersionAnswer:
        try:
            with self.lock:
                answer = work()
        except (VersionError, ModelFileError, TransferError) as exc:
            LOG.warning(f'{what} refused: {exc}')
            return VersionAnswer(False, str(exc))
        except OSError as exc:
            LOG.error(f'{what} failed: {exc}')
            return VersionAnswer(False, f'{what} failed: {exc}')
        if answer.message:
            LOG.info(answer.message)
        return answer

    def select(self, model_id: str) -> VersionAnswer:
        """Make a kept version current."""
        def work():
            v = self.store.select(model_id)
            return VersionAnswer(True, f'model {v.model_id} is current', v.model_id, True)
        return self._run('select_model', work)

    def import_file(self, path: str, select: bool) -> VersionAnswer:
        """Add the model file ``path`` (inside transfer_dir) as a version; ``select``: make it
        current."""
        def work():
            mf = self.store.import_file(resolve_transfer_path(self.transfer_dir, path,
                                                              must_exist=True))
            if select:
                self.store.select(mf.model_id)
            return VersionAnswer(True, f'imported {path} as model {mf.model_id}'
                                 f'{" (current)" if select else ""}', mf.model_id, select)
        return self._run('import_model', work)

    def put_chunk(self, upload_id: str, size: int, sha256: str, offset: int, data: bytes,
                  select: bool) -> VersionAnswer:
        """One chunk of a model upload (``put_model``; :class:`.transfer.ChunkReceiver` checks
        its order, size and hash). With the last one the file is imported exactly as
        :meth:`import_file` imports (``select``: made current) and then deleted; a refusal
        abandons the upload. ``received``: the bytes received so far."""
        def work():
            path = self.uploads.put(upload_id, size, sha256, offset, data)
            if path is None:
                return VersionAnswer(True, '', received=self.uploads.received)
            try:
                mf = self.store.import_file(path)
                if select:
                    self.store.select(mf.model_id)
            finally:
                self.uploads.discard()
            return VersionAnswer(True, f'imported an uploaded file ({size} bytes) as model '
                                 f'{mf.model_id}{" (current)" if select else ""}', mf.model_id,
                                 select, received=size)
        return self._run('put_model', work)

    def export(self, model_id: str, path: str, overwrite: bool) -> VersionAnswer:
        """Write a version ('' = current) to ``path`` inside transfer_dir."""
        def work():
            dest = self.store.export(model_id, resolve_transfer_path(
                self.transfer_dir, path, must_exist=False), overwrite)
            return VersionAnswer(True, f'exported {model_id or "the current model"} to {dest}',
                                 path=str(dest))
        return self._run('export_model', work)


def status(training: bool, progress: Progress | None, last: TrainReport | None
           ) -> tuple[bool, str, list[tuple[str, str]]]:
    """The trainer's diagnostics: (an error?, summary, key values). Idle or training with the
    running goal's epoch; an error when the last goal failed (a cancel is not a failure)."""
    busy = training and progress is not None
    if training:
        error, summary = False, 'training' + (f': epoch {progress.epoch}/{progress.epochs}'
                                              if busy else '')
    elif last is not None and not last.success and not last.canceled:
        error, summary = True, f'idle; the last goal failed: {last.message}'
    else:
        error, summary = False, 'idle'
    return error, summary, [
        ('state', 'training' if training else 'idle'),
        ('epoch', f'{progress.epoch}/{progress.epochs}' if busy else ''),
        ('progress', f'{progress.progress:.3f}' if busy else ''),
        ('last result', last.message if last else ''),
        ('last model id', last.model_id if last else '')]


def goal_error(goal, settings: TrainerSettings) -> str:
    """Why a train goal (TrainRequest or Train.Goal) is out of range, or '' when acceptable."""
    if goal.recipe and goal.recipe not in RECIPES:
        return f'unknown recipe {goal.recipe!r}; presets: {", ".join(RECIPES)}'
    if not 0 <= goal.epochs <= settings.max_epochs:
        return (f'epochs must be 0 (auto) or in 1..{settings.max_epochs}, got '
                f'{goal.epochs}')
    if goal.start not in tuple(Start):
        return f'start must be 0 (auto), 1 (continue) or 2 (fresh), got {goal.start}'
    if goal.from_model_id and not MODEL_ID_PATTERN.fullmatch(goal.from_model_id):
        return f'from_model_id {goal.from_model_id[:80]!r} is not a valid model id'
    if goal.batch_size > settings.max_batch_size:
        return f'batch_size must be in 0..{settings.max_batch_size}, got {goal.batch_size}'
    lr = goal.learning_rate
    if not (lr == 0.0 or (math.isfinite(lr) and 0.0 < lr <= 1.0)):
        return f'learning_rate must be 0 (default) or in (0, 1], got {lr}'
    return ''


def evaluate_goal_error(model_id: str, batch_size: int, settings: TrainerSettings) -> str:
    """Why an evaluate goal is out of range, or ''."""
    if batch_size > settings.max_batch_size:
        return f'batch_size must be in 0..{settings.max_batch_size}, got {batch_size}'
    if model_id and not MODEL_ID_PATTERN.fullmatch(model_id):
        return f'model_id {model_id[:80]!r} is not a valid model id'
    return ''


def _parent(goal: TrainRequest, task: Task, store: ModelStore, lock, device):
    """(ModelFile to continue from or None, note for the message), or the reason a
    START_CONTINUE / from_model_id goal cannot continue (a str)."""
    if goal.start == Start.FRESH:
        return None, ''
    explicit = goal.start == Start.CONTINUE or bool(goal.from_model_id)
    try:
        with lock:
            parent = store.load(goal.from_model_id, device)
        if parent.task and parent.task != task.name:
            raise ModelFileError(f'model {parent.model_id} is for task {parent.task!r}')
    except VersionError as exc:  # no current model, or an unknown id
        if explicit:
            return f'cannot continue: {exc}', ''
        return None, ''
    except ModelFileError as exc:  # classes or architecture changed, garbage file
        if explicit:
            return (f'cannot continue from that model: {exc}; send start=START_FRESH to '
                    'start over'), ''
        return None, (f'; the current model does not fit the task ({exc}), so training '
                      'started over from the initial weights')
    return parent, ''


def _kept(fit, goal: TrainRequest, recipe: Recipe) -> str:
    """Which epoch was saved and why, for the result message."""
    averaged = recipe.average != 'none' or recipe.wise_alpha < 1
    if averaged and not fit.best_selected:
        best = (f' (best single epoch: {fit.best_epoch}, accuracy '
                f'{fit.best_val_accuracy:.3f})' if fit.best_epoch else '')
        return (f'kept the averaged weights of recipe {recipe.name!r}, validation accuracy '
                f'{fit.val_accuracy:.3f}{best}')
    if fit.best_epoch == 0:
        return (f'no validation images (val_fraction 0 or classes too small): kept the last '
                f'epoch {fit.saved_epoch}')
    if fit.best_selected:
        return (f'kept epoch {fit.saved_epoch}, the best-validating (accuracy '
                f'{fit.best_val_accuracy:.3f}, loss {fit.best_val_loss:.3f}; the last epoch '
                f'had {fit.val_accuracy:.3f})')
    if goal.keep_last_epoch:
        return (f'kept the last epoch {fit.saved_epoch} as asked (best: epoch '
                f'{fit.best_epoch}, accuracy {fit.best_val_accuracy:.3f})')
    return f'kept the last epoch {fit.saved_epoch}, which validated best'


def _export(mf: ModelFile, settings: TrainerSettings, task: Task | None = None) -> str:
    """Export for the classifier's backend; '' or a note for the result message. A failed
    export does not fail the goal: the model is saved and the classifier exports itself.
    With onnxruntime also the checked int8 export (quantize.py) when ``task`` is given."""
    if settings.backend == 'pytorch':
        return ''
    try:
        paths = export(mf, settings.backend, device=settings.device)
    except (BackendError, OSError) as exc:
        LOG.warning(f'{settings.backend} export failed: {exc}')
        return (f'; {settings.backend} export failed ({exc}): the classifier will export '
                'when it loads the model')
    note = f'; exported for {settings.backend}: {", ".join(p.name for p in paths)}'
    if settings.backend == 'onnxruntime' and task is not None:
        try:
            calibration, validation = task_images(task, mf)
            check = export_int8(mf, paths[0].read_bytes(), calibration, validation)
            note += f'; {check.summary()}'
        except OSError as exc:
            LOG.warning(f'int8 export failed: {exc}')
            note += f'; int8 export failed ({exc}): the classifier runs FP32'
    return note


def _failed(report, code: int, message: str):
    report.success, report.error_code, report.message = False, code, message
    return report


def run_training(task: Task, settings: TrainerSettings, goal: TrainRequest,
                 store: ModelStore, store_lock: threading.RLock, *,
                 on_progress: Callable[[Progress], None],
                 should_stop: Callable[[], bool],
                 sync: Callable[[], SyncReport | None] = lambda: None) -> TrainReport:
    """Train ``task`` for ``goal``: fetch the dataset first (``sync``, dataset_source:
    collector), continue from a kept version or start fresh, save the new version into
    ``store`` (under ``store_lock``) as the task's current model and export it for the
    classifier's backend. ``on_progress`` after every batch, ``should_stop`` polled (a cancel
    ends the run within a batch; the previous model stays)."""
    recipe = RECIPES[goal.recipe] if goal.recipe else settings.recipe
    report = TrainReport(model_path=str(task.model_path) if task.model_path.exists() else '',
                         recipe=recipe.name)
    cfg = TrainConfig(epochs=goal.epochs, batch_size=goal.batch_size or settings.batch_size,
                      learning_rate=goal.learning_rate or settings.learning_rate,
                      val_fraction=settings.val_fraction, seed=settings.seed,
                      augment=settings.augment, hflip=settings.hflip,
                      device=str(settings.device), recipe=recipe,
                      keep_best=not goal.keep_last_epoch,
                      max_auto_epochs=min(settings.max_epochs, AUTO_EPOCHS_RANGE[1]))
    parent, note = _parent(goal, task, store, store_lock, settings.device)
    if isinstance(parent, str):
        return _failed(report, TrainError.MODEL_MISMATCH, parent)
    start = f'from model {parent.model_id}' if parent else 'from the initial weights'
    epochs = f'{cfg.epochs} epochs' if cfg.epochs else \
        f'auto epochs (about {auto_steps(recipe, len(task.classes))} steps)'
    LOG.info(f'training {task.name!r} for {epochs} {start} (batch '
             f'{cfg.batch_size}, lr {cfg.lr:g}); {recipe.describe()}{note}')

    def save(mf) -> None:
        with store_lock:
            store.add(mf)

    try:
        synced = sync()
    except SyncCancelled as exc:
        return _failed(report, TrainError.CANCELED, f'cancelled: {exc}')
    except (DatasetSyncError, OSError) as exc:
        return _failed(report, TrainError.DATASET_ERROR,
                       f'could not get the dataset from the collector: {exc}')
    if synced is not None:
        report.samples_fetched, report.samples_removed = synced.fetched, synced.removed
        note += f'; {synced.describe()}'
    try:
        out = train_task(task, cfg, settings.initial_weights,
                         spec=dataclasses.replace(DEFAULT_SPEC,
                                                  white_balance=settings.white_balance),
                         on_progress=on_progress, should_stop=should_stop, parent=parent,
                         save=save)
    except DatasetError as exc:
        return _failed(report, TrainError.DATASET_ERROR, str(exc))
    except ModelFileError as exc:
        return _failed(report, TrainError.INTERNAL_ERROR, f'initial weights: {exc}')
    except OSError as exc:
        return _failed(report, TrainError.SAVE_ERROR,
                       f'could not save the model (previous model kept): {exc}')
    except Exception as exc:  # a bug must fail the goal, not kill the node
        LOG.error(f'training failed: {exc!r}')
        return _failed(report, TrainError.INTERNAL_ERROR, f'training failed: {exc!r}')
    fit = out.fit
    report.epochs_completed = fit.epochs_completed
    report.train_accuracy, report.val_accuracy = fit.train_accuracy, fit.val_accuracy
    report.train_images, report.val_images = out.train_images, out.val_images
    report.continued, report.parent_model_id = bool(out.parent), out.parent
    report.pretrained, report.initial_weights = out.pretrained, settings.initial_weights
    skipped = f'; {out.skipped} unreadable image(s) skipped' if out.skipped else ''
    if fit.cancelled:
        return _failed(report, TrainError.CANCELED, f'cancelled after {fit.epochs_completed} '
                       f'epoch(s); previous model kept{skipped}')
    mf = out.model
    # The classifier loads the task's model file (now this version, a hard link) and the
    # backend's export beside it (model_path.onnx), as it does after a restart.
    mf.path = task.model_path
    report.success = True
    report.model_path, report.model_id = str(task.model_path), mf.model_id
    report.total_epochs, report.saved_epoch = mf.total_epochs, fit.saved_epoch
    report.best_epoch_selected, report.best_epoch = fit.best_selected, fit.best_epoch
    report.best_val_accuracy, report.best_val_loss = fit.best_val_accuracy, fit.best_val_loss
    report.last_train_accuracy = fit.train_accuracy
    report.last_val_accuracy, report.last_val_loss = fit.val_accuracy, fit.last_val_loss
    report.train_accuracy = fit.saved_train_accuracy
    report.val_accuracy = fit.saved_val_accuracy
    report.validation, report.training = out.validation, out.training
    report.temperature = out.temperature
    continued = ' (continued)' if parent else ''
    report.message = (f'trained {fit.epochs_completed} epochs on {out.train_images} images'
                      f'{continued}: {_kept(fit, goal, recipe)}; '
                      f'train accuracy {fit.saved_train_accuracy:.3f}, validation accuracy '
                      f'{fit.saved_val_accuracy:.3f} on {out.val_images} held-out images; '
                      f'{mf.total_epochs} epoch(s) in its lineage; recipe {recipe.name!r}; '
                      f'{out.weights_message}; {out.calibration}{note}{skipped}'
                      f'{_export(mf, settings, task)}')
    return report


def run_evaluation(task: Task, settings: TrainerSettings, model_id: str, batch_size: int,
                   store: ModelStore, store_lock: threading.RLock, *,
                   on_progress: Callable[[int, int], None],
                   should_stop: Callable[[], bool],
                   sync: Callable[[], SyncReport | None] = lambda: None) -> EvaluateReport:
    """Evaluate the kept version ``model_id`` ('' = the current one) on the dataset as it is
    now (fetched first by ``sync``): figures on the images it never trained on and, apart,
    on its training images. ``on_progress(done, total)`` after every batch."""
    report = EvaluateReport(model_id=model_id)
    try:
        with store_lock:
            mf = store.load(model_id, settings.device)
    except VersionError as exc:
        return _failed(report, EvaluateError.NO_MODEL, str(exc))
    except ModelFileError as exc:
        return _failed(report, EvaluateError.MODEL_ERROR, str(exc))
    report.model_id = mf.model_id
    try:
        synced = sync()
    except SyncCancelled:
        return _failed(report, EvaluateError.CANCELED, 'cancelled')
    except (DatasetSyncError, OSError) as exc:
        return _failed(report, EvaluateError.DATASET_ERROR,
                       f'could not get the dataset from the collector: {exc}')
    try:
        review = evaluate_model(task, mf, batch_size or 32, on_progress, should_stop)
    except DatasetError as exc:
        return _failed(report, EvaluateError.DATASET_ERROR, str(exc))
    except Exception as exc:  # a bug must fail the goal, not kill the node
        LOG.error(f'evaluation failed: {exc!r}')
        return _failed(report, EvaluateError.INTERNAL_ERROR, f'evaluation failed: {exc!r}')
    report.skipped = review.skipped
    if review.cancelled:
        return _failed(report, EvaluateError.CANCELED, 'cancelled')
    report.validation, report.training = review.validation, review.training
    v, t = review.validation, review.training
    acc = f'{v.accuracy:.3f}' if v.images else 'n/a'
    parts = [f'model {mf.model_id}: validation accuracy {acc} on {v.images} image(s) it '
             'never trained on']
    if t.images:
        parts.append(f'training accuracy {t.accuracy:.3f} on its {t.images} training '
                     'image(s) (not held out)')
    parts += review.notes
    if synced is not None:
        parts.append(synced.describe())
    if review.skipped:
        parts.append(f'{review.skipped} unreadable file(s) skipped')
    report.success, report.message = True, '; '.join(parts)
    return report
