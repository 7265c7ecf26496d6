"""The overlay drawing on real photos."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from gesture_classifier.core.overlay import draw_overlay

NAMES = ('thumbs_up', 'thumbs_down')


@pytest.fixture(scope='module')
def photo(thumbs_images):
    return cv2.imread(str(thumbs_images['thumbs_up'][0]))


def test_overlay_draws_on_a_copy(photo):
    before = photo.copy()
    out = draw_overlay(photo, 'bgr', NAMES, [0.8, 0.2], 'thumbs_up')
    assert np.array_equal(photo, before), 'the frame itself is not modified'
    assert out.shape == photo.shape and out.dtype == np.uint8
    changed = np.any(out != photo, axis=2)
    assert 0.01 < changed.mean() < 0.5, 'text and bars cover part of the frame, not all'
    assert not changed[-10:, -10:].any(), 'the far corner stays the photo'


def test_bars_follow_the_probabilities(photo):
    a = draw_overlay(photo, 'bgr', NAMES, [1.0, 0.0])
    b = draw_overlay(photo, 'bgr', NAMES, [0.0, 1.0])
    assert np.any(a != b)


@pytest.mark.parametrize('order,convert', [
    ('rgb', cv2.COLOR_BGR2RGB), ('mono', cv2.COLOR_BGR2GRAY), ('bgr', cv2.COLOR_BGR2BGRA),
    ('rgb', cv2.COLOR_BGR2RGBA)])
def test_every_channel_layout_gives_bgr(photo, order, convert):
    pixels = cv2.cvtColor(photo, convert)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    out = draw_overlay(pixels, order, NAMES, [0.5, 0.5])
    assert out.shape == photo.shape[:2] + (3,)


def test_tiny_frames_and_a_strided_view_work(photo):
    assert draw_overlay(photo[:8, :8], 'bgr', NAMES, [0.5, 0.5]).shape == (8, 8, 3)
    view = photo[::2, ::2]  # not contiguous
    assert draw_overlay(view, 'bgr', NAMES, [0.5, 0.5]).shape == view.shape


def test_unknown_layout_is_a_value_error(photo):
    with pytest.raises(ValueError, match='cannot draw'):
        draw_overlay(photo[:, :, :2], 'bgr', NAMES, [0.5, 0.5])
