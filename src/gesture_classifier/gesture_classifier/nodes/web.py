"""web node: the interactive tool in a browser (live video, collect, train, live output), a
plain client of the other nodes' ROS interfaces. It never reads or writes the dataset or the
model files itself.

The page's state and actions are gesture_classifier.web.backend (through the same
GestureClient the CLI uses, so a lost goal or result answer is recovered as it is there); the
HTTP side (gesture_classifier.web.app and .server: aiohttp, MJPEG, WebSocket, access control)
runs in its own thread with its own asyncio loop; the ROS executor spins in the main thread
and no ROS callback ever blocks.

Uses (names relative, so a namespace or remap moves them):
    subscribes ``image_raw`` only while a page shows the video (sensor data QoS, depth 1: only
        a reference to the newest frame is kept, JPEG-encoded for the viewers), ``predictions``,
        ``gestures`` (the stable gesture), ``model``, ``dataset``, ``models`` and
        ``review_queue`` (latched),
        ``/parameter_events`` (the camera's ``source``, the classifier's ``gesture_threshold``
        and ``gesture_smoothing``) and ``/rosout`` (warnings and errors of the four nodes,
        shown as notices);
    calls ``collect``, ``record``, ``delete_samples``, ``undo_collect``, ``restore_samples``,
        ``select_model``, ``camera/set_parameters``, ``camera/get_parameters``,
        ``classifier/set_parameters``, ``classifier/get_parameters`` (the page's gesture
        sliders, validated by the classifier), ``trainer/get_parameters`` and
        ``collector/get_parameters`` (the page's limits), ``get_review_frame`` and
        ``label_review`` (the review queue) and the ``train`` (goals sent by the page can be
        cancelled from it) and ``evaluate`` actions.

The one file access: to show thumbnails it reads (never writes) sample images whose paths
the collector reported (``collect`` / ``record`` answers, the ``dataset`` topic), only
regular files inside the dataset folder that the ``dataset`` topic names.

Parameters: see PARAMETERS below, docs/parameters.md and docs/security.md.
"""
from __future__ import annotations

import time

from gesture_interfaces.msg import (DatasetState, GestureEvent, ModelInfo, ModelList, Prediction,
                                    ReviewQueue)
from rcl_interfaces.msg import Log, ParameterEvent
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from ..ros.client import GestureClient
from ..ros.params import Param, declare_all, declare_task
from ..ros.runtime import run_node
from ..ros.topics import IMAGE_SUB_QOS, LATCHED_QOS, MODEL_QOS, PREDICTION_QOS
from ..web.app import WebConfig
from ..web.backend import WEB_USES, PageBackend, PageSettings
from ..web.server import WebServer

#: Seconds after the last video viewer left before the image subscription is dropped.
UNWATCHED_S = 5.0

#: The node's parameters (all read-only), besides the task's.
PARAMETERS = (
    Param('host', '127.0.0.1', 'Address to listen on (127.0.0.1: this machine only; 0.0.0.0: '
          'every interface, a token is then required)'),
    Param('port', 8080, 'TCP port (0: any free port, see the log)', (0, 65535)),
    Param('token', '', 'Access token; empty: none on localhost, a random one printed in the '
          'log on any other address'),
    Param('max_fps', 30.0, 'Most video frames per second to one viewer', (0.1, 120.0)),
    Param('max_width', 640, 'Video frames are scaled down to at most this width before '
          'encoding (px)', (16, 4096)),
    Param('jpeg_quality', 80, 'JPEG quality of the video', (10, 95)),
    Param('state_rate', 30.0, 'Most state updates per second to one page', (1.0, 60.0)),
    Param('max_viewers', 16, 'Most simultaneous video streams', (1, 64)),
    Param('write_timeout', 5.0, 'Seconds a video viewer may stop reading before it is dropped '
          '(frees its slot)', (0.5, 600.0)),
    Param('header_timeout', 10.0, 'Seconds a client has to send a request\'s headers',
          (1.0, 600.0)),
    Param('body_timeout', 10.0, 'Seconds a client has to send a request\'s body',
          (1.0, 600.0)),
    Param('camera_sources', ['0', 'csi://0'], 'Camera sources the page may switch to (exactly '
          'these strings; nothing else is passed on)'),
    Param('stale_after', 2.0, 'Seconds without a camera frame before the page says the input '
          'is stale', (0.1, 3600.0)),
    Param('call_timeout', 10.0, 'Seconds to wait for a service answer or a goal acceptance',
          (0.5, 600.0)),
    Param('record_interval', 0.2, 'Seconds between the frames saved while "hold to record" '
          'is pressed', (0.0, 60.0)),
)


class WebNode(Node):
    def __init__(self, **kwargs):
        super().__init__('web', **kwargs)
        self.task = declare_task(self, on_classes=self._on_classes)
        p = declare_all(self, PARAMETERS, read_only=True)
        self.config = WebConfig(
            host=p['host'], port=p['port'], token=p['token'], max_fps=p['max_fps'],
            max_width=p['max_width'], jpeg_quality=p['jpeg_quality'],
            state_rate=p['state_rate'], max_viewers=p['max_viewers'],
            camera_sources=tuple(s for s in p['camera_sources'] if s),
            write_timeout=p['write_timeout'], header_timeout=p['header_timeout'],
            body_timeout=p['body_timeout'])
        self.client = GestureClient(node=self, uses=WEB_USES)
        self.page = PageBackend(self.task, PageSettings(
            camera_sources=self.config.camera_sources, stale_after=p['stale_after'],
            call_timeout=p['call_timeout'], record_interval=p['record_interval'],
            namespace=self.get_namespace()), self.client, ros_now=self._ros_now,
            set_own_classes=self._set_own_classes)
        self.server = WebServer(self.config, self.page)
        self._image_sub = None         # image_raw, only while a page shows the video
        self._unwatched_since: float | None = None
        page = self.page
        for msg_type, topic, handler, qos in (
                (Prediction, 'predictions', page.on_prediction, PREDICTION_QOS),
                (ModelInfo, 'model', page.on_model, MODEL_QOS),
                (GestureEvent, 'gestures', page.on_gesture, PREDICTION_QOS),
                (DatasetState, 'dataset', page.on_dataset, LATCHED_QOS),
                (ModelList, 'models', page.on_models, LATCHED_QOS),
                (ReviewQueue, 'review_queue', page.on_review_queue, LATCHED_QOS),
                (ParameterEvent, '/parameter_events', page.on_parameters,
                 QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)),
                (Log, '/rosout', page.on_log,
                 QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.VOLATILE))):
            self.create_subscription(msg_type, topic, handler, qos)
        self.create_timer(0.2, self._tick)

    def _on_classes(self, task) -> None:
        """Classes were added (the page's "Add class" or ``ros2 param set``): show them."""
        self.task = task
        self.page.set_task(task)

    def _set_own_classes(self, classes: tuple[str, ...]) -> str:
        """Set this node's ``classes`` (the page's "Add class", after the other nodes);
        '' or why it was refused."""
        result = self.set_parameters([Parameter('classes', Parameter.Type.STRING_ARRAY,
                                                list(classes))])[0]
        return '' if result.successful else result.reason

    def _ros_now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> WebNode:
        """Start the HTTP server thread and wait until it listens (raises ValueError when the
        address cannot be used or the page's files are missing)."""
        server, cfg = self.server.start(), self.config
        if server.warning:  # before the URL line, which tells a reader the node is ready
            self.get_logger().warning(server.warning)
        if server.generated:
            self.get_logger().info(f'serving the page on {cfg.host} port {server.port}; open '
                                   f'{server.url}?token={server.token}')
        elif server.token:
            self.get_logger().info(f'serving the page on {server.url} (the token parameter '
                                   'is required)')
        else:
            self.get_logger().info(f'serving the page on {server.url} (this machine only)')
        return self

    def destroy_node(self):
        self.server.stop()
        super().destroy_node()

    def _tick(self) -> None:
        self._watch_frames()
        self.page.tick()

    def _watch_frames(self) -> None:
        """Subscribe to ``image_raw`` while a page shows the video, and unsubscribe
        ``UNWATCHED_S`` after the last viewer left: a 640x480 frame costs this process about
        3 ms of CPU to receive (measured by bench/web.py), for nothing when nobody watches.
        (Runs in the executor thread, which owns the subscriptions.)"""
        frames = self.page.frames
        viewers = frames.viewers if frames is not None else 0
        now = time.monotonic()
        if viewers and self._image_sub is None:
            self._image_sub = self.create_subscription(Image, 'image_raw', self.page.on_image,
                                                       IMAGE_SUB_QOS)
            self.page.set_watching(True)
        if viewers:
            self._unwatched_since = None
        elif self._image_sub is not None:
            self._unwatched_since = self._unwatched_since or now
            if now - self._unwatched_since > UNWATCHED_S:
                self.destroy_subscription(self._image_sub)
                self._image_sub = None
                self.page.set_watching(False)


def main(args=None):
    run_node(lambda: WebNode().start(), args)


if __name__ == '__main__':
    main()
