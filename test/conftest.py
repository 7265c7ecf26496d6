"""Test-suite wide settings.

Every run gets its own ROS_DOMAIN_ID and keeps discovery on this host, so parallel runs and
other ROS processes on the machine never see each other (set before anything initialises
rclpy or starts a node process, which inherit the environment).
"""
import contextlib
import os
import random
import subprocess

import pytest

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


@pytest.fixture(scope='session')
def mounted_tmpfs():
    """``with mounted_tmpfs(folder): ...`` mounts a real small file system on ``folder``."""
    return _mounted_tmpfs


@contextlib.contextmanager
def _mounted_tmpfs(path, size: str = '60m'):
    """Mount a tmpfs of ``size`` on the existing folder ``path`` for a test (a real small file
    system to fill up); skips the test unless root may mount (CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip('mounting a tmpfs needs root (CI runs as root)')
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(path)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f'cannot mount a tmpfs here: {r.stderr.strip()}')
    try:
        yield path
    finally:
        subprocess.run(['umount', '-l', str(path)], check=False)
