"""The out-of-distribution score and its reference in model files (no ROS)."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gesture_classifier.core.model import ModelFile, create_model, load_model, save_model
from gesture_classifier.core.trust import (MIN_OOD_IMAGES, OOD_METHOD, OOD_QUANTILE, OodReference,
                                      check_ood_reference, energy, fit_ood_reference)


def test_energy_is_minus_t_logsumexp():
    logits = np.array([[2.0, 0.0], [10.0, 9.0]])
    assert energy(logits) == pytest.approx([-np.log(np.exp(2) + 1), -np.log(np.exp(10) +
                                                                            np.exp(9))])
    expected = [-2 * np.log(np.exp(1.0) + np.exp(0.0)), -2 * np.log(np.exp(5.0) + np.exp(4.5))]
    assert energy(logits, 2.0) == pytest.approx(expected)


def test_the_reference_maps_the_median_to_0_and_the_quantile_to_1():
    rng = np.random.default_rng(0)
    val = rng.normal(0, 1, (500, 3)) + np.array([6.0, 0, 0])  # confident held-out images
    ref = fit_ood_reference(val, 1.0, 'validation')
    s = ref.score(val)
    assert ref.method == OOD_METHOD and ref.images == 500 and ref.split == 'validation'
    assert np.median(s) == pytest.approx(0, abs=1e-9)
    assert np.quantile(s, OOD_QUANTILE) == pytest.approx(1, abs=1e-9)
    # a frame with small logits everywhere (nothing the model knows) scores far above 1
    assert ref.score(np.zeros((1, 3)))[0] > 2


def test_no_reference_from_too_few_or_flat_logits():
    assert fit_ood_reference(np.ones((MIN_OOD_IMAGES - 1, 2)), 1.0, 'v').method == ''
    assert fit_ood_reference(np.ones((50, 2)), 1.0, 'v').method == ''  # no spread
    assert OodReference().score(np.ones((4, 2))).tolist() == [0, 0, 0, 0]


@given(st.one_of(
    st.none(), st.just({}), st.text(max_size=3),
    st.fixed_dictionaries({'method': st.sampled_from([OOD_METHOD, 'maxlogit', '']),
                           'median': st.floats(allow_nan=True, allow_infinity=True),
                           'scale': st.floats(allow_nan=True, allow_infinity=True),
                           'images': st.integers(0, 10**6)}),
    st.dictionaries(st.sampled_from(['method', 'median', 'scale', 'images']),
                    st.one_of(st.text(max_size=3), st.floats(), st.none()), max_size=4)))
@settings(max_examples=300, deadline=None)
def test_check_ood_reference_never_passes_a_bad_value(value):
    ref, why = check_ood_reference(value)
    if why:
        assert ref == OodReference()
    else:
        assert ref.method == OOD_METHOD and math.isfinite(ref.median) and ref.scale > 0
        assert math.isfinite(ref.scale)


def test_the_reference_round_trips_and_a_bad_one_trusts_every_frame(tmp_path, caplog):
    ref = OodReference(OOD_METHOD, -5.0, 2.0, 40, 'validation')
    path = save_model(ModelFile(model=create_model(2), class_names=('a', 'b'), ood=ref),
                      tmp_path / 'm.pt')
    assert load_model(path).ood == ref
    payload = torch.load(path, map_location='cpu', weights_only=True)
    payload['ood'] = {'method': OOD_METHOD, 'median': float('nan'), 'scale': 1.0, 'images': 3}
    torch.save(payload, tmp_path / 'bad.pt')
    with caplog.at_level(logging.INFO, logger='gesture_classifier.core.model'):
        assert load_model(tmp_path / 'bad.pt').ood == OodReference()
    assert any(r.levelno == logging.WARNING and 'every frame is trusted' in r.getMessage()
               for r in caplog.records)
    del payload['ood']
    torch.save(payload, tmp_path / 'old.pt')
    caplog.clear()
    with caplog.at_level(logging.INFO, logger='gesture_classifier.core.model'):
        assert load_model(tmp_path / 'old.pt').ood == OodReference()
    assert any(r.levelno == logging.INFO and 'made before' in r.getMessage()
               for r in caplog.records)
