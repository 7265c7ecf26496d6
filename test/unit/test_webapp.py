"""The web node's HTTP side without ROS: access rules and the JPEG encoding of real frames.
(The page itself, with the real nodes and a real browser, is tested in
test/integration/test_web.py.)"""
from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from gesture_classifier.core.imaging import ImageFormatError, array_to_image_fields
from gesture_classifier.web.app import effective_token, encode_jpeg, is_loopback


@pytest.mark.parametrize('host, loopback', [
    ('127.0.0.1', True), ('127.1.2.3', True), ('localhost', True), ('::1', True),
    ('[::1]', True), ('0.0.0.0', False), ('::', False), ('192.168.1.5', False),
    ('robot.local', False), ('localhost.evil.example', False), ('', False)])
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback


def test_token_as_jupyter():
    assert effective_token('127.0.0.1', '') == ('', False)
    assert effective_token('127.0.0.1', 'mine') == ('mine', False)
    assert effective_token('0.0.0.0', 'mine') == ('mine', False)
    token, generated = effective_token('0.0.0.0', '')
    assert generated and len(token) == 32
    assert effective_token('0.0.0.0', '')[0] != token, 'a new random token each start'


def _msg(pixels, encoding):
    return SimpleNamespace(**array_to_image_fields(pixels, encoding))


@pytest.mark.parametrize('encoding', ['bgr8', 'rgb8', 'bgra8', 'rgba8', 'mono8'])
def test_real_frame_is_encoded_in_its_colours_and_scaled_down(real_image, encoding):
    bgr = cv2.resize(cv2.imread(str(real_image)), (640, 480), interpolation=cv2.INTER_AREA)
    pixels = {'bgr8': bgr, 'rgb8': bgr[..., ::-1], 'mono8': cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
              'bgra8': cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
              'rgba8': cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA)}[encoding]
    jpeg = encode_jpeg(_msg(np.ascontiguousarray(pixels), encoding), 320, 90)
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (240, 320, 3)
    expected = cv2.resize(bgr, (320, 240), interpolation=cv2.INTER_AREA)
    if encoding == 'mono8':
        expected = cv2.cvtColor(cv2.cvtColor(expected, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    # JPEG at quality 90: small mean error; swapped colours would be far off
    assert np.abs(decoded.astype(int) - expected).mean() < 6


def test_small_frame_is_not_scaled_up(real_image):
    frame = cv2.imread(str(real_image))  # 224x224
    jpeg = encode_jpeg(_msg(frame, 'bgr8'), 640, 80)
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (224, 224, 3)


def test_malformed_frame_is_refused():
    bad = SimpleNamespace(height=480, width=640, encoding='bgr8', is_bigendian=0, step=1920,
                          data=bytes(100))
    with pytest.raises(ImageFormatError):
        encode_jpeg(bad, 640, 80)
