"""collector node: keeps the newest camera frame and, when its ``collect`` service is called
with a label, stores that frame as ``<dataset_dir>/<label>/<uuid>.jpg``; records bursts of new
frames; reviews, deletes and restores samples; publishes the dataset's state.

Subscribes ``image_raw`` (sensor_msgs/Image; or ``image_raw/compressed`` with
``image_transport: compressed``; sensor-data QoS, depth 1). Serves ``collect``
(gesture_interfaces/srv/Collect, with ``count`` > 1 a burst), ``record`` (Record: hold to
record, start/stop), ``delete_samples`` (DeleteSamples), ``undo_collect`` (UndoCollect),
``restore_samples`` (RestoreSamples), and, for a trainer on another computer
(``dataset_source: collector``), ``list_samples`` (ListSamples: every sample with its size and
SHA-256) and ``get_samples`` (GetSamples: their bytes, read only inside the dataset folder; see
gesture_classifier.datasync). Publishes ``dataset`` (DatasetState, latched) at start, after
every change it makes, and when the folder changed otherwise (checked every ``state_period``
s).

Parameters: task, classes, data_dir, dataset_dir (read-only, see common.declare_task) and
    max_frame_age (double, s): a frame received longer ago than this is refused as stale;
        a burst ends when no new frame arrives for this long after its interval;
    max_collect_rate (double, 1/s): requests beyond this rate are refused, and bursts save at
        most this many frames per second;
    label_pattern (string): a regular expression labels must match (narrows, never widens,
        the built-in safe-name rule and the task's classes);
    max_burst (int): most frames of one burst or recording;
    max_record_duration (double, s): longest recording when the request gives 0;
    trash_max_age (double, s; 0 = no limit), trash_max_files (int): how long / how many
        deleted samples stay restorable;
    state_period (double, s; 0 = off): how often to look for changes made by others.

A request with an unknown or unsafe label or path, without a recent frame, with a malformed
frame or on a full disk gets ``success=false`` and a reason; nothing partial is written, no
file outside the dataset and its trash is touched, and the node keeps running.

Diagnostics (``/diagnostics``, 1 Hz, status ``collector: dataset``): samples per class, free
disk, frames received, collects saved and refused requests by reason; WARN below 100 MB free
or without camera frames.
"""
from __future__ import annotations

import array
import math
import re
import shutil
import threading
import time
from collections import Counter

from builtin_interfaces.msg import Time
from gesture_interfaces.msg import DatasetState, SampleFile
from gesture_interfaces.srv import (Collect, DeleteSamples, GetSamples, ListSamples, Record,
                                    RestoreSamples, UndoCollect)
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from ..dataset import count_images, save_sample
from ..datasync import MAX_PAGE, DigestCache, list_samples, read_samples
from ..imaging import ImageFormatError, message_to_array
from ..recording import Recording
from ..samples import (MAX_PATHS, SampleError, class_counts, delete_samples, newest_samples,
                       prune_trash, restore_samples, summarize)
from ..tasks import LABEL_PATTERN, InvalidNameError
from .common import (LATCHED_QOS, NO_FRAME_YET, declare, declare_task, run_node,
                     subscribe_images)
from .diagnostics import OK, WARN, updater_for

#: Most trash paths listed in a DatasetState message (trash_count counts all).
MAX_TRASH_LISTED = 1000


def _stamp_ns(msg: Image) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec

#: Refusal reasons counted in the diagnostics: (start of the reason text, key).
REFUSAL_KINDS = (('label', 'label'), ('unknown label', 'label'), ('too many', 'rate'),
                 (NO_FRAME_YET, 'no frame'), ('newest frame', 'stale frame'),
                 ('malformed', 'malformed image'), ('could not save', 'save failed'))


class CollectorNode(Node):
    def __init__(self, **kwargs):
        super().__init__('collector', **kwargs)
        self.task = declare_task(self, dataset=True)
        self.max_frame_age = declare(self, 'max_frame_age', 1.0,
                                     'Refuse frames received longer ago than this (s)',
                                     float_range=(0.01, 3600.0), read_only=True)
        self.max_collect_rate = declare(
            self, 'max_collect_rate', 20.0, 'Most collect requests served per second; faster '
            'ones are refused (protects the disk from request floods). Bursts save at most '
            'this many frames per second', float_range=(0.1, 1000.0), read_only=True)
        pattern = declare(
            self, 'label_pattern', LABEL_PATTERN.pattern, 'Regular expression a label must '
            'match in full. It can only narrow what is accepted: labels must also be safe '
            'names and classes of the task', read_only=True)
        try:
            self.label_pattern = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f'label_pattern {pattern!r} is not a regular expression: '
                             f'{exc}') from exc
        self.max_burst = declare(self, 'max_burst', 100, 'Most frames one collect burst or '
                                 'recording saves', int_range=(1, 10000), read_only=True)
        self.max_record_duration = declare(
            self, 'max_record_duration', 60.0, 'Longest recording (s) when the record request '
            'gives 0', float_range=(0.1, 3600.0), read_only=True)
        self.trash_max_age = declare(
            self, 'trash_max_age', 7 * 24 * 3600.0, 'Deleted samples older than this (s) are '
            'removed from the trash for good; 0 = no age limit', float_range=(0.0, 1e9),
            read_only=True)
        self.trash_max_files = declare(
            self, 'trash_max_files', 500, 'Most deleted samples kept restorable; the oldest '
            'beyond are removed for good', int_range=(0, 1000000), read_only=True)
        self.state_period = declare(
            self, 'state_period', 5.0, 'Seconds between checks for dataset changes made by '
            'others (files copied in, free space); 0 = only after own changes',
            float_range=(0.0, 3600.0), read_only=True)
        self._lock = threading.Lock()  # dataset changes, recording state, state publishing
        self._last_saved = -math.inf  # time.monotonic() of the last accepted request
        self._latest: Image | CompressedImage | None = None
        self._received = 0.0  # time.monotonic() when _latest arrived
        self._recording: Recording | None = None
        self._last_recording: Recording | None = None
        self._revision = 0
        self._published_key = None
        self._state_pub = self.create_publisher(DatasetState, 'dataset', LATCHED_QOS)
        frames = MutuallyExclusiveCallbackGroup()
        services = ReentrantCallbackGroup()
        self._image_topic = subscribe_images(self, self._on_image, callback_group=frames)
        self.create_service(Collect, 'collect', self._on_collect, callback_group=services)
        self.create_service(Record, 'record', self._on_record, callback_group=services)
        self.create_service(DeleteSamples, 'delete_samples', self._on_delete,
                            callback_group=services)
        self.create_service(UndoCollect, 'undo_collect', self._on_undo,
                            callback_group=services)
        self.create_service(RestoreSamples, 'restore_samples', self._on_restore,
                            callback_group=services)
        self._digests = DigestCache()
        self.samples_served = 0
        self.create_service(ListSamples, 'list_samples', self._on_list_samples,
                            callback_group=services)
        self.create_service(GetSamples, 'get_samples', self._on_get_samples,
                            callback_group=services)
        self.create_timer(0.1, self._check_recording, callback_group=frames)
        if self.state_period > 0:
            self.create_timer(self.state_period, self._refresh_state, callback_group=frames)
        self.frames_received, self.saved, self.refused = 0, 0, Counter()
        self._diagnostics = updater_for(self, str(self.task.dataset_dir))
        self._diagnostics.add('dataset', self._diagnose)
        self._prune()
        counts = ', '.join(f'{c}: {n}' for c, n in zip(self.task.classes,
                                                          class_counts(self.task)))
        self.publish_state(force=True)
        self.get_logger().info(f'task {self.task.name!r}, dataset {self.task.dataset_dir} '
                               f'({counts}), trash {self.task.trash}')

    # -- dataset state ---------------------------------------------------------------------
    def publish_state(self, force: bool = False) -> None:
        """Read the dataset from disk and publish it when it changed (or ``force``)."""
        with self._lock:
            try:
                s = summarize(self.task)
            except OSError as exc:
                self.get_logger().warning(f'could not read the dataset state: {exc}')
                return
            rec = self._recording if self._recording and self._recording.running else None
            key = (s.counts, s.newest, s.size_bytes, s.free_bytes >> 20,
                   tuple(e.path for e in s.trash), rec and (rec.label, rec.saved_count))
            if not force and key == self._published_key:
                return
            self._published_key = key
            self._revision += 1
            msg = DatasetState(task=self.task.name, dataset_dir=str(self.task.dataset_dir),
                               class_names=list(self.task.classes), counts=list(s.counts),
                               total=s.total, size_bytes=s.size_bytes,
                               free_bytes=s.free_bytes, trash_count=len(s.trash),
                               trash_bytes=s.trash_bytes, revision=self._revision)
            msg.header.stamp = self.get_clock().now().to_msg()
            for path, mtime in s.newest:
                msg.newest_paths.append(str(path) if path else '')
                msg.newest_stamps.append(Time(sec=int(mtime),
                                              nanosec=int(round((mtime % 1) * 1e9)) % 10**9))
            msg.trash_paths = [str(e.original) for e in s.trash[:MAX_TRASH_LISTED]]
            if rec is not None:
                msg.recording, msg.recording_label = True, rec.label
                msg.recording_saved = rec.saved_count
            self._state_pub.publish(msg)

    def _refresh_state(self) -> None:
        self._prune()
        self.publish_state()

    def _prune(self) -> None:
        try:
            with self._lock:
                removed = prune_trash(self.task, self.trash_max_age, self.trash_max_files)
        except OSError as exc:
            self.get_logger().warning(f'could not prune the trash: {exc}')
            return
        if removed:
            self.get_logger().info(f'removed {removed} old sample(s) from the trash for good')

    def _count(self, label: str) -> int:
        try:
            return count_images(self.task, label)
        except (ValueError, OSError):
            return 0

    # -- frames and recordings -------------------------------------------------------------
    def _on_image(self, msg: Image | CompressedImage) -> None:
        # Only a reference is kept; the frame is decoded when (and if) it is collected.
        now = time.monotonic()
        self._latest, self._received = msg, now
        self.frames_received += 1
        rec = self._recording
        if rec is None or not rec.wants(_stamp_ns(msg), now):
            return
        try:
            view = message_to_array(msg)
            with self._lock:
                if not rec.running:
                    return
                path, _ = save_sample(self.task, rec.label, view.pixels, view.order)
                rec.saved(path, _stamp_ns(msg), now)
                self.saved += 1
                self._last_saved = now
        except ImageFormatError as exc:
            self.get_logger().warning(f'recording: skipped a malformed image: {exc}')
            return
        except (OSError, ValueError) as exc:
            rec.finish(f'could not save the image: {exc}', failed=True)
            self.get_logger().error(f'recording stopped: {exc}')
        self.publish_state()

    def _diagnose(self, stat):
        folder = next(p for p in (self.task.dataset_dir, *self.task.dataset_dir.parents)
                      if p.exists())
        free = shutil.disk_usage(folder).free
        if free < 100e6:
            stat.summary(WARN, f'only {free / 1e6:.0f} MB free for samples')
        elif self._latest is None:
            stat.summary(WARN, 'no camera frame received yet')
        else:
            stat.summary(OK, f'{self.saved} sample(s) collected since start')
        for label in self.task.classes:
            stat.add(f'samples {label}', self._count(label))
        stat.add('free disk (MB)', f'{free / 1e6:.0f}')
        stat.add('frames received', self.frames_received)
        stat.add('collected', self.saved)
        stat.add('samples sent over ROS', self.samples_served)
        for kind in dict.fromkeys([k for _, k in REFUSAL_KINDS] + ['other']):
            stat.add(f'refused: {kind}', self.refused[kind])
        return stat

    def _check_recording(self) -> None:
        rec = self._recording
        if rec is not None:
            rec.check(time.monotonic())
            if not rec.running:
                self._end_recording(rec)

    def _end_recording(self, rec: Recording) -> None:
        with self._lock:
            if self._recording is not rec:
                return
            self._recording, self._last_recording = None, rec
        self.get_logger().info(f'recording ended: {rec.summary()}')
        self.publish_state()

    def _check_label(self, label: str) -> str:
        """'' when ``label`` may be collected, else the reason."""
        try:
            if not self.label_pattern.fullmatch(label):
                raise ValueError(f'label {label[:80]!r} does not match label_pattern '
                                 f'{self.label_pattern.pattern!r}')
            self.task.class_dir(label)
        except (InvalidNameError, ValueError) as exc:
            return str(exc)
        return ''

    def _start_recording(self, label: str, max_count: int, interval: float,
                         duration: float) -> Recording | str:
        """A running Recording, or the reason it cannot start."""
        if not (math.isfinite(interval) and 0.0 <= interval <= 60.0):
            return f'interval must be in 0..60 s, got {interval}'
        if not (math.isfinite(duration) and 0.0 <= duration <= 3600.0):
            return f'max_duration must be in 0..3600 s, got {duration}'
        if not 0 <= max_count <= self.max_burst:
            return f'count must be in 0..{self.max_burst} (max_burst), got {max_count}'
        if self._latest is None:
            return f'{NO_FRAME_YET} on {self.resolve_topic_name("image_raw")}'
        now = time.monotonic()
        rec = Recording(label=label, max_count=max_count or self.max_burst,
                        min_gap=max(interval, 1.0 / self.max_collect_rate), started=now,
                        deadline=now + (duration or self.max_record_duration),
                        stall_after=self.max_frame_age + max(interval,
                                                             1.0 / self.max_collect_rate))
        with self._lock:
            if self._recording is not None:
                return self._busy()
            self._recording = rec
        self.get_logger().info(f'recording up to {rec.max_count} frames under {label} '
                               f'(at least {rec.min_gap:g} s apart)')
        self.publish_state()
        return rec

    def _busy(self) -> str:
        rec = self._recording
        return (f'a recording under {rec.label} is running ({rec.saved_count} saved); stop it '
                'first' if rec else '')

    # -- services --------------------------------------------------------------------------
    def _on_collect(self, request: Collect.Request, response: Collect.Response):
        label = request.label
        error = self._check_label(label)
        if error:
            return self._fail(response, error)
        if request.count > 1:
            return self._burst(request, response)
        if self._recording is not None:
            return self._fail(response, self._busy(), label)
        now = time.monotonic()
        with self._lock:  # requests are served in parallel: check and reserve in one step
            previous = self._last_saved
            if now - previous < 1.0 / self.max_collect_rate:
                limited = True
            else:
                limited, self._last_saved = False, now
        if limited:
            return self._fail(response, f'too many requests: at most '
                              f'{self.max_collect_rate:g} collects per second', label)
        response = self._collect_one(label, now, response)
        if not response.success:
            with self._lock:  # a refused request does not count against the rate
                if self._last_saved == now:
                    self._last_saved = previous
        return response

    def _collect_one(self, label: str, now: float, response: Collect.Response):
        msg, received = self._latest, self._received
        if msg is None:
            return self._fail(response, f'{NO_FRAME_YET} on '
                              f'{self._image_topic}', label)
        age = time.monotonic() - received
        if age > self.max_frame_age:
            return self._fail(response, f'newest frame is {age:.2f} s old (max_frame_age '
                              f'{self.max_frame_age:g} s): is the camera running?', label)
        try:
            view = message_to_array(msg)
            with self._lock:
                if self._recording is not None:
                    return self._fail(response, self._busy(), label)
                path, count = save_sample(self.task, label, view.pixels, view.order)
        except ImageFormatError as exc:
            return self._fail(response, f'malformed image message: {exc}', label)
        except (OSError, ValueError) as exc:
            return self._fail(response, f'could not save the image: {exc}', label)
        self.saved += 1
        response.success, response.path, response.count = True, str(path), count
        response.saved, response.paths = 1, [str(path)]
        response.message = f'saved {label} #{count}'
        self.get_logger().info(f'{response.message}: {path}')
        self.publish_state()
        return response

    def _burst(self, request: Collect.Request, response: Collect.Response):
        rec = self._start_recording(request.label, request.count, request.interval, 0.0)
        if isinstance(rec, str):
            return self._fail(response, rec, request.label)
        while not rec.wait(0.05):
            rec.check(time.monotonic())
        self._end_recording(rec)
        return self._recording_response(rec, response)

    def _recording_response(self, rec: Recording, response):
        response.saved, response.paths = rec.saved_count, [str(p) for p in rec.paths]
        response.count = self._count(rec.label)
        response.success = rec.saved_count == rec.max_count and not rec.failed
        response.message = rec.summary()
        if hasattr(response, 'path'):
            response.path = response.paths[-1] if response.paths else ''
        # rclpy wants one severity per call site: two calls
        if response.success:
            self.get_logger().info(f'recording: {response.message}')
        else:
            self.get_logger().warning(f'recording: {response.message}')
        return response

    def _on_record(self, request: Record.Request, response: Record.Response):
        if request.stop:
            rec = self._recording or self._last_recording
            if rec is None:
                response.success, response.message = False, 'no recording to stop'
                return response
            rec.finish('stopped')
            self._end_recording(rec)
            self._recording_response(rec, response)
            # a recording stopped by the user has done what it was asked
            response.success = not rec.failed
            return response
        error = self._check_label(request.label)
        if error:
            response.success, response.message = False, error
            return response
        rec = self._start_recording(request.label, request.max_count, request.interval,
                                    request.max_duration)
        if isinstance(rec, str):
            response.success, response.message = False, rec
            response.count = self._count(request.label)
            self.get_logger().warning(f'record refused: {rec}')
            return response
        response.success, response.count = True, self._count(request.label)
        response.message = (f'recording up to {rec.max_count} frames under {rec.label} for at '
                             f'most {rec.deadline - rec.started:g} s')
        return response

    def _change(self, response, what: str, change) -> object:
        """Run ``change()`` (a list of paths) under the lock; fill ``response.message`` /
        ``success`` / ``counts``; publish the new state."""
        try:
            with self._lock:
                paths = change()
        except SampleError as exc:
            response.success, response.message = False, str(exc)
            self.get_logger().warning(f'{what} refused: {exc}')
            paths = None
        except OSError as exc:
            response.success, response.message = False, f'{what} failed (nothing changed): {exc}'
            self.get_logger().error(response.message)
            paths = None
        else:
            response.success = True
            response.message = f'{what}: {len(paths)} sample(s)'
            self.get_logger().info(response.message)
        response.counts = class_counts(self.task)
        if paths is not None:
            self._prune()
            self.publish_state()
        return paths

    def _on_delete(self, request: DeleteSamples.Request, response: DeleteSamples.Response):
        paths = self._change(response, 'moved to the trash',
                             lambda: delete_samples(self.task, list(request.paths)))
        response.deleted = [str(p) for p in paths or []]
        return response

    def _on_undo(self, request: UndoCollect.Request, response: UndoCollect.Response):
        def undo():
            if request.label and (error := self._check_label(request.label)):
                raise SampleError(error)
            victims = newest_samples(self.task, request.count or 1, request.label)
            if not victims:
                raise SampleError('nothing to undo: no samples' +
                                  (f' under {request.label}' if request.label else ''))
            return delete_samples(self.task, [str(p) for p in victims])

        if request.count > MAX_PATHS:
            response.success = False
            response.message = f'count must be in 0..{MAX_PATHS}, got {request.count}'
            response.counts = class_counts(self.task)
            return response
        paths = self._change(response, 'undone (moved to the trash)', undo)
        response.deleted = [str(p) for p in paths or []]
        return response

    def _on_restore(self, request: RestoreSamples.Request,
                    response: RestoreSamples.Response):
        paths = self._change(response, 'restored',
                             lambda: restore_samples(self.task, list(request.paths)))
        response.restored = [str(p) for p in paths or []]
        return response

    # -- the dataset for a trainer on another computer ---------------------------------------
    def _on_list_samples(self, request: ListSamples.Request, response: ListSamples.Response):
        response.task, response.class_names = self.task.name, list(self.task.classes)
        count = request.max_count or MAX_PAGE
        if count > MAX_PAGE:
            response.success = False
            response.message = f'max_count must be in 0..{MAX_PAGE}, got {request.max_count}'
            return response
        try:
            listing = list_samples(self.task, self._digests)
        except OSError as exc:
            response.success, response.message = False, f'cannot list the dataset: {exc}'
            self.get_logger().error(response.message)
            return response
        page = listing.entries[request.offset:request.offset + count]
        response.success, response.message = True, listing.note
        response.total, response.listing_sha256 = len(listing.entries), listing.digest
        response.labels = [e.label for e in page]
        response.names = [e.name for e in page]
        response.sizes = [e.size for e in page]
        response.sha256s = [e.sha256 for e in page]
        response.untransferable = listing.untransferable
        return response

    def _on_get_samples(self, request: GetSamples.Request, response: GetSamples.Response):
        if len(request.labels) != len(request.names):
            response.success = False
            response.message = (f'labels ({len(request.labels)}) and names '
                                f'({len(request.names)}) must have the same length')
            return response
        try:
            items = read_samples(self.task, list(zip(request.labels, request.names)))
        except ValueError as exc:
            response.success, response.message = False, str(exc)
            return response
        for item in items:
            response.samples.append(SampleFile(
                label=item.label, name=item.name, sha256=item.sha256,
                data=array.array('B', item.data), error=item.error))
        failed = [item for item in items if item.error]
        if failed:  # one line per call, however many were refused
            self.get_logger().warning(f'get_samples: {len(failed)} of {len(items)} not sent '
                                      f'(first: {failed[0].label}/{failed[0].name}: '
                                      f'{failed[0].error})')
        self.samples_served += len(items) - len(failed)
        response.success = True
        return response

    def _fail(self, response: Collect.Response, reason: str, label: str | None = None):
        """A refusal; ``count`` is what is stored under ``label`` (0 for an invalid label).
        Only refusals list the folder: a successful save gets its count from save_sample."""
        response.success, response.message, response.path = False, reason, ''
        response.count = self._count(label) if label is not None else 0
        self.refused[next((k for start, k in REFUSAL_KINDS if reason.startswith(start)),
                          'other')] += 1
        self.get_logger().warning(f'collect refused: {reason}')
        return response


def main(args=None):
    run_node(CollectorNode, args,
             executor_factory=lambda: MultiThreadedExecutor(num_threads=4))


if __name__ == '__main__':
    main()
