"""Inference backends: the network of a model file run by PyTorch, ONNX Runtime or TensorRT.

=============  ===================================================  ==========================
backend        runs                                                  file next to ``model.pt``
=============  ===================================================  ==========================
pytorch        the ``nn.Module`` itself (CPU or CUDA)                none
onnxruntime    an ONNX export in ``onnxruntime.InferenceSession``;   ``model.onnx``
               CPU here, CUDA execution provider when the device is
               CUDA and onnxruntime-gpu is installed (Jetson Zoo)
tensorrt       a TensorRT engine built from the ONNX export          ``model.onnx`` +
               (CUDA only; FP32, or FP16 with ``precision`` fp16)    ``model.engine``
=============  ===================================================  ==========================

``auto`` (the nodes' default) picks at start what is fastest where it runs: on a CUDA device
tensorrt when TensorRT is there (a Jetson), else onnxruntime only when it has a CUDA or
TensorRT execution provider, else pytorch on CUDA (never a CPU path while the GPU is usable);
on the CPU onnxruntime when it is installed (measured here: about twice as fast as PyTorch,
see docs/benchmarks.md), else pytorch; :func:`resolve_backend` says which and why.
``precision`` 'fp16' (CUDA only) runs pytorch in half precision and builds TensorRT engines
with FP16 enabled; onnxruntime has no FP16 path here (it would need a converted model) and is
skipped by ``auto`` then. 'int8' (CPU, onnxruntime) runs the trainer's checked int8 export
(quantize.py) and FP32 with the reason where there is none; 'auto' runs int8 only where its
check passed and it was measured faster on this CPU, else fp32.

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
from .quantize import usable_int8

__all__ = ['BACKENDS', 'BackendError', 'available_backends', 'require_usable', 'export_paths',
           'export', 'AUTO', 'PRECISIONS', 'resolve_backend', 'check_precision',
           'create_runner', 'onnx_bytes', 'onnx_model_id', 'build_engine', 'Runner',
           'ONNX_OPSET', 'ONNX_INPUT', 'ONNX_OUTPUT', 'auto_fallbacks', 'ort_providers',
           'ORT_GPU_PROVIDERS']

LOG = logging.getLogger(__name__)

BACKENDS = ('pytorch', 'onnxruntime', 'tensorrt')
#: The ``backend`` parameter value that picks one of BACKENDS (see resolve_backend).
AUTO = 'auto'
#: ``precision`` values: fp16 needs a CUDA device (pytorch, tensorrt); int8 the CPU and
#: onnxruntime (the trainer's checked export, see quantize.py); auto: int8 where its check
#: passed and it was measured faster (onnxruntime on the CPU), else fp32.
PRECISIONS = ('fp32', 'fp16', 'int8', 'auto')
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


def _cuda_available() -> bool:
    """torch's CUDA check, in one place so that tests can substitute it."""
    return torch.cuda.is_available()


def ort_providers() -> list[str]:
    """ONNX Runtime's execution providers on this machine (empty without onnxruntime); one
    place so that tests can substitute it."""
    if not _has('onnxruntime'):
        return []
    import onnxruntime as ort
    return list(ort.get_available_providers())


#: ONNX Runtime execution providers that run on a CUDA device.
ORT_GPU_PROVIDERS = ('TensorrtExecutionProvider', 'CUDAExecutionProvider')


def available_backends() -> list[str]:
    """The backends whose packages are importable on this machine (tensorrt also needs CUDA),
    in :data:`BACKENDS` order; 'pytorch' is always available."""
    out = ['pytorch']
    if _has('onnxruntime') and _has('onnx'):
        out.append('onnxruntime')
    if _has('tensorrt') and _has('onnx') and _cuda_available():
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
    """Check a node's ``precision`` parameter against its device and backend ('auto' for a
    backend still to be chosen).

    Raises:
        ValueError: not one of :data:`PRECISIONS`, fp16 without a CUDA device, fp16 with
            onnxruntime, int8 on CUDA or with another backend than onnxruntime.
    """
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {", ".join(PRECISIONS)}, got {precision!r}')
    device_type = torch.device(device).type
    if precision == 'fp16' and device_type != 'cuda':
        raise ValueError(f'precision fp16 needs a CUDA device, not {device}')
    if precision == 'fp16' and backend == 'onnxruntime':
        raise ValueError('precision fp16 is not supported by the onnxruntime backend; use '
                         'fp32, or pytorch / tensorrt')
    if precision == 'int8' and device_type != 'cpu':
        raise ValueError(f'precision int8 runs on the CPU (onnxruntime), not on {device}')
    if precision == 'int8' and backend not in ('onnxruntime', AUTO):
        raise ValueError(f'precision int8 is an onnxruntime export; not supported by the '
                         f'{backend} backend')


def resolve_backend(backend: str, device: torch.device | str, precision: str = 'fp32'
                    ) -> tuple[str, str]:
    """The backend to run and why: ``backend`` itself when it is not 'auto' (checked with
    :func:`require_usable` and :func:`check_precision`), else the fastest usable where it runs:

    - on a CUDA device: tensorrt (TensorRT installed), else onnxruntime only when it has a
      CUDA or TensorRT execution provider, else pytorch on CUDA. Never a CPU path while the
      GPU is usable (measured on an H200: ONNX Runtime's CPU provider 9.7 ms per frame
      against 2.4 ms for PyTorch on the GPU).
    - on the CPU: onnxruntime (installed; fp32, int8), else pytorch.

    Raises:
        ValueError: an explicit backend or precision that cannot be used here, or a CUDA
            device while CUDA is not usable.
    """
    device = torch.device(device)
    if backend != AUTO:
        require_usable(backend)
        check_precision(precision, device, backend)
        return backend, 'set by the backend parameter'
    check_precision(precision, device, AUTO)
    available = available_backends()
    if device.type == 'cuda':
        if not _cuda_available():
            raise ValueError(f'device {device} asked for, but CUDA is not available here')
        if 'tensorrt' in available:
            return 'tensorrt', 'auto: TensorRT and a CUDA device are present'
        gpu_eps = [p for p in ORT_GPU_PROVIDERS if p in ort_providers()]
        if 'onnxruntime' in available and gpu_eps and precision == 'fp32':
            return 'onnxruntime', (f'auto: TensorRT is not installed; ONNX Runtime has the '
                                   f'{gpu_eps[0]}')
        if 'onnxruntime' not in available:
            why_not_ort = 'ONNX Runtime is not installed'
        elif not gpu_eps:
            why_not_ort = 'ONNX Runtime has only CPU execution providers'
        else:
            why_not_ort = f'ONNX Runtime has no {precision} path'
        return 'pytorch', (f'auto: TensorRT is not installed; {why_not_ort}; PyTorch on '
                           f'{device} (never a CPU path while CUDA is usable)')
    why_not = f'no TensorRT on {device.type}'
    if 'onnxruntime' in available and precision != 'fp16':
        return 'onnxruntime', f'auto: {why_not}; ONNX Runtime is installed'
    if precision == 'int8':
        raise ValueError('precision int8 needs onnxruntime (and onnx), not installed here')
    return 'pytorch', f'auto: {why_not}; ONNX Runtime is not installed'


def auto_fallbacks(backend: str, device: torch.device | str, precision: str = 'fp32'
                   ) -> list[str]:
    """What ``backend: auto`` tries, in order, after ``backend`` fails for a model: the
    slower usable backends that run on ``device`` (on CUDA never onnxruntime on the CPU)."""
    device = torch.device(device)
    out = []
    for b in ('onnxruntime', 'pytorch'):
        if b == backend or b not in available_backends():
            continue
        if b == 'onnxruntime' and (precision == 'fp16' or device.type == 'cuda' and not any(
                p in ort_providers() for p in ORT_GPU_PROVIDERS)):
            continue
        out.append(b)
    return out


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
    if precision == 'int8' and backend != 'onnxruntime':  # auto's fallback after onnxruntime
        LOG.warning('precision int8 is an onnxruntime export: %s runs the model in fp32',
                    backend)
        precision = 'fp32'
    try:
        check_precision(precision, device, backend)
    except ValueError as exc:
        raise BackendError(str(exc)) from None
    if precision == 'auto' and backend != 'onnxruntime':
        precision = 'fp32'  # FP16 was measured slower than FP32 at batch 1 (H200, issue 22)
    if backend == 'pytorch':
        model = mf.model.to(device).eval()
        if device.type == 'cuda':
            return _cuda_runner(model, mf.spec.input_size, device, precision)
        return model, f'pytorch {torch.__version__} on {device}'
    if backend == 'onnxruntime':
        return _onnxruntime_runner(mf, device, write_exports, precision=precision)
    _require_tensorrt(device)
    return _tensorrt_runner(mf, device, write_exports, precision)


def _onnxruntime_runner(mf: ModelFile, device: torch.device, write: bool,
                        io_binding: bool = True, precision: str = 'fp32'
                        ) -> tuple[Runner, str]:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendError('the onnxruntime backend needs the onnxruntime package '
                           '(pip install onnxruntime, or onnxruntime-gpu on a Jetson)') from exc
    path = export_paths(mf.path, 'onnxruntime')[0] if mf.path else None
    providers = ['CPUExecutionProvider']
    if device.type == 'cuda':
        here = ort_providers()
        providers[:0] = [(p, {'device_id': device.index or 0}) for p in ORT_GPU_PROVIDERS
                         if p in here]
        if len(providers) == 1:
            LOG.warning('onnxruntime on %s: this ONNX Runtime has only CPU execution '
                        'providers, so the network runs on the CPU (install onnxruntime-gpu, '
                        'or use backend pytorch or auto)', device)
    options = ort.SessionOptions()
    # No spinning between frames: at 30 FPS ONNX Runtime's idle threads otherwise spin on the
    # cores the camera, collector and trainer need (measured here: 51 -> 37 ms of CPU per frame
    # for about 1.5 ms more latency); the nodes run OpenMP passive for the same reason.
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    session, source, note = None, str(path), ''
    if precision in ('int8', 'auto') and device.type == 'cpu':
        int8_path, why = usable_int8(mf, auto=precision == 'auto')
        if int8_path is not None:
            try:
                session = ort.InferenceSession(str(int8_path), options, providers=providers)
                source, note = str(int8_path), f'; {why}'
            except Exception as exc:  # damaged file: FP32, with the reason
                why = f'cannot load {int8_path} ({exc})'
        if session is None:
            note = f'; precision {precision}: FP32 used, {why}'
            (LOG.warning if precision == 'int8' else LOG.info)(
                'model %s, precision %s: running FP32: %s', mf.model_id, precision, why)
    elif precision == 'auto':
        note = '; precision auto: fp32 (int8 is a CPU path)'
    if session is None and path is not None and path.is_file():
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
    run = _bound_run(session, len(mf.class_names), used[0]) if io_binding else \
        _plain_run(session)
    return run, f'onnxruntime {ort.__version__} ({", ".join(used)}) from {source}{note}'


# -- PyTorch on CUDA: a static input and the network captured as a CUDA graph ---------------
def _capture(model: torch.nn.Module, static_in: torch.Tensor):
    """Capture ``model(static_in)`` as a CUDA graph (after a warm-up on a side stream, as
    torch.cuda.graphs asks). Returns (graph, static output). Raises what capture raises."""
    device = static_in.device
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.inference_mode(), torch.cuda.stream(side):
        for _ in range(3):  # cuDNN picks its kernels, the allocator its pools
            model(static_in)
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        static_out = model(static_in)
    return graph, static_out


def _graph_runner(model: torch.nn.Module, static_in: torch.Tensor, what: str
                  ) -> tuple[Runner, str]:
    """The network on a static input: each call copies the frame's input into ``static_in``
    (casting to its dtype and channels-last layout), replays the captured graph and returns
    the static output (overwritten by the next call: the predictor reads it back once, under
    its lock). Capture failing (an op that cannot be captured, out of memory, no CUDA) gives
    the eager network with a log line, never an error."""
    try:
        graph, static_out = _capture(model, static_in)
    except Exception as exc:
        LOG.warning('CUDA graph capture failed (%r): running the network eagerly', exc)

        def eager(x: torch.Tensor) -> torch.Tensor:
            static_in.copy_(x)
            return model(static_in)
        return eager, f'{what}, eager (CUDA graph capture failed: {type(exc).__name__})'

    def run(x: torch.Tensor) -> torch.Tensor:
        static_in.copy_(x)
        graph.replay()
        return static_out

    run.model, run.graph = model, graph  # kept alive with the runner
    return run, f'{what}, CUDA graph'


def _cuda_runner(model: torch.nn.Module, size: int, device: torch.device, precision: str
                 ) -> tuple[Runner, str]:
    """PyTorch on CUDA near the launch floor: channels-last weights and input (FP16 with
    ``precision`` fp16), a static input buffer and the network captured once per model as a
    CUDA graph (a model switch makes a new predictor, so a new capture); eager where capture
    fails. Measured on an H200 before this (eager, issue 22): 2.39 ms per frame FP32, FP16
    slower (3.02 ms) because batch 1 is bound by kernel launches; the bare network captured
    0.34 ms. Not measured with this code (no GPU on the development machine)."""
    dtype = torch.float16 if precision == 'fp16' else torch.float32
    model = model.to(device=device, dtype=dtype, memory_format=torch.channels_last)
    static_in = torch.zeros((1, 3, size, size), device=device, dtype=dtype).contiguous(
        memory_format=torch.channels_last)
    return _graph_runner(model, static_in,
                         f'pytorch {torch.__version__} on {device}, {precision}, channels-last')


def _plain_run(session) -> Runner:
    """session.run: a new input array (from CUDA a copy to the host) and output per frame."""
    def run(x: torch.Tensor) -> torch.Tensor:
        inp = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(session.run([ONNX_OUTPUT], {ONNX_INPUT: inp})[0])
    return run


def _bound_run(session, n_classes: int, provider: str) -> Runner:
    """session.run_with_iobinding: the input tensor's memory bound where it lies (the
    predictor's reused buffer, on the CPU or, with a GPU execution provider, on the GPU: no
    copy), bound again only when it moves; the logits written into one preallocated host
    array (from the GPU, the one read-back) and returned as a copy (N floats)."""
    binding = session.io_binding()
    out = np.empty((1, n_classes), dtype=np.float32)
    binding.bind_output(ONNX_OUTPUT, 'cpu', 0, np.float32, list(out.shape), out.ctypes.data)
    on_gpu = provider in ORT_GPU_PROVIDERS
    bound: list = [None]  # the tensor whose memory is bound (kept alive while bound)

    def run(x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or not x.is_contiguous() or \
                (x.device.type == 'cuda') != on_gpu:
            x = x.to('cuda' if on_gpu else 'cpu', torch.float32).contiguous()
        if bound[0] is None or bound[0].data_ptr() != x.data_ptr() or \
                bound[0].shape != x.shape:
            kind, index = ('cuda', x.device.index or 0) if on_gpu else ('cpu', 0)
            binding.bind_input(ONNX_INPUT, kind, index, np.float32, list(x.shape),
                               x.data_ptr())
        bound[0] = x
        if on_gpu:  # ONNX Runtime reads on its own stream: torch's writes must be done
            torch.cuda.current_stream(x.device).synchronize()
        session.run_with_iobinding(binding)
        return torch.from_numpy(out.copy())

    run.binding, run.output = binding, out  # keep them alive with the runner
    return run


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
