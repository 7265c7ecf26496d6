"""The gesture debouncer (plain Python): stable runs become events, flickers do not."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gesture_classifier.core.gestures import CHANGE, HOLD, NONE, DebounceConfig, Debouncer

NAMES = ('thumbs_up', 'thumbs_down')
UP, DOWN, UNSURE = [0.9, 0.1], [0.1, 0.9], [0.5, 0.5]


def feed(deb, frames, rate=30.0, start=0.0, names=NAMES):
    """Feed probability rows at ``rate`` Hz; returns the events with their frame index."""
    out = []
    for i, p in enumerate(frames):
        ev = deb.update(p, names, start + i / rate)
        if ev is not None:
            out.append((i, ev))
    return out


def test_a_stable_run_gives_one_change_event_after_min_frames():
    deb = Debouncer(DebounceConfig(threshold=0.6, smoothing=0.0, min_frames=3))
    events = feed(deb, [UP] * 10)
    assert [(i, e.kind, e.label, e.previous) for i, e in events] == [(2, CHANGE, 'thumbs_up',
                                                                       NONE)]
    ev = events[0][1]
    assert ev.since == 0.0 and ev.confidence == pytest.approx(0.9)
    assert deb.label == 'thumbs_up'


def test_a_single_frame_flicker_gives_no_event():
    deb = Debouncer(DebounceConfig(smoothing=0.0, min_frames=3))
    events = feed(deb, [UP] * 5 + [DOWN] + [UP] * 5)
    assert [e.label for _, e in events] == ['thumbs_up']
    # without a stable gesture, a lone frame never makes one either
    deb = Debouncer(DebounceConfig(smoothing=0.0, min_frames=2))
    assert feed(deb, [UNSURE, UP, UNSURE, DOWN, UNSURE]) == []


def test_smoothing_absorbs_a_flicker_even_with_min_frames_1():
    deb = Debouncer(DebounceConfig(smoothing=0.8, min_frames=1))
    events = feed(deb, [UP] * 10 + [DOWN] + [UP] * 5)
    assert [e.label for _, e in events] == ['thumbs_up']


def test_change_to_another_gesture_and_to_none():
    deb = Debouncer(DebounceConfig(smoothing=0.0, min_frames=2))
    events = feed(deb, [UP] * 4 + [DOWN] * 4 + [UNSURE] * 4)
    assert [(i, e.label, e.previous) for i, e in events] == [
        (1, 'thumbs_up', NONE), (5, 'thumbs_down', 'thumbs_up'), (9, NONE, 'thumbs_down')]
    assert events[1][1].since == pytest.approx(4 / 30)
    assert events[2][1].confidence == pytest.approx(0.5)  # the best, below the threshold


def test_min_duration_counts_frame_time():
    deb = Debouncer(DebounceConfig(smoothing=0.0, min_frames=1, min_duration=0.5))
    events = feed(deb, [UP] * 30, rate=10.0)  # 0.1 s apart: stable at the 6th frame (0.5 s)
    assert [i for i, _ in events] == [5]


def test_hold_events_at_hold_rate():
    deb = Debouncer(DebounceConfig(smoothing=0.0, min_frames=1, hold_rate=2.0))
    events = feed(deb, [UP] * 31, rate=10.0)  # 3 s
    assert [(i, e.kind) for i, e in events] == [(0, CHANGE), (5, HOLD), (10, HOLD), (15, HOLD),
                                               (20, HOLD), (25, HOLD), (30, HOLD)]
    assert all(e.label == 'thumbs_up' and e.since == 0.0 for _, e in events)


def test_reconfigure_takes_effect_on_the_next_frame():
    deb = Debouncer(DebounceConfig(threshold=0.95, smoothing=0.0, min_frames=2))
    assert feed(deb, [UP] * 5) == []  # 0.9 < 0.95: never a candidate
    deb.reconfigure(DebounceConfig(threshold=0.8, smoothing=0.0, min_frames=2))
    events = feed(deb, [UP] * 5, start=1.0)
    assert [(i, e.label) for i, e in events] == [(1, 'thumbs_up')]


def test_another_model_resets_the_state():
    deb = Debouncer(DebounceConfig(smoothing=0.0, min_frames=3))
    feed(deb, [UP] * 5)
    ev = deb.update([0.2, 0.2, 0.6], ('a', 'b', 'c'), 1.0)
    assert (ev.kind, ev.label, ev.previous) == (CHANGE, NONE, 'thumbs_up')
    assert deb.label == NONE


def test_time_going_backwards_restarts_the_run():
    deb = Debouncer(DebounceConfig(smoothing=0.0, min_frames=3))
    assert deb.update(UP, NAMES, 5.0) is None
    assert deb.update(UP, NAMES, 5.1) is None
    assert deb.update(UP, NAMES, 0.0) is None  # camera looped: run starts again here
    assert deb.update(UP, NAMES, 0.1) is None
    assert deb.update(UP, NAMES, 0.2).label == 'thumbs_up'


@pytest.mark.parametrize('bad', [[0.5], [0.5, 0.5, 0.0], [math.nan, 1.0], [[0.5, 0.5]]])
def test_malformed_probabilities_are_refused(bad):
    with pytest.raises(ValueError, match='finite values'):
        Debouncer().update(bad, NAMES, 0.0)


@pytest.mark.parametrize('field,value', [
    ('threshold', -0.1), ('threshold', 1.5), ('threshold', math.nan), ('threshold', 'high'),
    ('smoothing', 1.0), ('smoothing', math.inf), ('min_frames', 0), ('min_frames', 2.5),
    ('min_frames', True), ('min_duration', -1.0), ('min_duration', 61.0), ('hold_rate', 11.0)])
def test_config_out_of_range_or_wrong_type_is_refused(field, value):
    with pytest.raises(ValueError, match=field):
        DebounceConfig(**{field: value}).check()


@given(rows=st.lists(st.lists(st.floats(0, 1), min_size=2, max_size=2), max_size=60),
       threshold=st.floats(0, 1), smoothing=st.floats(0, 0.99), min_frames=st.integers(1, 5))
@settings(max_examples=200, deadline=None, derandomize=True, database=None)
def test_properties(rows, threshold, smoothing, min_frames):
    """Events alternate consistently (each CHANGE's previous is the label before it), labels
    are classes or NONE, confidences are probabilities, and a change needs min_frames."""
    deb = Debouncer(DebounceConfig(threshold, smoothing, min_frames))
    label = NONE
    for i, r in enumerate(rows):
        total = sum(r)
        p = np.array(r) / total if total > 0 else np.array([0.5, 0.5])
        ev = deb.update(p, NAMES, i / 30)
        if ev is None:
            continue
        assert ev.kind in (CHANGE, HOLD) and ev.label in (NONE, *NAMES)
        assert 0.0 <= ev.confidence <= 1.0 + 1e-9
        if ev.kind == CHANGE:
            assert ev.previous == label and ev.label != label
            assert i + 1 >= min_frames
            label = ev.label
    assert deb.label == label


def test_held_gestures_repeat_again_after_time_goes_backwards():
    """A looping video source restarts its stamps: HOLD events must not stop until the new
    stamps pass the old ones."""
    deb = Debouncer(DebounceConfig(smoothing=0.0, min_frames=1, hold_rate=2.0))
    first = feed(deb, [UP] * 60, start=100.0)  # 2 s: the change and HOLDs
    assert [e.kind for _, e in first][:2] == [CHANGE, HOLD]
    again = feed(deb, [UP] * 60, start=0.0)  # back to t = 0 s, 2 s more
    assert sum(e.kind == HOLD for _, e in again) >= 3
