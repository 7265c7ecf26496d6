"""``ros.client.GestureClient``'s own spinning thread: a callback that raises (here a
prediction listener, as a user's node may add) is logged and the client keeps receiving;
before, rclpy's ``spin()`` re-raised it, the thread ended silently and every later
``wait_for_prediction`` timed out; and a ``spin()`` that keeps failing is retried slowly, not
in a busy loop. A real publisher node over the real middleware."""
from __future__ import annotations

import time

import pytest
import rclpy
from gesture_interfaces.msg import Prediction
from rclpy.node import Node

from gesture_classifier.ros.client import ClientError, GestureClient
from gesture_classifier.ros.topics import PREDICTION_QOS

pytestmark = pytest.mark.graph


def test_a_raising_listener_neither_stops_the_client_nor_is_silent(capfd):
    context = rclpy.Context()
    rclpy.init(context=context)
    publisher_node = Node('prediction_source', namespace='/probe', context=context)
    pub = publisher_node.create_publisher(Prediction, 'predictions', PREDICTION_QOS)
    heard = []

    def listener(msg):
        heard.append(msg.header.frame_id)
        if msg.header.frame_id == 'bad':
            raise ValueError('a listener bug')

    with GestureClient('/probe', uses=('predictions',)) as client:
        client.add_prediction_listener(listener)
        deadline = time.monotonic() + 30
        while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pub.get_subscription_count() == 1, 'the client never subscribed'
        for frame_id in ('bad', 'good'):
            got = None
            for _ in range(60):  # best-effort QoS: publish until one arrives
                pub.publish(_prediction(frame_id))
                try:
                    got = client.wait_for_prediction(
                        lambda p, want=frame_id: p.header.frame_id == want, 0.5)
                    break
                except ClientError:
                    continue
            assert got is not None, f'no prediction {frame_id!r} after the listener raised'
        assert client._thread.is_alive()
    publisher_node.destroy_node()
    rclpy.shutdown(context=context)
    err = capfd.readouterr().err
    assert 'a callback of the client raised' in err and 'ValueError: a listener bug' in err
    assert heard.count('good') >= 1


def _prediction(frame_id: str) -> Prediction:
    msg = Prediction()
    msg.header.frame_id = frame_id
    return msg


def test_a_spin_that_keeps_failing_is_retried_slowly_and_close_still_ends_it():
    """Should the executor's ``spin()`` itself fail every time (a failure injected into the
    real client's executor once a raising listener has ended the running spin), the thread
    neither dies nor busy-loops: about 10 tries a second, and close() ends it."""
    context = rclpy.Context()
    rclpy.init(context=context)
    publisher_node = Node('prediction_source', namespace='/probe_spin', context=context)
    pub = publisher_node.create_publisher(Prediction, 'predictions', PREDICTION_QOS)
    tries = []

    def failing_spin(*args, **kwargs):
        tries.append(time.monotonic())
        raise RuntimeError('an executor that keeps failing')

    def listener(msg):
        raise ValueError('a listener bug')

    with GestureClient('/probe_spin', uses=('predictions',)) as client:
        executor = client._executor
        real_spin = executor.spin
        executor.spin = failing_spin  # used from the next spin() on
        client.add_prediction_listener(listener)
        deadline = time.monotonic() + 30
        while not tries and time.monotonic() < deadline:
            pub.publish(_prediction('bad'))  # best effort: until one arrives and raises
            time.sleep(0.1)
        assert tries, 'no prediction reached the raising listener'
        start = len(tries)
        time.sleep(1.0)
        assert client._thread.is_alive()
        assert 1 <= len(tries) - start <= 15, len(tries) - start
        executor.spin = real_spin
    client._thread.join(5)
    assert not client._thread.is_alive(), 'close() did not end the thread'
    publisher_node.destroy_node()
    rclpy.shutdown(context=context)
