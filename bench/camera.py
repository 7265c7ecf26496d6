"""Section 2: the camera node's cost per published frame against the bare capture +
conversion, at 640x480 and 1280x720, 30 FPS.

There is no camera here: the source is an mp4 made of real webcam photos at exactly the
requested size (``Workspace.video``), read through the same ``gesture_classifier.core.sources``
code a V4L2 device uses.

Node: one camera process (bringup.NodeGroup). First its idle cost: the source is a path that
does not exist, with ``reopen_delay`` 60 s, so the capture thread sleeps and only the rclpy
executor and the process itself run. Then, per size, ``source``/``width``/``height`` are set
through the parameter service and, after 1 s, for the window:

- node CPU per frame: CPU time of the node process (utime + stime of /proc/<pid>/stat, all
  threads, nothing subtracted: idle executor, capture, conversion, publishing) per frame
  published (ms);
- rate published (the rate the node holds, 1/s): from the ``header.stamp`` of the frames a
  reliable subscriber in the bench process received (see :func:`published_rate`: the
  transport may lose frames the node did publish, so received frames alone would
  under-count); CPU time is divided by this;
- rates to subscribers: frames/s a reliable subscriber and one with the consumers' QoS
  (``IMAGE_SUB_QOS``: best effort, depth 1, as the classifier and the collector) received,
  i.e. what those consumers can get.

Reference ("bare"): in a fresh Python process (see :func:`measure_bare` for why), with no node
running, ``open_source(...).read(out)`` into the previous frame's array, as the node reads, plus
the node's own conversion to a ``sensor_msgs/Image`` (``nodes.camera.frame_to_image``), back to
back: process CPU time (user + system, all threads incl. FFmpeg's) / frames (ms). Minor page
faults per frame are recorded on both sides. The same loop with a new array per frame
(``read()``, the node's capture before issue 22 item 6) is measured beside it ("bare, fresh
arrays"): the saving of the reused buffer without the node's noise.

Targets: >= 29.5 frames/s at 640x480; node CPU per frame <= bare + 2 ms.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import numpy as np
from rclpy.clock import Clock, ClockType

from gesture_classifier.ros.client import GestureClient
from gesture_classifier.nodes.camera import fit_frame, frame_to_image
from gesture_classifier.core.sources import open_source

from .common import (FRAME_RATE, RELIABLE_QOS, REPO, BenchError, ImageRecorder, SectionResult,
                     Settings, Workspace, cpu_seconds, log, node_graph, node_parameter,
                     proc_stat, summarize, wait_until)
from .report import Row, Target

SECTION = 'camera'
SIZES = ((640, 480), (1280, 720))
#: The rate the camera must hold at 640x480 (1/s).
MIN_RATE = 29.5
#: The node's own work allowed per frame beyond the bare capture + conversion (ms).
MAX_OVERHEAD_MS = 2.0
FRAME_ID = 'camera_optical_frame'


def bare_loop(video, width: int, height: int, seconds: float, reuse: bool = True) -> dict:
    """Capture + conversion of ``video`` in this process for ``seconds`` s (after 10 warm-up
    frames); the stamp comes from a ROS clock as in the node. With ``reuse``, each frame is read
    into the previous one's array and resized into the previous resized array, as the node
    does; without it, every frame is a new array.

    Returns:
        dict with ``frames``, ``cpu_ms_per_frame`` (process CPU time, all threads incl.
        FFmpeg's, per frame), ``user_system_ms_per_frame``, ``minor_faults_per_frame`` and
        ``wall_ms_per_frame`` (summary of per-frame wall times).
    """
    source = open_source(str(video), width, height, FRAME_RATE, loop=True)
    source.open()
    clock = Clock(clock_type=ClockType.ROS_TIME)
    frame = resized = None

    def one_frame():
        nonlocal frame, resized
        frame = source.read(frame if reuse else None)
        if reuse:
            fitted = fit_frame(frame, width, height, resized)
            if fitted is not frame:
                resized = fitted
        else:
            fitted = fit_frame(frame, width, height)
        frame_to_image(fitted, clock.now().to_msg(), 0, 0, FRAME_ID)

    try:
        for _ in range(10):
            one_frame()
        times = []
        usage0, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        while time.perf_counter() - start < seconds:
            t = time.perf_counter()
            one_frame()
            times.append((time.perf_counter() - t) * 1e3)
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        source.close()
    n = len(times)
    user = (usage1.ru_utime - usage0.ru_utime) / n * 1e3
    system = (usage1.ru_stime - usage0.ru_stime) / n * 1e3
    return {'frames': n, 'cpu_ms_per_frame': user + system,
            'user_system_ms_per_frame': [user, system],
            'minor_faults_per_frame': (usage1.ru_minflt - usage0.ru_minflt) / n,
            'wall_ms_per_frame': summarize(times)}


def measure_bare(video, width: int, height: int, seconds: float, reuse: bool = True) -> dict:
    """:func:`bare_loop` in a fresh Python process, as the node's is: how much a frame costs
    depends on the process's allocation history (measured here: in a fresh process every
    1280x720 frame took ~2000 minor page faults and ~4 ms of system time for its large
    buffers; in the bench process after training, 1 fault and 0.1 ms), so a loop in the long-
    lived bench process would not be comparable."""
    out = subprocess.run([sys.executable, '-m', 'bench.camera', str(video), str(width),
                          str(height), str(seconds), 'reuse' if reuse else 'fresh'],
                         cwd=REPO, capture_output=True,
                         text=True)
    if out.returncode:
        raise BenchError(f'bare camera loop failed: {out.stderr[-2000:]}')
    return json.loads(out.stdout.splitlines()[-1])


def _window(frames: list, seconds: float) -> dict:
    """Rate and timing of the frames one subscriber received in a window."""
    stamps = np.array([r[1] for r in frames], dtype=np.int64)
    return {'frames_received': len(frames), 'rate': len(frames) / seconds,
            'frame_interval_ms': summarize(np.diff(stamps) / 1e6),
            'transport_ms': summarize((r[0] - r[1]) / 1e6 for r in frames)}


def published_rate(stamps_ns: list[int], rate: float) -> tuple[float, bool]:
    """Frames per second the camera node published, from the stamps a subscriber received.

    The node stamps frame k at about start + k / rate (CameraNode._pace keeps a fixed
    schedule while its loop is faster than a frame period), so a gap between two received
    stamps spans round(gap * rate) published frames even when the transport lost some in
    between. Returns (published frames / stamp span, schedule_held); when a gap is not close to
    a whole number of periods (the node fell behind and re-synchronised), schedule_held is
    False and the rate is that of the received frames only."""
    if len(stamps_ns) < 2:
        return float('nan'), False
    gaps = np.diff(np.asarray(stamps_ns, dtype=np.int64)) / 1e9 * rate
    slots = np.rint(gaps)
    span = (stamps_ns[-1] - stamps_ns[0]) / 1e9
    held = bool(slots.min() >= 1 and np.all(np.abs(gaps - slots) < 0.4))
    return (slots.sum() if held else len(gaps)) / span, held


def measure_node(ws: Workspace, videos: dict, cfg: Settings) -> dict:
    """The camera node's idle cost, then its cost and rate per size (module docstring).

    Two subscribers in the bench process receive the frames: a reliable one (its stamps give
    the rate published, see :func:`published_rate`) and one with the consumers' QoS (what the
    classifier and the collector can get)."""
    out: dict = {}
    missing = ws.root / 'no-camera-here.mp4'
    with GestureClient() as client:
        reliable = ImageRecorder(client.node, RELIABLE_QOS)
        consumer = ImageRecorder(client.node)
        with node_graph(ws, ['camera'], ws.root / 'camera', 'camera',
                        camera={'source': str(missing), 'reopen_delay': 60.0}) as graph:
            node_parameter(client.node, 'camera', 'source', timeout=60)  # the node is up
            graph.sleep(1.0)
            pid = graph.pid('camera')
            t, cpu = time.monotonic(), cpu_seconds(pid)
            graph.sleep(cfg.camera_idle_s)
            out['idle_cpu_ms_per_s'] = (cpu_seconds(pid) - cpu) / (time.monotonic() - t) * 1e3
            for (width, height), video in videos.items():
                client.set_camera_parameters(timeout=30, source=str(video), width=width,
                                             height=height, rate=FRAME_RATE, loop=True)
                wait_until(lambda w=width: reliable.records and reliable.records[-1][2] == w, 30,
                           f'first {width}x{height} frame', graph)
                graph.sleep(1.0)
                n0, m0 = len(reliable.records), len(consumer.records)
                stat0, own0, t0 = proc_stat(pid), time.process_time(), time.monotonic()
                graph.sleep(cfg.camera_window_s)
                n1, m1 = len(reliable.records), len(consumer.records)
                stat1, own1, t1 = proc_stat(pid), time.process_time(), time.monotonic()
                received = reliable.records[n0:n1]
                rate, held = published_rate([r[1] for r in received], FRAME_RATE)
                user, system, faults = ((stat1[k] - stat0[k]) / (t1 - t0)
                                        for k in ('user', 'system', 'minflt'))
                cores = user + system
                out[f'{width}x{height}'] = {
                    'message_bytes': width * height * 3,
                    'published_rate': rate,
                    'schedule_held': held,
                    'cpu_ms_per_frame': cores / rate * 1e3,
                    'cpu_cores': cores,
                    'user_system_ms_per_frame': [user / rate * 1e3, system / rate * 1e3],
                    'minor_faults_per_frame': faults / rate,
                    'bench_process_cpu_cores': (own1 - own0) / (t1 - t0),
                    'reliable_subscriber': _window(received, t1 - t0),
                    'best_effort_subscriber': _window(consumer.records[m0:m1], t1 - t0),
                }
    return out


def run(ws: Workspace, cfg: Settings) -> SectionResult:
    """Bare loops first (no node running), then one camera node for every size."""
    videos = {size: ws.video(*size) for size in SIZES}
    bare, fresh = {}, {}
    for (width, height), video in videos.items():
        log(f'camera: bare capture + conversion {width}x{height}, reused and fresh arrays, '
            f'{cfg.camera_window_s / 2:g} s each')
        bare[f'{width}x{height}'] = measure_bare(video, width, height, cfg.camera_window_s / 2)
        fresh[f'{width}x{height}'] = measure_bare(video, width, height, cfg.camera_window_s / 2,
                                                  reuse=False)
    log(f'camera: node, idle {cfg.camera_idle_s:g} s then {cfg.camera_window_s:g} s per size')
    node = measure_node(ws, videos, cfg)
    idle = node['idle_cpu_ms_per_s']
    rows = []
    for width, height in SIZES:
        key = f'{width}x{height}'
        n, b = node[key], bare[key]
        rate = n['published_rate']
        rows += [
            Row(SECTION, f'{key} rate published', '/s', rate, FRAME_RATE, 'rate offered',
                'ratio', Target('>=', 'abs', MIN_RATE) if (width, height) == SIZES[0] else None,
                note='frames/s the node published, from the stamps received by a reliable '
                     'subscriber (a gap of k frame periods = k frames published: the node keeps '
                     'a fixed schedule)' if n['schedule_held'] else
                     'frames/s received by a reliable subscriber: the stamps show that the '
                     'node did not keep its schedule'),
            Row(SECTION, f'{key} rate to reliable sub', '/s',
                n['reliable_subscriber']['rate'], rate, 'rate published', 'ratio'),
            Row(SECTION, f'{key} rate to best-effort sub', '/s',
                n['best_effort_subscriber']['rate'], rate, 'rate published', 'ratio',
                note=f'frames/s received with IMAGE_SUB_QOS (best effort, depth 1: the QoS of '
                     f'the classifier and the collector) in another process; message '
                     f'{n["message_bytes"] / 1024:.0f} KiB'),
            Row(SECTION, f'{key} CPU per frame', 'ms', n['cpu_ms_per_frame'],
                b['cpu_ms_per_frame'], 'bare capture + conversion', 'diff',
                Target('<=', 'diff', MAX_OVERHEAD_MS),
                note='CPU time of the node process / frames published; the bare loop\'s '
                     'process CPU time / frames'),
            Row(SECTION, f'{key} minor page faults per frame', 'faults',
                n['minor_faults_per_frame'], b['minor_faults_per_frame'], 'bare', 'diff'),
            Row(SECTION, f'{key} bare CPU per frame, fresh arrays', 'ms',
                fresh[key]['cpu_ms_per_frame'], b['cpu_ms_per_frame'], 'bare (reused arrays)',
                'diff', note='the bare loop with a new array per read and resize (the node '
                             'before issue 22 item 6) against the same loop reading and '
                             'resizing into the previous arrays'),
            Row(SECTION, f'{key} bare page faults per frame, fresh arrays', 'faults',
                fresh[key]['minor_faults_per_frame'], b['minor_faults_per_frame'],
                'bare (reused arrays)', 'diff'),
        ]
    rows.append(Row(SECTION, 'idle CPU (no frames)', 'ms/s', idle,
                    note=f'the camera process with nothing to capture (rclpy executor idle) used '
                         f'{idle:.1f} ms CPU per second (resolution '
                         f'{10 / cfg.camera_idle_s:.1f} ms/s: 10 ms ticks), i.e. '
                         f'{idle / FRAME_RATE:.2f} ms per frame at {FRAME_RATE:g} FPS; included '
                         'in the CPU per frame above'))
    return SectionResult(rows, {'node': node, 'bare': bare, 'bare_fresh': fresh})


if __name__ == '__main__':  # the bare loop's own process (see measure_bare)
    print(json.dumps(bare_loop(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]),
                               float(sys.argv[4]), reuse=sys.argv[5:] != ['fresh'])))
