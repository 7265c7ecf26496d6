"""trainer node: the ``train`` action server (gesture_interfaces/action/Train).

Fine-tunes a ResNet-18 on the task's dataset (see gesture_classifier.training for the recipe),
sends feedback after every batch, stops within one batch when the goal is cancelled (the
previous model stays), saves the model atomically, exports what the classifier's ``backend``
needs beside it (``model.onnx`` for onnxruntime, plus ``model.engine`` for tensorrt; see
gesture_classifier.backends) and announces the model on ``model``
(gesture_interfaces/msg/ModelInfo, latched) so the classifier switches to it without a restart.

One goal at a time: a goal arriving while one runs is rejected, as is a goal whose values are
out of range; the reason is logged.

A goal continues from the current model by default (Train.action's ``start``), the saved
model is the best-validating epoch, and every model is kept as a version
(gesture_classifier.versions): ``models`` (ModelList, latched) lists them, ``select_model``,
``import_model`` and ``export_model`` (services) choose, add and save them, and the
``evaluate`` action (Evaluate) measures one on the dataset as it is now.

Parameters (read-only): task, classes, data_dir, dataset_dir, model_path (see
common.declare_task), device, initial_weights ('imagenet', 'none' or a path), recipe (a preset
of training.RECIPES) and ``recipe.<setting>`` for each Recipe field (defaults: the preset's),
hflip, batch_size, learning_rate, val_fraction, seed, augment, max_epochs, max_batch_size,
backend (the classifier's backend, to export for), keep_models (versions kept),
transfer_dir (the only folder import_model reads and export_model writes).

Serves ``get_model`` (gesture_interfaces/srv/GetModel): byte ranges of the current model
file, so a classifier on another computer can fetch it; the announcement carries the file's
size and SHA-256 for it to check.

``dataset_source`` (read-only): ``local`` (default) trains on the files in ``dataset_dir``;
``collector`` first makes ``dataset_dir`` a copy of the collector's dataset over ROS
(``list_samples`` / ``get_samples``, gesture_classifier.datasync: only samples it lacks or
holds with other bytes are fetched, each checked by size and SHA-256; samples the collector no
longer has go to the trainer's trash), before every train and evaluate goal, so the trainer
can run on another computer with nothing shared but the ROS graph. ``dataset_timeout`` (s)
bounds each of those calls.

Diagnostics (``/diagnostics``, 1 Hz, status ``trainer: training``): idle or training, epoch and
progress of the running goal, the last goal's result and model id; ERROR when the last goal
failed.
"""
from __future__ import annotations

import array
import dataclasses
import math
import os
import threading
from pathlib import Path

from gesture_interfaces.action import Evaluate, Train
from gesture_interfaces.msg import ModelInfo, ModelList
from gesture_interfaces.srv import (ExportModel, GetModel, GetSamples, ImportModel,
                                    ListSamples, SelectModel)
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

from ..backends import (AUTO, BACKENDS, BackendError, available_backends, export,
                        require_usable)
from ..client import ClientError, wait_future
from ..datasync import (DatasetSyncError, DigestCache, Listing, SampleData, SampleEntry,
                        SyncCancelled, SyncReport, sync_dataset)
from ..fsutil import ensure_private_dir
from ..dataset import DatasetError
from ..evaluation import format_confusion
from ..messages import evaluation_msg, model_info
from ..model import ModelFileError
from ..review import evaluate_model
from ..versions import (MODEL_ID_PATTERN, ModelStore, VersionError, read_metadata,
                        resolve_transfer_path)
from ..transfer import file_digest, read_chunk
from ..training import (AUGMENTATIONS, AVERAGING, DEFAULT_RECIPE, RECIPES, STAGES, Progress,
                        Recipe, TrainConfig, get_recipe, resolve_device, train_task)
from .common import LATCHED_QOS, MODEL_QOS, declare, declare_task, run_node
from .diagnostics import ERROR, OK, updater_for


#: Seconds a goal's result stays available after the goal ended (15 minutes).
RESULT_TIMEOUT = 900


class TrainerNode(Node):
    def __init__(self, **kwargs):
        super().__init__('trainer', **kwargs)
        self.task = declare_task(self, model=True, dataset=True)
        self.device = resolve_device(declare(
            self, 'device', 'auto', "Torch device: 'auto', 'cpu', 'cuda' or 'cuda:N'",
            read_only=True))
        self.initial_weights = declare(
            self, 'initial_weights', 'imagenet', "Backbone weights: 'imagenet' (torchvision "
            "ResNet18_Weights.IMAGENET1K_V1), 'none' (random) or a state_dict file path",
            read_only=True)
        self.max_epochs = declare(self, 'max_epochs', 100, 'Largest epochs a goal may ask for',
                                  int_range=(1, 10000), read_only=True)
        self.max_batch_size = declare(self, 'max_batch_size', 64, 'Largest batch_size a goal '
                                      'may ask for', int_range=(1, 4096), read_only=True)
        self.recipe = self._declare_recipe()
        self.hflip = declare(self, 'hflip', True, 'Mirrored images may be used for training: '
                             'true for tasks whose classes do not depend on left/right '
                             '(thumbs, fingers, emotions); false for e.g. "point left"',
                             read_only=True)
        self.batch_size = declare(self, 'batch_size', 8, 'Batch size when the goal gives 0',
                                  int_range=(1, 4096), read_only=True)
        self.learning_rate = declare(self, 'learning_rate', 0.0, 'Learning rate of the new '
                                     "last layer when the goal gives 0; 0 = the recipe's",
                                     float_range=(0.0, 1.0), read_only=True)
        self.val_fraction = declare(self, 'val_fraction', 0.2, 'Share of each class held out '
                                    'for validation', float_range=(0.0, 0.9), read_only=True)
        self.seed = declare(self, 'seed', 0, 'Seed of split, augmentation and initialisation',
                            int_range=(0, 2**31 - 1), read_only=True)
        self.augment = declare(self, 'augment', True, "Apply the recipe's augmentation "
                               '(false: none)', read_only=True)
        backend = declare(
            self, 'backend', AUTO, "The classifier's backend: after training, the files "
            'it needs are exported beside the model (nothing for pytorch; for auto the ONNX '
            'export when onnx is installed: the classifier may run onnxruntime or build a '
            'TensorRT engine from it on its own GPU)', read_only=True,
            constraints=f'one of {AUTO}, {", ".join(BACKENDS)}')
        if backend == AUTO:
            backend = 'onnxruntime' if 'onnxruntime' in available_backends() else 'pytorch'
        require_usable(backend)
        self.backend = backend
        self.keep_models = declare(self, 'keep_models', 10, 'Model versions kept (each about '
                                   '45 MB); the oldest beyond are deleted, never the current',
                                   int_range=(1, 1000), read_only=True)
        transfer = declare(self, 'transfer_dir', '', 'The only folder import_model reads from '
                           'and export_model writes to; empty: <data_dir>/<task>/transfer',
                           read_only=True)
        self.transfer_dir = (Path(os.path.expanduser(transfer)) if transfer else
                             self.task.trash.parent / 'transfer').resolve()
        ensure_private_dir(self.transfer_dir)
        self.dataset_source = declare(
            self, 'dataset_source', 'local', "Where training data comes from: 'local' (the "
            "files in dataset_dir) or 'collector' (dataset_dir becomes a copy of the "
            "collector's dataset, fetched over ROS before every goal: for a trainer on "
            'another computer)', read_only=True, constraints='one of local, collector')
        if self.dataset_source not in ('local', 'collector'):
            raise ValueError(f"dataset_source must be 'local' or 'collector', got "
                             f'{self.dataset_source!r}')
        self.dataset_timeout = declare(
            self, 'dataset_timeout', 30.0, "Seconds to wait for each of the collector's "
            'list_samples / get_samples answers (dataset_source: collector)',
            float_range=(1.0, 600.0), read_only=True)
        self._digests = DigestCache()
        self._sync_lock = threading.Lock()  # train and evaluate goals both sync
        self._last_sync: SyncReport | str | None = None
        self.store = ModelStore(self.task, self.keep_models)
        self._store_lock = threading.RLock()  # versions: train's save, services, the list
        self._busy = threading.Lock()
        self._eval_busy = threading.Lock()
        self._model_pub = self.create_publisher(ModelInfo, 'model', MODEL_QOS)
        self._list_pub = self.create_publisher(ModelList, 'models', LATCHED_QOS)
        group = ReentrantCallbackGroup()
        # Results are kept RESULT_TIMEOUT s after a goal ends (Kilted's rclpy default is 10 s,
        # Humble's and Jazzy's 900): a client whose result answer was lost asks again later.
        self._server = ActionServer(
            self, Train, 'train', execute_callback=self._execute,
            goal_callback=self._on_goal, cancel_callback=self._on_cancel,
            callback_group=group, result_timeout=RESULT_TIMEOUT)
        self._eval_server = ActionServer(
            self, Evaluate, 'evaluate', execute_callback=self._execute_evaluate,
            goal_callback=self._on_evaluate_goal, cancel_callback=self._on_cancel,
            callback_group=group, result_timeout=RESULT_TIMEOUT)
        self.create_service(SelectModel, 'select_model', self._on_select, callback_group=group)
        self.create_service(ImportModel, 'import_model', self._on_import, callback_group=group)
        self.create_service(ExportModel, 'export_model', self._on_export, callback_group=group)
        self._announced: ModelInfo | None = None  # the model get_model serves
        self.create_service(GetModel, 'get_model', self._on_get_model, callback_group=group)
        # created with any dataset_source, so the graph matches the SROS2 policy either way
        self._list_client = self.create_client(ListSamples, 'list_samples',
                                               callback_group=group)
        self._samples_client = self.create_client(GetSamples, 'get_samples',
                                                  callback_group=group)
        with self._store_lock:
            adopted = self.store.adopt_current()
        if adopted:
            self.get_logger().info(f'current model {adopted}')
        self.publish_models()
        self._progress: Progress | None = None  # of the running goal
        self._last_result: Train.Result | None = None
        self._diagnostics = updater_for(self, str(self.device))
        self._diagnostics.add('training', self._diagnose)
        self.get_logger().info(f'task {self.task.name!r}: dataset {self.task.dataset_dir}, '
                               f'model {self.task.model_path}, device {self.device}')

    def _diagnose(self, stat):
        """idle/training, epoch and loss of the running goal, the last goal's result; ERROR
        when the last goal failed (a cancel is not a failure)."""
        progress, last = self._progress, self._last_result
        training = self._busy.locked()
        if training:
            stat.summary(OK, 'training' + (f': epoch {progress.epoch}/{progress.epochs}'
                                           if progress else ''))
        elif last is not None and not last.success and \
                last.error_code != Train.Result.CANCELED:
            stat.summary(ERROR, f'idle; the last goal failed: {last.message}')
        else:
            stat.summary(OK, 'idle')
        stat.add('state', 'training' if training else 'idle')
        stat.add('epoch', f'{progress.epoch}/{progress.epochs}' if training and progress
                 else '')
        stat.add('progress', f'{progress.progress:.3f}' if training and progress else '')
        stat.add('last result', last.message if last else '')
        stat.add('last model id', last.model_id if last else '')
        stat.add('dataset source', self.dataset_source)
        sync = self._last_sync
        stat.add('last dataset sync', sync.describe() if isinstance(sync, SyncReport)
                 else sync or '')
        return stat

    def _declare_recipe(self) -> Recipe:
        """``recipe`` (a preset) and one ``recipe.<field>`` parameter per Recipe setting whose
        default is the preset's value, so a parameter file can change any one of them."""
        name = declare(self, 'recipe', DEFAULT_RECIPE, 'Training recipe preset; '
                       '`recipe.*` parameters change single settings of it', read_only=True,
                       constraints=f'one of {", ".join(RECIPES)}')
        preset = get_recipe(name)
        p = 'recipe.'
        values = dict(
            train_from=declare(self, p + 'train_from', preset.train_from, 'First trained '
                               'ResNet-18 stage; earlier ones keep their initial weights',
                               read_only=True, constraints=f'one of {", ".join(STAGES)}'),
            freeze_batchnorm=declare(self, p + 'freeze_batchnorm', preset.freeze_batchnorm,
                                     'BatchNorm statistics and scale/shift stay as loaded',
                                     read_only=True),
            learning_rate=declare(self, p + 'learning_rate', preset.learning_rate,
                                  'AdamW learning rate of the last layer',
                                  float_range=(1e-7, 1.0), read_only=True),
            backbone_lr_factor=declare(self, p + 'backbone_lr_factor',
                                       preset.backbone_lr_factor, 'Backbone learning rate = '
                                       'learning_rate x this', float_range=(1e-4, 1.0),
                                       read_only=True),
            weight_decay=declare(self, p + 'weight_decay', preset.weight_decay, 'AdamW '
                                 'decoupled weight decay', float_range=(0.0, 1.0),
                                 read_only=True),
            label_smoothing=declare(self, p + 'label_smoothing', preset.label_smoothing,
                                    'Cross-entropy label smoothing', float_range=(0.0, 0.49),
                                    read_only=True),
            augmentation=declare(self, p + 'augmentation', preset.augmentation, 'Training '
                                 "augmentation: 'none', 'dli' (ColorJitter only) or 'camera' "
                                 '(crop/zoom, rotation, colour, grayscale, blur)',
                                 read_only=True, constraints=f'one of {", ".join(AUGMENTATIONS)}'),
            head_warmup_epochs=declare(self, p + 'head_warmup_epochs',
                                       preset.head_warmup_epochs, 'Epochs at the start that '
                                       'train only the last layer', int_range=(0, 100),
                                       read_only=True),
            cosine=declare(self, p + 'cosine', preset.cosine, 'Cosine learning-rate decay to 0',
                           read_only=True),
            average=declare(self, p + 'average', preset.average, "Weight averaging: 'none' or "
                            "'swa' (mean of the epochs after the first third)", read_only=True,
                            constraints=f'one of {", ".join(AVERAGING)}'),
            wise_alpha=declare(self, p + 'wise_alpha', preset.wise_alpha, 'WiSE-FT: share of '
                               'the fine-tuned weights in a blend with the model after the '
                               'head warm-up (1 = fine-tuned only)', float_range=(0.01, 1.0),
                               read_only=True))
        changed = {k: v for k, v in values.items() if getattr(preset, k) != v}
        return preset.replace(**changed)  # raises ValueError: the node does not start

    # -- goal handling ---------------------------------------------------------------------
    def goal_error(self, goal: Train.Goal) -> str:
        """Why ``goal`` is out of range, or '' when it is acceptable."""
        if goal.recipe and goal.recipe not in RECIPES:
            return f'unknown recipe {goal.recipe!r}; presets: {", ".join(RECIPES)}'
        if not 1 <= goal.epochs <= self.max_epochs:
            return f'epochs must be in 1..{self.max_epochs}, got {goal.epochs}'
        if goal.start not in (Train.Goal.START_AUTO, Train.Goal.START_CONTINUE,
                              Train.Goal.START_FRESH):
            return f'start must be 0 (auto), 1 (continue) or 2 (fresh), got {goal.start}'
        if goal.from_model_id and not MODEL_ID_PATTERN.fullmatch(goal.from_model_id):
            return f'from_model_id {goal.from_model_id[:80]!r} is not a valid model id'
        if goal.batch_size > self.max_batch_size:
            return f'batch_size must be in 0..{self.max_batch_size}, got {goal.batch_size}'
        lr = goal.learning_rate
        if not (lr == 0.0 or (math.isfinite(lr) and 0.0 < lr <= 1.0)):
            return f'learning_rate must be 0 (default) or in (0, 1], got {lr}'
        return ''

    def _on_goal(self, goal: Train.Goal) -> GoalResponse:
        error = self.goal_error(goal)
        if error:
            self.get_logger().warning(f'rejected train goal: {error}')
            return GoalResponse.REJECT
        if not self._busy.acquire(blocking=False):
            self.get_logger().warning('rejected train goal: another training goal is running '
                                      '(one at a time; cancel it first)')
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT  # the lock is released when this goal ends

    def _on_cancel(self, goal_handle) -> CancelResponse:
        self.get_logger().info('cancel requested; stopping after the current batch')
        return CancelResponse.ACCEPT

    def _execute(self, goal_handle) -> Train.Result:
        self._progress = None
        try:
            self._last_result = self._train(goal_handle)
            return self._last_result
        finally:
            self._busy.release()

    def _train(self, goal_handle) -> Train.Result:
        goal = goal_handle.request
        result = Train.Result(model_path=str(self.task.model_path)
                              if self.task.model_path.exists() else '', val_accuracy=-1.0)
        recipe = RECIPES[goal.recipe] if goal.recipe else self.recipe
        cfg = TrainConfig(epochs=goal.epochs, batch_size=goal.batch_size or self.batch_size,
                          learning_rate=goal.learning_rate or self.learning_rate,
                          val_fraction=self.val_fraction, seed=self.seed,
                          augment=self.augment, hflip=self.hflip, device=str(self.device),
                          recipe=recipe)
        cfg = dataclasses.replace(cfg, keep_best=not goal.keep_last_epoch)
        result.recipe = recipe.name
        result.last_val_accuracy = result.last_val_loss = -1.0
        result.best_val_accuracy = result.best_val_loss = -1.0
        result.last_train_accuracy = -1.0
        parent, note = self._parent(goal)
        if isinstance(parent, str):
            return self._abort(goal_handle, result, Train.Result.MODEL_MISMATCH, parent)
        start = f'from model {parent.model_id}' if parent else 'from the initial weights'
        self.get_logger().info(f'training {self.task.name!r} for {cfg.epochs} epochs {start} '
                               f'(batch {cfg.batch_size}, lr {cfg.lr:g}); {recipe.describe()}'
                               f'{note}')

        def on_progress(p: Progress) -> None:
            self._progress = p
            goal_handle.publish_feedback(Train.Feedback(
                epoch=p.epoch, epochs=p.epochs, batch=p.batch, batches=p.batches,
                progress=float(p.progress), loss=float(p.loss), accuracy=float(p.accuracy),
                val_accuracy=float(p.val_accuracy), val_loss=float(p.val_loss),
                best_epoch=p.best_epoch, best_val_accuracy=float(p.best_val_accuracy)))

        def save(mf) -> None:
            with self._store_lock:
                self.store.add(mf)

        try:
            sync = self._sync_dataset(lambda: goal_handle.is_cancel_requested)
        except SyncCancelled as exc:
            result.error_code, result.message = Train.Result.CANCELED, f'cancelled: {exc}'
            goal_handle.canceled()
            return result
        except (DatasetSyncError, OSError) as exc:
            return self._abort(goal_handle, result, Train.Result.DATASET_ERROR,
                               f'could not get the dataset from the collector: {exc}')
        if sync is not None:
            result.samples_fetched, result.samples_removed = sync.fetched, sync.removed
            note += f'; {sync.describe()}'
        try:
            out = train_task(self.task, cfg, self.initial_weights,
                             on_progress=on_progress,
                             should_stop=lambda: goal_handle.is_cancel_requested,
                             parent=parent, save=save)
        except DatasetError as exc:
            return self._abort(goal_handle, result, Train.Result.DATASET_ERROR, str(exc))
        except ModelFileError as exc:
            return self._abort(goal_handle, result, Train.Result.INTERNAL_ERROR,
                               f'initial weights: {exc}')
        except OSError as exc:
            return self._abort(goal_handle, result, Train.Result.SAVE_ERROR,
                               f'could not save the model (previous model kept): {exc}')
        except Exception as exc:  # a bug must fail the goal, not kill the node
            self.get_logger().error(f'training failed: {exc!r}')
            return self._abort(goal_handle, result, Train.Result.INTERNAL_ERROR,
                               f'training failed: {exc!r}')
        fit = out.fit
        result.epochs_completed = fit.epochs_completed
        result.train_accuracy = float(fit.train_accuracy)
        result.val_accuracy = float(fit.val_accuracy)
        result.train_images, result.val_images = out.train_images, out.val_images
        result.continued, result.parent_model_id = bool(out.parent), out.parent
        result.pretrained = out.pretrained
        result.initial_weights = self.initial_weights
        skipped = f'; {out.skipped} unreadable image(s) skipped' if out.skipped else ''
        if fit.cancelled:
            result.error_code = Train.Result.CANCELED
            result.message = (f'cancelled after {fit.epochs_completed} epoch(s); previous model '
                              f'kept{skipped}')
            goal_handle.canceled()
            self.get_logger().info(result.message)
            return result
        mf = out.model
        # The classifier loads the task's model file (now this version, a hard link) and the
        # backend's export beside it (model_path.onnx), as it does after a restart.
        mf.path = self.task.model_path
        result.success = True
        # the task's model file (a hard link to the version <models>/<model_id>.pt)
        result.model_path, result.model_id = str(self.task.model_path), mf.model_id
        result.total_epochs, result.saved_epoch = mf.total_epochs, fit.saved_epoch
        result.best_epoch_selected, result.best_epoch = fit.best_selected, fit.best_epoch
        result.best_val_accuracy = float(fit.best_val_accuracy)
        result.best_val_loss = float(fit.best_val_loss)
        result.last_train_accuracy = float(fit.train_accuracy)
        result.last_val_accuracy = float(fit.val_accuracy)
        result.last_val_loss = float(fit.last_val_loss)
        result.train_accuracy = float(fit.saved_train_accuracy)
        result.val_accuracy = float(fit.saved_val_accuracy)
        result.validation = evaluation_msg(out.validation)
        result.training = evaluation_msg(out.training)
        continued = ' (continued)' if parent else ''
        result.message = (f'trained {fit.epochs_completed} epochs on {out.train_images} images'
                          f'{continued}: {self._kept(fit, goal, recipe)}; '
                          f'train accuracy {fit.saved_train_accuracy:.3f}, validation accuracy '
                          f'{fit.saved_val_accuracy:.3f} on {out.val_images} held-out images; '
                          f'{mf.total_epochs} epoch(s) in its lineage; recipe {recipe.name!r}; '
                          f'{out.weights_message}{note}{skipped}{self._export(mf)}')
        self._announce()
        self.publish_models()
        goal_handle.succeed()
        self.get_logger().info(result.message)
        self.get_logger().info(f'validation figures of {mf.model_id}:\n'
                               f'{format_confusion(out.validation)}')
        return result

    @staticmethod
    def _kept(fit, goal, recipe) -> str:
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

    def _parent(self, goal: Train.Goal):
        """(ModelFile to continue from or None, note for the message), or the reason a
        START_CONTINUE / from_model_id goal cannot continue (a str)."""
        if goal.start == Train.Goal.START_FRESH:
            return None, ''
        explicit = goal.start == Train.Goal.START_CONTINUE or bool(goal.from_model_id)
        try:
            with self._store_lock:
                parent = self.store.load(goal.from_model_id, self.device)
            if parent.task and parent.task != self.task.name:
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

    def _export(self, mf) -> str:
        """Export for the classifier's backend; '' or a note for the result message. A failed
        export does not fail the goal: the model is saved and the classifier exports itself."""
        if self.backend == 'pytorch':
            return ''
        try:
            paths = export(mf, self.backend, device=self.device)
        except (BackendError, OSError) as exc:
            self.get_logger().warning(f'{self.backend} export failed: {exc}')
            return (f'; {self.backend} export failed ({exc}): the classifier will export '
                    'when it loads the model')
        return f'; exported for {self.backend}: {", ".join(p.name for p in paths)}'

    def _abort(self, goal_handle, result, code: int, message: str) -> Train.Result:
        result.success, result.error_code, result.message = False, code, message
        self.get_logger().error(f'train goal aborted: {message}')
        goal_handle.abort()
        return result

    def _announce(self) -> ModelInfo:
        """Publish the current model (``model_path``) on ``model``: the classifier switches
        to it (and exports for its backend beside it when the export is stale)."""
        path = self.task.model_path
        info = model_info(read_metadata(path), path, self.task.name)
        info.header.stamp = self.get_clock().now().to_msg()
        try:
            info.size, info.sha256 = file_digest(path)
        except OSError as exc:  # announced without; a classifier on this disk still loads it
            self.get_logger().warning(f'cannot hash {path}: {exc}')
        self._announced = info
        self._model_pub.publish(info)
        return info

    def publish_models(self) -> None:
        """Publish the version list on ``models``."""
        with self._store_lock:
            versions = self.store.versions()
            current = self.store.current_id()
        msg = ModelList(task=self.task.name, current_model_id=current)
        msg.header.stamp = self.get_clock().now().to_msg()
        for v in versions:
            info = model_info(v.meta, v.path, self.task.name)
            info.header.stamp.sec = int(v.mtime)
            info.header.stamp.nanosec = int((v.mtime % 1) * 1e9)
            msg.models.append(info)
        self._list_pub.publish(msg)

    # -- model versions ----------------------------------------------------------------------
    def _version_call(self, response, what: str, work) -> object:
        """Run ``work()`` under the store lock; failures fill success/message."""
        try:
            with self._store_lock:
                out = work()
        except (VersionError, ModelFileError) as exc:
            response.success, response.message = False, str(exc)
            self.get_logger().warning(f'{what} refused: {exc}')
            return None
        except OSError as exc:
            response.success, response.message = False, f'{what} failed: {exc}'
            self.get_logger().error(response.message)
            return None
        response.success = True
        return out

    def _on_select(self, request: SelectModel.Request, response: SelectModel.Response):
        v = self._version_call(response, 'select_model',
                               lambda: self.store.select(request.model_id))
        if v is not None:
            response.model = self._announce()
            response.message = f'model {v.model_id} is current'
            self.get_logger().info(response.message)
            self.publish_models()
        return response

    def _on_import(self, request: ImportModel.Request, response: ImportModel.Response):
        def work():
            src = resolve_transfer_path(self.transfer_dir, request.path, must_exist=True)
            mf = self.store.import_file(src)
            if request.select:
                self.store.select(mf.model_id)
            return mf

        mf = self._version_call(response, 'import_model', work)
        if mf is not None:
            path = self.store.path_of(mf.model_id)
            if request.select:
                response.model = self._announce()
            else:
                response.model = model_info(read_metadata(path), path, self.task.name)
            response.message = (f'imported {request.path} as model {mf.model_id}'
                                f'{" (current)" if request.select else ""}')
            self.get_logger().info(response.message)
            self.publish_models()
        return response

    def _on_export(self, request: ExportModel.Request, response: ExportModel.Response):
        def work():
            dest = resolve_transfer_path(self.transfer_dir, request.path, must_exist=False)
            return self.store.export(request.model_id, dest, request.overwrite)

        dest = self._version_call(response, 'export_model', work)
        if dest is not None:
            response.path = str(dest)
            response.message = f'exported {request.model_id or "the current model"} to {dest}'
            self.get_logger().info(response.message)
        return response

    # -- evaluate ----------------------------------------------------------------------------
    def _on_evaluate_goal(self, goal: Evaluate.Goal) -> GoalResponse:
        if goal.batch_size > self.max_batch_size:
            self.get_logger().warning(f'rejected evaluate goal: batch_size must be in '
                                      f'0..{self.max_batch_size}, got {goal.batch_size}')
            return GoalResponse.REJECT
        if goal.model_id and not MODEL_ID_PATTERN.fullmatch(goal.model_id):
            self.get_logger().warning('rejected evaluate goal: model_id '
                                      f'{goal.model_id[:80]!r} is not a valid model id')
            return GoalResponse.REJECT
        if not self._eval_busy.acquire(blocking=False):
            self.get_logger().warning('rejected evaluate goal: another evaluation is running')
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT  # released when the goal ends

    def _execute_evaluate(self, goal_handle) -> Evaluate.Result:
        try:
            return self._evaluate(goal_handle)
        finally:
            self._eval_busy.release()

    def _evaluate(self, goal_handle) -> Evaluate.Result:
        goal = goal_handle.request
        result = Evaluate.Result(model_id=goal.model_id)

        def fail(code, message):
            result.success, result.error_code, result.message = False, code, message
            self.get_logger().warning(f'evaluate goal aborted: {message}')
            goal_handle.abort()
            return result

        try:
            with self._store_lock:
                mf = self.store.load(goal.model_id, self.device)
        except VersionError as exc:
            return fail(Evaluate.Result.NO_MODEL, str(exc))
        except ModelFileError as exc:
            return fail(Evaluate.Result.MODEL_ERROR, str(exc))
        result.model_id = mf.model_id

        try:
            sync = self._sync_dataset(lambda: goal_handle.is_cancel_requested)
        except SyncCancelled:
            result.error_code, result.message = Evaluate.Result.CANCELED, 'cancelled'
            goal_handle.canceled()
            return result
        except (DatasetSyncError, OSError) as exc:
            return fail(Evaluate.Result.DATASET_ERROR,
                        f'could not get the dataset from the collector: {exc}')

        def progress(done, total):
            goal_handle.publish_feedback(Evaluate.Feedback(
                images_done=done, images_total=total, progress=done / max(total, 1)))

        try:
            review = evaluate_model(self.task, mf, goal.batch_size or 32, progress,
                                    lambda: goal_handle.is_cancel_requested)
        except DatasetError as exc:
            return fail(Evaluate.Result.DATASET_ERROR, str(exc))
        except Exception as exc:  # a bug must fail the goal, not kill the node
            self.get_logger().error(f'evaluation failed: {exc!r}')
            return fail(Evaluate.Result.INTERNAL_ERROR, f'evaluation failed: {exc!r}')
        result.skipped = review.skipped
        if review.cancelled:
            result.error_code, result.message = Evaluate.Result.CANCELED, 'cancelled'
            goal_handle.canceled()
            return result
        result.validation = evaluation_msg(review.validation)
        result.training = evaluation_msg(review.training)
        v, t = review.validation, review.training
        acc = f'{v.accuracy:.3f}' if v.images else 'n/a'
        result.success = True
        parts = [f'model {mf.model_id}: validation accuracy {acc} on {v.images} image(s) it '
                 'never trained on']
        if t.images:
            parts.append(f'training accuracy {t.accuracy:.3f} on its {t.images} training '
                         'image(s) (not held out)')
        parts += review.notes
        if sync is not None:
            parts.append(sync.describe())
        if review.skipped:
            parts.append(f'{review.skipped} unreadable file(s) skipped')
        result.message = '; '.join(parts)
        goal_handle.succeed()
        self.get_logger().info(f'{result.message}\n{format_confusion(v)}')
        return result

    # -- the dataset from the collector (dataset_source: collector) ------------------------
    def _sync_dataset(self, should_stop) -> SyncReport | None:
        """Make dataset_dir a copy of the collector's dataset (None with dataset_source
        local). Raises DatasetSyncError (SyncCancelled), OSError."""
        if self.dataset_source != 'collector':
            return None

        def get_page(offset: int, count: int):
            res = self._call(self._list_client, 'list_samples',
                             ListSamples.Request(offset=offset, max_count=count))
            n = len(res.labels)
            if not len(res.names) == len(res.sizes) == len(res.sha256s) == n:
                raise DatasetSyncError('the collector sent a malformed listing (arrays of '
                                       'different lengths)')
            entries = tuple(SampleEntry(*e) for e in zip(res.labels, res.names,
                                                         (int(x) for x in res.sizes),
                                                         res.sha256s))
            listing = Listing(res.task, tuple(res.class_names), entries, res.untransferable,
                              res.message)
            return listing, res.total, res.listing_sha256

        def get_samples(wanted):
            res = self._call(self._samples_client, 'get_samples', GetSamples.Request(
                labels=[label for label, _ in wanted], names=[name for _, name in wanted]))
            return [SampleData(s.label, s.name, s.sha256, bytes(s.data), s.error)
                    for s in res.samples]

        with self._sync_lock:
            try:
                report = sync_dataset(self.task, get_page, get_samples, self._digests,
                                      should_stop)
            except (DatasetSyncError, OSError) as exc:
                self._last_sync = f'failed: {exc}'
                raise
        self._last_sync = report
        self.get_logger().info(report.describe())
        return report

    def _call(self, client, what: str, request):
        """One call to the collector; its answer when ``success``, else DatasetSyncError."""
        if not client.wait_for_service(timeout_sec=min(10.0, self.dataset_timeout)):
            raise DatasetSyncError(
                f"the collector's {what} service is not available (is the collector running "
                'with the same ROS_DOMAIN_ID and namespace, and can the computers discover '
                'each other?)')
        try:
            res = wait_future(client.call_async(request), self.dataset_timeout, what)
        except ClientError as exc:
            raise DatasetSyncError(str(exc)) from None
        if not res.success:
            raise DatasetSyncError(f'the collector refused {what}: {res.message}')
        return res

    def _on_get_model(self, request: GetModel.Request, response: GetModel.Response):
        """A byte range of the announced model file (only that one)."""
        info = self._announced
        if info is None or request.model_id != info.model_id:
            response.success = False
            response.message = (f'model {request.model_id[:80]!r} is not the current one '
                                f'({info.model_id if info else "none announced yet"})')
            return response
        try:
            response.size, data = read_chunk(info.path, request.offset, request.length)
        except (OSError, ValueError) as exc:
            response.success, response.message = False, str(exc)
            return response
        response.data = array.array('B', data)
        response.success = True
        return response


def main(args=None):
    # train and evaluate goals may each hold a thread for minutes: enough threads remain for
    # the services and the action protocol (the default is the CPU count, 2 on a small board)
    run_node(TrainerNode, args,
             executor_factory=lambda: MultiThreadedExecutor(num_threads=6))


if __name__ == '__main__':
    main()
