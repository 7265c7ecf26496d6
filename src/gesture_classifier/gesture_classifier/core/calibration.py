"""Calibrated confidence: temperature scaling and how calibration is measured.

A network's softmax is not a probability of being right: a fine-tuned ResNet-18 with label
smoothing is under-confident on the people it was taught by and can be over-confident on
others. Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML
2017) divides the logits by one scalar ``T > 0`` fitted after training on the held-out
validation split; the top class never changes, only how sure the model says it is.

Small validation splits of a few dozen images are often answered 100 % right, and then the
plain negative log-likelihood (NLL) is minimised by ``T -> 0`` (every answer "certain"),
which makes the model over-confident on new people. :func:`fit_temperature` therefore fits
against Platt's smoothed targets (Platt, "Probabilistic Outputs for Support Vector Machines",
1999): the true class has target ``1 - eps`` and the others share ``eps = 1 / (n + 2)`` (the
Laplace estimate of the error rate when no error was seen in ``n`` images), so a perfect
split gives a finite temperature that still admits the error rate it cannot rule out.

Everything here is NumPy on logits: no torch, no ROS.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ['TEMPERATURE_RANGE', 'MIN_CALIBRATION_IMAGES', 'ECE_BINS', 'CONFIDENT',
           'softmax', 'fit_temperature', 'expected_calibration_error',
           'confidently_wrong_rate', 'check_temperature']

#: Temperatures :func:`fit_temperature` may return and a model file may hold, inclusive.
TEMPERATURE_RANGE = (0.05, 20.0)
#: Fewer validation images than this give no temperature (1.0 is kept): too few to fit.
MIN_CALIBRATION_IMAGES = 10
#: Bins of the expected calibration error (Guo et al. use 15 equal-width bins).
ECE_BINS = 15
#: Confidence at or above which a wrong answer counts as "confidently wrong".
CONFIDENT = 0.8


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of float ``(N, K)`` ``logits / temperature`` (float64 ``(N, K)``)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _smoothed_nll(logits: np.ndarray, soft: np.ndarray, t: float) -> float:
    z = logits / t
    m = z.max(axis=1, keepdims=True)
    log_p = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    return float(-(soft * log_p).sum(axis=1).mean())


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> tuple[float, str]:
    """The temperature minimising the NLL of ``softmax(logits / T)`` against Platt's smoothed
    targets (see the module docstring) on held-out images.

    Args:
        logits: float ``(N, K)`` network outputs (before softmax) of validation images.
        targets: int ``(N,)`` true class indices in ``[0, K)``.

    Returns:
        ``(T, how)``: T in :data:`TEMPERATURE_RANGE` (1.0 when fewer than
        :data:`MIN_CALIBRATION_IMAGES` images or non-finite logits), and one sentence saying
        how it was obtained, for logs and the training result.

    Raises:
        ValueError: shapes that do not match, K < 2, or targets out of range.

    The search is a grid of 200 log-spaced values over the range, refined by golden-section
    search around the best (the NLL is convex in 1/T).
    """
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    if logits.size == 0 and targets.size == 0:
        return 1.0, 'temperature 1 (not fitted: no validation images)'
    if logits.ndim != 2 or logits.shape[1] < 2 or targets.shape != (logits.shape[0],):
        raise ValueError(f'expected logits (N, K >= 2) and targets (N,), got '
                         f'{logits.shape} and {targets.shape}')
    n, k = logits.shape
    if n and (targets.min() < 0 or targets.max() >= k):
        raise ValueError(f'targets must be in [0, {k}), got {targets.min()}..{targets.max()}')
    if n < MIN_CALIBRATION_IMAGES:
        return 1.0, (f'temperature 1 (not fitted: {n} validation image(s), at least '
                     f'{MIN_CALIBRATION_IMAGES} are needed)')
    if not np.isfinite(logits).all():
        return 1.0, 'temperature 1 (not fitted: non-finite logits)'
    eps = 1.0 / (n + 2)
    soft = np.full((n, k), eps / (k - 1))
    soft[np.arange(n), targets] = 1.0 - eps
    lo, hi = (math.log(v) for v in TEMPERATURE_RANGE)
    grid = np.linspace(lo, hi, 200)
    losses = [_smoothed_nll(logits, soft, math.exp(g)) for g in grid]
    i = int(np.argmin(losses))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    golden = (math.sqrt(5) - 1) / 2
    for _ in range(40):
        c, d = b - golden * (b - a), a + golden * (b - a)
        if _smoothed_nll(logits, soft, math.exp(c)) < _smoothed_nll(logits, soft, math.exp(d)):
            b = d
        else:
            a = c
    t = float(min(max(math.exp((a + b) / 2), TEMPERATURE_RANGE[0]), TEMPERATURE_RANGE[1]))
    errors = int((logits.argmax(axis=1) != targets).sum())
    return t, (f'temperature {t:.3g} fitted on {n} validation image(s) ({errors} answered '
               f'wrong) by NLL against Platt-smoothed targets')


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """ECE in [0, 1]: the image-weighted mean of |accuracy - mean confidence| over ``bins``
    equal-width bins of the top-class probability (Guo et al. 2017, eq. 3); 0 for no images.

    Args:
        probs: float ``(N, K)`` probabilities; targets: int ``(N,)``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    if len(targets) == 0:
        return 0.0
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == targets
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(total)


def confidently_wrong_rate(probs: np.ndarray, targets: np.ndarray,
                           confident: float = CONFIDENT) -> float:
    """Share in [0, 1] of all images answered wrong with top-class probability >=
    ``confident``; 0 for no images."""
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    if len(targets) == 0:
        return 0.0
    wrong = probs.argmax(axis=1) != targets
    return float((wrong & (probs.max(axis=1) >= confident)).mean())


def check_temperature(value) -> tuple[float, str]:
    """A temperature read from a model file: ``(value, '')`` when it is a finite number in
    :data:`TEMPERATURE_RANGE`; ``(1.0, why)`` when it is missing (None), not a number, NaN or
    out of range, ``why`` saying which, for the log."""
    if value is None:
        return 1.0, 'no temperature in the file (made before calibration): using 1'
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 1.0, f'temperature {value!r} is not a number: using 1'
    if not (math.isfinite(value) and TEMPERATURE_RANGE[0] <= value <= TEMPERATURE_RANGE[1]):
        return 1.0, (f'temperature {value!r} is outside {list(TEMPERATURE_RANGE)}: using 1')
    return float(value), ''
