"""The annotated image the classifier publishes for rviz / rqt_image_view / Foxglove: the frame
with the top label and its confidence, the stable gesture, and one bar per class.

Plain OpenCV drawing on a copy of the frame (rectangles and text, no per-pixel Python work).
"""
from __future__ import annotations

import cv2
import numpy as np

__all__ = ['draw_overlay']

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_GREEN, _GREY, _WHITE, _BLACK = (60, 200, 60), (90, 90, 90), (255, 255, 255), (0, 0, 0)


def draw_overlay(pixels: np.ndarray, order: str, class_names, probabilities,
                 gesture: str = '') -> np.ndarray:
    """A BGR copy of a frame with the prediction drawn on it.

    Args:
        pixels: ``(H, W, C)`` uint8 frame, C 1, 3 or 4 (any strides).
        order: 'rgb', 'bgr' or 'mono', the channel order of ``pixels``.
        class_names: the N class names.
        probabilities: N values in [0, 1], index-aligned with ``class_names``.
        gesture: the stable gesture ('' for none), shown under the top label.

    Returns:
        ``(H, W, 3)`` uint8 BGR array (a new array; ``pixels`` is not modified).

    Raises:
        ValueError: a channel count or order OpenCV cannot convert.
    """
    channels = pixels.shape[2] if pixels.ndim == 3 else 1
    codes = {('rgb', 3): cv2.COLOR_RGB2BGR, ('rgb', 4): cv2.COLOR_RGBA2BGR,
             ('bgr', 4): cv2.COLOR_BGRA2BGR, ('mono', 1): cv2.COLOR_GRAY2BGR}
    if (order, channels) == ('bgr', 3):
        out = pixels.copy(order='C')  # one copy to draw on, contiguous
    elif (order, channels) in codes:
        out = cv2.cvtColor(np.ascontiguousarray(pixels), codes[(order, channels)])
    else:
        raise ValueError(f'cannot draw on a {channels}-channel {order!r} frame')
    height, width = out.shape[:2]
    scale = max(0.4, min(width, height) / 480)
    thick = max(1, int(round(scale * 2)))
    probs = np.asarray(probabilities, dtype=np.float32)
    top = int(probs.argmax()) if probs.size else -1
    line = int(28 * scale)
    y = line
    if top >= 0:
        _text(out, f'{class_names[top]} {probs[top]:.2f}', (8, y), scale, thick)
        y += line
    _text(out, f'gesture: {gesture or "none"}', (8, y), scale * 0.8, thick)
    y += line // 2
    bar_w = max(10, width // 3)
    for i, (name, p) in enumerate(zip(class_names, probs)):
        y0 = y + i * line
        if y0 + line > height:
            break
        cv2.rectangle(out, (8, y0), (8 + bar_w, y0 + line - 6), _GREY, -1)
        cv2.rectangle(out, (8, y0), (8 + int(bar_w * float(np.clip(p, 0, 1))), y0 + line - 6),
                      _GREEN, -1)
        _text(out, name, (14 + bar_w, y0 + line - 10), scale * 0.6, max(1, thick - 1))
    return out


def _text(img, text: str, org, scale: float, thick: int) -> None:
    """White text with a black outline, readable on any background."""
    cv2.putText(img, text, org, _FONT, scale, _BLACK, thick + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, _FONT, scale, _WHITE, thick, cv2.LINE_AA)
