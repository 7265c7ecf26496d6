"""Section 6: the web page in a real browser, beside the running system.

Graph: camera (the 640x480 real-photo video at 30 FPS), classifier (trained model) and web
(port 0: the port it logs) as real processes. Two windows of the same length in one run:

1. page closed: the classifier's throughput (predictions the bench receives per second) and
   the web node's CPU (it still receives every frame, but encodes none);
2. page open: Debian's chromium (Playwright, headless, 1280x900) shows the page, i.e. the MJPEG
   stream and the WebSocket state. Measured: frames delivered to the browser per second (the
   web node's count of frames written to that one viewer's socket), the web node's CPU per
   delivered frame (utime + stime of its process over the window / frames), the classifier's
   throughput, and how long after its publication each prediction is shown on the page: the
   page records, in a requestAnimationFrame callback after rendering a new prediction, its
   ``header.stamp`` and the wall clock (``performance.timeOrigin + performance.now()``); the
   bench records the wall clock at which its own subscriber received the same prediction
   (= publication + DDS delivery on this host, well under a millisecond of the publication).

Reference: the page-closed window (throughput ratio); the camera's 30 FPS (frames delivered).

Targets (issue 10): frames delivered >= 25/s; classifier throughput with the page open >=
0.9x without it; prediction shown p50 <= 100 ms after publication.
"""
from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from pathlib import Path

from gesture_classifier.client import GestureClient

from .common import (PredictionRecorder, SectionResult, Settings, Workspace, cpu_seconds, log,
                     node_graph, summarize, wait_until)
from .report import Row, Target

SECTION = 'web'
CHROMIUM = '/usr/bin/chromium'
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync']
MIN_FRAMES_PER_S = 25.0
MIN_THROUGHPUT_RATIO = 0.9
MAX_SHOWN_P50_MS = 100.0
_URL = re.compile(r'\[web\]: serving the page on http://127\.0\.0\.1:(\d+)/')


def _state(port: int) -> dict:
    with urllib.request.urlopen(f'http://127.0.0.1:{port}/api/state', timeout=10) as r:
        return json.load(r)


def browser_pids() -> list[int]:
    """The chromium processes below this process (the browser Playwright started)."""
    parents = {}
    for d in Path('/proc').iterdir():
        if d.name.isdigit():
            try:
                stat = (d / 'stat').read_text()
                parents[int(d.name)] = int(stat[stat.rindex(')') + 2:].split()[1])
            except (OSError, ValueError):
                continue
    below, todo = set(), [os.getpid()]
    while todo:
        pid = todo.pop()
        kids = [p for p, pp in parents.items() if pp == pid and p not in below]
        below.update(kids)
        todo.extend(kids)
    out = []
    for pid in below:
        try:
            if b'chrom' in Path(f'/proc/{pid}/cmdline').read_bytes():
                out.append(pid)
        except OSError:
            continue
    return out


def _cpu(pids) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except (OSError, ValueError):  # exited meanwhile
            pass
    return total


def _window(graph, preds: PredictionRecorder, port: int, seconds: float) -> dict:
    """Counters over ``seconds``: predictions received, web and browser CPU, frames sent."""
    pid, browser = graph.pid('web'), browser_pids()
    s0, c0, b0 = _state(port), cpu_seconds(pid), _cpu(browser)
    n0, t0 = len(preds.records), time.monotonic()
    graph.sleep(seconds)
    s1, c1, b1 = _state(port), cpu_seconds(pid), _cpu(browser)
    n1, t1 = len(preds.records), time.monotonic()
    sent = s1['video']['frames_sent'] - s0['video']['frames_sent']
    return {'seconds': t1 - t0, 'predictions': n1 - n0, 'classifier_fps': (n1 - n0) / (t1 - t0),
            'web_cpu_s': c1 - c0, 'browser_cpu_s': b1 - b0, 'frames_sent': sent,
            'frames_per_s': sent / (t1 - t0),
            'encode_cpu_ms': s1['video']['encode_cpu_ms'] - s0['video']['encode_cpu_ms'],
            'viewers': s1['video']['viewers'], 'watched': s1['camera']['watched']}


def _shown_latencies(shown: list[dict], preds: PredictionRecorder, since_ns: int) -> list:
    """ms from the bench's receipt of each prediction to the page showing it (matched by
    header.stamp; the page has it as float seconds, so within 1 us)."""
    received = {r.stamp: r.received for r in list(preds.records) if r.stamp >= since_ns}
    by_us = {stamp // 1000: wall for stamp, wall in received.items()}
    out = []
    for entry in shown:
        us = round(entry['stamp'] * 1e6)
        wall_ns = by_us.get(us) or by_us.get(us - 1) or by_us.get(us + 1)
        if wall_ns is not None:
            out.append(entry['shown'] - wall_ns / 1e6)
    return out


def measure(ws: Workspace, cfg: Settings, window: float) -> dict:
    from playwright.sync_api import sync_playwright
    video = ws.video(640, 480)
    params = {'camera': {'source': str(video), 'width': 640, 'height': 480, 'rate': 30.0,
                         'loop': True},
              'classifier': {'model_path': str(ws.model()), 'device': cfg.device},
              'web': {'port': 0, 'max_fps': 30.0, 'max_width': 640}}
    with GestureClient() as client:
        preds = PredictionRecorder(client)
        with node_graph(ws, ['camera', 'classifier', 'web'], ws.root / 'web', 'web',
                        **params) as graph:
            wait_until(lambda: _URL.search(graph.log.read_text()), 60, 'the web node', graph,
                       poll=0.2)
            port = int(_URL.search(graph.log.read_text()).group(1))
            wait_until(lambda: preds.records, 90, 'first prediction', graph, poll=0.1)
            graph.sleep(cfg.warmup_s)
            log(f'web: {window:g} s with the page closed')
            closed = _window(graph, preds, port, window)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                try:
                    page = browser.new_page(viewport={'width': 1280, 'height': 900})
                    page.goto(f'http://127.0.0.1:{port}/', wait_until='domcontentloaded')
                    wait_until(lambda: page.evaluate(
                        "document.getElementById('video').naturalWidth > 0"), 30,
                        'the video in the page', graph, poll=0.1)
                    graph.sleep(cfg.warmup_s)
                    log(f'web: {window:g} s with the page open')
                    since = client.node.get_clock().now().nanoseconds
                    opened = _window(graph, preds, port, window)
                    shown = page.evaluate('window.gcShown')
                    size = page.evaluate("[document.getElementById('video').naturalWidth, "
                                         "document.getElementById('video').naturalHeight]")
                finally:
                    browser.close()
            graph.check()
    latencies = _shown_latencies(shown, preds, since)
    return {'closed': closed, 'open': opened, 'video_size': size,
            'shown_latency_ms': summarize(latencies) if latencies else None,
            'shown_matched': len(latencies), 'shown_total': len(shown)}


def run(ws: Workspace, cfg: Settings) -> SectionResult:
    if not Path(CHROMIUM).exists():
        return SectionResult([Row(SECTION, 'page in a browser', '', None,
                                  note=f'{CHROMIUM} missing: scripts/setup.sh installs it')])
    window = max(5.0, cfg.camera_window_s)
    raw = measure(ws, cfg, window)
    closed, opened, lat = raw['closed'], raw['open'], raw['shown_latency_ms']
    per_frame = 1000.0 * opened['web_cpu_s'] / opened['frames_sent'] \
        if opened['frames_sent'] else None
    encode_ms = opened['encode_cpu_ms'] / max(1, opened['frames_sent'])
    rows = [
        Row(SECTION, 'frames delivered to one browser (640x480)', '/s', opened['frames_per_s'],
            30.0, 'camera rate', 'ratio', Target('>=', 'abs', MIN_FRAMES_PER_S),
            note=f'video shown at {raw["video_size"][0]}x{raw["video_size"][1]}'),
        Row(SECTION, 'web node CPU per delivered frame', 'ms', per_frame,
            note=f'JPEG encoding {encode_ms:.1f} ms of it; with the page closed the web node '
                 f'used {100 * closed["web_cpu_s"] / closed["seconds"]:.1f} % of a core'),
        Row(SECTION, 'classifier throughput, page open', '/s', opened['classifier_fps'],
            closed['classifier_fps'], 'page closed', 'ratio',
            Target('>=', 'ratio', MIN_THROUGHPUT_RATIO),
            note=f'the browser, on the robot\'s 2 cores here (on a laptop or phone in use), '
                 f'took {100 * opened["browser_cpu_s"] / opened["seconds"]:.0f} % of a core'),
        Row(SECTION, 'prediction shown on the page after publication, p50', 'ms',
            lat['p50'] if lat else None, note=f'{raw["shown_matched"]} predictions matched'
            if lat else 'no prediction shown', target=Target('<=', 'abs', MAX_SHOWN_P50_MS)),
        Row(SECTION, 'prediction shown on the page after publication, p99', 'ms',
            lat['p99'] if lat else None),
    ]
    return SectionResult(rows, raw)
