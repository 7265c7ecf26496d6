"""Shared fixtures of the ROS-free unit tests (real images from the shared data folder)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

#: /work/shared/data when the repository is /work/main.
SHARED_DATA = Path(__file__).resolve().parents[2].parent / 'shared' / 'data'
THUMBS = SHARED_DATA / 'thumbs_wincle626'
VIDEO = SHARED_DATA / 'videos' / 'upgrad_gesture_clips' / 'thumbs_up.mp4'
CLASSES = ('thumbs_up', 'thumbs_down')

# One intra-op thread: on the 2-core development VM, with other processes competing for the
# cores, OpenMP's spin-waiting makes a ResNet-18 forward pass about 15x slower with 2 threads
# (about 1 s instead of 0.06 s). Results do not depend on it; only the run time does.
torch.set_num_threads(1)


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
