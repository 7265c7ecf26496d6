"""Section ``framepath``: the classifier's CPU frame path before and after issue 22, in one run.

Before (bench/legacy_classifier.py): the whole frame's channels reordered, then resized; a new
float input per frame; ONNX Runtime ``session.run`` with new input and output arrays; the node
spun by one thread. After (the product): resize first and reorder the small result, one input
buffer reused, ONNX Runtime I/O binding with a preallocated output, the node spun by one
executor thread with the frames inferred in a thread of their own that takes the next frame
only when done (core.worker.NewestWorker, ros.topics.WhenReady; until 2026-12-06 a
three-thread MultiThreadedExecutor).

- bare: ``Predictor.classify`` of both paths on the same 640x480 bgr8 frames, interleaved in
  blocks of 10 frames in this process: per-frame time and process CPU per frame;
- node: the two classifier processes in turn (``backend: onnxruntime``, or ``pytorch`` with
  ``--framepath-backend pytorch``), fed 640x480 bgr8
  frames at 30 FPS (the camera node's encoding): latency p50 / p99 (receive - stamp), node CPU
  per prediction, and the round trip of ``get_parameters`` called every 50 ms during the window
  (target p99 <= 10 ms after).
"""
from __future__ import annotations

import time

from rcl_interfaces.srv import GetParameters

from gesture_classifier.core.inference import Predictor
from gesture_classifier.ros.client import GestureClient, wait_future

from .common import (CLASSES, FramePublisher, PredictionRecorder, SectionResult, Settings,
                     Workspace, cpu_seconds, log, node_graph, node_module, node_parameter,
                     summarize, wait_until)
from .legacy_classifier import legacy_frame_path
from .report import Row, Target

SECTION = 'framepath'
BLOCK = 10
#: get_parameters period during the node window (s).
PARAM_PERIOD_S = 0.05


def measure_bare(model_path, frames_bgr, cfg: Settings) -> dict:
    """Both frame paths interleaved, BLOCK frames each in turn, for ``cfg.bare_window_s``
    seconds per path after a warm-up."""
    with legacy_frame_path():
        before = Predictor.from_file(model_path, 'cpu', CLASSES,
                                     backend=cfg.framepath_backend)
    after = Predictor.from_file(model_path, 'cpu', CLASSES, backend=cfg.framepath_backend)
    paths = {'before': before, 'after': after}
    times = {k: [] for k in paths}
    cpu = dict.fromkeys(paths, 0.0)
    for p in paths.values():
        for f in frames_bgr[:5]:
            p.classify(f, 'bgr')
    i, start = 0, time.perf_counter()
    while time.perf_counter() - start < 2 * cfg.bare_window_s or len(times['after']) < 40:
        for name, p in paths.items():
            c0 = time.process_time()
            for _ in range(BLOCK):
                f = frames_bgr[i % len(frames_bgr)]
                i += 1
                t = time.perf_counter()
                p.classify(f, 'bgr')
                times[name].append((time.perf_counter() - t) * 1e3)
            cpu[name] += time.process_time() - c0
    return {name: {'runs': paths[name].description, 'per_frame_ms': summarize(times[name]),
                   'cpu_ms_per_frame': cpu[name] / len(times[name]) * 1e3}
            for name in paths}


def measure_node(ws: Workspace, model_path, msgs, cfg: Settings, label: str,
                 module: str | None) -> dict:
    params = {'model_path': str(model_path), 'device': 'cpu',
              'backend': cfg.framepath_backend}
    with GestureClient() as client:
        node = client.node
        recorder = PredictionRecorder(client)
        clock = node.get_clock()
        with node_module(module, 'classifier'), FramePublisher(node, msgs) as publisher, \
                node_graph(ws, ['classifier'], ws.root / f'framepath-{label}',
                           f'classifier-framepath-{label}', classifier=params) as graph:
            running = node_parameter(node, 'classifier', 'backend', timeout=120)
            wait_until(lambda: recorder.records, 60.0, 'first prediction', graph,
                       required=False)
            graph.sleep(cfg.warmup_s)
            getp = node.create_client(GetParameters, 'classifier/get_parameters')
            pid = graph.pid('classifier')
            t0, cpu0 = clock.now().nanoseconds, cpu_seconds(pid)
            end = time.monotonic() + cfg.classifier_window_s
            param_ms = []
            while time.monotonic() < end:
                t = time.perf_counter()
                wait_future(getp.call_async(GetParameters.Request(names=['backend'])), 5.0,
                            'get_parameters')
                param_ms.append((time.perf_counter() - t) * 1e3)
                graph.check()
                time.sleep(max(0.0, PARAM_PERIOD_S - (time.perf_counter() - t)))
            t1, cpu1 = clock.now().nanoseconds, cpu_seconds(pid)
            node.destroy_client(getp)
            graph.sleep(1.0)
            published = publisher.between(t0, t1)
            preds = recorder.between(t0, t1)
    window = (t1 - t0) / 1e9
    latency = [(r.received - r.stamp) / 1e6 for r in preds]
    return {'backend_parameter': running, 'window_s': window, 'published': len(published),
            'fps': len(preds) / window, 'latency_ms': summarize(latency),
            'inference_time_ms': summarize(r.inference_time * 1e3 for r in preds),
            'node_cpu_ms_per_prediction': (cpu1 - cpu0) / len(preds) * 1e3 if preds else None,
            'get_parameters_ms': summarize(param_ms)}


def run(ws: Workspace, cfg: Settings) -> SectionResult:
    model_path = ws.model()
    frames_bgr, msgs = ws.frames_bgr(), ws.image_msgs(encoding='bgr8')
    log(f'framepath: bare before/after interleaved, {2 * cfg.bare_window_s:g} s')
    bare = measure_bare(model_path, frames_bgr, cfg)
    node = {}
    for label, module in (('before', 'bench.legacy_classifier'), ('after', None)):
        log(f'framepath: node {label}, {cfg.classifier_window_s:g} s window')
        node[label] = measure_node(ws, model_path, msgs, cfg, label, module)
    b, a = bare['before'], bare['after']
    nb, na = node['before'], node['after']
    rows = [
        Row(SECTION, 'bare per-frame p50', 'ms', a['per_frame_ms']['p50'],
            b['per_frame_ms']['p50'], 'before, same run', 'ratio'),
        Row(SECTION, 'bare per-frame p99', 'ms', a['per_frame_ms']['p99'],
            b['per_frame_ms']['p99'], 'before, same run', 'ratio'),
        Row(SECTION, 'bare CPU per frame', 'ms', a['cpu_ms_per_frame'], b['cpu_ms_per_frame'],
            'before, same run', 'ratio'),
        Row(SECTION, 'node latency p50', 'ms', na['latency_ms']['p50'],
            nb['latency_ms']['p50'], 'before node', 'ratio'),
        Row(SECTION, 'node latency p99', 'ms', na['latency_ms']['p99'],
            nb['latency_ms']['p99'], 'before node', 'ratio'),
        Row(SECTION, 'node CPU per prediction', 'ms', na['node_cpu_ms_per_prediction'],
            nb['node_cpu_ms_per_prediction'], 'before node', 'ratio'),
        Row(SECTION, 'node predictions', '/s', na['fps'], nb['fps'], 'before node', 'ratio'),
        Row(SECTION, 'get_parameters p50 while classifying', 'ms',
            na['get_parameters_ms']['p50'], nb['get_parameters_ms']['p50'], 'before node',
            'ratio'),
        Row(SECTION, 'get_parameters p99 while classifying', 'ms',
            na['get_parameters_ms']['p99'], nb['get_parameters_ms']['p99'], 'before node',
            'ratio', Target('<=', 'abs', 10.0)),
    ]
    for label, n in node.items():
        if n['backend_parameter'] != cfg.framepath_backend:
            rows[3].note = f'{label} node reports backend {n["backend_parameter"]!r}'
    return SectionResult(rows, {'backend': cfg.framepath_backend, 'bare': bare, 'node': node,
                                'offered': '30 FPS of 640x480 bgr8 real photos'})
