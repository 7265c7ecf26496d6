"""Conversions between the core's values and gesture_interfaces messages, in one place.

:func:`to_msg` and :func:`from_msg` are the general pair: a dataclass of the core (a training
report, a progress report, a request) to a message with the same field names, and back,
converting each value to the message field's type (a :class:`~..core.evaluation.Figures` to an
``Evaluation`` and back). The functions after them are the conversions whose shapes differ
(the model metadata, the dataset state, the sample listing).
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from builtin_interfaces.msg import Time
from gesture_interfaces.msg import (DatasetState, Evaluation, GestureEvent, ModelInfo, ModelList,
                                    Prediction, ReviewItem, ReviewQueue)
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header

from ..core.datasync import Listing, SampleData, SampleEntry
from ..core.samples import DatasetSummary

__all__ = ['to_msg', 'from_msg', 'evaluation_msg', 'figures_from_msg', 'model_info',
           'model_list', 'dataset_state', 'listing_from_msg', 'sample_data_from_msg',
           'review_queue_msg', 'queued_frame_image', 'to_time', 'prediction_msg',
           'gesture_event_msg']

_INT = re.compile(r'u?int(8|16|32|64)|byte|octet|char')
_FLOAT = ('float', 'double')


def _figures():
    """core.evaluation.Figures, imported when first needed: core.evaluation imports torch,
    which the nodes that never convert figures (camera, collector) do not load."""
    from ..core.evaluation import Figures
    return Figures


def _value(value, ros_type: str, current):
    """``value`` as a field of ROS type ``ros_type`` whose current value is ``current``."""
    if isinstance(current, Evaluation):
        return evaluation_msg(value)
    if dataclasses.is_dataclass(value):
        return to_msg(value, type(current))
    if ros_type.startswith('sequence<') or ros_type.endswith(']'):
        inner = ros_type[9:-1].split(',')[0] if ros_type.startswith('sequence<') else \
            ros_type[:ros_type.index('[')]
        return [_value(v, inner, None) for v in value]
    if ros_type == 'boolean':
        return bool(value)
    if ros_type in _FLOAT:
        return float(value)
    if _INT.fullmatch(ros_type):
        return int(value)
    if ros_type == 'string':
        return str(value)
    return value


def to_msg(obj, msg_type, **more):
    """A ``msg_type`` message with every field of the dataclass ``obj`` that it has (fields
    that are None keep the message's default), each converted to the field's type; ``more``
    sets further fields as given."""
    msg = msg_type()
    types = msg_type.get_fields_and_field_types()
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name in types and value is not None:
            setattr(msg, f.name, _value(value, types[f.name], getattr(msg, f.name)))
    for name, value in more.items():
        setattr(msg, name, value)
    return msg


def from_msg(msg, cls):
    """A ``cls`` (a dataclass) from the fields of ``msg`` it shares, as plain values (an
    ``Evaluation`` becomes Figures, or None when it is empty; arrays become lists); the
    other fields of ``cls`` keep their defaults."""
    values = {}
    for f in dataclasses.fields(cls):
        if not hasattr(msg, f.name):
            continue
        value = getattr(msg, f.name)
        if isinstance(value, Evaluation):
            value = figures_from_msg(value) if value.split else None
        elif not isinstance(value, (str, bytes)) and hasattr(value, '__len__'):
            value = list(value)
        values[f.name] = value
    return cls(**values)


def evaluation_msg(f) -> Evaluation:
    """Figures (or their dict) -> Evaluation; an empty/malformed dict gives an empty one."""
    if isinstance(f, dict):
        try:
            f = _figures().from_dict(f)
        except ValueError:
            return Evaluation(ece=-1.0, confidently_wrong=-1.0)  # -1: unknown
    msg = Evaluation(split=f.split, images=f.images, accuracy=float(f.accuracy),
                     loss=float(f.loss), class_names=list(f.class_names),
                     precision=[float(x) for x in f.precision],
                     recall=[float(x) for x in f.recall], support=list(f.support),
                     confusion=f.flat_confusion(), ece=float(f.ece),
                     confidently_wrong=float(f.confidently_wrong))
    msg.misclassified_paths = [m[0] for m in f.misclassified]
    msg.misclassified_predicted = [m[1] for m in f.misclassified]
    msg.misclassified_confidence = [float(m[2]) for m in f.misclassified]
    return msg


def figures_from_msg(msg: Evaluation):
    """Evaluation -> Figures (for printing with evaluation.format_confusion)."""
    n = len(msg.class_names)
    flat = list(msg.confusion)
    return _figures()(split=msg.split, images=msg.images, accuracy=msg.accuracy, loss=msg.loss,
                   class_names=list(msg.class_names), precision=list(msg.precision),
                   recall=list(msg.recall), support=list(msg.support),
                   confusion=[flat[i * n:(i + 1) * n] for i in range(n)],
                   ece=msg.ece, confidently_wrong=msg.confidently_wrong,
                   misclassified=list(zip(msg.misclassified_paths, msg.misclassified_predicted,
                                          msg.misclassified_confidence)))


def model_info(meta: dict, path: Path, task: str) -> ModelInfo:
    """ModelInfo of a model file from its metadata (versions.read_metadata); header.stamp is
    left for the caller."""
    def num(key, default, kind=float):
        try:
            return kind(meta.get(key, default))
        except (TypeError, ValueError):
            return kind(default)

    epochs = num('epochs', 0, int)
    validation = evaluation_msg(meta.get('validation') or {})
    training = evaluation_msg(meta.get('training') or {})
    return ModelInfo(
        task=str(meta.get('task') or task), model_id=str(meta.get('model_id', '')),
        path=str(path), class_names=[str(c) for c in meta.get('class_names', [])],
        architecture=str(meta.get('architecture', '')), input_size=num('input_size', 0, int),
        train_accuracy=num('train_accuracy', -1.0), val_accuracy=num('val_accuracy', -1.0),
        recipe=str(meta.get('recipe', '')), pretrained=bool(meta.get('pretrained', False)),
        parent_model_id=str(meta.get('parent_model_id', '')),
        total_epochs=max(0, num('total_epochs', epochs, int)),
        saved_epoch=max(0, num('saved_epoch', 0, int)),
        best_epoch_selected=bool(meta.get('best_epoch_selected', False)),
        created=str(meta.get('created', '')), temperature=num('temperature', 1.0),
        train_images=training.images,
        val_images=validation.images, validation=validation, training=training)


def model_list(task: str, versions, current: str) -> ModelList:
    """The ModelList of the kept versions (versions.ModelStore.versions()) and the current
    one's id; each entry's header.stamp is the version file's time (the list's own is left
    for the caller)."""
    msg = ModelList(task=task, current_model_id=current)
    for v in versions:
        info = model_info(v.meta, v.path, task)
        info.header.stamp = to_time(v.mtime)
        msg.models.append(info)
    return msg


def review_queue_msg(items, capacity: int, revision: int, model_id: str) -> ReviewQueue:
    """The ReviewQueue of the classifier's queued frames (core.active.QueuedFrame, most
    uncertain first); each item's header carries the frame's capture stamp and frame_id, the
    queue's own header.stamp is left for the caller."""
    msg = ReviewQueue(model_id=model_id, capacity=int(capacity), revision=int(revision))
    for f in items:
        msg.items.append(to_msg(f, ReviewItem, header=Header(stamp=to_time(max(0.0, f.stamp)),
                                                             frame_id=f.frame_id)))
    return msg


def queued_frame_image(frame) -> CompressedImage:
    """A queued frame (core.active.QueuedFrame) as sensor_msgs/CompressedImage: its JPEG,
    with its capture stamp and frame_id."""
    return CompressedImage(header=Header(stamp=to_time(max(0.0, frame.stamp)),
                                         frame_id=frame.frame_id),
                           format='jpeg', data=frame.jpeg)


def prediction_msg(header: Header, out) -> Prediction:
    """The Prediction of a classified frame (core.classifier.Classified) with ``header``, the
    classified image's (its stamp and frame_id); ``label`` and ``confidence`` are the top
    class's."""
    top = out.top
    return Prediction(header=header, class_names=list(out.class_names),
                      probabilities=out.probabilities.tolist(), label=out.class_names[top],
                      confidence=float(out.probabilities[top]), model_id=out.model_id,
                      inference_time=float(out.inference_time), ood_score=float(out.ood_score),
                      trusted=bool(out.trusted))


def gesture_event_msg(header: Header, event, model_id: str) -> GestureEvent:
    """The GestureEvent of the debouncer's event (core.gestures.GestureState) for the frame
    with ``header``; ``since`` (frame time, s) becomes a Time."""
    return GestureEvent(header=header, kind=event.kind, label=event.label,
                        confidence=float(event.confidence), since=to_time(event.since),
                        previous_label=event.previous, model_id=model_id)


def to_time(seconds: float) -> Time:
    """builtin_interfaces/Time of a time in seconds (>= 0)."""
    sec = int(seconds)
    return Time(sec=sec, nanosec=min(int(round((seconds - sec) * 1e9)), 999_999_999))


#: Most trash paths listed in a DatasetState message (trash_count counts all).
MAX_TRASH_LISTED = 1000


def dataset_state(s: DatasetSummary, task, revision: int, recording=None) -> DatasetState:
    """The DatasetState of a summary of ``task``'s dataset (header.stamp left for the caller);
    ``recording``: the running Recording, if any."""
    msg = DatasetState(task=task.name, dataset_dir=str(task.dataset_dir),
                       class_names=list(task.classes), counts=list(s.counts), total=s.total,
                       size_bytes=s.size_bytes, free_bytes=s.free_bytes,
                       trash_count=len(s.trash), trash_bytes=s.trash_bytes, revision=revision)
    for path, mtime in s.newest:
        msg.newest_paths.append(str(path) if path else '')
        msg.newest_stamps.append(Time(sec=int(mtime),
                                      nanosec=int(round((mtime % 1) * 1e9)) % 10**9))
    msg.trash_paths = [str(e.original) for e in s.trash[:MAX_TRASH_LISTED]]
    if recording is not None:
        msg.recording, msg.recording_label = True, recording.label
        msg.recording_saved = recording.saved_count
    return msg


def listing_from_msg(res) -> tuple[Listing, int, str]:
    """(Listing of this page, total entries, listing SHA-256) of a ListSamples answer.

    Raises:
        ValueError: arrays of different lengths (a malformed answer).
    """
    n = len(res.labels)
    if not len(res.names) == len(res.sizes) == len(res.sha256s) == n:
        raise ValueError('the collector sent a malformed listing (arrays of different '
                         'lengths)')
    entries = tuple(SampleEntry(*e) for e in zip(res.labels, res.names,
                                                 (int(x) for x in res.sizes), res.sha256s))
    return (Listing(res.task, tuple(res.class_names), entries, res.untransferable, res.message),
            res.total, res.listing_sha256)


def sample_data_from_msg(res) -> list[SampleData]:
    """The SampleData of a GetSamples answer."""
    return [SampleData(s.label, s.name, s.sha256, bytes(s.data), s.error) for s in res.samples]
