"""The short GPU bench of scripts/gpu_check.sh: no ROS, no network, one table on stdout.

    python -m bench.gpu [--frames 300] [--json out.json]

Per frame through ``Predictor.classify`` (640x480 bgr8 frames: the shared thumbs photos when
``../shared/data`` or ``shared/data`` is there, else random pixels, and the table says which)
for every backend and precision usable on the CUDA device: p50 / p99 (ms), each measured in
this process in turn after a warm-up; the bare network (``model(x)`` on a static input, eager,
and replayed as a CUDA graph) as the floor; the training step (forward, backward, AdamW) in
images/s at batch 8 and 64, FP32 and with autocast FP16. The model is a randomly initialised
2-class ResNet-18 (speed does not depend on the weights). On a machine without CUDA it says so
and exits 0.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
CLASSES = ('thumbs_up', 'thumbs_down')


def _frames(count: int = 30) -> tuple[list[np.ndarray], str]:
    import cv2
    for data in (REPO.parent / 'shared' / 'data', REPO / 'shared' / 'data'):
        paths = sorted((data / 'thumbs_wincle626').glob('*/*.jp*g'))[:count]
        if paths:
            return [cv2.resize(cv2.imread(str(p)), (640, 480)) for p in paths], \
                f'{len(paths)} thumbs photos from {data}'
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(count)], \
        'random 640x480 pixels (no shared photos here)'


def _times(fn, n: int, warmup: int = 20) -> dict:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    a = np.asarray(out)
    return {'p50': float(np.percentile(a, 50)), 'p99': float(np.percentile(a, 99)), 'n': n}


def predictor_rows(model_path: Path, frames, n: int) -> list[dict]:
    from gesture_classifier.core.backends import available_backends, ort_providers
    from gesture_classifier.core.inference import Predictor
    combos = [('pytorch', 'fp32'), ('pytorch', 'fp16')]
    if 'onnxruntime' in available_backends():
        gpu = [p for p in ort_providers() if p != 'CPUExecutionProvider']
        combos.append(('onnxruntime', 'fp32') if gpu else ('onnxruntime-cpu', 'fp32'))
    if 'tensorrt' in available_backends():
        combos += [('tensorrt', 'fp32'), ('tensorrt', 'fp16')]
    rows = []
    for backend, precision in combos:
        device = 'cpu' if backend == 'onnxruntime-cpu' else 'cuda'
        name = backend.replace('-cpu', '')
        try:
            p = Predictor.from_file(model_path, device, CLASSES, backend=name,
                                    precision=precision)
            i = [0]

            def step(p=p, i=i):
                p.classify(frames[i[0] % len(frames)], 'bgr')
                i[0] += 1
            t = _times(step, n)
            rows.append({'what': f'Predictor {backend} {precision}', **t,
                         'runs': p.description})
        except Exception as exc:  # report and go on: one table, always
            rows.append({'what': f'Predictor {backend} {precision}', 'error': repr(exc)[:200]})
    return rows


def bare_rows(n: int) -> list[dict]:
    from gesture_classifier.core.model import create_model
    model = create_model(2).cuda().eval()
    rows = []
    for dtype, name in ((torch.float32, 'fp32'), (torch.float16, 'fp16')):
        net = model.to(dtype).to(memory_format=torch.channels_last)
        x = torch.randn(1, 3, 224, 224, device='cuda', dtype=dtype).to(
            memory_format=torch.channels_last)
        with torch.inference_mode():
            rows.append({'what': f'bare network eager {name}',
                         **_times(lambda net=net, x=x: net(x).float().cpu(), n)})
            try:
                stream = torch.cuda.Stream()
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    for _ in range(3):
                        net(x)
                torch.cuda.current_stream().wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    y = net(x)

                def replay(graph=graph, y=y):
                    graph.replay()
                    y.float().cpu()
                rows.append({'what': f'bare network CUDA graph {name}', **_times(replay, n)})
            except Exception as exc:
                rows.append({'what': f'bare network CUDA graph {name}', 'error': repr(exc)[:200]})
    model.float()
    return rows


def training_rows(seconds: float = 5.0) -> list[dict]:
    from gesture_classifier.core.model import create_model
    rows = []
    for batch in (8, 64):
        for amp in (False, True):
            model = create_model(2).cuda().train().to(memory_format=torch.channels_last)
            opt = torch.optim.AdamW(model.parameters(), 1e-4)
            x = torch.randn(batch, 3, 224, 224, device='cuda').to(
                memory_format=torch.channels_last)
            y = torch.randint(0, 2, (batch,), device='cuda')
            scaler = torch.amp.GradScaler('cuda', enabled=amp)

            def step(model=model, opt=opt, x=x, y=y, scaler=scaler, amp=amp):
                opt.zero_grad(set_to_none=True)
                with torch.autocast('cuda', torch.float16, enabled=amp):
                    loss = torch.nn.functional.cross_entropy(model(x), y)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            for _ in range(5):
                step()
            torch.cuda.synchronize()
            steps, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                step()
                steps += 1
            torch.cuda.synchronize()
            rate = steps * batch / (time.perf_counter() - start)
            rows.append({'what': f'training step batch {batch} {"amp fp16" if amp else "fp32"}',
                         'images_per_s': rate})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--frames', type=int, default=300, help='timed frames per row')
    parser.add_argument('--json', type=Path, help='also write the rows as JSON here')
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print('bench.gpu: no CUDA device here (torch.cuda.is_available() is False): nothing '
              'to measure')
        return 0
    from gesture_classifier.core.model import ModelFile, create_model, save_model
    frames, source = _frames()
    device = torch.cuda.get_device_name(0)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = save_model(ModelFile(create_model(2), CLASSES), Path(tmp) / 'resnet18.pt')
        rows += predictor_rows(path, frames, args.frames)
    rows += bare_rows(args.frames)
    rows += training_rows()
    print(f'\nGPU bench on {device}; torch {torch.__version__}; frames: {source}')
    print(f'{"what":42} {"p50 ms":>8} {"p99 ms":>8} {"images/s":>9}  note')
    for r in rows:
        p50 = f'{r["p50"]:8.3f}' if 'p50' in r else f'{"":8}'
        p99 = f'{r["p99"]:8.3f}' if 'p99' in r else f'{"":8}'
        ips = f'{r["images_per_s"]:9.0f}' if 'images_per_s' in r else f'{"":9}'
        print(f'{r["what"]:42} {p50} {p99} {ips}  {r.get("error", r.get("runs", ""))}')
    if args.json:
        args.json.write_text(json.dumps({'device': device, 'torch': torch.__version__,
                                         'frames': source, 'rows': rows}, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
