"""web node: the interactive tool in a browser (live video, collect, train, live output), a
plain client of the other nodes' ROS interfaces. It never reads or writes the dataset or the
model files itself.

The HTTP side (gesture_classifier.webapp: aiohttp, MJPEG, WebSocket, access control) runs in
its own thread with its own asyncio loop; the ROS executor spins in the main thread. Web
requests reach ROS only through ``call_async`` / ``send_goal_async`` / ``cancel_goal_async``,
whose rclpy futures are handed back to the web loop with ``loop.call_soon_threadsafe``; no ROS
callback ever blocks, and the web loop never waits on the executor.

Uses (names relative, so a namespace or remap moves them):
    subscribes ``image_raw`` only while a page shows the video (sensor data QoS, depth 1: only
        a reference to the newest frame is kept, JPEG-encoded for the viewers), ``predictions``,
        ``gestures`` (the stable gesture), ``model`` and ``dataset`` (latched),
        ``/parameter_events`` (the camera's ``source``, the classifier's ``gesture_threshold``
        and ``gesture_smoothing``) and ``/rosout`` (warnings and errors of the four nodes,
        shown as notices);
    calls ``collect``, ``record``, ``delete_samples``, ``undo_collect``, ``restore_samples``,
        ``select_model``, ``camera/set_parameters``, ``camera/get_parameters``,
        ``classifier/set_parameters``, ``classifier/get_parameters`` (the page's gesture
        sliders, validated by the classifier) and the ``train`` (goals sent by the page can be
        cancelled from it) and ``evaluate`` actions; subscribes ``models`` (latched) too.

The one file access: to show thumbnails it reads (never writes) sample images whose paths
the collector reported (``collect`` / ``record`` answers, the ``dataset`` topic), only
regular files inside the dataset folder that the ``dataset`` topic names.

Parameters (read-only; see config/gesture_classifier.yaml and docs/security.md):
    task, classes, data_dir (the task: classes are offered to collect)
    host (string)        address to listen on; 127.0.0.1 (default) serves this machine only
    port (int)           TCP port, 0..65535 (0: any free port; the log says which)
    token (string)       required on every request when set; when empty and ``host`` is not
                         loopback, a random token is made and printed in the log (Jupyter)
    max_fps (double)     most video frames per second to one viewer, (0, 120]
    max_width (int)      frames are scaled down to at most this width before encoding, px
    jpeg_quality (int)   10..95
    state_rate (double)  most state pushes per second to one page, [1, 60]
    max_viewers (int)    most simultaneous video streams
    camera_sources (string[]) sources the page may switch the camera to (exactly these)
    stale_after (double) s without a camera frame before the page says the input is stale
    call_timeout (double) s to wait for a service answer or a goal acceptance
    record_interval (double) s between frames saved while "hold to record" is pressed
"""
from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import socket
import threading
import time
from pathlib import Path

from action_msgs.msg import GoalStatus
from aiohttp import web
from gesture_interfaces.action import Evaluate, Train
from gesture_interfaces.msg import DatasetState, GestureEvent, ModelInfo, ModelList, Prediction
from gesture_interfaces.srv import (Collect, DeleteSamples, Record, RestoreSamples,
                                    SelectModel, UndoCollect)
from rcl_interfaces.msg import Log, ParameterEvent
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from ..client import set_parameters_request, start_on_executor
from ..webapp import (BackendError, FrameHub, Signal, WebConfig, effective_token, make_app,
                      read_assets)
from .common import (IMAGE_SUB_QOS, LATCHED_QOS, MODEL_QOS, PREDICTION_QOS, declare,
                     declare_task, run_node)

#: The classifier parameters the page's sliders set -> key in the page's state.
GESTURE_PARAMS = {'gesture_threshold': 'threshold', 'gesture_smoothing': 'smoothing'}
#: Nodes whose warnings and errors the page shows as notices.
WATCHED_NODES = ('camera', 'collector', 'trainer', 'classifier')
_STATUS = {GoalStatus.STATUS_SUCCEEDED: 'succeeded', GoalStatus.STATUS_CANCELED: 'canceled',
           GoalStatus.STATUS_ABORTED: 'failed'}
#: The page's start choices -> Train.Goal.start.
_START = {'auto': Train.Goal.START_AUTO, 'continue': Train.Goal.START_CONTINUE,
          'fresh': Train.Goal.START_FRESH}
#: Seconds after the last video viewer left before the image subscription is dropped.
UNWATCHED_S = 5.0
#: Newest samples per class the page shows as thumbnails.
SAMPLES_SHOWN = 6


#: Misclassified samples of one evaluation the page shows.
MISCLASSIFIED_SHOWN = 12


def evaluation_dict(ev) -> dict | None:
    """JSON of a gesture_interfaces/msg/Evaluation (None when it is empty); misclassified
    samples by their page ids (:func:`sample_id`), with the paths kept under ``_paths``."""
    if not ev.split:
        return None
    paths = list(ev.misclassified_paths[:MISCLASSIFIED_SHOWN])
    return {
        'split': ev.split, 'images': int(ev.images), 'accuracy': round(float(ev.accuracy), 4),
        'loss': round(float(ev.loss), 4), 'class_names': list(ev.class_names),
        'precision': [round(float(x), 4) for x in ev.precision],
        'recall': [round(float(x), 4) for x in ev.recall],
        'support': [int(x) for x in ev.support], 'confusion': [int(x) for x in ev.confusion],
        'misclassified_total': len(ev.misclassified_paths),
        'misclassified': [{'id': sample_id(p), 'label': Path(p).parent.name,
                           'predicted': pred, 'confidence': round(float(conf), 3)}
                          for p, pred, conf in zip(paths, ev.misclassified_predicted,
                                                   ev.misclassified_confidence)],
        '_paths': paths}


def model_dict(info: ModelInfo) -> dict:
    """The figures of a model version the page lists."""
    return {'model_id': info.model_id, 'created': info.created,
            'parent_model_id': info.parent_model_id, 'total_epochs': int(info.total_epochs),
            'saved_epoch': int(info.saved_epoch), 'pretrained': bool(info.pretrained),
            'train_accuracy': round(float(info.train_accuracy), 4),
            'val_accuracy': round(float(info.val_accuracy), 4),
            'train_images': int(info.train_images), 'val_images': int(info.val_images),
            'recipe': info.recipe}


def public(value):
    """``value`` without the keys starting with '_' (kept for the node, not sent)."""
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items() if not k.startswith('_')}
    if isinstance(value, list):
        return [public(v) for v in value]
    return value


def sample_id(path: str) -> str:
    """The page's opaque id of a sample path (the page never sees or sends paths)."""
    return hashlib.sha256(path.encode()).hexdigest()[:16]


def guarded(callback):
    """A ROS callback that logs what it raises instead of ending the node (a node never dies
    from a message it was sent)."""
    @functools.wraps(callback)
    def run(self, *args):
        try:
            return callback(self, *args)
        except Exception as exc:  # logged, the node goes on
            self.get_logger().error(f'{callback.__name__} failed: {exc!r}')
    return run


def asset_folder() -> Path:
    """The page's files: share/gesture_classifier/web (colcon install), or src/.../web in a
    source checkout."""
    try:
        from ament_index_python.packages import get_package_share_directory
        share = Path(get_package_share_directory('gesture_classifier')) / 'web'
        if (share / 'index.html').is_file():
            return share
    except Exception:  # ament_index not importable or package not installed
        pass
    return Path(__file__).resolve().parents[2] / 'web'


class WebNode(Node):
    def __init__(self, **kwargs):
        super().__init__('web', **kwargs)
        self.task = declare_task(self)
        self.classes = self.task.classes
        ro = {'read_only': True}
        self.config = WebConfig(
            host=declare(self, 'host', '127.0.0.1', 'Address to listen on (127.0.0.1: this '
                         'machine only; 0.0.0.0: every interface, a token is then required)',
                         **ro),
            port=declare(self, 'port', 8080, 'TCP port (0: any free port, see the log)',
                         int_range=(0, 65535), **ro),
            token=declare(self, 'token', '', 'Access token; empty: none on localhost, a '
                          'random one printed in the log on any other address', **ro),
            max_fps=declare(self, 'max_fps', 30.0, 'Most video frames per second to one '
                            'viewer', float_range=(0.1, 120.0), **ro),
            max_width=declare(self, 'max_width', 640, 'Video frames are scaled down to at most '
                              'this width before encoding (px)', int_range=(16, 4096), **ro),
            jpeg_quality=declare(self, 'jpeg_quality', 80, 'JPEG quality of the video',
                                 int_range=(10, 95), **ro),
            state_rate=declare(self, 'state_rate', 30.0, 'Most state updates per second to '
                               'one page', float_range=(1.0, 60.0), **ro),
            max_viewers=declare(self, 'max_viewers', 4, 'Most simultaneous video streams',
                                int_range=(1, 64), **ro),
            camera_sources=tuple(s for s in declare(
                self, 'camera_sources', ['0', 'csi://0'], 'Camera sources the page may '
                'switch to (exactly these strings; nothing else is passed on)', **ro) if s),
        )
        self.stale_after = declare(self, 'stale_after', 2.0, 'Seconds without a camera frame '
                                   'before the page says the input is stale',
                                   float_range=(0.1, 3600.0), **ro)
        self.call_timeout = declare(self, 'call_timeout', 10.0, 'Seconds to wait for a service '
                                    'answer or a goal acceptance', float_range=(0.5, 600.0),
                                    **ro)
        self.record_interval = declare(self, 'record_interval', 0.2, 'Seconds between the '
                                       'frames saved while "hold to record" is pressed',
                                       float_range=(0.0, 60.0), **ro)
        self._lock = threading.Lock()  # guards the state below (ROS thread vs web loop)
        self._dataset: dict | None = None
        self._dataset_dir: Path | None = None
        self._samples: dict[str, list[str]] = {c: [] for c in self.classes}  # newest first
        self._counts: dict[str, int | None] = {c: None for c in self.classes}
        self._prediction: dict | None = None
        self._pred_times: collections.deque[float] = collections.deque(maxlen=30)
        self._model: dict | None = None
        self._source: str | None = None
        self._frame_times: collections.deque[float] = collections.deque(maxlen=30)
        self._frame_size: tuple[int, int] | None = None
        self._stale = False
        self._notices: collections.deque[dict] = collections.deque(maxlen=8)
        self._training: dict = {'state': 'idle', 'history': []}
        self._models: dict | None = None      # the trainer's ModelList
        self._evaluation: dict = {'state': 'idle'}
        self._eval_goal = None
        self._goal = None              # the ClientGoalHandle of the page's running goal
        self._goal_busy = False        # a goal is being sent or runs (web loop only)
        self._frames: FrameHub | None = None
        self._changed: Signal | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._asking: set = set()      # get_parameters clients with a request under way
        # the classifier's gesture_threshold / gesture_smoothing (None until known) and the
        # newest gesture event
        self._gesture: dict = {'threshold': None, 'smoothing': None, 'label': None,
                               'confidence': None, 'since': None}
        self.port = 0                  # the port listened on, once started
        self.url = ''

        self._collect = self.create_client(Collect, 'collect')
        self._set_params = self.create_client(SetParameters, 'camera/set_parameters')
        self._get_params = self.create_client(GetParameters, 'camera/get_parameters')
        self._set_cls_params = self.create_client(SetParameters, 'classifier/set_parameters')
        self._get_cls_params = self.create_client(GetParameters, 'classifier/get_parameters')
        self._record = self.create_client(Record, 'record')
        self._delete = self.create_client(DeleteSamples, 'delete_samples')
        self._undo = self.create_client(UndoCollect, 'undo_collect')
        self._restore = self.create_client(RestoreSamples, 'restore_samples')
        self._train = ActionClient(self, Train, 'train')
        self._evaluate = ActionClient(self, Evaluate, 'evaluate')
        self._select = self.create_client(SelectModel, 'select_model')
        ns = self.get_namespace().rstrip('/')
        self._camera_fqn = f'{ns}/camera'
        self._classifier_fqn = f'{ns}/classifier'
        self._watched = {f'{ns}/{n}'.lstrip('/').replace('/', '.') for n in WATCHED_NODES}
        self._image_sub = None         # image_raw, only while a page shows the video
        self._unwatched_since: float | None = None
        self.create_subscription(Prediction, 'predictions', self._on_prediction,
                                 PREDICTION_QOS)
        self.create_subscription(ModelInfo, 'model', self._on_model, MODEL_QOS)
        self.create_subscription(GestureEvent, 'gestures', self._on_gesture, PREDICTION_QOS)
        self.create_subscription(DatasetState, 'dataset', self._on_dataset, LATCHED_QOS)
        self.create_subscription(ModelList, 'models', self._on_models, LATCHED_QOS)
        self.create_subscription(ParameterEvent, '/parameter_events', self._on_parameters,
                                 QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE))
        self.create_subscription(Log, '/rosout', self._on_log, QoSProfile(
            depth=50, reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.VOLATILE))
        self.create_timer(0.2, self._tick)

    # -- the web server thread -----------------------------------------------------------------
    def start(self) -> WebNode:
        """Start the HTTP server thread and wait until it listens.

        Raises:
            ValueError: the address cannot be used (port taken, unknown host) or the page's
                files are missing.
        """
        cfg = self.config
        token, generated = effective_token(cfg.host, cfg.token)
        try:
            assets = read_assets(asset_folder())
        except OSError as exc:
            raise ValueError(f'the page\'s files are missing: {exc}') from None
        ready, failure = threading.Event(), []
        self._thread = threading.Thread(
            target=self._serve, args=(WebConfig(**{**cfg.__dict__, 'token': token}), assets,
                                      ready, failure), name='web', daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise ValueError(f'cannot listen on {cfg.host}:{cfg.port}: {failure[0]}')
        host = cfg.host if cfg.host not in ('0.0.0.0', '::', '') else socket.gethostname()
        host = f'[{host}]' if ':' in host else host
        self.url = f'http://{host}:{self.port}/'
        if generated:
            self.get_logger().info(f'serving the page on {cfg.host} port {self.port}; open '
                                   f'{self.url}?token={token}')
        elif token:
            self.get_logger().info(f'serving the page on {self.url} (the token parameter is '
                                   'required)')
        else:
            self.get_logger().info(f'serving the page on {self.url} (this machine only)')
        return self

    def _serve(self, cfg: WebConfig, assets, ready: threading.Event, failure: list) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._frames, self._changed = FrameHub(loop), Signal(loop)
        app = make_app(cfg, self, self._frames, self._changed, assets)
        try:  # aiohttp >= 3.9 takes shutdown_timeout here, 3.8 (Ubuntu 22.04) on the site
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
            site_args = {}
        except TypeError:
            runner = web.AppRunner(app, access_log=None)
            site_args = {'shutdown_timeout': 1.0}
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, cfg.host, cfg.port, **site_args)
            loop.run_until_complete(site.start())
            self.port = runner.addresses[0][1]
        except Exception as exc:  # address in use, unknown host, ...: the node exits
            failure.append(exc)
            ready.set()
            loop.run_until_complete(runner.cleanup())
            loop.close()
            return
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def destroy_node(self):
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=5.0)
        super().destroy_node()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.bump_threadsafe()

    # -- ROS callbacks (executor thread; each only stores and notifies) -----------------------
    @guarded
    def _on_image(self, msg: Image) -> None:
        now = time.monotonic()
        with self._lock:
            self._frame_times.append(now)
            self._frame_size = (msg.width, msg.height)
            back = self._stale
            self._stale = False
        if self._frames is not None:
            self._frames.put(msg)
        if back:
            self._notify()

    @guarded
    def _on_prediction(self, msg: Prediction) -> None:
        now = time.monotonic()
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        age = self.get_clock().now().nanoseconds * 1e-9 - stamp
        with self._lock:
            self._pred_times.append(now)
            self._prediction = {
                'class_names': list(msg.class_names),
                'probabilities': [round(float(p), 4) for p in msg.probabilities],
                'label': msg.label, 'confidence': round(float(msg.confidence), 4),
                'model_id': msg.model_id, 'stamp': stamp,
                'latency_ms': round(age * 1000.0, 1),
                'inference_ms': round(msg.inference_time * 1000.0, 1)}
        self._notify()

    @guarded
    def _on_model(self, info: ModelInfo) -> None:
        if info.task != self.task.name:
            return
        with self._lock:
            self._model = {'model_id': info.model_id, 'class_names': list(info.class_names),
                           'train_accuracy': round(float(info.train_accuracy), 4),
                           'val_accuracy': round(float(info.val_accuracy), 4)}
        self._notify()

    @guarded
    def _on_dataset(self, msg: DatasetState) -> None:
        if msg.task != self.task.name:
            return
        counts = dict(zip(msg.class_names, (int(c) for c in msg.counts)))
        with self._lock:
            self._dataset_dir = Path(msg.dataset_dir)
            self._dataset = {
                'total': int(msg.total), 'size_bytes': int(msg.size_bytes),
                'free_bytes': int(msg.free_bytes), 'trash_count': int(msg.trash_count),
                'recording': bool(msg.recording), 'recording_label': msg.recording_label,
                'recording_saved': int(msg.recording_saved), 'revision': int(msg.revision)}
            for label in self.classes:
                if label in counts:
                    self._counts[label] = counts[label]
            for label, path in zip(msg.class_names, msg.newest_paths):
                if path and label in self._samples:
                    self._add_samples(label, [path])
        self._notify()

    @guarded
    def _on_models(self, msg: ModelList) -> None:
        if msg.task != self.task.name:
            return
        with self._lock:
            self._models = {'current_model_id': msg.current_model_id,
                            'models': [model_dict(m) for m in msg.models]}
        self._notify()

    def _add_samples(self, label: str, paths) -> None:
        """Put ``paths`` (oldest first) at the front of the class's shown samples (lock held)."""
        shown = self._samples[label]
        for path in paths:
            if path in shown:
                shown.remove(path)
            shown.insert(0, path)
        del shown[SAMPLES_SHOWN:]

    def _drop_samples(self, paths) -> None:
        gone = set(paths)
        for shown in self._samples.values():
            shown[:] = [p for p in shown if p not in gone]

    def _set_counts(self, counts) -> None:
        """Counts in class order, as the collector's answers give them (lock held)."""
        for label, n in zip(self.classes, counts):
            self._counts[label] = int(n)

    @guarded
    def _on_parameters(self, event: ParameterEvent) -> None:
        changed = list(event.new_parameters) + list(event.changed_parameters)
        if event.node == self._camera_fqn:
            for p in changed:
                if p.name == 'source':
                    with self._lock:
                        self._source = p.value.string_value
                    self._notify()
        elif event.node == self._classifier_fqn:
            for p in changed:
                if p.name in GESTURE_PARAMS:
                    with self._lock:
                        self._gesture[GESTURE_PARAMS[p.name]] = p.value.double_value
                    self._notify()

    @guarded
    def _on_gesture(self, msg: GestureEvent) -> None:
        with self._lock:
            self._gesture.update(label=msg.label, confidence=round(float(msg.confidence), 4),
                                 since=msg.since.sec + msg.since.nanosec * 1e-9)
        self._notify()

    @guarded
    def _on_log(self, msg: Log) -> None:
        if msg.level < Log.WARN or msg.name not in self._watched:
            return
        with self._lock:
            self._notices.append({'time': time.time(), 'node': msg.name.rsplit('.', 1)[-1],
                                  'level': 'error' if msg.level >= Log.ERROR else 'warning',
                                  'text': msg.msg[:300]})
        self._notify()

    def _watch_frames(self) -> None:
        """Subscribe to ``image_raw`` while a page shows the video, and unsubscribe
        ``UNWATCHED_S`` after the last viewer left: a 640x480 frame costs this process about
        3 ms of CPU to receive (measured by bench/web.py), for nothing when nobody watches.
        (Runs in the executor thread, which owns the subscriptions.)"""
        viewers = self._frames.viewers if self._frames is not None else 0
        now = time.monotonic()
        if viewers and self._image_sub is None:
            self._image_sub = self.create_subscription(Image, 'image_raw', self._on_image,
                                                       IMAGE_SUB_QOS)
        if viewers:
            self._unwatched_since = None
        elif self._image_sub is not None:
            self._unwatched_since = self._unwatched_since or now
            if now - self._unwatched_since > UNWATCHED_S:
                self.destroy_subscription(self._image_sub)
                self._image_sub = None
                with self._lock:
                    self._frame_times.clear()
                    self._stale = False
                self._notify()

    @guarded
    def _tick(self) -> None:
        """Frames only while watched, input staleness, and the camera's source and the
        classifier's gesture parameters once their parameter services answer."""
        self._watch_frames()
        with self._lock:
            last = self._frame_times[-1] if self._frame_times else None
            stale = last is not None and time.monotonic() - last > self.stale_after
            went_stale, self._stale = stale and not self._stale, stale or self._stale
            need_source = self._source is None
            need_gesture = self._gesture['threshold'] is None
        if went_stale:
            self._notify()
        if need_source:
            self._ask_parameters(self._get_params, ['source'], self._store_source)
        if need_gesture:
            self._ask_parameters(self._get_cls_params, list(GESTURE_PARAMS),
                                 self._store_gesture)

    def _ask_parameters(self, client, names: list[str], store) -> None:
        """Ask a node's get_parameters service for ``names`` unless a request is under way;
        ``store(values)`` runs under the lock when all arrive (a lost answer is asked again on
        a later tick)."""
        if client in self._asking or not client.service_is_ready():
            return
        self._asking.add(client)

        def answered(future) -> None:  # logs, never raises into the executor
            self._asking.discard(client)
            try:
                values = future.result().values
                if len(values) == len(names):
                    with self._lock:
                        store(values)
                    self._notify()
            except Exception as exc:  # service went away: asked again on a later tick
                self.get_logger().debug(f'get_parameters {names}: {exc!r}')

        client.call_async(GetParameters.Request(names=names)).add_done_callback(answered)

    def _store_source(self, values) -> None:
        self._source = values[0].string_value

    def _store_gesture(self, values) -> None:
        for key, value in zip(GESTURE_PARAMS.values(), values):
            self._gesture[key] = value.double_value

    # -- what the page can see (webapp.Backend) ------------------------------------------------
    def snapshot(self) -> dict:
        """The state the page shows, as JSON-able values (web loop)."""
        now = time.monotonic()
        with self._lock:
            frames, preds = list(self._frame_times), list(self._pred_times)
            camera_fps = (len(frames) - 1) / (frames[-1] - frames[0]) \
                if len(frames) > 2 and frames[-1] > frames[0] else 0.0
            rate = (len(preds) - 1) / (preds[-1] - preds[0]) \
                if len(preds) > 2 and preds[-1] > preds[0] else 0.0
            if preds and now - preds[-1] > self.stale_after:
                rate = 0.0
            training = dict(self._training)
            training['history'] = [dict(h) for h in self._training['history']]
            return {
                'task': self.task.name, 'classes': list(self.classes),
                'counts': dict(self._counts),
                'prediction': dict(self._prediction) if self._prediction else None,
                'prediction_rate': round(rate, 1),
                'model': dict(self._model) if self._model else None,
                'camera': {'source': self._source, 'sources': list(self.config.camera_sources),
                           'stale': self._stale, 'frames': bool(frames),
                           'watched': self._image_sub is not None,
                           'fps': round(camera_fps, 1),
                           'size': list(self._frame_size) if self._frame_size else None},
                'training': public(training),
                'evaluation': public(self._evaluation),
                'models': dict(self._models) if self._models else None,
                'dataset': dict(self._dataset) if self._dataset else None,
                'samples': {label: [sample_id(p) for p in paths]
                            for label, paths in self._samples.items()},
                'record_interval': self.record_interval,
                'gesture': dict(self._gesture),
                'notices': list(self._notices),
                'video': self._frames.stats() if self._frames else None,
                'time': time.time(),
            }

    # -- what the page can do (webapp.Backend; web loop) ---------------------------------------
    async def _ros(self, future, what: str):
        """Await an rclpy future in the web loop: its done-callback (run by the executor)
        hands the outcome over with ``loop.call_soon_threadsafe``.

        Raises:
            BackendError: no outcome within call_timeout (504; the future is cancelled), or
                the call failed (502).
        """
        loop = asyncio.get_running_loop()
        out = loop.create_future()

        def transfer(f):
            if out.done():
                return
            if f.cancelled():
                out.set_exception(BackendError(f'{what}: cancelled', 502))
            elif f.exception() is not None:
                out.set_exception(BackendError(f'{what}: {f.exception()}', 502))
            else:
                out.set_result(f.result())

        def done(f):
            try:
                loop.call_soon_threadsafe(transfer, f)
            except RuntimeError:  # web loop closed: shutting down
                pass

        future.add_done_callback(done)
        try:
            return await asyncio.wait_for(out, self.call_timeout)
        except asyncio.TimeoutError:
            future.cancel()
            raise BackendError(f'{what}: no answer within {self.call_timeout:g} s',
                               504) from None

    @staticmethod
    def _require(ready: bool, what: str, node: str) -> None:
        if not ready:
            raise BackendError(f'{what} is not available (is the {node} node running?)', 503)

    async def collect(self, label: str) -> dict:
        self._require(self._collect.service_is_ready(), 'the collect service', 'collector')
        res = await self._ros(self._collect.call_async(Collect.Request(label=label)),
                              'collect')
        if not res.success:
            raise BackendError(res.message)
        with self._lock:
            self._counts[label] = int(res.count)
            self._add_samples(label, list(res.paths) or [res.path])
        return {'label': label, 'count': int(res.count), 'message': res.message}

    async def record(self, label: str | None) -> dict:
        """Start (``label``) or stop (None) hold-to-record."""
        self._require(self._record.service_is_ready(), 'the record service', 'collector')
        req = Record.Request(stop=True) if label is None else Record.Request(
            stop=False, label=label, max_count=0, interval=float(self.record_interval),
            max_duration=0.0)
        res = await self._ros(self._record.call_async(req), 'record')
        if res.paths:  # dataset layout <class>/<file>
            with self._lock:
                label = Path(res.paths[0]).parent.name
                if label in self._samples:
                    self._add_samples(label, list(res.paths))
        if not res.success and not res.saved:
            raise BackendError(res.message)
        return {'saved': int(res.saved), 'count': int(res.count), 'message': res.message}

    async def delete_sample(self, path: str) -> dict:
        self._require(self._delete.service_is_ready(), 'the delete_samples service',
                      'collector')
        res = await self._ros(self._delete.call_async(DeleteSamples.Request(paths=[path])),
                              'delete')
        return self._removed(res, res.deleted)

    async def undo(self, label: str) -> dict:
        self._require(self._undo.service_is_ready(), 'the undo_collect service', 'collector')
        res = await self._ros(self._undo.call_async(UndoCollect.Request(label=label, count=1)),
                              'undo')
        return self._removed(res, res.deleted)

    def _removed(self, res, paths) -> dict:
        if not res.success:
            raise BackendError(res.message)
        with self._lock:
            self._drop_samples(paths)
            self._set_counts(res.counts)
        return {'removed': len(paths), 'message': res.message}

    async def restore(self) -> dict:
        self._require(self._restore.service_is_ready(), 'the restore_samples service',
                      'collector')
        res = await self._ros(self._restore.call_async(RestoreSamples.Request(paths=[])),
                              'restore')
        if not res.success:
            raise BackendError(res.message)
        with self._lock:
            self._set_counts(res.counts)
            for path in res.restored:
                label = Path(path).parent.name
                if label in self._samples:
                    self._add_samples(label, [path])
        return {'restored': len(res.restored), 'message': res.message}

    async def select_model(self, model_id: str) -> dict:
        with self._lock:
            known = {m['model_id'] for m in (self._models or {}).get('models', [])}
        if model_id not in known:
            raise BackendError('no such model in the trainer\'s list', 404)
        self._require(self._select.service_is_ready(), 'the select_model service', 'trainer')
        res = await self._ros(self._select.call_async(SelectModel.Request(model_id=model_id)),
                              'select model')
        if not res.success:
            raise BackendError(res.message)
        return {'model_id': model_id, 'message': res.message}

    async def evaluate(self) -> dict:
        """Evaluate the current model (the trainer's ``evaluate`` action, in the
        background: progress and figures arrive with the state)."""
        if self._eval_goal is not None:
            raise BackendError('an evaluation from this page is still running')
        self._require(self._evaluate.server_is_ready(), 'the evaluate action', 'trainer')
        with self._lock:
            self._evaluation = {'state': 'sending'}
        handle = await self._ros(start_on_executor(self, lambda: self._evaluate.send_goal_async(
            Evaluate.Goal(model_id='', batch_size=0),
            feedback_callback=self._on_eval_feedback)), 'send the evaluate goal')
        if not handle.accepted:
            message = 'the trainer rejected the evaluation (it is busy: a goal runs)'
            with self._lock:
                self._evaluation = {'state': 'rejected', 'message': message}
            raise BackendError(message)
        self._eval_goal = handle
        with self._lock:
            self._evaluation['state'] = 'running'
        start_on_executor(self, handle.get_result_async).add_done_callback(self._on_eval_result)
        return {'accepted': True}

    @guarded
    def _on_eval_feedback(self, msg) -> None:
        fb = msg.feedback
        with self._lock:
            self._evaluation.update(progress=round(float(fb.progress), 4),
                                    images_done=int(fb.images_done),
                                    images_total=int(fb.images_total))
        self._notify()

    @guarded
    def _on_eval_result(self, future) -> None:
        try:
            r = future.result().result
            outcome = {'state': 'succeeded' if r.success else 'failed', 'message': r.message,
                       'model_id': r.model_id, 'progress': 1.0 if r.success else 0.0,
                       'validation': evaluation_dict(r.validation),
                       'training': evaluation_dict(r.training), 'skipped': int(r.skipped)}
        except Exception as exc:  # the trainer went away
            outcome = {'state': 'failed', 'message': f'no result: {exc}'}
        with self._lock:
            self._evaluation = outcome
        self._eval_goal = None
        self._notify()

    def sample_path(self, sid: str) -> Path | None:
        """The path of a sample shown on the page, by its id; None for any other id."""
        with self._lock:
            shown = [p for paths in self._samples.values() for p in paths]
            for ev in (self._evaluation, self._training.get('evaluation') or {}):
                for split in ('validation', 'training'):
                    shown += (ev.get(split) or {}).get('_paths', [])
        for path in shown:
            if sample_id(path) == sid:
                return Path(path)
        return None

    def dataset_dir(self) -> Path:
        """The dataset folder the collector reports (thumbnails must lie inside)."""
        with self._lock:
            return self._dataset_dir or self.task.dataset_dir

    async def _set_parameters(self, client, node: str, refused: str, **values) -> None:
        """Set ``values`` on ``node`` through its set_parameters ``client``; BackendError
        (409) ``'<refused>: <reasons>'`` when the node refuses any (its set-parameters
        callback validates them)."""
        self._require(client.service_is_ready(), f"the {node}'s parameters", node)
        res = await self._ros(client.call_async(set_parameters_request(**values)),
                              f'set parameters of the {node}')
        reasons = [r.reason for r in res.results if not r.successful]
        if len(res.results) != len(values) or reasons:
            raise BackendError(f'{refused}: ' + ('; '.join(reasons) or 'no answer'))

    async def set_camera_source(self, source: str) -> dict:
        await self._set_parameters(self._set_params, 'camera', 'the camera refused the source',
                                   source=source)
        with self._lock:
            self._source = source
        return {'source': source}

    async def set_gesture(self, threshold: float, smoothing: float) -> dict:
        """Set the classifier's gesture_threshold and gesture_smoothing."""
        threshold, smoothing = float(threshold), float(smoothing)
        await self._set_parameters(self._set_cls_params, 'classifier',
                                   'the classifier refused', gesture_threshold=threshold,
                                   gesture_smoothing=smoothing)
        with self._lock:
            self._gesture.update(threshold=threshold, smoothing=smoothing)
        return {'threshold': threshold, 'smoothing': smoothing}

    async def train(self, epochs: int, start: str = 'auto') -> dict:
        if self._goal_busy:
            raise BackendError('a training goal sent from this page is still running')
        self._require(self._train.server_is_ready(), 'the train action', 'trainer')
        self._goal_busy = True
        try:
            with self._lock:
                self._training = {'state': 'sending', 'epochs': epochs, 'history': []}
            goal = Train.Goal(epochs=epochs, start=_START[start])
            handle = await self._ros(start_on_executor(self, lambda: self._train.send_goal_async(
                goal, feedback_callback=self._on_feedback)), 'send the train goal')
        except BaseException:
            self._goal_busy = False
            with self._lock:
                self._training = {'state': 'idle', 'history': []}
            raise
        if not handle.accepted:
            self._goal_busy = False
            message = ('the trainer rejected the goal: another goal is running or a value is '
                       'out of range (the trainer log says which)')
            with self._lock:
                self._training = {'state': 'rejected', 'message': message, 'history': []}
            raise BackendError(message)
        self._goal = handle
        with self._lock:
            self._training['state'] = 'running'
        start_on_executor(self, handle.get_result_async).add_done_callback(self._on_result)
        return {'accepted': True, 'epochs': epochs}

    async def cancel_training(self) -> dict:
        handle = self._goal
        if handle is None:
            raise BackendError('no training goal sent from this page is running')
        res = await self._ros(start_on_executor(self, handle.cancel_goal_async), 'cancel')
        accepted = len(res.goals_canceling) > 0
        if accepted:
            with self._lock:
                self._training['state'] = 'canceling'
        return {'canceling': accepted}

    @guarded
    def _on_feedback(self, msg) -> None:
        fb = msg.feedback
        with self._lock:
            t = self._training
            history = t['history']
            if fb.epoch >= 2 and len(history) >= fb.epoch - 1 and fb.val_accuracy >= 0:
                history[fb.epoch - 2]['val_accuracy'] = round(float(fb.val_accuracy), 4)
            while len(history) < fb.epoch:
                history.append({'epoch': len(history) + 1})
            history[fb.epoch - 1].update(loss=round(float(fb.loss), 4),
                                         accuracy=round(float(fb.accuracy), 4))
            t.update(epoch=int(fb.epoch), epochs=int(fb.epochs), batch=int(fb.batch),
                     batches=int(fb.batches), progress=round(float(fb.progress), 4),
                     loss=round(float(fb.loss), 4), accuracy=round(float(fb.accuracy), 4))
        self._notify()

    @guarded
    def _on_result(self, future) -> None:
        try:
            response = future.result()
            status, r = response.status, response.result
            outcome = {'state': _STATUS.get(status, 'failed'), 'message': r.message,
                       'model_id': r.model_id, 'epochs_completed': int(r.epochs_completed),
                       'train_accuracy': round(float(r.train_accuracy), 4),
                       'val_accuracy': round(float(r.val_accuracy), 4),
                       'train_images': int(r.train_images), 'val_images': int(r.val_images),
                       'pretrained': bool(r.pretrained), 'continued': bool(r.continued),
                       'parent_model_id': r.parent_model_id,
                       'total_epochs': int(r.total_epochs), 'saved_epoch': int(r.saved_epoch),
                       'evaluation': {'validation': evaluation_dict(r.validation),
                                      'training': evaluation_dict(r.training)}}
        except Exception as exc:  # the trainer went away
            outcome = {'state': 'failed', 'message': f'no result: {exc}'}
        with self._lock:
            history = self._training.get('history', [])
            if history and outcome.get('val_accuracy', -1) >= 0 and \
                    outcome.get('epochs_completed') == len(history):
                history[-1]['val_accuracy'] = outcome['val_accuracy']
            if outcome['state'] == 'succeeded':
                outcome['progress'] = 1.0
            self._training.update(outcome)
        self._goal = None
        if self._loop is not None:
            self._loop.call_soon_threadsafe(setattr, self, '_goal_busy', False)
        self._notify()


def main(args=None):
    run_node(lambda: WebNode().start(), args)


if __name__ == '__main__':
    main()
