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
PNG, a stream Pillow reads as that format, a complete stream (JPEG EOI / PNG IEND at the end)
and the size the header declares (read by Pillow, which opens images lazily: JPEG SOF / PNG
IHDR, no pixels) within :data:`MAX_COMPRESSED_PIXELS`, so a PNG bomb or a huge declared size
is refused before any memory is allocated for pixels.
"""
from __future__ import annotations

import array
import io
import threading
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import JpegImagePlugin, PngImagePlugin

__all__ = ['ENCODINGS', 'ImageFormatError', 'image_to_array', 'array_to_image_fields',
           'fill_image',
           'MAX_IMAGE_BYTES', 'MAX_COMPRESSED_BYTES', 'MAX_COMPRESSED_PIXELS',
           'compressed_kind', 'compressed_size', 'compressed_to_array', 'message_to_array',
           'array_to_compressed_fields', 'fill_compressed']

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

    Passing ``data`` to a generated message's constructor copies it again, twice with field
    checks off (the default of Jazzy and later): ``__init__`` does ``array.array('B', data)``
    and the setter copies once more. To build a message with one copy, use
    :func:`fill_image`.

    Args:
        pixels: ``(H, W, C)`` or ``(H, W)`` uint8 array; C must match ``encoding``.
        encoding: one of :data:`ENCODINGS`.

    Returns:
        dict with ``height``, ``width``, ``encoding``, ``is_bigendian`` (0), ``step``
        (``W * C``, no padding) and ``data`` (``array.array('B')``, the type rclpy stores).

    Raises:
        ImageFormatError: wrong dtype, shape or encoding.
    """
    pixels, fields = _image_layout(pixels, encoding)
    data = array.array('B')
    data.frombytes(np.ascontiguousarray(pixels))
    fields['data'] = data
    return fields


def fill_image(msg, pixels: np.ndarray, encoding: str):
    """Set the fields of the ``sensor_msgs/Image`` ``msg`` to hold ``pixels``, copied once
    into the message's own ``data`` array (replacing what it held); returns ``msg``.

    The pixels are appended to the ``array.array`` the message already has (``msg.data``
    returns it, no copy) rather than assigned: a generated setter copies an assigned array
    when field checks are off. Afterwards the message shares no memory with ``pixels``.
    Arguments and errors as in :func:`array_to_image_fields`.
    """
    pixels, fields = _image_layout(pixels, encoding)
    for name, value in fields.items():
        setattr(msg, name, value)
    data = msg.data
    if not isinstance(data, array.array) or data.typecode != 'B':
        msg.data = data = array.array('B')
    del data[:]
    data.frombytes(np.ascontiguousarray(pixels))
    return msg


def _image_layout(pixels: np.ndarray, encoding: str) -> tuple[np.ndarray, dict]:
    """``pixels`` as ``(H, W, C)`` (a view) and the Image fields but ``data``; checks them."""
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
    return pixels, {'height': height, 'width': width, 'encoding': encoding, 'is_bigendian': 0,
                    'step': width * channels}


# -- sensor_msgs/CompressedImage ---------------------------------------------------------------
#: Largest compressed frame accepted (bytes of ``data``).
MAX_COMPRESSED_BYTES = 64 * 1024 * 1024
#: Largest width * height a compressed frame may declare (8K UHD, 7680x4320: about 100 MB as
#: BGR once decoded).
MAX_COMPRESSED_PIXELS = 7680 * 4320
_PNG_IEND = b'\x00\x00\x00\x00IEND\xaeB`\x82'
#: Bytes of a stream the header is looked for in (the frame header comes after at most a few
#: metadata segments).
HEADER_BYTES = 1 << 20


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


_declared = threading.local()


class _JpegHeader(JpegImagePlugin.JpegImageFile):
    """Pillow's JPEG reader, keeping the size it read even when Pillow then refuses the
    image (a zero width or height), so the refusal can say what the stream declared."""

    def _open(self):
        super()._open()
        _declared.size = self.size


class _PngHeader(PngImagePlugin.PngImageFile):
    """Pillow's PNG reader (as _JpegHeader)."""

    def _open(self):
        super()._open()
        _declared.size = self.size


#: kind -> (Pillow reader, message when the magic bytes are wrong, when the size is missing).
_READERS = {
    'jpeg': (_JpegHeader, 'not a JPEG stream (no SOI marker)',
             'corrupt or truncated JPEG: no frame header (SOF) found'),
    'png': (_PngHeader, 'not a PNG stream (bad signature)',
            'corrupt or truncated PNG: no IHDR header'),
}
_MAGIC = {'jpeg': b'\xff\xd8\xff', 'png': b'\x89PNG\r\n\x1a\n'}


def compressed_size(data, kind: str) -> tuple[int, int]:
    """(width, height) a JPEG or PNG stream declares, read from its header by Pillow without
    decoding the pixels.

    Raises:
        ImageFormatError: wrong magic bytes, a truncated stream or no size in the header.
    """
    head = np.frombuffer(data, dtype=np.uint8)[:HEADER_BYTES].tobytes()
    reader, not_this_kind, no_size = _READERS[kind]
    if not head.startswith(_MAGIC[kind]):
        raise ImageFormatError(not_this_kind)
    _declared.size = None
    try:
        reader(io.BytesIO(head)).close()
    except Exception:  # Pillow's errors for a malformed header vary (SyntaxError, OSError, ...)
        if _declared.size is None:
            raise ImageFormatError(no_size) from None
    return _declared.size


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
    data = array.array('B')
    data.frombytes(_jpeg(pixels, quality))
    return {'format': JPEG_FORMAT, 'data': data}


def fill_compressed(msg, pixels: np.ndarray, quality: int = 80):
    """:func:`array_to_compressed_fields` into the ``sensor_msgs/CompressedImage`` ``msg``,
    the JPEG bytes copied once into the message's own ``data`` array (see
    :func:`fill_image` for why not through the constructor); returns ``msg``."""
    encoded = _jpeg(pixels, quality)
    msg.format = JPEG_FORMAT
    data = msg.data
    if not isinstance(data, array.array) or data.typecode != 'B':
        msg.data = data = array.array('B')
    del data[:]
    data.frombytes(encoded)
    return msg


#: ``format`` of the JPEG CompressedImage messages this package makes (image_transport's).
JPEG_FORMAT = 'bgr8; jpeg compressed bgr8'


def _jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    ok, encoded = cv2.imencode('.jpg', pixels, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ImageFormatError(f'cannot encode a {pixels.shape} {pixels.dtype} frame as JPEG')
    return encoded
