"""A Python API over the system's topics, service and action, for scripts, tests and the CLI.

One verb per job, after nav2_simple_commander::

    with GestureClient() as gc:
        gc.wait_for_system()
        gc.set_camera_source('/path/to/images')
        r = gc.collect('thumbs_up')              # Collect.Response
        res = gc.train(epochs=10, on_feedback=print)
        p = gc.wait_for_prediction(lambda p: p.model_id == res.result.model_id)

The client owns a node and spins it in a background thread; every blocking call has a timeout
and raises :class:`ClientError` on failure or timeout.
"""
from __future__ import annotations

import enum
import threading
import time
import uuid
from dataclasses import dataclass
from collections.abc import Callable

import rclpy
from action_msgs.msg import GoalStatus
from gesture_interfaces.action import Train
from gesture_interfaces.msg import Prediction
from gesture_interfaces.srv import Collect
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.action import ActionClient
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image

# Importing gesture_classifier.nodes applies config/fastdds.xml (gesture_classifier.middleware)
# before this process creates its first participant.
from .nodes.common import IMAGE_SUB_QOS, NO_FRAME_YET, PREDICTION_QOS

__all__ = ['ClientError', 'TrainStatus', 'TrainOutcome', 'GestureClient', 'wait_future',
           'set_parameters_request']


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
        self._lock = threading.Condition()
        self._predictions: list[Prediction] = []
        self._images: list[tuple[float, Image]] = []
        self._listeners: list[Callable[[Prediction], None]] = []
        self.node.create_subscription(Prediction, 'predictions', self._on_prediction,
                                      PREDICTION_QOS)
        self._image_sub = None
        self._goal_handle = None
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
            del self._predictions[:-1000]
            self._lock.notify_all()
        for listener in list(self._listeners):
            listener(msg)

    def add_prediction_listener(self, fn: Callable[[Prediction], None]) -> None:
        """Call ``fn(prediction)`` for every prediction received (in the spin thread)."""
        self._listeners.append(fn)

    def wait_for_prediction(self, predicate: Callable[[Prediction], bool] = lambda p: True,
                            timeout: float = 30.0) -> Prediction:
        """First prediction received from now on that satisfies ``predicate``."""
        with self._lock:
            start = len(self._predictions)
            seen = start
            deadline = time.monotonic() + timeout
            while True:
                for p in self._predictions[seen:]:
                    if predicate(p):
                        return p
                seen = len(self._predictions)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ClientError(f'no matching prediction within {timeout:g} s')
                self._lock.wait(remaining)
                if len(self._predictions) < seen:  # trimmed
                    seen = 0

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

    # -- camera ----------------------------------------------------------------------------
    def set_camera_parameters(self, timeout: float = 10.0, **values) -> None:
        """Set parameters of the camera node, e.g. ``source='/dev/video1', loop=False``.

        Raises:
            ClientError: the camera refused a value (its reason is included) or timeout.
        """
        req = set_parameters_request(**values)
        if not self._camera_params.wait_for_service(timeout_sec=timeout):
            raise ClientError('camera parameter service not available')
        res = wait_future(self._camera_params.call_async(req), timeout, 'set camera parameters')
        for name, r in zip(values, res.results):
            if not r.successful:
                raise ClientError(f'camera refused {name}: {r.reason}')

    def set_camera_source(self, source: str, **more) -> float:
        """Switch the camera to ``source``; returns the client time of the switch (frames
        stamped later come from the new source)."""
        self.set_camera_parameters(source=source, **more)
        return self.now()

    # -- collect ---------------------------------------------------------------------------
    def collect(self, label: str, timeout: float = 10.0,
                wait_for_frame: float = 0.0) -> Collect.Response:
        """Call ``collect``; returns the response (check ``success`` and ``message``).

        Args:
            wait_for_frame: seconds to keep asking while the collector answers that it has no
                camera frame yet (just after start-up, before its subscription has matched
                the camera); 0 asks once.
        """
        if not self._collect.wait_for_service(timeout_sec=timeout):
            raise ClientError('collect service not available')
        deadline = time.monotonic() + wait_for_frame
        while True:
            res = wait_future(self._collect.call_async(Collect.Request(label=label)), timeout,
                        'collect')
            if res.success or not res.message.startswith(NO_FRAME_YET) or \
                    time.monotonic() > deadline:
                return res
            time.sleep(0.1)

    # -- train -----------------------------------------------------------------------------
    def send_train_goal(self, epochs: int, batch_size: int = 0, learning_rate: float = 0.0,
                        on_feedback: Callable[[Train.Feedback], None] | None = None,
                        timeout: float = 10.0):
        """Send a goal; returns the accepted goal handle, or None when it was rejected."""
        if not self._train.wait_for_server(timeout_sec=timeout):
            raise ClientError('train action not available')
        goal = Train.Goal(epochs=epochs, batch_size=batch_size,
                          learning_rate=float(learning_rate))
        handle = wait_future(self._train.send_goal_async(
            goal, feedback_callback=(lambda fb: on_feedback(fb.feedback)) if on_feedback
            else None), timeout, 'send train goal')
        if not handle.accepted:
            return None
        self._goal_handle = handle
        return handle

    def train(self, epochs: int, batch_size: int = 0, learning_rate: float = 0.0,
              on_feedback: Callable[[Train.Feedback], None] | None = None,
              timeout: float = 3600.0) -> TrainOutcome:
        """Train and wait for the result. A rejected goal gives status REJECTED (the trainer
        logs why: another goal running, or values out of range)."""
        count = [0]

        def fb(f):
            count[0] += 1
            if on_feedback:
                on_feedback(f)

        handle = self.send_train_goal(epochs, batch_size, learning_rate, fb)
        if handle is None:
            return TrainOutcome(TrainStatus.REJECTED, None, 0)
        res = wait_future(handle.get_result_async(), timeout, 'train result')
        self._goal_handle = None
        return TrainOutcome(TrainStatus(res.status), res.result, count[0])

    def cancel_training(self, timeout: float = 10.0) -> bool:
        """Ask the running goal (sent by this client) to stop; True if the trainer accepted."""
        handle = self._goal_handle
        if handle is None:
            return False
        res = wait_future(handle.cancel_goal_async(), timeout, 'cancel')
        return len(res.goals_canceling) > 0
