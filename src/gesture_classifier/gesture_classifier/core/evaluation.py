"""How well a model classifies a labelled set: accuracy, loss, per-class precision and recall,
the confusion matrix and the misclassified samples. Plain functions over tensors and lists
(no ROS); :class:`Figures` is what model files store and gesture_interfaces/msg/Evaluation
carries.

Conventions: the confusion matrix has rows = true class and columns = predicted class, both in
``class_names`` order; undefined figures (a class never predicted has no precision, a class
without images has no recall, an empty set has no accuracy) are -1, never 0 or NaN.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch

from .calibration import confidently_wrong_rate, expected_calibration_error

__all__ = ['VALIDATION', 'TRAINING', 'MAX_MISCLASSIFIED', 'Figures', 'confusion_matrix',
           'precision_recall', 'cross_entropy', 'figures', 'format_confusion']

VALIDATION = 'validation'
TRAINING = 'training'
#: Most misclassified samples listed (``images`` still counts all).
MAX_MISCLASSIFIED = 1000


@dataclass
class Figures:
    """Evaluation of one model on one set of images (see Evaluation.msg for each field).

    Attributes:
        split: VALIDATION, TRAINING, or '' for an empty Figures.
        images: images evaluated, >= 0.
        accuracy: correct / images in [0, 1]; -1 when images == 0.
        loss: mean cross-entropy in nats, >= 0; -1 when images == 0.
        class_names: the model's classes.
        precision, recall: per class in [0, 1], -1 where undefined.
        support: images per true class.
        confusion: N x N counts as a list of rows (true class), columns = predicted class.
        misclassified: ``(path, predicted class, probability of it)``, at most
            MAX_MISCLASSIFIED, in the order of the images.
        ece: expected calibration error in [0, 1] of the probabilities (15 bins, see
            calibration.expected_calibration_error); -1 when images == 0 or unknown (figures
            stored before calibration existed).
        confidently_wrong: share in [0, 1] of the images answered wrong with probability
            >= 0.8; -1 as ``ece``.
    """

    split: str = ''
    images: int = 0
    accuracy: float = -1.0
    loss: float = -1.0
    class_names: list[str] = field(default_factory=list)
    precision: list[float] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)
    support: list[int] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)
    misclassified: list[tuple[str, str, float]] = field(default_factory=list)
    ece: float = -1.0
    confidently_wrong: float = -1.0

    def to_dict(self) -> dict:
        """Plain values only (lists, str, int, float), so a model file holding it still loads
        with ``torch.load(weights_only=True)``."""
        d = asdict(self)
        d['misclassified'] = [list(m) for m in self.misclassified]
        return d

    @classmethod
    def from_dict(cls, d: object) -> Figures:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: ``d`` is not such a dict (wrong keys or types, inconsistent sizes).
        """
        if not isinstance(d, dict):
            raise ValueError('evaluation figures must be a dict')
        try:
            f = cls(split=str(d['split']), images=int(d['images']),
                    accuracy=float(d['accuracy']), loss=float(d['loss']),
                    class_names=[str(c) for c in d['class_names']],
                    precision=[float(x) for x in d['precision']],
                    recall=[float(x) for x in d['recall']],
                    support=[int(x) for x in d['support']],
                    confusion=[[int(x) for x in row] for row in d['confusion']],
                    misclassified=[(str(p), str(c), float(v))
                                   for p, c, v in d['misclassified']],
                    ece=float(d.get('ece', -1.0)),
                    confidently_wrong=float(d.get('confidently_wrong', -1.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f'malformed evaluation figures: {exc!r}') from None
        n = len(f.class_names)
        for name in ('ece', 'confidently_wrong'):
            value = getattr(f, name)
            if not (value == -1.0 or 0.0 <= value <= 1.0):
                raise ValueError(f'malformed evaluation figures: {name} {value!r} is not in '
                                 '[0, 1] or -1')
        if not (len(f.precision) == len(f.recall) == len(f.support) == len(f.confusion) == n
                and all(len(row) == n for row in f.confusion)
                and sum(map(sum, f.confusion)) == f.images == sum(f.support)):
            raise ValueError('malformed evaluation figures: inconsistent sizes')
        return f

    def flat_confusion(self) -> list[int]:
        """Row-major N*N (Evaluation.msg's ``confusion``)."""
        return [x for row in self.confusion for x in row]


def confusion_matrix(targets, predictions, num_classes: int) -> torch.Tensor:
    """int64 ``(N, N)`` counts: ``[i, j]`` = images of true class i predicted as j.

    Args:
        targets, predictions: int sequences / tensors of equal length, values in
            [0, num_classes).

    Raises:
        ValueError: different lengths, or a value outside [0, num_classes).
    """
    t = torch.as_tensor(targets, dtype=torch.int64).flatten()
    p = torch.as_tensor(predictions, dtype=torch.int64).flatten()
    if t.numel() != p.numel():
        raise ValueError(f'{t.numel()} targets but {p.numel()} predictions')
    if t.numel() and (min(int(t.min()), int(p.min())) < 0 or
                      max(int(t.max()), int(p.max())) >= num_classes):
        raise ValueError(f'class indices must be in [0, {num_classes})')
    return torch.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def precision_recall(confusion: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-class precision (diagonal / column sum) and recall (diagonal / row sum) of a
    confusion matrix (rows = true class); -1 where the sum is 0."""
    c = torch.as_tensor(confusion, dtype=torch.float64)
    diag, predicted, actual = c.diagonal(), c.sum(0), c.sum(1)
    precision = [float(d / s) if s > 0 else -1.0 for d, s in zip(diag, predicted)]
    recall = [float(d / s) if s > 0 else -1.0 for d, s in zip(diag, actual)]
    return precision, recall


def cross_entropy(probabilities: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean cross-entropy in nats of softmax ``probabilities`` ``(N, C)`` for int ``targets``
    ``(N,)``; -1 when N == 0. Probabilities are clamped at 1e-12 (a confident mistake costs
    about 27.6 nats, not infinity)."""
    if len(targets) == 0:
        return -1.0
    picked = probabilities[torch.arange(len(targets)), torch.as_tensor(targets)]
    return float(-picked.clamp_min(1e-12).log().mean())


def figures(split: str, probabilities: torch.Tensor, targets: torch.Tensor,
            class_names, paths=None) -> Figures:
    """Every figure of one evaluation.

    Args:
        split: VALIDATION or TRAINING.
        probabilities: float ``(N, C)`` softmax outputs, C = len(class_names).
        targets: int64 ``(N,)`` true classes.
        paths: N sample paths (for the misclassified list), or None.

    Raises:
        ValueError: inconsistent shapes.
    """
    names = [str(c) for c in class_names]
    n, c = len(targets), len(names)
    if n and tuple(probabilities.shape) != (n, c):
        raise ValueError(f'probabilities of shape {tuple(probabilities.shape)}, expected '
                         f'({n}, {c})')
    if paths is not None and len(paths) != n:
        raise ValueError(f'{len(paths)} paths for {n} images')
    if n == 0:
        return Figures(split=split, class_names=names, precision=[-1.0] * c,
                       recall=[-1.0] * c, support=[0] * c, confusion=[[0] * c for _ in range(c)])
    targets = torch.as_tensor(targets, dtype=torch.int64)
    confidence, pred = probabilities.max(1)
    cm = confusion_matrix(targets, pred, c)
    precision, recall = precision_recall(cm)
    wrong = torch.nonzero(pred != targets).flatten().tolist()[:MAX_MISCLASSIFIED]
    probs_np, targets_np = probabilities.double().numpy(), targets.numpy()
    return Figures(
        split=split, images=n, accuracy=float((pred == targets).sum()) / n,
        ece=expected_calibration_error(probs_np, targets_np),
        confidently_wrong=confidently_wrong_rate(probs_np, targets_np),
        loss=cross_entropy(probabilities, targets), class_names=names, precision=precision,
        recall=recall, support=cm.sum(1).tolist(), confusion=cm.tolist(),
        misclassified=[(str(paths[i]) if paths is not None else '', names[int(pred[i])],
                        float(confidence[i])) for i in wrong])


def format_confusion(f: Figures) -> str:
    """The confusion matrix as text, rows = true class, with per-class recall and precision::

        validation: 11 images, accuracy 0.91, loss 0.312
        true \\ predicted   thumbs_up  thumbs_down   recall
        thumbs_up                   5            1     0.83
        thumbs_down                 0            5     1.00
        precision                1.00         0.83
    """
    if not f.split:
        return '(no figures)'
    acc = f'{f.accuracy:.2f}' if f.accuracy >= 0 else 'n/a'
    loss = f'{f.loss:.3f}' if f.loss >= 0 else 'n/a'
    calib = (f', calibration error {f.ece:.3f}, confidently wrong {f.confidently_wrong:.1%}'
             if f.ece >= 0 and f.images else '')
    lines = [f'{f.split}: {f.images} images, accuracy {acc}, loss {loss}{calib}']
    if not f.images:
        return lines[0]
    width = max(11, *(len(c) for c in f.class_names)) + 1
    first = max(17, *(len(c) for c in f.class_names)) + 1

    def num(x):
        return f'{x:.2f}' if x >= 0 and math.isfinite(x) else 'n/a'

    lines.append('true \\ predicted'.ljust(first) +
                 ''.join(c.rjust(width) for c in f.class_names) + 'recall'.rjust(9))
    for name, row, r in zip(f.class_names, f.confusion, f.recall):
        lines.append(name.ljust(first) + ''.join(str(x).rjust(width) for x in row) +
                     num(r).rjust(9))
    lines.append('precision'.ljust(first) + ''.join(num(p).rjust(width) for p in f.precision))
    return '\n'.join(lines)
