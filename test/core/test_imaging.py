"""sensor_msgs/Image <-> NumPy views, with duck-typed messages (no ROS needed)."""
from __future__ import annotations

import array
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

from gesture_classifier.core.imaging import (ENCODINGS, MAX_IMAGE_BYTES, ImageFormatError,
                                        array_to_image_fields, fill_image, image_to_array)

H, W = 5, 7


def _pixels(channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, channels), dtype=np.uint8)


def _msg(pixels: np.ndarray, encoding: str, pad: int = 0, kind: str = 'array',
         extra: int = 0) -> SimpleNamespace:
    """A message holding ``pixels`` with ``pad`` garbage bytes after every row and ``extra``
    bytes after the last row; ``data`` as array.array('B'), bytes or an ndarray."""
    h, w, c = pixels.shape
    step = w * c + pad
    rows = np.full((h, step), 0xAB, dtype=np.uint8)
    rows[:, :w * c] = pixels.reshape(h, w * c)
    raw = rows.tobytes() + b'\xcd' * extra
    if kind == 'array':
        data = array.array('B')
        data.frombytes(raw)
    elif kind == 'bytes':
        data = raw
    else:
        data = np.frombuffer(raw, dtype=np.uint8).copy()
    return SimpleNamespace(height=h, width=w, encoding=encoding, is_bigendian=0, step=step,
                           data=data)


def _buffer(data) -> np.ndarray:
    return data if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)


@pytest.mark.parametrize('kind', ['array', 'bytes', 'ndarray'])
@pytest.mark.parametrize('encoding', sorted(ENCODINGS))
def test_image_to_array_every_encoding(encoding, kind):
    channels, order = ENCODINGS[encoding]
    pixels = _pixels(channels)
    msg = _msg(pixels, encoding, kind=kind)
    view = image_to_array(msg)
    assert view.order == order
    assert view.pixels.dtype == np.uint8
    assert view.pixels.shape == (H, W, channels)
    np.testing.assert_array_equal(view.pixels, pixels)
    assert np.shares_memory(view.pixels, _buffer(msg.data)), 'the frame must be a view'


@pytest.mark.parametrize('kind', ['array', 'bytes'])
@pytest.mark.parametrize('encoding', sorted(ENCODINGS))
def test_row_padding_is_skipped_without_copy(encoding, kind):
    channels, _ = ENCODINGS[encoding]
    pixels = _pixels(channels, seed=1)
    msg = _msg(pixels, encoding, pad=5, kind=kind)
    assert msg.step == W * channels + 5
    view = image_to_array(msg)
    assert view.pixels.shape == (H, W, channels)
    np.testing.assert_array_equal(view.pixels, pixels)
    assert view.pixels.strides[0] == msg.step
    assert np.shares_memory(view.pixels, _buffer(msg.data))


def test_padding_values_never_appear():
    # Rows of zeros padded with 255: any padding leak would show up as a 255.
    pixels = np.zeros((4, 3, 3), dtype=np.uint8)
    rows = np.full((4, 3 * 3 + 5), 255, dtype=np.uint8)
    rows[:, :9] = 0
    msg = SimpleNamespace(height=4, width=3, encoding='rgb8', is_bigendian=0, step=14,
                          data=rows.tobytes())
    view = image_to_array(msg)
    np.testing.assert_array_equal(view.pixels, pixels)


def test_extra_bytes_after_last_row_are_ignored():
    pixels = _pixels(3, seed=2)
    msg = _msg(pixels, 'bgr8', pad=2, extra=11)
    np.testing.assert_array_equal(image_to_array(msg).pixels, pixels)


def test_bytes_backed_view_is_read_only_and_array_backed_is_writable():
    pixels = _pixels(3)
    assert not image_to_array(_msg(pixels, 'rgb8', kind='bytes')).pixels.flags.writeable
    msg = _msg(pixels, 'rgb8', kind='array')
    view = image_to_array(msg)
    assert view.pixels.flags.writeable
    view.pixels[0, 0, 0] ^= 0xFF  # writes go to the message buffer: proof of a view
    assert msg.data[0] == pixels[0, 0, 0] ^ 0xFF


@pytest.mark.parametrize('encoding', sorted(ENCODINGS))
def test_round_trip_through_array_to_image_fields(encoding):
    channels, order = ENCODINGS[encoding]
    pixels = _pixels(channels, seed=3)
    fields = array_to_image_fields(pixels, encoding)
    assert fields['height'] == H and fields['width'] == W
    assert fields['encoding'] == encoding and fields['is_bigendian'] == 0
    assert fields['step'] == W * channels
    assert isinstance(fields['data'], array.array) and fields['data'].typecode == 'B'
    assert len(fields['data']) == H * W * channels
    view = image_to_array(SimpleNamespace(**fields))
    assert view.order == order
    np.testing.assert_array_equal(view.pixels, pixels)


def test_array_to_image_fields_copies_and_accepts_2d_mono():
    gray = _pixels(1)[:, :, 0]
    fields = array_to_image_fields(gray, 'mono8')
    gray[0, 0] ^= 0xFF  # the message must not change with the source
    view = image_to_array(SimpleNamespace(**fields))
    assert view.pixels.shape == (H, W, 1)
    assert view.pixels[0, 0, 0] == gray[0, 0] ^ 0xFF
    np.testing.assert_array_equal(view.pixels[1:, :, 0], gray[1:])


@pytest.mark.parametrize('encoding', ['bgr8', 'mono8'])
def test_fill_image_copies_once_into_the_messages_own_array(encoding):
    """fill_image replaces what the message held, shares no memory with the pixels, and
    allocates one copy of them (the message's data), nothing more."""
    channels = ENCODINGS[encoding][0]
    old = _pixels(channels, seed=1)
    msg = SimpleNamespace(height=0, width=0, encoding='', is_bigendian=1, step=0,
                          data=array.array('B'))
    data = msg.data
    assert fill_image(msg, old, encoding) is msg
    big = np.random.default_rng(2).integers(0, 256, (720, 1280, channels), dtype=np.uint8)
    tracemalloc.start()
    try:
        fill_image(msg, big, encoding)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert big.nbytes <= peak < 1.2 * big.nbytes, f'{peak} bytes for a {big.nbytes} frame'
    assert msg.data is data and len(msg.data) == big.nbytes
    assert (msg.height, msg.width, msg.step) == (720, 1280, 1280 * channels)
    assert (msg.encoding, msg.is_bigendian) == (encoding, 0)
    view = image_to_array(msg)
    assert not np.shares_memory(view.pixels, big)
    big[0, 0] ^= 0xFF
    np.testing.assert_array_equal(view.pixels[1:], big[1:])
    assert view.pixels[0, 0, 0] == big[0, 0, 0] ^ 0xFF


def test_fill_image_refuses_what_array_to_image_fields_refuses():
    msg = SimpleNamespace(data=array.array('B'))
    with pytest.raises(ImageFormatError):
        fill_image(msg, _pixels(3).astype(np.float32), 'bgr8')
    with pytest.raises(ImageFormatError):
        fill_image(msg, _pixels(4), 'bgr8')
    assert len(msg.data) == 0


def test_array_to_image_fields_of_a_non_contiguous_array():
    pixels = _pixels(3)[:, ::-1]  # negative stride
    view = image_to_array(SimpleNamespace(**array_to_image_fields(pixels, 'rgb8')))
    np.testing.assert_array_equal(view.pixels, pixels)


@pytest.mark.parametrize('pixels, encoding, match', [
    (np.zeros((2, 2, 3), np.float32), 'rgb8', 'uint8'),
    (np.zeros((2, 2, 4), np.uint8), 'rgb8', r'\(H, W, 3\)'),
    (np.zeros((2, 2), np.uint8), 'bgr8', r'\(H, W, 3\)'),
    (np.zeros((2, 2, 3), np.uint8), 'yuv422', 'unsupported'),
    (np.zeros((2,), np.uint8), 'mono8', 'mono8'),
])
def test_array_to_image_fields_errors(pixels, encoding, match):
    with pytest.raises(ImageFormatError, match=match):
        array_to_image_fields(pixels, encoding)


def _fields(**over) -> SimpleNamespace:
    base = dict(height=2, width=3, encoding='rgb8', is_bigendian=0, step=9, data=bytes(18))
    base.update(over)
    return SimpleNamespace(**base)


def test_valid_base_message():
    assert image_to_array(_fields()).pixels.shape == (2, 3, 3)


@pytest.mark.parametrize('encoding', ['yuv422', '16UC1', 'RGB8', '', 'bayer_rggb8', '32FC1'])
def test_unknown_encoding(encoding):
    with pytest.raises(ImageFormatError, match='unsupported encoding') as info:
        image_to_array(_fields(encoding=encoding))
    assert 'rgb8' in str(info.value) and 'mono8' in str(info.value)  # lists the supported


@pytest.mark.parametrize('over', [dict(width=0), dict(height=0), dict(width=-1, step=0),
                                  dict(height=-2)])
def test_empty_image(over):
    with pytest.raises(ImageFormatError, match='empty image'):
        image_to_array(_fields(**over))


@pytest.mark.parametrize('step', [8, 0, -9])
def test_step_smaller_than_row(step):
    with pytest.raises(ImageFormatError, match='step'):
        image_to_array(_fields(step=step))


@pytest.mark.parametrize('kind', ['bytes', 'array'])
def test_data_shorter_than_step_times_height(kind):
    data = bytes(17) if kind == 'bytes' else array.array('B', bytes(17))
    with pytest.raises(ImageFormatError, match='17 bytes'):
        image_to_array(_fields(data=data))
    # padding counts: 2 rows of step 10 need 20 bytes, 18 are not enough
    with pytest.raises(ImageFormatError, match='step'):
        image_to_array(_fields(step=10, data=bytes(18)))


def test_limit_is_inclusive():
    # exactly MAX_IMAGE_BYTES claimed but no data: refused for the data, not the size
    with pytest.raises(ImageFormatError, match='needed'):
        image_to_array(_fields(height=1, width=MAX_IMAGE_BYTES // 3, step=MAX_IMAGE_BYTES,
                               data=bytes(10)))


@pytest.mark.parametrize('over', [
    dict(height=100_000, width=100_000, step=300_000),           # 30 GB rgb8
    dict(height=1, width=MAX_IMAGE_BYTES // 3 + 1, step=MAX_IMAGE_BYTES + 3),
    dict(height=2**31, width=2**31, step=3 * 2**31),             # beyond int32
    dict(height=1, width=1, step=MAX_IMAGE_BYTES + 1),           # all padding
])
def test_oversize_claims_are_refused_without_allocating(over):
    tracemalloc.start()
    try:
        with pytest.raises(ImageFormatError, match='exceeds the limit'):
            image_to_array(_fields(data=bytes(18), **over))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f'{peak} bytes allocated while refusing'


def test_short_data_is_refused_without_allocating():
    # A plausible header (1080p) with a tiny payload: refused before any reshape or copy.
    tracemalloc.start()
    try:
        with pytest.raises(ImageFormatError, match='18 bytes'):
            image_to_array(_fields(height=1080, width=1920, step=1920 * 3, data=bytes(18)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_image_format_error_is_a_value_error():
    assert issubclass(ImageFormatError, ValueError)
