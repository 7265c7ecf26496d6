"""precision int8: the trainer's static int8 QDQ export, its check on the validation images,
and every way it can be unusable (too few images, no validation images, failed check, no
quantization module, stale file) giving FP32 with the reason."""
from __future__ import annotations

import builtins
import json

import cv2
import numpy as np
import pytest
import torch

from gesture_classifier.core import quantize
from gesture_classifier.core.backends import (available_backends, create_runner, export,
                                              resolve_backend)
from gesture_classifier.core.inference import Predictor
from gesture_classifier.core.model import load_model, save_model
from gesture_classifier.core.quantize import (Int8Check, export_int8, int8_paths,
                                              read_check, task_images, usable_int8)
from gesture_classifier.core.tasks import Task
from gesture_classifier.core.training import DLI, TrainConfig, train_task

pytestmark = pytest.mark.skipif('onnxruntime' not in available_backends(),
                                reason='onnxruntime is not installed')
CLASSES = ('thumbs_up', 'thumbs_down')


@pytest.fixture(scope='module')
def trained(tmp_path_factory, make_dataset):
    """A model trained 2 epochs on 2 x 14 real photos (a fifth held out), its FP32 export."""
    task = Task.create('thumbs', data_dir=tmp_path_factory.mktemp('int8') / 'data')
    make_dataset(task.dataset_dir, 14)
    out = train_task(task, TrainConfig(epochs=2, batch_size=8, val_fraction=0.2, seed=0,
                                       recipe=DLI), initial_weights='none')
    mf = out.model
    export(mf, 'onnxruntime')
    return task, mf.path


@pytest.fixture(scope='module')
def exported(trained):
    task, path = trained
    mf = load_model(path)
    calibration, validation = task_images(task, mf)
    check = export_int8(mf, path.with_suffix('.onnx').read_bytes(), calibration, validation)
    return task, path, check


def test_task_images_split_by_what_the_model_trained_on(trained):
    task, path = trained
    mf = load_model(path)
    calibration, validation = task_images(task, mf)
    assert len(calibration) == len(mf.train_files) and len(validation) == 28 - len(calibration)
    assert calibration.dtype == torch.uint8 and calibration.shape[1:] == (3, 224, 224)


def test_int8_export_passes_its_check_and_is_used(exported, frames_bgr):
    """On real photos of the task: agreement >= 99 %, mean |dp| <= 0.02 (stored beside it),
    the model_id of its source; the classifier runs it with precision int8."""
    task, path, check = exported
    print(f'int8 check: {json.dumps(check.__dict__)}')
    assert check.passed, check.reason
    assert check.agreement >= 0.99 and check.mean_abs_dp <= 0.02
    assert read_check(path) == check
    mf = load_model(path)
    int8_file, why = usable_int8(mf)
    assert int8_file == int8_paths(path)[0] and 'agreement' in why
    fp32 = Predictor(mf, backend='onnxruntime')
    int8 = Predictor(load_model(path), backend='onnxruntime', precision='int8')
    assert '.int8.onnx' in int8.description and '.int8.onnx' not in fp32.description
    same, dps = 0, []
    for frame in frames_bgr:
        a, b = fp32.predict(frame, 'bgr'), int8.predict(frame, 'bgr')
        same += int(a.argmax() == b.argmax())
        dps.append(float(np.abs(a - b).max()))
    print(f'held-out photos: {same}/{len(frames_bgr)} same label, mean |dp| '
          f'{np.mean(dps):.4f}')
    assert np.mean(dps) <= 0.05  # photos never seen in training or validation


def test_precision_auto_needs_a_measured_speed_up_on_this_cpu(exported, monkeypatch):
    task, path, check = exported
    mf = load_model(path)
    monkeypatch.setattr(quantize, 'read_check', lambda p: Int8Check(
        **{**check.__dict__, 'speedup': 1.05}))
    assert usable_int8(mf, auto=True) == (None, 'int8 was measured only 1.05x as fast as '
                                                'FP32 (< 1.2x)')
    monkeypatch.setattr(quantize, 'read_check', lambda p: Int8Check(
        **{**check.__dict__, 'speedup': 2.0, 'cpu': 'another CPU x64'}))
    assert 'another CPU' in usable_int8(mf, auto=True)[1]
    assert usable_int8(mf, auto=False)[0] is not None  # asked for explicitly: used
    monkeypatch.setattr(quantize, 'read_check', lambda p: Int8Check(
        **{**check.__dict__, 'speedup': 2.0}))
    assert usable_int8(mf, auto=True)[0] == int8_paths(path)[0]
    runner, description = create_runner(mf, 'onnxruntime', precision='auto')
    assert '.int8.onnx' in description


def _fp32_used(mf, precision='int8'):
    _, description = create_runner(mf, 'onnxruntime', precision=precision, write_exports=False)
    assert '.int8.onnx' not in description.split(' from ')[1].split(';')[0]
    return description


def test_stale_int8_export_is_not_used(exported, tmp_path, caplog):
    """Another model at the same path (a new training): its int8 file is not this model's."""
    task, path, _ = exported
    mf = load_model(path)
    other = tmp_path / 'resnet18.pt'
    for src, dst in zip(int8_paths(path), int8_paths(other)):
        dst.write_bytes(src.read_bytes())
    mf.model_id = ''
    save_model(mf, other)  # a new model_id
    mf2 = load_model(other)
    assert 'stale' in usable_int8(mf2)[1]
    with caplog.at_level('WARNING'):
        description = _fp32_used(mf2)
    assert 'FP32 used' in description and 'stale' in caplog.text
    # the JSON says this model but the int8 file is another's: stale too
    raw = json.loads(int8_paths(other)[1].read_text())
    int8_paths(other)[1].write_text(json.dumps({**raw, 'model_id': mf2.model_id}))
    assert 'stale' in usable_int8(mf2)[1]


def test_failed_check_keeps_fp32_and_says_why(trained, tmp_path, monkeypatch):
    task, path = trained
    mf = load_model(path)
    mf.path = tmp_path / 'resnet18.pt'
    calibration, validation = task_images(task, mf)
    monkeypatch.setattr(quantize, 'MIN_AGREEMENT', 1.01)  # a check no export can pass
    fp32 = path.with_suffix('.onnx').read_bytes()
    check = export_int8(mf, fp32, calibration, validation)
    assert not check.passed and 'label agreement with FP32' in check.reason
    assert not int8_paths(mf.path)[0].exists()
    assert read_check(mf.path).reason == check.reason
    assert usable_int8(mf) == (None, check.reason)


@pytest.mark.parametrize('calibration_n, validation_n, reason', [
    (0, 5, 'calibration set too small: 0 training image(s)'),
    (3, 5, 'calibration set too small: 3 training image(s)'),
    (10, 0, 'no validation images'),
])
def test_too_few_images_keep_fp32(trained, tmp_path, calibration_n, validation_n, reason):
    task, path = trained
    mf = load_model(path)
    mf.path = tmp_path / 'resnet18.pt'
    int8_paths(mf.path)[0].write_bytes(b'an earlier model\'s int8 file')
    images = torch.randint(0, 256, (12, 3, 224, 224), dtype=torch.uint8)
    check = export_int8(mf, path.with_suffix('.onnx').read_bytes(), images[:calibration_n],
                        images[:validation_n])
    assert not check.passed and reason in check.reason
    assert not int8_paths(mf.path)[0].exists()  # the stale one is gone


def test_missing_quantization_module_keeps_fp32(trained, tmp_path, monkeypatch):
    task, path = trained
    mf = load_model(path)
    mf.path = tmp_path / 'resnet18.pt'
    real_import = builtins.__import__

    def no_quantization(name, *args, **kwargs):
        if name.startswith('onnxruntime.quantization'):
            raise ImportError(f'No module named {name!r}')
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', no_quantization)
    images = torch.randint(0, 256, (12, 3, 224, 224), dtype=torch.uint8)
    check = export_int8(mf, path.with_suffix('.onnx').read_bytes(), images, images)
    assert not check.passed and 'no quantization module' in check.reason


def test_int8_precision_is_checked_against_device_and_backend():
    assert resolve_backend('auto', 'cpu', 'int8')[0] == 'onnxruntime'
    with pytest.raises(ValueError, match='int8 runs on the CPU'):
        resolve_backend('onnxruntime', 'cuda', 'int8')
    with pytest.raises(ValueError, match='not supported by the pytorch backend'):
        resolve_backend('pytorch', 'cpu', 'int8')
    assert resolve_backend('pytorch', 'cpu', 'auto')[0] == 'pytorch'


@pytest.fixture(scope='module')
def frames_bgr(thumbs_images):
    """Real photos of the task never used by the fixture's model (offset 20 on)."""
    return [cv2.resize(cv2.imread(str(p)), (640, 480))
            for label in CLASSES for p in thumbs_images[label][20:40:2]]


def test_int8_fallback_backend_runs_fp32(trained, caplog):
    """backend auto with int8: when onnxruntime fails for a model, pytorch (the fallback)
    runs FP32 and says so."""
    _, path = trained
    with caplog.at_level('WARNING'):
        _, description = create_runner(load_model(path), 'pytorch', precision='int8')
    assert description.startswith('pytorch') and 'runs the model in fp32' in caplog.text
