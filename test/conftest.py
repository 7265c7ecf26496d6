"""Test-suite wide settings.

Every run gets its own ROS_DOMAIN_ID and keeps discovery on this host, so parallel runs and
other ROS processes on the machine never see each other (set before anything initialises
rclpy or starts a node process, which inherit the environment): GC_TEST_ROS_DOMAIN_ID when
set (scripts/test.sh gives each distribution's run its own: they may run side by side), else a
random one of 1-100.
"""
import contextlib
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

os.environ['ROS_DOMAIN_ID'] = (os.environ.get('GC_TEST_ROS_DOMAIN_ID')
                              or str(random.SystemRandom().randint(1, 100)))
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

#: /work/shared/data when the repository is /work/main.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / 'shared' / 'data'
THUMBS = SHARED_DATA / 'thumbs_wincle626'
VIDEO = SHARED_DATA / 'videos' / 'upgrad_gesture_clips' / 'thumbs_up.mp4'
CLASSES = ('thumbs_up', 'thumbs_down')


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


def pytest_collection_modifyitems(items):
    """A test that uses the ``browser`` fixture (test/integration/test_web.py) is a browser
    test: marked so, for ``-m browser`` / ``-m "not browser"``."""
    for item in items:
        if 'browser' in getattr(item, 'fixturenames', ()):
            item.add_marker(pytest.mark.browser)


# -- real images from the shared data folder ------------------------------------------------
def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f'shared test data not found: {path} (expected next to the repository, '
                    f'at <repo>/../shared/data)')
    return path


@pytest.fixture(scope='session')
def shared_data() -> Path:
    """The read-only shared data folder; skips the test when it is missing."""
    return _require(SHARED_DATA)


@pytest.fixture(scope='session')
def thumbs_images(shared_data) -> dict[str, list[Path]]:
    """``{'thumbs_up': [...], 'thumbs_down': [...]}``: the 224x224 JPEGs of thumbs_wincle626,
    sorted by name (40 per class)."""
    out = {}
    for label in CLASSES:
        files = sorted(_require(THUMBS / label).glob('*.jpg'))
        if len(files) < 10:
            pytest.skip(f'{THUMBS / label} has only {len(files)} images')
        out[label] = files
    return out


@pytest.fixture(scope='session')
def real_image(thumbs_images) -> Path:
    """One real 224x224 JPEG."""
    return thumbs_images['thumbs_up'][0]


@pytest.fixture(scope='session')
def video_file(shared_data) -> Path:
    """The 160x120, 30-frame thumbs-up clip."""
    return _require(VIDEO)


@pytest.fixture(scope='session')
def make_dataset(thumbs_images):
    """Factory: ``make_dataset(dataset_dir, per_class)`` copies the first ``per_class`` real
    images of each class to ``dataset_dir/<class>/`` and returns ``{class: [copied paths]}``."""

    def make(dataset_dir: Path, per_class: int, offset: int = 0) -> dict[str, list[Path]]:
        copied = {}
        for label in CLASSES:
            folder = dataset_dir / label
            folder.mkdir(parents=True, exist_ok=True)
            copied[label] = []
            for src in thumbs_images[label][offset:offset + per_class]:
                dst = folder / src.name
                shutil.copyfile(src, dst)
                copied[label].append(dst)
        return copied

    return make
