"""Section 1: the classifier node against the bare model, for every inference backend.

Node: the bench publishes real 640x480 rgb8 frames at 30 FPS on ``image_raw`` (camera QoS,
``header.stamp`` = bench clock at publish); a real classifier process (bringup.NodeGroup) with
a trained model classifies them and publishes ``predictions``. Over the window:

- throughput: predictions of frames published in the window / window length (1/s);
- latency: receive time of the prediction - header.stamp (ms, one clock);
- frame age: latency - Prediction.inference_time (ms): the image's transport and wait in the
  node's queue, plus the Prediction's publish and transport back;
- frames dropped: frames published in the window that got no prediction (the image
  subscription keeps only the newest frame, by design).

Reference ("bare"): ``Predictor.predict`` on the same frames as numpy arrays in this process,
back to back, with no node running: per-frame time (ms) and throughput (1/s).

Targets: node throughput >= 0.9 x min(bare FPS, 30 offered); node latency p50 <= bare p50 +
5 ms; max frame age <= bare p50 + 33.3 ms (one inference period plus one frame period).

Backends: every backend of ``gesture_classifier.core.backends.available_backends()`` is measured
in turn, its bare loop first (no node
running), then the node; a backend comparison of the bare loops closes the section.
"""
from __future__ import annotations

import gc
import time

from gesture_classifier.core.backends import available_backends
from gesture_classifier.ros.client import GestureClient
from gesture_classifier.core.inference import Predictor

from .common import (CLASSES, FRAME_RATE, FRAME_SIZE, FramePublisher,
                     PredictionRecorder, SectionResult, Settings, Workspace, cpu_seconds, log,
                     node_graph, node_parameter, summarize, wait_until)
from .report import Row, Target

SECTION = 'classifier'
#: Frame period of the offered stream (ms): how long a frame can wait for the next to arrive.
FRAME_PERIOD_MS = 1000.0 / FRAME_RATE
#: How long the node gets, once up, for its first prediction before the window starts anyway.
FIRST_PREDICTION_TIMEOUT_S = 30.0


def measure_bare(model_path, frames, backend: str, cfg: Settings) -> dict:
    """Run ``Predictor.predict`` on ``frames`` (RGB uint8 arrays) back to back in this
    process for ``cfg.bare_window_s`` seconds after 5 warm-up calls.

    Returns:
        dict with ``per_frame_ms`` (summary of the per-call times, perf_counter), ``fps``
        (calls / wall time of the loop), ``cpu_ms_per_frame`` (process CPU time / calls).
    """
    predictor = Predictor.from_file(model_path, cfg.device, expected_classes=CLASSES,
                                    backend=backend)
    for frame in frames[:5]:
        predictor.predict(frame, 'rgb')
    times = []
    cpu0, start = time.process_time(), time.perf_counter()
    while time.perf_counter() - start < cfg.bare_window_s or len(times) < 20:
        frame = frames[len(times) % len(frames)]
        t = time.perf_counter()
        predictor.predict(frame, 'rgb')
        times.append((time.perf_counter() - t) * 1e3)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    description = predictor.description
    del predictor
    gc.collect()
    return {'backend': backend, 'runs': description, 'per_frame_ms': summarize(times),
            'fps': len(times) / wall, 'cpu_ms_per_frame': cpu / len(times) * 1e3}


def measure_node(ws: Workspace, model_path, backend: str, cfg: Settings, msgs=None,
                 topic: str = 'image_raw', label: str = '', **params) -> dict:
    """Publish the frames at 30 FPS to a classifier node process on ``backend`` and measure
    its predictions for ``cfg.classifier_window_s`` s after ``cfg.warmup_s`` s of warm-up
    following its first prediction. See the module docstring for the figures.

    ``msgs`` (default: the raw frames, ``ws.image_msgs()``) are published on ``topic``;
    ``params`` are more parameters of the node (e.g. ``image_transport='compressed'``)."""
    params = {'model_path': str(model_path), 'device': cfg.device, 'backend': backend,
              **params}
    with GestureClient() as client:
        recorder = PredictionRecorder(client)
        clock = client.node.get_clock()
        with FramePublisher(client.node, msgs or ws.image_msgs(), topic=topic) as publisher, \
                node_graph(ws, ['classifier'], ws.root / 'classifier',
                           f'classifier-{backend}{label}', classifier=params) as graph:
            running = node_parameter(client.node, 'classifier', 'backend', timeout=120)
            # Frames lost on the way can delay the first prediction: then measure anyway.
            first = wait_until(lambda: recorder.records, FIRST_PREDICTION_TIMEOUT_S,
                               'first prediction', graph, required=False)
            graph.sleep(cfg.warmup_s)
            pid = graph.pid('classifier')
            t0, cpu0, own0 = clock.now().nanoseconds, cpu_seconds(pid), time.process_time()
            graph.sleep(cfg.classifier_window_s)
            t1, cpu1, own1 = clock.now().nanoseconds, cpu_seconds(pid), time.process_time()
            graph.sleep(1.0)  # predictions of the last frames of the window still arrive
            published = publisher.between(t0, t1)
            preds = recorder.between(t0, t1)
    window = (t1 - t0) / 1e9
    latency = [(r.received - r.stamp) / 1e6 for r in preds]
    return {
        'backend_parameter': running,
        'first_prediction_after_s': first - graph.started if first else None,
        'window_s': window,
        'published': len(published),
        'classified': len({r.stamp for r in preds}),
        'fps': len(preds) / window,
        'latency_ms': summarize(latency),
        'frame_age_ms': summarize(lat - r.inference_time * 1e3
                                  for lat, r in zip(latency, preds)),
        'inference_time_ms': summarize(r.inference_time * 1e3 for r in preds),
        'node_cpu_ms_per_prediction': (cpu1 - cpu0) / len(preds) * 1e3 if preds else None,
        'node_cpu_cores': (cpu1 - cpu0) / window,
        'bench_process_cpu_cores': (own1 - own0) / window,
    }


def rows_for(backend: str, bare: dict, node: dict) -> list[Row]:
    """Table rows comparing one backend's node measurement with its bare loop."""
    p = f'[{backend}] '
    bare_ms = bare['per_frame_ms']
    achievable = min(bare['fps'], FRAME_RATE)
    rows = [
        Row(SECTION, p + 'throughput', '/s', node['fps'], achievable,
            'min(bare loop FPS, 30 offered)', 'ratio', Target('>=', 'ratio', 0.9)),
        Row(SECTION, p + 'latency p50', 'ms', node['latency_ms']['p50'], bare_ms['p50'],
            'bare per-frame p50', 'diff', Target('<=', 'diff', 5.0)),
        Row(SECTION, p + 'latency p99', 'ms', node['latency_ms']['p99'], bare_ms['p99'],
            'bare per-frame p99', 'diff'),
        Row(SECTION, p + 'frame age max', 'ms', node['frame_age_ms']['max'], bare_ms['p50'],
            'bare per-frame p50', 'diff', Target('<=', 'diff', FRAME_PERIOD_MS),
            note='frame age = latency - Prediction.inference_time: image transport and '
                 'queueing, plus the prediction\'s publish and transport back'),
        Row(SECTION, p + 'frame age p50', 'ms', node['frame_age_ms']['p50']),
        Row(SECTION, p + 'inference_time p50', 'ms', node['inference_time_ms']['p50'],
            bare_ms['p50'], 'bare per-frame p50', 'diff'),
        Row(SECTION, p + 'CPU per prediction', 'ms', node['node_cpu_ms_per_prediction'],
            bare['cpu_ms_per_frame'], 'bare CPU per frame', 'ratio'),
        Row(SECTION, p + 'frames dropped', 'frames', node['published'] - node['classified'],
            node['published'], 'frames published in window', 'ratio'),
    ]
    if node['backend_parameter'] != backend:
        for row in rows:
            row.value = None
        rows[0].note = (f'the classifier node reports backend {node["backend_parameter"]!r}, '
                        f'not {backend!r}: node figures not valid for this backend')
    return rows


def run(ws: Workspace, cfg: Settings) -> SectionResult:
    """For each backend: the bare loop (no node running), then the node."""
    model_path = ws.model()
    frames = ws.frames()
    raw: dict = {'offered': f'{FRAME_RATE:g} FPS of {len(frames)} real photos, '
                            f'{FRAME_SIZE[0]}x{FRAME_SIZE[1]} rgb8', 'backends': {}}
    rows: list[Row] = []
    for backend in available_backends():
        log(f'classifier [{backend}]: bare loop, {cfg.bare_window_s:g} s')
        try:
            bare = measure_bare(model_path, frames, backend, cfg)
        except Exception as exc:  # e.g. tensorrt listed but --device cpu: the others still run
            log(f'classifier [{backend}]: cannot run: {exc!r}')
            rows.append(Row(SECTION, f'[{backend}] not measured', '', None,
                            note=f'{backend}: {type(exc).__name__}: {exc}'))
            continue
        log(f'classifier [{backend}]: bare p50 {bare["per_frame_ms"]["p50"]:.1f} ms, '
            f'{bare["fps"]:.1f} FPS; node, {cfg.classifier_window_s:g} s window')
        node = measure_node(ws, model_path, backend, cfg)
        log(f'classifier [{backend}]: node {node["fps"]:.1f} predictions/s of '
            f'{node["published"]} frames published')
        raw['backends'][backend] = {'bare': bare, 'node': node}
        rows += rows_for(backend, bare, node)
    return SectionResult(rows + comparison_rows(raw), raw)


def comparison_rows(raw: dict) -> list[Row]:
    """The backend comparison: bare per-frame p50 of each backend against pytorch's."""
    bare = {name: r['bare'] for name, r in raw['backends'].items()}
    if 'pytorch' not in bare:
        return []
    ref = bare['pytorch']['per_frame_ms']['p50']
    return [Row('backends', f'[{name}] bare per-frame p50', 'ms', b['per_frame_ms']['p50'],
                ref, 'pytorch bare p50', 'ratio', note=f'{name}: {b["runs"]}')
            for name, b in bare.items()]
