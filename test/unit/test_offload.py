"""``ros.offload.Offload``: blocking work in a thread of its own, awaited by a coroutine on a
single executor thread that stays free meanwhile; its value or its exception comes back, and
its end wakes the executor (no timer needed). A real rclpy node and executor in this process."""
from __future__ import annotations

import threading
import time

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from gesture_classifier.ros.offload import Offload

pytestmark = pytest.mark.graph


@pytest.fixture
def node_and_executor():
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node('offload_probe', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


def test_the_executor_serves_callbacks_while_the_work_runs_and_gets_its_value(
        node_and_executor):
    node, executor = node_and_executor
    offload = Offload(node)
    release = threading.Event()
    worker, ticks = [], []

    def blocking():
        worker.append(threading.current_thread().name)
        assert release.wait(30), 'never released'
        return 42

    async def goal():
        return await offload.run(blocking, 'work')

    task = executor.create_task(goal)
    timer = node.create_timer(0.01, lambda: ticks.append(1))
    while len(ticks) < 5:  # the executor's one thread runs other callbacks meanwhile
        executor.spin_once(timeout_sec=5)
    assert not task.done() and worker == ['work']
    node.destroy_timer(timer)  # from now on only the work's end can wake the executor
    release.set()
    started = time.monotonic()
    while not task.done():
        executor.spin_once(timeout_sec=60)
        assert time.monotonic() - started < 30, 'the end of the work did not wake the executor'
    assert task.result() == 42


def test_an_exception_of_the_work_is_raised_where_it_is_awaited(node_and_executor):
    node, executor = node_and_executor
    offload = Offload(node)
    caught = []

    def failing():
        raise ValueError('bad goal')

    async def goal():
        try:
            await offload.run(failing, 'work')
        except ValueError as exc:
            caught.append(str(exc))
        return 'handled'

    task = executor.create_task(goal)
    executor.spin_until_future_complete(task, timeout_sec=30)
    assert task.result() == 'handled' and caught == ['bad goal']


def test_a_base_exception_of_the_work_still_ends_the_awaiting_callback(node_and_executor):
    """SystemExit raised in the work thread (a library calling sys.exit) would end the thread
    without a result: the awaiting goal would run for ever and keep its busy lock."""
    node, executor = node_and_executor
    offload = Offload(node)
    caught = []

    def exiting():
        raise SystemExit(3)

    async def goal():
        try:
            await offload.run(exiting, 'train')
        except RuntimeError as exc:
            caught.append((str(exc), type(exc.__cause__)))
        return 'ended'

    task = executor.create_task(goal)
    executor.spin_until_future_complete(task, timeout_sec=30)
    assert task.done(), 'the work ended by SystemExit left its awaiter pending'
    assert task.result() == 'ended'
    assert caught == [('train ended by SystemExit: 3', SystemExit)]
