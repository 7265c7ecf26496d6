"""Section ``robot``: what issue 11's features cost, each against its alternative in the same
run.

- compressed vs raw input: the classifier node (pytorch backend) fed the same real 640x480
  frames at 30 FPS as raw rgb8 ``image_raw`` and as JPEG (quality 80, the camera's default)
  ``image_raw/compressed`` with ``image_transport: compressed``: throughput, latency p50 and
  CPU per prediction (see bench/classifier.py for how they are measured).
- gesture-event stage: ``Debouncer.update`` on the real probability vectors of the frames,
  per call, in this process, against the bare ``Predictor.predict`` per frame.
- overlay: one classifier node, raw input at 30 FPS, CPU per prediction over a window without
  an ``overlay`` subscriber and over one with a subscriber in the bench process; plus the
  drawing itself (``draw_overlay`` + the bgr8 message) per frame in this process.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from gesture_classifier.ros.client import GestureClient
from gesture_classifier.core.gestures import Debouncer
from gesture_classifier.core.imaging import array_to_compressed_fields, array_to_image_fields
from gesture_classifier.core.inference import Predictor
from gesture_classifier.ros.topics import IMAGE_SUB_QOS
from gesture_classifier.core.overlay import draw_overlay

from .classifier import measure_node
from .common import (CLASSES, BenchError, FramePublisher, PredictionRecorder, SectionResult,
                     Settings, Workspace, cpu_seconds, log, node_graph, summarize, wait_until)
from .report import Row

SECTION = 'robot'
JPEG_QUALITY = 80


def _compressed_msgs(frames) -> list[CompressedImage]:
    return [CompressedImage(**array_to_compressed_fields(cv2.cvtColor(f, cv2.COLOR_RGB2BGR),
                                                         JPEG_QUALITY)) for f in frames]


def _per_call_us(fn, items, seconds: float) -> dict:
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 50:
        item = items[len(times) % len(items)]
        t = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - t) * 1e6)
    return summarize(times)


def measure_stages(model_path, frames, cfg: Settings) -> dict:
    """In-process: predict, the gesture stage and the overlay drawing per frame."""
    predictor = Predictor.from_file(model_path, cfg.device, expected_classes=CLASSES)
    probs = [predictor.predict(f, 'rgb') for f in frames]
    predict = _per_call_us(lambda f: predictor.predict(f, 'rgb'), frames, cfg.bare_window_s)
    deb, clock = Debouncer(), iter(range(10**9))
    gesture = _per_call_us(lambda p: deb.update(p, CLASSES, next(clock) / 30), probs,
                           cfg.bare_window_s)
    pairs = list(zip(frames, probs))
    overlay = _per_call_us(lambda fp: Image(**array_to_image_fields(
        draw_overlay(fp[0], 'rgb', CLASSES, fp[1], 'thumbs_up'), 'bgr8')), pairs,
        cfg.bare_window_s)
    return {'predict_us': predict, 'gesture_us': gesture, 'overlay_us': overlay}


def measure_overlay_node(ws: Workspace, model_path, cfg: Settings) -> dict:
    """One classifier node; CPU per prediction without, then with, an overlay subscriber."""
    params = {'model_path': str(model_path), 'device': cfg.device, 'backend': 'pytorch'}
    out = {}
    with GestureClient() as client:
        recorder = PredictionRecorder(client)
        received = []
        with FramePublisher(client.node, ws.image_msgs()), \
                node_graph(ws, ['classifier'], ws.root / 'overlay', 'classifier-overlay',
                           classifier=params) as graph:
            # a loaded 2-core machine can take minutes to start a classifier
            wait_until(lambda: recorder.records, 300, 'first prediction', graph)
            graph.sleep(cfg.warmup_s)
            pid = graph.pid('classifier')
            for case in ('without subscriber', 'with subscriber'):
                sub = None
                if case == 'with subscriber':
                    sub = client.node.create_subscription(Image, 'overlay', received.append,
                                                          IMAGE_SUB_QOS)
                    wait_until(lambda: received, 30, 'first overlay image', graph)
                    graph.sleep(1.0)
                n0, cpu0, r0 = len(recorder.records), cpu_seconds(pid), len(received)
                graph.sleep(cfg.classifier_window_s)
                n1, cpu1, r1 = len(recorder.records), cpu_seconds(pid), len(received)
                if sub is not None:
                    client.node.destroy_subscription(sub)
                preds = n1 - n0
                out[case] = {'predictions': preds, 'overlays_received': r1 - r0,
                             'window_s': cfg.classifier_window_s,
                             'cpu_ms_per_prediction': (cpu1 - cpu0) / preds * 1e3
                             if preds else None}
    return out


def run(ws: Workspace, cfg: Settings) -> SectionResult:
    model_path = ws.model()
    frames = ws.frames()
    raw: dict = {}
    log('robot: in-process stages (predict, gesture events, overlay drawing)')
    raw['stages'] = stages = measure_stages(model_path, frames, cfg)
    log(f'robot: classifier node, raw input, {cfg.classifier_window_s:g} s')
    raw['raw_input'] = plain = measure_node(ws, model_path, 'pytorch', cfg, label='-raw')
    log(f'robot: classifier node, JPEG input on image_raw/compressed, '
        f'{cfg.classifier_window_s:g} s')
    jpeg = _compressed_msgs(frames)
    raw['compressed_input'] = comp = measure_node(
        ws, model_path, 'pytorch', cfg, msgs=jpeg, topic='image_raw/compressed',
        label='-compressed', image_transport='compressed')
    raw['jpeg_bytes_mean'] = float(np.mean([len(m.data) for m in jpeg]))
    log('robot: overlay cost without and with a subscriber')
    try:
        raw['overlay_node'] = ov = measure_overlay_node(ws, model_path, cfg)
    except BenchError as exc:  # keep the figures measured so far
        log(f'robot: overlay node not measured: {exc}')
        ov = {case: {'cpu_ms_per_prediction': None} for case in
              ('with subscriber', 'without subscriber')}
        raw['overlay_node_error'] = str(exc)
    pred_p50 = stages['predict_us']['p50']
    rows = [
        Row(SECTION, 'compressed throughput', '/s', comp['fps'], plain['fps'], 'raw input',
            'ratio', note=f'JPEG q{JPEG_QUALITY}, {raw["jpeg_bytes_mean"] / 1e3:.0f} kB/frame '
                          f'vs {640 * 480 * 3 / 1e3:.0f} kB raw'),
        Row(SECTION, 'compressed latency p50', 'ms', comp['latency_ms']['p50'],
            plain['latency_ms']['p50'], 'raw input', 'diff'),
        Row(SECTION, 'compressed CPU per prediction', 'ms',
            comp['node_cpu_ms_per_prediction'], plain['node_cpu_ms_per_prediction'],
            'raw input', 'ratio'),
        Row(SECTION, 'gesture stage per frame', 'us', stages['gesture_us']['p50'], pred_p50,
            'bare predict p50 (us)', 'ratio'),
        Row(SECTION, 'overlay drawing per frame', 'us', stages['overlay_us']['p50'], pred_p50,
            'bare predict p50 (us)', 'ratio', note='draw_overlay + bgr8 message, 640x480'),
        Row(SECTION, 'overlay node CPU/prediction', 'ms',
            ov['with subscriber']['cpu_ms_per_prediction'],
            ov['without subscriber']['cpu_ms_per_prediction'], 'no overlay subscriber',
            'diff'),
    ]
    return SectionResult(rows, raw)
