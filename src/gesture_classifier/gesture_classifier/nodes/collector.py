"""collector node: keeps the newest camera frame and stores it as a sample when asked; records
bursts of new frames; reviews, deletes and restores samples; publishes the dataset's state.
The work is gesture_classifier.core.collector (encoding and writing happen outside its lock;
the dataset is indexed, not listed per saved frame).

Subscribes ``image_raw`` (or ``image_raw/compressed`` with ``image_transport: compressed``;
sensor-data QoS, depth 1). Serves ``collect`` (Collect; ``count`` > 1: a burst), ``record``
(Record: hold to record), ``add_sample`` (AddSample: an image the caller holds, such as a
frame of the classifier's review queue, stored with the checks of ``collect``),
``delete_samples``, ``undo_collect``, ``restore_samples`` and, for
a trainer on another computer (``dataset_source: collector``), ``list_samples`` (every sample
with its size and SHA-256) and ``get_samples`` (their bytes, read only inside the dataset
folder; gesture_classifier.core.datasync). Publishes ``dataset`` (DatasetState, latched) at
start, after every change it makes, and when the folder changed otherwise (checked every
``state_period`` s).

A request with an unknown or unsafe label or path, without a recent frame, with a malformed
frame or on a full disk gets ``success=false`` and a reason; nothing partial is written, no
file outside the dataset and its trash is touched, and the node keeps running.

Parameters: PARAMETERS below (docs/parameters.md). Diagnostics (``/diagnostics``, status
``collector: dataset``): samples per class, free disk, frames, collects and refusals by reason;
WARN below 100 MB free or without camera frames.
"""
from __future__ import annotations

import array
import re

from gesture_interfaces.msg import DatasetState, SampleFile
from gesture_interfaces.srv import (AddSample, Collect, DeleteSamples, GetSamples, ListSamples,
                                    Record, RestoreSamples, UndoCollect)
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.task import Future

from ..core.collector import Collector, CollectorSettings
from ..core.datasync import MAX_PAGE, DigestCache, list_samples, read_samples
from ..core.recording import Recording
from ..core.tasks import LABEL_PATTERN
from ..ros.diagnostics import OK, WARN, updater_for
from ..ros.messages import dataset_state, to_msg
from ..ros.params import Param, declare_all, declare_task
from ..ros.runtime import run_node
from ..ros.topics import LATCHED_QOS, subscribe_images

#: The node's parameters (read-only), besides the task's.
PARAMETERS = (
    Param('max_frame_age', 1.0, 'Refuse frames received longer ago than this (s)',
          (0.01, 3600.0)),
    Param('max_collect_rate', 20.0, 'Most collect requests served per second; faster ones are '
          'refused (protects the disk from request floods). Bursts save at most this many '
          'frames per second', (0.1, 1000.0)),
    Param('label_pattern', LABEL_PATTERN.pattern, 'Regular expression a label must match in '
          'full. It can only narrow what is accepted: labels must also be safe names and '
          'classes of the task'),
    Param('max_burst', 100, 'Most frames one collect burst or recording saves', (1, 10000)),
    Param('max_record_duration', 60.0, 'Longest recording (s) when the record request gives 0',
          (0.1, 3600.0)),
    Param('trash_max_age', 7 * 24 * 3600.0, 'Deleted samples older than this (s) are removed '
          'from the trash for good; 0 = no age limit', (0.0, 1e9)),
    Param('trash_max_files', 500, 'Most deleted samples kept restorable; the oldest beyond '
          'are removed for good', (0, 1000000)),
    Param('state_period', 5.0, 'Seconds between checks for dataset changes made by others '
          '(files copied in, free space); 0 = only after own changes', (0.0, 3600.0)),
)


class CollectorNode(Node):
    def __init__(self, **kwargs):
        super().__init__('collector', **kwargs)
        self.task = declare_task(self, dataset=True, on_classes=self._on_classes)
        p = declare_all(self, PARAMETERS, read_only=True)
        try:
            pattern = re.compile(p['label_pattern'])
        except re.error as exc:
            raise ValueError(f"label_pattern {p['label_pattern']!r} is not a regular "
                             f'expression: {exc}') from exc
        settings = CollectorSettings(label_pattern=pattern, **{k: p[k] for k in (
            'max_frame_age', 'max_collect_rate', 'max_burst', 'max_record_duration',
            'trash_max_age', 'trash_max_files')})
        self._state_pub = self.create_publisher(DatasetState, 'dataset', LATCHED_QOS)
        # One executor thread serves everything (rclpy's 4-thread MultiThreadedExecutor cost
        # 39 % of a core just receiving 30 frames/s here, this 5 %: docs/benchmarks.md); a
        # burst's answer is awaited (_on_collect), so that thread keeps delivering its frames. The
        # services are reentrant: a pending burst holds its callback group until it answers,
        # which in the node's default (mutually exclusive) group would stop the frames.
        services = ReentrantCallbackGroup()
        topic = subscribe_images(self, self._on_image)
        self.collector = Collector(self.task, settings, topic, self._publish_state)
        for srv, name, handler in (
                (Collect, 'collect', self._on_collect), (Record, 'record', self._on_record),
                (AddSample, 'add_sample', self._on_add_sample),
                (DeleteSamples, 'delete_samples', self._on_delete),
                (UndoCollect, 'undo_collect', self._on_undo),
                (RestoreSamples, 'restore_samples', self._on_restore),
                (ListSamples, 'list_samples', self._on_list_samples),
                (GetSamples, 'get_samples', self._on_get_samples)):
            self.create_service(srv, name, handler, callback_group=services)
        self._digests = DigestCache()
        self.samples_served = 0
        self.create_timer(0.1, self.collector.check_recording)
        if p['state_period'] > 0:
            self.create_timer(p['state_period'], self.collector.refresh)
        updater_for(self, str(self.task.dataset_dir)).add('dataset', self._diagnose)
        self.collector.prune()
        self.collector.publish_state(force=True)
        counts = ', '.join(f'{c}: {self.collector.count(c)}' for c in self.task.classes)
        self.get_logger().info(f'task {self.task.name!r}, dataset {self.task.dataset_dir} '
                               f'({counts}), trash {self.task.trash}')

    def _on_classes(self, task) -> None:
        """Classes were added (``classes`` set): collect them from now on."""
        self.task = task
        self.collector.set_task(task)

    def _publish_state(self, summary, recording, revision: int) -> None:
        """The dataset's state changed (the collector's lock is held: in revision order)."""
        msg = dataset_state(summary, self.collector.task, revision, recording)
        msg.header.stamp = self.get_clock().now().to_msg()
        self._state_pub.publish(msg)

    def _on_image(self, msg) -> None:
        # Only a reference is kept; the frame is decoded when (and if) it is collected.
        self.collector.offer(msg)

    def _diagnose(self, stat):
        level, summary, values = self.collector.status()
        stat.summary(WARN if level == 'warn' else OK, summary)
        for key, value in values + [('samples sent over ROS', self.samples_served)]:
            stat.add(key, value)
        return stat

    # -- services: each a call of the collector, its Answer converted to the response --------
    async def _on_collect(self, request, response):
        answer = self.collector.begin_collect(request.label, request.count, request.interval)
        if isinstance(answer, Recording):  # a burst: the frames arrive while this awaits
            ended = Future()
            answer.add_done_callback(lambda: ended.set_result(True))
            await ended
            answer = self.collector.burst_answer(answer)
        return to_msg(answer, Collect.Response)

    def _on_add_sample(self, request, response):
        return to_msg(self.collector.add_sample(request.label, request.image),
                      AddSample.Response)

    def _on_record(self, request, response):
        answer = self.collector.stop() if request.stop else self.collector.record(
            request.label, request.max_count, request.interval, request.max_duration)
        return to_msg(answer, Record.Response)

    def _on_delete(self, request, response):
        return to_msg(self.collector.delete(list(request.paths)), DeleteSamples.Response)

    def _on_undo(self, request, response):
        return to_msg(self.collector.undo(request.label, request.count), UndoCollect.Response)

    def _on_restore(self, request, response):
        return to_msg(self.collector.restore(list(request.paths)), RestoreSamples.Response)

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


def main(args=None):
    run_node(CollectorNode, args)


if __name__ == '__main__':
    main()
