"""Section 3: latency of the ``collect`` service while the system runs.

Graph: camera (the 640x480 real-photo video at 30 FPS), collector and classifier (trained
model) as real processes; the classifier classifies the camera's frames throughout. The bench
calls ``collect`` through ``GestureClient.collect`` sequentially, one call every
1.5 / max_collect_rate s (the collector's default limit of 20/s is kept and respected), labels
alternating. Latency = wall time of the call in the bench process (perf_counter, ms): request,
the collector's JPEG encoding and atomic write of the newest frame, response.

Reference ("bare"): ``gesture_classifier.dataset.save_sample`` (the collector's encoding and
atomic write) of the same 640x480 frames in this process, with no node running.

Target: p99 <= 100 ms.
"""
from __future__ import annotations

import time

import cv2

from gesture_classifier.client import GestureClient
from gesture_classifier.dataset import save_sample
from gesture_classifier.tasks import Task

from .common import (CLASSES, TASK, PredictionRecorder, SectionResult, Settings,
                     Workspace, log, node_graph, summarize, wait_until)
from .report import Row, Target

SECTION = 'collect'
#: The collector's default max_collect_rate (config/gesture_classifier.yaml), requests/s.
MAX_COLLECT_RATE = 20.0
#: Target for the p99 latency (ms).
MAX_P99_MS = 100.0


def measure_bare(ws: Workspace, calls: int) -> dict:
    """``save_sample`` of ``calls`` of the 640x480 frames (as the collector receives them from
    the camera: bgr8) into a scratch dataset; per-call wall times (ms)."""
    task = Task.create(TASK, CLASSES, data_dir=ws.root / 'collect-bare')
    # Contiguous BGR, as image_to_array gives the collector for a bgr8 message (a reversed view
    # would make save_sample copy each frame inside the timing).
    frames = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in ws.frames()]
    times = []
    for i in range(calls):
        t = time.perf_counter()
        save_sample(task, CLASSES[i % 2], frames[i % len(frames)], 'bgr')
        times.append((time.perf_counter() - t) * 1e3)
    return {'latency_ms': summarize(times)}


def measure_node(ws: Workspace, calls: int) -> dict:
    """Time ``calls`` collect calls against the running graph (module docstring)."""
    video = ws.video(640, 480)
    params = {'camera': {'source': str(video), 'width': 640, 'height': 480, 'rate': 30.0,
                         'loop': True},
              'collector': {'max_collect_rate': MAX_COLLECT_RATE},
              'classifier': {'model_path': str(ws.model()), 'device': ws.settings.device}}
    with GestureClient() as client:
        predictions = PredictionRecorder(client)
        with node_graph(ws, ['camera', 'collector', 'classifier'], ws.root / 'collect',
                        'collect', **params) as graph:
            # Not timed: start-up, until the collector has a frame and saves it.
            client.collect(CLASSES[0], timeout=60.0, wait_for_frame=60.0)
            wait_until(lambda: client.collect(CLASSES[0], timeout=10.0).success, 60,
                       'a successful collect', graph, poll=0.2)
            # Not required: the point is that the classifier runs, not how often it predicts.
            wait_until(lambda: predictions.records, 30, 'first prediction', graph,
                       required=False)
            graph.sleep(1.0)
            period = 1.5 / MAX_COLLECT_RATE
            times, failures = [], []
            n0, start = len(predictions.records), time.monotonic()
            for i in range(calls):
                due = start + i * period
                time.sleep(max(0.0, due - time.monotonic()))
                t = time.perf_counter()
                res = client.collect(CLASSES[i % 2], timeout=10.0)
                times.append((time.perf_counter() - t) * 1e3)
                if not res.success:
                    failures.append(res.message)
            window = time.monotonic() - start
            classified = len(predictions.records) - n0
            graph.check()
    return {'latency_ms': summarize(times), 'calls': calls, 'failed': len(failures),
            'failures': sorted(set(failures))[:5], 'interval_s': period,
            'classifier_fps_during': classified / window}


def run(ws: Workspace, cfg: Settings) -> SectionResult:
    calls = cfg.collect_calls
    log(f'collect: bare save_sample x{calls}')
    bare = measure_bare(ws, calls)
    log(f'collect: {calls} calls to the running camera + collector + classifier')
    node = measure_node(ws, calls)
    lat, ref = node['latency_ms'], bare['latency_ms']
    rows = [
        Row(SECTION, 'latency p50', 'ms', lat['p50'], ref['p50'], 'bare save_sample p50',
            'diff'),
        Row(SECTION, 'latency p99', 'ms', lat['p99'], ref['p99'], 'bare save_sample p99',
            'diff', Target('<=', 'abs', MAX_P99_MS)),
        Row(SECTION, 'calls failed', 'calls', node['failed'], calls, 'calls made', 'ratio',
            note='; '.join(node['failures']) if node['failures'] else ''),
        Row(SECTION, 'classifier throughput meanwhile', '/s', node['classifier_fps_during'],
            note='predictions/s the classifier published while collect was being called'),
    ]
    return SectionResult(rows, {'node': node, 'bare': bare})
