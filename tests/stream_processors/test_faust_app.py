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


def _guarded_consumer(tmp_path):
    from faust.types import TP
    from faust.types.tuples import ConsumerMessage

    from stream_processors.faust_app import GuardedConsumer, build_app
    from stream_processors.channels import ChannelRules
    from stream_processors.steps import ProcessorConfig

    app = build_app("127.0.0.1:1", "unit", tmp_path, ProcessorConfig(ChannelRules.load()))
    consumer = app.consumer
    assert isinstance(consumer, GuardedConsumer)
    tp = TP("unit.links.v1", 2)
    assert tp.topic in consumer.guarded_topics
    consumer.assignment = lambda: {tp}
    app.topics.acks_enabled_for = lambda topic: True  # the conductor's, once the agents subscribe

    def message(offset: int) -> ConsumerMessage:
        m = ConsumerMessage(tp.topic, tp.partition, offset, 0.0, 0, [], b"k", b"v", None, 1, 1, tp)
        m.refcount = 1
        return m

    class Event:  # what the agent hands over: events with their message
        def __init__(self, m):
            self.message = m

    return consumer, tp, message, Event


def test_the_commit_never_passes_a_record_no_agent_processed(tmp_path):
    """The kill test lost links offset 309: committed 309, then 414, although no agent processed 309
    (Faust commits past a hole of one offset, and acks records a stream skipped)."""
    consumer, tp, message, Event = _guarded_consumer(tmp_path)
    consumer._committed_offset[tp] = 309
    later = [message(o) for o in range(310, 414)]
    consumer.batch_processed([Event(m) for m in later])
    assert all(m.ack(consumer) for m in later)
    assert consumer._new_offset(tp) is None  # Faust's own rule gave 414 here
    skipped = message(309)
    assert not skipped.ack(consumer)  # a record skipped as stale is acked by the stream: refused
    assert consumer._new_offset(tp) is None
    assert consumer.holes(0.0) == {tp: 309}
    again = message(309)  # read again after a seek, and processed
    consumer.batch_processed([Event(again)])
    assert again.ack(consumer)
    assert consumer._new_offset(tp) == 414
    assert consumer.holes(0.0) == {}


def test_a_partition_never_committed_commits_from_its_first_record(tmp_path):
    consumer, tp, message, Event = _guarded_consumer(tmp_path)
    records = [message(o) for o in (1, 2, 3)]
    consumer.batch_processed([Event(m) for m in records])
    for m in records:
        m.ack(consumer)
    assert consumer._new_offset(tp) is None  # nothing known committed yet: perform_seek sets the start
    consumer._committed_offset[tp] = 0  # the earliest offset (perform_seek, for a fresh group)
    assert consumer._new_offset(tp) is None  # offset 0 not processed
    first = message(0)
    consumer.batch_processed([Event(first)])
    first.ack(consumer)
    assert consumer._new_offset(tp) == 4
