"""The collector node as it was before it ran on one executor thread, for bench/collect.py
only: the reference of the idle-CPU comparison, measured in the same run as the product.

Before: rclpy's ``MultiThreadedExecutor`` with 4 threads spun the node (frames and timers in
one mutually exclusive callback group, services reentrant), so that a burst's ``collect`` could
block one thread while another delivered the frames it saved.

``python -m bench.legacy_collector --ros-args ...`` runs the collector node that way.
"""
from __future__ import annotations

from rclpy.executors import MultiThreadedExecutor


def main(args=None):
    from gesture_classifier.nodes import collector
    from gesture_classifier.ros.runtime import run_node
    run_node(collector.CollectorNode, args,
             executor_factory=lambda: MultiThreadedExecutor(num_threads=4))


if __name__ == '__main__':
    main()
