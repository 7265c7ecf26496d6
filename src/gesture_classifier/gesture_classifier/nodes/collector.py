"""collector node: keeps the newest camera frame and, when its ``collect`` service is called
with a label, stores that frame as ``<dataset_dir>/<label>/<uuid>.jpg``.

Subscribes ``image_raw`` (sensor_msgs/Image; or ``image_raw/compressed`` with
``image_transport: compressed``; sensor-data QoS, depth 1); serves ``collect``
(gesture_interfaces/srv/Collect).

Parameters: task, classes, data_dir, dataset_dir (read-only, see common.declare_task) and
    max_frame_age (double, s): a frame received longer ago than this is refused as stale;
    max_collect_rate (double, 1/s): requests beyond this rate are refused;
    label_pattern (string): a regular expression labels must match (narrows, never widens,
    the built-in safe-name rule and the task's classes).

A request with an unknown or unsafe label, without a recent frame, with a malformed frame or
on a full disk gets ``success=false`` and a reason; nothing partial is written and the node
keeps running.

Diagnostics (``/diagnostics``, 1 Hz, status ``collector: dataset``): samples per class, free
disk, frames received, collects saved and refused requests by reason; WARN below 100 MB free
or without camera frames.
"""
from __future__ import annotations

import math
import re
import shutil
import time
from collections import Counter

from gesture_interfaces.srv import Collect
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image

from ..dataset import count_images, save_sample
from ..imaging import ImageFormatError, message_to_array
from ..tasks import LABEL_PATTERN, InvalidNameError
from .common import NO_FRAME_YET, declare, declare_task, run_node, subscribe_images
from .diagnostics import OK, WARN, updater_for

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
            'ones are refused (protects the disk from request floods)',
            float_range=(0.1, 1000.0), read_only=True)
        pattern = declare(
            self, 'label_pattern', LABEL_PATTERN.pattern, 'Regular expression a label must '
            'match in full. It can only narrow what is accepted: labels must also be safe '
            'names and classes of the task', read_only=True)
        try:
            self.label_pattern = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f'label_pattern {pattern!r} is not a regular expression: '
                             f'{exc}') from exc
        self._last_saved = -math.inf  # time.monotonic() of the last accepted request
        self._latest: Image | CompressedImage | None = None
        self._received = 0.0  # time.monotonic() when _latest arrived
        self._image_topic = subscribe_images(self, self._on_image)
        self.create_service(Collect, 'collect', self._on_collect)
        self.frames_received, self.saved, self.refused = 0, 0, Counter()
        self._diagnostics = updater_for(self, str(self.task.dataset_dir))
        self._diagnostics.add('dataset', self._diagnose)
        counts = ', '.join(f'{c}: {self._count(c)}' for c in self.task.classes)
        self.get_logger().info(f'task {self.task.name!r}, dataset {self.task.dataset_dir} '
                               f'({counts})')

    def _count(self, label: str) -> int:
        try:
            return count_images(self.task, label)
        except (ValueError, OSError):
            return 0

    def _on_image(self, msg: Image | CompressedImage) -> None:
        # Only a reference is kept; the frame is decoded when (and if) it is collected.
        self._latest, self._received = msg, time.monotonic()
        self.frames_received += 1

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
        for kind in dict.fromkeys([k for _, k in REFUSAL_KINDS] + ['other']):
            stat.add(f'refused: {kind}', self.refused[kind])
        return stat

    def _on_collect(self, request: Collect.Request, response: Collect.Response):
        label = request.label
        try:
            if not self.label_pattern.fullmatch(label):
                raise ValueError(f'label {label[:80]!r} does not match label_pattern '
                                 f'{self.label_pattern.pattern!r}')
            self.task.class_dir(label)
        except (InvalidNameError, ValueError) as exc:
            return self._fail(response, str(exc))
        now = time.monotonic()
        if now - self._last_saved < 1.0 / self.max_collect_rate:
            return self._fail(response, f'too many requests: at most '
                              f'{self.max_collect_rate:g} collects per second', label)
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
            path, count = save_sample(self.task, label, view.pixels, view.order)
        except ImageFormatError as exc:
            return self._fail(response, f'malformed image message: {exc}', label)
        except (OSError, ValueError) as exc:
            return self._fail(response, f'could not save the image: {exc}', label)
        self._last_saved = now
        self.saved += 1
        response.success, response.path, response.count = True, str(path), count
        response.message = f'saved {label} #{count}'
        self.get_logger().info(f'{response.message}: {path}')
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
    run_node(CollectorNode, args)


if __name__ == '__main__':
    main()
