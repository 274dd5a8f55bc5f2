"""The Faust adapter's stall watchdog decides only from lag, time, Faust's busy flags and crashed states."""

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


def test_the_watchdog_sees_an_app_or_an_agent_in_a_crashed_state():
    from types import SimpleNamespace

    from stream_processors.faust_app import crashed

    def agent(name: str, reason: BaseException | None = None) -> SimpleNamespace:
        return SimpleNamespace(name=name, crashed=reason is not None, crash_reason=reason)

    app = SimpleNamespace(crashed=False, crash_reason=None, agents={"enrich": agent("enrich"), "persons": agent("persons")})
    assert crashed(app) is None
    app.agents["persons"] = agent("persons", RuntimeError("boom"))
    assert "persons" in crashed(app) and "boom" in crashed(app)
    app.crashed, app.crash_reason = True, ConnectionError("broker")
    assert "the app" in crashed(app)


def test_a_worker_assigned_nothing_is_stalled_only_while_the_whole_group_stands_still(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    dog = Watchdog(stall_seconds=60)
    dog.group_progress(500)
    now[0] += 60
    dog.group_progress(900)  # other workers commit: this one idles, and that is fine
    assert not dog.stalled(False, lag=300)
    now[0] += 60
    dog.group_progress(900)  # no one commits while 300 records wait
    assert dog.stalled(False, lag=300)
