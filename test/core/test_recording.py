"""Which frames a burst or recording saves, and when it ends (no ROS, simulated clock)."""
from __future__ import annotations

from pathlib import Path

import pytest

from gesture_classifier.core.recording import Recording


def _rec(**kw):
    args = dict(label='thumbs_up', max_count=3, min_gap=0.2, started=100.0, deadline=110.0,
                stall_after=1.0)
    args.update(kw)
    return Recording(**args)


def _feed(rec, frames):
    """Offer ``(stamp_ns, arrival s)`` frames; save the ones wanted; return their stamps."""
    saved = []
    for stamp, now in frames:
        if rec.wants(stamp, now):
            rec.saved(Path(f'/d/{stamp}.jpg'), stamp, now)
            saved.append(stamp)
            rec.times.append(now)
    return saved


def test_never_the_same_frame_twice_and_at_most_every_min_gap():
    rec = _rec(max_count=20, min_gap=0.2)
    # 30 FPS; stamps repeat (a camera republishing a frame) and go back once
    frames = [(1000 + i // 2, 100.0 + i / 30) for i in range(60)] + [(5, 102.5)]
    rec.times = []
    saved = _feed(rec, frames)
    assert len(saved) >= 8 and saved == sorted(set(saved))  # strictly newer stamps only
    assert all(b - a >= 0.2 - 1e-9 for a, b in zip(rec.times, rec.times[1:]))
    assert 5 not in saved and rec.running


def test_ends_at_max_count():
    rec = _rec(max_count=3, min_gap=0.0)
    rec.times = []
    assert _feed(rec, [(i, 100 + i * 0.01) for i in range(1, 10)]) == [1, 2, 3]
    assert not rec.running and rec.saved_count == 3 and 'all 3' in rec.reason
    assert not rec.wants(100, 101.0)  # an ended recording wants nothing
    assert rec.wait(0) and not rec.failed


def test_ends_at_deadline_and_on_stall():
    rec = _rec(deadline=101.0, stall_after=5.0)
    rec.check(100.5)
    assert rec.running
    rec.check(101.0)
    assert not rec.running and 'max_duration' in rec.reason and not rec.failed
    rec = _rec(stall_after=1.0)
    rec.times = []
    _feed(rec, [(1, 100.1)])
    rec.check(101.0)
    assert rec.running
    rec.check(101.2)
    assert not rec.running and rec.failed and 'camera' in rec.reason


def test_first_reason_stays_and_bad_values():
    rec = _rec()
    rec.finish('stopped')
    rec.finish('something else', failed=True)
    assert rec.reason == 'stopped' and not rec.failed
    assert 'saved 0 of 3 under thumbs_up: stopped' == rec.summary()
    with pytest.raises(ValueError):
        _rec(max_count=0)
    with pytest.raises(ValueError):
        _rec(min_gap=float('nan'))


def test_never_the_same_content_twice_even_under_new_stamps():
    # a looping folder source republishes its 3 photos with new stamps: each is saved once
    rec = _rec(max_count=20, min_gap=0.0)
    saved = []
    for i in range(12):
        stamp, now, digest = 1000 + i, 100.0 + i / 15, f'photo{i % 3}'
        if rec.wants(stamp, now, digest):
            rec.saved(Path(f'/d/{stamp}.jpg'), stamp, now, digest)
            saved.append(digest)
    assert saved == ['photo0', 'photo1', 'photo2']
    assert rec.running


def test_done_callbacks_run_once_when_it_ends_or_at_once_when_it_has():
    rec = _rec(max_count=1)
    calls = []
    rec.add_done_callback(lambda: calls.append('early'))
    assert calls == []
    rec.saved(Path('/d/1.jpg'), 1, 100.0)  # the last frame ends it
    rec.finish('stopped')  # a second end changes nothing and calls nothing again
    assert calls == ['early'] and rec.reason == 'saved all 1 frames'
    rec.add_done_callback(lambda: calls.append('late'))
    assert calls == ['early', 'late']
