"""precision int8 and bf16 on this CPU (issue 22, item 1), on real photos of a task, one run.

    scripts/bench.sh int8        # or: python -m bench.int8 [--per-class 30] [--epochs 5]

1. A task of ``--per-class`` thumbs photos per class (a fifth held out for validation) is
   trained with the DLI recipe (random initial weights: no ImageNet weights on these machines)
   and exported as the trainer does: FP32 ONNX, then the int8 QDQ export with its own check
   (core/quantize.py: agreement and mean |dp| on the validation images, int8 against FP32
   timed interleaved in this process).
2. Through ``Predictor.classify`` on 640x480 frames of photos the task never saw: FP32 against
   int8 ONNX Runtime sessions (the int8 model whether or not its check passed), interleaved
   in blocks of 10 frames: per-frame p50 / p99, label agreement, mean and max |dp|.
3. PyTorch on the CPU, the bare network at batch 1: FP32 against ``torch.autocast('cpu',
   torch.bfloat16)``, interleaved: p50 and label agreement.

Prints one table; writes bench/results/int8-latest.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from gesture_classifier.core.backends import export
from gesture_classifier.core.inference import Predictor
from gesture_classifier.core.model import load_model
from gesture_classifier.core.quantize import _session, export_int8, quantize_int8, task_images
from gesture_classifier.core.tasks import Task
from gesture_classifier.core.training import DLI, TrainConfig, train_task

from .common import SHARED_DATA, log

RESULTS = Path(__file__).resolve().parent / 'results'
CLASSES = ('thumbs_up', 'thumbs_down')
BLOCK = 10


def _p(a, q):
    return float(np.percentile(np.asarray(a), q))


def interleaved(fns: dict, inputs: list, rounds: int) -> dict:
    times = {k: [] for k in fns}
    for fn in fns.values():
        for x in inputs[:3]:
            fn(x)
    for r in range(rounds):
        for name, fn in fns.items():
            for i in range(BLOCK):
                x = inputs[(r * BLOCK + i) % len(inputs)]
                t = time.perf_counter()
                fn(x)
                times[name].append((time.perf_counter() - t) * 1e3)
    return {k: {'p50': _p(v, 50), 'p99': _p(v, 99), 'n': len(v)} for k, v in times.items()}


def _probs(session, x, temperature):
    z = session.run(['logits'], {'input': x})[0] / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--per-class', type=int, default=30)
    parser.add_argument('--epochs', type=int, default=5)
    parser.add_argument('--rounds', type=int, default=8)
    parser.add_argument('--workdir', type=Path, help='keep the task and model here; a model '
                        'already there is reused (no training)')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as the nodes on this 2-core machine share it
    photos = {c: sorted((SHARED_DATA / 'thumbs_wincle626' / c).glob('*.jp*g')) for c in CLASSES}
    out: dict = {'threads': torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.workdir or Path(tmp)
        task = Task.create('thumbs', data_dir=root / 'data')
        if task.model_path.exists():
            mf = load_model(task.model_path)
            log(f'int8: reusing {task.model_path}')
        else:
            for c in CLASSES:
                task.class_dir(c).mkdir(parents=True, exist_ok=True)
                for p in photos[c][:args.per_class]:
                    shutil.copyfile(p, task.class_dir(c) / p.name)
            log(f'int8: training {args.epochs} epochs on {2 * args.per_class} photos')
            trained = train_task(task, TrainConfig(epochs=args.epochs, batch_size=8,
                                                   val_fraction=0.2, seed=0, recipe=DLI),
                                 initial_weights='none')
            mf = trained.model
        onnx_path = export(mf, 'onnxruntime')[0]
        calibration, validation = task_images(task, mf)
        log(f'int8: quantizing on {len(calibration)} training images, checking on '
            f'{len(validation)}')
        t = time.perf_counter()
        check = export_int8(mf, onnx_path.read_bytes(), calibration, validation)
        out['export_s'] = time.perf_counter() - t
        out['check'] = check.__dict__
        out['val_accuracy'] = mf.val_accuracy
        held_out = [cv2.resize(cv2.imread(str(p)), (640, 480))
                    for c in CLASSES for p in photos[c][args.per_class:args.per_class + 40]
                    ] or [cv2.resize(cv2.imread(str(p)), (640, 480))  # all photos in the task
                          for c in CLASSES for p in photos[c][:20]]
        fp32 = Predictor(load_model(mf.path), backend='onnxruntime')
        # the int8 model itself, whether its check passed or not (the check decides only
        # whether the classifier uses it)
        int8_bytes = quantize_int8(onnx_path.read_bytes(), calibration, mf.spec)
        sessions = {'fp32': _session(onnx_path.read_bytes()), 'int8': _session(int8_bytes)}
        xs_np = [fp32._input(f, 'bgr').numpy().copy() for f in held_out]
        probs = {k: np.concatenate([_probs(s, x, mf.temperature) for x in xs_np])
                 for k, s in sessions.items()}
        pa, pb = probs['fp32'], probs['int8']
        dp = np.abs(pa - pb).max(axis=1)
        out['held_out'] = {'frames': len(held_out),
                           'agreement': float((pa.argmax(1) == pb.argmax(1)).mean()),
                           'mean_abs_dp': float(dp.mean()), 'max_abs_dp': float(dp.max())}
        out['predictor_ms'] = interleaved(
            {k: (lambda x, s=s: s.run(['logits'], {'input': x})) for k, s in sessions.items()},
            xs_np, args.rounds)
        # PyTorch bf16 autocast on this CPU (bare network, batch 1)
        net = load_model(mf.path).model.eval()
        xs = [fp32._input(f, 'bgr').clone() for f in held_out[:20]]

        def run_fp32(x):
            with torch.inference_mode():
                return net(x)

        def run_bf16(x):
            with torch.inference_mode(), torch.autocast('cpu', torch.bfloat16):
                return net(x).float()
        la = torch.cat([run_fp32(x) for x in xs]).argmax(1)
        lb = torch.cat([run_bf16(x) for x in xs]).argmax(1)
        out['bf16_agreement'] = float((la == lb).float().mean())
        out['pytorch_ms'] = interleaved({'fp32': run_fp32, 'bf16 autocast': run_bf16}, xs,
                                        max(2, args.rounds // 2))
    c, h, pm, tm = out['check'], out['held_out'], out['predictor_ms'], out['pytorch_ms']
    print(f'\nint8 on {c["cpu"]}, onnxruntime {c["onnxruntime"]}, torch threads '
          f'{out["threads"]}; model val accuracy {out["val_accuracy"]:.3f}')
    print(f'export check ({c["validation_images"]} validation images, calibrated on '
          f'{c["calibration_images"]}): passed {c["passed"]}; agreement {c["agreement"]:.1%}, '
          f'mean |dp| {c["mean_abs_dp"]:.4f}, max {c["max_abs_dp"]:.4f}; session '
          f'fp32 {c["fp32_ms"]:.1f} ms, int8 {c["int8_ms"]:.1f} ms: {c["speedup"]:.2f}x '
          f'(export + check {out["export_s"]:.0f} s)')
    print(f'held-out photos ({h["frames"]} frames 640x480): agreement {h["agreement"]:.1%}, '
          f'mean |dp| {h["mean_abs_dp"]:.4f}, max {h["max_abs_dp"]:.4f}')
    print(f'ONNX Runtime session per frame p50/p99: fp32 {pm["fp32"]["p50"]:.1f}/'
          f'{pm["fp32"]["p99"]:.1f} ms, int8 {pm["int8"]["p50"]:.1f}/{pm["int8"]["p99"]:.1f} ms: '
          f'{pm["fp32"]["p50"] / pm["int8"]["p50"]:.2f}x')
    f32, b16 = tm['fp32']['p50'], tm['bf16 autocast']['p50']
    print(f'PyTorch bare network p50: fp32 {f32:.1f} ms, bf16 autocast {b16:.1f} ms '
          f'({f32 / b16:.2f}x as fast); labels agree {out["bf16_agreement"]:.0%}')
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / 'int8-latest.json').write_text(json.dumps(out, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
