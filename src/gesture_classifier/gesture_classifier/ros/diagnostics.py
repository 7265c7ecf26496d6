"""REP-107 diagnostics of the nodes on ``/diagnostics`` (diagnostic_msgs/DiagnosticArray, 1 Hz).

Uses ``diagnostic_updater`` where it is installed (it is on a robot: ros-<distro>-diagnostic-
updater). The ROS 2 wheels on PyPI have no diagnostic_updater, so without it a small fallback
with the same calls is used: ``Updater(node, period=1.0)`` (declares the same
``diagnostic_updater.period`` parameter and publishes every task's status each period),
``setHardwareID(str)``, ``add(name, fn)`` where ``fn(stat)`` fills a
``DiagnosticStatusWrapper`` with ``summary(level, message)`` and ``add(key, value)`` and returns
it, and ``force_update()``. Status names are ``'<node name>: <task name>'`` in both.

Also :class:`RateMeter` and :class:`Latencies`, the measurements the nodes report.
"""
from __future__ import annotations

import collections
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

__all__ = ['Updater', 'DiagnosticStatusWrapper', 'OK', 'WARN', 'ERROR', 'STALE',
           'USING_DIAGNOSTIC_UPDATER', 'RateMeter', 'Latencies', 'updater_for']

OK, WARN, ERROR, STALE = (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR,
                          DiagnosticStatus.STALE)

try:
    from diagnostic_updater import DiagnosticStatusWrapper, Updater
    USING_DIAGNOSTIC_UPDATER = True
except ImportError:
    USING_DIAGNOSTIC_UPDATER = False

    class DiagnosticStatusWrapper(DiagnosticStatus):
        """DiagnosticStatus with diagnostic_updater's two helpers."""

        def summary(self, level, message: str) -> None:
            self.level, self.message = level, str(message)

        def add(self, key: str, value) -> None:
            self.values.append(KeyValue(key=str(key), value=str(value)))

    class Updater:
        """The part of diagnostic_updater.Updater the nodes use (see the module docstring)."""

        def __init__(self, node, period: float = 1.0):
            self.node = node
            self.hwid = ''
            self._tasks: list[tuple[str, object]] = []
            self._lock = threading.Lock()
            self._pub = node.create_publisher(DiagnosticArray, '/diagnostics', 1)
            period = node.declare_parameter('diagnostic_updater.period', float(period)).value
            self._timer = node.create_timer(period, self.update)

        def setHardwareID(self, hwid: str) -> None:  # noqa: N802 (diagnostic_updater's name)
            self.hwid = hwid

        def add(self, name: str, fn) -> None:
            with self._lock:
                self._tasks.append((name, fn))

        def update(self) -> None:
            msg = DiagnosticArray()
            msg.header.stamp = self.node.get_clock().now().to_msg()
            with self._lock:
                tasks = list(self._tasks)
            for name, fn in tasks:
                stat = DiagnosticStatusWrapper(level=ERROR, message='No message was set',
                                               hardware_id=self.hwid)
                try:
                    stat = fn(stat)
                except Exception as exc:  # a reporting bug must not take the node down
                    stat.summary(ERROR, f'diagnostic task failed: {exc!r}')
                stat.name = f'{self.node.get_name()}: {name}'
                msg.status.append(stat)
            self._pub.publish(msg)

        force_update = update


def updater_for(node, hardware_id: str) -> Updater:
    """A 1 Hz updater for ``node`` with its hardware id (the machine or device it watches)."""
    updater = Updater(node, period=1.0)
    updater.setHardwareID(hardware_id)
    return updater


class RateMeter:
    """Events per second between two reports (thread-safe :meth:`tick`); ``clock`` gives
    seconds (time.monotonic; a test passes its own)."""

    def __init__(self, clock=time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self.count = 0
        self.window = 0.0  # seconds the newest rate() was measured over
        self._last_count, self._last_time = 0, clock()

    def tick(self, n: int = 1) -> None:
        with self._lock:
            self.count += n

    def restart(self) -> None:
        """Start the next window now: when a source (re)opens, the time spent opening it is
        not a slow rate."""
        with self._lock:
            self._last_count, self._last_time = self.count, self._clock()

    def rate(self) -> float:
        """Events per second since the previous call or :meth:`restart` (0 within 1 ms);
        :attr:`window` says over how many seconds."""
        now = self._clock()
        with self._lock:
            count, dt = self.count - self._last_count, now - self._last_time
            self._last_count, self._last_time = self.count, now
            self.window = dt
        return count / dt if dt > 1e-3 else 0.0


class Latencies:
    """The newest ``keep`` durations (s) and their median."""

    def __init__(self, keep: int = 100):
        self._values: collections.deque[float] = collections.deque(maxlen=keep)

    def add(self, seconds: float) -> None:
        self._values.append(seconds)

    def median(self) -> float | None:
        values = sorted(self._values)
        return values[len(values) // 2] if values else None
