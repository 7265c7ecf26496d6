"""Conversion between ``sensor_msgs/Image`` and NumPy arrays without per-pixel Python work.

cv_bridge is not available from PyPI for ROS 2 (the ``cv-bridge`` wheel is a stale ROS 1 copy),
so the few encodings a camera publishes are handled here. Incoming messages are *viewed*, not
copied: :func:`image_to_array` returns ``np.frombuffer`` over ``msg.data`` with strides that
honour ``step`` (row padding), so the only copy of a frame is the one the consumer makes while
resizing it.

Any object with the fields of ``sensor_msgs/Image`` (``height``, ``width``, ``encoding``,
``is_bigendian``, ``step``, ``data``) is accepted, so this module needs no ROS installation.
"""
from __future__ import annotations

import array
from dataclasses import dataclass

import numpy as np

__all__ = ['ENCODINGS', 'ImageFormatError', 'image_to_array', 'array_to_image_fields',
           'MAX_IMAGE_BYTES']

#: Supported encodings (REP-118 / sensor_msgs/image_encodings names) -> channels, and the
#: channel order of colour images. All are 8 bits per channel.
ENCODINGS: dict[str, tuple[int, str]] = {
    'rgb8': (3, 'rgb'),
    'bgr8': (3, 'bgr'),
    'rgba8': (4, 'rgb'),
    'bgra8': (4, 'bgr'),
    'mono8': (1, 'mono'),
    '8UC1': (1, 'mono'),
    '8UC3': (3, 'bgr'),  # OpenCV's default order
}

#: Upper bound for one frame (an 8K RGBA frame is about 133 MB); larger claims are refused
#: before any reshaping.
MAX_IMAGE_BYTES = 256 * 1024 * 1024


class ImageFormatError(ValueError):
    """An image message whose fields are inconsistent or whose encoding is unsupported."""


@dataclass(frozen=True)
class ImageView:
    """A frame as an array view.

    Attributes:
        pixels: ``(height, width, channels)`` uint8 array, channels 1, 3 or 4; a view of the
            message buffer (not necessarily C-contiguous when ``step`` has padding).
        order: 'rgb', 'bgr' or 'mono': the meaning of the first three channels.
    """

    pixels: np.ndarray
    order: str


def image_to_array(msg) -> ImageView:
    """View a ``sensor_msgs/Image`` as ``(H, W, C)`` uint8 without copying.

    Raises:
        ImageFormatError: unsupported encoding (the message lists the supported ones), zero or
            oversize dimensions, ``step`` smaller than ``width * channels``, or ``data`` shorter
            than ``step * height``. Extra bytes after the last row are ignored.
    """
    encoding = msg.encoding
    if encoding not in ENCODINGS:
        raise ImageFormatError(f'unsupported encoding {encoding!r}; supported: '
                               f'{", ".join(sorted(ENCODINGS))}')
    channels, order = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageFormatError(f'empty image: {width}x{height}')
    row = width * channels
    if step < row:
        raise ImageFormatError(f'step {step} is smaller than width*channels = {row} '
                               f'for {width}x{height} {encoding}')
    needed = step * height
    if needed > MAX_IMAGE_BYTES:
        raise ImageFormatError(f'image of {needed} bytes exceeds the limit of {MAX_IMAGE_BYTES}')
    data = msg.data
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else \
        data.reshape(-1).view(np.uint8)
    if buf.size < needed:
        raise ImageFormatError(f'data has {buf.size} bytes, step*height = {needed} needed '
                               f'for {width}x{height} {encoding} with step {step}')
    # Row padding is skipped by slicing, and splitting the row into (width, channels) keeps the
    # view: NumPy reshapes a strided 2-D slice without copying.
    pixels = buf[:needed].reshape(height, step)[:, :row].reshape(height, width, channels)
    return ImageView(pixels=pixels, order=order)


def array_to_image_fields(pixels: np.ndarray, encoding: str) -> dict:
    """Fields of a ``sensor_msgs/Image`` holding ``pixels`` (one copy into an ``array.array``).

    Args:
        pixels: ``(H, W, C)`` or ``(H, W)`` uint8 array; C must match ``encoding``.
        encoding: one of :data:`ENCODINGS`.

    Returns:
        dict with ``height``, ``width``, ``encoding``, ``is_bigendian`` (0), ``step``
        (``W * C``, no padding) and ``data`` (``array.array('B')``, the type rclpy stores).

    Raises:
        ImageFormatError: wrong dtype, shape or encoding.
    """
    if encoding not in ENCODINGS:
        raise ImageFormatError(f'unsupported encoding {encoding!r}')
    if pixels.dtype != np.uint8:
        raise ImageFormatError(f'pixels must be uint8, got {pixels.dtype}')
    channels = ENCODINGS[encoding][0]
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] != channels:
        raise ImageFormatError(f'{encoding} needs (H, W, {channels}) pixels, '
                               f'got shape {pixels.shape}')
    height, width = pixels.shape[:2]
    data = array.array('B')
    data.frombytes(np.ascontiguousarray(pixels))
    return {'height': height, 'width': width, 'encoding': encoding, 'is_bigendian': 0,
            'step': width * channels, 'data': data}
