"""classifier node: applies the task's fine-tuned ResNet-18 to the newest camera frame and
publishes class probabilities.

Subscribes ``image_raw`` (sensor_msgs/Image; or ``image_raw/compressed``, sensor_msgs/
CompressedImage, JPEG or PNG, with ``image_transport: compressed``; sensor-data QoS, depth 1:
while one frame is being classified newer ones replace each other in the queue, so the next
one classified is always the newest and no backlog builds up) and ``model``
(gesture_interfaces/msg/ModelInfo, latched, from the trainer). Publishes ``predictions``
(gesture_interfaces/msg/Prediction) with the header of the classified image.

Parameters: task, classes, data_dir, model_path (read-only, see common.declare_task) and
    device (string): 'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:N';
    backend (string): what runs the network: 'auto' (default: tensorrt with TensorRT and
        CUDA, else onnxruntime when installed, else pytorch; the log and the diagnostics say
        which and why; if the chosen one fails for a model, the next is tried), 'pytorch',
        'onnxruntime' or 'tensorrt' (see gesture_classifier.backends); the node refuses to
        start when an explicitly chosen backend's package is missing;
    precision (string): 'fp32' (default) or 'fp16' (CUDA only; pytorch and tensorrt);
    stale_after (double, s): input older than this is reported as stale;
    model_dirs (string[]): folders announced models may be loaded from (default: the folder
        of ``model_path``);
    gesture_threshold, gesture_smoothing, gesture_min_frames, gesture_min_duration (s),
    gesture_hold_rate (Hz): the debouncing of ``gestures`` (see gesture_classifier.gestures);
        changeable while running, validated in the set-parameters callback.

Diagnostics (``/diagnostics``, 1 Hz, status ``classifier: inference``): model id, backend and
why, device, rate, latency p50, stale input, rejected frames, refused models; WARN without a
model or with stale input.

Publishes ``overlay`` (sensor_msgs/Image, bgr8, the header of the classified frame): the frame
with the top label, the stable gesture and a bar per class, for rviz / rqt_image_view /
Foxglove; drawn only while ``overlay`` has subscribers, so it costs nothing otherwise.

Publishes ``gestures`` (gesture_interfaces/msg/GestureEvent): the debounced stable gesture,
when it changes (and at ``gesture_hold_rate`` while it holds), with the header of the frame
that decided it.

Predictions are only ever published for new frames: when the camera stops, the predictions
stop too (old results are never repeated) and the node logs that its input is stale.

Without a model it logs that it waits for one; when the trainer announces a new model it loads
it in a background thread (with the backend's export from beside the model file, or one it
makes) while the current model keeps classifying, then switches without a restart. A model
file that cannot be used (unreadable, another architecture, or classes other than the task's
``classes``, in that order) is refused with the reason and the running model stays. A
malformed image is logged (throttled) and skipped.

A model announced with a path this node may not read (another computer's, or outside
``model_dirs``) and with a size and SHA-256 is fetched from the trainer's ``get_model``
service (gesture_interfaces/srv/GetModel) into ``<first model_dirs>/received-<sha256>.pt``
and used only when size and hash match (see gesture_classifier.transfer); nothing partial is
kept.

An announced path is untrusted input: only a regular file of bounded size inside
``model_dirs`` is read, opened without blocking and checked with ``fstat`` first (see
fsutil.read_untrusted_file), so a FIFO, a device, a directory, a symlink loop or a huge file is
refused at once and never holds up the next announcement. A refused announcement (model_id and
path) is remembered and not read again when it is re-announced.
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import replace

from builtin_interfaces.msg import Time
from gesture_interfaces.msg import GestureEvent, ModelInfo, Prediction
from gesture_interfaces.srv import GetModel
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import Image

from ..backends import (AUTO, BACKENDS, PRECISIONS, BackendError, available_backends,
                        resolve_backend)
from ..client import wait_future
from ..fsutil import ensure_private_dir, is_within
from ..gestures import DebounceConfig, Debouncer
from ..model import MAX_MODEL_FILE_BYTES
from ..imaging import ImageFormatError, array_to_image_fields, message_to_array
from ..inference import Predictor
from ..overlay import draw_overlay
from ..transfer import SHA256_PATTERN, TransferError, fetch_file
from ..training import resolve_device
from .common import (IMAGE_PUB_QOS, MODEL_QOS, PREDICTION_QOS, Throttle, declare,
                     declare_task, run_node, subscribe_images)
from .diagnostics import OK, WARN, Latencies, RateMeter, updater_for


#: Live-tunable parameters of the gesture debouncer: parameter -> (DebounceConfig field,
#: description). Ranges come from DebounceConfig.RANGES.
GESTURE_PARAMS = {
    'gesture_threshold': ('threshold', 'Smoothed probability a class needs to become the '
                          'stable gesture; below it the state is none'),
    'gesture_smoothing': ('smoothing', 'Exponential moving average factor of the probabilities '
                          '(0: no smoothing; 0.9: slow)'),
    'gesture_min_frames': ('min_frames', 'Consecutive frames a class must lead (at or above '
                           'the threshold) before it becomes the stable gesture'),
    'gesture_min_duration': ('min_duration', 'Seconds of frame time a class must lead before '
                             'it becomes the stable gesture'),
    'gesture_hold_rate': ('hold_rate', 'Rate (Hz) at which a held gesture is re-published as '
                          'a HOLD event; 0: only changes'),
}


def to_time(seconds: float) -> Time:
    """builtin_interfaces/Time of a time in seconds (>= 0)."""
    sec = int(seconds)
    return Time(sec=sec, nanosec=min(int(round((seconds - sec) * 1e9)), 999_999_999))


class ClassifierNode(Node):
    def __init__(self, **kwargs):
        super().__init__('classifier', **kwargs)
        self.task = declare_task(self, model=True)
        self.device = resolve_device(declare(
            self, 'device', 'auto', "Torch device: 'auto', 'cpu', 'cuda' or 'cuda:N'",
            read_only=True))
        requested = declare(
            self, 'backend', AUTO, 'What runs the network: auto (the fastest usable here: '
            'tensorrt, else onnxruntime, else pytorch), pytorch, onnxruntime (CPU, or CUDA '
            'with onnxruntime-gpu) or tensorrt (CUDA)', read_only=True,
            constraints=f'one of {AUTO}, {", ".join(BACKENDS)}')
        self.precision = declare(
            self, 'precision', 'fp32', 'Network precision: fp32, or fp16 on CUDA (pytorch and '
            'tensorrt)', read_only=True, constraints=f'one of {", ".join(PRECISIONS)}')
        self.backend, self.backend_reason = resolve_backend(requested, self.device,
                                                            self.precision)
        # the chosen backend, then (auto only) the slower usable ones if it fails for a model
        fallbacks = [b for b in ('onnxruntime', 'pytorch') if b in available_backends()
                     and b != self.backend and (b, self.precision) != ('onnxruntime', 'fp16')]
        self._backends = [self.backend] + (fallbacks if requested == AUTO else [])
        dirs = [d for d in declare(
            self, 'model_dirs', [''], 'Folders announced models may be loaded from; empty: '
            'the folder of model_path', read_only=True) if d]
        self.model_dirs = [os.path.realpath(os.path.expanduser(d)) for d in dirs] or \
            [str(self.task.model_path.parent)]
        self.predictor: Predictor | None = None
        self._load_lock = threading.Lock()
        # newest (path, announcement key, announcement to fetch) waiting for the loader thread
        self._load_next: tuple[str, tuple | None, ModelInfo | None] | None = None
        self._refused: OrderedDict[tuple, str] = OrderedDict()  # (model_id, path) -> reason
        self._get_model = self.create_client(GetModel, 'get_model')
        self._loader: threading.Thread | None = None
        self.frames_classified = 0
        self.frames_rejected = 0
        self.stale_after = declare(
            self, 'stale_after', 2.0, 'Report the camera input as stale when no frame has '
            'arrived for this long (s); no prediction is published without a new frame',
            float_range=(0.1, 3600.0), read_only=True)
        self._warn = Throttle(5.0)
        self._wait_note = Throttle(10.0)
        self._refused_note = Throttle(5.0)
        self._last_frame: float | None = None  # time.monotonic() of the newest frame
        self._stale = False
        self.create_timer(min(1.0, self.stale_after / 2), self._check_input)
        self._pub = self.create_publisher(Prediction, 'predictions', PREDICTION_QOS)
        defaults, values = DebounceConfig(), {}
        for param, (field, text) in GESTURE_PARAMS.items():
            low, high = DebounceConfig.RANGES[field]
            kind = 'int_range' if isinstance(low, int) else 'float_range'
            values[field] = declare(self, param, getattr(defaults, field), text,
                                    **{kind: (low, high)})
        self.debouncer = Debouncer(DebounceConfig(**values))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._gesture_pub = self.create_publisher(GestureEvent, 'gestures', PREDICTION_QOS)
        self._overlay_pub = self.create_publisher(Image, 'overlay', IMAGE_PUB_QOS)
        self.overlays_published = 0
        self._rate, self._latency = RateMeter(), Latencies()
        self._diagnostics = updater_for(self, str(self.device))
        self._diagnostics.add('inference', self._diagnose)
        self.create_subscription(ModelInfo, 'model', self._on_model, MODEL_QOS)
        self._image_topic = subscribe_images(self, self._on_image)
        self.get_logger().info(f'task {self.task.name!r} on {self.device}, backend '
                               f'{self.backend} ({self.backend_reason}), {self.precision}')
        if self.task.model_path.exists():
            self.request_load(str(self.task.model_path))
        else:
            self.get_logger().info(f'no trained model yet ({self.task.model_path}); waiting '
                                   'for the trainer')

    def fetch(self, info: ModelInfo) -> str:
        """Fetch the announced model over ROS (``get_model``) into the first of
        ``model_dirs``; returns its path. Raises TransferError / ClientError / OSError."""
        def get_chunk(offset: int, length: int):
            req = GetModel.Request(model_id=info.model_id, offset=offset, length=length)
            res = wait_future(self._get_model.call_async(req), 30.0, 'get_model')
            if not res.success:
                raise TransferError(f'the trainer refused: {res.message}')
            return res.size, bytes(res.data)

        if not self._get_model.wait_for_service(timeout_sec=10.0):
            raise TransferError('the get_model service is not available')
        if not SHA256_PATTERN.fullmatch(info.sha256):  # it also names the file
            raise TransferError(f'announcement has no valid SHA-256 ({info.sha256[:80]!r})')
        folder = ensure_private_dir(self.model_dirs[0])
        dest = folder / f'received-{info.sha256}.pt'
        start = time.monotonic()
        fetch_file(get_chunk, dest, info.size, info.sha256, MAX_MODEL_FILE_BYTES)
        self.get_logger().info(f'fetched model {info.model_id} over ROS: {info.size} bytes in '
                               f'{time.monotonic() - start:.1f} s, SHA-256 matches; {dest}')
        return str(dest)

    def _readable_here(self, path: str) -> bool:
        """Whether ``path`` is a file inside model_dirs on this computer."""
        real = os.path.realpath(path)
        return os.path.isfile(real) and is_within(real, self.model_dirs)

    def request_load(self, path: str, key: tuple | None = None,
                     fetch: ModelInfo | None = None) -> None:
        """Load the model at ``path`` in the loader thread (first fetching it over ROS when
        ``fetch`` is its announcement); while it loads, the current model keeps classifying.
        Requests made meanwhile collapse to the newest one. ``key`` (the announcement's
        model_id and path) is remembered when the model is refused."""
        with self._load_lock:
            self._load_next = (path, key, fetch)
            if self._loader is not None:
                return
            self._loader = threading.Thread(target=self._load_pending, name='model_loader',
                                            daemon=True)
            self._loader.start()

    def _load_pending(self) -> None:
        while True:
            with self._load_lock:
                pending, self._load_next = self._load_next, None
                if pending is None:
                    self._loader = None
                    return
            path, key, info = pending
            if info is not None:
                try:
                    path = self.fetch(info)
                except Exception as exc:  # TransferError, timeout, disk: refuse, never die
                    self.get_logger().error(f'refused model {info.model_id!r}: fetching it '
                                            f'over ROS failed: {exc}')
                    if key is not None:
                        self._remember_refusal(key, f'fetch failed: {exc}')
                    continue
            reason = self.load(path)
            if reason is not None and key is not None:
                self._remember_refusal(key, reason)

    def _remember_refusal(self, key: tuple, reason: str) -> None:
        """Remember a refused announcement (the 256 newest) so it is never read again."""
        with self._load_lock:
            self._refused[key] = reason
            while len(self._refused) > 256:
                self._refused.popitem(last=False)

    def load(self, path: str) -> str | None:
        """Load and switch to the model at ``path``; on failure keep the current one and
        return the reason (None on success)."""
        kept = f'keeping model {self.predictor.model_id}' if self.predictor else \
            'no model in use'
        try:
            predictor = self._predictor(path)
        except Exception as exc:  # ModelFileError, or anything else: never die on a file
            self.get_logger().error(f'refused model: {exc} ({kept})')
            return str(exc)
        mf = predictor.model_file
        if mf.task and mf.task != self.task.name:
            reason = f'{path}: it is for task {mf.task!r}, not {self.task.name!r}'
            self.get_logger().error(f'refused model {reason} ({kept})')
            return reason
        self.predictor = predictor  # one reference assignment: the image callback sees either
        self.get_logger().info(f'using model {mf.model_id} ({", ".join(mf.class_names)}; '
                               f'val accuracy {mf.val_accuracy:.2f}) from {path}; '
                               f'{predictor.description}')
        return None

    def _predictor(self, path: str) -> Predictor:
        """A Predictor for the model at ``path`` on the first of the backends that works
        (raises what the last one raised)."""
        for i, backend in enumerate(self._backends):
            try:
                return Predictor.from_file(path, self.device,
                                           expected_classes=self.task.classes,
                                           backend=backend, allowed_dirs=self.model_dirs,
                                           precision=self.precision)
            except BackendError as exc:
                if i + 1 == len(self._backends):
                    raise
                self.backend_reason = (f'auto: {backend} failed for {path} ({exc}); using '
                                       f'{self._backends[i + 1]}')
                self.get_logger().warning(self.backend_reason)
        raise AssertionError('no backend')  # unreachable: _backends is never empty

    def _on_model(self, info: ModelInfo) -> None:
        if info.task != self.task.name:
            self.get_logger().info(f'ignoring model for task {info.task!r}')
            return
        if self.predictor is not None and info.model_id == self.predictor.model_id:
            return
        key = (info.model_id, info.path)
        with self._load_lock:
            before = self._refused.get(key)
        if before is not None:
            if self._refused_note(time.monotonic()):
                self.get_logger().warning(f'ignoring re-announced model {info.model_id!r} at '
                                          f'{info.path!r}: refused before ({before})')
            return
        if not os.path.isabs(info.path):
            self._remember_refusal(key, 'path is not absolute')
            self.get_logger().error(f'refused model {info.model_id!r}: path {info.path!r} is '
                                    'not absolute')
            return
        if info.sha256 and not self._readable_here(info.path):
            self.request_load(info.path, key, fetch=info)  # another computer's file
            return
        self.request_load(info.path, key)

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Validate and apply the gesture parameters together (types and ranges were checked
        against the descriptors already). Applied here rather than in a post-set callback,
        which Humble lacks; this is the node's only set-parameters callback, so a change that
        passes it is the change that is made."""
        changes = {GESTURE_PARAMS[p.name][0]: p.value for p in params
                   if p.name in GESTURE_PARAMS}
        if changes:
            try:
                config = replace(self.debouncer.config, **changes).check()
            except (ValueError, TypeError) as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            self.debouncer.reconfigure(config)
            self.get_logger().info(f'gesture debouncing now {config}')
        return SetParametersResult(successful=True)

    def _publish_overlay(self, header, view, class_names, probs) -> None:
        try:
            drawn = draw_overlay(view.pixels, view.order, class_names, probs,
                                 self.debouncer.label)
        except ValueError as exc:
            if self._warn(time.monotonic()):
                self.get_logger().warning(f'no overlay for this frame: {exc}')
            return
        out = Image(**array_to_image_fields(drawn, 'bgr8'))
        out.header = header
        self._overlay_pub.publish(out)
        self.overlays_published += 1

    def _diagnose(self, stat):
        predictor, p50 = self.predictor, self._latency.median()
        if predictor is None:
            stat.summary(WARN, 'no model yet: collect samples and send a train goal')
        elif self._stale:
            stat.summary(WARN, 'input stale: no camera frames')
        else:
            stat.summary(OK, f'classifying with {predictor.model_id}')
        with self._load_lock:
            refused = len(self._refused)
        for key, value in (
                ('model id', predictor.model_id if predictor else ''),
                ('backend', predictor.description if predictor else self.backend),
                ('backend chosen because', self.backend_reason),
                ('precision', self.precision),
                ('device', self.device), ('rate (Hz)', f'{self._rate.rate():.1f}'),
                ('latency p50 (ms)', f'{p50 * 1e3:.1f}' if p50 is not None else ''),
                ('input stale', self._stale), ('frames classified', self.frames_classified),
                ('rejected frames', self.frames_rejected),
                ('overlays published', self.overlays_published),
                ('refused model announcements', refused)):
            stat.add(key, value)
        return stat

    def _check_input(self) -> None:
        """Say once when the input goes stale (camera lost) and once when it is back."""
        if self._last_frame is None:
            return
        age = time.monotonic() - self._last_frame
        if age > self.stale_after and not self._stale:
            self._stale = True
            self.get_logger().warning(f'input stale: no camera frame for {age:.1f} s on '
                                      f'{self._image_topic}; no '
                                      'predictions until frames arrive again')

    def _on_image(self, msg) -> None:
        """A camera frame: sensor_msgs/Image or CompressedImage (see image_transport)."""
        self._last_frame = time.monotonic()
        if self._stale:
            self._stale = False
            self.get_logger().info('camera frames are arriving again')
        predictor = self.predictor
        if predictor is None:
            if self._wait_note(time.monotonic()):
                self.get_logger().info('frames arrive but there is no trained model yet: '
                                       'collect samples and send a train goal')
            return
        start = time.perf_counter()
        try:
            view = message_to_array(msg)
            probs = predictor.predict(view.pixels, view.order)
        except (ImageFormatError, ValueError) as exc:
            self.frames_rejected += 1
            if self._warn(time.monotonic()):
                self.get_logger().warning(f'skipping malformed image ({self.frames_rejected} '
                                          f'so far): {exc}')
            return
        except Exception as exc:  # a backend's runtime error (CUDA OOM, TensorRT, ORT): the
            self.frames_rejected += 1  # frame is skipped, the node lives
            if self._warn(time.monotonic()):
                self.get_logger().error(f'inference failed, frame skipped '
                                        f'({self.frames_rejected} so far): {exc!r}')
            return
        top = int(probs.argmax())
        out = Prediction()
        out.header = msg.header
        out.class_names = list(predictor.class_names)
        out.probabilities = probs.tolist()
        out.label = predictor.class_names[top]
        out.confidence = float(probs[top])
        out.model_id = predictor.model_id
        out.inference_time = time.perf_counter() - start
        self._pub.publish(out)
        self.frames_classified += 1
        self._rate.tick()
        self._latency.add(out.inference_time)
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        try:
            event = self.debouncer.update(probs, predictor.class_names, stamp)
        except ValueError as exc:  # non-finite probabilities from a broken model
            if self._warn(time.monotonic()):
                self.get_logger().warning(f'no gesture update for this frame: {exc}')
            return
        if self._overlay_pub.get_subscription_count():  # only for someone watching
            self._publish_overlay(msg.header, view, predictor.class_names, probs)
        if event is not None:
            self._gesture_pub.publish(GestureEvent(
                header=msg.header, kind=event.kind, label=event.label,
                confidence=event.confidence, since=to_time(event.since),
                previous_label=event.previous, model_id=predictor.model_id))


def main(args=None):
    run_node(ClassifierNode, args)


if __name__ == '__main__':
    main()
