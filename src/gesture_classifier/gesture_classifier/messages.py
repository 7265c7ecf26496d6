"""Conversions between the plain-Python results and gesture_interfaces messages (used by the
trainer node, the client and the CLI)."""
from __future__ import annotations

from pathlib import Path

from gesture_interfaces.msg import Evaluation, ModelInfo

from .evaluation import Figures

__all__ = ['evaluation_msg', 'figures_from_msg', 'model_info']


def evaluation_msg(f: Figures | dict) -> Evaluation:
    """Figures (or their dict) -> Evaluation; an empty/malformed dict gives an empty one."""
    if isinstance(f, dict):
        try:
            f = Figures.from_dict(f)
        except ValueError:
            return Evaluation()
    msg = Evaluation(split=f.split, images=f.images, accuracy=float(f.accuracy),
                     loss=float(f.loss), class_names=list(f.class_names),
                     precision=[float(x) for x in f.precision],
                     recall=[float(x) for x in f.recall], support=list(f.support),
                     confusion=f.flat_confusion())
    msg.misclassified_paths = [m[0] for m in f.misclassified]
    msg.misclassified_predicted = [m[1] for m in f.misclassified]
    msg.misclassified_confidence = [float(m[2]) for m in f.misclassified]
    return msg


def figures_from_msg(msg: Evaluation) -> Figures:
    """Evaluation -> Figures (for printing with evaluation.format_confusion)."""
    n = len(msg.class_names)
    flat = list(msg.confusion)
    return Figures(split=msg.split, images=msg.images, accuracy=msg.accuracy, loss=msg.loss,
                   class_names=list(msg.class_names), precision=list(msg.precision),
                   recall=list(msg.recall), support=list(msg.support),
                   confusion=[flat[i * n:(i + 1) * n] for i in range(n)],
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
        created=str(meta.get('created', '')), train_images=training.images,
        val_images=validation.images, validation=validation, training=training)
