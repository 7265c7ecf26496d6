"""A Python API over the system's topics, service and action, for scripts, tests and the CLI.

One verb per job, after nav2_simple_commander::

    with GestureClient() as gc:
        gc.wait_for_system()
        gc.set_camera_source('/path/to/images')
        r = gc.collect('thumbs_up')              # Collect.Response
        res = gc.train(epochs=10, on_feedback=print)
        p = gc.wait_for_prediction(lambda p: p.model_id == res.result.model_id)
        gc.collect('thumbs_up', count=30, interval=0.2)   # a burst of 30 new frames
        gc.undo(2)                                 # the 2 newest samples to the trash
        res = gc.train(epochs=5)                   # 5 more epochs from the current model
        ev = gc.evaluate()                         # per-class figures, confusion matrix
        gc.select_model(old_model_id)              # back to an earlier version

The client owns a node and spins it in a background thread; every blocking call has a timeout
and raises :class:`ClientError` on failure or timeout.
"""
from __future__ import annotations

import collections
import enum
import math
import threading
import time
import uuid
from dataclasses import dataclass
from collections.abc import Callable

import rclpy
from action_msgs.msg import GoalStatus, GoalStatusArray
from gesture_interfaces.action import Evaluate, Train
from gesture_interfaces.msg import DatasetState, GestureEvent, ModelList, Prediction
from gesture_interfaces.srv import (Collect, DeleteSamples, ExportModel, ImportModel, Record,
                                    RestoreSamples, SelectModel, UndoCollect)
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.action import ActionClient
from rclpy.action.client import ClientGoalHandle
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_action_status_default
from rclpy.task import Future
from sensor_msgs.msg import Image
from unique_identifier_msgs.msg import UUID

# Importing gesture_classifier.nodes applies config/fastdds.xml (gesture_classifier.middleware)
# before this process creates its first participant.
from .nodes.common import IMAGE_SUB_QOS, LATCHED_QOS, NO_FRAME_YET, PREDICTION_QOS

__all__ = ['ClientError', 'TrainStatus', 'TrainOutcome', 'EvaluateOutcome', 'GestureClient',
           'wait_future', 'set_parameters_request']


class ClientError(RuntimeError):
    """A call that failed: server not available, timeout, rejected goal or parameter."""


class TrainStatus(enum.Enum):
    SUCCEEDED = GoalStatus.STATUS_SUCCEEDED
    CANCELED = GoalStatus.STATUS_CANCELED
    ABORTED = GoalStatus.STATUS_ABORTED
    REJECTED = -1


@dataclass
class TrainOutcome:
    status: TrainStatus
    result: Train.Result | None
    feedback_count: int


@dataclass
class EvaluateOutcome:
    """An ``evaluate`` goal's end: status as for training; ``result`` None when rejected
    (another evaluation is running or batch_size is out of range)."""

    status: TrainStatus
    result: Evaluate.Result | None
    feedback_count: int


#: Goal states after which the action server holds the goal's result.
ENDED = (GoalStatus.STATUS_SUCCEEDED, GoalStatus.STATUS_CANCELED, GoalStatus.STATUS_ABORTED)
#: Seconds to look for a goal on the status topic after its goal response did not come, and
#: seconds a goal may have ended without its result arriving before it is asked for again.
STATUS_GRACE = 5.0
RESULT_GRACE = 5.0


def start_on_executor(node: Node, start: Callable[[], Future]) -> Future:
    """Run ``start`` (a call such as ``action_client.send_goal_async(goal)``,
    ``goal_handle.get_result_async()`` or ``cancel_goal_async()``) on the thread that spins
    ``node``'s executor, and return a future of the outcome of the future it returns.

    Why: in the rclpy of the Jazzy wheels (7.1.6; Humble's is alike) an ActionClient sends the
    request *before* it registers the request's future (ros2/rclpy#1123, fixed in Kilted and
    later backports). When another thread calls it while the executor spins, the executor can
    take the answer in between; the answer is then dropped ("Ignoring unexpected ...
    response") and the future never completes: the cause of the suite's rare "send train goal /
    evaluate result: no answer within" failures on Jazzy. Started from the executor's own
    (single) thread, the answer cannot be taken before the future is registered.

    Raises (through the returned future): whatever ``start`` raises.
    """
    outer = Future()

    def chain(inner: Future) -> None:
        if inner.cancelled():
            outer.cancel()
        elif inner.exception() is not None:
            outer.set_exception(inner.exception())
        else:
            outer.set_result(inner.result())

    def run() -> None:
        try:
            inner = start()
        except Exception as exc:  # handed to the waiter, never lost in the executor
            outer.set_exception(exc)
            return
        inner.add_done_callback(chain)

    executor = node.executor
    if executor is None:
        raise ClientError(f'node {node.get_name()} is not spinning in an executor')
    executor.create_task(run)
    return outer


def wait_future(future, timeout: float, what: str):
    """Result of an rclpy future that another thread's executor completes.

    Raises:
        ClientError: no answer within ``timeout`` seconds (the future is cancelled), or the
            future ended with an exception.
    """
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    if not done.wait(timeout):
        future.cancel()
        raise ClientError(f'{what}: no answer within {timeout:g} s')
    if future.exception() is not None:
        raise ClientError(f'{what}: {future.exception()}')
    return future.result()


class _Received:
    """The newest ``keep`` messages of a topic plus how many arrived in all, so a waiter can
    tell new messages from old ones even after the oldest were dropped."""

    def __init__(self, keep: int = 1000):
        self.items: collections.deque = collections.deque(maxlen=keep)
        self.total = 0

    def append(self, msg) -> None:
        self.items.append(msg)
        self.total += 1

    def since(self, total: int) -> list:
        """The messages that arrived after the first ``total`` (those still kept)."""
        new = min(self.total - total, len(self.items))
        return list(self.items)[len(self.items) - new:] if new > 0 else []


def set_parameters_request(**values) -> SetParameters.Request:
    """A ``rcl_interfaces/srv/SetParameters`` request for ``name=value`` pairs (bool, int,
    float; anything else is sent as a string)."""
    req = SetParameters.Request()
    for name, value in values.items():
        pv = ParameterValue()
        if isinstance(value, bool):
            pv.type, pv.bool_value = ParameterType.PARAMETER_BOOL, value
        elif isinstance(value, int):
            pv.type, pv.integer_value = ParameterType.PARAMETER_INTEGER, value
        elif isinstance(value, float):
            pv.type, pv.double_value = ParameterType.PARAMETER_DOUBLE, value
        else:
            pv.type, pv.string_value = ParameterType.PARAMETER_STRING, str(value)
        req.parameters.append(Parameter(name=name, value=pv))
    return req


class GestureClient:
    """Client of the camera, collector, trainer and classifier nodes.

    Args:
        namespace: namespace the nodes run in ('' for none).
        context: rclpy Context to use; None creates and initialises a private one (so several
            clients, or a client and nodes in one test process, do not interfere).
        args: ROS arguments for that private context.
    """

    def __init__(self, namespace: str = '', context: Context | None = None, args=None):
        self._own_context = context is None
        self.context = context or Context()
        if self._own_context:
            if args is None:  # SROS2 enclave of the client (config/sros2/policy.xml)
                args = ['--ros-args', '--enclave', '/gesture_classifier/gesture_cli']
            rclpy.init(args=args, context=self.context)
        ns = '/' + namespace.strip('/') if namespace.strip('/') else ''
        self.node = Node(f'gesture_client_{uuid.uuid4().hex[:8]}', namespace=ns or None,
                         context=self.context)
        self._collect = self.node.create_client(Collect, 'collect')
        self._camera_params = self.node.create_client(SetParameters, 'camera/set_parameters')
        self._train = ActionClient(self.node, Train, 'train')
        self._evaluate = ActionClient(self.node, Evaluate, 'evaluate')
        self._services = {name: self.node.create_client(srv, name) for name, srv in (
            ('record', Record), ('delete_samples', DeleteSamples),
            ('undo_collect', UndoCollect), ('restore_samples', RestoreSamples),
            ('select_model', SelectModel), ('import_model', ImportModel),
            ('export_model', ExportModel))}
        self._lock = threading.Condition()
        self._dataset: DatasetState | None = None
        self._models: ModelList | None = None
        self.node.create_subscription(DatasetState, 'dataset', self._on_state('_dataset'),
                                      LATCHED_QOS)
        self.node.create_subscription(ModelList, 'models', self._on_state('_models'),
                                      LATCHED_QOS)
        self._predictions = _Received()
        self._images: list[tuple[float, Image]] = []
        self._listeners: list[Callable[[Prediction], None]] = []
        self.node.create_subscription(Prediction, 'predictions', self._on_prediction,
                                      PREDICTION_QOS)
        self._gestures = _Received()
        self.node.create_subscription(GestureEvent, 'gestures', self._on_gesture,
                                      PREDICTION_QOS)
        self._image_sub = None
        self._goal_handle = None
        # the train and evaluate goals' states, by goal id (see _send_goal, wait_for_result)
        self._goal_status: dict[bytes, int] = {}
        for action in ('train', 'evaluate'):
            self.node.create_subscription(GoalStatusArray, f'{action}/_action/status',
                                          self._on_status, qos_profile_action_status_default)
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True, name='client-spin')
        self._thread.start()

    # -- lifecycle -------------------------------------------------------------------------
    def _spin(self):
        try:
            self._executor.spin()
        except Exception:  # executor shut down while spinning
            pass

    def close(self):
        self._executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        if self._own_context:
            rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=2.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def wait_for_system(self, timeout: float = 60.0) -> None:
        """Wait until the collect service, the train action and the camera's parameter
        service are available. Raises ClientError naming what is missing."""
        deadline = time.monotonic() + timeout
        for what, ready in (('collect service', self._collect.wait_for_service),
                            ('train action', self._train.wait_for_server),
                            ('camera parameters', self._camera_params.wait_for_service)):
            if not ready(timeout_sec=max(0.1, deadline - time.monotonic())):
                raise ClientError(f'{what} not available after {timeout:g} s')

    # -- predictions and images ------------------------------------------------------------
    def _on_prediction(self, msg: Prediction):
        with self._lock:
            self._predictions.append(msg)
            self._lock.notify_all()
        for listener in list(self._listeners):
            listener(msg)

    def _on_gesture(self, msg: GestureEvent):
        with self._lock:
            self._gestures.append(msg)
            self._lock.notify_all()

    def gestures(self) -> list[GestureEvent]:
        """The gesture events received so far (the newest 1000), oldest first."""
        with self._lock:
            return list(self._gestures.items)

    def wait_for_gesture(self, predicate: Callable[[GestureEvent], bool] = lambda g: True,
                         timeout: float = 30.0) -> GestureEvent:
        """First gesture event received from now on that satisfies ``predicate``."""
        return self._wait_for(self._gestures, predicate, timeout, 'gesture event')

    def add_prediction_listener(self, fn: Callable[[Prediction], None]) -> None:
        """Call ``fn(prediction)`` for every prediction received (in the spin thread)."""
        self._listeners.append(fn)

    def wait_for_prediction(self, predicate: Callable[[Prediction], bool] = lambda p: True,
                            timeout: float = 30.0) -> Prediction:
        """First prediction received from now on that satisfies ``predicate``."""
        return self._wait_for(self._predictions, predicate, timeout, 'prediction')

    def _wait_for(self, received: _Received, predicate, timeout: float, what: str):
        """First message received from now on that satisfies ``predicate``."""
        with self._lock:
            seen = received.total
            deadline = time.monotonic() + timeout
            while True:
                for m in received.since(seen):
                    if predicate(m):
                        return m
                seen = received.total
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ClientError(f'no matching {what} within {timeout:g} s')
                self._lock.wait(remaining)

    def watch_images(self) -> None:
        """Start keeping the camera's images (for wait_for_image)."""
        if self._image_sub is None:
            self._image_sub = self.node.create_subscription(Image, 'image_raw',
                                                            self._on_image, IMAGE_SUB_QOS)

    def _on_image(self, msg: Image):
        with self._lock:
            self._images.append((time.monotonic(), msg))
            del self._images[:-10]
            self._lock.notify_all()

    def wait_for_image(self, newer_than: float = 0.0, timeout: float = 10.0) -> Image:
        """First camera image whose header.stamp (seconds) is > ``newer_than``."""
        self.watch_images()
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for _, msg in reversed(self._images):
                    stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
                    if stamp > newer_than:
                        return msg
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ClientError(f'no new camera image within {timeout:g} s')
                self._lock.wait(remaining)

    def now(self) -> float:
        """This client's ROS clock in seconds (the clock header stamps are compared with)."""
        return self.node.get_clock().now().nanoseconds * 1e-9

    # -- parameters ------------------------------------------------------------------------
    def set_parameters(self, node: str, timeout: float = 10.0, **values) -> None:
        """Set parameters of ``node`` (a name relative to the client's namespace, e.g.
        'classifier'), e.g. ``set_parameters('classifier', gesture_threshold=0.8)``.

        Raises:
            ClientError: the node refused a value (its reason is included) or timeout.
        """
        client = self._camera_params if node == 'camera' else \
            self.node.create_client(SetParameters, f'{node}/set_parameters')
        try:
            self._set_parameters(client, node, timeout, values)
        finally:
            if client is not self._camera_params:
                self.node.destroy_client(client)

    def _set_parameters(self, client, node: str, timeout: float, values: dict) -> None:
        req = set_parameters_request(**values)
        if not client.wait_for_service(timeout_sec=timeout):
            raise ClientError(f'{node} parameter service not available')
        res = wait_future(client.call_async(req), timeout, f'set {node} parameters')
        for name, r in zip(values, res.results):
            if not r.successful:
                raise ClientError(f'{node} refused {name}: {r.reason}')

    # -- camera ----------------------------------------------------------------------------
    def set_camera_parameters(self, timeout: float = 10.0, **values) -> None:
        """Set parameters of the camera node, e.g. ``source='/dev/video1', loop=False``.

        Raises:
            ClientError: the camera refused a value (its reason is included) or timeout.
        """
        self.set_parameters('camera', timeout, **values)

    def set_camera_source(self, source: str, **more) -> float:
        """Switch the camera to ``source``; returns the client time of the switch (frames
        stamped later come from the new source)."""
        self.set_camera_parameters(source=source, **more)
        return self.now()

    # -- collect ---------------------------------------------------------------------------
    def collect(self, label: str, timeout: float = 10.0,
                wait_for_frame: float = 0.0, count: int = 0,
                interval: float = 0.0) -> Collect.Response:
        """Call ``collect``; returns the response (check ``success`` and ``message``).

        Args:
            wait_for_frame: seconds to keep asking while the collector answers that it has no
                camera frame yet (just after start-up, before its subscription has matched
                the camera); 0 asks once.
            count: 0 or 1 = the newest frame; more = a burst of that many new frames at
                least ``interval`` s apart (the answer comes when the burst has ended;
                ``timeout`` is extended by ``count * interval``).
        """
        if not self._collect.wait_for_service(timeout_sec=timeout):
            raise ClientError('collect service not available')
        deadline = time.monotonic() + wait_for_frame
        request = Collect.Request(label=label, count=count, interval=float(interval))
        if count > 1:  # a burst answers when it ends: give it its time (0.1 s per frame at least)
            gap = interval if math.isfinite(interval) and 0 < interval <= 60 else 0.0
            timeout += count * max(gap, 0.1)
        while True:
            res = wait_future(self._collect.call_async(request), timeout, 'collect')
            if res.success or not res.message.startswith(NO_FRAME_YET) or \
                    time.monotonic() > deadline:
                return res
            time.sleep(0.1)

    # -- train -----------------------------------------------------------------------------
    def send_train_goal(self, epochs: int, batch_size: int = 0, learning_rate: float = 0.0,
                        on_feedback: Callable[[Train.Feedback], None] | None = None,
                        timeout: float = 10.0, recipe: str = '',
                        start: int = Train.Goal.START_AUTO, from_model_id: str = '',
                        keep_last_epoch: bool = False):
        """Send a goal; returns the accepted goal handle, or None when it was rejected.
        ``recipe``: a preset name, '' = the trainer's; ``start``: Train.Goal.START_AUTO
        (continue from the current model when it fits), START_CONTINUE or START_FRESH;
        ``from_model_id``: the version to continue from ('' = current); ``keep_last_epoch``:
        save the last epoch instead of the best-validating one (see Train.action)."""
        if not self._train.wait_for_server(timeout_sec=timeout):
            raise ClientError('train action not available')
        goal = Train.Goal(epochs=epochs, batch_size=batch_size,
                          learning_rate=float(learning_rate), recipe=recipe, start=start,
                          from_model_id=from_model_id, keep_last_epoch=keep_last_epoch)
        feedback = (lambda fb: on_feedback(fb.feedback)) if on_feedback else None
        handle = self._send_goal(self._train, Train, goal, feedback, timeout, 'send train goal')
        if not handle.accepted:
            return None
        self._goal_handle = handle
        return handle

    def train(self, epochs: int, batch_size: int = 0, learning_rate: float = 0.0,
              on_feedback: Callable[[Train.Feedback], None] | None = None,
              timeout: float = 3600.0, recipe: str = '', **goal) -> TrainOutcome:
        """Train and wait for the result. A rejected goal gives status REJECTED (the trainer
        logs why: another goal running, or values out of range)."""
        count = [0]

        def fb(f):
            count[0] += 1
            if on_feedback:
                on_feedback(f)

        handle = self.send_train_goal(epochs, batch_size, learning_rate, fb, recipe=recipe,
                                      **goal)
        if handle is None:
            return TrainOutcome(TrainStatus.REJECTED, None, 0)
        res = self.wait_for_result(handle, timeout, 'train result')
        self._goal_handle = None
        return TrainOutcome(TrainStatus(res.status), res.result, count[0])

    def _on_status(self, msg: GoalStatusArray) -> None:
        with self._lock:
            for s in msg.status_list:
                self._goal_status[bytes(s.goal_info.goal_id.uuid)] = s.status
            while len(self._goal_status) > 1000:  # the oldest first (insertion order)
                del self._goal_status[next(iter(self._goal_status))]
            self._lock.notify_all()

    def _status(self, goal_id: UUID) -> int | None:
        with self._lock:
            return self._goal_status.get(bytes(goal_id.uuid))

    def _send_goal(self, action: ActionClient, action_type, goal, feedback, timeout: float,
                   what: str):
        """Send ``goal`` and return its goal handle (accepted or not).

        A goal response can be lost on its way back: the server may answer before its
        response writer has matched this client's new reader (on a loaded machine discovery
        takes longer than the middleware waits), and the goal then runs without the client
        knowing. When no answer comes within ``timeout`` but the action's status topic lists
        this goal, the handle is made from that (accepted); feedback was registered before
        sending, so it still arrives.

        Raises:
            ClientError: no answer and the goal is not on the server's status list either.
        """
        goal_id = UUID(uuid=list(uuid.uuid4().bytes))
        future = start_on_executor(self.node, lambda: action.send_goal_async(
            goal, feedback_callback=feedback, goal_uuid=goal_id))
        try:
            return wait_future(future, timeout, what)
        except ClientError:
            with self._lock:  # _on_status notifies
                self._lock.wait_for(lambda: bytes(goal_id.uuid) in self._goal_status,
                                    STATUS_GRACE)
            status = self._status(goal_id)
            if status is None:
                raise
            self.node.get_logger().warning(
                f'{what}: no answer within {timeout:g} s, but the server lists the goal '
                f'(status {status}): its answer was lost; following the goal')
            response = action_type.Impl.SendGoalService.Response(accepted=True)
            return ClientGoalHandle(action, goal_id, response)

    def wait_for_result(self, handle, timeout: float, what: str = 'result'):
        """The result (``GetResult.Response``: status, result) of an accepted goal
        ``handle``, waiting at most ``timeout`` s. When the action's status topic says the goal
        ended :data:`RESULT_GRACE` s ago and the answer to the result request has not come (it
        can be lost as a goal response can, see _send_goal), the result is asked for again:
        the server keeps it.

        Raises:
            ClientError: no result within ``timeout``, or the request failed.
        """
        done = threading.Event()
        futures: list[Future] = []

        def ask() -> None:
            f = self.result_async(handle)
            f.add_done_callback(lambda _: done.set())
            futures.append(f)

        ask()
        deadline = time.monotonic() + timeout
        ended_since = None
        while (finished := next((f for f in futures if f.done()), None)) is None:
            now = time.monotonic()
            if now >= deadline:
                for f in futures:
                    f.cancel()
                raise ClientError(f'{what}: no answer within {timeout:g} s')
            if self._status(handle.goal_id) in ENDED:
                ended_since = ended_since or now
                if now - ended_since >= RESULT_GRACE:
                    self.node.get_logger().warning(
                        f'{what}: the goal ended {RESULT_GRACE:g} s ago and no result '
                        'arrived; asking again')
                    ask()
                    ended_since = now
            done.wait(0.2)
        if finished.cancelled() or finished.exception() is not None:
            raise ClientError(f'{what}: {finished.exception() or "cancelled"}')
        if finished.result().status == GoalStatus.STATUS_UNKNOWN:
            raise ClientError(f'{what}: the server no longer knows the goal (its result '
                              'expired before it could be fetched)')
        return finished.result()

    def result_async(self, handle) -> Future:
        """Future of the result (``GetResult.Response``: status, result) of an accepted goal
        ``handle`` of this client; requested from the executor's thread (start_on_executor)."""
        return start_on_executor(self.node, handle.get_result_async)

    def cancel_async(self, handle) -> Future:
        """Future of the cancel response for goal ``handle`` (as result_async)."""
        return start_on_executor(self.node, handle.cancel_goal_async)

    def cancel_training(self, timeout: float = 10.0) -> bool:
        """Ask the running goal (sent by this client) to stop; True if the trainer accepted."""
        handle = self._goal_handle
        if handle is None:
            return False
        res = wait_future(self.cancel_async(handle), timeout, 'cancel')
        return len(res.goals_canceling) > 0

    def evaluate(self, model_id: str = '', batch_size: int = 0,
                 on_feedback: Callable[[Evaluate.Feedback], None] | None = None,
                 timeout: float = 3600.0) -> EvaluateOutcome:
        """Evaluate a model version ('' = the current one) on the current dataset and wait.
        The result's ``validation`` and ``training`` hold the figures (see Evaluation.msg)."""
        if not self._evaluate.wait_for_server(timeout_sec=min(timeout, 10.0)):
            raise ClientError('evaluate action not available')
        count = [0]

        def fb(msg):
            count[0] += 1
            if on_feedback:
                on_feedback(msg.feedback)

        goal = Evaluate.Goal(model_id=model_id, batch_size=batch_size)
        handle = self._send_goal(self._evaluate, Evaluate, goal, fb, min(timeout, 30.0),
                                 'send evaluate goal')
        if not handle.accepted:
            return EvaluateOutcome(TrainStatus.REJECTED, None, 0)
        res = self.wait_for_result(handle, timeout, 'evaluate result')
        return EvaluateOutcome(TrainStatus(res.status), res.result, count[0])

    # -- dataset and model state -----------------------------------------------------------
    def _on_state(self, attr: str):
        def store(msg):
            with self._lock:
                setattr(self, attr, msg)
                self._lock.notify_all()
        return store

    def _wait_state(self, attr: str, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                msg = getattr(self, attr)
                if msg is not None and predicate(msg):
                    return msg
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ClientError(f'no matching {what} within {timeout:g} s')
                self._lock.wait(remaining)

    def dataset_state(self, predicate: Callable[[DatasetState], bool] = lambda s: True,
                      timeout: float = 10.0) -> DatasetState:
        """The newest ``dataset`` message satisfying ``predicate`` (waits for it)."""
        return self._wait_state('_dataset', predicate, timeout, 'dataset state')

    def model_list(self, predicate: Callable[[ModelList], bool] = lambda s: True,
                   timeout: float = 10.0) -> ModelList:
        """The newest ``models`` message satisfying ``predicate`` (waits for it)."""
        return self._wait_state('_models', predicate, timeout, 'model list')

    # -- samples ---------------------------------------------------------------------------
    def _call(self, name: str, request, timeout: float):
        client = self._services[name]
        if not client.wait_for_service(timeout_sec=timeout):
            raise ClientError(f'{name} service not available')
        return wait_future(client.call_async(request), timeout, name)

    def record_start(self, label: str, max_count: int = 0, interval: float = 0.0,
                     max_duration: float = 0.0, timeout: float = 10.0) -> Record.Response:
        """Start saving new frames under ``label`` until :meth:`record_stop` (hold to record)."""
        return self._call('record', Record.Request(
            label=label, max_count=max_count, interval=float(interval),
            max_duration=float(max_duration)), timeout)

    def record_stop(self, timeout: float = 10.0) -> Record.Response:
        """Stop the recording; the response has ``saved`` and ``paths``."""
        return self._call('record', Record.Request(stop=True), timeout)

    def delete_samples(self, paths, timeout: float = 10.0) -> DeleteSamples.Response:
        """Move samples (paths as ``collect`` returned them) to the trash; all or nothing."""
        return self._call('delete_samples', DeleteSamples.Request(paths=list(paths)), timeout)

    def undo(self, count: int = 1, label: str = '',
             timeout: float = 10.0) -> UndoCollect.Response:
        """Move the ``count`` newest samples (of ``label``, or of all classes) to the trash."""
        return self._call('undo_collect', UndoCollect.Request(label=label, count=count),
                          timeout)

    def restore(self, paths=(), timeout: float = 10.0) -> RestoreSamples.Response:
        """Restore samples from the trash; no paths = the latest delete or undo."""
        return self._call('restore_samples', RestoreSamples.Request(paths=list(paths)),
                          timeout)

    # -- model versions --------------------------------------------------------------------
    def select_model(self, model_id: str, timeout: float = 30.0) -> SelectModel.Response:
        """Make a kept version current; the classifier switches to it."""
        return self._call('select_model', SelectModel.Request(model_id=model_id), timeout)

    def import_model(self, path: str, select: bool = False,
                     timeout: float = 60.0) -> ImportModel.Response:
        """Import a model file (inside the trainer's transfer_dir) as a new version."""
        return self._call('import_model', ImportModel.Request(path=path, select=select),
                          timeout)

    def export_model(self, path: str, model_id: str = '', overwrite: bool = False,
                     timeout: float = 60.0) -> ExportModel.Response:
        """Write a version ('' = current) to ``path`` inside the trainer's transfer_dir."""
        return self._call('export_model', ExportModel.Request(
            model_id=model_id, path=path, overwrite=overwrite), timeout)
