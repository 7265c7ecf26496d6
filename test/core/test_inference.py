"""Predictor: a saved model applied to single frames."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from gesture_classifier.core.inference import Predictor
from gesture_classifier.core.model import ModelFile, ModelFileError, create_model, save_model

CLASSES = ('thumbs_up', 'thumbs_down')


@pytest.fixture(scope='module')
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    mf = ModelFile(model=create_model(2), class_names=CLASSES, task='thumbs')
    return save_model(mf, tmp_path_factory.mktemp('inference') / 'resnet18.pt')


@pytest.fixture(scope='module')
def predictor(model_path):
    return Predictor.from_file(model_path, expected_classes=CLASSES)


@pytest.fixture(scope='module')
def bgr(real_image):
    img = cv2.imread(str(real_image), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == (224, 224, 3)
    return img


def _check_probs(probs):
    assert isinstance(probs, np.ndarray)
    assert probs.dtype == np.float32
    assert probs.shape == (2,)
    assert abs(float(probs.sum()) - 1.0) < 1e-5
    assert ((probs >= 0) & (probs <= 1)).all()


def test_predictor_metadata(predictor, model_path):
    assert predictor.class_names == CLASSES
    assert predictor.model_id.startswith('thumbs-')
    assert predictor.device == torch.device('cpu')
    assert not predictor.model_file.model.training
    assert predictor.backend == 'pytorch' and 'pytorch' in predictor.description
    assert predictor.model_file.path == model_path


def test_predict_on_a_real_image(predictor, bgr):
    _check_probs(predictor.predict(bgr, 'bgr'))


def test_predict_on_a_640x480_frame(predictor, bgr):
    big = cv2.resize(bgr, (640, 480))
    assert big.shape == (480, 640, 3)
    _check_probs(predictor.predict(big, 'bgr'))


def test_bgr_and_rgb_give_the_same_probabilities(predictor, bgr):
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    a = predictor.predict(bgr, 'bgr')
    b = predictor.predict(rgb, 'rgb')
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_predict_is_repeatable(predictor, bgr):
    # eval mode: batch-norm statistics are not updated by a prediction
    first = predictor.predict(bgr, 'bgr')
    for _ in range(2):
        np.testing.assert_array_equal(predictor.predict(bgr, 'bgr'), first)


def test_predict_agrees_with_the_network(predictor, bgr):
    from gesture_classifier.core.preprocess import preprocess_frame
    with torch.no_grad():
        mf = predictor.model_file
        logits = mf.model(preprocess_frame(bgr, 'bgr', mf.spec))[0]
    np.testing.assert_allclose(predictor.predict(bgr, 'bgr'),
                               torch.softmax(logits, 0).numpy(), atol=1e-6)


def test_predict_mono_and_rgba(predictor, bgr):
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[:, :, None]
    _check_probs(predictor.predict(gray, 'mono'))
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    np.testing.assert_allclose(predictor.predict(bgra, 'bgr'), predictor.predict(bgr, 'bgr'),
                               atol=1e-6)


@pytest.mark.parametrize('pixels, order', [
    (np.zeros((224, 224, 3), np.float32), 'rgb'),
    (np.zeros((224, 224), np.uint8), 'rgb'),
    (np.zeros((224, 224, 2), np.uint8), 'rgb'),
    (np.zeros((224, 224, 3), np.uint8), 'hsv'),
])
def test_bad_input(predictor, pixels, order):
    with pytest.raises(ValueError):
        predictor.predict(pixels, order)


def test_from_file_checks_the_classes(model_path):
    with pytest.raises(ModelFileError, match='differ'):
        Predictor.from_file(model_path, expected_classes=('a', 'b'))


def test_from_file_of_a_missing_file(tmp_path):
    with pytest.raises(ModelFileError):
        Predictor.from_file(tmp_path / 'absent.pt')
