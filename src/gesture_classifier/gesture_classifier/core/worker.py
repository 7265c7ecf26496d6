"""A thread that handles only the newest item it was given: the classifier's frame path.

A camera callback hands each frame to :class:`NewestWorker` and returns at once; the worker's
thread runs the slow handler (inference: 20-40 ms a frame on a Jetson's or this machine's CPU)
on the newest frame only. Frames that arrive while one is handled replace each other, so there
is never a backlog of stale frames, and the thread that received the frame (a ROS executor)
stays free for parameter, service and diagnostics requests. :attr:`NewestWorker.idle` and the
``on_idle`` callback let the receiver take no frame at all while one is handled (the
classifier's subscription is then left out of the executor's wait: ros.topics.WhenReady).

Why a thread of its own rather than more executor threads: rclpy's MultiThreadedExecutor
spun the classifier at 2.3-6.4 of 30 frames/s, with a ``get_parameters`` p99 of 1.2-3 s, where
the same node on a SingleThreadedExecutor kept up at 30 frames/s (docs/benchmarks.md,
"framepath").
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ['NewestWorker']

LOG = logging.getLogger(__name__)
T = TypeVar('T')


class NewestWorker(Generic[T]):
    """Runs ``handle(item)`` in a daemon thread named ``name`` for the newest item
    :meth:`put` since the last one it took.

    ``handle`` runs in one thread, one item at a time, in the order the items were put (minus
    the replaced ones); ``on_idle()`` (if given) is called in that thread each time it has
    handled an item and no newer one is waiting. An exception ``handle`` raises is logged
    (with its traceback, at most once per kind of exception) and counted in
    :attr:`failures`; the thread goes on with the next item.

    Attributes (read by any thread; written under the worker's lock):
        handled: items handle() returned for or raised on.
        replaced: items dropped unhandled because a newer one was put before the thread took
            them (a measure of how far the handler is behind its input).
        failures: items handle() raised on.
    """

    def __init__(self, handle: Callable[[T], object], name: str = 'newest-worker',
                 on_idle: Callable[[], object] | None = None):
        self._handle, self._on_idle = handle, on_idle
        self._cond = threading.Condition()
        self._item: T | None = None
        self._pending = self._handling = self._closed = False
        self._seen_errors: set[type] = set()
        self.handled = self.replaced = self.failures = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item: T) -> None:
        """Hand ``item`` to the thread (never blocks on the handler); it replaces an item put
        earlier that the thread has not taken yet. Ignored after :meth:`close`."""
        with self._cond:
            if self._closed:
                return
            if self._pending:
                self.replaced += 1
            self._item, self._pending = item, True
            self._cond.notify()

    def close(self, timeout: float = 2.0) -> bool:
        """Stop taking items, drop a pending one, and wait up to ``timeout`` seconds for the
        item being handled (if any). Returns True when the thread has ended."""
        with self._cond:
            self._closed, self._item, self._pending = True, None, False
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def idle(self) -> bool:
        """No item waiting and none being handled: a new one would be handled at once."""
        return not (self._pending or self._handling)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                item, self._item, self._pending = self._item, None, False
                self._handling = True
            failed = False
            try:
                self._handle(item)
            except Exception as exc:  # the thread (the node's frame path) must live on
                failed = True
                if type(exc) not in self._seen_errors:
                    self._seen_errors.add(type(exc))
                    LOG.exception(f'{self._thread.name}: an item failed (further '
                                  f'{type(exc).__name__} errors are counted, not logged)')
            with self._cond:
                self.handled += 1
                self.failures += failed
                self._handling = False
                now_idle = not self._pending and not self._closed
            if now_idle and self._on_idle is not None:
                try:
                    self._on_idle()
                except Exception:  # e.g. a guard condition destroyed at shutdown
                    LOG.debug('on_idle failed', exc_info=True)
