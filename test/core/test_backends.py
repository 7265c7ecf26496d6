"""Inference backends: PyTorch, ONNX Runtime (and TensorRT where it exists) agree on real
images; exports are current, atomic and re-made when stale or damaged."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from gesture_classifier.core.backends import (BACKENDS, BackendError, available_backends,
                                         create_runner, export, export_paths, require_usable)
from gesture_classifier.core.inference import Predictor
from gesture_classifier.core.model import ModelFile, create_model, load_model, save_model
from gesture_classifier.core.tasks import Task
from gesture_classifier.core.training import DLI, TrainConfig, train_task

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
    from gesture_classifier.core import backends
    backend, why = backends.resolve_backend('auto', 'cpu')
    expected = 'onnxruntime' if 'onnxruntime' in available_backends() else 'pytorch'
    assert backend == expected and why.startswith('auto: ') and 'TensorRT' in why
    monkeypatch.setattr(backends, 'available_backends', lambda: ['pytorch'])
    assert backends.resolve_backend('auto', 'cpu') == (
        'pytorch', 'auto: no TensorRT on cpu; ONNX Runtime is not installed')
    monkeypatch.setattr(backends, 'available_backends',
                        lambda: ['pytorch', 'onnxruntime', 'tensorrt'])
    assert backends.resolve_backend('auto', 'cpu')[0] == 'onnxruntime'


def _machine(monkeypatch, cuda=True, backends_here=('pytorch', 'onnxruntime'),
             providers=('CPUExecutionProvider',)):
    """Substitute what resolve_backend sees: CUDA availability, the importable backends and
    ONNX Runtime's execution providers."""
    from gesture_classifier.core import backends
    monkeypatch.setattr(backends, '_cuda_available', lambda: cuda)
    monkeypatch.setattr(backends, 'available_backends', lambda: list(backends_here))
    monkeypatch.setattr(backends, 'ort_providers', lambda: list(providers))
    return backends


@pytest.mark.parametrize('precision', ['fp32', 'fp16'])
def test_auto_on_cuda_takes_tensorrt_first(monkeypatch, precision):
    b = _machine(monkeypatch, backends_here=('pytorch', 'onnxruntime', 'tensorrt'),
                 providers=('CUDAExecutionProvider', 'CPUExecutionProvider'))
    assert b.resolve_backend('auto', 'cuda', precision) == (
        'tensorrt', 'auto: TensorRT and a CUDA device are present')


def test_auto_on_cuda_never_takes_a_cpu_only_onnxruntime(monkeypatch):
    """The H200 run: the PyPI onnxruntime (CPU provider only) was picked on CUDA, 9.7 ms per
    frame against 2.4 ms for PyTorch on the same GPU."""
    b = _machine(monkeypatch)
    backend, why = b.resolve_backend('auto', 'cuda')
    assert backend == 'pytorch'
    assert why == ('auto: TensorRT is not installed; ONNX Runtime has only CPU execution '
                   'providers; PyTorch on cuda (never a CPU path while CUDA is usable)')
    assert b.auto_fallbacks(backend, 'cuda') == []  # no CPU fallback either
    assert b.auto_fallbacks(backend, 'cpu') == ['onnxruntime']


@pytest.mark.parametrize('provider', ['CUDAExecutionProvider', 'TensorrtExecutionProvider'])
def test_auto_on_cuda_takes_onnxruntime_with_a_gpu_provider(monkeypatch, provider):
    b = _machine(monkeypatch, providers=(provider, 'CPUExecutionProvider'))
    assert b.resolve_backend('auto', 'cuda') == (
        'onnxruntime', f'auto: TensorRT is not installed; ONNX Runtime has the {provider}')
    assert b.auto_fallbacks('onnxruntime', 'cuda') == ['pytorch']
    # fp16: ONNX Runtime has no FP16 path here, PyTorch on the GPU
    backend, why = b.resolve_backend('auto', 'cuda', 'fp16')
    assert backend == 'pytorch' and 'ONNX Runtime has no fp16 path' in why
    assert b.auto_fallbacks('pytorch', 'cuda', 'fp16') == []


def test_auto_on_cuda_without_onnxruntime(monkeypatch):
    b = _machine(monkeypatch, backends_here=('pytorch',), providers=())
    assert b.resolve_backend('auto', 'cuda') == (
        'pytorch', 'auto: TensorRT is not installed; ONNX Runtime is not installed; '
                   'PyTorch on cuda (never a CPU path while CUDA is usable)')


def test_auto_on_a_cuda_device_without_cuda_is_refused(monkeypatch):
    b = _machine(monkeypatch, cuda=False)
    with pytest.raises(ValueError, match='CUDA is not available'):
        b.resolve_backend('auto', 'cuda')


def test_auto_on_cpu_with_a_gpu_build_of_onnxruntime(monkeypatch):
    """device cpu chosen: onnxruntime (its CPU provider) whatever GPU providers it has."""
    b = _machine(monkeypatch, providers=('CUDAExecutionProvider', 'CPUExecutionProvider'))
    assert b.resolve_backend('auto', 'cpu') == (
        'onnxruntime', 'auto: no TensorRT on cpu; ONNX Runtime is installed')
    assert b.auto_fallbacks('onnxruntime', 'cpu') == ['pytorch']


def test_onnxruntime_on_cuda_asks_for_the_gpu_providers(monkeypatch, trained, caplog):
    """The session gets the GPU providers first (substituted), or a warning when there are
    none: the explicit onnxruntime backend on CUDA then runs on the CPU and says so."""
    if 'onnxruntime' not in available_backends():
        pytest.skip('onnxruntime is not installed')
    import onnxruntime as ort
    b = _machine(monkeypatch, providers=('CPUExecutionProvider',))
    asked = []

    class Session:
        def __init__(self, model, options, providers):
            asked.append(providers)
            raise RuntimeError('stop here')

    monkeypatch.setattr(ort, 'InferenceSession', Session)
    mf = load_model(trained)
    with caplog.at_level('WARNING'), pytest.raises(RuntimeError, match='stop here'):
        b._onnxruntime_runner(mf, torch.device('cuda'), write=False)
    assert asked[-1] == ['CPUExecutionProvider']
    assert 'only CPU execution providers' in caplog.text
    b = _machine(monkeypatch, providers=('TensorrtExecutionProvider', 'CUDAExecutionProvider',
                                         'CPUExecutionProvider'))
    with pytest.raises(RuntimeError, match='stop here'):
        b._onnxruntime_runner(mf, torch.device('cuda:1'), write=False)
    assert asked[-1] == [('TensorrtExecutionProvider', {'device_id': 1}),
                         ('CUDAExecutionProvider', {'device_id': 1}), 'CPUExecutionProvider']


def test_explicit_backend_and_precision_are_checked():
    from gesture_classifier.core.backends import resolve_backend
    assert resolve_backend('pytorch', 'cpu') == ('pytorch', 'set by the backend parameter')
    with pytest.raises(ValueError, match='backend must be one of'):
        resolve_backend('tflite', 'cpu')
    with pytest.raises(ValueError, match='fp16 needs a CUDA device'):
        resolve_backend('auto', 'cpu', 'fp16')
    with pytest.raises(ValueError, match='precision must be one of'):
        resolve_backend('pytorch', 'cpu', 'int4')
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


# -- the CPU frame path: ONNX Runtime with I/O binding ---------------------------------------
@needs('onnxruntime')
def test_io_binding_gives_the_plain_run_results(trained, frames):
    """The bound input (the predictor's reused buffer) and preallocated output give what a
    plain session.run gives; the input is bound again only when the tensor moves, and every
    call returns its own logits (the next frame does not overwrite them)."""
    from gesture_classifier.core import backends
    from gesture_classifier.core.preprocess import FrameInput
    mf = load_model(trained)
    bound, _ = backends._onnxruntime_runner(mf, torch.device('cpu'), write=False)
    plain, _ = backends._onnxruntime_runner(mf, torch.device('cpu'), write=False,
                                            io_binding=False)
    frame_input = FrameInput(mf.spec)
    outputs = []
    for frame in frames[:6]:
        x = frame_input(frame, 'bgr')
        got, expected = bound(x), plain(x.clone())
        assert torch.equal(got, expected)
        outputs.append((got, expected.clone()))
    assert all(torch.equal(a, b) for a, b in outputs)  # earlier results were not overwritten
    moved = frame_input(frames[0], 'bgr').clone()  # another tensor: bound again
    assert torch.equal(bound(moved), plain(moved))
    assert torch.equal(bound(moved[:, :, :, :]), plain(moved))


# -- PyTorch on CUDA: static input, CUDA graph, eager fallback -------------------------------
def test_cuda_graph_capture_failure_falls_back_to_eager(trained, frames, caplog):
    """Capture on this CPU fails (no CUDA): the runner runs the network eagerly on the
    static input, says so in its description and a log line, and gives the model's logits."""
    from gesture_classifier.core import backends
    from gesture_classifier.core.preprocess import FrameInput
    mf = load_model(trained)
    model = mf.model.eval()
    static_in = torch.zeros(1, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with caplog.at_level('WARNING'):
        run, description = backends._graph_runner(model, static_in, 'pytorch test')
    assert 'eager (CUDA graph capture failed' in description
    assert 'CUDA graph capture failed' in caplog.text
    x = FrameInput(mf.spec)(frames[0], 'bgr')
    with torch.inference_mode():
        assert torch.allclose(run(x), model(x), atol=1e-5)


def test_cuda_graph_replays_on_the_static_input(trained, frames, monkeypatch):
    """With a capture that works (substituted: a fake graph that runs the model on the static
    input when replayed), each call copies the frame into the static input, replays and
    returns the static output; each runner (a model switch) captures once."""
    from gesture_classifier.core import backends
    from gesture_classifier.core.preprocess import FrameInput
    captures = []

    class FakeGraph:
        def __init__(self, model, static_in, static_out):
            self.args = model, static_in, static_out

        def replay(self):
            model, static_in, static_out = self.args
            static_out.copy_(model(static_in))

    def capture(model, static_in):
        out = model(static_in)
        captures.append(static_in.data_ptr())
        return FakeGraph(model, static_in, out), out

    monkeypatch.setattr(backends, '_capture', capture)
    mf = load_model(trained)
    model = mf.model.eval()
    static_in = torch.zeros(1, 3, 224, 224)
    run, description = backends._graph_runner(model, static_in, 'pytorch test')
    assert description == 'pytorch test, CUDA graph' and len(captures) == 1
    frame_input = FrameInput(mf.spec)
    with torch.inference_mode():
        for frame in frames[:3]:
            x = frame_input(frame, 'bgr')
            assert torch.allclose(run(x), model(x), atol=1e-5)
    assert static_in.data_ptr() == captures[0]  # the input never moved
    backends._graph_runner(model, torch.zeros(1, 3, 224, 224), 'another model')
    assert len(captures) == 2
