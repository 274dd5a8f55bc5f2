"""The Faust adapter's stall watchdog decides only from lag, time and Faust's busy flags."""

from __future__ import annotations

import time

from stream_processors.faust_app import Watchdog


def test_a_worker_is_stalled_only_with_input_waiting_and_no_batch_for_the_limit(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    dog = Watchdog(stall_seconds=60)
    now[0] += 59
    assert not dog.stalled(False, lag=500)  # not long enough
    now[0] += 1
    assert dog.stalled(False, lag=500)
    assert not dog.stalled(False, lag=0)  # nothing waits: an idle worker is fine
    assert not dog.stalled(False, lag=None)


def test_recovery_and_rebalancing_count_as_work_and_a_batch_resets_the_clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    dog = Watchdog(stall_seconds=60)
    now[0] += 300
    assert not dog.stalled(True, lag=None)  # a long table recovery
    now[0] += 30
    assert not dog.stalled(False, lag=500)  # the clock started again when recovery ended
    now[0] += 30
    assert dog.stalled(False, lag=500)
    dog.batch_done()
    assert not dog.stalled(False, lag=500)
