"""Image files of a dataset, without torch: which files of a class folder are images, and a
camera frame stored as a sample (``<dataset_dir>/<class>/<uuid1>.jpg``, the DLI naming).
(The nodes that only handle files, the camera and the collector, then need no torch.)"""
from __future__ import annotations

import uuid
from pathlib import Path

import cv2
import numpy as np

from .fsutil import atomic_write, ensure_private_dir
from .tasks import Task

__all__ = ['IMAGE_SUFFIXES', 'JPEG_QUALITY', 'list_images', 'count_images', 'encode_sample',
           'write_sample', 'save_sample']

#: File suffixes read as images (lower case); others in a class folder are ignored.
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp')
#: JPEG quality of collected samples (OpenCV's default, as the DLI tool's bgr8_to_jpeg).
JPEG_QUALITY = 95


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; [] when it does not exist."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and
                  not p.name.startswith('.'))


def count_images(task: Task, label: str) -> int:
    """Number of image files stored under ``label`` (validated, see Task.class_dir)."""
    return len(list_images(task.class_dir(label)))


def encode_sample(pixels: np.ndarray, order: str) -> bytes:
    """A frame as the JPEG a sample is stored as (quality JPEG_QUALITY).

    Args:
        pixels: ``(H, W, C)`` uint8 frame as viewed by imaging.image_to_array.
        order: its channel order ('rgb', 'bgr' or 'mono').

    Raises:
        ValueError: the frame cannot be encoded as JPEG.
    """
    if order == 'rgb':
        bgr = cv2.cvtColor(np.ascontiguousarray(pixels[:, :, :3]), cv2.COLOR_RGB2BGR)
    elif order == 'mono':
        bgr = np.ascontiguousarray(pixels[:, :, 0])
    else:
        bgr = np.ascontiguousarray(pixels[:, :, :3])
    ok, jpeg = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError('OpenCV could not encode the frame as JPEG')
    return jpeg.tobytes()


def write_sample(task: Task, label: str, jpeg: bytes) -> Path:
    """Store an encoded frame as ``<dataset_dir>/<label>/<uuid1>.jpg`` (DLI naming),
    atomically (a new name each time: writers need no lock); returns its absolute path.

    Raises:
        InvalidNameError / ValueError: unsafe or unknown label (nothing is written).
        OSError: no space or I/O error; nothing partial is left behind.
    """
    folder = task.class_dir(label)
    ensure_private_dir(folder)
    path = folder / f'{uuid.uuid1()}.jpg'
    atomic_write(path, lambda f: f.write(jpeg), expected_size=len(jpeg))
    return path.resolve()


def save_sample(task: Task, label: str, pixels: np.ndarray, order: str) -> tuple[Path, int]:
    """:func:`encode_sample` and :func:`write_sample` of one frame.

    Returns:
        (absolute path written, number of images now under ``label``).

    Raises:
        as encode_sample and write_sample.
    """
    path = write_sample(task, label, encode_sample(pixels, order))
    return path, len(list_images(path.parent))
