"""Test-suite wide settings.

Every run gets its own ROS_DOMAIN_ID and keeps discovery on this host, so parallel runs and
other ROS processes on the machine never see each other (set before anything initialises
rclpy or starts a node process, which inherit the environment).
"""
import os
import random

os.environ['ROS_DOMAIN_ID'] = str(random.SystemRandom().randint(1, 100))
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')


def pytest_report_header(config):
    from importlib.metadata import PackageNotFoundError, version
    try:
        rclpy_version = version('ros-rclpy')
    except PackageNotFoundError:  # a ROS install from the distribution, not PyPI wheels
        rclpy_version = 'from the ROS installation'
    return (f'ROS 2 {os.environ.get("ROS_DISTRO") or os.environ.get("GC_ROS", "?")}: rclpy '
            f'{rclpy_version}; ROS_DOMAIN_ID={os.environ["ROS_DOMAIN_ID"]}')
