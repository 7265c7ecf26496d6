"""ros.topics.WhenReady over the real middleware: a subscription in it is neither taken nor
called back while its group is not ready; once ready and woken, the callback gets the newest
message, the ones in between were replaced in the depth-1 queue (the classifier's frames)."""
from __future__ import annotations

import threading
import time

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import Int32

from gesture_classifier.ros.topics import IMAGE_SUB_QOS, WhenReady

pytestmark = pytest.mark.graph
DEADLINE = 20.0


def wait_for(condition, what):
    end = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < end, f'no {what} within {DEADLINE} s'
        time.sleep(0.01)


def test_a_subscription_in_when_ready_takes_only_when_ready_and_then_the_newest():
    ctx = Context()
    rclpy.init(args=[], context=ctx)
    node = Node('when_ready_probe', context=ctx)
    ready, got = threading.Event(), []
    wake = node.create_guard_condition(lambda: None)
    node.create_subscription(Int32, 'when_ready_probe', lambda m: (got.append(m.data),
                                                                  ready.clear()),
                             IMAGE_SUB_QOS, callback_group=WhenReady(ready.is_set))
    heard = []  # a second subscriber, always taking: shows what was published
    node.create_subscription(Int32, 'when_ready_probe', lambda m: heard.append(m.data),
                             IMAGE_SUB_QOS)
    pub = node.create_publisher(Int32, 'when_ready_probe', 10)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        wait_for(lambda: pub.get_subscription_count() == 2, 'subscribers matched')
        for i in range(1, 6):  # not ready: published and heard, never taken by the gated one
            pub.publish(Int32(data=i))
            wait_for(lambda i=i: heard and heard[-1] == i, f'message {i} heard')
        assert got == []
        ready.set()
        wake.trigger()  # what NewestWorker's on_idle does in the classifier
        wait_for(lambda: got, 'message taken once ready')
        assert got == [5]  # the newest; 1-4 were replaced in its depth-1 queue
        pub.publish(Int32(data=6))  # the callback made it not ready again
        wait_for(lambda: heard[-1] == 6, 'message 6 heard')
        ready.set()
        wake.trigger()
        wait_for(lambda: len(got) == 2, 'message 6 taken')
        assert got == [5, 6]
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        spinner.join(timeout=5.0)
