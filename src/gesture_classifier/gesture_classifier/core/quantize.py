"""``precision: int8`` on the CPU: a static int8 QDQ export of a model for ONNX Runtime, with
its own check.

The trainer (core/trainer.py) writes, beside the model file ``resnet18.pt`` and its FP32 export
``resnet18.onnx``:

- ``resnet18.int8.onnx``: ONNX Runtime static quantization of the FP32 export (QDQ format,
  per-channel int8 weights, uint8 activations, MinMax calibration) on at most
  :data:`MAX_CALIBRATION` of the task's own training images (at least :data:`MIN_CALIBRATION`),
  with the ``model_id`` of its source in ``metadata_props`` like every export;
- ``resnet18.int8.json``: the export's check, made on the validation images (at most
  :data:`MAX_VALIDATION`): label agreement with FP32 (>= :data:`MIN_AGREEMENT`), mean and max
  |dp| of the calibrated probabilities (mean <= :data:`MAX_MEAN_DP`), and both sessions' per
  image time measured interleaved in one process, with the CPU they ran on.

A check that fails (or cannot run: too few images, no validation images, no quantization
module) writes the JSON with ``passed: false`` and the reason and removes a stale int8 file:
the classifier then keeps FP32 and says why (:func:`usable_int8`). ``precision: auto`` picks
int8 only when the check passed and the int8 session was measured at least
:data:`MIN_SPEEDUP` times faster on a CPU of the same model name as this one.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .fsutil import atomic_write
from .model import ModelFile
from .imagefiles import list_images
from .preprocess import PreprocessSpec, normalize, resize, to_chw_rgb

__all__ = ['MIN_CALIBRATION', 'MAX_CALIBRATION', 'MAX_VALIDATION', 'MIN_AGREEMENT',
           'MAX_MEAN_DP', 'MIN_SPEEDUP', 'Int8Check', 'int8_paths', 'cpu_name',
           'quantize_int8', 'export_int8', 'read_check', 'usable_int8', 'task_images']

LOG = logging.getLogger(__name__)

MIN_CALIBRATION = 8
MAX_CALIBRATION = 64
MAX_VALIDATION = 200
#: The export's own check: label agreement with FP32 and mean max-|dp| per image.
MIN_AGREEMENT = 0.99
MAX_MEAN_DP = 0.02
#: ``precision: auto`` takes int8 only when it was measured at least this much faster.
MIN_SPEEDUP = 1.2
#: Interleaved timing: rounds x images per round, per session.
TIMING_ROUNDS, TIMING_IMAGES = 3, 10


@dataclass
class Int8Check:
    """What the int8 export did and its check (the JSON beside it)."""

    model_id: str
    passed: bool = False
    reason: str = ''
    calibration_images: int = 0
    validation_images: int = 0
    agreement: float | None = None
    mean_abs_dp: float | None = None
    max_abs_dp: float | None = None
    fp32_ms: float | None = None
    int8_ms: float | None = None
    speedup: float | None = None
    cpu: str = field(default_factory=lambda: cpu_name())
    onnxruntime: str = ''

    def summary(self) -> str:
        if not self.passed:
            return f'int8 not used: {self.reason}'
        return (f'int8: agreement {self.agreement:.1%} and mean |dp| {self.mean_abs_dp:.4f} '
                f'on {self.validation_images} validation images, {self.speedup:.2f}x faster '
                f'than FP32 ({self.int8_ms:.1f} vs {self.fp32_ms:.1f} ms)')


def int8_paths(model_path: str | os.PathLike) -> tuple[Path, Path]:
    """(int8 ONNX file, its check's JSON) beside the model file."""
    p = Path(model_path)
    return p.with_suffix('.int8.onnx'), p.with_suffix('.int8.json')


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; else platform) and its core count."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                name = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    return f'{name} x{os.cpu_count()}'


def _session(data: bytes):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    return ort.InferenceSession(data, options, providers=['CPUExecutionProvider'])


def quantize_int8(fp32: bytes, calibration: torch.Tensor, spec: PreprocessSpec) -> bytes:
    """Static int8 QDQ quantization of the FP32 ONNX model ``fp32`` calibrated on the uint8
    ``(N, 3, S, S)`` RGB images ``calibration``. Keeps the metadata (model_id, classes).

    Raises:
        ImportError: onnxruntime.quantization (or onnx) is missing.
        ValueError: fewer than MIN_CALIBRATION images.
    """
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    if len(calibration) < MIN_CALIBRATION:
        raise ValueError(f'{len(calibration)} calibration image(s); at least '
                         f'{MIN_CALIBRATION} are needed')
    inputs = [normalize(img.unsqueeze(0), spec).numpy() for img in calibration]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(inputs)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {'input': x}

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / 'fp32.onnx', Path(tmp) / 'int8.onnx'
        src.write_bytes(fp32)
        try:  # ONNX Runtime's recommended pre-processing: shape inference, graph optimisation
            from onnxruntime.quantization.shape_inference import quant_pre_process
            pre = Path(tmp) / 'pre.onnx'
            quant_pre_process(str(src), str(pre))
            src = pre
        except Exception as exc:  # quantizing the plain export still works
            LOG.info('int8: pre-processing skipped (%r)', exc)
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        proto = onnx.load(str(dst))
    meta = {p.key: p.value for p in onnx.load_from_string(fp32).metadata_props}
    have = {p.key for p in proto.metadata_props}
    for key, value in meta.items():
        if key not in have:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
    return proto.SerializeToString()


def _probabilities(session, inputs: list[np.ndarray], temperature: float) -> np.ndarray:
    logits = np.concatenate([session.run(['logits'], {'input': x})[0] for x in inputs])
    z = logits / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _timing(fp32, int8, inputs: list[np.ndarray]) -> tuple[float, float]:
    """Per-image p50 (ms) of both sessions, interleaved in rounds in this process."""
    times: dict[str, list[float]] = {'fp32': [], 'int8': []}
    sample = inputs[:TIMING_IMAGES]
    for s in (fp32, int8):  # warm-up
        s.run(['logits'], {'input': sample[0]})
    for _ in range(TIMING_ROUNDS):
        for name, s in (('fp32', fp32), ('int8', int8)):
            for x in sample:
                t = time.perf_counter()
                s.run(['logits'], {'input': x})
                times[name].append((time.perf_counter() - t) * 1e3)
    return float(np.median(times['fp32'])), float(np.median(times['int8']))


def _check(check: Int8Check, fp32: bytes, int8: bytes, validation: torch.Tensor,
           spec: PreprocessSpec, temperature: float) -> None:
    inputs = [normalize(img.unsqueeze(0), spec).numpy() for img in validation]
    a, b = _session(fp32), _session(int8)
    pa, pb = _probabilities(a, inputs, temperature), _probabilities(b, inputs, temperature)
    dp = np.abs(pa - pb).max(axis=1)
    check.validation_images = len(inputs)
    check.agreement = float((pa.argmax(1) == pb.argmax(1)).mean())
    check.mean_abs_dp, check.max_abs_dp = float(dp.mean()), float(dp.max())
    check.fp32_ms, check.int8_ms = _timing(a, b, inputs)
    check.speedup = check.fp32_ms / check.int8_ms
    failed = []
    if check.agreement < MIN_AGREEMENT:
        failed.append(f'label agreement with FP32 {check.agreement:.1%} < {MIN_AGREEMENT:.0%}')
    if check.mean_abs_dp > MAX_MEAN_DP:
        failed.append(f'mean |dp| {check.mean_abs_dp:.4f} > {MAX_MEAN_DP}')
    check.passed = not failed
    check.reason = ('check failed on the validation images: ' + '; '.join(failed)) if failed \
        else 'check passed'


def _write(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data), expected_size=len(data))


def export_int8(mf: ModelFile, fp32: bytes, calibration: torch.Tensor,
                validation: torch.Tensor, model_path: str | os.PathLike | None = None
                ) -> Int8Check:
    """Quantize ``mf``'s FP32 export ``fp32``, check it and write both files beside
    ``model_path`` (default ``mf.path``). ``calibration``: uint8 training images (the first
    MAX_CALIBRATION are used); ``validation``: uint8 validation images (the first
    MAX_VALIDATION). Never raises for the data or a missing module: the returned check says
    why int8 is not used, and the int8 file of an earlier model is removed.

    Raises:
        OSError: the files could not be written.
    """
    onnx_path, json_path = int8_paths(model_path or mf.path)
    check = Int8Check(model_id=mf.model_id)
    try:
        import onnxruntime
        check.onnxruntime = onnxruntime.__version__
        import onnxruntime.quantization  # noqa: F401  (the module itself may be missing)
    except ImportError as exc:
        check.reason = f'no quantization module ({exc}); install onnx and onnxruntime'
    data = None
    if not check.reason:
        calibration = calibration[:MAX_CALIBRATION]
        validation = validation[:MAX_VALIDATION]
        check.calibration_images = len(calibration)
        if len(calibration) < MIN_CALIBRATION:
            check.reason = (f'calibration set too small: {len(calibration)} training '
                            f'image(s), at least {MIN_CALIBRATION} needed')
        elif len(validation) == 0:
            check.reason = 'no validation images to check the int8 export on'
    if not check.reason:
        try:
            data = quantize_int8(fp32, calibration, mf.spec)
            _check(check, fp32, data, validation, mf.spec, mf.temperature)
        except Exception as exc:  # onnxruntime's own errors: FP32 stays, with the reason
            check.passed, check.reason = False, f'int8 quantization failed: {exc!r}'
    if check.passed and data is not None:
        _write(onnx_path, data)
    else:
        onnx_path.unlink(missing_ok=True)
    _write(json_path, json.dumps(asdict(check), indent=1).encode())
    (LOG.info if check.passed else LOG.warning)('%s: %s', mf.model_id, check.summary())
    return check


def read_check(model_path: str | os.PathLike) -> Int8Check | None:
    """The check stored beside ``model_path``; None when missing or unreadable."""
    try:
        raw = json.loads(int8_paths(model_path)[1].read_text())
        return Int8Check(**{k: raw[k] for k in Int8Check.__dataclass_fields__ if k in raw})
    except (OSError, ValueError, TypeError):
        return None


def usable_int8(mf: ModelFile, auto: bool = False) -> tuple[Path | None, str]:
    """The int8 file to run for ``mf`` and why, or (None, why not): missing, made from another
    model (stale), check not passed, or (``auto``) not measured faster on this CPU."""
    from .backends import onnx_model_id
    if mf.path is None:
        return None, 'the model has no file, so no int8 export'
    onnx_path, _ = int8_paths(mf.path)
    check = read_check(mf.path)
    if check is None:
        return None, f'no int8 export beside {mf.path} (the trainer makes it)'
    if check.model_id != mf.model_id:
        return None, f'the int8 export is of model {check.model_id}, not {mf.model_id} (stale)'
    if not check.passed:
        return None, check.reason
    stored = onnx_model_id(onnx_path)
    if stored != mf.model_id:
        return None, (f'{onnx_path.name} is missing or of model {stored}, not {mf.model_id} '
                      '(stale)')
    if auto:
        if check.cpu != cpu_name():
            return None, f'int8 speed was measured on another CPU ({check.cpu})'
        if (check.speedup or 0) < MIN_SPEEDUP:
            return None, (f'int8 was measured only {check.speedup:.2f}x as fast as FP32 '
                          f'(< {MIN_SPEEDUP}x)')
    return onnx_path, check.summary()


def _spread(items: list, limit: int) -> list:
    """At most ``limit`` of ``items``, evenly spaced (every class and session represented)."""
    if len(items) <= limit:
        return items
    return [items[int(i * len(items) / limit)] for i in range(limit)]


def _decode(paths: list[Path], spec: PreprocessSpec) -> torch.Tensor:
    import cv2
    out = []
    for path in paths:
        bgr = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR) \
            if path.stat().st_size else None
        if bgr is not None:  # unreadable files are the trainer's to report
            out.append(resize(to_chw_rgb(bgr, 'bgr'), spec).contiguous())
    size = spec.input_size
    return torch.stack(out) if out else torch.empty((0, 3, size, size), dtype=torch.uint8)


def task_images(task, mf: ModelFile) -> tuple[torch.Tensor, torch.Tensor]:
    """(calibration, validation) uint8 images of ``task`` for ``mf``: at most MAX_CALIBRATION
    of the images it trained on (``mf.train_files``) and at most MAX_VALIDATION of the others
    (its validation images), evenly spread over the sorted files; only those are decoded."""
    known = set(mf.train_files)
    train, val = [], []
    for label in task.classes:
        for path in list_images(task.class_dir(label)):
            (train if f'{label}/{path.name}' in known else val).append(path)
    return (_decode(_spread(train, MAX_CALIBRATION), mf.spec),
            _decode(_spread(val, MAX_VALIDATION), mf.spec))
