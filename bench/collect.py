"""Section 3: latency of the ``collect`` service while the system runs.

Graph: camera (the 640x480 real-photo video at 30 FPS), collector and classifier (trained
model) as real processes; the classifier classifies the camera's frames throughout. The bench
calls ``collect`` through ``GestureClient.collect`` sequentially, one call every
1.5 / max_collect_rate s (the collector's default limit of 20/s is kept and respected), labels
alternating. Latency = wall time of the call in the bench process (perf_counter, ms): request,
the collector's JPEG encoding and atomic write of the newest frame, response.

Reference ("bare"): ``gesture_classifier.core.dataset.save_sample`` (the collector's encoding and
atomic write) of the same 640x480 frames in this process, with no node running.

Target: p99 <= 100 ms.

Then the collector's own cost of receiving the camera while it is not collecting, and one burst,
under the executor it used before (bench/legacy_collector.py: rclpy's 4-thread
MultiThreadedExecutor) and under the product's one executor thread, in turn
(:func:`measure_idle`).

Then the same against datasets of 100, 1,000 and 10,000 samples (``--collect-sizes``): per size
a camera (the video at 30 / sizes FPS) and a collector, no classifier (the figure is the
collector's), each pair in its own namespace and all running at once, the calls made to each
in turn so that every size meets the same load; the dataset synthesised before the collector
starts by hard-linking real photos, encoded once as the collector stores them, under new uuid
names (half per class). Per size: collect p50 / p99, and the dataset-state publication time
(from the call to the arrival of the ``dataset`` message with the new count, in the bench's
client), the same number of calls as above. Bare, in this
process: the time to build the state from the collector's index and, for comparison, by
listing the folder as the collector did before (samples.summarize). Target: collect p99 and
state publication p99 at the largest size within 1.2x of the smallest.
"""
from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path

import cv2

from gesture_classifier.core.dataset import encode_sample, save_sample
from gesture_classifier.core.samples import DatasetIndex, summarize
from gesture_classifier.core.tasks import Task
from gesture_classifier.ros.client import GestureClient

from .common import (CLASSES, FRAME_RATE, TASK, FramePublisher, PredictionRecorder,
                     SectionResult, Settings, Workspace, cpu_seconds, log, node_graph,
                     node_module, wait_until)
from .common import summarize as summarize_times
from .report import Row, Target

SECTION = 'collect'
#: The collector's default max_collect_rate (config/gesture_classifier.yaml), requests/s.
MAX_COLLECT_RATE = 20.0
#: Target for the p99 latency (ms).
MAX_P99_MS = 100.0
#: Dataset sizes of the scaling measurement (--collect-sizes) and its target: p99 at the
#: largest within this factor of p99 at the smallest.
SIZES = (100, 1000, 10000)
MAX_GROWTH = 1.2


def measure_bare(ws: Workspace, calls: int) -> dict:
    """``save_sample`` of ``calls`` of the 640x480 frames (as the collector receives them from
    the camera: bgr8) into a scratch dataset; per-call wall times (ms)."""
    task = Task.create(TASK, CLASSES, data_dir=ws.root / 'collect-bare')
    # Contiguous BGR, as image_to_array gives the collector for a bgr8 message (a reversed view
    # would make save_sample copy each frame inside the timing).
    frames = ws.frames_bgr()
    times = []
    for i in range(calls):
        t = time.perf_counter()
        save_sample(task, CLASSES[i % 2], frames[i % len(frames)], 'bgr')
        times.append((time.perf_counter() - t) * 1e3)
    return {'latency_ms': summarize_times(times)}


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
    return {'latency_ms': summarize_times(times), 'calls': calls, 'failed': len(failures),
            'failures': sorted(set(failures))[:5], 'interval_s': period,
            'classifier_fps_during': classified / window}


def measure_idle(ws: Workspace, window_s: float, burst: int = 10) -> dict:
    """The collector's own cost of receiving the camera, and one burst, under each executor.

    Per node (bench.legacy_collector = rclpy's 4-thread MultiThreadedExecutor, the product =
    one executor thread), in turn: the collector alone, fed 640x480 bgr8 frames at 30 FPS from
    this process (FramePublisher); its process CPU over ``window_s`` s of not collecting (ms
    per frame published, and % of one core), then the wall time of one ``collect`` burst of
    ``burst`` frames (at least 1 / max_collect_rate s apart: the floor is
    (burst - 1) / max_collect_rate s)."""
    msgs = ws.image_msgs(encoding='bgr8')
    result = {}
    for label, module in (('before', 'bench.legacy_collector'), ('after', None)):
        data_dir = ws.root / f'collect-idle-{label}'
        with GestureClient() as client, FramePublisher(client.node, msgs) as publisher, \
                node_module(module, 'collector'), \
                node_graph(ws, ['collector'], data_dir, f'collect-idle-{label}',
                           collector={'max_collect_rate': MAX_COLLECT_RATE}) as graph:
            client.collect(CLASSES[0], timeout=60.0, wait_for_frame=60.0)  # up and receiving
            graph.sleep(1.0)
            pid, clock = graph.pid('collector'), client.node.get_clock()
            t0, cpu0 = clock.now().nanoseconds, cpu_seconds(pid)
            graph.sleep(window_s)
            t1, cpu1 = clock.now().nanoseconds, cpu_seconds(pid)
            offered = len(publisher.between(t0, t1))
            start = time.perf_counter()
            answer = client.collect(CLASSES[1], count=burst, timeout=60.0)
            burst_s = time.perf_counter() - start
            graph.check()
        window = (t1 - t0) / 1e9
        result[label] = {'window_s': window, 'frames_offered': offered,
                         'cpu_ms_per_frame': (cpu1 - cpu0) / offered * 1e3 if offered else None,
                         'core_share': (cpu1 - cpu0) / window,
                         'burst_s': burst_s, 'burst_saved': answer.saved,
                         'burst_message': answer.message}
    return {'burst': burst, 'burst_floor_s': (burst - 1) / MAX_COLLECT_RATE, **result}


def synthesize(ws: Workspace, size: int) -> Path:
    """A data_dir whose thumbs dataset holds ``size`` samples: 30 real frames encoded once as
    the collector stores them, hard-linked under new uuid names, half per class."""
    data_dir = ws.root / f'collect-{size}'
    dataset = data_dir / TASK / 'dataset'
    sources = []
    for i, frame in enumerate(ws.frames()):
        src = ws.root / f'collect-source-{i}.jpg'
        if not src.exists():
            src.write_bytes(encode_sample(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), 'bgr'))
        sources.append(src)
    for label in CLASSES:
        (dataset / label).mkdir(parents=True)
    for i in range(size):
        os.link(sources[i % len(sources)],
                dataset / CLASSES[i % 2] / f'{uuid.uuid1()}.jpg')
    return data_dir


def measure_state_bare(data_dir: Path, repeats: int = 20) -> dict:
    """Building the dataset state: from the collector's index, and by listing the folder."""
    task = Task.create(TASK, CLASSES, data_dir=data_dir)
    index = DatasetIndex(task)
    out = {}
    for name, build in (('index_ms', index.summary), ('listing_ms', lambda: summarize(task))):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            build()
            times.append((time.perf_counter() - t) * 1e3)
        out[name] = summarize_times(times)
    return out


def measure_sizes(ws: Workspace, sizes, calls: int) -> list[dict]:
    """collect latency and state publication time against datasets of each of ``sizes``
    samples: one camera + collector graph per size, each in its own namespace, all running at
    once, the calls made in turn to each, so that every size meets the same machine load (a
    shared, noisy machine makes figures measured one after the other incomparable)."""
    data_dirs = {size: synthesize(ws, size) for size in sizes}
    bare = {size: measure_state_bare(data_dir) for size, data_dir in data_dirs.items()}
    video = ws.video(640, 480)
    params = {'camera': {'source': str(video), 'width': 640, 'height': 480,
                         'rate': FRAME_RATE / len(sizes), 'loop': True},
              'collector': {'max_collect_rate': MAX_COLLECT_RATE}}
    with contextlib.ExitStack() as stack:
        graphs, clients = {}, {}
        for size in sizes:
            ns = f'collect_{size}'
            clients[size] = stack.enter_context(GestureClient(namespace=ns))
            graphs[size] = stack.enter_context(node_graph(
                ws, ['camera', 'collector'], data_dirs[size], f'collect-{size}', namespace=ns,
                **params))
        for size in sizes:  # not timed: start-up (indexing the dataset once), a first frame
            client = clients[size]
            client.collect(CLASSES[0], timeout=120.0, wait_for_frame=120.0)
            wait_until(lambda c=client: c.collect(CLASSES[0], timeout=10.0).success, 60,
                       'a successful collect', graphs[size], poll=0.2)
        results = {size: {'size': size, 'times': [], 'published': [], 'failures': []}
                   for size in sizes}
        period = 1.5 / MAX_COLLECT_RATE  # between two calls, to any collector
        start = time.monotonic()
        for i in range(calls):
            label = CLASSES[i % 2]
            for k, size in enumerate(sizes):
                time.sleep(max(0.0, start + (i * len(sizes) + k) * period - time.monotonic()))
                client, r = clients[size], results[size]
                before = client.dataset_state(timeout=10.0)
                count = dict(zip(before.class_names, before.counts))[label]
                t = time.perf_counter()
                res = client.collect(label, timeout=10.0)
                r['times'].append((time.perf_counter() - t) * 1e3)
                if not res.success:
                    r['failures'].append(res.message)
                    continue
                client.dataset_state(lambda s, label=label, count=count:
                                     dict(zip(s.class_names, s.counts))[label] > count,
                                     timeout=10.0)
                r['published'].append((time.perf_counter() - t) * 1e3)
        for graph in graphs.values():
            graph.check()
    return [{'size': size, 'latency_ms': summarize_times(r['times']),
             'state_published_ms': summarize_times(r['published']),
             'failed': len(r['failures']), 'failures': sorted(set(r['failures']))[:5],
             'bare': bare[size]} for size, r in results.items()]


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
    log(f'collect: the collector idle at 30 FPS and one burst, before/after, '
        f'{2 * cfg.camera_window_s:g} s')
    idle = measure_idle(ws, cfg.camera_window_s)
    b, a = idle['before'], idle['after']
    rows += [
        Row(SECTION, 'collector CPU per camera frame, not collecting', 'ms',
            a['cpu_ms_per_frame'], b['cpu_ms_per_frame'], 'before node (4-thread executor)',
            'ratio', note=f'{a["core_share"]:.1%} of a core after, {b["core_share"]:.1%} '
            'before (30 FPS of 640x480 bgr8)'),
        Row(SECTION, f'burst of {idle["burst"]}: wall time', 's', a['burst_s'], b['burst_s'],
            'before node (4-thread executor)', 'ratio',
            note=f'floor {idle["burst_floor_s"]:g} s (max_collect_rate); saved '
            f'{a["burst_saved"]} after, {b["burst_saved"]} before'),
    ]
    scaling = []
    if cfg.collect_sizes:
        log(f'collect: {calls} calls to each of collectors with datasets of '
            f'{", ".join(map(str, cfg.collect_sizes))} samples, in turn')
        scaling = measure_sizes(ws, cfg.collect_sizes, calls)
    if scaling:
        first = scaling[0]
        for m in scaling:
            n = f'{m["size"]} samples'
            growth = Target('<=', 'ratio', MAX_GROWTH) if m is scaling[-1] and \
                m is not first else None
            rows += [
                Row(SECTION, f'{n}: latency p50', 'ms', m['latency_ms']['p50']),
                Row(SECTION, f'{n}: latency p99', 'ms', m['latency_ms']['p99'],
                    first['latency_ms']['p99'], f'p99 at {first["size"]}', 'ratio', growth),
                Row(SECTION, f'{n}: state published p50', 'ms',
                    m['state_published_ms']['p50']),
                Row(SECTION, f'{n}: state published p99', 'ms',
                    m['state_published_ms']['p99'], first['state_published_ms']['p99'],
                    f'p99 at {first["size"]}', 'ratio', growth),
                Row(SECTION, f'{n}: state from the index p50 (bare)', 'ms',
                    m['bare']['index_ms']['p50'], m['bare']['listing_ms']['p50'],
                    'by listing the folder', 'ratio',
                    note='what the collector did before per saved frame' if m is first
                    else ''),
            ]
            if m['failed']:
                rows.append(Row(SECTION, f'{n}: calls failed', 'calls', m['failed'], calls,
                                'calls made', 'ratio', note='; '.join(m['failures'])))
    return SectionResult(rows, {'node': node, 'bare': bare, 'idle': idle, 'scaling': scaling})
