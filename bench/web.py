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

Then, in the same graph (issue 19):

3. ten viewers: 10 MJPEG clients and 10 WebSocket state clients (plain HTTP clients in this
   process, each reading everything it gets, as ten pages would) for one window: frames per
   viewer per second (the lowest and the median of the ten), state messages per page per
   second, the web node's CPU (% of a core) and the classifier's throughput against the
   page-closed window;
4. slow clients: 20 video clients that stop reading at once (receive buffer 4 KiB, never read)
   and 50 connections that trickle their headers one byte a second: how many of them the
   node still holds after write_timeout / header_timeout (+ margin), its memory (RSS) before,
   with them and after, and whether a fresh viewer gets the video meanwhile.

Targets (issue 19): >= 10 frames/s for each of the 10 viewers; nothing held after the
timeouts.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import socket
import statistics
import threading
import time
import urllib.request
from pathlib import Path

from gesture_classifier.ros.client import GestureClient

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
VIEWERS = 10
MIN_VIEWER_FPS = 10.0
STALLED, TRICKLING = 20, 50
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


def _rss_kib(pid: int) -> int:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
    return 0


def _count_frames(port: int, stop: threading.Event, counts: list, i: int) -> None:
    """One MJPEG viewer: reads every part until ``stop``; counts[i] = parts read."""
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    try:
        conn.request('GET', '/stream')
        r = conn.getresponse()
        if r.status != 200:
            counts[i] = -r.status
            return
        while not stop.is_set():
            line = r.fp.readline()
            if not line:
                return
            if line.startswith(b'Content-Length:'):
                r.fp.readline()
                r.fp.read(int(line.split(b':')[1]))
                counts[i] += 1
    finally:
        conn.close()


def _state_pages(port: int, n: int, stop: threading.Event, counts: list) -> None:
    """``n`` WebSocket state clients (aiohttp), each counting the messages it gets."""
    import aiohttp

    async def page(session, i):
        async with session.ws_connect(f'http://127.0.0.1:{port}/ws') as ws:
            while not stop.is_set():
                try:
                    msg = await ws.receive(timeout=0.5)
                except asyncio.TimeoutError:
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    return
                counts[i] += 1

    async def main():
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(page(session, i) for i in range(n)),
                                 return_exceptions=True)

    asyncio.run(main())


def _viewers_window(graph, preds: PredictionRecorder, port: int, seconds: float) -> dict:
    """Ten video viewers and ten state pages for ``seconds``."""
    pid, stop = graph.pid('web'), threading.Event()
    frames, states = [0] * VIEWERS, [0] * VIEWERS
    threads = [threading.Thread(target=_count_frames, args=(port, stop, frames, i))
               for i in range(VIEWERS)]
    threads.append(threading.Thread(target=_state_pages, args=(port, VIEWERS, stop, states)))
    for t in threads:
        t.start()
    try:
        wait_until(lambda: all(f > 0 for f in frames), 60, 'ten viewers', graph, poll=0.1)
        graph.sleep(2.0)
        f0, s0, c0, n0, t0 = (list(frames), list(states), cpu_seconds(pid),
                              len(preds.records), time.monotonic())
        graph.sleep(seconds)
        f1, s1, c1, n1, t1 = (list(frames), list(states), cpu_seconds(pid),
                              len(preds.records), time.monotonic())
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    dt = t1 - t0
    fps = [(b - a) / dt for a, b in zip(f0, f1)]
    sps = [(b - a) / dt for a, b in zip(s0, s1)]
    return {'seconds': dt, 'viewer_fps': fps, 'state_per_s': sps,
            'web_cpu_pct': 100.0 * (c1 - c0) / dt, 'classifier_fps': (n1 - n0) / dt}


def _slow_clients(graph, port: int) -> dict:
    """Stalled viewers and trickling headers: what the node holds and its memory."""
    pid = graph.pid('web')
    state = _state(port)
    rss0 = _rss_kib(pid)
    stalled = []
    for _ in range(STALLED):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(('127.0.0.1', port))
        s.sendall(b'GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
        stalled.append(s)
    trickling = []
    for _ in range(TRICKLING):
        s = socket.create_connection(('127.0.0.1', port))
        s.sendall(b'GET /api/state HTTP/1.1\r\nHost: 127.0.0.1\r\n')
        s.setblocking(False)
        trickling.append(s)
    viewers_with = 0
    def trickle(seconds: float) -> None:
        """One more header byte per connection each second, for ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for s in trickling:
                try:
                    s.send(b'X')
                except OSError:
                    pass
            graph.sleep(1.0)

    try:
        trickle(3.0)
        rss_with = _rss_kib(pid)
        viewers_with = _state(port)['video']['viewers']
        # past write_timeout (5 s) and header_timeout (10 s), with margin, still trickling
        trickle(15.0)
        after = _state(port)
        closed = 0
        for s in trickling:
            try:
                closed += s.recv(1) == b''
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        fresh = [0]
        stop = threading.Event()
        t = threading.Thread(target=_count_frames, args=(port, stop, fresh, 0))
        t.start()
        wait_until(lambda: fresh[0] != 0, 30, 'a fresh viewer', graph, poll=0.1,
                   required=False)
        stop.set()
        t.join(30)
        rss_after = _rss_kib(pid)
    finally:
        for s in stalled + trickling:
            s.close()
    return {'stalled': STALLED, 'trickling': TRICKLING, 'viewers_before': state['video']['viewers'],
            'viewers_with_stalled': viewers_with, 'viewers_after': after['video']['viewers'],
            'dropped': after['video'].get('dropped'), 'trickling_closed': closed,
            'fresh_viewer_frames': fresh[0], 'rss_kib': [rss0, rss_with, rss_after]}


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
            log(f'web: {window:g} s with {VIEWERS} viewers and {VIEWERS} state pages')
            viewers = _viewers_window(graph, preds, port, window)
            log(f'web: {STALLED} stalled viewers and {TRICKLING} trickling clients')
            slow = _slow_clients(graph, port)
            graph.check()
    latencies = _shown_latencies(shown, preds, since)
    return {'closed': closed, 'open': opened, 'video_size': size, 'viewers': viewers,
            'slow': slow,
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
    v, slow = raw['viewers'], raw['slow']
    rows += [
        Row(SECTION, f'{VIEWERS} viewers: frames per viewer, lowest', '/s', min(v['viewer_fps']),
            30.0, 'camera rate', 'ratio', Target('>=', 'abs', MIN_VIEWER_FPS),
            note=f'median {statistics.median(v["viewer_fps"]):.1f}/s; state messages per page '
                 f'{min(v["state_per_s"]):.1f}-{max(v["state_per_s"]):.1f}/s'),
        Row(SECTION, f'{VIEWERS} viewers: web node CPU', '% of a core', v['web_cpu_pct']),
        Row(SECTION, f'{VIEWERS} viewers: classifier throughput', '/s', v['classifier_fps'],
            closed['classifier_fps'], 'page closed', 'ratio'),
        Row(SECTION, f'slow clients: of {STALLED} stalled viewers still held after the '
            'write timeout', '', slow['viewers_after'], target=Target('<=', 'abs', 0),
            note=f'{slow["viewers_with_stalled"]} held at first; a fresh viewer then got '
                 f'{slow["fresh_viewer_frames"]} frames'),
        Row(SECTION, f'slow clients: of {TRICKLING} trickling-header connections closed by '
            'the node', '', slow['trickling_closed'], target=Target('>=', 'abs', TRICKLING)),
        Row(SECTION, 'slow clients: web node memory (RSS) before / with / after', 'MiB',
            slow['rss_kib'][1] / 1024,
            note=f'{slow["rss_kib"][0] / 1024:.0f} / {slow["rss_kib"][1] / 1024:.0f} / '
                 f'{slow["rss_kib"][2] / 1024:.0f} MiB'),
    ]
    return SectionResult(rows, raw)
