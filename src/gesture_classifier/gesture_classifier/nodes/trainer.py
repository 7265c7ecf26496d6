"""trainer node: the ``train`` and ``evaluate`` action servers and the model versions.

A ``train`` goal (Train.action) is run by gesture_classifier.core.trainer: feedback after every
batch, a cancel stops it within a batch (the previous model stays), the new model is saved as
a version and exported for the classifier's ``backend``; it is then announced on ``model``
(ModelInfo, latched) and the classifier switches to it without a restart. One goal at a time;
a goal out of range is rejected with the reason logged. ``models`` (ModelList, latched) lists
the kept versions; ``select_model``, ``import_model`` / ``put_model`` (an upload in chunks),
``export_model`` choose, add and save
them (files only inside ``transfer_dir``); ``evaluate`` (Evaluate.action) measures one on the
dataset as it is now; ``get_model`` serves the announced file to a classifier on another
computer. With ``dataset_source: collector`` the dataset is first copied from the collector
over ROS (``list_samples`` / ``get_samples``). Parameters: PARAMETERS below and
``recipe.<field>`` (core.trainer.RECIPE_SETTINGS); docs/parameters.md. Diagnostics: status
``trainer: training``, ERROR when the last goal failed.
"""
from __future__ import annotations

import array
import functools
import os
import threading
from pathlib import Path

from gesture_interfaces.action import Evaluate, Train
from gesture_interfaces.msg import ModelInfo, ModelList
from gesture_interfaces.srv import ExportModel, GetModel, ImportModel, PutModel, SelectModel
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node

from ..core.backends import AUTO, BACKENDS
from ..core.datasync import DatasetSyncError
from ..core.evaluation import format_confusion
from ..core.fsutil import ensure_private_dir
from ..core.trainer import (RECIPE_SETTINGS, DatasetMirror, TrainerSettings, TrainRequest,
                            Versions, evaluate_goal_error, goal_error, run_evaluation,
                            run_training, status)
from ..core.preprocess import WHITE_BALANCES
from ..core.training import DEFAULT_RECIPE, DEFAULT_SPEC, RECIPES, get_recipe
from ..core.transfer import file_digest, read_chunk
from ..core.versions import read_metadata
from ..ros.client import ClientError, GestureClient
from ..ros.diagnostics import ERROR, OK, updater_for
from ..ros.messages import from_msg, model_info, model_list, to_msg
from ..ros.offload import Offload
from ..ros.params import Param, declare_all, declare_task
from ..ros.runtime import run_node
from ..ros.topics import LATCHED_QOS, MODEL_QOS

#: Seconds a goal's result stays available after the goal ended (15 minutes; Kilted's rclpy
#: default is 10 s): a client whose result answer was lost asks again later.
RESULT_TIMEOUT = 900

#: The node's parameters (read-only), besides the task's and the recipe's.
PARAMETERS = (
    Param('device', 'auto', "Torch device: 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    Param('initial_weights', 'imagenet', "Backbone weights: 'imagenet' (torchvision "
          "ResNet18_Weights.IMAGENET1K_V1), 'none' (random) or a state_dict file path"),
    Param('max_epochs', 100, 'Largest epochs a goal may ask for', (1, 10000)),
    Param('max_batch_size', 64, 'Largest batch_size a goal may ask for', (1, 4096)),
    Param('recipe', DEFAULT_RECIPE, 'Training recipe preset; `recipe.*` parameters change '
          'single settings of it', constraints=f'one of {", ".join(RECIPES)}'),
    Param('hflip', True, 'Mirrored images may be used for training: true for tasks whose '
          'classes do not depend on left/right (thumbs, fingers, emotions); false for e.g. '
          '"point left"'),
    Param('batch_size', 8, 'Batch size when the goal gives 0', (1, 4096)),
    Param('learning_rate', 0.0, "Learning rate of the new last layer when the goal gives 0; "
          "0 = the recipe's", (0.0, 1.0)),
    Param('val_fraction', 0.2, 'Share of each class held out for validation', (0.0, 0.9)),
    Param('seed', 0, 'Seed of split, augmentation and initialisation', (0, 2**31 - 1)),
    Param('augment', True, "Apply the recipe's augmentation (false: none)"),
    Param('white_balance', DEFAULT_SPEC.white_balance, "Preprocessing of a new model's "
          "images, in training and in the classifier: 'gray_world' (each image's channels "
          "scaled to equal means: a camera's or lamp's colour cast is removed) or 'none'. A "
          'model trained further keeps its own', constraints=f'one of {", ".join(WHITE_BALANCES)}'),
    Param('backend', AUTO, "The classifier's backend: after training, the files it needs are "
          'exported beside the model (nothing for pytorch; for auto the ONNX export when onnx '
          'is installed: the classifier may run onnxruntime or build a TensorRT engine from '
          'it on its own GPU)', constraints=f'one of {AUTO}, {", ".join(BACKENDS)}'),
    Param('keep_models', 10, 'Model versions kept (each about 45 MB); the oldest beyond are '
          'deleted, never the current', (1, 1000)),
    Param('transfer_dir', '', 'The only folder import_model reads from and export_model '
          'writes to; empty: <data_dir>/<task>/transfer'),
    Param('dataset_source', 'local', "Where training data comes from: 'local' (the files in "
          "dataset_dir) or 'collector' (dataset_dir becomes a copy of the collector's "
          'dataset, fetched over ROS before every goal: for a trainer on another computer)',
          constraints='one of local, collector'),
    Param('dataset_timeout', 30.0, "Seconds to wait for each of the collector's list_samples "
          '/ get_samples answers (dataset_source: collector)', (1.0, 600.0)),
)


class TrainerNode(Node):
    def __init__(self, **kwargs):
        super().__init__('trainer', **kwargs)
        self.task = declare_task(self, model=True, dataset=True, on_classes=self._on_classes,
                                 refuse_classes=self._refuse_classes)
        p = declare_all(self, PARAMETERS, read_only=True)
        preset = get_recipe(p['recipe'])  # ValueError (here and below): the node does not start
        recipe = declare_all(self, (Param(name, getattr(preset, name), *about)
                                    for name, about in RECIPE_SETTINGS.items()),
                             read_only=True, prefix='recipe.')
        self.settings = TrainerSettings.from_parameters(p, recipe)
        if p['dataset_source'] not in ('local', 'collector'):
            raise ValueError(f"dataset_source must be 'local' or 'collector', got "
                             f"{p['dataset_source']!r}")
        self.dataset_source, self.dataset_timeout = p['dataset_source'], p['dataset_timeout']
        transfer = (Path(os.path.expanduser(p['transfer_dir'])) if p['transfer_dir']
                    else self.task.trash.parent / 'transfer').resolve()
        self.versions = Versions(self.task, p['keep_models'], ensure_private_dir(transfer))
        self._busy, self._eval_busy = threading.Lock(), threading.Lock()
        self._progress = self._last_result = self._announced = None
        self._model_pub = self.create_publisher(ModelInfo, 'model', MODEL_QOS)
        self._list_pub = self.create_publisher(ModelList, 'models', LATCHED_QOS)
        # One executor thread: a train or evaluate goal awaits its work, which runs in a
        # thread of its own (ros.offload), so services, the action protocol and the answers to
        # the dataset sync's own calls are served meanwhile. The group is reentrant because a
        # pending coroutine holds its callback group until it returns.
        group = ReentrantCallbackGroup()
        self._offload = Offload(self, group)
        ActionServer(self, Train, 'train', execute_callback=self._execute,
                     goal_callback=self._on_goal, cancel_callback=self._on_cancel,
                     callback_group=group, result_timeout=RESULT_TIMEOUT)
        ActionServer(self, Evaluate, 'evaluate', execute_callback=self._execute_evaluate,
                     goal_callback=self._on_evaluate_goal, cancel_callback=self._on_cancel,
                     callback_group=group, result_timeout=RESULT_TIMEOUT)
        for srv, name, handler in ((SelectModel, 'select_model', self._on_version),
                                   (ImportModel, 'import_model', self._on_version),
                                   (ExportModel, 'export_model', self._on_version),
                                   (PutModel, 'put_model', self._on_version),
                                   (GetModel, 'get_model', self._on_get_model)):
            self.create_service(srv, name, handler, callback_group=group)
        # made with any dataset_source, so the graph matches the SROS2 policy either way
        self.collector = GestureClient(node=self, uses=('list_samples', 'get_samples'),
                                       callback_group=group)
        self.mirror = DatasetMirror(self.task, self._remote(self.collector.list_samples),
                                    self._remote(self.collector.get_samples))
        with self.versions.lock:
            adopted = self.versions.store.adopt_current()
        if adopted:
            self.get_logger().info(f'current model {adopted}')
        self.publish_models()
        updater_for(self, str(self.settings.device)).add('training', self._diagnose)
        self.get_logger().info(f'task {self.task.name!r}: dataset {self.task.dataset_dir}, '
                               f'model {self.task.model_path}, device {self.settings.device}')

    def _refuse_classes(self) -> str:
        """Why classes cannot be added now ('' when they can): not while a goal runs on the
        old ones (its model would come out with classes the task no longer has)."""
        if self._busy.locked() or self._eval_busy.locked():
            return 'a train or evaluate goal is running; add classes after it ends'
        return ''

    def _on_classes(self, task) -> None:
        """Classes were added: the next goals train and evaluate on them. A kept model of the
        old classes can still be selected (and is used), not continued: training starts
        over."""
        self.task = task
        self.versions.set_task(task)
        self.mirror.set_task(task)

    def _diagnose(self, stat):
        error, summary, values = status(self._busy.locked(), self._progress,
                                        self._last_result)
        stat.summary(ERROR if error else OK, summary)
        for key, value in values + [('dataset source', self.dataset_source),
                                    ('last dataset sync', self.mirror.describe())]:
            stat.add(key, value)
        return stat

    # -- train -----------------------------------------------------------------------------
    def _on_goal(self, goal: Train.Goal) -> GoalResponse:
        error = goal_error(goal, self.settings)
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

    async def _execute(self, goal_handle) -> Train.Result:
        self._progress = None

        def on_progress(p) -> None:  # the training's thread
            self._progress = p
            goal_handle.publish_feedback(to_msg(p, Train.Feedback))

        try:
            report = await self._offloaded(goal_handle, 'train', functools.partial(
                run_training, self.task, self.settings,
                from_msg(goal_handle.request, TrainRequest), self.versions.store,
                self.versions.lock, on_progress=on_progress))
            if report.success:
                self._announce()
                self.publish_models()
            self._end(goal_handle, report, 'train')
            self._last_result = report
            return to_msg(report, Train.Result)
        finally:
            self._busy.release()

    def _offloaded(self, goal_handle, name: str, work):
        """``work(should_stop=..., sync=...)`` in a thread of its own (ros.offload), for the
        goal's execute coroutine to await: it stops after the current batch once a cancel of
        the goal is requested, and mirrors the collector's dataset first
        (``dataset_source: collector``)."""
        stop = lambda: goal_handle.is_cancel_requested  # noqa: E731
        return self._offload.run(
            lambda: work(should_stop=stop, sync=lambda: self._sync_dataset(stop)), name)

    def _end(self, goal_handle, report, what: str) -> None:
        """End the goal as the report says, and log it (one severity per call site)."""
        log = self.get_logger()
        if report.success:
            goal_handle.succeed()
            if what == 'train':
                log.info(report.message)
                log.info(f'validation figures of {report.model_id}:\n'
                         f'{format_confusion(report.validation)}')
            else:
                log.info(f'{report.message}\n{format_confusion(report.validation)}')
        elif report.canceled:
            goal_handle.canceled()
            log.info(report.message)
        elif what == 'train':
            goal_handle.abort()
            log.error(f'train goal aborted: {report.message}')
        else:
            goal_handle.abort()
            log.warning(f'evaluate goal aborted: {report.message}')

    # -- evaluate ----------------------------------------------------------------------------
    def _on_evaluate_goal(self, goal: Evaluate.Goal) -> GoalResponse:
        error = evaluate_goal_error(goal.model_id, goal.batch_size, self.settings)
        if error:
            self.get_logger().warning(f'rejected evaluate goal: {error}')
            return GoalResponse.REJECT
        if not self._eval_busy.acquire(blocking=False):
            self.get_logger().warning('rejected evaluate goal: another evaluation is running')
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT  # released when the goal ends

    async def _execute_evaluate(self, goal_handle) -> Evaluate.Result:
        goal = goal_handle.request

        def progress(done: int, total: int) -> None:  # the evaluation's thread
            goal_handle.publish_feedback(Evaluate.Feedback(
                images_done=done, images_total=total, progress=done / max(total, 1)))

        try:
            report = await self._offloaded(goal_handle, 'evaluate', functools.partial(
                run_evaluation, self.task, self.settings, goal.model_id, goal.batch_size,
                self.versions.store, self.versions.lock, on_progress=progress))
            self._end(goal_handle, report, 'evaluate')
            return to_msg(report, Evaluate.Result)
        finally:
            self._eval_busy.release()

    # -- model versions ----------------------------------------------------------------------
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
        with self.versions.lock:
            store = self.versions.store
            msg = model_list(self.task.name, store.versions(), store.current_id())
        msg.header.stamp = self.get_clock().now().to_msg()
        self._list_pub.publish(msg)

    def _on_version(self, request, response):
        """select_model, import_model, put_model, export_model (core.trainer.Versions); a
        new current model is announced."""
        if isinstance(request, SelectModel.Request):
            a = self.versions.select(request.model_id)
        elif isinstance(request, ImportModel.Request):
            a = self.versions.import_file(request.path, request.select)
        elif isinstance(request, PutModel.Request):
            a = self.versions.put_chunk(request.upload_id, request.size, request.sha256,
                                        request.offset, bytes(request.data), request.select)
            response.received = a.received
        else:
            a = self.versions.export(request.model_id, request.path, request.overwrite)
            response.path = a.path
        response.success, response.message = a.success, a.message
        if a.model_id:
            path = self.versions.store.path_of(a.model_id)
            response.model = self._announce() if a.current else \
                model_info(read_metadata(path), path, self.task.name)
            self.publish_models()
        return response

    def _on_get_model(self, request, response):
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
        response.data, response.success = array.array('B', data), True
        return response

    # -- the dataset from the collector (dataset_source: collector) ------------------------
    def _sync_dataset(self, should_stop):
        """Make dataset_dir a copy of the collector's dataset; None with dataset_source local.
        Raises DatasetSyncError (SyncCancelled), OSError."""
        return self.mirror.sync(should_stop) if self.dataset_source == 'collector' else None

    def _remote(self, call):
        """``call`` (a collector service of the client) with dataset_timeout, its errors as
        DatasetSyncError."""
        def run(*args):
            try:
                return call(*args, timeout=self.dataset_timeout)
            except ClientError as exc:
                raise DatasetSyncError(str(exc)) from None
        return run


def main(args=None):
    run_node(TrainerNode, args)


if __name__ == '__main__':
    main()
