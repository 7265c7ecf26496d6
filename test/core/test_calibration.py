"""Temperature scaling, ECE and the model file's temperature (no ROS)."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gesture_classifier.core.calibration import (MIN_CALIBRATION_IMAGES, TEMPERATURE_RANGE,
                                            check_temperature, confidently_wrong_rate,
                                            expected_calibration_error, fit_temperature,
                                            softmax)
from gesture_classifier.core.model import ModelFile, create_model, load_model, save_model

CLASSES = ('thumbs_up', 'thumbs_down')


def _calibrated_sample(n, k, temperature, seed=0):
    """Logits and labels drawn from softmax(logits / temperature): that T is the true one."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(n, k))
    p = softmax(logits, temperature)
    targets = np.array([rng.choice(k, p=row) for row in p])
    return logits, targets


@pytest.mark.parametrize('true_t', [0.5, 1.0, 2.5])
def test_fit_recovers_the_temperature_that_generated_the_labels(true_t):
    logits, targets = _calibrated_sample(4000, 3, true_t)
    t, how = fit_temperature(logits, targets)
    assert t == pytest.approx(true_t, rel=0.12)
    assert 'fitted on 4000 validation image(s)' in how


def test_a_perfect_split_gives_a_finite_temperature_above_the_floor():
    """Every validation image right: plain NLL would drive T to 0 (the findings' failure)."""
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 2, 40)
    logits = np.zeros((40, 2))
    logits[np.arange(40), targets] = rng.uniform(1, 4, 40)  # right, with margins 1..4
    t, how = fit_temperature(logits, targets)
    assert TEMPERATURE_RANGE[0] * 2 < t < 5, t
    p = softmax(logits, t).max(1)
    # no more confident than the Laplace estimate of the error rate allows, on average
    assert p.mean() <= 1 - 1 / (40 + 2) + 0.02
    assert '(0 answered wrong)' in how


def test_too_few_images_or_bad_logits_keep_temperature_one():
    t, how = fit_temperature(np.ones((MIN_CALIBRATION_IMAGES - 1, 2)),
                             np.zeros(MIN_CALIBRATION_IMAGES - 1, int))
    assert t == 1.0 and 'not fitted' in how
    logits = np.ones((20, 2))
    logits[3, 0] = np.nan
    t, how = fit_temperature(logits, np.zeros(20, int))
    assert t == 1.0 and 'non-finite' in how


@pytest.mark.parametrize('logits, targets', [
    (np.ones((10, 1)), np.zeros(10, int)),          # one class
    (np.ones((10, 2)), np.zeros(9, int)),           # lengths differ
    (np.ones((10, 2)), np.full(10, 2)),             # target out of range
])
def test_fit_refuses_inconsistent_input(logits, targets):
    with pytest.raises(ValueError):
        fit_temperature(logits, targets)


def test_ece_is_small_for_calibrated_and_large_for_overconfident_probabilities():
    logits, targets = _calibrated_sample(20000, 2, 1.0, seed=3)
    assert expected_calibration_error(softmax(logits), targets) < 0.02
    over = softmax(logits, 0.25)  # sharper than the truth
    assert expected_calibration_error(over, targets) > 0.08
    assert expected_calibration_error(np.empty((0, 2)), np.empty(0)) == 0.0


def test_confidently_wrong_rate_counts_only_confident_errors():
    probs = np.array([[0.9, 0.1], [0.85, 0.15], [0.6, 0.4], [0.2, 0.8]])
    targets = np.array([0, 1, 1, 0])  # right, wrong 0.85, wrong 0.6, wrong 0.8
    assert confidently_wrong_rate(probs, targets) == pytest.approx(2 / 4)
    assert confidently_wrong_rate(probs, targets, confident=0.9) == 0.0


@given(st.one_of(st.none(), st.booleans(), st.text(max_size=5),
                 st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 100)))
@settings(max_examples=200, deadline=None)
def test_check_temperature_never_passes_a_bad_value(value):
    t, why = check_temperature(value)
    assert TEMPERATURE_RANGE[0] <= t <= TEMPERATURE_RANGE[1] and math.isfinite(t)
    good = (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value) and TEMPERATURE_RANGE[0] <= value <= TEMPERATURE_RANGE[1])
    assert (why == '') == good
    assert t == (float(value) if good else 1.0)


@pytest.fixture(scope='module')
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    mf = ModelFile(model=create_model(2), class_names=CLASSES, task='thumbs', temperature=0.6,
                   calibration='temperature 0.6 fitted on 30 validation image(s)')
    return save_model(mf, tmp_path_factory.mktemp('m') / 'resnet18.pt')


def test_temperature_round_trips_through_the_model_file(model_path):
    loaded = load_model(model_path)
    assert loaded.temperature == pytest.approx(0.6)
    assert loaded.calibration.startswith('temperature 0.6')


@pytest.mark.parametrize('value, level, says', [
    ('drop', logging.INFO, 'made before calibration'),
    (float('nan'), logging.WARNING, 'outside'),
    (0.0, logging.WARNING, 'outside'),
    (1e6, logging.WARNING, 'outside'),
    ('hot', logging.WARNING, 'not a number'),
])
def test_a_missing_or_bad_temperature_defaults_to_one_and_says_so(model_path, tmp_path, caplog,
                                                                   value, level, says):
    payload = torch.load(model_path, map_location='cpu', weights_only=True)
    if value == 'drop':
        del payload['temperature']
    else:
        payload['temperature'] = value
    path = tmp_path / 'm.pt'
    torch.save(payload, path)
    with caplog.at_level(logging.INFO, logger='gesture_classifier.core.model'):
        loaded = load_model(path)
    assert loaded.temperature == 1.0
    assert says in loaded.calibration
    assert any(r.levelno == level and says in r.getMessage() for r in caplog.records)
