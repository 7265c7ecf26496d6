"""The review queue of uncertain frames (active learning), on real photos (no ROS)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gesture_classifier.core.active import (ReviewConfig, ReviewError, ReviewQueue, signature,
                                       uncertainty)

NAMES = ('thumbs_up', 'thumbs_down')
SURE, UNSURE, TIE = (0.95, 0.05), (0.6, 0.4), (0.5, 0.5)


@pytest.fixture(scope='module')
def frames(thumbs_images):
    """Real, different BGR photos."""
    paths = thumbs_images['thumbs_up'][:10] + thumbs_images['thumbs_down'][:10]
    return [cv2.imread(str(p)) for p in paths]


def _offer(q, frame, stamp, probs=UNSURE, trusted=True, ood=0.1):
    return q.offer(frame, 'bgr', stamp, 'camera', probs, NAMES, ood, trusted, 'model-a')


def test_uncertainty_is_one_minus_the_margin_plus_one_when_untrusted():
    assert uncertainty(np.array(SURE), True) == pytest.approx((0.1, 0.9))
    assert uncertainty(np.array(TIE), True) == pytest.approx((1.0, 0.0))
    assert uncertainty(np.array(SURE), False) == pytest.approx((1.1, 0.9))
    assert uncertainty(np.array([0.5, 0.3, 0.2]), True)[1] == pytest.approx(0.2)


def test_sure_frames_are_not_queued_and_unsure_ones_are_with_their_jpeg(frames):
    q = ReviewQueue(ReviewConfig(min_interval=0))
    assert _offer(q, frames[0], 1.0, SURE) is None
    f = _offer(q, frames[1], 2.0, UNSURE)
    assert f is not None and f.id == 1 and f.label == 'thumbs_up' and f.margin == \
        pytest.approx(0.2)
    decoded = cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == frames[1].shape
    assert np.abs(decoded.astype(int) - frames[1]).mean() < 4  # JPEG q95 of the same frame
    assert (f.width, f.height, f.model_id, f.frame_id) == (224, 224, 'model-a', 'camera')
    # an untrusted frame is queued even when the softmax is sure
    assert _offer(q, frames[2], 3.0, SURE, trusted=False) is not None


def test_frames_closer_than_min_interval_are_one_lesson(frames):
    q = ReviewQueue(ReviewConfig(min_interval=1.0))
    assert _offer(q, frames[0], 10.0) is not None
    assert _offer(q, frames[1], 10.5) is None
    assert _offer(q, frames[2], 11.0) is not None


def test_near_duplicates_are_not_queued_twice(frames):
    q = ReviewQueue(ReviewConfig(min_interval=0))
    assert _offer(q, frames[0], 1.0) is not None
    brighter = cv2.convertScaleAbs(frames[0], alpha=1.1, beta=5)  # same view, other exposure
    assert float(signature(brighter) @ signature(frames[0])) > 0.99
    assert _offer(q, brighter, 2.0) is None
    assert _offer(q, frames[5], 3.0) is not None


def test_a_full_queue_keeps_the_most_uncertain_frames(frames):
    q = ReviewQueue(ReviewConfig(capacity=3, min_interval=0))
    for i, p in enumerate([(0.7, 0.3), (0.6, 0.4), (0.65, 0.35)]):
        assert _offer(q, frames[i], float(i), p) is not None
    assert _offer(q, frames[3], 3.0, (0.72, 0.28)) is None  # less uncertain than all
    tie = _offer(q, frames[4], 4.0, TIE)
    assert tie is not None and len(q) == 3
    assert [round(f.margin, 2) for f in q.items()] == [0.0, 0.2, 0.3]  # 0.4 evicted


def test_take_removes_and_unknown_ids_are_a_clear_error(frames):
    q = ReviewQueue(ReviewConfig(min_interval=0))
    f = _offer(q, frames[0], 1.0)
    rev = q.revision
    assert q.get(f.id) == f and q.take(f.id) == f
    assert len(q) == 0 and q.revision > rev
    with pytest.raises(ReviewError, match='not in the review queue'):
        q.take(f.id)
    with pytest.raises(ReviewError):
        q.get(12345)
    q.put_back(f)  # labelling failed: nothing is lost
    assert q.get(f.id) == f


def test_clear_and_a_smaller_capacity_drop_frames(frames):
    q = ReviewQueue(ReviewConfig(min_interval=0))
    for i in range(5):
        _offer(q, frames[i], float(i), (0.5 + 0.05 * i, 0.5 - 0.05 * i))
    q.reconfigure(ReviewConfig(capacity=2, min_interval=0))
    assert [round(f.margin, 1) for f in q.items()] == [0.0, 0.1]
    assert q.clear() == 2 and len(q) == 0
    q.reconfigure(ReviewConfig(capacity=0))
    assert _offer(q, frames[0], 100.0, TIE) is None  # capacity 0: off


def test_a_frame_larger_than_the_limit_is_not_kept(frames):
    q = ReviewQueue(ReviewConfig(min_interval=0, max_frame_bytes=1024))
    assert _offer(q, frames[0], 1.0) is None


@pytest.mark.parametrize('field, value', [('capacity', 101), ('capacity', -1),
                                          ('min_uncertainty', float('nan')),
                                          ('min_interval', -1.0), ('duplicate_correlation', 2.0),
                                          ('capacity', True)])
def test_bad_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        ReviewConfig(**{field: value}).check()


def test_bad_probabilities_are_refused(frames):
    q = ReviewQueue()
    with pytest.raises(ValueError):
        q.offer(frames[0], 'bgr', 1.0, 'c', (0.5, float('nan')), NAMES, 0.0, True)
    with pytest.raises(ValueError):
        q.offer(frames[0], 'bgr', 1.0, 'c', (0.2, 0.3, 0.5), NAMES, 0.0, True)


@given(st.lists(st.tuples(st.integers(0, 19), st.floats(0, 100), st.floats(0.5, 1.0),
                          st.booleans()), max_size=40),
       st.integers(1, 5), st.floats(0, 2))
@settings(max_examples=60, deadline=None)
def test_any_stream_of_offers_keeps_the_queue_bounded_and_ids_unique(frames, offers, capacity,
                                                                     interval):
    q = ReviewQueue(ReviewConfig(capacity=capacity, min_interval=interval))
    seen = set()
    for index, stamp, top, trusted in offers:
        f = _offer(q, frames[index], stamp, (top, 1 - top), trusted)
        if f is not None:
            assert f.id not in seen
            seen.add(f.id)
        items = q.items()
        assert len(items) <= capacity
        assert len({f.id for f in items}) == len(items)
        assert all(f.uncertainty >= q.config.min_uncertainty for f in items)
        sigs = [signature(cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), cv2.IMREAD_COLOR))
                for f in items]
        assert all(float(a @ b) < 0.999 for i, a in enumerate(sigs) for b in sigs[i + 1:])
