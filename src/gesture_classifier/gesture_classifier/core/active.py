"""Active learning: the live frames the model was least sure about, kept for a person to label.

The classifier offers every frame it classified (:meth:`ReviewQueue.offer`); the queue keeps
a bounded number of the most *uncertain* ones, so that labelling them teaches the model what
it does not know yet (uncertainty sampling, Lewis & Gale, SIGIR 1994; margin sampling,
Scheffer et al., 2001). A person then labels a queued frame into the dataset (through the
collector, with the same checks as ``collect``) or discards it (:meth:`ReviewQueue.take`).

Uncertainty of a frame, in [0, 2]::

    uncertainty = (1 - margin) + (1 if the frame is not trusted else 0)

where ``margin`` is the calibrated probability of the top class minus that of the second
(0 = a tie, 1 = certain) and "not trusted" is the classifier's out-of-distribution verdict
(see :mod:`.trust`): a frame unlike anything taught ranks above any in-distribution one.

Admission (all must hold): uncertainty >= ``min_uncertainty``; at least ``min_interval``
seconds of frame time since the last frame admitted (a burst of similar frames is one
lesson, not ten); not a near-duplicate of a queued frame (Pearson correlation of 32 x 32
grey thumbnails >= ``duplicate_correlation``; default 0.99: consecutive frames of a still
scene correlated 0.99-1.0 in the shared webcam clips, different photos of one scene
0.96-0.98); and, when the queue is full, more uncertain than its least uncertain frame, which
it then replaces. Frames are stored JPEG-encoded
(quality 95, as collected samples), so the memory is bounded by ``capacity`` times one
JPEG frame (the ``max_frame_bytes`` limit refuses larger ones), and nothing is written to
disk.

Plain Python, NumPy and OpenCV; no ROS.
"""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ['ReviewError', 'QueuedFrame', 'ReviewConfig', 'ReviewQueue', 'uncertainty',
           'signature']

#: JPEG quality of queued frames (the collector's samples use the same).
JPEG_QUALITY = 95
_THUMB = 32


class ReviewError(KeyError):
    """A frame id that is not (or no longer) in the queue."""

    def __str__(self) -> str:  # KeyError quotes its argument; this is a sentence
        return str(self.args[0]) if self.args else 'no such frame'


@dataclass(frozen=True)
class ReviewConfig:
    """Settings of the queue.

    Attributes:
        capacity: most frames kept, 1..100 (0 turns the queue off).
        min_uncertainty: least uncertainty (see the module docstring) a frame needs, [0, 2].
        min_interval: least frame time between two admitted frames, s, [0, 3600].
        duplicate_correlation: thumbnails correlated at least this much are the same view,
            (0, 1].
        max_frame_bytes: largest JPEG kept, bytes (a bigger frame is not queued).
    """

    capacity: int = 20
    min_uncertainty: float = 0.5
    min_interval: float = 1.0
    duplicate_correlation: float = 0.99
    max_frame_bytes: int = 4 * 1024 * 1024

    RANGES = {'capacity': (0, 100), 'min_uncertainty': (0.0, 2.0),
              'min_interval': (0.0, 3600.0), 'duplicate_correlation': (0.0, 1.0),
              'max_frame_bytes': (1024, 64 * 1024 * 1024)}

    def check(self) -> ReviewConfig:
        """Self when every field is finite and in range; else ValueError naming the field."""
        for name, (low, high) in self.RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not (np.isfinite(value) and low <= value <= high):
                raise ValueError(f'{name} must be in [{low}, {high}], got {value!r}')
        return self


@dataclass(frozen=True)
class QueuedFrame:
    """One frame waiting for a label.

    Attributes:
        id: unique within the queue's lifetime, >= 1 (ids are never reused).
        stamp: the frame's capture time (header.stamp), s.
        frame_id: the camera's frame id.
        jpeg: the frame as JPEG bytes (colour as captured).
        width, height: pixels.
        class_names: the classes of the model that judged it.
        probabilities: its calibrated class probabilities, float ``(N,)``.
        label: the top class; confidence its probability in [0, 1].
        margin: top minus second probability, [0, 1].
        ood_score: the out-of-distribution score (see :mod:`.trust`), >= 0.
        trusted: the classifier's verdict for the frame.
        uncertainty: the ranking score, [0, 2].
        model_id: the model that judged it.
    """

    id: int
    stamp: float
    frame_id: str
    jpeg: bytes
    width: int
    height: int
    class_names: tuple[str, ...]
    probabilities: tuple[float, ...]
    label: str
    confidence: float
    margin: float
    ood_score: float
    trusted: bool
    uncertainty: float
    model_id: str


def uncertainty(probabilities: np.ndarray, trusted: bool) -> tuple[float, float]:
    """``(uncertainty, margin)`` of one frame (see the module docstring).

    Args:
        probabilities: float ``(N,)``, N >= 2, summing to 1.
    """
    p = np.sort(np.asarray(probabilities, dtype=np.float64))
    margin = float(np.clip(p[-1] - p[-2], 0.0, 1.0))
    return (1.0 - margin) + (0.0 if trusted else 1.0), margin


def signature(pixels: np.ndarray) -> np.ndarray:
    """A 32 x 32 grey thumbnail of an ``(H, W, C)`` uint8 frame, zero mean and unit norm
    (float32 ``(1024,)``), so the dot product of two is their Pearson correlation."""
    grey = pixels.mean(axis=2, dtype=np.float32) if pixels.ndim == 3 else \
        pixels.astype(np.float32)
    small = cv2.resize(grey, (_THUMB, _THUMB), interpolation=cv2.INTER_AREA).ravel()
    small -= small.mean()
    norm = float(np.linalg.norm(small))
    return small / norm if norm > 1e-6 else small


class ReviewQueue:
    """The bounded queue (see the module docstring). Thread-safe: the classifier offers from
    its inference thread while services take frames."""

    def __init__(self, config: ReviewConfig | None = None):
        self.config = (config or ReviewConfig()).check()
        self._lock = threading.Lock()
        self._frames: dict[int, tuple[QueuedFrame, np.ndarray]] = {}
        self._ids = itertools.count(1)
        self._last_admitted: float | None = None
        self.revision = 0  # increases with every change, for the published state

    def reconfigure(self, config: ReviewConfig) -> None:
        """New settings; frames beyond a smaller capacity are dropped, least uncertain first."""
        config = config.check()
        with self._lock:
            self.config = config
            self._shrink(config.capacity)

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    def wants(self, probabilities, trusted: bool, stamp: float) -> bool:
        """Cheap pre-check before the frame is copied and encoded: would :meth:`offer` consider
        it (uncertainty, interval and capacity only; not the duplicate check)."""
        cfg = self.config
        if cfg.capacity == 0:
            return False
        u, _ = uncertainty(probabilities, trusted)
        with self._lock:
            if u < cfg.min_uncertainty:
                return False
            if self._last_admitted is not None and \
                    0 <= stamp - self._last_admitted < cfg.min_interval:
                return False
            if len(self._frames) >= cfg.capacity:
                return u > min(f.uncertainty for f, _ in self._frames.values())
            return True

    def offer(self, pixels: np.ndarray, order: str, stamp: float, frame_id: str,
              probabilities, class_names, ood_score: float, trusted: bool,
              model_id: str = '') -> QueuedFrame | None:
        """Queue the frame if it is admitted (see the module docstring); returns it, or None.

        Args:
            pixels: ``(H, W, C)`` uint8 frame in channel ``order`` ('rgb', 'bgr', 'mono');
                copied (encoded), never kept by reference.
            stamp: capture time, s; frame_id: the camera's frame.
            probabilities: calibrated ``(N,)``; class_names: N names.
            ood_score: >= 0; trusted: the classifier's verdict.

        Raises:
            ValueError: probabilities that do not match ``class_names`` or are not finite.
        """
        probs = np.asarray(probabilities, dtype=np.float64)
        names = tuple(class_names)
        if probs.shape != (len(names),) or len(names) < 2 or not np.isfinite(probs).all():
            raise ValueError(f'probabilities must be {len(names)} finite values (N >= 2)')
        if not self.wants(probs, trusted, stamp):
            return None
        u, margin = uncertainty(probs, trusted)
        sig = signature(pixels)
        with self._lock:
            if any(float(sig @ other) >= self.config.duplicate_correlation
                   for _, other in self._frames.values()):
                return None
        bgr = _to_bgr(pixels, order)
        ok, jpeg = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok or jpeg.nbytes > self.config.max_frame_bytes:
            return None
        top = int(probs.argmax())
        with self._lock:
            cfg = self.config
            if len(self._frames) >= cfg.capacity:
                weakest = min(self._frames.values(), key=lambda e: e[0].uncertainty)[0]
                if u <= weakest.uncertainty:
                    return None
                del self._frames[weakest.id]
            frame = QueuedFrame(id=next(self._ids), stamp=float(stamp), frame_id=str(frame_id),
                                jpeg=jpeg.tobytes(), width=int(pixels.shape[1]),
                                height=int(pixels.shape[0]), class_names=names,
                                probabilities=tuple(float(x) for x in probs),
                                label=names[top], confidence=float(probs[top]), margin=margin,
                                ood_score=float(ood_score), trusted=bool(trusted),
                                uncertainty=u, model_id=str(model_id))
            self._frames[frame.id] = (frame, sig)
            self._last_admitted = float(stamp)
            self.revision += 1
            return frame

    def items(self) -> list[QueuedFrame]:
        """The queued frames, most uncertain first."""
        with self._lock:
            frames = [f for f, _ in self._frames.values()]
        return sorted(frames, key=lambda f: (-f.uncertainty, f.id))

    def get(self, frame_id: int) -> QueuedFrame:
        """The queued frame ``frame_id`` (it stays queued). Raises ReviewError."""
        with self._lock:
            entry = self._frames.get(frame_id)
        if entry is None:
            raise ReviewError(f'frame {frame_id} is not in the review queue (labelled, '
                              f'discarded, replaced by a more uncertain frame, or never there)')
        return entry[0]

    def take(self, frame_id: int) -> QueuedFrame:
        """Remove and return frame ``frame_id`` (to label or discard it). Raises ReviewError."""
        with self._lock:
            entry = self._frames.pop(frame_id, None)
            if entry is not None:
                self.revision += 1
        if entry is None:
            raise ReviewError(f'frame {frame_id} is not in the review queue (labelled, '
                              f'discarded, replaced by a more uncertain frame, or never there)')
        return entry[0]

    def put_back(self, frame: QueuedFrame) -> None:
        """Return a frame taken by :meth:`take` whose labelling failed (so nothing is lost),
        unless the queue has filled up meanwhile with more uncertain frames."""
        sig = signature(cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR))
        with self._lock:
            if self.config.capacity == 0:  # the queue was turned off meanwhile
                return
            if len(self._frames) >= self.config.capacity:
                weakest = min(self._frames.values(), key=lambda e: e[0].uncertainty)[0]
                if frame.uncertainty <= weakest.uncertainty:
                    return
                del self._frames[weakest.id]
            self._frames[frame.id] = (frame, sig)
            self.revision += 1

    def clear(self) -> int:
        """Drop every frame (e.g. another model: its doubts are not the new model's); returns
        how many were dropped."""
        with self._lock:
            n = len(self._frames)
            self._frames.clear()
            self._last_admitted = None
            if n:
                self.revision += 1
            return n

    def _shrink(self, capacity: int) -> None:
        while len(self._frames) > capacity:
            weakest = min(self._frames.values(), key=lambda e: e[0].uncertainty)[0]
            del self._frames[weakest.id]
            self.revision += 1


def _to_bgr(pixels: np.ndarray, order: str) -> np.ndarray:
    """A contiguous BGR (or grey) uint8 image for OpenCV's encoder."""
    if order == 'rgb':
        return cv2.cvtColor(np.ascontiguousarray(pixels[:, :, :3]), cv2.COLOR_RGB2BGR)
    if order == 'mono' or pixels.ndim == 2 or pixels.shape[2] == 1:
        return np.ascontiguousarray(pixels if pixels.ndim == 2 else pixels[:, :, 0])
    return np.ascontiguousarray(pixels[:, :, :3])
