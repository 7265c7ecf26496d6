"""Conversion between ``sensor_msgs/Image`` and NumPy arrays without per-pixel Python work.

cv_bridge is not available from PyPI for ROS 2 (the ``cv-bridge`` wheel is a stale ROS 1 copy),
so the few encodings a camera publishes are handled here. Incoming messages are *viewed*, not
copied: :func:`image_to_array` returns ``np.frombuffer`` over ``msg.data`` with strides that
honour ``step`` (row padding), so the only copy of a frame is the one the consumer makes while
resizing it.

Any object with the fields of ``sensor_msgs/Image`` (``height``, ``width``, ``encoding``,
``is_bigendian``, ``step``, ``data``) is accepted, so this module needs no ROS installation.

``sensor_msgs/CompressedImage`` (JPEG or PNG, as image_transport's ``compressed`` plugin sends
them) is decoded with OpenCV after checks that need no decoding: a format string naming JPEG or
PNG, matching magic bytes, a complete stream (JPEG EOI / PNG IEND at the end) and the size the
header declares (JPEG SOF / PNG IHDR) within :data:`MAX_COMPRESSED_PIXELS`, so a PNG bomb or
a huge declared size is refused before any memory is allocated for pixels.
"""
from __future__ import annotations

import array
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ['ENCODINGS', 'ImageFormatError', 'image_to_array', 'array_to_image_fields',
           'MAX_IMAGE_BYTES', 'MAX_COMPRESSED_BYTES', 'MAX_COMPRESSED_PIXELS',
           'compressed_kind', 'compressed_size', 'compressed_to_array', 'message_to_array',
           'array_to_compressed_fields']

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


# -- sensor_msgs/CompressedImage ---------------------------------------------------------------
#: Largest compressed frame accepted (bytes of ``data``).
MAX_COMPRESSED_BYTES = 64 * 1024 * 1024
#: Largest width * height a compressed frame may declare (8K UHD, 7680x4320: about 100 MB as
#: BGR once decoded).
MAX_COMPRESSED_PIXELS = 7680 * 4320
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
_PNG_IEND = b'\x00\x00\x00\x00IEND\xaeB`\x82'
#: JPEG start-of-frame markers (they carry the size): C0-CF except DHT C4, JPG C8, DAC CC.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def compressed_kind(fmt: str) -> str:
    """'jpeg' or 'png' for a CompressedImage ``format`` as image_transport writes it
    (``'jpeg'``, ``'png'``, ``'bgr8; jpeg compressed bgr8'``, ``'rgb8; png compressed rgb8'``).

    Raises:
        ImageFormatError: any other format (compressedDepth, theora, unknown, empty).
    """
    text = str(fmt).strip().lower()
    words = set(text.replace(';', ' ').split())
    if 'compresseddepth' not in words and len(text) <= 64:
        if words & {'jpeg', 'jpg'}:
            return 'jpeg'
        if 'png' in words:
            return 'png'
    raise ImageFormatError(f'unsupported compressed format {str(fmt)[:64]!r}; supported: '
                           "JPEG or PNG ('jpeg', 'png', 'bgr8; jpeg compressed bgr8', ...)")


def _jpeg_size(buf: np.ndarray) -> tuple[int, int]:
    head = buf[:1 << 20].tobytes()  # the frame header comes after at most a few APP segments
    if not head.startswith(b'\xff\xd8\xff'):
        raise ImageFormatError('not a JPEG stream (no SOI marker)')
    i = 2
    for _ in range(256):
        if i + 4 > len(head) or head[i] != 0xFF:
            break
        marker = head[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        length = int.from_bytes(head[i + 2:i + 4], 'big')
        if marker in _JPEG_SOF:
            if i + 9 > len(head):
                break
            return (int.from_bytes(head[i + 7:i + 9], 'big'),
                    int.from_bytes(head[i + 5:i + 7], 'big'))
        i += 2 + max(length, 2)
    raise ImageFormatError('corrupt or truncated JPEG: no frame header (SOF) found')


def compressed_size(data, kind: str) -> tuple[int, int]:
    """(width, height) a JPEG or PNG stream declares, read from its header without decoding.

    Raises:
        ImageFormatError: wrong magic bytes, a truncated stream or no size in the header.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    if kind == 'png':
        head = buf[:24].tobytes()
        if not head.startswith(_PNG_MAGIC):
            raise ImageFormatError('not a PNG stream (bad signature)')
        if len(head) < 24 or head[12:16] != b'IHDR':
            raise ImageFormatError('corrupt or truncated PNG: no IHDR header')
        return int.from_bytes(head[16:20], 'big'), int.from_bytes(head[20:24], 'big')
    return _jpeg_size(buf)


def compressed_to_array(msg) -> ImageView:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG or PNG) to ``(H, W, 3)`` uint8 BGR.

    Everything that can be checked without decoding is checked first (see the module
    docstring), so hostile input costs no decoding and no large allocation.

    Raises:
        ImageFormatError: unsupported format string, more than :data:`MAX_COMPRESSED_BYTES`,
            magic bytes that do not match the format, a truncated stream, a declared size of
            zero or above :data:`MAX_COMPRESSED_PIXELS`, or data OpenCV cannot decode.
    """
    kind = compressed_kind(msg.format)
    buf = np.frombuffer(msg.data, dtype=np.uint8) if not isinstance(msg.data, np.ndarray) \
        else msg.data.reshape(-1).view(np.uint8)
    if buf.size > MAX_COMPRESSED_BYTES:
        raise ImageFormatError(f'compressed image of {buf.size} bytes exceeds the limit of '
                               f'{MAX_COMPRESSED_BYTES}')
    width, height = compressed_size(buf, kind)
    if width <= 0 or height <= 0 or width * height > MAX_COMPRESSED_PIXELS:
        raise ImageFormatError(f'{kind.upper()} declares {width}x{height} pixels; accepted: 1 '
                               f'to {MAX_COMPRESSED_PIXELS} pixels')
    tail = buf[-64:].tobytes()
    if kind == 'jpeg' and not tail.rstrip(b'\x00').endswith(b'\xff\xd9'):
        raise ImageFormatError('truncated JPEG: no end-of-image marker')
    if kind == 'png' and not tail.endswith(_PNG_IEND):
        raise ImageFormatError('truncated PNG: no IEND chunk at the end')
    pixels = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if pixels is None or pixels.shape[:2] != (height, width):
        raise ImageFormatError(f'{kind.upper()} data could not be decoded')
    return ImageView(pixels=pixels, order='bgr')


def message_to_array(msg) -> ImageView:
    """:func:`compressed_to_array` for a CompressedImage (it has ``format``), else
    :func:`image_to_array`. Raises ImageFormatError as they do."""
    return compressed_to_array(msg) if hasattr(msg, 'format') else image_to_array(msg)


def array_to_compressed_fields(pixels: np.ndarray, quality: int = 80) -> dict:
    """Fields (``format``, ``data``) of a ``sensor_msgs/CompressedImage`` holding a uint8 BGR
    ``(H, W, 3)`` frame as JPEG of ``quality`` (1-100), in image_transport's format string.

    Raises:
        ImageFormatError: pixels OpenCV cannot encode.
    """
    ok, encoded = cv2.imencode('.jpg', pixels, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ImageFormatError(f'cannot encode a {pixels.shape} {pixels.dtype} frame as JPEG')
    data = array.array('B')
    data.frombytes(encoded)
    return {'format': 'bgr8; jpeg compressed bgr8', 'data': data}
