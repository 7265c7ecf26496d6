"""camera node: publishes frames of a V4L2 device, GStreamer pipeline (Jetson CSI camera),
video file or image folder as ``sensor_msgs/Image`` (bgr8) on ``image_raw`` and, while someone
subscribes to it (as image_transport's ``compressed`` plugin does), as JPEG
``sensor_msgs/CompressedImage`` on ``image_raw/compressed``.

Parameters (all can be changed while running; the source is re-opened):
    source (string)    see gesture_classifier.core.sources: '0', '/dev/video0', 'csi://0',
                       a GStreamer pipeline, a video file, an image folder
    width, height (int) output size in pixels; 0 keeps the source's size
    rate (double)      frames per second published, (0, 240]
    frame_id (string)  header.frame_id (the camera's optical frame, REP-103/105)
    loop (bool)        restart video files and image folders at their end
    reopen_delay (double) seconds between attempts to (re)open a missing or failed source
    jpeg_quality (int) JPEG quality of ``image_raw/compressed``, [1, 100]

``header.stamp`` is the time the frame was read from the source (this node's clock). A source
that fails or disappears is reported, closed and re-opened every ``reopen_delay`` seconds; the
capture runs in its own thread, never blocks the executor and never spins without sleeping.

Diagnostics (``/diagnostics``, 1 Hz, status ``camera: source``): source, configured and
measured rate, frames published, re-open count and the last error; ERROR while the source
cannot be opened, WARN at the end of a non-looping source or below half the configured rate
(measured since the previous report or since the source opened, whichever is later).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

import cv2
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from ..core.imaging import fill_compressed, fill_image
from ..core.sources import FrameSource, SourceError, open_source
from ..ros.params import Param, declare_all
from ..ros.runtime import run_node
from ..ros.topics import IMAGE_PUB_QOS
from ..ros.diagnostics import ERROR, OK, WARN, RateMeter, updater_for


def fit_frame(frame, width: int, height: int, out=None):
    """``frame`` resized to ``width x height`` with INTER_AREA when both are set and differ;
    else ``frame`` itself (no copy).

    ``out``: a buffer the caller owns (typically what the previous call returned) that the
    resized frame is written into when it has the output's shape and dtype (no allocation);
    otherwise OpenCV allocates a new array. Always use the array returned."""
    if width and height and (frame.shape[1], frame.shape[0]) != (width, height):
        if out is not None and (out.shape[:2] != (height, width) or out.shape[2:] !=
                                frame.shape[2:] or out.dtype != frame.dtype or
                                not out.flags.c_contiguous or not out.flags.writeable):
            out = None  # OpenCV would reallocate it, or reject a non-contiguous one
        frame = cv2.resize(frame, (width, height), dst=out, interpolation=cv2.INTER_AREA)
    return frame


def frame_to_image(frame, stamp, width: int, height: int, frame_id: str,
                   resize_buffer=None) -> Image:
    """The message the node publishes for a uint8 BGR ``(H, W, 3)`` frame read at ``stamp``
    (builtin_interfaces/Time): resized to ``width x height`` with INTER_AREA when both are set
    and differ (into ``resize_buffer`` when it fits, see :func:`fit_frame`), then one copy
    into a bgr8 ``sensor_msgs/Image``. The message owns its data: neither ``frame`` nor the
    buffer is referenced by it."""
    # fill_image, not Image(**array_to_image_fields(...)): the generated constructor and
    # setter would copy the pixels twice more (three 2.7 MB copies per 1280x720 frame).
    msg = fill_image(Image(), fit_frame(frame, width, height, resize_buffer), 'bgr8')
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    return msg


#: The node's parameters, all changeable while it runs (the source is re-opened).
PARAMETERS = (
    Param('source', '0', 'Camera source: V4L2 index or /dev/videoN, csi://N, GStreamer '
          'pipeline, video file or image folder'),
    Param('width', 640, 'Output width in pixels (0: source size)', (0, 8192)),
    Param('height', 480, 'Output height in pixels (0: source size)', (0, 8192)),
    Param('rate', 30.0, 'Frames per second to publish', (0.1, 240.0)),
    Param('frame_id', 'camera_optical_frame', 'header.frame_id of the images'),
    Param('loop', True, 'Restart video files and image folders at the end'),
    Param('reopen_delay', 1.0, 'Seconds between attempts to (re)open the source',
          (0.05, 60.0)),
    Param('jpeg_quality', 80, 'JPEG quality of image_raw/compressed (encoded only while it has '
          'subscribers)', (1, 100)),
)


@dataclass(frozen=True)
class CameraConfig:
    source: str
    width: int
    height: int
    rate: float
    frame_id: str
    loop: bool
    reopen_delay: float
    jpeg_quality: int


class CameraNode(Node):
    def __init__(self, **kwargs):
        super().__init__('camera', **kwargs)
        # OpenCV would print a warning per failed open attempt; this node reports failures
        # itself, once per outage.
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        self._cfg = CameraConfig(**declare_all(self, PARAMETERS))
        self._lock = threading.Lock()
        self._generation = 0          # bumped on every configuration change
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.frames_published = 0
        self._rate = RateMeter()
        self.reopens = 0
        self.last_error = ''
        self._state = 'opening'  # opening | publishing | failing | finished
        self._description = ''
        self._pub = self.create_publisher(Image, 'image_raw', IMAGE_PUB_QOS)
        self._compressed_pub = self.create_publisher(CompressedImage, 'image_raw/compressed',
                                                     IMAGE_PUB_QOS)
        self._diagnostics = updater_for(self, 'camera')
        self._diagnostics.add('source', self._diagnose)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._thread = threading.Thread(target=self._capture_loop, name='capture', daemon=True)
        self._thread.start()

    # -- parameters ------------------------------------------------------------------------
    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {}
        for p in params:
            if p.name not in CameraConfig.__dataclass_fields__:
                continue
            value = p.value
            if p.name == 'source' and not str(value).strip():
                return SetParametersResult(successful=False, reason='source must not be empty')
            changes[p.name] = value
        if changes:
            with self._lock:
                self._cfg = replace(self._cfg, **changes)
                self._generation += 1
            self._wake.set()
            self.get_logger().info(f'configuration changed: {changes}')
        return SetParametersResult(successful=True)

    # -- capture thread --------------------------------------------------------------------
    def _capture_loop(self) -> None:
        log = self.get_logger()
        source: FrameSource | None = None
        generation = -1
        next_time = time.monotonic()
        failing_since = None
        # Reused per source: the frame read and the resized frame of the previous loop, which
        # the next read and resize overwrite (no allocation per frame). Safe because nothing
        # keeps them past _publish: the Image message copies the pixels, the JPEG encoder reads
        # them before the next read. Dropped on every (re)open so that a new source or size
        # starts with fresh arrays.
        captured = resized = None
        while not self._stop.is_set():
            with self._lock:
                cfg, current = self._cfg, self._generation
            if current != generation or source is None:
                if source is not None:
                    source.close()
                    source = None
                captured = resized = None
                generation = current
                try:
                    source = open_source(cfg.source, cfg.width, cfg.height, cfg.rate, cfg.loop)
                    source.open()
                except SourceError as exc:
                    source = None
                    self._state, self.last_error = 'failing', str(exc)
                    if failing_since is not None:  # a retry that failed again
                        self.reopens += 1
                    if failing_since is None:
                        failing_since = time.monotonic()
                        log.error(f'cannot open camera source: {exc}; retrying every '
                                  f'{cfg.reopen_delay:g} s')
                    self._sleep(cfg.reopen_delay)
                    continue
                if failing_since is not None:
                    log.info(f'camera source is back after '
                             f'{time.monotonic() - failing_since:.1f} s')
                    failing_since = None
                self._state, self._description = 'publishing', source.description
                self._rate.restart()
                log.info(f'publishing {source.description} on {self._pub.topic_name} '
                         f'at {cfg.rate:g} Hz')
                next_time = time.monotonic()
            frame = source.read(captured)
            if frame is None:
                if source.finished:
                    self._state = 'finished'
                    log.info(f'end of {source.description}; set `loop` or `source` to go on')
                    self._wake.wait()  # until a parameter changes (or shutdown)
                    self._wake.clear()
                    source.close()
                    source = None
                    continue
                log.error(f'camera source {source.description} stopped delivering frames; '
                          f're-opening in {cfg.reopen_delay:g} s')
                self._state = 'failing'
                self.last_error = f'{source.description} stopped delivering frames'
                self.reopens += 1
                failing_since = time.monotonic()
                source.close()
                source = None
                self._sleep(cfg.reopen_delay)
                continue
            captured = frame
            with self._lock:
                if self._generation != generation:
                    continue  # read from the old source after a change: drop it
            try:
                fitted = fit_frame(frame, cfg.width, cfg.height, resized)
                if fitted is not frame:
                    resized = fitted
                self._publish(fitted, self.get_clock().now().to_msg(), cfg)
            except Exception as exc:  # RCLError when Ctrl-C shut the context down meanwhile
                if self._stop.is_set() or not self.context.ok():
                    break
                log.error(f'could not publish a frame: {exc!r}')
            next_time = self._pace(next_time, cfg.rate)
        if source is not None:
            source.close()

    def _publish(self, frame, stamp, cfg: CameraConfig) -> None:
        """Publish ``frame`` (already fitted to the configured size), raw and, for subscribers,
        compressed. Both messages copy it: ``frame`` may be overwritten once this returns."""
        self._pub.publish(frame_to_image(frame, stamp, 0, 0, cfg.frame_id))
        if self._compressed_pub.get_subscription_count():  # encode only for someone
            msg = fill_compressed(CompressedImage(), frame, cfg.jpeg_quality)
            msg.header.stamp, msg.header.frame_id = stamp, cfg.frame_id
            self._compressed_pub.publish(msg)
        self.frames_published += 1
        self._rate.tick()

    def _diagnose(self, stat):
        with self._lock:
            cfg = self._cfg
        rate = self._rate.rate()
        if self._state == 'failing':
            stat.summary(ERROR, f'cannot read the source: {self.last_error}')
        elif self._state == 'finished':
            stat.summary(WARN, 'end of the source (loop is off): no frames')
        elif (self._state == 'publishing' and self._rate.window >= 2.0 / cfg.rate
              and rate < 0.5 * cfg.rate):  # a window shorter than two frames proves nothing
            stat.summary(WARN, f'publishing {rate:.1f} Hz of {cfg.rate:g} Hz configured')
        else:
            stat.summary(OK, f'{self._state} {self._description}'.strip())
        for key, value in (('source', cfg.source), ('opened', self._description),
                           ('configured rate (Hz)', f'{cfg.rate:g}'),
                           ('measured rate (Hz)', f'{rate:.1f}'),
                           ('frames published', self.frames_published),
                           ('reopen count', self.reopens), ('last error', self.last_error)):
            stat.add(key, value)
        return stat

    def _pace(self, next_time: float, rate: float) -> float:
        """Sleep until the next frame is due; resynchronise after falling behind."""
        next_time += 1.0 / rate
        delay = next_time - time.monotonic()
        if delay > 0:
            self._sleep(delay)
            return next_time
        return time.monotonic()

    def _sleep(self, seconds: float) -> None:
        """Sleep, but wake early on a configuration change or shutdown."""
        if self._wake.wait(seconds):
            self._wake.clear()

    def destroy_node(self):
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=2.0)  # within run_node's SHUTDOWN_TIMEOUT_S (a daemon thread)
        return super().destroy_node()


def main(args=None):
    run_node(CameraNode, args)


if __name__ == '__main__':
    main()
