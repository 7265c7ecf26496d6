"""NewestWorker (the classifier's frame path): the newest item only, never a backlog, never a
dead thread."""
from __future__ import annotations

import logging
import threading

from gesture_classifier.core.worker import NewestWorker

DEADLINE = 10.0


class Gate:
    """A handler that records its items and blocks on each until released."""

    def __init__(self, fail_on=()):
        self.seen, self.fail_on = [], set(fail_on)
        self.entered = threading.Semaphore(0)
        self.release = threading.Semaphore(0)

    def __call__(self, item):
        self.seen.append(item)
        self.entered.release()
        assert self.release.acquire(timeout=DEADLINE), 'the test never released the item'
        if item in self.fail_on:
            raise RuntimeError(f'item {item} is broken')


def _wait_handled(worker, n):
    done = threading.Event()
    for _ in range(int(DEADLINE / 0.01)):
        if worker.handled >= n:
            done.set()
            break
        done.wait(0.01)
    assert worker.handled >= n, f'handled {worker.handled} of {n}'


def test_items_put_while_one_is_handled_collapse_to_the_newest():
    gate = Gate()
    worker = NewestWorker(gate, 'test-frames')
    try:
        worker.put(1)
        assert gate.entered.acquire(timeout=DEADLINE)  # 1 is being handled
        for i in range(2, 50):  # the handler is busy: these replace each other
            worker.put(i)
        assert worker.replaced == 47
        gate.release.release()  # 1 done; the thread takes 49, the newest
        assert gate.entered.acquire(timeout=DEADLINE)
        gate.release.release()
        _wait_handled(worker, 2)
        assert gate.seen == [1, 49]
        assert (worker.handled, worker.replaced, worker.failures) == (2, 47, 0)
    finally:
        assert worker.close()


def test_a_failing_item_is_logged_once_per_kind_and_the_thread_goes_on(caplog):
    gate = Gate(fail_on={1, 2})
    worker = NewestWorker(gate, 'test-frames')
    try:
        with caplog.at_level(logging.ERROR, logger='gesture_classifier.core.worker'):
            for i in (1, 2, 3):
                worker.put(i)
                assert gate.entered.acquire(timeout=DEADLINE)
                gate.release.release()
                _wait_handled(worker, i)
        assert gate.seen == [1, 2, 3] and worker.failures == 2 and worker.alive
        errors = [r for r in caplog.records if 'an item failed' in r.getMessage()]
        assert len(errors) == 1 and errors[0].exc_info[0] is RuntimeError
    finally:
        assert worker.close()


def test_close_drops_the_pending_item_waits_for_the_current_one_and_ignores_later_puts():
    gate = Gate()
    worker = NewestWorker(gate, 'test-frames')
    worker.put('current')
    assert gate.entered.acquire(timeout=DEADLINE)
    worker.put('pending')
    closing = threading.Thread(target=worker.close, kwargs={'timeout': DEADLINE})
    closing.start()
    gate.release.release()  # the current item ends; close() then returns
    closing.join(DEADLINE)
    assert not closing.is_alive() and not worker.alive
    worker.put('late')
    assert gate.seen == ['current'] and worker.handled == 1


def test_idle_is_false_from_put_until_the_item_is_handled_then_on_idle_is_called():
    gate, woken = Gate(), threading.Semaphore(0)
    worker = NewestWorker(gate, 'test-frames', on_idle=woken.release)
    try:
        assert worker.idle
        worker.put(1)
        assert not worker.idle  # pending or being handled, never idle in between
        assert gate.entered.acquire(timeout=DEADLINE)
        assert not worker.idle
        worker.put(2)  # waiting behind 1: no on_idle after 1
        gate.release.release()
        assert gate.entered.acquire(timeout=DEADLINE)
        assert not woken.acquire(timeout=0.05) and not worker.idle
        gate.release.release()
        assert woken.acquire(timeout=DEADLINE)  # called once 2 is done and nothing waits
        assert worker.idle and gate.seen == [1, 2]
    finally:
        assert worker.close()
