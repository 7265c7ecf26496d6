"""Helpers shared by the nodes: parameter declaration with descriptors, the task parameters,
QoS profiles and a Humble-compatible ``main``."""
from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)

from ..tasks import PRESETS, Task

__all__ = ['declare', 'declare_task', 'IMAGE_SUB_QOS', 'IMAGE_PUB_QOS', 'MODEL_QOS',
           'LATCHED_QOS', 'PREDICTION_QOS', 'NO_FRAME_YET', 'run_node', 'Throttle', 'RosLogHandler']

#: Start of the collector's answer while it has not received any camera frame yet (the client
#: retries on it just after start-up).
NO_FRAME_YET = 'no camera frame received yet'

#: Subscribers of camera images: sensor data QoS (best effort, volatile) with depth 1 so a
#: slow consumer always gets the newest frame and never a backlog of stale ones.
IMAGE_SUB_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1,
    reliability=qos_profile_sensor_data.reliability,
    durability=qos_profile_sensor_data.durability)
#: The camera's publisher: reliable (matches reliable and best-effort subscribers, e.g.
#: ``ros2 topic echo`` and image viewers), depth 1 (no queue of old frames).
IMAGE_PUB_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                           reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.VOLATILE)
#: Predictions: small messages, reliable, a short queue for slow subscribers.
PREDICTION_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                            reliability=ReliabilityPolicy.RELIABLE)
#: The trainer's model announcements: latched (transient local) so a classifier that starts
#: later still receives the newest model.
MODEL_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                       reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: State topics (``dataset``, ``models``): latched like ``model``, so a subscriber that starts
#: later gets the current state at once.
LATCHED_QOS = MODEL_QOS


def declare(node: Node, name: str, default, description: str, *, read_only: bool = False,
            int_range: tuple[int, int] | None = None,
            float_range: tuple[float, float] | None = None, constraints: str = ''):
    """Declare a parameter with a descriptor (description, optional range) and return its
    value."""
    desc = ParameterDescriptor(description=description, read_only=read_only,
                               additional_constraints=constraints)
    if int_range is not None:
        desc.integer_range = [IntegerRange(from_value=int_range[0], to_value=int_range[1],
                                           step=1)]
    if float_range is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(float_range[0]),
                                                        to_value=float(float_range[1]),
                                                        step=0.0)]
    return node.declare_parameter(name, default, desc).value


def declare_task(node: Node, *, model: bool = False, dataset: bool = False) -> Task:
    """Declare ``task``, ``classes``, ``data_dir`` (and ``dataset_dir`` / ``model_path`` when
    asked) read-only, and build the Task.

    Raises:
        ValueError / InvalidNameError: bad task configuration (the node cannot start).
    """
    name = declare(node, 'task', 'thumbs', 'Task name; selects the dataset and model folders. '
                   f'Presets: {", ".join(sorted(PRESETS))}', read_only=True)
    classes = declare(node, 'classes', list(PRESETS.get(name, ('',))),
                      'Class names in model output order (>= 2). Defaults to the preset of '
                      '`task`.', read_only=True)
    data_dir = declare(node, 'data_dir', '~/.ros/gesture_classifier',
                       'Root folder: <data_dir>/<task>/dataset and <data_dir>/<task>/models',
                       read_only=True)
    dataset_dir = declare(node, 'dataset_dir', '', 'Dataset folder (<class>/*.jpg); empty: '
                          '<data_dir>/<task>/dataset', read_only=True) if dataset else ''
    model_path = declare(node, 'model_path', '', 'Model file; empty: '
                         '<data_dir>/<task>/models/resnet18.pt', read_only=True) if model else ''
    classes = [c for c in classes if c]
    return Task.create(name, classes, data_dir, dataset_dir or None, model_path or None)


class Throttle:
    """True at most once per ``period`` seconds (for log messages on hot paths)."""

    def __init__(self, period: float = 5.0):
        self.period, self._last = period, None

    def __call__(self, now: float) -> bool:
        if self._last is None or now - self._last >= self.period:
            self._last = now
            return True
        return False


class RosLogHandler(logging.Handler):
    """Forwards Python ``logging`` records of the core modules to the node's ROS logger, so
    they reach the console and /rosout with the node's name."""

    def __init__(self, node: Node):
        super().__init__()
        self._logger = node.get_logger()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            if record.levelno >= logging.ERROR:
                self._logger.error(msg)
            elif record.levelno >= logging.WARNING:
                self._logger.warning(msg)
            elif record.levelno >= logging.INFO:
                self._logger.info(msg)
            else:
                self._logger.debug(msg)
        except Exception:  # logging must never take the node down
            self.handleError(record)


def run_node(factory: Callable[[], Node], args=None, executor_factory=SingleThreadedExecutor):
    """Init rclpy, spin the node until Ctrl-C / shutdown, then clean up (Humble-compatible:
    no ``with rclpy.init()``)."""
    logging.basicConfig(level=logging.INFO, format='[%(levelname)s] [%(name)s]: %(message)s')
    # A process started in the background by a non-interactive shell inherits SIGINT as
    # ignored; restore it so that Ctrl-C, bringup and launch can always stop the node cleanly.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    try:
        try:
            node = factory()
        except ValueError as exc:  # invalid parameters: say so plainly, no traceback
            logging.getLogger('gesture_classifier').error(f'invalid configuration: {exc}')
            sys.exit(2)
        core_log = logging.getLogger('gesture_classifier')
        core_log.addHandler(RosLogHandler(node))
        core_log.propagate = False
        executor = executor_factory()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # A second Ctrl-C (e.g. from both the terminal and a supervisor) must not interrupt
        # the clean-up half way.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
