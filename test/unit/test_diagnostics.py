"""The diagnostics helpers and the fallback used where diagnostic_updater is not installed."""
from __future__ import annotations

import pytest
from diagnostic_msgs.msg import DiagnosticStatus

from gesture_classifier.ros import diagnostics
from gesture_classifier.ros.diagnostics import Latencies, RateMeter


def test_status_wrapper_summary_and_values():
    stat = diagnostics.DiagnosticStatusWrapper()
    stat.summary(diagnostics.WARN, 'no model yet')
    stat.add('rate (Hz)', 12.5)
    stat.add('input stale', False)
    assert stat.level == DiagnosticStatus.WARN and stat.message == 'no model yet'
    assert [(kv.key, kv.value) for kv in stat.values] == [('rate (Hz)', '12.5'),
                                                         ('input stale', 'False')]
    assert isinstance(stat, DiagnosticStatus)  # publishable in a DiagnosticArray


def test_rate_meter_counts_per_report():
    now = [100.0]
    meter = RateMeter(clock=lambda: now[0])
    assert meter.rate() == 0.0  # no time has passed since it was made
    for _ in range(20):
        meter.tick()
    now[0] += 0.2
    assert meter.rate() == pytest.approx(100.0)  # 20 events in 0.2 s
    meter.tick(3)
    now[0] += 1.5
    assert meter.rate() == pytest.approx(2.0)  # only the events since the previous report
    now[0] += 1.0
    assert meter.rate() == 0.0 and meter.count == 23


def test_rate_meter_restart_leaves_out_the_time_before():
    now = [100.0]
    meter = RateMeter(clock=lambda: now[0])
    now[0] += 5.0  # e.g. a camera being opened: no events, and not a slow rate
    meter.restart()
    meter.tick(10)
    now[0] += 1.0
    assert meter.rate() == pytest.approx(10.0) and meter.window == pytest.approx(1.0)


def test_latencies_median_of_the_newest():
    lat = Latencies(keep=3)
    assert lat.median() is None
    for v in (9.0, 0.1, 0.2, 0.3):
        lat.add(v)
    assert lat.median() == 0.2
