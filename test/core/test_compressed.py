"""sensor_msgs/CompressedImage decoding on real photos, and hostile compressed data: truncated
streams, PNG bombs, huge declared sizes, wrong format strings, random bytes."""
from __future__ import annotations

import array
import struct
import zlib
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gesture_classifier.core import imaging
from gesture_classifier.core.imaging import (MAX_COMPRESSED_PIXELS, ImageFormatError,
                                        array_to_compressed_fields, compressed_kind,
                                        compressed_size, compressed_to_array, fill_compressed,
                                        message_to_array)


def _msg(data: bytes, fmt: str = 'jpeg'):
    return SimpleNamespace(format=fmt, data=data)


@pytest.fixture(scope='module')
def photo(thumbs_images):
    """A real JPEG photo: its bytes and OpenCV's decoding of it."""
    path = thumbs_images['thumbs_up'][0]
    return path.read_bytes(), cv2.imread(str(path))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack('>I', len(payload)) + kind + payload + \
        struct.pack('>I', zlib.crc32(kind + payload))


def _png(width: int, height: int, idat: bytes, bit_depth: int = 8, colour: int = 0) -> bytes:
    ihdr = struct.pack('>IIBBBBB', width, height, bit_depth, colour, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + _png_chunk(b'IHDR', ihdr) + _png_chunk(b'IDAT', idat) +
            _png_chunk(b'IEND', b''))


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if OpenCV is asked to decode."""
    def fail(*a):
        raise AssertionError('refused input must not reach the decoder')
    monkeypatch.setattr(imaging.cv2, 'imdecode', fail)


@pytest.mark.parametrize('fmt', ['jpeg', 'bgr8; jpeg compressed bgr8', 'rgb8; jpeg compressed '
                                 'bgr8', 'JPEG', 'jpg'])
def test_real_jpeg_decodes_like_opencv(photo, fmt):
    data, expected = photo
    view = compressed_to_array(_msg(data, fmt))
    assert view.order == 'bgr' and np.array_equal(view.pixels, expected)
    assert compressed_size(np.frombuffer(data, np.uint8), 'jpeg') == (expected.shape[1],
                                                                      expected.shape[0])


def test_real_photo_as_png_decodes_losslessly(photo):
    _, pixels = photo
    ok, png = cv2.imencode('.png', pixels)
    view = message_to_array(_msg(png.tobytes(), 'bgr8; png compressed bgr8'))
    assert np.array_equal(view.pixels, pixels)


def test_camera_encoding_round_trip(photo):
    _, pixels = photo
    fields = array_to_compressed_fields(pixels, quality=95)
    assert fields['format'] == 'bgr8; jpeg compressed bgr8'
    decoded = compressed_to_array(SimpleNamespace(**fields)).pixels
    assert decoded.shape == pixels.shape
    assert np.abs(decoded.astype(int) - pixels).mean() < 3  # JPEG at quality 95


def test_fill_compressed_replaces_the_messages_data_with_the_same_jpeg(photo):
    _, pixels = photo
    msg = SimpleNamespace(format='', data=array.array('B', b'old bytes'))
    data = msg.data
    assert fill_compressed(msg, pixels, quality=95) is msg
    assert msg.data is data, 'filled in place, not replaced (no copy by a setter)'
    assert msg.format == 'bgr8; jpeg compressed bgr8'
    assert msg.data.tobytes() == array_to_compressed_fields(pixels, quality=95)['data'].tobytes()
    np.testing.assert_array_equal(compressed_to_array(msg).pixels,
                                  compressed_to_array(SimpleNamespace(
                                      **array_to_compressed_fields(pixels, 95))).pixels)


@pytest.mark.parametrize('cut', [0.3, 0.9, 0.999])
def test_truncated_jpeg_is_refused(photo, cut, no_decoding):
    data, _ = photo
    with pytest.raises(ImageFormatError, match='truncated|corrupt'):
        compressed_to_array(_msg(data[:int(len(data) * cut)]))


def test_truncated_png_is_refused(photo, no_decoding):
    ok, png = cv2.imencode('.png', photo[1])
    with pytest.raises(ImageFormatError, match='truncated PNG'):
        compressed_to_array(_msg(png.tobytes()[:-20], 'png'))


def test_png_bomb_is_refused_before_decoding(no_decoding):
    # 6000x6000 zeros: 36 MB of pixels from 36 kB of data, over the limit; a small file with a
    # huge declared size is the whole point of a bomb.
    rows = zlib.compressobj(9)
    idat = b''.join(rows.compress(b'\x00' * 6001) for _ in range(6000)) + rows.flush()
    bomb = _png(6000, 6000, idat)
    assert len(bomb) < 100_000 and 6000 * 6000 > MAX_COMPRESSED_PIXELS
    with pytest.raises(ImageFormatError, match='declares 6000x6000'):
        compressed_to_array(_msg(bomb, 'png'))


@pytest.mark.parametrize('size', [(2**31 - 1, 2**31 - 1), (1, 2**32 - 1), (0, 10), (10, 0)])
def test_huge_or_zero_declared_png_size_is_refused(size, no_decoding):
    with pytest.raises(ImageFormatError, match='declares'):
        compressed_to_array(_msg(_png(*size, zlib.compress(b'\x00')), 'png'))


def test_huge_declared_jpeg_size_is_refused(photo, no_decoding):
    data = bytearray(photo[0])
    sof = next(i for i in range(2, len(data) - 1)
               if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC1, 0xC2))
    data[sof + 5:sof + 9] = b'\xff\xff\xff\xff'  # 65535x65535
    with pytest.raises(ImageFormatError, match='declares 65535x65535'):
        compressed_to_array(_msg(bytes(data)))


@pytest.mark.parametrize('fmt', ['', 'tiff', 'rgb8', '16UC1; compressedDepth png',
                                 'theora', 'jpeg' * 40, 'pngx'])
def test_wrong_format_string_is_refused(photo, fmt, no_decoding):
    with pytest.raises(ImageFormatError, match='unsupported compressed format'):
        compressed_to_array(_msg(photo[0], fmt))
    with pytest.raises(ImageFormatError):
        compressed_kind(fmt)


def test_format_and_data_that_disagree_are_refused(photo, no_decoding):
    with pytest.raises(ImageFormatError, match='not a PNG'):
        compressed_to_array(_msg(photo[0], 'png'))
    ok, png = cv2.imencode('.png', photo[1])
    with pytest.raises(ImageFormatError, match='not a JPEG'):
        compressed_to_array(_msg(png.tobytes(), 'jpeg'))


def test_oversize_data_is_refused_unread(no_decoding, monkeypatch):
    monkeypatch.setattr(imaging, 'MAX_COMPRESSED_BYTES', 1000)
    with pytest.raises(ImageFormatError, match='exceeds the limit'):
        compressed_to_array(_msg(b'\xff\xd8\xff' + b'\x00' * 2000))


@given(data=st.one_of(st.binary(max_size=2000),
                      st.binary(max_size=2000).map(lambda b: b'\xff\xd8\xff' + b),
                      st.binary(max_size=2000).map(lambda b: b'\x89PNG\r\n\x1a\n' + b)),
       fmt=st.sampled_from(['jpeg', 'png', 'bgr8; jpeg compressed bgr8', 'x']))
@settings(max_examples=300, deadline=None, derandomize=True, database=None)
def test_random_bytes_raise_only_image_format_error(data, fmt):
    try:
        view = compressed_to_array(_msg(data, fmt))
    except ImageFormatError:
        return
    assert view.pixels.dtype == np.uint8 and view.pixels.ndim == 3
