"""The web page's backend (:class:`~gesture_classifier.web.app.Backend`): what the page shows,
kept from the system's topics, and what it does, as calls of the one client the CLI uses too
(:class:`~gesture_classifier.ros.client.GestureClient`), so lost answers, the Jazzy
action-client workaround and timeouts are handled in one place.

Threads: the ``on_*`` handlers run in the ROS executor's thread and only store and notify;
the actions are coroutines of the HTTP loop and await the client's futures, handed over with
``loop.call_soon_threadsafe``; ``_lock`` guards the state between them. A goal's busy flag is
checked and taken before the first ``await``, and cleared together with the goal's state.
"""
from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import logging
import math
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from action_msgs.msg import GoalStatus
from gesture_interfaces.action import Evaluate, Train
from gesture_interfaces.srv import (Collect, DeleteSamples, GetReviewFrame, LabelReview, Record,
                                    RestoreSamples, SelectModel, UndoCollect)
from rcl_interfaces.msg import Log
from rcl_interfaces.srv import GetParameters
from sensor_msgs.msg import CompressedImage

from ..core.archive import ArchiveError, ArchiveWriter, Member, import_archive
from ..core.datasync import MAX_BATCH, MAX_PAGE, DatasetSyncError, read_listing
from ..core.tasks import Task
from ..core.transfer import CHUNK_BYTES
from ..ros.client import (CLASS_NODES, ClientError, ClientTimeout, GestureClient,
                          set_parameters_request)
from .app import BackendError

__all__ = ['PageSettings', 'PageBackend', 'WEB_USES', 'GESTURE_PARAMS', 'WATCHED_NODES',
           'evaluation_dict', 'model_dict', 'public', 'sample_id']

LOG = logging.getLogger(__name__)

#: The client endpoints the web node has (its SROS2 enclave allows exactly these).
WEB_USES = ('collect', 'record', 'delete_samples', 'undo_collect', 'restore_samples',
            'select_model', 'camera/get_parameters', 'camera/set_parameters',
            'classifier/get_parameters', 'classifier/set_parameters', 'train', 'evaluate',
            'trainer/get_parameters', 'collector/get_parameters', 'get_review_frame',
            'label_review', 'list_samples', 'get_samples', 'add_sample', 'get_model',
            'put_model', 'trainer/set_parameters', 'collector/set_parameters')

#: The classifier parameters the page's sliders set -> key in the page's state.
GESTURE_PARAMS = {'gesture_threshold': 'threshold', 'gesture_smoothing': 'smoothing'}
#: The page's limits: node -> (parameter, key in the page's state). The page offers only what
#: these allow, and the HTTP side refuses more before asking the node.
LIMIT_PARAMS = {'trainer': ('max_epochs', 'max_epochs'), 'collector': ('max_burst', 'max_burst')}
#: Nodes whose warnings and errors the page shows as notices.
WATCHED_NODES = ('camera', 'collector', 'trainer', 'classifier')
_STATUS = {GoalStatus.STATUS_SUCCEEDED: 'succeeded', GoalStatus.STATUS_CANCELED: 'canceled',
           GoalStatus.STATUS_ABORTED: 'failed'}
#: The page's start choices -> Train.Goal.start.
_START = {'auto': Train.Goal.START_AUTO, 'continue': Train.Goal.START_CONTINUE,
          'fresh': Train.Goal.START_FRESH}
#: Newest samples per class the page shows as thumbnails.
SAMPLES_SHOWN = 6
#: Thumbnails per page of a class's samples (all reachable, newest first).
PAGE_SIZE = 12
#: Sample ids of listed pages remembered for thumbnails and delete (the newest listings).
LISTED_KEPT = 2000
#: Image files a class folder may hold (what the collector writes and the trainer reads).
SAMPLE_SUFFIXES = ('.jpg', '.jpeg', '.png')
#: Misclassified samples of one evaluation the page shows.
MISCLASSIFIED_SHOWN = 12
#: Seconds between two add_sample calls of an import (the collector's max_collect_rate is
#: 20/s by default), and the retries of one sample it answers "too many requests" (a user
#: collecting meanwhile, a lower rate), waiting twice as long each time.
IMPORT_PERIOD = 0.06
IMPORT_RETRIES = 8
#: A model_id that can be a file name (core.versions.MODEL_ID_PATTERN, not imported: that
#: module loads torch).
MODEL_ID = re.compile(r'[A-Za-z0-9][A-Za-z0-9_-]{0,127}')
#: Seconds each list_samples / get_samples / get_model / add_sample call may take.
TRANSFER_TIMEOUT = 30.0


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


def model_dict(info) -> dict:
    """The figures of a model version (gesture_interfaces/msg/ModelInfo) the page lists."""
    return {'model_id': info.model_id, 'created': info.created,
            'parent_model_id': info.parent_model_id, 'total_epochs': int(info.total_epochs),
            'saved_epoch': int(info.saved_epoch), 'pretrained': bool(info.pretrained),
            'train_accuracy': round(float(info.train_accuracy), 4),
            'val_accuracy': round(float(info.val_accuracy), 4),
            'train_images': int(info.train_images), 'val_images': int(info.val_images),
            'recipe': info.recipe}


def result_dict(status: int, r) -> dict:
    """The page's training outcome of a Train result."""
    return {'state': _STATUS.get(status, 'failed'), 'message': r.message,
            'model_id': r.model_id, 'epochs_completed': int(r.epochs_completed),
            'train_accuracy': round(float(r.train_accuracy), 4),
            'val_accuracy': round(float(r.val_accuracy), 4),
            'train_images': int(r.train_images), 'val_images': int(r.val_images),
            'pretrained': bool(r.pretrained), 'continued': bool(r.continued),
            'parent_model_id': r.parent_model_id, 'total_epochs': int(r.total_epochs),
            'saved_epoch': int(r.saved_epoch),
            'evaluation': {'validation': evaluation_dict(r.validation),
                           'training': evaluation_dict(r.training)}}


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


def _class_files(folder: Path) -> list[str]:
    """Names of the regular image files directly in ``folder`` (no symbolic links, nothing
    hidden), newest first (modification time, then name); [] when the folder is missing."""
    found = []
    try:
        with os.scandir(folder) as entries:
            for e in entries:
                if e.name.startswith('.') or not e.name.lower().endswith(SAMPLE_SUFFIXES):
                    continue
                if e.is_file(follow_symlinks=False):
                    found.append((e.stat(follow_symlinks=False).st_mtime_ns, e.name))
    except OSError:
        return []
    found.sort(reverse=True)
    return [name for _, name in found]


def _rate(times) -> float:
    """Events per second over the kept times (0 with fewer than three)."""
    return (len(times) - 1) / (times[-1] - times[0]) \
        if len(times) > 2 and times[-1] > times[0] else 0.0


def guarded(handler):
    """A handler of a ROS message or future that logs what it raises instead of ending the
    node (a node never dies from a message it was sent)."""
    @functools.wraps(handler)
    def run(self, *args):
        try:
            return handler(self, *args)
        except Exception as exc:  # logged, the node goes on
            LOG.error(f'{handler.__name__} failed: {exc!r}')
    return run


@dataclass(frozen=True)
class PageSettings:
    """The web node's parameters the backend uses (see nodes/web.py)."""

    camera_sources: tuple[str, ...] = ()
    stale_after: float = 2.0
    call_timeout: float = 10.0
    record_interval: float = 0.2
    namespace: str = ''


class PageBackend:
    """The page's state and actions for ``task`` through ``client`` (a GestureClient with
    :data:`WEB_USES`). ``attach`` gives it the HTTP side's frame hub and change signal once
    the server runs; ``clock`` (monotonic seconds) and ``ros_now`` (the node's ROS clock,
    seconds) are injectable for tests."""

    def __init__(self, task: Task, settings: PageSettings, client: GestureClient, *,
                 ros_now: Callable[[], float] = time.time, clock=time.monotonic,
                 set_own_classes: Callable[[tuple[str, ...]], str] | None = None):
        self.task, self.settings, self.client = task, settings, client
        # sets the web node's own `classes` parameter; returns '' or the refusal's reason
        self._set_own_classes = set_own_classes
        self.classes, self.task_name = task.classes, task.name
        self._ros_now, self._clock = ros_now, clock
        ns = settings.namespace.rstrip('/')
        self.camera_fqn, self.classifier_fqn = f'{ns}/camera', f'{ns}/classifier'
        self._watched = {f'{ns}/{n}'.lstrip('/').replace('/', '.') for n in WATCHED_NODES}
        self._lock = threading.Lock()  # guards the state below (ROS thread vs web loop)
        self._dataset: dict | None = None
        self._last_dataset = None      # the collector's newest DatasetState message
        self._dataset_dir: Path | None = None
        self._samples: dict[str, list[str]] = {c: [] for c in self.classes}  # newest first
        # id -> path of the samples of the pages listed lately (oldest listing first)
        self._listed: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._counts: dict[str, int | None] = {c: None for c in self.classes}
        self._prediction: dict | None = None
        self._pred_times: collections.deque[float] = collections.deque(maxlen=30)
        self._model: dict | None = None
        self._source: str | None = None
        self._own_source: str | None = None   # the first source the camera reported
        self._limits: dict[str, int | None] = {key: None for _, key in LIMIT_PARAMS.values()}
        self._frame_times: collections.deque[float] = collections.deque(maxlen=30)
        self._frame_size: tuple[int, int] | None = None
        self._stale = False
        self._watching = False         # the image subscription exists (a page shows video)
        self._notices: collections.deque[dict] = collections.deque(maxlen=8)
        self._training: dict = {'state': 'idle', 'history': []}
        self._models: dict | None = None      # the trainer's ModelList
        self._review: dict | None = None      # the classifier's ReviewQueue
        self._evaluation: dict = {'state': 'idle'}
        self._eval_busy = False        # an evaluate goal is being sent or runs
        self._goal = None              # the ClientGoalHandle of the page's running goal
        self._goal_busy = False        # a train goal is being sent or runs
        # get_parameters services with a request under way -> when it is given up (a request
        # sent while the service's reply path is still being matched can be lost: asked again)
        self._asking: dict[str, float] = {}
        # the classifier's gesture_threshold / gesture_smoothing (None until known) and the
        # newest gesture event
        self._gesture: dict = {'threshold': None, 'smoothing': None, 'label': None,
                               'confidence': None, 'since': None}
        self.frames = None             # web.app.FrameHub, once the server runs
        self._changed = None           # web.app.Signal, once the server runs
        self._import_busy = False      # a dataset import runs (one at a time)

    def attach(self, frames, changed) -> None:
        """The HTTP side's FrameHub and change Signal (called when the server starts)."""
        self.frames, self._changed = frames, changed

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.bump_threadsafe()

    # -- what arrives from ROS (executor thread; each only stores and notifies) ----------------
    @guarded
    def on_image(self, msg) -> None:
        with self._lock:
            self._frame_times.append(self._clock())
            self._frame_size = (msg.width, msg.height)
            back, self._stale = self._stale, False
        if self.frames is not None:
            self.frames.put(msg)
        if back:
            self._notify()

    @guarded
    def on_prediction(self, msg) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        age = self._ros_now() - stamp
        with self._lock:
            self._pred_times.append(self._clock())
            self._prediction = {
                'class_names': list(msg.class_names),
                'probabilities': [round(float(p), 4) for p in msg.probabilities],
                'label': msg.label, 'confidence': round(float(msg.confidence), 4),
                'model_id': msg.model_id, 'stamp': stamp,
                # the classifier's out-of-distribution verdict: False = "unsure"
                'trusted': bool(getattr(msg, 'trusted', True)),
                'ood_score': round(float(getattr(msg, 'ood_score', 0.0)), 3),
                'latency_ms': round(age * 1000.0, 1),
                'inference_ms': round(msg.inference_time * 1000.0, 1)}
        self._notify()

    @guarded
    def on_model(self, info) -> None:
        if info.task != self.task.name:
            return
        with self._lock:
            self._model = {'model_id': info.model_id, 'class_names': list(info.class_names),
                           'train_accuracy': round(float(info.train_accuracy), 4),
                           'val_accuracy': round(float(info.val_accuracy), 4)}
        self._notify()

    def set_task(self, task: Task) -> None:
        """Follow ``task``: this task with classes added (the web node's ``classes``
        parameter). The page shows their cards; counts and newest samples come from the
        collector's last dataset state."""
        with self._lock:
            self.task, self.classes = task, task.classes
            for label in task.classes:
                self._samples.setdefault(label, [])
                self._counts.setdefault(label, None)
            last = self._last_dataset
        if last is not None:
            self.on_dataset(last)
        self._notify()

    @guarded
    def on_dataset(self, msg) -> None:
        if msg.task != self.task.name:
            return
        counts = dict(zip(msg.class_names, (int(c) for c in msg.counts)))
        with self._lock:
            self._last_dataset = msg  # for set_task: it may list classes learnt later
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
    def on_models(self, msg) -> None:
        if msg.task != self.task.name:
            return
        with self._lock:
            self._models = {'current_model_id': msg.current_model_id,
                            'models': [model_dict(m) for m in msg.models]}
        self._notify()

    @guarded
    def on_review_queue(self, msg) -> None:
        """review_queue: the frames the classifier was least sure about (latched)."""
        items = [{'id': int(i.id), 'label': i.label, 'confidence': round(float(i.confidence), 3),
                  'margin': round(float(i.margin), 3), 'trusted': bool(i.trusted),
                  'ood_score': round(float(i.ood_score), 3),
                  'uncertainty': round(float(i.uncertainty), 3)} for i in msg.items]
        with self._lock:
            self._review = {'model_id': msg.model_id, 'capacity': int(msg.capacity),
                            'revision': int(msg.revision), 'items': items}
        self._notify()

    @guarded
    def on_parameters(self, event) -> None:
        """/parameter_events: the camera's source, the classifier's gesture parameters."""
        changed = list(event.new_parameters) + list(event.changed_parameters)
        with self._lock:
            if event.node == self.camera_fqn:
                values = [p.value.string_value for p in changed if p.name == 'source']
                if values:
                    self._set_source(values[-1])
            elif event.node == self.classifier_fqn:
                values = [(GESTURE_PARAMS[p.name], p.value.double_value) for p in changed
                          if p.name in GESTURE_PARAMS]
                self._gesture.update(values)
            else:
                return
        if values:
            self._notify()

    @guarded
    def on_gesture(self, msg) -> None:
        with self._lock:
            self._gesture.update(label=msg.label, confidence=round(float(msg.confidence), 4),
                                 since=msg.since.sec + msg.since.nanosec * 1e-9)
        self._notify()

    @guarded
    def on_log(self, msg) -> None:
        """/rosout: warnings and errors of the watched nodes become notices."""
        if msg.level < Log.WARN or msg.name not in self._watched:
            return
        with self._lock:
            self._notices.append({'time': time.time(), 'node': msg.name.rsplit('.', 1)[-1],
                                  'level': 'error' if msg.level >= Log.ERROR else 'warning',
                                  'text': msg.msg[:300]})
        self._notify()

    def set_watching(self, watching: bool) -> None:
        """Whether the image subscription exists; its end forgets the frame times."""
        with self._lock:
            self._watching = watching
            if not watching:
                self._frame_times.clear()
                self._stale = False
        if not watching:
            self._notify()

    @guarded
    def tick(self) -> None:
        """Timer: input staleness, and the camera's source and the classifier's gesture
        parameters until their parameter services have answered."""
        with self._lock:
            last = self._frame_times[-1] if self._frame_times else None
            stale = last is not None and self._clock() - last > self.settings.stale_after
            went_stale, self._stale = stale and not self._stale, stale or self._stale
            need_source = self._source is None
            need_gesture = self._gesture['threshold'] is None
            need_limits = [node for node, (_, key) in LIMIT_PARAMS.items()
                           if self._limits[key] is None]
        if went_stale:
            self._notify()
        if need_source:
            self._ask_parameters('camera', ['source'], self._store_source)
        if need_gesture:
            self._ask_parameters('classifier', list(GESTURE_PARAMS), self._store_gesture)
        for node in need_limits:
            name, key = LIMIT_PARAMS[node]
            self._ask_parameters(node, [name], functools.partial(self._store_limit, key))

    def _ask_parameters(self, node: str, names: list[str], store) -> None:
        """Ask ``node``'s get_parameters service for ``names`` unless a request is under way;
        ``store(values)`` runs under the lock when all arrive. A request without an answer
        after ``call_timeout`` s is asked again on a later tick (a lost request or answer)."""
        service = f'{node}/get_parameters'
        now = self._clock()
        if self._asking.get(service, -math.inf) > now or not self.client.ready(service):
            return
        self._asking[service] = now + self.settings.call_timeout

        def answered(future) -> None:  # logs, never raises into the executor
            self._asking.pop(service, None)
            try:
                values = future.result().values
                if len(values) == len(names):
                    with self._lock:
                        store(values)
                    self._notify()
            except Exception as exc:  # service went away: asked again on a later tick
                LOG.debug(f'get_parameters {names}: {exc!r}')

        self.client.call_async(service, GetParameters.Request(names=names)).add_done_callback(
            answered)

    def _store_source(self, values) -> None:
        self._set_source(values[0].string_value)

    def _set_source(self, source: str) -> None:
        """The camera's source now (lock held); the first one is kept as a way back."""
        self._source = source
        if self._own_source is None and source:
            self._own_source = source

    def _store_limit(self, key: str, values) -> None:
        self._limits[key] = int(values[0].integer_value) or None

    def camera_sources(self) -> tuple[str, ...]:
        """The sources the page may switch the camera to: the web node's camera_sources and
        the source the camera started with (so that a switch to a camera that is not there,
        or to another class's folder, can always be undone from the page)."""
        with self._lock:
            own = self._own_source
        sources = self.settings.camera_sources
        return sources + (own,) if own and own not in sources else sources

    def limits(self) -> dict[str, int | None]:
        """max_epochs (trainer) and max_burst (collector); None while not known."""
        with self._lock:
            return dict(self._limits)

    def _store_gesture(self, values) -> None:
        for key, value in zip(GESTURE_PARAMS.values(), values):
            self._gesture[key] = value.double_value

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
        for sid in [sid for sid, p in self._listed.items() if p in gone]:
            del self._listed[sid]
        for shown in self._samples.values():
            shown[:] = [p for p in shown if p not in gone]

    def _set_counts(self, counts) -> None:
        """Counts in class order, as the collector's answers give them (lock held)."""
        for label, n in zip(self.classes, counts):
            self._counts[label] = int(n)

    # -- what the page can see (web loop) ------------------------------------------------------
    def _current_evaluation(self) -> dict:
        """The page's evaluation, unless it is of another model than the one in use now
        (then only which model it was of; lock held)."""
        ev = public(self._evaluation)
        current = (self._model or {}).get('model_id')
        if ev.get('state') == 'succeeded' and current and ev.get('model_id') != current:
            return {'state': 'idle', 'outdated_model_id': ev.get('model_id')}
        return ev

    def snapshot(self) -> dict:
        """The state the page shows, as JSON-able values."""
        sources = list(self.camera_sources())
        now = self._clock()
        with self._lock:
            frames, preds = list(self._frame_times), list(self._pred_times)
            rate = _rate(preds)
            if preds and now - preds[-1] > self.settings.stale_after:
                rate = 0.0
            training = dict(self._training)
            training['history'] = [dict(h) for h in self._training['history']]
            return {
                'task': self.task.name, 'classes': list(self.classes),
                'counts': dict(self._counts),
                'prediction': dict(self._prediction) if self._prediction else None,
                'prediction_rate': round(rate, 1),
                # no prediction for stale_after s (the camera or the classifier stopped):
                # the last one is not shown as live
                'prediction_stale': bool(preds) and now - preds[-1] >
                self.settings.stale_after,
                'model': dict(self._model) if self._model else None,
                'camera': {'source': self._source,
                           'sources': sources,
                           'stale': self._stale, 'frames': bool(frames),
                           'watched': self._watching, 'fps': round(_rate(frames), 1),
                           'size': list(self._frame_size) if self._frame_size else None},
                'training': public(training),
                'evaluation': self._current_evaluation(),
                'limits': dict(self._limits),
                'models': dict(self._models) if self._models else None,
                'review': dict(self._review) if self._review else None,
                'dataset': dict(self._dataset) if self._dataset else None,
                'samples': {label: [sample_id(p) for p in paths]
                            for label, paths in self._samples.items()},
                'record_interval': self.settings.record_interval,
                'gesture': dict(self._gesture),
                'notices': list(self._notices),
                'video': self.frames.stats() if self.frames else None,
                'time': time.time(),
            }

    async def list_samples(self, label: str, page: int) -> dict:
        """Page ``page`` (0: the newest) of the samples of class ``label``, newest first, as
        page ids: every sample is reachable, not only those collected since the node started.
        Reads (in a worker thread) only the names and times of the regular image files of the
        class's folder in the dataset folder the collector reports; symbolic links, hidden
        and other files are left out."""
        folder = self.dataset_dir() / label
        files = await asyncio.get_running_loop().run_in_executor(None, _class_files, folder)
        pages = max(1, -(-len(files) // PAGE_SIZE))
        page = min(max(0, page), pages - 1)
        shown = [str(folder / name) for name in files[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]]
        with self._lock:
            for path in shown:
                sid = sample_id(path)
                self._listed.pop(sid, None)
                self._listed[sid] = path
            while len(self._listed) > LISTED_KEPT:
                self._listed.popitem(last=False)
        return {'label': label, 'page': page, 'pages': pages, 'total': len(files),
                'page_size': PAGE_SIZE, 'ids': [sample_id(p) for p in shown]}

    def sample_path(self, sid: str) -> Path | None:
        """The path of a sample shown on the page, by its id; None for any other id."""
        with self._lock:
            if sid in self._listed:
                return Path(self._listed[sid])
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

    # -- what the page can do (web loop) -------------------------------------------------------
    async def _await(self, future, what: str, timeout: float | None = -1.0):
        """Await a client future in the web loop: its done-callback (run by the executor)
        hands the outcome over with ``loop.call_soon_threadsafe``. ``timeout``: seconds
        (default call_timeout; None: the future ends by itself, as the client's goal futures
        do).

        Raises:
            BackendError: no outcome in time (504; the future is cancelled), or the call
                failed (502).
        """
        timeout = self.settings.call_timeout if timeout == -1.0 else timeout
        loop = asyncio.get_running_loop()
        out = loop.create_future()

        def transfer(f):
            if out.done():
                return
            if f.cancelled():
                out.set_exception(BackendError(f'{what}: cancelled', 502))
            elif isinstance(f.exception(), ClientTimeout):
                out.set_exception(BackendError(f'{what}: {f.exception()}', 504))
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
            return await asyncio.wait_for(out, timeout)
        except asyncio.TimeoutError:
            future.cancel()
            raise BackendError(f'{what}: no answer within {timeout:g} s', 504) from None

    async def _call(self, service: str, request, what: str, node: str):
        """The answer of ``service`` (``what`` names it in errors); 503 when it is not
        available."""
        try:
            ready = self.client.ready(service)
        except ClientError:
            ready = False
        if not ready:
            raise BackendError(f'the {service} service is not available (is the {node} node '
                               'running?)', 503)
        return await self._await(self.client.call_async(service, request), what)

    def _require_action(self, action: str) -> None:
        if not self.client.ready(action):
            raise BackendError(f'the {action} action is not available (is the trainer node '
                               'running?)', 503)

    async def collect(self, label: str) -> dict:
        res = await self._call('collect', Collect.Request(label=label), 'collect',
                               'collector')
        if not res.success:
            raise BackendError(res.message)
        with self._lock:
            self._counts[label] = int(res.count)
            self._add_samples(label, list(res.paths) or [res.path])
        return {'label': label, 'count': int(res.count), 'message': res.message}

    async def record(self, label: str | None, fps: float | None = None) -> dict:
        """Start (``label``, at most ``fps`` frames a second; None: the web node's
        record_interval) or stop (None) hold-to-record."""
        interval = 1.0 / fps if fps else float(self.settings.record_interval)
        req = Record.Request(stop=True) if label is None else Record.Request(
            stop=False, label=label, max_count=0, interval=interval, max_duration=0.0)
        res = await self._call('record', req, 'record', 'collector')
        if res.paths:  # dataset layout <class>/<file>
            with self._lock:
                label = Path(res.paths[0]).parent.name
                if label in self._samples:
                    self._add_samples(label, list(res.paths))
        if not res.success and not res.saved:
            raise BackendError(res.message)
        return {'saved': int(res.saved), 'count': int(res.count), 'message': res.message}

    async def delete_sample(self, path: str) -> dict:
        res = await self._call('delete_samples', DeleteSamples.Request(paths=[path]), 'delete',
                               'collector')
        return self._removed(res, res.deleted)

    async def undo(self, label: str) -> dict:
        res = await self._call('undo_collect', UndoCollect.Request(label=label, count=1), 'undo',
                               'collector')
        return self._removed(res, res.deleted)

    def _removed(self, res, paths) -> dict:
        if not res.success:
            raise BackendError(res.message)
        with self._lock:
            self._drop_samples(paths)
            self._set_counts(res.counts)
        return {'removed': len(paths), 'message': res.message}

    async def restore(self) -> dict:
        res = await self._call('restore_samples', RestoreSamples.Request(paths=[]), 'restore',
                               'collector')
        if not res.success:
            raise BackendError(res.message)
        with self._lock:
            self._set_counts(res.counts)
            for path in res.restored:
                label = Path(path).parent.name
                if label in self._samples:
                    self._add_samples(label, [path])
        return {'restored': len(res.restored), 'message': res.message}

    def _queued(self, frame_id: int) -> bool:
        with self._lock:
            return any(i['id'] == frame_id for i in (self._review or {}).get('items', []))

    async def review_frame(self, frame_id: int) -> bytes:
        """The JPEG of a queued frame (the classifier's get_review_frame)."""
        if not self._queued(frame_id):
            raise BackendError('no such frame in the review queue', 404)
        res = await self._call('get_review_frame', GetReviewFrame.Request(id=frame_id),
                               'get the review frame', 'classifier')
        if not res.success:
            raise BackendError(res.message, 404)
        if 'jpeg' not in res.image.format.lower():
            raise BackendError(f'the classifier sent a {res.image.format[:40]!r} frame', 502)
        return bytes(res.image.data)

    async def label_review(self, frame_id: int, label: str, discard: bool) -> dict:
        """Store a queued frame as a sample of ``label`` or discard it (the classifier's
        label_review, which stores through the collector's add_sample)."""
        if not self._queued(frame_id):
            raise BackendError('no such frame in the review queue (labelled or replaced '
                               'meanwhile)', 404)
        res = await self._call('label_review', LabelReview.Request(
            id=frame_id, label=label, discard=discard), 'label the review frame', 'classifier')
        if not res.success:
            raise BackendError(res.message)
        if not discard:
            with self._lock:
                if label in self._counts:
                    self._counts[label] = int(res.count)
        return {'message': res.message, 'count': int(res.count)}

    async def select_model(self, model_id: str) -> dict:
        with self._lock:
            known = {m['model_id'] for m in (self._models or {}).get('models', [])}
        if model_id not in known:
            raise BackendError('no such model in the trainer\'s list', 404)
        res = await self._call('select_model', SelectModel.Request(model_id=model_id),
                               'select model', 'trainer')
        if not res.success:
            raise BackendError(res.message)
        return {'model_id': model_id, 'message': res.message}

    async def _set_parameters(self, node: str, refused: str, **values) -> None:
        """Set ``values`` on ``node``; BackendError (409) ``'<refused>: <reasons>'`` when the
        node refuses any (its set-parameters callback validates them)."""
        service = f'{node}/set_parameters'
        if not self.client.ready(service):
            raise BackendError(f"the {node}'s parameter service is not available (is the "
                               f'{node} node running?)', 503)
        res = await self._await(self.client.call_async(service,
                                                       set_parameters_request(**values)),
                                f'set parameters of the {node}')
        reasons = [r.reason for r in res.results if not r.successful]
        if len(res.results) != len(values) or reasons:
            raise BackendError(f'{refused}: ' + ('; '.join(reasons) or 'no answer'))

    async def add_class(self, name: str) -> dict:
        """Add class ``name`` after the task's classes: ``classes`` is set on each of
        :data:`CLASS_NODES` in turn, then on the web node. Each node checks the list
        (append-only, safe names), keeps it in ``<data_dir>/<task>/classes.yaml`` and follows it
        without a restart. A node that already has the new list takes it again, so repeating a
        request that failed half-way mends it.

        Raises:
            BackendError: 409 the name is unsafe or already a class, or a node refused (which
                one and why; the nodes before it have the class), 503 a node is not running.
        """
        if name in self.classes:
            raise BackendError(f'{name!r} is already a class')
        try:
            new = self.task.with_classes([*self.classes, name])
        except ValueError as exc:  # InvalidNameError included
            raise BackendError(str(exc)) from None
        classes = list(new.classes)
        for node in CLASS_NODES:
            await self._set_parameters(node, f'the {node} refused the classes {classes}',
                                       classes=classes)
        # the node's callback writes classes.yaml (fsync): not on the event loop's thread
        reason = await asyncio.to_thread(self._set_own_classes, new.classes) \
            if self._set_own_classes else 'this web node cannot change its classes'
        if reason:
            raise BackendError(f'the web node refused the classes {classes}: {reason}')
        return {'classes': classes, 'message': f'class {name!r} added: collect samples of '
                'it, then train (the current model does not know it yet)'}

    async def set_camera_source(self, source: str) -> dict:
        await self._set_parameters('camera', 'the camera refused the source', source=source)
        with self._lock:
            self._set_source(source)
        return {'source': source}

    async def set_gesture(self, threshold: float, smoothing: float) -> dict:
        """Set the classifier's gesture_threshold and gesture_smoothing."""
        threshold, smoothing = float(threshold), float(smoothing)
        await self._set_parameters('classifier', 'the classifier refused',
                                   gesture_threshold=threshold, gesture_smoothing=smoothing)
        with self._lock:
            self._gesture.update(threshold=threshold, smoothing=smoothing)
        return {'threshold': threshold, 'smoothing': smoothing}

    # -- goals ---------------------------------------------------------------------------------
    async def train(self, epochs: int, start: str = 'auto') -> dict:
        self._require_action('train')
        with self._lock:  # checked and taken before the first await: one goal per page
            if self._goal_busy:
                raise BackendError('a training goal sent from this page is still running')
            self._goal_busy = True
            self._training = {'state': 'sending', 'epochs': epochs, 'history': []}
        try:
            handle = await self._await(self.client.send_goal_async(
                'train', Train.Goal(epochs=epochs, start=_START[start]), self.on_feedback,
                self.settings.call_timeout), 'send the train goal', timeout=None)
        except BaseException:
            with self._lock:
                self._goal_busy = False
                self._training = {'state': 'idle', 'history': []}
            raise
        if not handle.accepted:
            message = ('the trainer rejected the goal: another goal is running or a value is '
                       'out of range (the trainer log says which)')
            with self._lock:
                self._goal_busy = False
                self._training = {'state': 'rejected', 'message': message, 'history': []}
            raise BackendError(message)
        with self._lock:
            self._goal = handle
            self._training['state'] = 'running'
        self.client.result_async(handle).add_done_callback(self.on_result)
        return {'accepted': True, 'epochs': epochs}

    async def cancel_training(self) -> dict:
        with self._lock:
            handle = self._goal
        if handle is None:
            raise BackendError('no training goal sent from this page is running')
        res = await self._await(self.client.cancel_async(handle), 'cancel')
        accepted = len(res.goals_canceling) > 0
        if accepted:
            with self._lock:
                if self._goal is handle:
                    self._training['state'] = 'canceling'
        return {'canceling': accepted}

    @guarded
    def on_feedback(self, fb) -> None:
        """A Train.Feedback of the page's goal."""
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
    def on_result(self, future) -> None:
        """The page's train goal ended (the client's result future)."""
        try:
            response = future.result()
            outcome = result_dict(response.status, response.result)
        except Exception as exc:  # the trainer went away, or the result expired
            outcome = {'state': 'failed', 'message': f'no result: {exc}'}
        with self._lock:
            history = self._training.get('history', [])
            if history and outcome.get('val_accuracy', -1) >= 0 and \
                    outcome.get('epochs_completed') == len(history):
                history[-1]['val_accuracy'] = outcome['val_accuracy']
            if outcome['state'] == 'succeeded':
                outcome['progress'] = 1.0
            self._training.update(outcome)
            # with the state, so that no one sees an ended goal that could still be cancelled
            self._goal, self._goal_busy = None, False
        self._notify()

    async def evaluate(self) -> dict:
        """Evaluate the current model (the trainer's ``evaluate`` action, in the
        background: progress and figures arrive with the state)."""
        self._require_action('evaluate')
        with self._lock:  # checked and taken before the first await: one goal per page
            if self._eval_busy:
                raise BackendError('an evaluation from this page is still running')
            self._eval_busy = True
            self._evaluation = {'state': 'sending'}
        try:
            handle = await self._await(self.client.send_goal_async(
                'evaluate', Evaluate.Goal(model_id='', batch_size=0), self.on_eval_feedback,
                self.settings.call_timeout), 'send the evaluate goal', timeout=None)
        except BaseException:
            with self._lock:
                self._eval_busy = False
                self._evaluation = {'state': 'idle'}
            raise
        if not handle.accepted:
            message = 'the trainer rejected the evaluation (it is busy: a goal runs)'
            with self._lock:
                self._eval_busy = False
                self._evaluation = {'state': 'rejected', 'message': message}
            raise BackendError(message)
        with self._lock:
            self._evaluation['state'] = 'running'
        self.client.result_async(handle).add_done_callback(self.on_eval_result)
        return {'accepted': True}

    @guarded
    def on_eval_feedback(self, fb) -> None:
        """An Evaluate.Feedback of the page's evaluation."""
        with self._lock:
            self._evaluation.update(progress=round(float(fb.progress), 4),
                                    images_done=int(fb.images_done),
                                    images_total=int(fb.images_total))
        self._notify()

    @guarded
    def on_eval_result(self, future) -> None:
        try:
            r = future.result().result
            outcome = {'state': 'succeeded' if r.success else 'failed', 'message': r.message,
                       'model_id': r.model_id, 'progress': 1.0 if r.success else 0.0,
                       'validation': evaluation_dict(r.validation),
                       'training': evaluation_dict(r.training), 'skipped': int(r.skipped)}
        except Exception as exc:  # the trainer went away, or the result expired
            outcome = {'state': 'failed', 'message': f'no result: {exc}'}
        with self._lock:
            self._evaluation = outcome
            self._eval_busy = False
        self._notify()

    # -- dataset export / import, model download (web loop; blocking calls in workers) ----------
    async def _blocking(self, what: str, fn, *args):
        """``fn(*args)`` (a blocking client call) in a worker thread; its ClientError as a
        BackendError (504 no answer in time, 503 otherwise), DatasetSyncError as 502."""
        try:
            return await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(fn, *args))
        except ClientTimeout as exc:
            raise BackendError(f'{what}: {exc}', 504) from None
        except ClientError as exc:
            raise BackendError(f'{what}: {exc}', 503) from None
        except DatasetSyncError as exc:
            raise BackendError(f'{what}: {exc}', 502) from None

    async def export_dataset(self) -> AsyncIterator[bytes]:
        """The task's dataset as a zip (core.archive), in pieces: the samples the collector
        lists (``list_samples``) with their bytes (``get_samples``, checked against the
        listed SHA-256), then ``manifest.json``. A sample deleted meanwhile is left out (and
        not in the manifest). The first piece (possibly empty) comes once the listing is read,
        so that a failure to list is raised before anything is sent.

        Memory: the listing (about 200 bytes per sample) and one ``get_samples`` answer (at
        most datasync.BATCH_BYTES plus one sample: 8 MiB).

        Raises:
            BackendError: the collector is not available or did not answer (503/504), its
                listing is inconsistent (502), or it has other classes (409).
        """
        def page(offset: int, count: int):
            return self.client.list_samples(offset, count, timeout=TRANSFER_TIMEOUT)

        listing = await self._blocking('list the samples', read_listing, page, MAX_PAGE)
        if tuple(listing.class_names) != self.classes:
            raise BackendError(f"the collector's task has the classes "
                               f'{list(listing.class_names)}, the page\'s {list(self.classes)}')
        writer = ArchiveWriter()
        yield b''
        pending, skipped = list(listing.entries), 0
        while pending:
            batch = pending[:MAX_BATCH]
            answer = await self._blocking('get the samples', self.client.get_samples,
                                          [(e.label, e.name) for e in batch], TRANSFER_TIMEOUT)
            if not answer or len(answer) > len(batch):
                raise BackendError(f'get_samples answered {len(answer)} for {len(batch)}', 502)
            for entry, item in zip(batch, answer):
                if item.error or (item.label, item.name) != (entry.label, entry.name) or \
                        hashlib.sha256(item.data).hexdigest() != entry.sha256:
                    skipped += 1  # deleted or changed since it was listed
                    continue
                writer.add(entry.label, entry.name, item.data)
            pending = pending[len(answer):]
            yield writer.drain()
        if skipped:
            LOG.warning(f'dataset export: {skipped} sample(s) left out (deleted or changed '
                        'while the archive was made)')
        yield writer.close(self.task.name, self.classes)

    async def import_dataset(self, file: IO[bytes]) -> dict:
        """Import a dataset archive (``file``: seekable, the uploaded zip): every member
        checked (core.archive.import_archive), each accepted image stored through the
        collector's ``add_sample`` (decoded, re-encoded, its label and size checks), paced
        under its rate limit and retried when it answers "too many requests". One import
        at a time.

        Returns:
            ImportReport.to_dict(): ``added``, ``refused``, ``by_kind``, ``refusals``.

        Raises:
            BackendError: another import runs (409), the archive as a whole is refused (400),
                the collector's add_sample is not available (503).
        """
        if not self.client.ready('add_sample'):
            raise BackendError('the add_sample service is not available (is the collector '
                               'node running?)', 503)
        with self._lock:  # checked and taken before the first await
            if self._import_busy:
                raise BackendError('an import is running already')
            self._import_busy = True
        try:
            report = await asyncio.get_running_loop().run_in_executor(
                None, import_archive, file, self.classes, self._import_store())
        except ArchiveError as exc:
            raise BackendError(f'archive refused: {exc}', 400) from None
        finally:
            with self._lock:
                self._import_busy = False
        self._notify()
        return report.to_dict()

    def _import_store(self) -> Callable[[Member, bytes, str], str]:
        """The store function of an import (runs in a worker thread): add_sample, paced."""
        last = [0.0]
        gone: list[str] = []

        def store(member: Member, data: bytes, fmt: str) -> str:
            if gone:
                return f'not tried: {gone[0]}'
            image = CompressedImage(format=fmt, data=data)
            wait = IMPORT_PERIOD
            for _ in range(IMPORT_RETRIES):
                pause = last[0] + wait - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # pacing under the collector's max_collect_rate
                last[0] = time.monotonic()
                try:
                    res = self.client.add_sample(member.label, image, timeout=TRANSFER_TIMEOUT)
                except ClientError as exc:
                    gone.append(f'the collector did not answer: {exc}')
                    return gone[0]
                if res.success:
                    with self._lock:
                        self._counts[member.label] = int(res.count)
                        self._add_samples(member.label, [res.path])
                    self._notify()
                    return ''
                if 'too many requests' not in res.message:
                    return res.message
                wait *= 2
            return res.message
        return store

    async def model_upload(self, file: IO[bytes]) -> dict:
        """A model file uploaded from the page, sent to the trainer's ``put_model`` in chunks
        (checked and imported there as ``import_model`` does) and made current: ``{"model_id",
        "message"}``. Memory: the whole file (at most web.app.MAX_MODEL_UPLOAD).

        Raises:
            BackendError: the trainer refused it (409, its reason), is not available or did
                not answer (503/504).
        """
        data = file.read()
        res = await self._blocking('upload the model', self.client.put_model, data, True,
                                   TRANSFER_TIMEOUT)
        if not res.success:
            raise BackendError(f'the trainer refused the model: {res.message}', 409)
        return {'model_id': res.model.model_id, 'message': res.message}

    async def model_download(self) -> tuple[str, int, AsyncIterator[bytes]]:
        """The current model file from the trainer's ``get_model`` (the chunked service the
        classifier on another computer uses): ``(model_id, size in bytes, chunks)``; the first
        chunk is fetched before this returns, so a refusal is raised before anything is sent.
        Memory: one chunk (transfer.CHUNK_BYTES, 4 MiB).

        Raises:
            BackendError: no model announced yet (404), the trainer is not available or
                refused (503/504), or the model changed meanwhile (chunks: 502).
        """
        with self._lock:
            model_id = (self._model or {}).get('model_id') or ''
        if not MODEL_ID.fullmatch(model_id):
            raise BackendError('no model yet: train one first', 404)
        size, first = await self._blocking('get the model', self.client.get_model_chunk,
                                           model_id, 0, CHUNK_BYTES, TRANSFER_TIMEOUT)

        async def chunks() -> AsyncIterator[bytes]:
            yield first
            offset = len(first)
            while offset < size:
                total, data = await self._blocking(
                    'get the model', self.client.get_model_chunk, model_id, offset,
                    CHUNK_BYTES, TRANSFER_TIMEOUT)
                if total != size or not data:
                    raise BackendError('the model file changed while it was downloaded', 502)
                yield data
                offset += len(data)
        return model_id, size, chunks()
