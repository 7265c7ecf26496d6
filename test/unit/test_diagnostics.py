"""The diagnostics helpers and the fallback used where diagnostic_updater is not installed."""
from __future__ import annotations

import time

from diagnostic_msgs.msg import DiagnosticStatus

from gesture_classifier.nodes import diagnostics
from gesture_classifier.nodes.diagnostics import Latencies, RateMeter


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
    meter = RateMeter()
    meter.rate()
    for _ in range(20):
        meter.tick()
    time.sleep(0.2)
    assert 50 <= meter.rate() <= 101  # 20 events in 0.2 s (and a little more under load)
    assert meter.rate() == 0.0 or meter.count == 20


def test_latencies_median_of_the_newest():
    lat = Latencies(keep=3)
    assert lat.median() is None
    for v in (9.0, 0.1, 0.2, 0.3):
        lat.add(v)
    assert lat.median() == 0.2
