"""The QoS of the system's topics and the camera-image subscription (image_transport's
``raw`` and ``compressed``), shared by the nodes, the client and the benchmarks."""
from __future__ import annotations

from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from sensor_msgs.msg import CompressedImage, Image

from .params import declare

__all__ = ['IMAGE_SUB_QOS', 'IMAGE_PUB_QOS', 'PREDICTION_QOS', 'MODEL_QOS', 'LATCHED_QOS',
           'IMAGE_TRANSPORTS', 'subscribe_images', 'WhenReady']

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

#: image_transport transports a node can subscribe with -> (message type, topic suffix).
IMAGE_TRANSPORTS = {'raw': (Image, ''), 'compressed': (CompressedImage, '/compressed')}


class WhenReady(CallbackGroup):
    """A callback group whose entities the executor waits on, takes and calls back only while
    ``ready()`` is true: back-pressure for a subscription whose work another thread does.

    The classifier's frames: while a frame is being classified, newer ones stay in the
    middleware's depth-1 queue (IMAGE_SUB_QOS), replacing each other, and are neither taken
    nor converted to Python; the frame taken next is the newest, as when the inference ran in
    the callback, while the executor's thread stays free for parameters and services. Whoever
    makes ``ready()`` true must then wake the executor (trigger a guard condition of the
    node), or the entity waits for the executor's next wake-up. Uses the CallbackGroup
    interface rclpy's executors call (``can_execute``, ``beginning_execution``,
    ``ending_execution``); tested with the Kilted and Jazzy wheels (test/unit/test_topics.py),
    not run on Humble.
    """

    def __init__(self, ready):
        super().__init__()
        self._ready = ready

    def can_execute(self, entity) -> bool:
        return self._ready()

    def beginning_execution(self, entity) -> bool:
        return self._ready()

    def ending_execution(self, entity) -> None:
        pass


def subscribe_images(node: Node, callback, base: str = 'image_raw',
                     callback_group=None) -> str:
    """Declare ``image_transport`` (read-only, named and behaving like image_transport's
    parameter) and subscribe ``callback`` to the camera images with IMAGE_SUB_QOS: 'raw'
    (sensor_msgs/Image on ``base``) or 'compressed' (sensor_msgs/CompressedImage, JPEG or PNG,
    on ``base/compressed``). Returns the resolved topic name.

    Raises:
        ValueError: another transport (the node cannot start).
    """
    transport = declare(node, 'image_transport', 'raw', "How camera images arrive, as "
                        "image_transport's parameter: 'raw' (sensor_msgs/Image on image_raw) "
                        "or 'compressed' (sensor_msgs/CompressedImage, JPEG or PNG, on "
                        'image_raw/compressed)', read_only=True, constraints='raw or compressed')
    if transport not in IMAGE_TRANSPORTS:
        raise ValueError(f'image_transport must be one of {", ".join(IMAGE_TRANSPORTS)}, got '
                         f'{transport!r}')
    msg_type, suffix = IMAGE_TRANSPORTS[transport]
    sub = node.create_subscription(msg_type, base + suffix, callback, IMAGE_SUB_QOS,
                                   callback_group=callback_group)
    return sub.topic_name
