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

Under the blocking verbs are futures (``call_async``, ``send_goal_async``, ``result_async``,
``cancel_async``) that any thread may start and that complete on the executor's thread: the
web node awaits them from its HTTP loop, with the client's endpoints on its own node
(``GestureClient(node=..., uses=...)``). A lost goal answer or result answer is recovered here,
once, for every caller (see :meth:`GestureClient.send_goal_async` and
:meth:`GestureClient.result_async`).
"""
from __future__ import annotations

import array
import collections
import contextlib
import enum
import hashlib
import math
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import rclpy
from action_msgs.msg import GoalStatus, GoalStatusArray
from gesture_interfaces.action import Evaluate, Train
from gesture_interfaces.msg import DatasetState, GestureEvent, ModelList, Prediction, ReviewQueue
from gesture_interfaces.srv import (AddSample, Collect, DeleteSamples, ExportModel, GetModel,
                                    GetReviewFrame, GetSamples, ImportModel, LabelReview,
                                    PutModel,
                                    ListSamples, Record, RestoreSamples, SelectModel,
                                    UndoCollect)
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.action import ActionClient
from rclpy.action.client import ClientGoalHandle
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_action_status_default
from rclpy.task import Future
from sensor_msgs.msg import CompressedImage, Image
from unique_identifier_msgs.msg import UUID

from ..core.collector import NO_FRAME_YET
from ..core.datasync import Listing, SampleData
from ..core.transfer import CHUNK_BYTES
from .messages import listing_from_msg, sample_data_from_msg
from .middleware import use_large_message_profile
from .topics import IMAGE_SUB_QOS, LATCHED_QOS, PREDICTION_QOS

__all__ = ['ClientError', 'ClientTimeout', 'TrainStatus', 'TrainOutcome', 'EvaluateOutcome',
           'GestureClient', 'wait_future', 'set_parameters_request', 'SERVICES', 'ACTIONS',
           'TOPICS', 'CLI_USES', 'CLASS_NODES']


class ClientError(RuntimeError):
    """A call that failed: server not available, timeout, rejected goal or parameter."""


class ClientTimeout(ClientError):
    """No answer in time."""


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
#: Seconds between the client's checks of its goals under way (lost answers).
CHECK_PERIOD = 0.25
#: Seconds the client's thread waits before it spins again after a failure that followed the
#: previous one this closely (a spin that keeps failing is retried, not busy-looped).
SPIN_RETRY_S = 0.1

#: The services the client can call, by name (relative to its namespace).
SERVICES = {
    'collect': Collect, 'record': Record, 'delete_samples': DeleteSamples,
    'undo_collect': UndoCollect, 'restore_samples': RestoreSamples,
    'select_model': SelectModel, 'import_model': ImportModel, 'export_model': ExportModel,
    'camera/set_parameters': SetParameters, 'camera/get_parameters': GetParameters,
    'classifier/set_parameters': SetParameters, 'classifier/get_parameters': GetParameters,
    'get_review_frame': GetReviewFrame, 'label_review': LabelReview,
    # the web page's limits (trainer max_epochs, collector max_burst)
    'trainer/get_parameters': GetParameters, 'collector/get_parameters': GetParameters,
    # the web page's "Add class" (`classes` on each node)
    'trainer/set_parameters': SetParameters, 'collector/set_parameters': SetParameters,
    # node to node: a trainer or a classifier on another computer
    'list_samples': ListSamples, 'get_samples': GetSamples, 'get_model': GetModel,
    'add_sample': AddSample,
    # the web page's model upload
    'put_model': PutModel,
}
#: The actions it can call.
ACTIONS = {'train': Train, 'evaluate': Evaluate}
#: The topics it can keep: name -> (type, QoS).
TOPICS = {'dataset': (DatasetState, LATCHED_QOS), 'models': (ModelList, LATCHED_QOS),
          'predictions': (Prediction, PREDICTION_QOS),
          'gestures': (GestureEvent, PREDICTION_QOS),
          'review_queue': (ReviewQueue, LATCHED_QOS)}
#: The nodes a new class is added to (``classes`` set on each), in this order, before the web
#: node: the trainer first (it refuses while a goal runs, and then nothing changed), the
#: collector last (once it stores samples of a class, the others know it).
CLASS_NODES = ('trainer', 'classifier', 'collector')
#: What a stand-alone client (gesture_cli, demo, tests) creates; the SROS2 enclave
#: gesture_cli allows it (config/sros2/policy.xml). Other ``<node>/set_parameters`` clients are
#: made when used.
CLI_USES = ('collect', 'record', 'delete_samples', 'undo_collect', 'restore_samples',
            'select_model', 'import_model', 'export_model', 'camera/set_parameters', 'train',
            'evaluate', 'dataset', 'models', 'predictions', 'gestures', 'review_queue',
            'get_review_frame', 'label_review')


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
        ClientTimeout: no answer within ``timeout`` seconds (the future is cancelled).
        ClientError: the future ended with an exception.
    """
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    if not done.wait(timeout):
        future.cancel()
        raise ClientTimeout(f'{what}: no answer within {timeout:g} s')
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
    float, a list or tuple of str; anything else is sent as a string)."""
    req = SetParameters.Request()
    for name, value in values.items():
        pv = ParameterValue()
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            pv.type, pv.string_array_value = ParameterType.PARAMETER_STRING_ARRAY, list(value)
        elif isinstance(value, bool):
            pv.type, pv.bool_value = ParameterType.PARAMETER_BOOL, value
        elif isinstance(value, int):
            pv.type, pv.integer_value = ParameterType.PARAMETER_INTEGER, value
        elif isinstance(value, float):
            pv.type, pv.double_value = ParameterType.PARAMETER_DOUBLE, value
        else:
            pv.type, pv.string_value = ParameterType.PARAMETER_STRING, str(value)
        req.parameters.append(Parameter(name=name, value=pv))
    return req


@dataclass
class _GoalSent:
    """A goal request under way (send_goal_async)."""

    outer: Future
    inner: Future
    action: ActionClient
    action_type: type
    goal_id: UUID
    timeout: float
    deadline: float


@dataclass
class _ResultAsked:
    """A result under way (result_async)."""

    outer: Future
    handle: ClientGoalHandle
    ended_since: float | None = None
    asked: list = field(default_factory=list)


class GestureClient:
    """Client of the camera, collector, trainer and classifier nodes.

    Args:
        namespace: namespace the nodes run in ('' for none).
        context: rclpy Context to use; None creates and initialises a private one (so several
            clients, or a client and nodes in one test process, do not interfere).
        args: ROS arguments for that private context.
        node: a node to put the client's endpoints on instead of a node of its own; the
            caller spins it (an executor must be spinning it before calls are made). The web
            node does this.
        uses: the services, actions and topics (names of SERVICES, ACTIONS and TOPICS) to make
            endpoints for, so that a node's graph holds only what it uses (its SROS2 policy
            names exactly that); default CLI_USES.
        callback_group: for the endpoints on ``node``.
        node_name, node_options: the name of the client's own node (default
            ``gesture_client_<random>``) and further keyword arguments of its ``Node``; see
            :meth:`beside`.
    """

    def __init__(self, namespace: str = '', context: Context | None = None, args=None, *,
                 node: Node | None = None, uses: Iterable[str] = CLI_USES,
                 callback_group=None, node_name: str | None = None,
                 node_options: dict | None = None):
        uses = tuple(uses)
        unknown = set(uses) - set(SERVICES) - set(ACTIONS) - set(TOPICS)
        if unknown:
            raise ValueError(f'unknown interfaces {sorted(unknown)}')
        self._own_node = node is None
        self._own_context = self._own_node and context is None
        self.context = node.context if node is not None else context or Context()
        if self._own_context:
            # camera-sized messages (config/fastdds.xml), before this context's participant
            use_large_message_profile()
            if args is None:  # SROS2 enclave of the client (config/sros2/policy.xml)
                args = ['--ros-args', '--enclave', '/gesture_classifier/gesture_cli']
            rclpy.init(args=args, context=self.context)
        if node is None:
            ns = '/' + namespace.strip('/') if namespace.strip('/') else ''
            node = Node(node_name or f'gesture_client_{uuid.uuid4().hex[:8]}',
                        namespace=ns or None, context=self.context, **(node_options or {}))
        self.node = node
        group = {'callback_group': callback_group}
        self._clients = {name: node.create_client(SERVICES[name], name, **group)
                         for name in uses if name in SERVICES}
        self._actions = {name: ActionClient(node, ACTIONS[name], name, **group)
                         for name in uses if name in ACTIONS}
        self._train = self._actions.get('train')
        self._evaluate = self._actions.get('evaluate')
        self._lock = threading.Condition()
        self._dataset: DatasetState | None = None
        self._models: ModelList | None = None
        self._review: ReviewQueue | None = None
        self._predictions = _Received()
        self._gestures = _Received()
        self._images: list[tuple[float, Image]] = []
        self._listeners: list[Callable[[Prediction], None]] = []
        self._topics = {name for name in uses if name in TOPICS}
        handlers = {'dataset': self._on_state('_dataset'), 'models': self._on_state('_models'),
                    'review_queue': self._on_state('_review'),
                    'predictions': self._on_prediction, 'gestures': self._on_gesture}
        for name in uses:
            if name in TOPICS:
                node.create_subscription(*TOPICS[name][:1], name, handlers[name],
                                         TOPICS[name][1], **group)
        self._image_sub = None
        self._goal_handle = None
        # the goals' states, by goal id, from the actions' status topics (lost answers)
        self._goal_status: dict[bytes, int] = {}
        self._sent: list[_GoalSent] = []
        self._asked: list[_ResultAsked] = []
        self._settle_lock = threading.Lock()
        for action in self._actions:
            node.create_subscription(GoalStatusArray, f'{action}/_action/status',
                                     self._on_status, qos_profile_action_status_default,
                                     **group)
        if self._actions:
            node.create_timer(CHECK_PERIOD, self._check_under_way, **group)
        self._executor = self._thread = None
        self._closing = False
        if self._own_node:
            self._executor = SingleThreadedExecutor(context=self.context)
            self._executor.add_node(node)
            self._thread = threading.Thread(target=self._spin, daemon=True, name='client-spin')
            self._thread.start()

    @classmethod
    def beside(cls, node: Node, uses: Iterable[str]) -> GestureClient:
        """A client for ``node`` whose answers never wait for ``node``'s executor: a node
        of its own, ``<node's name>_client`` in ``node``'s namespace and context (so in its
        SROS2 enclave; config/sros2/policy.xml names it), spun by the client's own thread.

        For a node spun by one thread whose callbacks make blocking calls (the classifier's
        ``label_review`` waits for the collector's ``add_sample``): with the endpoints on the
        node itself, the answer could only be taken by the thread that is waiting for it.
        The client node ignores the process's remaps (a launch file's ``__node:=`` would
        give it ``node``'s name) and has no parameter services (it has no parameters).
        nav2's ``<node>_rclcpp_node`` helpers are the same pattern.
        """
        return cls(node.get_namespace(), context=node.context, uses=uses,
                   node_name=f'{node.get_name()}_client',
                   node_options={'use_global_arguments': False,
                                 'start_parameter_services': False})

    # -- lifecycle -------------------------------------------------------------------------
    def _spin(self):
        """The client's thread: spin until close(). rclpy's ``spin()`` re-raises what a
        callback raised (a prediction listener, a done callback): that is logged with its
        traceback (at most once a second) and the spinning goes on, so that one bad callback
        never leaves the client deaf to every later answer. Should ``spin()`` itself keep
        failing, it is retried at most 10 times a second, not in a busy loop."""
        last_failure = -math.inf
        while True:
            try:
                self._executor.spin()
                return
            except Exception:
                if not self.context.ok() or self._closing:
                    return  # shut down while spinning
                self.node.get_logger().error(
                    f'a callback of the client raised; going on:\n{traceback.format_exc()}',
                    throttle_duration_sec=1.0)
                if time.monotonic() - last_failure < SPIN_RETRY_S:
                    time.sleep(SPIN_RETRY_S)
                last_failure = time.monotonic()

    def close(self):
        """Stop the client's own node and context (nothing for a client on another node)."""
        if not self._own_node:
            return
        self._closing = True
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
        for what, ready in (('collect service', self._client('collect').wait_for_service),
                            ('train action', self._action('train').wait_for_server),
                            ('camera parameters',
                             self._client('camera/set_parameters').wait_for_service)):
            if not ready(timeout_sec=max(0.1, deadline - time.monotonic())):
                raise ClientError(f'{what} not available after {timeout:g} s')

    # -- futures: calls any thread may start, completed on the executor's thread -----------
    def _client(self, name: str):
        try:
            return self._clients[name]
        except KeyError:
            raise ClientError(f'this client does not use the {name} service') from None

    def _action(self, name: str) -> ActionClient:
        try:
            return self._actions[name]
        except KeyError:
            raise ClientError(f'this client does not use the {name} action') from None

    def ready(self, name: str) -> bool:
        """Whether the service or action server ``name`` is available now."""
        if name in self._actions:
            return self._actions[name].server_is_ready()
        return self._client(name).service_is_ready()

    def wait_for(self, name: str, timeout: float = 10.0) -> bool:
        """Wait until the service or action server ``name`` is available; False after
        ``timeout`` s."""
        if name in self._actions:
            return self._actions[name].wait_for_server(timeout_sec=timeout)
        return self._client(name).wait_for_service(timeout_sec=timeout)

    def call_async(self, name: str, request) -> Future:
        """Future of the answer of service ``name`` (one of ``uses``)."""
        return self._client(name).call_async(request)

    def send_goal_async(self, action: str, goal,
                        on_feedback: Callable | None = None, timeout: float = 10.0) -> Future:
        """Future of the goal handle (accepted or not) of ``goal`` sent to ``action``;
        ``on_feedback(feedback)`` gets the action's Feedback messages (in the executor's
        thread).

        A goal response can be lost on its way back: the server may answer before its
        response writer has matched this client's new reader (on a loaded machine discovery
        takes longer than the middleware waits), and the goal then runs without the client
        knowing. When no answer comes within ``timeout`` but the action's status topic lists
        this goal (within :data:`STATUS_GRACE` s more), the handle is made from that
        (accepted); feedback was registered before sending, so it still arrives. Otherwise the
        future ends with :class:`ClientTimeout`.
        """
        client = self._action(action)
        goal_id = UUID(uuid=list(uuid.uuid4().bytes))
        feedback = (lambda fb: on_feedback(fb.feedback)) if on_feedback else None
        inner = start_on_executor(self.node, lambda: client.send_goal_async(
            goal, feedback_callback=feedback, goal_uuid=goal_id))
        sent = _GoalSent(Future(), inner, client, ACTIONS[action], goal_id, timeout,
                         time.monotonic() + timeout)
        inner.add_done_callback(lambda f: self._settle_from(sent.outer, f))
        with self._lock:
            self._sent.append(sent)
        return sent.outer

    def result_async(self, handle) -> Future:
        """Future of the result (``GetResult.Response``: status, result) of an accepted goal
        ``handle`` of this client, requested from the executor's thread (start_on_executor).

        When the action's status topic says the goal ended :data:`RESULT_GRACE` s ago and the
        answer to the result request has not come (it can be lost as a goal response can, see
        send_goal_async), the result is asked for again: the server keeps it. The future ends
        with ClientError when the server no longer knows the goal (its result expired).
        """
        asked = _ResultAsked(Future(), handle)
        self._ask_result(asked)
        with self._lock:
            self._asked.append(asked)
        return asked.outer

    def cancel_async(self, handle) -> Future:
        """Future of the cancel response for goal ``handle`` (as result_async)."""
        return start_on_executor(self.node, handle.cancel_goal_async)

    def _ask_result(self, asked: _ResultAsked) -> None:
        f = start_on_executor(self.node, asked.handle.get_result_async)
        asked.asked.append(f)
        f.add_done_callback(lambda f: self._on_result_answer(asked.outer, f))

    def _on_result_answer(self, outer: Future, answer: Future) -> None:
        if answer.cancelled():
            return
        if answer.exception() is None and answer.result().status == GoalStatus.STATUS_UNKNOWN:
            self._settle(outer, exception=ClientError(
                'the server no longer knows the goal (its result expired before it could be '
                'fetched)'))
        else:
            self._settle_from(outer, answer)

    def _settle(self, outer: Future, result=None, exception: Exception | None = None) -> bool:
        """Complete ``outer`` unless it is done or cancelled already (the first answer wins)."""
        with self._settle_lock:
            if outer.done() or outer.cancelled():
                return False
            if exception is not None:
                outer.set_exception(exception)
            else:
                outer.set_result(result)
            return True

    def _settle_from(self, outer: Future, inner: Future) -> None:
        if inner.cancelled():
            return
        if inner.exception() is not None:
            self._settle(outer, exception=inner.exception())
        else:
            self._settle(outer, inner.result())

    def _check_under_way(self) -> None:
        """Timer: recover lost goal answers and lost results (send_goal_async, result_async)."""
        now = time.monotonic()
        with self._lock:
            self._sent = [s for s in self._sent if not (s.outer.done() or s.outer.cancelled())]
            self._asked = [a for a in self._asked
                           if not (a.outer.done() or a.outer.cancelled())]
            sent, asked = list(self._sent), list(self._asked)
        for s in sent:
            if now < s.deadline:
                continue
            status = self._status(s.goal_id)
            if status is not None:
                response = s.action_type.Impl.SendGoalService.Response(accepted=True)
                if self._settle(s.outer, ClientGoalHandle(s.action, s.goal_id, response)):
                    s.inner.cancel()
                    self.node.get_logger().warning(
                        f'no answer to a goal within {s.timeout:g} s, but the server lists '
                        f'the goal (status {status}): its answer was lost; following the goal')
            elif now >= s.deadline + STATUS_GRACE:
                s.inner.cancel()
                self._settle(s.outer, exception=ClientTimeout(
                    f'no answer within {s.timeout:g} s'))
        for a in asked:
            if self._status(a.handle.goal_id) not in ENDED:
                continue
            a.ended_since = a.ended_since or now
            if now - a.ended_since >= RESULT_GRACE:
                self.node.get_logger().warning(
                    f'the goal ended {RESULT_GRACE:g} s ago and no result arrived; asking again')
                self._ask_result(a)
                a.ended_since = now

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
        name = f'{node}/set_parameters'
        client = self._clients.get(name) or self.node.create_client(SetParameters, name)
        try:
            self._set_parameters(client, node, timeout, values)
        finally:
            if client is not self._clients.get(name):
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
                the camera), or while a single-frame answer is lost and the dataset state
                shows nothing saved (a just-started client's first answers can be: see
                :meth:`_lost_collect`; asking again cannot save a frame twice); 0 asks once.
            count: 0 or 1 = the newest frame; more = a burst of that many new frames at
                least ``interval`` s apart (the answer comes when the burst has ended;
                ``timeout`` is extended by ``count * interval``).
        """
        if not self._client('collect').wait_for_service(timeout_sec=timeout):
            raise ClientError('collect service not available')
        deadline = time.monotonic() + wait_for_frame
        request = Collect.Request(label=label, count=count, interval=float(interval))
        if count > 1:  # a burst answers when it ends: give it its time (0.1 s per frame at least)
            gap = interval if math.isfinite(interval) and 0 < interval <= 60 else 0.0
            timeout += count * max(gap, 0.1)
        if wait_for_frame > 0 and count <= 1 and 'dataset' in self._topics and \
                self._dataset is None:
            with contextlib.suppress(ClientError):  # to tell a lost answer from a saved frame
                self.dataset_state(timeout=min(wait_for_frame, STATUS_GRACE))
        while True:
            before = self._dataset
            try:
                res = wait_future(self.call_async('collect', request), timeout, 'collect')
            except ClientTimeout:
                res = self._lost_collect(label, count, before)
                if res is None:
                    if count <= 1 and before is not None and time.monotonic() < deadline:
                        self.node.get_logger().warning(
                            'collect: the answer was lost and the dataset state shows nothing '
                            'saved; asking again')
                        continue
                    raise
            if res.success or not res.message.startswith(NO_FRAME_YET) or \
                    time.monotonic() > deadline:
                return res
            time.sleep(0.1)

    def _lost_collect(self, label: str, count: int,
                      before: DatasetState | None) -> Collect.Response | None:
        """The answer to a single-frame collect that did not come, made from the collector's
        ``dataset`` state, or None.

        A service answer can be lost as a goal answer can (see :meth:`send_goal_async`): the
        collector saved the frame, but its answer was sent before its response writer had
        matched this client's new reader. When the dataset state (this client must use
        ``dataset``) shows a new revision whose newest ``label`` sample changed within
        :data:`STATUS_GRACE` s, that sample is reported as saved. (Another client collecting
        the same label at that moment would be reported instead: the path is then another
        new sample of that label.) Bursts are not recovered."""
        if count > 1 or before is None or label not in before.class_names:
            return None
        i = list(before.class_names).index(label)

        def saved(s: DatasetState) -> bool:
            return (s.revision > before.revision and list(s.class_names) == list(
                before.class_names) and s.newest_paths[i] not in ('', before.newest_paths[i]))
        try:
            state = self.dataset_state(saved, timeout=STATUS_GRACE)
        except ClientError:
            return None
        path = state.newest_paths[i]
        self.node.get_logger().warning(f'collect: the answer was lost; the dataset state '
                                       f'shows {path} saved')
        return Collect.Response(
            success=True, path=path, paths=[path], saved=1, count=state.counts[i],
            message=f'saved {label} (answer lost; from the dataset state)')

    # -- train and evaluate ----------------------------------------------------------------
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
        goal = Train.Goal(epochs=epochs, batch_size=batch_size,
                          learning_rate=float(learning_rate), recipe=recipe, start=start,
                          from_model_id=from_model_id, keep_last_epoch=keep_last_epoch)
        handle = self._send_goal('train', goal, on_feedback, timeout, 'send train goal')
        if not handle.accepted:
            return None
        self._goal_handle = handle
        return handle

    def _send_goal(self, action: str, goal, on_feedback, timeout: float, what: str):
        """The goal handle (accepted or not) of ``goal``, waiting for the server first."""
        if not self._action(action).wait_for_server(timeout_sec=timeout):
            raise ClientError(f'{action} action not available')
        future = self.send_goal_async(action, goal, on_feedback, timeout)
        # the future ends by itself within timeout + STATUS_GRACE (and a check period)
        return wait_future(future, timeout + STATUS_GRACE + 10 * CHECK_PERIOD, what)

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

    def wait_for_result(self, handle, timeout: float, what: str = 'result'):
        """The result (``GetResult.Response``: status, result) of an accepted goal
        ``handle``, waiting at most ``timeout`` s (a lost answer is asked again, see
        result_async).

        Raises:
            ClientError: no result within ``timeout``, the request failed or the server no
                longer knows the goal.
        """
        return wait_future(self.result_async(handle), timeout, what)

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
        count = [0]

        def fb(msg):
            count[0] += 1
            if on_feedback:
                on_feedback(msg)

        goal = Evaluate.Goal(model_id=model_id, batch_size=batch_size)
        handle = self._send_goal('evaluate', goal, fb, min(timeout, 30.0), 'send evaluate goal')
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

    def review_queue(self, predicate: Callable[[ReviewQueue], bool] = lambda q: True,
                     timeout: float = 10.0) -> ReviewQueue:
        """The newest ``review_queue`` message (the frames the classifier was least sure
        about) satisfying ``predicate`` (waits for it)."""
        return self._wait_state('_review', predicate, timeout, 'review queue')

    def get_review_frame(self, frame_id: int, timeout: float = 10.0) -> CompressedImage:
        """The JPEG of queued frame ``frame_id`` (it stays queued).

        Raises:
            ClientError: not available, no answer, or not queued (the message says why).
        """
        res = self._call('get_review_frame', GetReviewFrame.Request(id=int(frame_id)), timeout)
        if not res.success:
            raise ClientError(res.message)
        return res.image

    def label_review(self, frame_id: int, label: str = '', discard: bool = False,
                     timeout: float = 20.0) -> LabelReview.Response:
        """Store queued frame ``frame_id`` as a sample of ``label`` (through the collector's
        ``add_sample``), or discard it; ``success`` false (and the frame still queued) says
        why not."""
        return self._call('label_review', LabelReview.Request(
            id=int(frame_id), label=label, discard=discard), timeout)

    def add_sample(self, label: str, image: CompressedImage,
                   timeout: float = 10.0) -> AddSample.Response:
        """Store ``image`` (JPEG or PNG) as a sample of ``label`` with the checks of
        ``collect`` (the collector's ``add_sample``).

        Raises:
            ClientError: the collector's service is not available or did not answer.
        """
        return self._call('add_sample', AddSample.Request(label=label, image=image), timeout,
                          wait=min(5.0, timeout),
                          missing=_COLLECTOR_MISSING % 'add_sample')

    # -- samples ---------------------------------------------------------------------------
    def _call(self, name: str, request, timeout: float, *, wait: float | None = None,
              missing: str = ''):
        """The answer of service ``name``, waiting ``wait`` s (default ``timeout``) for it to
        be available and ``timeout`` s for the answer.

        Raises:
            ClientError: not available (``missing`` says so, if given), or no answer.
        """
        client = self._client(name)
        if not client.wait_for_service(timeout_sec=timeout if wait is None else wait):
            raise ClientError(missing or f'{name} service not available')
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

    def put_model(self, data: bytes, select: bool = False,
                  timeout: float = 60.0) -> PutModel.Response:
        """Upload a model file's bytes to the trainer (``put_model``, chunks of
        core.transfer.CHUNK_BYTES, 4 MiB) as a new version, checked there as ``import_model``
        checks a file; ``select``: make it current. The answer of the last chunk (its ``model``
        is the imported version) or of the first one refused.

        Raises:
            ClientError: the trainer's service is not available or did not answer.
        """
        upload_id, sha256 = uuid.uuid4().hex, hashlib.sha256(data).hexdigest()
        view, offset = memoryview(data), 0
        while True:
            chunk = view[offset:offset + CHUNK_BYTES]
            res = self._call('put_model', PutModel.Request(
                upload_id=upload_id, size=len(data), sha256=sha256, offset=offset,
                data=array.array('B', chunk), select=select), timeout)
            offset += len(chunk)
            if not res.success or res.model.model_id or offset >= len(data):
                return res

    def export_model(self, path: str, model_id: str = '', overwrite: bool = False,
                     timeout: float = 60.0) -> ExportModel.Response:
        """Write a version ('' = current) to ``path`` inside the trainer's transfer_dir."""
        return self._call('export_model', ExportModel.Request(
            model_id=model_id, path=path, overwrite=overwrite), timeout)

    # -- node to node: a trainer or a classifier on another computer -------------------------
    def list_samples(self, offset: int, count: int, timeout: float = 30.0,
                     ) -> tuple[Listing, int, str]:
        """A page of the collector's dataset listing (``list_samples``): (Listing of the page,
        total entries, the listing's SHA-256).

        Raises:
            ClientError: not available, no answer, refused, or a malformed answer.
        """
        res = self._call('list_samples', ListSamples.Request(offset=offset, max_count=count),
                         timeout, wait=min(10.0, timeout), missing=_COLLECTOR_MISSING %
                         'list_samples')
        if not res.success:
            raise ClientError(f'the collector refused list_samples: {res.message}')
        try:
            return listing_from_msg(res)
        except ValueError as exc:
            raise ClientError(str(exc)) from None

    def get_samples(self, wanted, timeout: float = 30.0) -> list[SampleData]:
        """The bytes of the samples ``wanted`` (``(label, name)`` pairs) from the collector
        (``get_samples``); a sample it does not send has its ``error`` set.

        Raises:
            ClientError: not available, no answer, or refused.
        """
        res = self._call('get_samples', GetSamples.Request(
            labels=[label for label, _ in wanted], names=[name for _, name in wanted]),
            timeout, wait=min(10.0, timeout), missing=_COLLECTOR_MISSING % 'get_samples')
        if not res.success:
            raise ClientError(f'the collector refused get_samples: {res.message}')
        return sample_data_from_msg(res)

    def get_model_chunk(self, model_id: str, offset: int, length: int,
                        timeout: float = 30.0) -> tuple[int, bytes]:
        """(file size, bytes) of a range of the trainer's announced model file
        (``get_model``).

        Raises:
            ClientError: not available, no answer, or refused (the message says why).
        """
        res = self._call('get_model', GetModel.Request(model_id=model_id, offset=offset,
                                                       length=length), timeout, wait=10.0,
                         missing='the get_model service is not available')
        if not res.success:
            raise ClientError(f'the trainer refused: {res.message}')
        return res.size, bytes(res.data)


_COLLECTOR_MISSING = ("the collector's %s service is not available (is the collector running "
                      'with the same ROS_DOMAIN_ID and namespace, and can the computers '
                      'discover each other?)')
