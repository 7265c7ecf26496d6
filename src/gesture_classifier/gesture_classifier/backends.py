"""Inference backends: the network of a model file run by PyTorch, ONNX Runtime or TensorRT.

=============  ===================================================  ==========================
backend        runs                                                  file next to ``model.pt``
=============  ===================================================  ==========================
pytorch        the ``nn.Module`` itself (CPU or CUDA)                none
onnxruntime    an ONNX export in ``onnxruntime.InferenceSession``;   ``model.onnx``
               CPU here, CUDA execution provider when the device is
               CUDA and onnxruntime-gpu is installed (Jetson Zoo)
tensorrt       a TensorRT engine built from the ONNX export          ``model.onnx`` +
               (CUDA only; FP32)                                     ``model.engine``
=============  ===================================================  ==========================

``auto`` (the nodes' default) picks at start what is fastest where it runs: tensorrt when
TensorRT and a CUDA device are there (a Jetson), else onnxruntime when it is installed
(measured here: about twice as fast as PyTorch on the CPU, see the README's benchmark), else
pytorch; :func:`resolve_backend` says which and why. ``precision`` 'fp16' (CUDA only) runs
pytorch in half precision and builds TensorRT engines with FP16 enabled; onnxruntime has no
FP16 path here (it would need a converted model) and is skipped by ``auto`` then.

Every backend takes the same preprocessed input (float32 ``(1, 3, S, S)``, see
:mod:`.preprocess`) and returns the logits ``(1, N)`` as a float32 torch tensor, so the
:class:`~.inference.Predictor` around it is the same for all.

Exports are derived data: each carries the ``model_id`` of the PyTorch model file it was made
from (ONNX ``metadata_props``; for an engine a JSON file beside it that also records the
TensorRT version and GPU, since engines only run where they were built). The trainer writes
them next to the model (:func:`export`); a backend that finds none, or one made from another
model, exports again itself. Files are written atomically (:mod:`.fsutil`); nothing is
unpickled (ONNX is protobuf, an engine is TensorRT's own format).

The optional packages are imported only when their backend is used: ``onnx`` and
``onnxruntime`` (or ``onnxruntime-gpu``) for onnxruntime, ``tensorrt`` for tensorrt.
"""
from __future__ import annotations

import importlib.util
import inspect
import io
import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .fsutil import atomic_write
from .model import ModelFile

__all__ = ['BACKENDS', 'BackendError', 'available_backends', 'require_usable', 'export_paths',
           'export', 'AUTO', 'PRECISIONS', 'resolve_backend', 'check_precision',
           'create_runner', 'onnx_bytes', 'onnx_model_id', 'build_engine', 'Runner',
           'ONNX_OPSET', 'ONNX_INPUT', 'ONNX_OUTPUT']

LOG = logging.getLogger(__name__)

BACKENDS = ('pytorch', 'onnxruntime', 'tensorrt')
#: The ``backend`` parameter value that picks one of BACKENDS (see resolve_backend).
AUTO = 'auto'
#: ``precision`` values: fp16 needs a CUDA device.
PRECISIONS = ('fp32', 'fp16')
#: ONNX opset of the exports: 17 is read by onnxruntime >= 1.14 and TensorRT >= 8.6
#: (JetPack 6); every ResNet-18 op exists since opset 9.
ONNX_OPSET = 17
ONNX_INPUT, ONNX_OUTPUT = 'input', 'logits'
_META_MODEL_ID = 'gesture_classifier.model_id'
_META_CLASSES = 'gesture_classifier.class_names'

#: A runner maps the preprocessed input (float32 ``(1, 3, S, S)`` tensor on the predictor's
#: device) to float32 logits ``(1, N)`` (torch tensor, any device).
Runner = Callable[[torch.Tensor], torch.Tensor]


class BackendError(RuntimeError):
    """A backend that cannot be used here (package missing, no CUDA) or an export that failed."""


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def available_backends() -> list[str]:
    """The backends whose packages are importable on this machine (tensorrt also needs CUDA),
    in :data:`BACKENDS` order; 'pytorch' is always available."""
    out = ['pytorch']
    if _has('onnxruntime') and _has('onnx'):
        out.append('onnxruntime')
    if _has('tensorrt') and _has('onnx') and torch.cuda.is_available():
        out.append('tensorrt')
    return out


def require_usable(backend: str) -> None:
    """Check a node's ``backend`` parameter at start.

    Raises:
        ValueError: ``backend`` is not one of :data:`BACKENDS`, or its packages (or CUDA, for
            tensorrt) are missing here (:func:`available_backends`).
    """
    if backend not in BACKENDS:
        raise ValueError(f'backend must be one of {", ".join(BACKENDS)}, got {backend!r}')
    available = available_backends()
    if backend not in available:
        raise ValueError(f'backend {backend!r} is not usable here (available: '
                         f'{", ".join(available)}); install its package or choose another')


def check_precision(precision: str, device: torch.device | str, backend: str = 'pytorch'
                    ) -> None:
    """Check a node's ``precision`` parameter against its device and backend.

    Raises:
        ValueError: not one of :data:`PRECISIONS`, fp16 without a CUDA device, or fp16 with
            onnxruntime.
    """
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {", ".join(PRECISIONS)}, got {precision!r}')
    if precision == 'fp16' and torch.device(device).type != 'cuda':
        raise ValueError(f'precision fp16 needs a CUDA device, not {device}')
    if precision == 'fp16' and backend == 'onnxruntime':
        raise ValueError('precision fp16 is not supported by the onnxruntime backend; use '
                         'fp32, or pytorch / tensorrt')


def resolve_backend(backend: str, device: torch.device | str, precision: str = 'fp32'
                    ) -> tuple[str, str]:
    """The backend to run and why: ``backend`` itself when it is not 'auto' (checked with
    :func:`require_usable` and :func:`check_precision`), else the fastest usable here:
    tensorrt (TensorRT and CUDA), onnxruntime (installed; fp32 only), pytorch.

    Raises:
        ValueError: an explicit backend or precision that cannot be used here.
    """
    device = torch.device(device)
    if backend != AUTO:
        require_usable(backend)
        check_precision(precision, device, backend)
        return backend, 'set by the backend parameter'
    check_precision(precision, device)
    available = available_backends()
    if device.type == 'cuda' and 'tensorrt' in available:
        return 'tensorrt', 'auto: TensorRT and a CUDA device are present'
    why_not = ('TensorRT is not installed' if device.type == 'cuda' else
               f'no TensorRT on {device.type}')
    if 'onnxruntime' in available and precision == 'fp32':
        return 'onnxruntime', f'auto: {why_not}; ONNX Runtime is installed'
    why_not_ort = 'fp16 has no ONNX Runtime path' if 'onnxruntime' in available else \
        'ONNX Runtime is not installed'
    return 'pytorch', f'auto: {why_not}; {why_not_ort}'


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise BackendError(f'unknown backend {backend!r}; one of {", ".join(BACKENDS)}')


def export_paths(model_path: str | Path, backend: str) -> list[Path]:
    """The files ``backend`` uses beside the model file at ``model_path`` (none for pytorch)."""
    _check_backend(backend)
    model_path = Path(model_path)
    if backend == 'pytorch':
        return []
    paths = [model_path.with_suffix('.onnx')]
    if backend == 'tensorrt':
        paths.append(model_path.with_suffix('.engine'))
    return paths


# -- ONNX ------------------------------------------------------------------------------------
def onnx_bytes(mf: ModelFile) -> bytes:
    """Serialized ONNX model of ``mf`` (input ``input`` float32 ``(1, 3, S, S)``, output
    ``logits`` float32 ``(1, N)``, opset :data:`ONNX_OPSET`) with its model_id and class names
    in ``metadata_props``.

    Uses the TorchScript-based exporter (``dynamo=False`` where torch offers the choice): it
    needs only the ``onnx`` package and exists in every torch a JetPack ships.

    Raises:
        BackendError: ``onnx`` is not installed or the export failed.
    """
    try:
        import onnx
    except ImportError as exc:
        raise BackendError('exporting to ONNX needs the onnx package (pip install onnx)') \
            from exc
    model = mf.model.eval()
    device = next(model.parameters()).device
    size = mf.spec.input_size
    dummy = torch.zeros(1, 3, size, size, device=device)
    kwargs = dict(input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                  opset_version=ONNX_OPSET, do_constant_folding=True)
    if 'dynamo' in inspect.signature(torch.onnx.export).parameters:
        kwargs['dynamo'] = False
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter('ignore')  # the TorchScript exporter's deprecation notice
            torch.onnx.export(model, (dummy,), buf, **kwargs)
    except Exception as exc:
        raise BackendError(f'ONNX export failed: {exc!r}') from exc
    proto = onnx.load_from_string(buf.getvalue())
    for key, value in ((_META_MODEL_ID, mf.model_id),
                       (_META_CLASSES, json.dumps(list(mf.class_names)))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def _write(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data), expected_size=len(data))


def onnx_model_id(path: str | Path) -> str | None:
    """model_id recorded in the ONNX file at ``path``; None when absent or unreadable."""
    try:
        import onnx
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # ImportError, missing file, not ONNX
        return None
    return {p.key: p.value for p in proto.metadata_props}.get(_META_MODEL_ID)


def _save(path: Path | None, data: bytes, what: str, strict: bool) -> bool:
    """Write an export atomically; True when it is on disk. ``strict`` (the trainer's
    :func:`export`) raises OSError; otherwise (a backend loading a model) a failed save only
    costs a warning: the export is used from memory and made again next time."""
    if path is None:
        return False
    try:
        _write(path, data)
        return True
    except OSError as exc:
        if strict:
            raise
        LOG.warning('could not save the %s to %s (%s); using it from memory', what, path, exc)
        return False


# -- TensorRT --------------------------------------------------------------------------------
def _engine_tag(mf: ModelFile, device: torch.device, precision: str = 'fp32') -> dict:
    import tensorrt as trt
    return {'model_id': mf.model_id, 'tensorrt': trt.__version__,
            'gpu': torch.cuda.get_device_name(device), 'precision': precision}


def build_engine(onnx_data: bytes, precision: str = 'fp32') -> bytes:
    """Serialized TensorRT engine for an ONNX model (TensorRT >= 8.5 Python API), FP32 or
    with FP16 kernels allowed (``precision`` 'fp16'; inputs and outputs stay float32).

    Raises:
        BackendError: the parser or the builder failed (their messages are included).
    """
    import tensorrt as trt
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, 'EXPLICIT_BATCH'):  # required before TRT 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_data):
        errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f'TensorRT could not parse the ONNX export: {errors}')
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 28)
    if precision == 'fp16':
        config.set_flag(trt.BuilderFlag.FP16)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise BackendError('TensorRT failed to build an engine (see its log above)')
    return bytes(engine)


def _engine(mf: ModelFile, model_path: Path | None, device: torch.device, write: bool,
            strict: bool = False, precision: str = 'fp32') -> tuple[bytes, str]:
    """The engine for ``mf``: the one beside ``model_path`` when its tag matches (same model,
    TensorRT version, GPU), else built from the current ONNX export (made when missing) and
    saved there when ``write``. Returns (engine, where it came from)."""
    tag = _engine_tag(mf, device, precision)
    onnx_path = engine_path = tag_path = None
    if model_path is not None:
        onnx_path, engine_path = export_paths(model_path, 'tensorrt')
        if precision != 'fp32':  # one engine file per precision
            engine_path = engine_path.with_suffix(f'.{precision}.engine')
        tag_path = engine_path.with_suffix('.engine.json')
        try:
            if json.loads(tag_path.read_text()) == tag and engine_path.is_file():
                return engine_path.read_bytes(), str(engine_path)
        except (OSError, ValueError):
            pass
    if onnx_path is not None and onnx_model_id(onnx_path) == mf.model_id:
        onnx_data = onnx_path.read_bytes()
    else:
        onnx_data = onnx_bytes(mf)
        if write:
            _save(onnx_path, onnx_data, 'ONNX export', strict)
    LOG.info('building a TensorRT engine for %s (can take minutes on a Jetson)', mf.model_id)
    data = build_engine(onnx_data, precision)
    if write and _save(engine_path, data, 'TensorRT engine', strict) and \
            _save(tag_path, json.dumps(tag).encode(), 'engine tag', strict):
        return data, f'built and saved to {engine_path}'
    return data, 'built in memory'


# -- public ----------------------------------------------------------------------------------
def export(mf: ModelFile, backend: str, model_path: str | Path | None = None,
           device: torch.device | str = 'cpu') -> list[Path]:
    """Write the files ``backend`` needs beside the model file (``model_path``, default
    ``mf.path``), unless current ones are already there. Returns their paths.

    Raises:
        BackendError: unknown backend, its package missing, or the export failed.
        OSError: the files could not be written (no space, permissions); earlier files stay.
    """
    _check_backend(backend)
    model_path = Path(model_path or mf.path)
    paths = export_paths(model_path, backend)
    if backend == 'onnxruntime':
        if onnx_model_id(paths[0]) != mf.model_id:
            _write(paths[0], onnx_bytes(mf))
    elif backend == 'tensorrt':
        _require_tensorrt(torch.device(device))
        _engine(mf, model_path, torch.device(device), write=True, strict=True)
    return paths


def _require_tensorrt(device: torch.device) -> None:
    if device.type != 'cuda':
        raise BackendError('the tensorrt backend needs a CUDA device')
    if not _has('tensorrt'):
        raise BackendError('the tensorrt backend needs the tensorrt Python package '
                           '(part of JetPack; python3-libnvinfer)')


def create_runner(mf: ModelFile, backend: str, device: torch.device | str = 'cpu',
                  write_exports: bool = True, precision: str = 'fp32') -> tuple[Runner, str]:
    """A :data:`Runner` for ``mf`` on ``backend`` and a one-line description of what it runs.

    For onnxruntime/tensorrt the export beside ``mf.path`` is used when it was made from this
    model; otherwise the export is made now (and saved there when ``write_exports``).
    ``precision`` 'fp16' (CUDA only): pytorch converts the network to half precision (in
    place: ``mf.model`` becomes half), tensorrt builds an engine with FP16 enabled.

    Raises:
        BackendError: unknown backend, package missing, no CUDA for tensorrt or fp16, fp16 with
            onnxruntime, export failed.
    """
    _check_backend(backend)
    device = torch.device(device)
    try:
        check_precision(precision, device, backend)
    except ValueError as exc:
        raise BackendError(str(exc)) from None
    if backend == 'pytorch':
        model = mf.model.to(device).eval()
        if precision == 'fp16':
            model = model.half()
            return (lambda x: model(x.half())), f'pytorch {torch.__version__} on {device}, fp16'
        return model, f'pytorch {torch.__version__} on {device}'
    if backend == 'onnxruntime':
        return _onnxruntime_runner(mf, device, write_exports)
    _require_tensorrt(device)
    return _tensorrt_runner(mf, device, write_exports, precision)


def _onnxruntime_runner(mf: ModelFile, device: torch.device, write: bool
                        ) -> tuple[Runner, str]:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendError('the onnxruntime backend needs the onnxruntime package '
                           '(pip install onnxruntime, or onnxruntime-gpu on a Jetson)') from exc
    path = export_paths(mf.path, 'onnxruntime')[0] if mf.path else None
    providers = ['CPUExecutionProvider']
    if device.type == 'cuda' and 'CUDAExecutionProvider' in ort.get_available_providers():
        providers.insert(0, ('CUDAExecutionProvider', {'device_id': device.index or 0}))
    options = ort.SessionOptions()
    # No spinning between frames: at 30 FPS ONNX Runtime's idle threads otherwise spin on the
    # cores the camera, collector and trainer need (measured here: 51 -> 37 ms of CPU per frame
    # for about 1.5 ms more latency); the nodes run OpenMP passive for the same reason.
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    session, source = None, str(path)
    if path is not None and path.is_file():
        try:
            session = ort.InferenceSession(str(path), options, providers=providers)
            meta = session.get_modelmeta().custom_metadata_map
            if meta.get(_META_MODEL_ID) != mf.model_id:
                LOG.info('%s was exported from model %s, not %s: exporting again', path,
                         meta.get(_META_MODEL_ID), mf.model_id)
                session = None
        except Exception as exc:  # truncated/garbage file: export again
            LOG.warning('cannot use %s (%s): exporting again', path, exc)
            session = None
    if session is None:
        data = onnx_bytes(mf)
        saved = write and _save(path, data, 'ONNX export', strict=False)
        source = f'exported to {path}' if saved else 'exported in memory'
        session = ort.InferenceSession(data, options, providers=providers)
    used = session.get_providers()

    def run(x: torch.Tensor) -> torch.Tensor:
        # A CPU tensor's .numpy() is a view; from CUDA it is one 600 kB copy to the host.
        inp = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(session.run([ONNX_OUTPUT], {ONNX_INPUT: inp})[0])

    return run, f'onnxruntime {ort.__version__} ({", ".join(used)}) from {source}'


def _tensorrt_runner(mf: ModelFile, device: torch.device, write: bool,
                     precision: str = 'fp32') -> tuple[Runner, str]:
    import tensorrt as trt
    data, source = _engine(mf, mf.path, device, write, precision=precision)
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    with torch.cuda.device(device):
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise BackendError('TensorRT could not load the engine')
        context = engine.create_execution_context()
        n = len(mf.class_names)
        out = torch.empty((1, n), dtype=torch.float32, device=device)
    context.set_tensor_address(ONNX_OUTPUT, out.data_ptr())

    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device, torch.float32).contiguous()
        context.set_tensor_address(ONNX_INPUT, x.data_ptr())
        stream = torch.cuda.current_stream(device)
        if not context.execute_async_v3(stream.cuda_stream):
            raise BackendError('TensorRT inference failed')
        return out.clone()  # the next call overwrites ``out``; clone is ordered on ``stream``

    run.engine, run.context = engine, context  # keep them alive with the runner
    return run, f'tensorrt {trt.__version__} ({precision}) on ' \
                f'{torch.cuda.get_device_name(device)} from {source}'
