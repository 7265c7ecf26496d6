"""Debounced gestures: turns a stream of noisy per-frame class probabilities into stable
gesture events for other nodes ("someone shows thumbs-up" once, not 30 times a second).

Per frame, the probabilities are smoothed with an exponential moving average::

    smoothed = smoothing * smoothed + (1 - smoothing) * probabilities      (smoothing in [0, 1))

The frame's *candidate* is the class with the highest smoothed probability when that
probability is at or above ``threshold``, else :data:`NONE` ("no gesture": nothing is shown
clearly enough). The candidate is also :data:`NONE` when that class is one of
``none_classes`` (a class the user collected for "no gesture", such as the DLI ``emotions``
task's ``none``), and when the classifier did not trust the frame (it is unlike anything the
model was taught: see :mod:`.trust`), so an unknown hand pose or room gives no event.
The stable gesture changes to a candidate once that candidate has been the candidate on
``min_frames`` consecutive frames **and** for at least ``min_duration`` seconds of frame time
(``header.stamp``), so a single-frame flicker never becomes an event. Going back to
:data:`NONE` is debounced the same way.

Everything here is plain Python and NumPy, testable without ROS; the classifier node wires it to
``predictions`` and ``gestures`` (see nodes/classifier.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ['NONE', 'CHANGE', 'HOLD', 'DebounceConfig', 'GestureState', 'Debouncer']

#: Label of the "no stable gesture" state.
NONE = ''
#: Event kinds (same values as gesture_interfaces/msg/GestureEvent).
CHANGE, HOLD = 0, 1


@dataclass(frozen=True)
class DebounceConfig:
    """Settings of the debouncer; :meth:`check` says what is wrong with a value.

    Attributes:
        threshold: smoothed probability in [0, 1] a class needs to be a candidate.
        smoothing: EMA factor in [0, 0.99]; 0 = no smoothing (each frame alone).
        min_frames: consecutive frames (1..1000) a candidate needs to become stable.
        min_duration: seconds (0..60) of frame time a candidate needs to become stable.
        hold_rate: Hz (0..10) at which a held gesture is repeated as a HOLD event; 0: never.
        none_classes: class names that mean "no gesture" (never a stable gesture).
    """

    threshold: float = 0.6
    smoothing: float = 0.5
    min_frames: int = 3
    min_duration: float = 0.0
    hold_rate: float = 0.0
    none_classes: tuple[str, ...] = ('none', 'background')

    #: (low, high) of each field, inclusive; the node's parameter descriptors use the same.
    RANGES = {'threshold': (0.0, 1.0), 'smoothing': (0.0, 0.99), 'min_frames': (1, 1000),
              'min_duration': (0.0, 60.0), 'hold_rate': (0.0, 10.0)}

    def check(self) -> DebounceConfig:
        """Return self when every field is of the right type, finite and in range.

        Raises:
            ValueError: the first field that is not, with its valid range.
        """
        for name, (low, high) in self.RANGES.items():
            value = getattr(self, name)
            want_int = isinstance(low, int)
            ok_type = isinstance(value, int) if want_int else isinstance(value, (int, float))
            if isinstance(value, bool) or not ok_type or \
                    not (math.isfinite(value) and low <= value <= high):
                raise ValueError(f'{name} must be {"an integer" if want_int else "a number"} '
                                 f'in [{low}, {high}], got {value!r}')
        if not (isinstance(self.none_classes, tuple) and
                all(isinstance(c, str) for c in self.none_classes)):
            raise ValueError(f'none_classes must be a tuple of class names, got '
                             f'{self.none_classes!r}')
        return self


@dataclass(frozen=True)
class GestureState:
    """An event: the stable gesture after a frame.

    Attributes:
        kind: :data:`CHANGE` (the stable gesture changed with this frame) or :data:`HOLD`.
        label: the stable gesture, :data:`NONE` when there is none.
        confidence: smoothed probability of ``label`` in [0, 1] (for NONE: the highest
            smoothed probability, which is below the threshold).
        since: frame time (s) of the first frame of the run that made ``label`` stable.
        previous: the stable gesture before this one (CHANGE) or ``label`` (HOLD).
    """

    kind: int
    label: str
    confidence: float
    since: float
    previous: str


class Debouncer:
    """Feed it one prediction per frame (:meth:`update`); it returns an event when the stable
    gesture changes (and HOLD events at ``hold_rate`` while it holds), else None.

    The state is reset (to NONE, with a CHANGE event if a gesture was stable) when the class
    names change, i.e. another model; frame times that go backwards (a camera looping a video)
    restart the current run.
    """

    def __init__(self, config: DebounceConfig | None = None):
        self.config = (config or DebounceConfig()).check()
        self._classes: tuple[str, ...] | None = None
        self._smoothed: np.ndarray | None = None
        self.label = NONE
        self._since = 0.0
        self._candidate = NONE
        self._run_frames = 0
        self._run_start = 0.0
        self._last_time: float | None = None
        self._last_emit = -math.inf

    def reconfigure(self, config: DebounceConfig) -> None:
        """Use new settings from the next frame on (raises ValueError, see check); the stable
        state and the current run are kept."""
        self.config = config.check()

    def update(self, probabilities, class_names, stamp: float,
               trusted: bool = True) -> GestureState | None:
        """One frame.

        Args:
            probabilities: (N,) float probabilities (sum 1), index-aligned with ``class_names``.
            class_names: the model's N class names.
            stamp: the frame's time in seconds (header.stamp).
            trusted: the classifier's verdict on the frame (Prediction.trusted); an untrusted
                frame's candidate is NONE (its probabilities still enter the average).

        Returns:
            A :class:`GestureState` when an event is due, else None.

        Raises:
            ValueError: probabilities not of shape (N,) or not finite.
        """
        p = np.asarray(probabilities, dtype=np.float64)
        names = tuple(class_names)
        if p.shape != (len(names),) or not np.isfinite(p).all():
            raise ValueError(f'probabilities must be {len(names)} finite values, got shape '
                             f'{p.shape}')
        cfg = self.config
        event = None
        if names != self._classes:  # another model: start over
            if self.label != NONE:
                event = GestureState(CHANGE, NONE, 0.0, stamp, self.label)
                self._last_emit = stamp
            self._classes, self._smoothed = names, p.copy()
            self.label, self._since, self._candidate, self._run_frames = NONE, stamp, NONE, 0
        else:
            self._smoothed *= cfg.smoothing
            self._smoothed += (1.0 - cfg.smoothing) * p
        if self._last_time is not None and stamp < self._last_time:
            self._run_frames = 0  # time went backwards: restart the run and the hold timer
            self._last_emit = min(self._last_emit, stamp)
        self._last_time = stamp
        top = int(self._smoothed.argmax())
        best = float(self._smoothed[top])
        candidate = names[top] if best >= cfg.threshold and trusted and \
            names[top] not in cfg.none_classes else NONE
        if candidate != self._candidate or self._run_frames == 0:
            self._candidate, self._run_frames, self._run_start = candidate, 0, stamp
        self._run_frames += 1
        if candidate != self.label and self._run_frames >= cfg.min_frames and \
                stamp - self._run_start >= cfg.min_duration:
            previous = event.previous if event is not None else self.label
            self.label, self._since = candidate, self._run_start
            self._last_emit = stamp
            return GestureState(CHANGE, candidate, best, self._since, previous)
        if event is None and cfg.hold_rate > 0 and stamp - self._last_emit >= 1.0 / cfg.hold_rate:
            self._last_emit = stamp
            held = float(self._smoothed[names.index(self.label)]) if self.label != NONE else \
                best
            return GestureState(HOLD, self.label, held, self._since, self.label)
        return event
