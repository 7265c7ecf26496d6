"""The collector's work in plain Python: which camera frames are stored under which label
(one frame, a burst, hold to record), deleting, undoing and restoring samples, and the
dataset's state. nodes/collector.py wires it to ROS services and topics.

Threads: frames arrive in one thread, requests in others. ``lock`` guards the dataset index,
the recording and the state publication; a frame is decoded, JPEG-encoded and written (the
atomic rename, see dataset.write_sample) *outside* it, and only entered into the index under
it, so a slow disk never holds up the other requests. The index (samples.DatasetIndex) is kept
by these changes instead of listing the folder per saved frame.
"""
from __future__ import annotations

import hashlib
import logging
import math
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .imagefiles import encode_sample, write_sample
from .imaging import ImageFormatError, message_to_array
from .recording import Recording
from .samples import (MAX_PATHS, DatasetIndex, DatasetSummary, SampleError, delete_samples,
                      newest_samples, prune_trash, restore_samples)
from .tasks import LABEL_PATTERN, InvalidNameError, Task

__all__ = ['NO_FRAME_YET', 'REFUSAL_KINDS', 'CollectorSettings', 'Answer', 'Collector']

LOG = logging.getLogger(__name__)

#: Start of the collector's answer while it has not received any camera frame yet (the client
#: retries on it just after start-up).
NO_FRAME_YET = 'no camera frame received yet'
#: Refusal reasons counted in the diagnostics: (start of the reason text, key).
REFUSAL_KINDS = (('label', 'label'), ('unknown label', 'label'), ('too many', 'rate'),
                 (NO_FRAME_YET, 'no frame'), ('newest frame', 'stale frame'),
                 ('malformed', 'malformed image'), ('could not save', 'save failed'))


@dataclass(frozen=True)
class CollectorSettings:
    """The collector's parameters (see nodes/collector.py)."""

    max_frame_age: float = 1.0
    max_collect_rate: float = 20.0
    label_pattern: re.Pattern = LABEL_PATTERN
    max_burst: int = 100
    max_record_duration: float = 60.0
    trash_max_age: float = 7 * 24 * 3600.0
    trash_max_files: int = 500


@dataclass
class Answer:
    """The answer to a request: the union of the fields of the collector's service responses
    (Collect, Record, DeleteSamples, UndoCollect, RestoreSamples), so each converts with
    ros.messages.to_msg."""

    success: bool = False
    message: str = ''
    path: str = ''
    count: int = 0
    saved: int = 0
    paths: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)


def _content_digest(msg) -> bytes:
    """A digest of a frame's bytes (Image or CompressedImage ``data``): two frames with the
    same digest show the same picture."""
    return hashlib.blake2b(bytes(msg.data), digest_size=16).digest()


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _discard(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


class Collector:
    """The dataset of ``task`` and the newest camera frame. ``on_state(summary, recording,
    revision)`` is called (under ``lock``) whenever the dataset's state changed;
    ``image_topic`` names the frames' topic in answers."""

    def __init__(self, task: Task, settings: CollectorSettings, image_topic: str = 'image_raw',
                 on_state: Callable[[DatasetSummary, Recording | None, int], None] =
                 lambda *state: None):
        self.task, self.settings, self.image_topic = task, settings, image_topic
        self._on_state = on_state
        self.lock = threading.Lock()
        self._last_saved = -math.inf  # time.monotonic() of the last accepted request
        self._latest = None           # the newest frame (a message, decoded when collected)
        self._received = 0.0          # time.monotonic() when it arrived
        self._recording: Recording | None = None
        self._last_recording: Recording | None = None
        self._revision, self._published = 0, None
        self.frames_received, self.saved, self.refused = 0, 0, Counter()
        with self.lock:
            self.index = DatasetIndex(task)

    def set_task(self, task: Task) -> None:
        """Follow ``task``: this task with classes added (:meth:`Task.with_classes`). The
        dataset is listed again (a new class's folder may already hold samples) and the state
        published, with the new classes."""
        with self.lock:
            self.task = task
            self.index = DatasetIndex(task)
        self.publish_state(force=True)

    @property
    def has_frame(self) -> bool:
        return self._latest is not None

    # -- the dataset's state -----------------------------------------------------------------
    def publish_state(self, force: bool = False) -> None:
        """Hand the state to ``on_state`` when it changed since the last time (or ``force``)."""
        with self.lock:
            try:
                s = self.index.summary()
            except OSError as exc:
                LOG.warning(f'could not read the dataset state: {exc}')
                return
            rec = self._recording if self._recording and self._recording.running else None
            key = (s.counts, s.newest, s.size_bytes, s.free_bytes >> 20,
                   tuple(e.path for e in s.trash), rec and (rec.label, rec.saved_count))
            if not force and key == self._published:
                return
            self._published = key
            self._revision += 1
            self._on_state(s, rec, self._revision)

    def refresh(self) -> None:
        """Prune the trash and publish the state if someone else changed the dataset (or the
        free space changed)."""
        with self.lock:
            self.index.refresh()
        self.prune()
        self.publish_state()

    def prune(self) -> None:
        """Remove for good what is too old in the trash, or beyond trash_max_files."""
        try:
            with self.lock:
                removed = prune_trash(self.task, self.settings.trash_max_age,
                                      self.settings.trash_max_files, trash=self.index.trash)
                if removed:
                    self.index.trash_changed()
        except OSError as exc:
            LOG.warning(f'could not prune the trash: {exc}')
            return
        if removed:
            LOG.info(f'removed {removed} old sample(s) from the trash for good')

    def count(self, label: str) -> int:
        with self.lock:
            return self.index.count(label)

    def status(self) -> tuple[str, str, list[tuple[str, object]]]:
        """Diagnostics: ('ok' or 'warn', summary, key values)."""
        folder = next(p for p in (self.task.dataset_dir, *self.task.dataset_dir.parents)
                      if p.exists())
        free = shutil.disk_usage(folder).free
        if free < 100e6:
            level, summary = 'warn', f'only {free / 1e6:.0f} MB free for samples'
        elif self._latest is None:
            level, summary = 'warn', 'no camera frame received yet'
        else:
            level, summary = 'ok', f'{self.saved} sample(s) collected since start'
        with self.lock:
            counts = self.index.counts()
        values = [(f'samples {label}', n) for label, n in zip(self.task.classes, counts)]
        values += [('free disk (MB)', f'{free / 1e6:.0f}'),
                   ('frames received', self.frames_received), ('collected', self.saved)]
        values += [(f'refused: {kind}', self.refused[kind])
                   for kind in dict.fromkeys([k for _, k in REFUSAL_KINDS] + ['other'])]
        return level, summary, values

    # -- frames and recordings -----------------------------------------------------------
    def offer(self, msg, now: float | None = None) -> None:
        """A camera frame arrived (sensor_msgs/Image or CompressedImage): keep a reference,
        and save it when a recording wants it."""
        now = time.monotonic() if now is None else now
        self._latest, self._received = msg, now
        self.frames_received += 1
        rec = self._recording
        if rec is None or not rec.wants(_stamp_ns(msg), now):
            return
        digest = _content_digest(msg)  # a looping source repeats photos under new stamps
        if not rec.wants(_stamp_ns(msg), now, digest):
            return
        try:
            view = message_to_array(msg)
            path = write_sample(self.task, rec.label, encode_sample(view.pixels, view.order))
        except ImageFormatError as exc:
            LOG.warning(f'recording: skipped a malformed image: {exc}')
            return
        except (OSError, ValueError) as exc:
            rec.finish(f'could not save the image: {exc}', failed=True)
            LOG.error(f'recording stopped: {exc}')
            self.publish_state()
            return
        with self.lock:
            kept = rec.running
            if kept:
                self.index.added(path)
                rec.saved(path, _stamp_ns(msg), now, digest)
                self.saved += 1
                self._last_saved = now
        if not kept:  # the recording ended while the frame was written: not one of its own
            _discard(path)
            return
        self.publish_state()

    def check_recording(self, now: float | None = None) -> None:
        """End the recording at its deadline or when the camera stalled (a timer calls it)."""
        rec = self._recording
        if rec is not None:
            rec.check(time.monotonic() if now is None else now)
            if not rec.running:
                self._end_recording(rec)

    def _end_recording(self, rec: Recording) -> None:
        with self.lock:
            if self._recording is not rec:
                return
            self._recording, self._last_recording = None, rec
        LOG.info(f'recording ended: {rec.summary()}')
        self.publish_state()

    def _check_label(self, label: str) -> str:
        """'' when ``label`` may be collected, else the reason."""
        try:
            if not self.settings.label_pattern.fullmatch(label):
                raise ValueError(f'label {label[:80]!r} does not match label_pattern '
                                 f'{self.settings.label_pattern.pattern!r}')
            self.task.class_dir(label)
        except (InvalidNameError, ValueError) as exc:
            return str(exc)
        return ''

    def _start_recording(self, label: str, max_count: int, interval: float,
                         duration: float) -> Recording | str:
        """A running Recording, or the reason it cannot start."""
        cfg = self.settings
        if not (math.isfinite(interval) and 0.0 <= interval <= 60.0):
            return f'interval must be in 0..60 s, got {interval}'
        if not (math.isfinite(duration) and 0.0 <= duration <= 3600.0):
            return f'max_duration must be in 0..3600 s, got {duration}'
        if not 0 <= max_count <= cfg.max_burst:
            return f'count must be in 0..{cfg.max_burst} (max_burst), got {max_count}'
        if self._latest is None:
            return f'{NO_FRAME_YET} on {self.image_topic}'
        now, gap = time.monotonic(), 1.0 / cfg.max_collect_rate
        rec = Recording(label=label, max_count=max_count or cfg.max_burst,
                        min_gap=max(interval, gap), started=now,
                        deadline=now + (duration or cfg.max_record_duration),
                        stall_after=cfg.max_frame_age + max(interval, gap))
        with self.lock:
            if self._recording is not None:
                return self._busy()
            self._recording = rec
        LOG.info(f'recording up to {rec.max_count} frames under {label} (at least '
                 f'{rec.min_gap:g} s apart)')
        self.publish_state()
        return rec

    def _busy(self) -> str:
        rec = self._recording
        return (f'a recording under {rec.label} is running ({rec.saved_count} saved); stop it '
                'first' if rec else '')

    def _recording_answer(self, rec: Recording) -> Answer:
        a = Answer(saved=rec.saved_count, paths=[str(p) for p in rec.paths],
                   count=self.count(rec.label), message=rec.summary(),
                   success=rec.saved_count == rec.max_count and not rec.failed)
        a.path = a.paths[-1] if a.paths else ''
        # rclpy wants one severity per call site: two calls
        if a.success:
            LOG.info(f'recording: {a.message}')
        else:
            LOG.warning(f'recording: {a.message}')
        return a

    # -- requests ------------------------------------------------------------------------
    def collect(self, label: str, count: int = 0, interval: float = 0.0) -> Answer:
        """Store the newest frame under ``label`` (``count`` > 1: a burst of that many new
        frames at least ``interval`` s apart; the answer comes when it has ended, so this
        blocks while frames are offered from another thread)."""
        started = self.begin_collect(label, count, interval)
        if isinstance(started, Answer):
            return started
        while not started.wait(0.05):
            started.check(time.monotonic())
        return self.burst_answer(started)

    def begin_collect(self, label: str, count: int = 0,
                      interval: float = 0.0) -> Answer | Recording:
        """:meth:`collect` without waiting: the Answer of a single collect or of a refusal,
        or, for a burst (``count`` > 1), its running Recording. The frames the burst saves
        come through :meth:`offer` and :meth:`check_recording` ends it at its limits; when it
        has ended (``Recording.add_done_callback``), :meth:`burst_answer` gives the answer.
        A node that serves ``collect`` from one executor thread awaits the end instead of
        blocking the thread that delivers the frames."""
        error = self._check_label(label)
        if error:
            return self._refuse(error)
        if count > 1:
            rec = self._start_recording(label, count, interval, 0.0)
            if isinstance(rec, str):
                return self._refuse(rec, label)
            return rec
        return self._rate_limited(label, lambda: self._collect_one(label))

    def burst_answer(self, rec: Recording) -> Answer:
        """The answer of the burst ``rec`` of :meth:`begin_collect` (it is ended first if it
        still runs: stopped)."""
        rec.finish('stopped')
        self._end_recording(rec)
        return self._recording_answer(rec)

    def add_sample(self, label: str, msg) -> Answer:
        """Store the image ``msg`` (sensor_msgs/CompressedImage, JPEG or PNG, or Image: e.g. a
        frame of the classifier's review queue) under ``label``, with the checks of
        :meth:`collect`: the label, the rate limit, a running recording, the size limits
        (:data:`~.imaging.MAX_COMPRESSED_BYTES`, :data:`~.imaging.MAX_COMPRESSED_PIXELS`,
        checked from the header before decoding), free space and the atomic write. The image
        is decoded and re-encoded as every sample is, never stored as sent."""
        error = self._check_label(label)
        if error:
            return self._refuse(error)
        return self._rate_limited(label, lambda: self._save(label, msg))

    def _rate_limited(self, label: str, store: Callable[[], Answer]) -> Answer:
        """``store()`` unless a recording runs or it comes faster than ``max_collect_rate``."""
        if self._recording is not None:
            return self._refuse(self._busy(), label)
        now = time.monotonic()
        with self.lock:  # requests are served in parallel: check and reserve in one step
            previous = self._last_saved
            limited = now - previous < 1.0 / self.settings.max_collect_rate
            if not limited:
                self._last_saved = now
        if limited:
            return self._refuse(f'too many requests: at most '
                                f'{self.settings.max_collect_rate:g} collects per second', label)
        answer = store()
        if not answer.success:
            with self.lock:  # a refused request does not count against the rate
                if self._last_saved == now:
                    self._last_saved = previous
        return answer

    def _collect_one(self, label: str) -> Answer:
        msg, received = self._latest, self._received
        if msg is None:
            return self._refuse(f'{NO_FRAME_YET} on {self.image_topic}', label)
        age = time.monotonic() - received
        if age > self.settings.max_frame_age:
            return self._refuse(f'newest frame is {age:.2f} s old (max_frame_age '
                                f'{self.settings.max_frame_age:g} s): is the camera running?',
                                label)
        return self._save(label, msg)

    def _save(self, label: str, msg) -> Answer:
        """Decode ``msg``, encode it as a sample and write it under ``label`` (atomically)."""
        try:
            view = message_to_array(msg)
            jpeg = encode_sample(view.pixels, view.order)
            with self.lock:
                busy = self._busy()
            if busy:
                return self._refuse(busy, label)
            path = write_sample(self.task, label, jpeg)
        except ImageFormatError as exc:
            return self._refuse(f'malformed image message: {exc}', label)
        except (OSError, ValueError) as exc:
            return self._refuse(f'could not save the image: {exc}', label)
        with self.lock:
            self.index.added(path)
            count = self.index.count(label)
        self.saved += 1
        answer = Answer(success=True, path=str(path), count=count, saved=1, paths=[str(path)],
                        message=f'saved {label} #{count}')
        LOG.info(f'{answer.message}: {path}')
        self.publish_state()
        return answer

    def record(self, label: str, max_count: int, interval: float,
               max_duration: float) -> Answer:
        """Start saving new frames under ``label`` until :meth:`stop` (or its limits)."""
        error = self._check_label(label)
        if error:
            return Answer(message=error)
        rec = self._start_recording(label, max_count, interval, max_duration)
        if isinstance(rec, str):
            LOG.warning(f'record refused: {rec}')
            return Answer(message=rec, count=self.count(label))
        return Answer(success=True, count=self.count(label),
                      message=f'recording up to {rec.max_count} frames under {rec.label} for '
                      f'at most {rec.deadline - rec.started:g} s')

    def stop(self) -> Answer:
        """Stop the recording (or report the last one)."""
        rec = self._recording or self._last_recording
        if rec is None:
            return Answer(message='no recording to stop')
        rec.finish('stopped')
        self._end_recording(rec)
        answer = self._recording_answer(rec)
        answer.success = not rec.failed  # a recording stopped by the user did what was asked
        return answer

    def _change(self, what: str, change, *, restored: bool = False) -> Answer:
        """Run ``change()`` (it returns the paths it moved) under the lock; the answer says
        what happened and holds the counts."""
        answer = Answer()
        try:
            with self.lock:
                paths = change()
                for path in paths:
                    if restored:
                        self.index.added(path)
                    else:
                        self.index.removed(path)
                self.index.trash_changed()
        except SampleError as exc:
            answer.message = str(exc)
            LOG.warning(f'{what} refused: {exc}')
            paths = None
        except OSError as exc:
            answer.message = f'{what} failed (nothing changed): {exc}'
            LOG.error(answer.message)
            paths = None
            with self.lock:
                self.index.rescan()
        else:
            answer.success, answer.message = True, f'{what}: {len(paths)} sample(s)'
            LOG.info(answer.message)
            setattr(answer, 'restored' if restored else 'deleted', [str(p) for p in paths])
        with self.lock:
            answer.counts = self.index.counts()
        if paths is not None:
            self.prune()
            self.publish_state()
        return answer

    def delete(self, paths: list[str]) -> Answer:
        """Move the samples named by ``paths`` to the trash; all or nothing."""
        return self._change('moved to the trash', lambda: delete_samples(self.task, paths))

    def undo(self, label: str, count: int) -> Answer:
        """Move the ``count`` (0: 1) newest samples (of ``label``, or of all classes) to the
        trash."""
        if count > MAX_PATHS:
            with self.lock:
                counts = self.index.counts()
            return Answer(message=f'count must be in 0..{MAX_PATHS}, got {count}',
                          counts=counts)

        def undo():
            if label and (error := self._check_label(label)):
                raise SampleError(error)
            victims = newest_samples(self.task, count or 1, label)
            if not victims:
                raise SampleError('nothing to undo: no samples' +
                                  (f' under {label}' if label else ''))
            return delete_samples(self.task, [str(p) for p in victims])

        return self._change('undone (moved to the trash)', undo)

    def restore(self, paths: list[str]) -> Answer:
        """Bring samples back from the trash (none named: the latest delete or undo)."""
        return self._change('restored', lambda: restore_samples(self.task, paths),
                            restored=True)

    def _refuse(self, reason: str, label: str | None = None) -> Answer:
        """A refused collect; ``count`` is what is stored under ``label`` (0 for an invalid
        label)."""
        self.refused[next((k for start, k in REFUSAL_KINDS if reason.startswith(start)),
                          'other')] += 1
        LOG.warning(f'collect refused: {reason}')
        return Answer(message=reason, count=self.count(label) if label is not None else 0)
