"""How much a prediction can be trusted: an out-of-distribution (OOD) score per frame.

A classifier trained on thumbs-up and thumbs-down has to call every frame one of the two:
a fist, an open palm, an empty room. Its calibrated confidence (:mod:`.calibration`) says how
sure it is *between its classes*; the OOD score says how unlike the images it was taught a
frame is. The score used is the **energy** of the temperature-scaled logits (Liu et al.,
"Energy-based Out-of-distribution Detection", NeurIPS 2020)::

    energy(x) = -T * logsumexp(logits(x) / T)

which is low for frames like the training images (large logits) and high for frames unlike
them. It needs only the logits, so every inference backend gives it at no cost (a
feature-distance score such as k-nearest neighbours would need the network's features from
every backend). Which logit score separated what, and what none could, is measured by the
learning benchmark (see docs/learning.md): no per-frame score separated a new person's
thumbs from the same person's fist or palm; a ``none`` class is what stops those.

To make scores comparable between models, the published score is normalised on the model's
own held-out validation images (people and rooms it was taught)::

    ood_score = (energy - median_val) / (quantile_val(q) - median_val)

so 0 is a typical validation image and 1 is the ``q`` quantile (:data:`OOD_QUANTILE`, 0.99):
a frame above 1 is more unusual than 99 % of the validation images. The classifier marks a
frame untrusted when ``ood_score > ood_threshold`` (its parameter, default 1.0).

Plain NumPy; no torch, no ROS.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ['OOD_METHOD', 'OOD_QUANTILE', 'MIN_OOD_IMAGES', 'OodReference', 'energy',
           'fit_ood_reference', 'check_ood_reference']

#: Name of the score stored in model files (a file with another method is not used).
OOD_METHOD = 'energy'
#: Quantile of the validation images' energies that maps to ood_score 1.
OOD_QUANTILE = 0.99
#: Fewer validation images than this and the training images are used instead.
MIN_OOD_IMAGES = 10


def energy(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``-T * logsumexp(logits / T)`` per row of float ``(N, K)`` logits (float64 ``(N,)``)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    m = z.max(axis=1)
    return -temperature * (m + np.log(np.exp(z - m[:, None]).sum(axis=1)))


@dataclass(frozen=True)
class OodReference:
    """What turns an energy into an ood_score (see the module docstring); stored in the model
    file.

    Attributes:
        method: :data:`OOD_METHOD`; '' = none (older files: every frame is trusted).
        median: median energy of the reference images.
        scale: ``quantile(q) - median`` of the reference energies, > 0.
        images: how many reference images, and which split ('validation' or 'training').
    """

    method: str = ''
    median: float = 0.0
    scale: float = 1.0
    images: int = 0
    split: str = ''

    def score(self, logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """ood_score per row of ``(N, K)`` logits; 0 for every row when there is no reference."""
        if not self.method:
            return np.zeros(len(logits))
        return (energy(logits, temperature) - self.median) / self.scale

    def to_dict(self) -> dict:
        return {'method': self.method, 'median': float(self.median), 'scale': float(self.scale),
                'images': int(self.images), 'split': self.split}


def fit_ood_reference(logits: np.ndarray, temperature: float, split: str) -> OodReference:
    """The reference of :func:`energy` over held-out ``logits`` ``(N, K)`` (temperature-scaled
    as the classifier will use them); an empty reference (every frame trusted) when N is below
    :data:`MIN_OOD_IMAGES` or the energies do not spread (a scale of 0)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or len(logits) < MIN_OOD_IMAGES or not np.isfinite(logits).all():
        return OodReference()
    e = energy(logits, temperature)
    median = float(np.median(e))
    scale = float(np.quantile(e, OOD_QUANTILE)) - median
    if not (scale > 1e-6 and math.isfinite(scale)):
        return OodReference()
    return OodReference(OOD_METHOD, median, scale, len(e), split)


def check_ood_reference(value) -> tuple[OodReference, str]:
    """The reference read from a model file: ``(reference, '')`` when valid, else an empty
    reference (every frame trusted) and why, for the log: missing, another method, or values
    that are not finite (``scale`` must be > 0)."""
    if value is None or value == {}:
        return OodReference(), 'no out-of-distribution reference in the file (made before ' \
                               'it existed): every frame is trusted'
    try:
        ref = OodReference(method=str(value['method']), median=float(value['median']),
                           scale=float(value['scale']), images=int(value['images']),
                           split=str(value.get('split', '')))
    except (KeyError, TypeError, ValueError) as exc:
        return OodReference(), f'malformed out-of-distribution reference ({exc!r}): every ' \
                               'frame is trusted'
    if ref.method != OOD_METHOD:
        return OodReference(), f'out-of-distribution method {ref.method!r} is not ' \
                               f'{OOD_METHOD!r}: every frame is trusted'
    if not (math.isfinite(ref.median) and math.isfinite(ref.scale) and ref.scale > 0):
        return OodReference(), f'out-of-distribution reference with median {ref.median!r} ' \
                               f'and scale {ref.scale!r} (finite, scale > 0 needed): every ' \
                               'frame is trusted'
    return ref, ''
