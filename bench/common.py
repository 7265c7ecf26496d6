"""What the benchmark sections share: settings, statistics, process CPU time, the temporary
workspace with its inputs (real frames, videos, a dataset, a trained model), starting a node
graph, and the bench process's own ROS endpoints (a frame publisher, recorders).

Clocks: ``header.stamp`` of the frames the bench publishes and the receive time of predictions
are both read from the bench node's ROS clock (system time; no simulated time), so their
difference is an end-to-end latency on one clock. Durations measured inside the bench process
use ``time.perf_counter`` / ``time.monotonic``.
"""
from __future__ import annotations

import contextlib
import getpass
import importlib.metadata
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
import unittest.mock
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rclpy.parameter import parameter_value_to_python
from rcl_interfaces.srv import GetParameters
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from gesture_classifier.tools import bringup
from gesture_classifier.tools.bringup import NodeGroup, default_params_file
from gesture_classifier.ros.client import wait_future
from gesture_classifier.core.dataset import list_images
from gesture_classifier.core.imaging import array_to_image_fields
from gesture_classifier.ros.topics import IMAGE_PUB_QOS, IMAGE_SUB_QOS

from .report import Row

REPO = Path(__file__).resolve().parents[1]
#: Real photos and videos shared by the project (see its README); never copied into the repo.
SHARED_DATA = REPO.parent / 'shared' / 'data'
#: The task every section uses: the DLI "thumbs" preset.
TASK = 'thumbs'
CLASSES = ('thumbs_up', 'thumbs_down')
#: Frames per second offered to the nodes (a typical USB/CSI camera, the camera default).
FRAME_RATE = 30.0
#: Size of the frames the bench publishes to the classifier (the camera node's default).
FRAME_SIZE = (640, 480)
#: Real phone photos of thumbs up/down (960x1280), the content the classifier is made for.
FRAME_SOURCE = SHARED_DATA / 'thumbs_leticiacechinel'
#: Real webcam photos (800x600) the camera section's videos are made of.
VIDEO_SOURCE = SHARED_DATA / 'fingers_subhih_test'
#: The real DLI-made training set (60 + 60 images, 224x224) the trainer section trains on.
TRAIN_SET = SHARED_DATA / 'thumbs_jaygarg20'

_T0 = time.monotonic()


class BenchError(RuntimeError):
    """A section that could not be measured (a node exited, a timeout); says why."""


def log(message: str) -> None:
    """Progress line on stderr, prefixed with the seconds since the run started."""
    print(f'[bench {time.monotonic() - _T0:6.1f} s] {message}', file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Settings:
    """Durations and counts of one run; ``quick`` shortens every window (about 2 minutes in
    all instead of about 4 on the 2-core development machine).

    Attributes:
        quick: the --quick mode.
        device: torch device of the nodes and of the in-process reference loops.
        warmup_s: seconds of predictions/frames discarded after a node's first output.
        classifier_window_s: measurement window of the classifier node, per backend.
        bare_window_s: time the in-process reference loops run for (after warm-up).
        camera_idle_s: window of the camera node's idle measurement.
        camera_window_s: measurement window of the camera node, per resolution.
        collect_calls: collect service calls timed (per dataset size too).
        collect_sizes: dataset sizes the collect section measures against (--collect-sizes).
        trainer_epochs: epochs timed, after one warm-up epoch (each side).
        startup_runs: classifier start-ups timed (and as many bare processes).
        framepath_backend: the classifier backend of the framepath section
            (--framepath-backend).
    """

    quick: bool
    device: str = 'cpu'
    warmup_s: float = 2.0
    classifier_window_s: float = 20.0
    bare_window_s: float = 8.0
    camera_idle_s: float = 3.0
    camera_window_s: float = 10.0
    collect_calls: int = 60
    collect_sizes: tuple[int, ...] = (100, 1000, 10000)
    trainer_epochs: int = 3
    startup_runs: int = 3
    framepath_backend: str = 'onnxruntime'

    @classmethod
    def create(cls, quick: bool, device: str = 'cpu', **more) -> Settings:
        if not quick:
            return cls(quick=False, device=device, **more)
        return cls(quick=True, device=device, warmup_s=1.0, classifier_window_s=5.0,
                   bare_window_s=2.0, camera_idle_s=2.0, camera_window_s=3.0,
                   collect_calls=30, trainer_epochs=1, startup_runs=1, **more)


@dataclass
class SectionResult:
    """What a section returns: its table rows and its raw figures (JSON-serialisable)."""

    rows: list[Row]
    raw: dict = field(default_factory=dict)


# -- statistics and CPU time -----------------------------------------------------------------
def summarize(samples) -> dict:
    """n, mean, p50, p99, min and max of ``samples`` (same unit as the samples; percentiles
    are numpy's linear interpolation, so p99 of 60 samples lies between the two largest).
    An empty list gives n = 0 and None elsewhere."""
    a = np.asarray(list(samples), dtype=float)
    if a.size == 0:
        return {'n': 0, 'mean': None, 'p50': None, 'p99': None, 'min': None, 'max': None}
    return {'n': int(a.size), 'mean': float(a.mean()), 'p50': float(np.percentile(a, 50)),
            'p99': float(np.percentile(a, 99)), 'min': float(a.min()), 'max': float(a.max())}


_CLK_TCK = os.sysconf('SC_CLK_TCK')


def proc_stat(pid: int) -> dict[str, float]:
    """CPU use of a process so far, all its threads, from ``/proc/<pid>/stat`` (proc(5)):
    'user' and 'system' seconds (utime, stime: fields 14 and 15, counted in clock ticks of
    1/SC_CLK_TCK s, 10 ms here, so a rate over a window of T s is +-0.01/T) and 'minflt',
    minor page faults (field 10: pages the kernel had to map, e.g. for fresh allocations)."""
    stat = Path(f'/proc/{pid}/stat').read_text()
    fields = stat[stat.rindex(')') + 2:].split()  # from field 3; comm may hold spaces
    return {'user': int(fields[11]) / _CLK_TCK, 'system': int(fields[12]) / _CLK_TCK,
            'minflt': int(fields[7])}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (see :func:`proc_stat`)."""
    stat = proc_stat(pid)
    return stat['user'] + stat['system']


def machine_ticks() -> dict[str, int]:
    """Machine-wide CPU time so far in clock ticks (first line of /proc/stat): 'busy' (user,
    nice, system, irq, softirq), 'idle' (idle + iowait) and 'steal' (taken by the hypervisor
    for other guests: a sign of a noisy host)."""
    v = [int(x) for x in Path('/proc/stat').read_text().split('\n', 1)[0].split()[1:]]
    return {'busy': v[0] + v[1] + v[2] + v[5] + v[6], 'idle': v[3] + v[4], 'steal': v[7]}


def machine_load(before: dict[str, int], after: dict[str, int], seconds: float) -> dict:
    """Average cores busy and stolen between two :func:`machine_ticks` readings."""
    return {k: (after[k] - before[k]) / _CLK_TCK / seconds for k in ('busy', 'steal')}


def stamp_ns(stamp) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


# -- images ----------------------------------------------------------------------------------
def fit_to(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Centre-crop ``image`` to the aspect ratio of ``width x height`` and resize it to that
    size (INTER_AREA when shrinking, INTER_LINEAR when enlarging), as a camera would deliver
    the scene at that resolution."""
    h, w = image.shape[:2]
    scale = min(w / width, h / height)
    cw, ch = round(width * scale), round(height * scale)
    x, y = (w - cw) // 2, (h - ch) // 2
    crop = image[y:y + ch, x:x + cw]
    interp = cv2.INTER_AREA if cw >= width else cv2.INTER_LINEAR
    return cv2.resize(crop, (width, height), interpolation=interp)


def real_images(root: Path, limit: int) -> list[Path]:
    """Up to ``limit`` image files from the class folders under ``root``, taken in turn from
    each folder (so every class is represented), in name order."""
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    per_folder = [list_images(f) for f in folders]
    out: list[Path] = []
    for i in range(max((len(f) for f in per_folder), default=0)):
        out += [f[i] for f in per_folder if i < len(f)]
    if not out:
        raise BenchError(f'no images under {root}: the shared data set is missing')
    return out[:limit]


class Workspace:
    """Temporary folder of one run and the inputs the sections share, each made on first use
    (so ``--only`` makes just what its section needs). Shared data are read from
    ``SHARED_DATA`` and copied into this folder only (never into the repository).

    Attributes:
        root: the folder (removed at the end of the run unless kept).
        settings: the run's settings.
        model_path: the trained model the classifier sections use; the trainer section sets
            it to the model its goal produced, otherwise :meth:`model` trains one.
    """

    def __init__(self, root: Path, settings: Settings):
        self.root = root
        self.settings = settings
        self.model_path: Path | None = None
        self._frames: dict[tuple, list[np.ndarray]] = {}
        self._msgs: dict[tuple, list[Image]] = {}
        self._dataset: Path | None = None
        self._videos: dict[tuple[int, int], Path] = {}

    def frames(self, size: tuple[int, int] = FRAME_SIZE, count: int = 30) -> list[np.ndarray]:
        """``count`` real RGB frames of ``size`` (width, height): thumbs photos, centre-cropped
        and resized with OpenCV once; the frames both the classifier node and the bare loop
        get."""
        if size not in self._frames:
            self._frames[size] = [
                cv2.cvtColor(fit_to(cv2.imread(str(p), cv2.IMREAD_COLOR), *size),
                             cv2.COLOR_BGR2RGB)
                for p in real_images(FRAME_SOURCE, count)]
        return self._frames[size]

    def frames_bgr(self, size: tuple[int, int] = FRAME_SIZE) -> list[np.ndarray]:
        """:meth:`frames` in BGR order, each contiguous: what ``image_to_array`` gives a node
        for a bgr8 message (the camera's encoding), made once."""
        key = ('bgr', *size)
        if key not in self._frames:
            self._frames[key] = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in self.frames(size)]
        return self._frames[key]

    def image_msgs(self, size: tuple[int, int] = FRAME_SIZE,
                   encoding: str = 'rgb8') -> list[Image]:
        """:meth:`frames` (rgb8) or :meth:`frames_bgr` (bgr8) as pre-built
        ``sensor_msgs/Image`` messages."""
        key = (encoding, *size)
        if key not in self._msgs:
            frames = self.frames_bgr(size) if encoding == 'bgr8' else self.frames(size)
            self._msgs[key] = [Image(**array_to_image_fields(f, encoding)) for f in frames]
        return self._msgs[key]

    def dataset(self) -> Path:
        """A data_dir holding the real training set as ``<data_dir>/thumbs/dataset/<class>/``
        (copied from ``TRAIN_SET`` once)."""
        if self._dataset is None:
            data_dir = self.root / 'train'
            for label in CLASSES:
                dest = data_dir / TASK / 'dataset' / label
                dest.mkdir(parents=True)
                files = list_images(TRAIN_SET / label)
                if not files:
                    raise BenchError(f'no images in {TRAIN_SET / label}')
                for f in files:
                    shutil.copy2(f, dest / f.name)
            self._dataset = data_dir
        return self._dataset

    def model(self) -> Path:
        """The trained model file: the trainer section's, or else one trained here for one
        epoch with gesture_classifier.core.training on :meth:`dataset` (same recipe; about 10 s)."""
        if self.model_path is None:
            from gesture_classifier.core.tasks import Task
            from gesture_classifier.core.training import TrainConfig, train_task
            log('training a model for the classifier sections (1 epoch, in-process)')
            task = Task.create(TASK, CLASSES, data_dir=self.dataset())
            out = train_task(task, TrainConfig(epochs=1, device=self.settings.device))
            self.model_path = out.model.path
        return self.model_path

    def video(self, width: int, height: int, frames: int = 60) -> Path:
        """An mp4 (MPEG-4 part 2, 30 FPS) of ``frames`` real webcam photos at exactly
        ``width x height``, so the camera node does not need to resize (as with a camera
        set to that mode). The clips in ``SHARED_DATA/videos`` are only 160x120."""
        key = (width, height)
        if key not in self._videos:
            path = self.root / f'camera_{width}x{height}.mp4'
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), FRAME_RATE,
                                     (width, height))
            if not writer.isOpened():
                raise BenchError(f'OpenCV cannot write {path}')
            try:
                for p in real_images(VIDEO_SOURCE, frames):
                    writer.write(fit_to(cv2.imread(str(p), cv2.IMREAD_COLOR), width, height))
            finally:
                writer.release()
            self._videos[key] = path
        return self._videos[key]

    def log_path(self, name: str) -> Path:
        """Where the node log of graph ``name`` goes."""
        return self.root / f'{name}.log'


# -- node graphs -----------------------------------------------------------------------------
@dataclass
class Graph:
    """Running node processes (a bringup.NodeGroup) and their log.

    Attributes:
        group: the NodeGroup.
        log: file holding the nodes' stdout and stderr.
        started: time.monotonic() just before the processes were spawned.
        started_wall: time.time() at the same moment (to compare with node log stamps).
    """

    group: NodeGroup
    log: Path
    started: float
    started_wall: float

    def pid(self, name: str) -> int:
        return self.group.procs[name].pid

    def check(self) -> None:
        """Raise BenchError (with the end of the node log) if a node process has exited."""
        exited = self.group.poll()
        if exited:
            raise BenchError(f'node(s) exited: {exited}; end of {self.log}:\n'
                             f'{self.log.read_text()[-3000:]}')

    def sleep(self, seconds: float) -> None:
        """Sleep, checking every 0.5 s that the nodes still run."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(0.5, left))
            self.check()

    def log_time(self, pattern: str) -> float | None:
        """Seconds from spawning to the first node log line matching ``pattern`` (rcutils
        console lines carry the wall-clock time: ``[INFO] [1779000000.123456789] [name]: ...``),
        or None when there is none."""
        regex = re.compile(r'\[(\d+\.\d+)\] \[[^\]]+\]: .*' + pattern)
        for line in self.log.read_text(errors='replace').splitlines():
            m = regex.search(line)
            if m:
                return float(m.group(1)) - self.started_wall
        return None


def overrides(data_dir: Path, names, **per_node: dict) -> dict:
    """Parameter overrides for a bench graph: every node gets ``data_dir`` and the thumbs task,
    then ``per_node`` updates, e.g. ``classifier={'model_path': ...}``."""
    common = {'data_dir': str(data_dir), 'task': TASK, 'classes': list(CLASSES)}
    return {name: {**common, **per_node.get(name, {})} for name in names}


@contextlib.contextmanager
def node_graph(ws: Workspace, names: list[str], data_dir: Path, log_name: str,
               namespace: str = '', **per_node: dict):
    """Start ``names`` (in ``namespace``) as real node processes with the project's parameter
    file plus :func:`overrides`, their output going to ``ws.log_path(log_name)``; yields a
    :class:`Graph` and always stops the processes (SIGINT, then SIGKILL after 10 s)."""
    log_path = ws.log_path(log_name)
    with open(log_path, 'w') as out:
        started, started_wall = time.monotonic(), time.time()
        with NodeGroup(names, default_params_file(), namespace=namespace,
                       overrides=overrides(data_dir, names, **per_node),
                       stdout=out, stderr=out) as group:
            yield Graph(group, log_path, started, started_wall)


@contextlib.contextmanager
def node_module(module: str | None, name: str):
    """While in the block, node ``name`` starts from ``python -m module`` instead of its own
    module (a bench's "before" node, such as bench.legacy_classifier); None: its own."""
    if module is None:
        yield
        return
    real = bringup.node_command

    def command(node, files, namespace=''):
        cmd = real(node, files, namespace)
        return [module if node == name and c == bringup.ALL_NODES[name] else c for c in cmd]

    with unittest.mock.patch.object(bringup, 'node_command', command):
        yield


def wait_until(predicate, timeout: float, what: str, graph: Graph | None = None,
               poll: float = 0.01, required: bool = True) -> float | None:
    """Poll ``predicate`` every ``poll`` s until it is true; returns time.monotonic() then,
    or None after ``timeout`` s when not ``required``.

    Raises:
        BenchError: a node of ``graph`` exited meanwhile, or (when ``required``) ``timeout``
            s passed.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if graph is not None:
            graph.check()
        if time.monotonic() > deadline:
            if not required:
                return None
            log_tail = f'; end of {graph.log}:\n{graph.log.read_text()[-3000:]}' if graph \
                else ''
            raise BenchError(f'{what}: not within {timeout:g} s{log_tail}')
        time.sleep(poll)
    return time.monotonic()


def node_parameter(node, target: str, name: str, timeout: float = 30.0):
    """Value of parameter ``name`` of node ``target`` (through its get_parameters service),
    or None when the node does not declare it."""
    client = node.create_client(GetParameters, f'{target}/get_parameters')
    try:
        if not client.wait_for_service(timeout_sec=timeout):
            raise BenchError(f'{target}/get_parameters not available after {timeout:g} s')
        res = wait_future(client.call_async(GetParameters.Request(names=[name])), timeout,
                          f'get parameter {target}.{name}')
    finally:
        node.destroy_client(client)
    # None for PARAMETER_NOT_SET (a parameter the node does not declare)
    return parameter_value_to_python(res.values[0]) if res.values else None


# -- the bench process's endpoints -----------------------------------------------------------
class FramePublisher:
    """Publishes pre-built ``sensor_msgs/Image`` messages on ``image_raw`` at ``rate`` Hz from
    its own thread, with the camera node's QoS (``IMAGE_PUB_QOS``) and pacing (a fixed
    schedule; after falling behind it starts again from now, it never bursts).

    ``header.stamp`` is the node's clock at the moment of publishing; every stamp (ns) is kept
    in :attr:`stamps`. A context manager: starts on enter, stops on exit.
    """

    def __init__(self, node, msgs: list, rate: float = FRAME_RATE, topic: str = 'image_raw'):
        # Image on image_raw, or CompressedImage on image_raw/compressed
        self._pub = node.create_publisher(type(msgs[0]), topic, IMAGE_PUB_QOS)
        self._clock = node.get_clock()
        self._msgs, self._period = msgs, 1.0 / rate
        self.stamps: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='frame-publisher', daemon=True)

    def __enter__(self) -> FramePublisher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        due, i = time.monotonic(), 0
        while not self._stop.is_set():
            msg = self._msgs[i % len(self._msgs)]
            i += 1
            now = self._clock.now()
            msg.header.stamp = now.to_msg()
            self._pub.publish(msg)  # serialised here; the message may be changed afterwards
            self.stamps.append(now.nanoseconds)
            due += self._period
            delay = due - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                due = time.monotonic()

    def between(self, t0: int, t1: int) -> list[int]:
        """Stamps (ns) of the frames published in ``[t0, t1)``."""
        return [s for s in list(self.stamps) if t0 <= s < t1]


@dataclass(frozen=True)
class PredictionRecord:
    """One Prediction as received: receive time (bench ROS clock, ns, and time.monotonic()),
    the frame's header.stamp (ns) and the node's inference_time (s)."""

    received: int
    received_mono: float
    stamp: int
    inference_time: float


class PredictionRecorder:
    """Keeps a :class:`PredictionRecord` of every Prediction a GestureClient receives (its
    listener runs in the client's spin thread, right after rclpy has taken the message)."""

    def __init__(self, client):
        self._clock = client.node.get_clock()
        self.records: list[PredictionRecord] = []
        client.add_prediction_listener(self._on_prediction)

    def _on_prediction(self, p) -> None:
        self.records.append(PredictionRecord(self._clock.now().nanoseconds, time.monotonic(),
                                             stamp_ns(p.header.stamp), p.inference_time))

    def between(self, t0: int, t1: int) -> list[PredictionRecord]:
        """Predictions of the frames stamped in ``[t0, t1)``."""
        return [r for r in list(self.records) if t0 <= r.stamp < t1]


def image_header(data: bytes) -> tuple[int, int, int]:
    """(header.stamp in ns, width, height) of a serialized ``sensor_msgs/Image`` (CDR: a 4-byte
    encapsulation header, then stamp sec/nanosec, frame_id as a length-prefixed string, height,
    width), read without deserializing the pixels."""
    endian = '<' if data[1] == 1 else '>'
    sec, nanosec, length = struct.unpack_from(endian + 'iII', data, 4)
    offset = 16 + length
    offset += -(offset - 4) % 4  # CDR aligns the uint32 fields, counting after the header
    height, width = struct.unpack_from(endian + 'II', data, offset)
    return sec * 1_000_000_000 + nanosec, width, height


class ImageRecorder:
    """Subscribes ``image_raw`` and keeps (receive ns, stamp ns, width, height) of every frame
    received. The message is taken serialized (``raw=True``) and only its header is read, so
    counting frames costs the bench process little CPU (the nodes measured share the 2 cores).

    The default QoS is the consumers' (``IMAGE_SUB_QOS``: best effort, depth 1, as the
    classifier and the collector subscribe); :data:`RELIABLE_QOS` receives every frame the
    camera publishes (its publisher is reliable), as an image viewer would."""

    def __init__(self, node, qos=IMAGE_SUB_QOS):
        self._clock = node.get_clock()
        self.records: list[tuple[int, int, int, int]] = []
        node.create_subscription(Image, 'image_raw', self._on_image, qos, raw=True)

    def _on_image(self, data: bytes) -> None:
        self.records.append((self._clock.now().nanoseconds, *image_header(data)))


#: A subscriber that gets every published frame: reliable, a queue of 10.
RELIABLE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)


# -- machine ---------------------------------------------------------------------------------
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str:
    try:
        return subprocess.run(['git', *args], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ''


def machine_info() -> dict:
    """Where and on what the figures were measured: CPU model and cores, memory, OS, the
    versions of Python, torch, torchvision, OpenCV, NumPy, onnxruntime and rclpy, the ROS
    set-up, the threading settings and the git commit (with whether the tree had changes)."""
    import torch
    cpuinfo = Path('/proc/cpuinfo').read_text() if Path('/proc/cpuinfo').exists() else ''
    model = re.search(r'^model name\s*:\s*(.+)$', cpuinfo, re.M)
    meminfo = Path('/proc/meminfo').read_text() if Path('/proc/meminfo').exists() else ''
    mem = re.search(r'^MemTotal:\s*(\d+) kB', meminfo, re.M)
    os_release = Path('/etc/os-release')
    pretty = re.search(r'^PRETTY_NAME="?([^"\n]+)', os_release.read_text(), re.M) \
        if os_release.exists() else None
    return {
        'cpu_model': model.group(1).strip() if model else platform.processor(),
        'cpu_count': os.cpu_count(),
        'cpus_usable': len(os.sched_getaffinity(0)),
        'memory_gib': round(int(mem.group(1)) / 2**20, 1) if mem else None,
        'os': pretty.group(1) if pretty else platform.platform(),
        'kernel': platform.release(),
        'python': platform.python_version(),
        'torch': torch.__version__,
        'torch_threads': torch.get_num_threads(),
        'cuda_available': torch.cuda.is_available(),
        'torchvision': _version('torchvision'),
        'opencv': cv2.__version__,
        'numpy': np.__version__,
        'onnxruntime': _version('onnxruntime') or _version('onnxruntime-gpu'),
        'rclpy': _version('ros-rclpy') or 'from the ROS installation',
        'ros_distro': os.environ.get('ROS_DISTRO') or os.environ.get('GC_ROS', 'kilted'),
        'rmw_implementation': os.environ.get('RMW_IMPLEMENTATION'),
        'ros_domain_id': os.environ.get('ROS_DOMAIN_ID'),
        'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY'),
        'git_commit': _git('rev-parse', 'HEAD'),
        'git_dirty': bool(_git('status', '--porcelain', '--untracked-files=no')),
        'user': getpass.getuser(),
        'loadavg': loadavg(),
    }


def middleware_info() -> dict:
    """The Fast DDS settings in effect (read after the run: gesture_classifier's client and
    nodes set the profile variables themselves when they are unset, see
    gesture_classifier.ros.middleware)."""
    return {var.lower(): os.environ.get(var) for var in (
        'FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE',
        'FASTDDS_BUILTIN_TRANSPORTS', 'RMW_FASTRTPS_PUBLICATION_MODE')}


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages (/proc/loadavg)."""
    return [float(x) for x in Path('/proc/loadavg').read_text().split()[:3]]


def node_processes() -> list[str]:
    """Command lines of running gesture_classifier node processes: between sections the
    bench runs none, so these belong to someone else (tests, a demo) and compete for the CPU."""
    found = []
    for proc in Path('/proc').iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / 'cmdline').read_bytes().replace(b'\0', b' ').decode().strip()
        except OSError:
            continue  # exited meanwhile
        if 'gesture_classifier.nodes.' in cmd:
            found.append(f'{proc.name}: {cmd[:160]}')
    return found
