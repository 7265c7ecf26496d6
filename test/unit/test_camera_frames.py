"""The camera node's frame path without a graph: fit_frame into a reused buffer and the one
copy into the sensor_msgs/Image (gesture_classifier.nodes.camera), on a real photo."""
from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time

from gesture_classifier.nodes.camera import fit_frame, frame_to_image


@pytest.fixture
def photo(real_image):
    return cv2.imread(str(real_image), cv2.IMREAD_COLOR)  # 224x224


def test_fit_frame_keeps_a_frame_of_the_right_size(photo):
    buffer = np.zeros((224, 224, 3), np.uint8)
    assert fit_frame(photo, 224, 224, buffer) is photo
    assert fit_frame(photo, 0, 0, buffer) is photo
    assert not buffer.any(), 'no resize, so the buffer is not written'


def test_fit_frame_resizes_into_the_buffer(photo):
    fresh = fit_frame(photo, 640, 480)
    assert fresh.shape == (480, 640, 3)
    buffer = fit_frame(photo, 640, 480)
    other = cv2.flip(photo, 1)
    out = fit_frame(other, 640, 480, buffer)
    assert out is buffer
    np.testing.assert_array_equal(out, cv2.resize(other, (640, 480),
                                                  interpolation=cv2.INTER_AREA))
    assert fit_frame(photo, 640, 480, out) is buffer
    np.testing.assert_array_equal(buffer, fresh)


@pytest.mark.parametrize('unfit', [np.zeros((480, 641, 3), np.uint8),
                                   np.zeros((480, 1280, 3), np.uint8)[:, ::2]],
                         ids=['size', 'strided'])
def test_fit_frame_allocates_when_the_buffer_does_not_fit(photo, unfit):
    out = fit_frame(photo, 640, 480, unfit)
    assert out is not unfit and out.shape == (480, 640, 3)
    assert not unfit.any()
    np.testing.assert_array_equal(out, fit_frame(photo, 640, 480))


def test_the_message_owns_its_pixels(photo):
    """The Image is the one copy: overwriting the frame and the resize buffer after the
    conversion (as the next capture does) leaves the message as it was."""
    stamp = Time(sec=1, nanosec=2)
    frame = photo.copy()
    buffer = fit_frame(frame, 320, 240)
    msg = frame_to_image(frame, stamp, 320, 240, 'cam', resize_buffer=buffer)
    expected = cv2.resize(photo, (320, 240), interpolation=cv2.INTER_AREA)
    frame[:] = 0
    buffer[:] = 0
    assert (msg.width, msg.height, msg.step, msg.encoding) == (320, 240, 960, 'bgr8')
    assert msg.header.stamp == stamp and msg.header.frame_id == 'cam'
    np.testing.assert_array_equal(np.frombuffer(msg.data, np.uint8).reshape(240, 320, 3),
                                  expected)
    same = frame_to_image(photo, stamp, 0, 0, 'cam')
    kept = np.frombuffer(same.data, np.uint8).reshape(photo.shape)
    assert not np.shares_memory(kept, photo)
    np.testing.assert_array_equal(kept, photo)


def test_the_message_is_the_one_copy(photo):
    """frame_to_image allocates one copy of the frame (the message's data): Image(data=...)
    would copy it twice more in the generated constructor and setter."""
    frame = cv2.resize(photo, (1280, 720), interpolation=cv2.INTER_AREA)
    frame_to_image(frame, Time(), 0, 0, 'cam')  # imports and first-use caches
    tracemalloc.start()
    try:
        msg = frame_to_image(frame, Time(), 0, 0, 'cam')
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frame.nbytes <= peak < 1.2 * frame.nbytes, f'{peak} bytes for {frame.nbytes}'
    np.testing.assert_array_equal(np.frombuffer(msg.data, np.uint8).reshape(frame.shape), frame)
