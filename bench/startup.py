"""Section 5: start-up of the classifier node.

Node: while the bench publishes the real 640x480 frames at 30 FPS, a classifier process is
spawned (bringup.NodeGroup, trained model present); the figure is the time from spawning to
the first Prediction received by the bench (s). Two points in between come from the node's own log
(wall-clock stamps of its console lines): when it said which task it runs (rclpy and the node
are up) and when it said which model it uses (the model is loaded).

Reference ("bare"): a fresh Python process that imports torch, loads the same model with the
project's Predictor and classifies one frame (``python -c``), timed from spawn to exit.

No target: reported for information.
"""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

from gesture_classifier.ros.client import GestureClient

from .common import (FramePublisher, PredictionRecorder, SectionResult, Settings, Workspace,
                     log, node_graph, summarize, wait_until)
from .report import Row

SECTION = 'startup'
BARE = ('import sys, numpy, torch\n'
        'from gesture_classifier.core.inference import Predictor\n'
        'p = Predictor.from_file(sys.argv[1], sys.argv[2])\n'
        'p.predict(numpy.load(sys.argv[3]), "rgb")\n')


def measure_node(ws: Workspace, runs: int, device: str) -> dict:
    """Spawn the classifier ``runs`` times, each until its first prediction arrives."""
    totals, up, loaded = [], [], []
    with GestureClient() as client:
        recorder = PredictionRecorder(client)
        with FramePublisher(client.node, ws.image_msgs()):
            for i in range(runs):
                seen = len(recorder.records)
                with node_graph(ws, ['classifier'], ws.root / 'startup', f'startup-{i}',
                                classifier={'model_path': str(ws.model()),
                                            'device': device}) as graph:
                    wait_until(lambda n=seen: len(recorder.records) > n, 180,
                               'first prediction', graph)
                    totals.append(recorder.records[seen].received_mono - graph.started)
                    up.append(graph.log_time(r"task '"))
                    loaded.append(graph.log_time('using model'))
    return {'first_prediction_s': summarize(totals),
            'node_up_s': summarize(x for x in up if x is not None),
            'model_loaded_s': summarize(x for x in loaded if x is not None)}


def measure_bare(ws: Workspace, runs: int, device: str) -> dict:
    """Spawn the bare Python process ``runs`` times (spawn to exit)."""
    frame = ws.root / 'frame.npy'
    np.save(frame, ws.frames()[0])
    times = []
    for _ in range(runs):
        t = time.monotonic()
        subprocess.run([sys.executable, '-c', BARE, str(ws.model()), device, str(frame)],
                       check=True, stdout=sys.stderr)
        times.append(time.monotonic() - t)
    return {'spawn_to_exit_s': summarize(times)}


def run(ws: Workspace, cfg: Settings) -> SectionResult:
    runs = cfg.startup_runs
    log(f'startup: bare python -c x{runs}')
    bare = measure_bare(ws, runs, cfg.device)
    log(f'startup: classifier node x{runs}')
    node = measure_node(ws, runs, cfg.device)
    first, ref = node['first_prediction_s'], bare['spawn_to_exit_s']
    up, loaded = node['node_up_s']['p50'], node['model_loaded_s']['p50']
    note = ''
    if up is not None and loaded is not None:
        note = (f'node log, median: rclpy + node up after {up:.2f} s, model loaded after '
                f'{loaded:.2f} s, first prediction received after {first["p50"]:.2f} s')
    rows = [Row(SECTION, f'spawn -> first prediction (p50 of {runs})', 's', first['p50'],
                ref['p50'], 'bare python: import, load, 1 predict', 'diff', note=note)]
    if runs > 1:
        rows.append(Row(SECTION, f'spawn -> first prediction (max of {runs})', 's',
                        first['max'], ref['max'], 'bare python, max', 'diff'))
    return SectionResult(rows, {'node': node, 'bare': bare})
