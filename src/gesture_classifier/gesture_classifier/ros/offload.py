"""Long blocking work (a training, an evaluation) in a thread of its own, awaited by an ``async``
callback of a node, so that one executor thread serves everything else meanwhile.

Why: rclpy runs an action's execute callback in an executor thread until it returns. A training
that runs inside it holds that thread for minutes, so a node that trains needed a
``MultiThreadedExecutor`` with spare threads for its services, the action protocol and the
answers of the services it calls itself (the trainer's dataset sync). With
:class:`Offload`, the execute callback is a coroutine that starts the work in a new thread and
awaits an rclpy :class:`~rclpy.task.Future`; the node spins on a ``SingleThreadedExecutor``.

How the result comes back: the worker thread queues its outcome and triggers a guard condition
of the node; the guard's callback (the executor's thread) completes the future, and the executor
resumes the awaiting coroutine on its next turn (rclpy's executor yields its pending tasks
before it waits: read in Jazzy's and Kilted's rclpy, tested on both; Humble's rclpy has the same
loop). The coroutine is therefore never resumed from the worker thread, and no timer
polls for the end.
"""
from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

from rclpy.node import Node
from rclpy.task import Future

__all__ = ['Offload']


class Offload:
    """Runs blocking functions in daemon threads; each run is awaited as a Future.

    ``await offload.run(fn, 'train')`` in an ``async`` callback returns ``fn()``'s value, or
    raises what ``fn`` raised: an ``Exception`` as it is; any other ``BaseException``
    (SystemExit, KeyboardInterrupt, GeneratorExit raised in the thread) as a RuntimeError that
    names it, so the awaiting callback always ends (a goal is never left running). The threads
    are daemons: a node stopping with Ctrl-C does not wait for them (its process exits; files
    are written atomically).
    """

    def __init__(self, node: Node, callback_group=None):
        self._ended: collections.deque[tuple[Future, Any, Exception | None]] = \
            collections.deque()
        self._guard = node.create_guard_condition(self._deliver, callback_group)

    def run(self, fn: Callable[[], Any], name: str) -> Future:
        """Start ``fn()`` in a new daemon thread named ``name``; the Future completes in the
        executor's thread once it has returned or raised."""
        future = Future()

        def work() -> None:
            try:
                self._ended.append((future, fn(), None))
            except Exception as exc:  # noqa: BLE001 - delivered to the awaiting callback
                self._ended.append((future, None, exc))
            except BaseException as exc:  # noqa: BLE001 - the thread ends; the awaiter must not hang
                error = RuntimeError(f'{name} ended by {type(exc).__name__}: {exc}')
                error.__cause__ = exc
                self._ended.append((future, None, error))
            self._guard.trigger()

        threading.Thread(target=work, name=name, daemon=True).start()
        return future

    def _deliver(self) -> None:
        while self._ended:
            future, value, error = self._ended.popleft()
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)
