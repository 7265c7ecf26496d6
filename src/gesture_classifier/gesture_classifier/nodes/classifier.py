"""classifier node: applies the task's fine-tuned ResNet-18 to the newest camera frame and
publishes class probabilities, the debounced gesture and (for viewers) an overlay. The work is
gesture_classifier.core.classifier.

Subscribes ``image_raw`` (sensor_msgs/Image; or ``image_raw/compressed``, JPEG or PNG, with
``image_transport: compressed``; sensor-data QoS, depth 1). Frames are classified in a thread
of their own (core.worker.NewestWorker), and the next frame is taken only when it is done
(ros.topics.WhenReady): while one frame is being classified newer ones replace each other in
the middleware's queue, so the next one classified is always the newest, and the node's
executor (one thread) answers parameter, service and diagnostics requests meanwhile)
and ``model`` (ModelInfo, latched, from the trainer). Publishes ``predictions`` (Prediction:
calibrated probabilities, ``ood_score`` and ``trusted``) with the header of the classified
image, only ever for new frames (when the camera stops, the predictions stop and the node logs
that its input is stale); ``gestures`` (GestureEvent) when the stable gesture changes (and at
``gesture_hold_rate`` while it holds; an untrusted frame or a class of
``gesture_none_classes`` counts as no gesture); ``overlay`` (sensor_msgs/Image, bgr8: the
frame with the top label, the gesture and a bar per class) only while it has subscribers;
``review_queue`` (ReviewQueue, latched) when the queue of frames it was least sure about
changes. Serves ``get_review_frame`` (a queued frame's JPEG) and ``label_review`` (store a
queued frame through the collector's ``add_sample``, or discard it; core.active).

A new model announced by the trainer loads in a background thread while the current one keeps
classifying, then the node switches without a restart; a model on another computer is
fetched from the trainer's ``get_model`` and checked by size and SHA-256; an unusable or
hostile announcement is refused with the reason and remembered (see core.classifier). The
calls to ``get_model`` and ``add_sample`` go through the node ``classifier_client`` beside it
(GestureClient.beside), spun by a thread of its own, so that ``label_review`` can wait for the
collector's answer while the node's one executor thread is in it.

Parameters: PARAMETERS and GESTURE_PARAMS below (docs/parameters.md); the gesture ones can be
changed while running and are validated together. Diagnostics (``/diagnostics``, status
``classifier: inference``): model, backend and why, rate, latency, stale input, rejected
frames, refused models; WARN without a model or with stale input.
"""
from __future__ import annotations

import os
import threading

from gesture_interfaces.msg import GestureEvent, ModelInfo, Prediction
from gesture_interfaces.msg import ReviewQueue as ReviewQueueMsg
from gesture_interfaces.srv import GetReviewFrame, LabelReview
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from sensor_msgs.msg import Image

from ..core.active import ReviewConfig, ReviewError, ReviewQueue
from ..core.backends import AUTO, BACKENDS, PRECISIONS, auto_fallbacks, resolve_backend
from ..core.classifier import (DEFAULT_OOD_THRESHOLD, OOD_THRESHOLD_RANGE, Announcement,
                               Classifier, ClassifierSettings, StoreResult)
from ..core.gestures import DebounceConfig, Debouncer
from ..core.imaging import array_to_image_fields
from ..core.overlay import draw_overlay
from ..core.training import resolve_device
from ..core.transfer import TransferError
from ..core.worker import NewestWorker
from ..ros.client import ClientError, GestureClient
from ..ros.diagnostics import OK, WARN, Latencies, RateMeter, updater_for
from ..ros.messages import (from_msg, gesture_event_msg, prediction_msg, queued_frame_image,
                            review_queue_msg, to_msg)
from ..ros.params import Param, declare_all, declare_task
from ..ros.runtime import run_node
from ..ros.topics import (IMAGE_PUB_QOS, LATCHED_QOS, MODEL_QOS, PREDICTION_QOS, WhenReady,
                          subscribe_images)

#: The node's read-only parameters, besides the task's.
PARAMETERS = (
    Param('device', 'auto', "Torch device: 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    Param('backend', AUTO, 'What runs the network: auto (the fastest usable here; on CUDA: '
          'tensorrt, else onnxruntime with a GPU provider, else pytorch; on the CPU: '
          'onnxruntime, else pytorch), pytorch, onnxruntime (CPU, or CUDA with '
          'onnxruntime-gpu) or tensorrt (CUDA)',
          constraints=f'one of {AUTO}, {", ".join(BACKENDS)}'),
    Param('precision', 'fp32', 'Network precision: fp32; fp16 on CUDA (pytorch and tensorrt); '
          "int8 on the CPU (onnxruntime: the trainer's checked int8 export, else fp32 with "
          'the reason); auto (int8 where its check passed and it was measured faster, else '
          'fp32)', constraints=f'one of {", ".join(PRECISIONS)}'),
    Param('model_dirs', [''], 'Folders announced models may be loaded from; empty: the folder '
          'of model_path'),
    Param('stale_after', 2.0, 'Report the camera input as stale when no frame has arrived for '
          'this long (s); no prediction is published without a new frame', (0.1, 3600.0)),
)
#: Live-tunable parameters of the gesture debouncer: parameter -> (DebounceConfig field,
#: description). Ranges come from DebounceConfig.RANGES.
GESTURE_PARAMS = {
    'gesture_threshold': ('threshold', 'Smoothed probability a class needs to become the '
                          'stable gesture; below it the state is none'),
    'gesture_smoothing': ('smoothing', 'Exponential moving average factor of the probabilities '
                          '(0: no smoothing; 0.9: slow)'),
    'gesture_min_frames': ('min_frames', 'Consecutive frames a class must lead (at or above '
                           'the threshold) before it becomes the stable gesture'),
    'gesture_min_duration': ('min_duration', 'Seconds of frame time a class must lead before '
                             'it becomes the stable gesture'),
    'gesture_hold_rate': ('hold_rate', 'Rate (Hz) at which a held gesture is re-published as '
                          'a HOLD event; 0: only changes'),
}
#: Live-tunable parameters of the review queue (core.active): parameter -> (ReviewConfig
#: field, description). Ranges come from ReviewConfig.RANGES.
REVIEW_PARAMS = {
    'review_capacity': ('capacity', 'Most uncertain frames kept for labelling; 0 turns the '
                        'review queue off'),
    'review_min_uncertainty': ('min_uncertainty', 'Least uncertainty (1 - margin, +1 when '
                               'untrusted) a frame needs to be queued'),
    'review_min_interval': ('min_interval', 'Least frame time (s) between two queued frames'),
}
#: Further live parameters: how far a frame may be from what the model was taught.
TRUST_PARAMS = (
    Param('ood_threshold', DEFAULT_OOD_THRESHOLD, 'Frames whose ood_score is above this are '
          'not trusted (Prediction.trusted false; no gesture event). 1 = the 99th percentile '
          "of the model's held-out validation images; 100 trusts every frame", OOD_THRESHOLD_RANGE),
    Param('gesture_none_classes', list(DebounceConfig().none_classes), 'Classes that mean '
          "'no gesture' (a collected none or background class): never a gesture event"),
)


class ClassifierNode(Node):
    def __init__(self, **kwargs):
        super().__init__('classifier', **kwargs)
        self.task = declare_task(self, model=True, on_classes=self._on_classes)
        p = declare_all(self, PARAMETERS, read_only=True)
        self.device, self.precision = resolve_device(p['device']), p['precision']
        self.backend, reason = resolve_backend(p['backend'], self.device, self.precision)
        # the chosen backend, then (auto only) the slower usable ones if it fails for a model
        fallbacks = auto_fallbacks(self.backend, self.device, self.precision)
        dirs = [os.path.realpath(os.path.expanduser(d)) for d in p['model_dirs'] if d]
        defaults = DebounceConfig()
        gestures = declare_all(self, (
            Param(name, getattr(defaults, field), text, DebounceConfig.RANGES[field])
            for name, (field, text) in GESTURE_PARAMS.items()))
        review_defaults = ReviewConfig()
        review = declare_all(self, (
            Param(name, getattr(review_defaults, field), text, ReviewConfig.RANGES[field])
            for name, (field, text) in REVIEW_PARAMS.items()))
        trust = declare_all(self, TRUST_PARAMS)
        # label_review waits for the collector's answer: it comes to a node beside this one
        self.client = GestureClient.beside(self, uses=('get_model', 'add_sample'))
        self.classifier = Classifier(self.task, ClassifierSettings(
            device=self.device, precision=self.precision, stale_after=p['stale_after'],
            backends=(self.backend, *(fallbacks if p['backend'] == AUTO else ())),
            model_dirs=tuple(dirs or [str(self.task.model_path.parent)]),
            ood_threshold=trust['ood_threshold']),
            Debouncer(DebounceConfig(
                none_classes=_names(trust['gesture_none_classes']),
                **{GESTURE_PARAMS[k][0]: v for k, v in gestures.items()})),
            self._get_chunk,
            ReviewQueue(ReviewConfig(**{REVIEW_PARAMS[k][0]: v for k, v in review.items()})))
        self.classifier.backend_reason = reason
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._pub = self.create_publisher(Prediction, 'predictions', PREDICTION_QOS)
        self._gesture_pub = self.create_publisher(GestureEvent, 'gestures', PREDICTION_QOS)
        self._overlay_pub = self.create_publisher(Image, 'overlay', IMAGE_PUB_QOS)
        self._review_pub = self.create_publisher(ReviewQueueMsg, 'review_queue', LATCHED_QOS)
        self._review_lock, self._review_published = threading.Lock(), -1
        self.create_service(GetReviewFrame, 'get_review_frame', self._on_get_review_frame)
        self.create_service(LabelReview, 'label_review', self._on_label_review)
        self.create_timer(1.0, self._publish_review)  # catches a queue cleared by a new model
        self.overlays_published = 0
        self._rate, self._latency = RateMeter(), Latencies()
        updater_for(self, str(self.device)).add('inference', self._diagnose)
        self.create_subscription(ModelInfo, 'model', self._on_model, MODEL_QOS)
        # Frames are classified in a thread of their own, the newest only: parameter and
        # diagnostics requests answer while a frame is inferred (20-40 ms on the CPU).
        # A frame is taken from the middleware only when the last one is done (WhenReady):
        # none is converted to Python for nothing while the thread infers.
        wake = self.create_guard_condition(lambda: None)
        self._frames = NewestWorker(self._classify, 'classifier-frames', on_idle=wake.trigger)
        self._image_topic = subscribe_images(self, self._frames.put,
                                             callback_group=WhenReady(lambda: self._frames.idle))
        self.create_timer(min(1.0, p['stale_after'] / 2),
                          lambda: self.classifier.check_input(self._image_topic))
        self.get_logger().info(f'task {self.task.name!r} on {self.device}, backend '
                               f'{self.backend} ({reason}), {self.precision}')
        self._publish_review()
        if self.task.model_path.exists():
            self.classifier.request_load(str(self.task.model_path))
        else:
            self.get_logger().info(f'no trained model yet ({self.task.model_path}); waiting '
                                   'for the trainer')

    @property
    def predictor(self):
        return self.classifier.predictor

    def _get_chunk(self, model_id: str, offset: int, length: int) -> tuple[int, bytes]:
        """A range of the trainer's announced model file (``get_model``)."""
        try:
            return self.client.get_model_chunk(model_id, offset, length, timeout=30.0)
        except ClientError as exc:
            raise TransferError(str(exc)) from None

    def _on_classes(self, task) -> None:
        """Classes were added: models with them are accepted from now on."""
        self.task = task
        self.classifier.set_task(task)

    def _on_model(self, info: ModelInfo) -> None:
        self.classifier.announced(from_msg(info, Announcement))

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Validate the live parameters together (types and ranges were checked against the
        descriptors already), then apply them. Applied here rather than in a post-set
        callback, which Humble lacks. The node's other callback (ros.params.declare_task)
        follows ``classes``, which is set alone: a request that names it changes nothing here,
        so a change that passes both is the change that is made."""
        values = {p.name: p.value for p in params}
        if 'classes' in values:
            return SetParametersResult(successful=len(values) == 1,
                                       reason='' if len(values) == 1 else
                                       'set `classes` on its own, not with other parameters')
        gestures = {GESTURE_PARAMS[k][0]: v for k, v in values.items() if k in GESTURE_PARAMS}
        if 'gesture_none_classes' in values:
            gestures['none_classes'] = _names(values['gesture_none_classes'])
        try:
            changed = self.classifier.reconfigure(
                gestures, {REVIEW_PARAMS[k][0]: v for k, v in values.items()
                           if k in REVIEW_PARAMS}, values.get('ood_threshold'))
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        for line in changed:
            self.get_logger().info(line)
        return SetParametersResult(successful=True)

    # -- the review queue --------------------------------------------------------------------
    def _publish_review(self) -> None:
        """Publish the review queue when it changed since it was last published."""
        queue = self.classifier.review
        with self._review_lock:
            revision = queue.revision  # read first: a change after it publishes again
            if revision == self._review_published:
                return
            self._review_published = revision
            predictor = self.classifier.predictor
            msg = review_queue_msg(queue.items(), queue.config.capacity, revision,
                                   predictor.model_id if predictor else '')
            msg.header.stamp = self.get_clock().now().to_msg()
            self._review_pub.publish(msg)

    def _on_get_review_frame(self, request, response):
        try:
            frame = self.classifier.review.get(request.id)
        except ReviewError as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success, response.image = True, queued_frame_image(frame)
        response.message = (f'frame {frame.id}: {frame.width}x{frame.height}, the model said '
                            f'{frame.label} {frame.confidence:.2f}')
        return response

    def _on_label_review(self, request, response):
        result = self.classifier.label_review(request.id, request.label, request.discard,
                                              self._store_sample)
        self._publish_review()
        return to_msg(result, LabelReview.Response)

    def _store_sample(self, label: str, frame) -> StoreResult:
        """Store a queued frame through the collector's ``add_sample``."""
        try:
            res = self.client.add_sample(label, queued_frame_image(frame), timeout=10.0)
        except ClientError as exc:
            return StoreResult(False, f'the collector did not store it: {exc}')
        return StoreResult(res.success, res.message, res.path, res.count)

    def destroy_node(self):
        self._frames.close()
        self.client.close()
        return super().destroy_node()

    def _classify(self, msg) -> None:
        """Classify a camera frame (sensor_msgs/Image or CompressedImage, see
        image_transport) and publish what it decided. Runs in the frames' thread."""
        out = self.classifier.classify(msg)
        if out is None:
            return
        self._pub.publish(prediction_msg(msg.header, out))
        self._rate.tick()
        self._latency.add(out.inference_time)
        if out.queued is not None:
            self._publish_review()
        if not out.debounced:
            return
        if self._overlay_pub.get_subscription_count():  # only for someone watching
            self._publish_overlay(msg.header, out)
        if out.event is not None:
            self._gesture_pub.publish(gesture_event_msg(msg.header, out.event, out.model_id))

    def _publish_overlay(self, header, out) -> None:
        try:
            drawn = draw_overlay(out.view.pixels, out.view.order, out.class_names,
                                 out.probabilities, self.classifier.debouncer.label)
        except ValueError as exc:
            self.get_logger().warning(f'no overlay for this frame: {exc}',
                                      throttle_duration_sec=5.0)
            return
        image = Image(**array_to_image_fields(drawn, 'bgr8'))
        image.header = header
        self._overlay_pub.publish(image)
        self.overlays_published += 1

    def _diagnose(self, stat):
        c = self.classifier
        predictor, p50 = c.predictor, self._latency.median()
        if predictor is None:
            stat.summary(WARN, 'no model yet: collect samples and send a train goal')
        elif c.stale:
            stat.summary(WARN, 'input stale: no camera frames')
        else:
            stat.summary(OK, f'classifying with {predictor.model_id}')
        for key, value in (
                ('model id', predictor.model_id if predictor else ''),
                ('backend', predictor.description if predictor else self.backend),
                ('backend chosen because', c.backend_reason), ('precision', self.precision),
                ('device', self.device), ('rate (Hz)', f'{self._rate.rate():.1f}'),
                ('latency p50 (ms)', f'{p50 * 1e3:.1f}' if p50 is not None else ''),
                ('input stale', c.stale), ('frames classified', c.frames_classified),
                ('rejected frames', c.frames_rejected),
                ('untrusted frames', c.frames_untrusted),
                ('ood threshold', c.settings.ood_threshold),
                ('review queue', f'{len(c.review)}/{c.review.config.capacity}'),
                ('overlays published', self.overlays_published),
                ('refused model announcements', c.refusals)):
            stat.add(key, value)
        return stat


def _names(values) -> tuple[str, ...]:
    """A string-array parameter as class names ('' entries dropped: [''] means none)."""
    return tuple(v for v in values if v)


def main(args=None):
    run_node(ClassifierNode, args)  # one executor thread; frames in their own (NewestWorker)


if __name__ == '__main__':
    main()
