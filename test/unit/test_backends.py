"""Inference backends: PyTorch, ONNX Runtime (and TensorRT where it exists) agree on real
images; exports are current, atomic and re-made when stale or damaged."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from gesture_classifier.backends import (BACKENDS, BackendError, available_backends,
                                         create_runner, export, export_paths, require_usable)
from gesture_classifier.inference import Predictor
from gesture_classifier.model import ModelFile, create_model, load_model, save_model
from gesture_classifier.tasks import Task
from gesture_classifier.training import DLI, TrainConfig, train_task

CLASSES = ('thumbs_up', 'thumbs_down')
#: The issue's agreement bound for FP32 backends: max |p_backend - p_pytorch| over classes.
MAX_PROB_DIFF = 1e-3
OTHER_BACKENDS = [b for b in available_backends() if b != 'pytorch']


def needs(backend):
    return pytest.mark.skipif(backend not in available_backends(),
                              reason=f'{backend} is not usable on this machine')


@pytest.fixture(scope='module')
def trained(tmp_path_factory, make_dataset):
    """A ResNet-18 fine-tuned for 2 epochs on 20 real thumbs photos (random init: there are no
    ImageNet weights here), so its probabilities are not all ~0.5."""
    task = Task.create('thumbs', data_dir=tmp_path_factory.mktemp('backends') / 'data')
    make_dataset(task.dataset_dir, 10)
    # The DLI recipe trains every layer: from random weights, the default recipe's frozen
    # random stem gives nearly the same probabilities to every photo.
    out = train_task(task, TrainConfig(epochs=2, batch_size=8, val_fraction=0.2, seed=0,
                                       recipe=DLI), initial_weights='none')
    return out.model.path


@pytest.fixture(scope='module')
def frames(thumbs_images):
    """The held-out real photos (not trained on), as 640x480 BGR frames and at their own size."""
    out = []
    for label in CLASSES:
        for path in thumbs_images[label][10:40:3]:
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            out += [img, cv2.resize(img, (640, 480))]
    return out


def test_available_backends_are_known():
    avail = available_backends()
    assert avail[0] == 'pytorch' and set(avail) <= set(BACKENDS)


def test_unknown_backend_is_refused(trained):
    mf = load_model(trained)
    with pytest.raises(BackendError, match='unknown backend'):
        create_runner(mf, 'tflite')
    with pytest.raises(BackendError, match='unknown backend'):
        export_paths(trained, '../x')


def test_require_usable_names_the_choices():
    for backend in available_backends():
        require_usable(backend)
    with pytest.raises(ValueError, match="must be one of pytorch, onnxruntime, tensorrt, got 'x'"):
        require_usable('x')
    for backend in set(BACKENDS) - set(available_backends()):
        with pytest.raises(ValueError, match=f'{backend!r} is not usable here'):
            require_usable(backend)


def test_export_paths_sit_next_to_the_model(tmp_path):
    model = tmp_path / 'models' / 'resnet18.pt'
    assert export_paths(model, 'pytorch') == []
    assert export_paths(model, 'onnxruntime') == [tmp_path / 'models' / 'resnet18.onnx']
    assert export_paths(model, 'tensorrt') == [tmp_path / 'models' / 'resnet18.onnx',
                                               tmp_path / 'models' / 'resnet18.engine']


@pytest.mark.parametrize('backend', OTHER_BACKENDS)
def test_backends_agree_with_pytorch_on_real_images(trained, frames, backend):
    reference = Predictor.from_file(trained, expected_classes=CLASSES)
    other = Predictor.from_file(trained, expected_classes=CLASSES, backend=backend)
    diffs, labels_agree, first = [], 0, []
    for frame in frames:
        p_ref = reference.predict(frame, 'bgr')
        first.append(float(p_ref[0]))
        p = other.predict(frame, 'bgr')
        assert p.dtype == np.float32 and p.shape == (2,)
        assert abs(float(p.sum()) - 1.0) < 1e-5
        diffs.append(float(np.abs(p - p_ref).max()))
        labels_agree += int(p.argmax() == p_ref.argmax())
    spread = max(first) - min(first)
    assert spread > 0.05, 'the model should give different probabilities to different photos'
    assert max(diffs) <= MAX_PROB_DIFF, f'{backend}: max probability difference {max(diffs)}'
    assert labels_agree == len(frames)


@needs('onnxruntime')
def test_onnx_export_is_written_once_and_reused(trained):
    mf = load_model(trained)
    onnx_path = export_paths(trained, 'onnxruntime')[0]
    onnx_path.unlink(missing_ok=True)
    assert export(mf, 'onnxruntime') == [onnx_path]
    assert onnx_path.is_file() and oct(onnx_path.stat().st_mode & 0o777) == '0o600'
    first = onnx_path.stat().st_mtime_ns
    assert export(mf, 'onnxruntime') == [onnx_path]  # current: not written again
    assert onnx_path.stat().st_mtime_ns == first
    predictor = Predictor(mf, backend='onnxruntime')
    assert str(onnx_path) in predictor.description and 'exported' not in predictor.description
    assert not list(onnx_path.parent.glob('.*.tmp'))


@needs('onnxruntime')
@pytest.mark.parametrize('damage', ['other_model', 'garbage', 'truncated'])
def test_a_stale_or_damaged_export_is_made_again(trained, tmp_path, frames, damage):
    """The export beside a model must come from that model: one from another training run,
    or a damaged file, is replaced (never used to classify)."""
    mf = load_model(trained)
    model_path = save_model(mf, tmp_path / 'resnet18.pt')
    onnx_path = export_paths(model_path, 'onnxruntime')[0]
    if damage == 'other_model':
        torch.manual_seed(1)
        other = ModelFile(model=create_model(2), class_names=CLASSES, task='thumbs')
        save_model(other, tmp_path / 'other.pt')
        export(other, 'onnxruntime')
        (tmp_path / 'other.onnx').rename(onnx_path)
    elif damage == 'garbage':
        onnx_path.write_bytes(b'\x08\x07garbage' * 100)
    else:
        export(mf, 'onnxruntime')
        data = onnx_path.read_bytes()
        onnx_path.write_bytes(data[:len(data) // 2])
    reference = Predictor(mf).predict(frames[0], 'bgr')
    predictor = Predictor(mf, backend='onnxruntime')
    assert predictor.description.endswith(f'exported to {onnx_path}')
    assert np.abs(predictor.predict(frames[0], 'bgr') - reference).max() <= MAX_PROB_DIFF
    # and the file is now the current export
    again = Predictor(mf, backend='onnxruntime')
    assert again.description.endswith(f'from {onnx_path}')


@needs('onnxruntime')
def test_export_can_be_kept_in_memory(trained, tmp_path):
    mf = load_model(trained)
    mf.path = tmp_path / 'readonly' / 'resnet18.pt'  # folder does not exist: nothing written
    predictor = Predictor(mf, backend='onnxruntime', write_exports=False)
    assert 'exported in memory' in predictor.description
    assert not (tmp_path / 'readonly').exists()


@needs('onnxruntime')
def test_unwritable_folder_still_gives_a_working_backend(trained, tmp_path, frames):
    mf = load_model(trained)
    mf.path = tmp_path / 'missing' / 'resnet18.pt'  # atomic_write fails: no such folder
    predictor = Predictor(mf, backend='onnxruntime')
    assert 'exported in memory' in predictor.description
    assert predictor.predict(frames[0], 'bgr').shape == (2,)


def test_tensorrt_needs_cuda_and_its_package(trained):
    mf = load_model(trained)
    if 'tensorrt' in available_backends():
        pytest.skip('TensorRT is usable here; see the agreement test')
    with pytest.raises(BackendError, match='tensorrt'):
        create_runner(mf, 'tensorrt', device='cpu')


@needs('tensorrt')
def test_tensorrt_engine_is_tagged_with_its_model(trained):
    mf = load_model(trained, device='cuda')
    export(mf, 'tensorrt', device='cuda')
    engine = export_paths(trained, 'tensorrt')[1]
    tag = json.loads(engine.with_suffix('.engine.json').read_text())
    assert tag['model_id'] == mf.model_id and tag['precision'] == 'fp32'


# -- backend: auto, precision ----------------------------------------------------------------
def test_auto_picks_the_fastest_usable_backend_and_says_why(monkeypatch):
    from gesture_classifier import backends
    backend, why = backends.resolve_backend('auto', 'cpu')
    expected = 'onnxruntime' if 'onnxruntime' in available_backends() else 'pytorch'
    assert backend == expected and why.startswith('auto: ') and 'TensorRT' in why
    monkeypatch.setattr(backends, 'available_backends', lambda: ['pytorch'])
    assert backends.resolve_backend('auto', 'cpu') == (
        'pytorch', 'auto: no TensorRT on cpu; ONNX Runtime is not installed')
    monkeypatch.setattr(backends, 'available_backends',
                        lambda: ['pytorch', 'onnxruntime', 'tensorrt'])
    assert backends.resolve_backend('auto', 'cuda')[0] == 'tensorrt'
    assert backends.resolve_backend('auto', 'cpu')[0] == 'onnxruntime'
    monkeypatch.setattr(backends, 'available_backends', lambda: ['pytorch', 'onnxruntime'])
    assert backends.resolve_backend('auto', 'cuda', 'fp16') == (
        'pytorch', 'auto: TensorRT is not installed; fp16 has no ONNX Runtime path')


def test_explicit_backend_and_precision_are_checked():
    from gesture_classifier.backends import resolve_backend
    assert resolve_backend('pytorch', 'cpu') == ('pytorch', 'set by the backend parameter')
    with pytest.raises(ValueError, match='backend must be one of'):
        resolve_backend('tflite', 'cpu')
    with pytest.raises(ValueError, match='fp16 needs a CUDA device'):
        resolve_backend('auto', 'cpu', 'fp16')
    with pytest.raises(ValueError, match='precision must be one of'):
        resolve_backend('pytorch', 'cpu', 'int8')
    if 'onnxruntime' in available_backends():
        with pytest.raises(ValueError, match='not supported by the onnxruntime'):
            resolve_backend('onnxruntime', 'cuda', 'fp16')


def test_fp16_on_cpu_is_a_backend_error(trained):
    with pytest.raises(BackendError, match='fp16 needs a CUDA device'):
        create_runner(load_model(trained), 'pytorch', 'cpu', precision='fp16')


#: FP16 against FP32 on real photos: max |p_fp16 - p_fp32| over classes (ResNet-18 activations
#: in half precision keep about 3 significant digits; softmax outputs move by about 1e-3).
MAX_FP16_DIFF = 1e-2


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason='FP16 needs a CUDA GPU; this machine has none (torch.cuda.'
                           'is_available() is False)')
@pytest.mark.parametrize('backend', ['pytorch', 'tensorrt'])
def test_fp16_agrees_with_fp32_on_real_photos(trained, frames, backend):
    if backend not in available_backends():
        pytest.skip(f'{backend} is not usable on this machine')
    fp32 = Predictor.from_file(trained, 'cuda', backend='pytorch')
    fp16 = Predictor.from_file(trained, 'cuda', backend=backend, precision='fp16')
    diffs, same = [], 0
    for frame in frames:
        a, b = fp32.predict(frame, 'bgr'), fp16.predict(frame, 'bgr')
        diffs.append(float(np.abs(a - b).max()))
        same += int(a.argmax() == b.argmax())
    print(f'{backend} fp16 vs fp32 on {len(frames)} real photos: max diff {max(diffs):.2e}')
    assert max(diffs) <= MAX_FP16_DIFF
    assert same == len(frames)
