"""The classifier's work in plain Python: the model in use and the next one loading, and a
frame turned into calibrated class probabilities, an out-of-distribution verdict ("trusted"),
the debounced gesture and, when the model was unsure, a place in the review queue of frames
to label next. nodes/classifier.py wires it to ROS.

Models load in a background thread while the current one keeps classifying; requests made
meanwhile collapse to the newest. A model file that cannot be used (unreadable, another
architecture, classes other than the task's, another task) is refused with the reason and the
running model stays. An announcement is untrusted: only an absolute path to a regular file of
bounded size inside ``model_dirs`` is read (fsutil.read_untrusted_file), a model on another
computer is fetched over ROS (``get_chunk``) and used only when its size and SHA-256 match,
and a refused announcement (model_id, path) is remembered and never read again.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .active import QueuedFrame, ReviewConfig, ReviewError, ReviewQueue
from .backends import BackendError
from .fsutil import ensure_private_dir, is_within
from .gestures import Debouncer, GestureState
from .imaging import ImageFormatError, ImageView, message_to_array
from .inference import Predictor
from .model import MAX_MODEL_FILE_BYTES
from .tasks import Task
from .transfer import SHA256_PATTERN, TransferError, fetch_file

__all__ = ['Throttle', 'ClassifierSettings', 'Announcement', 'Classified', 'Classifier',
           'StoreResult', 'DEFAULT_OOD_THRESHOLD', 'OOD_THRESHOLD_RANGE']

LOG = logging.getLogger(__name__)
#: Refused announcements remembered (the newest).
REFUSALS_KEPT = 256
#: Default ``ood_threshold``: a frame whose OOD score (see trust.py) is above the 99th
#: percentile of the model's own held-out validation images is not trusted. On the learning
#: bench this leaves most frames of new people trusted and flags most empty rooms and unknown
#: hand sets (docs/learning.md has the measured shares).
DEFAULT_OOD_THRESHOLD = 1.0
#: Values the ood_threshold setting may take (100 trusts every frame).
OOD_THRESHOLD_RANGE = (0.0, 100.0)


class Throttle:
    """True at most once per ``period`` seconds (for log messages on hot paths)."""

    def __init__(self, period: float = 5.0):
        self.period, self._last = period, None

    def __call__(self, now: float) -> bool:
        if self._last is None or now - self._last >= self.period:
            self._last = now
            return True
        return False


@dataclass(frozen=True)
class ClassifierSettings:
    """The classifier's parameters (see nodes/classifier.py). ``backends``: the chosen backend
    first, then (backend: auto) the slower usable ones to try when it fails for a model."""

    device: object = 'cpu'  # a torch.device or its name
    backends: tuple[str, ...] = ('pytorch',)
    precision: str = 'fp32'
    model_dirs: tuple[str, ...] = ()
    stale_after: float = 2.0
    ood_threshold: float = DEFAULT_OOD_THRESHOLD  # trusted: ood_score <= this


@dataclass(frozen=True)
class Announcement:
    """A model the trainer announced (the fields of ModelInfo the classifier uses)."""

    task: str = ''
    model_id: str = ''
    path: str = ''
    size: int = 0
    sha256: str = ''


@dataclass
class Classified:
    """One classified frame."""

    probabilities: np.ndarray
    class_names: tuple[str, ...]
    model_id: str
    inference_time: float  # s, conversion and forward pass
    view: ImageView
    ood_score: float = 0.0  # see trust.py: 0 typical of the validation images, 1 their 99th pct
    trusted: bool = True    # ood_score <= the ood_threshold setting
    event: GestureState | None = None  # the debouncer's event for this frame, if any
    debounced: bool = True  # False: the debouncer refused the probabilities (not finite)
    queued: QueuedFrame | None = None  # the frame as it entered the review queue, if it did

    @property
    def top(self) -> int:
        return int(self.probabilities.argmax())


@dataclass(frozen=True)
class StoreResult:
    """What storing a reviewed frame as a sample gave (the collector's ``add_sample`` answer:
    success, message, the stored path and the count now under the label)."""

    success: bool
    message: str
    path: str = ''
    count: int = 0


class Classifier:
    """The task's model in use and the frames it classifies. ``get_chunk(model_id, offset,
    length) -> (size, bytes)`` fetches an announced model over ROS (raises on failure).
    ``review`` keeps the frames the model was least sure about (see active.py); None: a queue
    with the default settings."""

    def __init__(self, task: Task, settings: ClassifierSettings, debouncer: Debouncer,
                 get_chunk: Callable[[str, int, int], tuple[int, bytes]] | None = None,
                 review: ReviewQueue | None = None):
        self.task, self.settings, self.debouncer = task, settings, debouncer
        self.review = review if review is not None else ReviewQueue(ReviewConfig())
        self.backend_reason = ''
        self._get_chunk = get_chunk
        self.predictor: Predictor | None = None
        self._load_lock = threading.Lock()
        # newest (path, announcement key, announcement to fetch) waiting for the loader thread
        self._load_next: tuple[str, tuple | None, Announcement | None] | None = None
        self._refused: OrderedDict[tuple, str] = OrderedDict()  # (model_id, path) -> reason
        self._loader: threading.Thread | None = None
        self.frames_classified = self.frames_rejected = self.frames_untrusted = 0
        self._warn, self._wait_note = Throttle(5.0), Throttle(10.0)
        self._refused_note = Throttle(5.0)
        self._last_frame: float | None = None  # time.monotonic() of the newest frame
        self.stale = False

    def set_task(self, task: Task) -> None:
        """Follow ``task``: this task with classes added (:meth:`Task.with_classes`). Models
        are checked against its classes from now on (a model of the first classes only, from
        before they were added, is still used, as after a restart); the model in use keeps
        classifying (with its own classes, as its predictions say) until one with the new
        classes comes, and earlier refusals are forgotten (a model refused for the old
        classes may fit now)."""
        with self._load_lock:
            self.task = task
            self._refused.clear()

    @property
    def refusals(self) -> int:
        with self._load_lock:
            return len(self._refused)

    # -- models ------------------------------------------------------------------------------
    def announced(self, a: Announcement) -> None:
        """The trainer announced a model: load it (fetching it first when it is another
        computer's file), unless it is in use, was refused before, or is not this task's."""
        if a.task != self.task.name:
            LOG.info(f'ignoring model for task {a.task!r}')
            return
        with self._load_lock:
            loading = self._loader is not None
        # In use and nothing else on its way: nothing to do. With another model loading, the
        # trainer may have made this one current again (select_model back) after announcing
        # that one: load it after it, so the newest announcement wins.
        if self.predictor is not None and a.model_id == self.predictor.model_id and \
                not loading:
            return
        key = (a.model_id, a.path)
        with self._load_lock:
            before = self._refused.get(key)
        if before is not None:
            if self._refused_note(time.monotonic()):
                LOG.warning(f'ignoring re-announced model {a.model_id!r} at {a.path!r}: '
                            f'refused before ({before})')
            return
        if not os.path.isabs(a.path):
            self._remember_refusal(key, 'path is not absolute')
            LOG.error(f'refused model {a.model_id!r}: path {a.path!r} is not absolute')
            return
        real = os.path.realpath(a.path)
        here = os.path.isfile(real) and is_within(real, self.settings.model_dirs)
        self.request_load(a.path, key, fetch=a if a.sha256 and not here else None)

    def request_load(self, path: str, key: tuple | None = None,
                     fetch: Announcement | None = None) -> None:
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
            path, key, announcement = pending
            if announcement is not None:
                try:
                    path = self.fetch(announcement)
                except Exception as exc:  # TransferError, timeout, disk: refuse, never die
                    LOG.error(f'refused model {announcement.model_id!r}: fetching it over ROS '
                              f'failed: {exc}')
                    if key is not None:
                        self._remember_refusal(key, f'fetch failed: {exc}')
                    continue
            reason = self.load(path)
            if reason is not None and key is not None:
                self._remember_refusal(key, reason)

    def fetch(self, a: Announcement) -> str:
        """Fetch the announced model over ROS into the first of ``model_dirs``; returns its
        path. Raises TransferError, OSError and what ``get_chunk`` raises."""
        if self._get_chunk is None:
            raise TransferError('no way to fetch models over ROS')
        if not SHA256_PATTERN.fullmatch(a.sha256):  # it also names the file
            raise TransferError(f'announcement has no valid SHA-256 ({a.sha256[:80]!r})')
        dest = ensure_private_dir(self.settings.model_dirs[0]) / f'received-{a.sha256}.pt'
        start = time.monotonic()
        fetch_file(lambda offset, length: self._get_chunk(a.model_id, offset, length), dest,
                   a.size, a.sha256, MAX_MODEL_FILE_BYTES)
        LOG.info(f'fetched model {a.model_id} over ROS: {a.size} bytes in '
                 f'{time.monotonic() - start:.1f} s, SHA-256 matches; {dest}')
        return str(dest)

    def _remember_refusal(self, key: tuple, reason: str) -> None:
        """Remember a refused announcement (the newest REFUSALS_KEPT) so it is never read
        again."""
        with self._load_lock:
            self._refused[key] = reason
            while len(self._refused) > REFUSALS_KEPT:
                self._refused.popitem(last=False)

    def load(self, path: str) -> str | None:
        """Load and switch to the model at ``path``; on failure keep the current one and
        return the reason (None on success)."""
        kept = f'keeping model {self.predictor.model_id}' if self.predictor else \
            'no model in use'
        try:
            predictor = self._predictor(path)
        except Exception as exc:  # ModelFileError, or anything else: never die on a file
            LOG.error(f'refused model: {exc} ({kept})')
            return str(exc)
        mf = predictor.model_file
        if mf.task and mf.task != self.task.name:
            reason = f'{path}: it is for task {mf.task!r}, not {self.task.name!r}'
            LOG.error(f'refused model {reason} ({kept})')
            return reason
        self.predictor = predictor  # one reference assignment: the frame thread sees either
        self.review.clear()  # the old model's doubts are not the new one's
        LOG.info(f'using model {mf.model_id} ({", ".join(mf.class_names)}; val accuracy '
                 f'{mf.val_accuracy:.2f}; {mf.spec.input_size} px, white balance '
                 f'{mf.spec.white_balance}) from {path}; {predictor.description}')
        return None

    def _predictor(self, path: str) -> Predictor:
        """A Predictor for the model at ``path`` on the first of the backends that works
        (raises what the last one raised)."""
        backends = self.settings.backends
        for i, backend in enumerate(backends):
            try:
                return Predictor.from_file(path, self.settings.device,
                                           expected_classes=self.task.classes,
                                           earlier_classes_ok=True,
                                           backend=backend,
                                           allowed_dirs=list(self.settings.model_dirs),
                                           precision=self.settings.precision)
            except BackendError as exc:
                if i + 1 == len(backends):
                    raise
                self.backend_reason = (f'auto: {backend} failed for {path} ({exc}); using '
                                       f'{backends[i + 1]}')
                LOG.warning(self.backend_reason)
        raise AssertionError('no backend')  # unreachable: backends is never empty

    # -- frames ------------------------------------------------------------------------------
    def classify(self, msg) -> Classified | None:
        """Class probabilities of a camera frame (sensor_msgs/Image or CompressedImage) and
        the gesture event it decides; None without a model, or for a frame that cannot be
        classified (it is counted and logged, throttled, and the node goes on)."""
        now = time.monotonic()
        self._last_frame = now
        if self.stale:
            self.stale = False
            LOG.info('camera frames are arriving again')
        predictor = self.predictor
        if predictor is None:
            if self._wait_note(now):
                LOG.info('frames arrive but there is no trained model yet: collect samples '
                         'and send a train goal')
            return None
        start = time.perf_counter()
        try:
            view = message_to_array(msg)
            probs, ood = predictor.classify(view.pixels, view.order)
        except (ImageFormatError, ValueError) as exc:
            self.frames_rejected += 1
            if self._warn(now):
                LOG.warning(f'skipping malformed image ({self.frames_rejected} so far): {exc}')
            return None
        except Exception as exc:  # a backend's runtime error (CUDA OOM, TensorRT, ORT): the
            self.frames_rejected += 1  # frame is skipped, the node lives
            if self._warn(now):
                LOG.error(f'inference failed, frame skipped ({self.frames_rejected} so far): '
                          f'{exc!r}')
            return None
        out = Classified(probs, tuple(predictor.class_names), predictor.model_id,
                         time.perf_counter() - start, view, ood_score=ood,
                         trusted=bool(ood <= self.settings.ood_threshold))
        self.frames_classified += 1
        self.frames_untrusted += not out.trusted
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        try:
            out.event = self.debouncer.update(probs, predictor.class_names, stamp,
                                              trusted=out.trusted)
        except ValueError as exc:  # non-finite probabilities from a broken model
            out.debounced = False
            if self._warn(now):
                LOG.warning(f'no gesture update for this frame: {exc}')
            return out
        if self.review.wants(probs, out.trusted, stamp):  # cheap; encodes only if admitted
            out.queued = self.review.offer(view.pixels, view.order, stamp,
                                           msg.header.frame_id, probs, out.class_names,
                                           ood, out.trusted, out.model_id)
        return out

    # -- the review queue ----------------------------------------------------------------------
    def label_review(self, frame_id: int, label: str, discard: bool,
                     store: Callable[[str, QueuedFrame], StoreResult]) -> StoreResult:
        """Label queued frame ``frame_id`` into the dataset (``store(label, frame)``: the
        collector's ``add_sample``) or discard it. The frame leaves the queue only when that
        succeeded; on any failure (unknown id or label, the collector refusing or not
        answering) it stays queued and the result says why. Never raises for bad input."""
        if not discard and label not in self.task.classes:
            return StoreResult(False, f'label {label[:80]!r} is not a class of task '
                                      f'{self.task.name!r} ({", ".join(self.task.classes)})')
        try:
            frame = self.review.take(frame_id)
        except ReviewError as exc:
            return StoreResult(False, str(exc))
        if discard:
            LOG.info(f'review: discarded frame {frame_id} ({frame.label} '
                     f'{frame.confidence:.2f})')
            return StoreResult(True, f'discarded frame {frame_id}')
        try:
            result = store(label, frame)
        except Exception as exc:  # the collector not answering, a transport error: keep it
            result = StoreResult(False, f'could not store the frame: {exc}')
        if not result.success:
            self.review.put_back(frame)
            return result
        LOG.info(f'review: frame {frame_id} (the model said {frame.label} '
                 f'{frame.confidence:.2f}) stored as {label}: {result.path}')
        return result

    def reconfigure(self, gestures: dict | None = None, review: dict | None = None,
                    ood_threshold: float | None = None) -> list[str]:
        """Change the live settings together, or none of them: ``gestures`` (DebounceConfig
        field -> value), ``review`` (ReviewConfig field -> value), ``ood_threshold`` (see
        ClassifierSettings). Returns a line per part changed, for the log.

        Raises:
            ValueError / TypeError: a value out of its range or of the wrong type (nothing
                changed).
        """
        gesture_config = replace(self.debouncer.config, **(gestures or {})).check()
        review_config = replace(self.review.config, **(review or {})).check()
        low, high = OOD_THRESHOLD_RANGE
        if ood_threshold is not None and not low <= float(ood_threshold) <= high:
            raise ValueError(f'ood_threshold must be in {low:g}..{high:g}, got {ood_threshold}')
        changed = []
        if gestures:
            self.debouncer.reconfigure(gesture_config)
            changed.append(f'gesture debouncing now {gesture_config}')
        if review:
            self.review.reconfigure(review_config)
            changed.append(f'review queue now {review_config}')
        if ood_threshold is not None:
            self.settings = replace(self.settings, ood_threshold=float(ood_threshold))
            changed.append(f'ood_threshold now {float(ood_threshold):g}')
        return changed

    def check_input(self, topic: str) -> None:
        """Say once when the input goes stale (camera lost); classify() says when it is back."""
        if self._last_frame is None:
            return
        age = time.monotonic() - self._last_frame
        if age > self.settings.stale_after and not self.stale:
            self.stale = True
            LOG.warning(f'input stale: no camera frame for {age:.1f} s on {topic}; no '
                        'predictions until frames arrive again')
