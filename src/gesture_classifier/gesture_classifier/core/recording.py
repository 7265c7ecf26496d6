"""Hold to record: which camera frames a burst or a recording saves, and when it ends.

Plain Python, no ROS: the collector node offers every frame it receives (:meth:`Recording.wants`)
and reports each save (:meth:`Recording.saved`); the node's timer (or a caller waiting in
``Collector.collect``) calls :meth:`Recording.check`; whoever waits for the end can be called
back (:meth:`Recording.add_done_callback`) instead of blocking. Times are ``time.monotonic()``
seconds; frame stamps are integer nanoseconds (the image's ``header.stamp``).

Rules: a frame is saved only when its stamp is newer than the last saved one and its content
(a digest of its pixels, when the caller gives one) is not one this recording saved already
(never the same frame twice, also from a looping folder or video source that republishes a
photo under a new stamp), and at least ``min_gap`` seconds after the last save (``max(interval,
1 / max_collect_rate)``). The recording ends when ``max_count`` frames are saved, at
``deadline``, when no new frame has arrived for ``stall_after`` seconds, on a save error, or
when stopped.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ['Recording']


@dataclass
class Recording:
    """One burst or recording under ``label``.

    Attributes:
        label: the class the frames are saved under.
        max_count: frames to save at most, >= 1.
        min_gap: least seconds between two saves, >= 0.
        started: monotonic start time; deadline: monotonic time it ends at the latest.
        stall_after: seconds without any new frame after which it ends (camera stopped).
        paths: the files saved, in order.
        reason: why it ended ('' while running); failed: True when an error ended it.
    """

    label: str
    max_count: int
    min_gap: float
    started: float
    deadline: float
    stall_after: float
    paths: list[Path] = field(default_factory=list)
    reason: str = ''
    failed: bool = False
    _last_saved: float = -math.inf
    _last_stamp: int = -1
    _last_frame: float = -math.inf
    _digests: set = field(default_factory=set, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _on_done: list = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self):
        if self.max_count < 1:
            raise ValueError(f'max_count must be >= 1, got {self.max_count}')
        if not (self.min_gap >= 0 and math.isfinite(self.min_gap)):
            raise ValueError(f'min_gap must be a finite number >= 0, got {self.min_gap}')
        self._last_frame = self.started

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    @property
    def saved_count(self) -> int:
        return len(self.paths)

    def wants(self, stamp_ns: int, now: float, digest=None) -> bool:
        """Whether the frame stamped ``stamp_ns`` that arrived at ``now`` should be saved
        (``digest``: of its content, when known; a content already saved is not wanted).
        Every call counts as a frame arriving (for the stall check)."""
        self._last_frame = now
        return (self.running and stamp_ns > self._last_stamp and
                now - self._last_saved >= self.min_gap and
                (digest is None or digest not in self._digests))

    def saved(self, path: Path, stamp_ns: int, now: float, digest=None) -> None:
        """Record a saved frame; ends the recording when max_count is reached."""
        if digest is not None:
            self._digests.add(digest)
        self.paths.append(path)
        self._last_saved, self._last_stamp = now, stamp_ns
        if len(self.paths) >= self.max_count:
            self.finish(f'saved all {self.max_count} frames')

    def check(self, now: float) -> None:
        """End the recording at its deadline or when the camera has stalled."""
        if not self.running:
            return
        if now >= self.deadline:
            self.finish(f'max_duration reached ({self.deadline - self.started:g} s)')
        elif now - self._last_frame > self.stall_after:
            self.finish(f'no new camera frame for {now - self._last_frame:.1f} s: is the '
                        'camera running?', failed=True)

    def finish(self, reason: str, failed: bool = False) -> None:
        """End it (the first reason given stays) and call the done callbacks, in the thread
        that ends it."""
        with self._lock:
            if not self.running:
                return
            self.reason, self.failed = reason, failed
            self._done.set()
            callbacks, self._on_done = self._on_done, []
        for callback in callbacks:
            callback()

    def add_done_callback(self, callback) -> None:
        """Call ``callback()`` (no arguments) once the recording has ended: now, if it has."""
        with self._lock:
            if self.running:
                self._on_done.append(callback)
                return
        callback()

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` s; True when it has ended."""
        return self._done.wait(timeout)

    def summary(self) -> str:
        """'saved 30 of 30 under thumbs_up: saved all 30 frames' and the like."""
        state = self.reason or 'running'
        return f'saved {self.saved_count} of {self.max_count} under {self.label}: {state}'
