"""Faust adapter: a thin agent around the same pure steps the embedded runner drives.

At-least-once: outputs have deterministic ids (touch_id = event_id), so a message re-processed
after a crash produces identical rows that the warehouse collapses. A poison message becomes a
dead-letter record (the step says so) and the agent goes on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import faust
import mode
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.utils.functional import consecutive_numbers
from faust.streams import _current_event  # the context variable Faust's tables read the partition from

from schemas import topics

from .outputs import process_batch
from .persons import PERSONS_INPUTS, Persons, PersonsConfig
from .steps import ProcessorConfig


class TableStore:
    """A Faust table as the persons stage's store (RocksDB with a changelog topic)."""

    def __init__(self, table: "faust.Table") -> None:
        self._table = table

    def get(self, key: bytes) -> bytes | None:
        return self._table.get(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._table[key] = value

    def items_with_prefix(self, prefix: bytes):  # noqa: ANN201
        # once per project per worker start (the graph is then kept in memory)
        return ((k, v) for k, v in list(self._table.items()) if k.startswith(prefix))

log = logging.getLogger("moneytrail.worker")


async def changelog_delivered(app: faust.App) -> None:
    """Wait until the table writes made so far are acknowledged by Kafka.

    A table write puts its changelog record in Faust's producer buffer. Faust's commit flushes that
    buffer for at most 0.1 s a message and then commits the offsets anyway, so after a crash the
    events could be committed while their state writes never reached the changelog: the state is
    lost for good (seen in tests/integration/test_faust_restart.py: leads stored nowhere, their
    touches never credited). The agents call this before their events are acknowledged."""
    buffer = app.producer.buffer
    while buffer.size:
        await buffer.flush()
    await app.producer.flush()  # the Kafka client's own batches, acks=all


@contextmanager
def as_current(event: "faust.EventT") -> Iterator[None]:
    """Table writes inside go to this event's partition (store and changelog).

    Only the context variable of the agent's own task is set: Stream._set_current_event would also
    set the stream's attribute that take_events' background buffer reads, and clearing it there
    crashed the stream ("Take buffer found current_event is None") and stalled the worker."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


STALLED_EXIT_CODE = 70  # EX_SOFTWARE: the supervisor restarts the worker
CRASHED_EXIT_CODE = 75  # EX_TEMPFAIL: an agent or the app crashed (e.g. Kafka metadata stale after a broker restart)


def exit_for_restart(code: int, why: str, *args: object, exc: BaseException | None = None,
                     stacks: bool = False) -> None:
    """Log why and end the process at once with `code`, for the supervisor (compose `restart:
    unless-stopped`) to start it again: it resumes from its tables and committed offsets. A hard
    exit, so nothing runs in between: no commit of offsets whose state writes never happened, and
    no graceful stop that can hang as the worker did."""
    log.error(why + "; exit %s for a restart", *args, code, exc_info=exc)
    if stacks:
        from mode.utils.logging import cry

        cry(file=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # noqa: SLF001


class WorkerApp(faust.App):
    """An agent that raises is never restarted in place: the worker exits with CRASHED_EXIT_CODE.

    Faust's own handling commits the consumer's offsets and has its supervisor start the agent
    again on the same stream. Both are wrong for our batch agents: the crashed batch's events are
    acknowledged when its take_events generator is closed, so that commit can store offsets of
    events whose state writes never happened; and the restarted agent's take_events adds a second
    buffer to the stream while the dead one's stays, fills up and blocks the stream for good
    (faust issues #237, #262; issue 11: both agents crashed with PartitionsMismatch after a broker
    restart, "the changelog topic has 0 partitions" as the metadata was not refreshed yet, and the
    worker processed nothing more). The hard exit runs before any other task: nothing is committed."""

    async def _on_agent_error(self, agent, exc: BaseException) -> None:  # noqa: ANN001 - faust's hook
        exit_for_restart(CRASHED_EXIT_CODE, "agent %s crashed: %r", agent.name, exc, exc=exc)

    def _new_transport(self) -> GuardedTransport:
        return GuardedTransport(self.conf.broker_consumer, self)


class GuardedConsumer(aiokafka_driver.Consumer):
    """Faust's consumer, except that an offset of an agent's input is committed only once that
    record, and every record before it, went through an agent's whole batch.

    Faust's own bookkeeping can commit past a record no agent processed, and the record is then
    lost for good: `_new_offset` lets the committed offset jump a hole of one offset (it compares
    the first acked offset with the committed one as if that were the last processed, not the
    next to read), a stream acks a record it skipped as stale (flow control off, an old
    generation), and a jump in the fetched offsets after a seek is filled in as done (`_gap`). Seen
    in the kill test: links offset 309 (visitor dev-104-2's phone link) was committed by the
    restarted worker (committed 309, then 414) although its persons agent never processed it, so
    the device stayed a person of its own. Input topics are plain (no compaction, no transactions),
    so their offsets have no holes: a hole is a record that went astray, and the commit waits at it
    until the watchdog restarts the worker, which reads it again."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.processed: set[tuple[object, int]] = set()  # (tp, offset) whose batch is done, not yet acked
        self.held_since: dict[object, float] = {}  # tp -> since when its commit waits at a hole

    @property
    def guarded_topics(self) -> frozenset[str]:
        return getattr(self.app, "agent_inputs", frozenset())

    def batch_processed(self, events: list) -> None:
        """The agent's batch is done (outputs, state and changelog acknowledged): its records may be acked."""
        self.processed.update((e.message.tp, e.message.offset) for e in events)

    def ack(self, message: "faust.types.Message") -> bool:  # type: ignore[override]
        if message.topic in self.guarded_topics:
            key = (message.tp, message.offset)
            if key not in self.processed:
                return False  # skipped or never processed: the record is read again after a seek
            self.processed.discard(key)
        return super().ack(message)

    async def perform_seek(self) -> None:
        await super().perform_seek()
        # a partition the group never committed starts at its first record (auto_offset_reset earliest)
        fresh = [tp for tp in self.assignment() if tp.topic in self.guarded_topics and self._committed_offset[tp] is None]
        if fresh:
            for tp, offset in (await self.earliest_offsets(*fresh)).items():
                self._committed_offset[tp] = offset
        self.held_since.clear()

    def _new_offset(self, tp: "faust.types.TP") -> int | None:
        if tp.topic not in self.guarded_topics:
            return super()._new_offset(tp)
        self._gap.pop(tp, None)
        acked = self._acked[tp]
        committed = self._committed_offset[tp]
        if not acked or committed is None:
            return None
        acked.sort()
        if acked[0] < committed:  # acks that came in after a revocation, for records committed since
            stale = [o for o in acked if o < committed]
            acked[: len(stale)] = []
            self._acked_index[tp].difference_update(stale)
            if not acked:
                return None
        if acked[0] != committed:  # the next record to commit is not processed yet (or went astray)
            self.held_since.setdefault(tp, time.monotonic())
            return None
        self.held_since.pop(tp, None)
        run = next(consecutive_numbers(acked))
        acked[: len(run)] = []
        self._acked_index[tp].difference_update(run)
        return run[-1] + 1

    def holes(self, older_than: float) -> dict:
        """Assigned input partitions whose commit has waited at an unprocessed record for this long
        while later records were processed (tp -> the committed offset it waits at)."""
        now, assigned = time.monotonic(), self.assignment()
        return {tp: self._committed_offset[tp] for tp, since in self.held_since.items()
                if tp in assigned and now - since >= older_than and self._acked[tp]
                and min(self._acked[tp]) > self._committed_offset[tp]}


class GuardedTransport(aiokafka_driver.Transport):
    Consumer = GuardedConsumer


class ExitingSupervisor(mode.OneForOneSupervisor):
    """The supervisor of our agents' actors: an actor that died by any other way (cancelled
    outside a stop) is not restarted in place either, for the same reason as WorkerApp's."""

    async def restart_service(self, service: mode.ServiceT) -> None:
        exit_for_restart(CRASHED_EXIT_CODE, "agent actor %r died: %r", service, service.crash_reason)


class Watchdog:
    """Turns a stalled worker into a restarted one. Faust can stop feeding its agents after a
    restart or rebalance while it looks healthy (faust-streaming issues #229, #596; seen in the kill
    test about one start in twenty): the input has lag, and no batch finishes. A restart is safe:
    state is written only after outputs and changelog are acknowledged."""

    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self.last_batch = time.monotonic()
        self._group_committed: int | None = None

    def batch_done(self) -> None:
        self.last_batch = time.monotonic()

    def group_progress(self, committed: int) -> None:
        """For a worker with no input partitions: the group's committed offsets (summed over every
        input partition) moving on count as work (other workers have the partitions); standing
        still while records wait means no one works, e.g. this worker joined while the broker's
        metadata still lacked the topics and was assigned nothing (seen after a broker restart)."""
        if committed != self._group_committed:
            self._group_committed = committed
            self.batch_done()

    def stalled(self, busy_elsewhere: bool, lag: int | None) -> bool:
        """Whether to give up: no batch for stall_seconds while the input waits (lag > 0). Table
        recovery and rebalancing count as work (they can take long and feed no agent)."""
        if busy_elsewhere:
            self.batch_done()
            return False
        return time.monotonic() - self.last_batch >= self.stall_seconds and bool(lag)


def crashed(app: faust.App) -> str | None:
    """What crashed, if the app or one of its agents did (mode's crashed state; the app then feeds
    nothing, and its own timers stop)."""
    if app.crashed:
        return f"the app ({app.crash_reason!r})"
    for agent in app.agents.values():
        if agent.crashed:
            return f"agent {agent.name} ({agent.crash_reason!r})"
    return None


async def input_lag(bootstrap: str, group: str, assigned: set, topics_: set[str] = frozenset()) -> tuple[int, int]:
    """(records not yet committed by the group, the sum of its committed offsets) over the assigned
    input partitions, or over every partition of `topics_` when nothing is assigned."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    if not assigned and not topics_:
        return 0, 0
    admin, consumer = AIOKafkaAdminClient(bootstrap_servers=bootstrap), AIOKafkaConsumer(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        await consumer.start()
        if not assigned:
            await consumer.topics()  # every topic's metadata
            assigned = {TopicPartition(t, p) for t in topics_ for p in consumer.partitions_for_topic(t) or ()}
        committed = await admin.list_consumer_group_offsets(group)
        ends = await consumer.end_offsets(list(assigned))
        done = {tp: committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0 for tp in ends}
        return sum(max(0, end - done[tp]) for tp, end in ends.items()), sum(done.values())
    finally:
        with suppress(Exception):
            await consumer.stop()
        with suppress(Exception):
            await admin.close()


def new_app(bootstrap: str, data_dir: Path, app_id: str, web_port: int, partitions: int) -> WorkerApp:
    """The Faust app: raw bytes in and out, RocksDB tables, every produce acknowledged by all replicas."""
    return WorkerApp(
        app_id,
        broker=[f"kafka://{h}" for h in bootstrap.split(",")],
        store="rocksdb://",
        datadir=str(data_dir),
        producer_acks=-1,
        topic_partitions=partitions,
        topic_allow_declare=True,
        web_enabled=True,
        web_host="127.0.0.1",
        web_bind="127.0.0.1",  # web_host only names the URL; web_bind is where it listens
        web_port=web_port,
        key_serializer="raw",
        value_serializer="raw",
        stream_wait_empty=False,
        # a worker that died (SIGKILL, OOM, a lost host) is noticed in 10 s instead of 60, so its
        # partitions move to a live worker (or to itself restarted) quickly
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
    )


def output_topics(app: faust.App, prefix: str) -> dict[str, faust.TopicT]:
    """Every topic an agent writes, by its short name (topics.TOUCHES, ...)."""
    return {
        name: app.topic(topics.kafka_topic(prefix, name), key_type=bytes, value_type=bytes)
        for name in (topics.TOUCHES, topics.CONVERSIONS, topics.SPEND, topics.LEASES, topics.RATES, topics.DEAD_LETTERS,
                     topics.LINKS, topics.IDENTITY, topics.GUARDS, topics.CREDITS, topics.MATCHES)
    }


async def send_confirmed(out: dict[str, faust.TopicT], published: dict[str, list[tuple[bytes, bytes]]]) -> None:
    """Send every record of a batch, then wait until Kafka acknowledged each (acks=all), before the
    caller moves any state on: a crash in between re-emits the same records, never loses one."""
    sent = [await out[name].send(key=key, value=value) for name, records in published.items() for key, value in records]
    for fut in sent:
        await fut


async def batch_finished(app: faust.App, events: list, watchdog: Watchdog) -> None:
    """A batch's outputs are acknowledged and its state written: once the changelog is acknowledged
    too, its records may be committed (GuardedConsumer) and it counts as work for the watchdog."""
    await changelog_delivered(app)
    app.consumer.batch_processed(events)
    watchdog.batch_done()


def add_enrich(app: faust.App, raw: faust.TopicT, visitors: "faust.Table", out: dict[str, faust.TopicT],
               config: ProcessorConfig, watchdog: Watchdog) -> faust.types.AgentT:
    """Register stage 1 on the app: the raw topic through steps.PIPELINE, one visitor's session
    state per key in `visitors` (keyed like the raw topic, so co-partitioned with it)."""

    @app.agent(raw, name="enrich", supervisor_strategy=ExitingSupervisor)
    async def enrich(stream):  # noqa: ANN001 - faust's stream type
        # Batches, like the persons stage: the outputs of a batch are sent and acknowledged before
        # the visitors' new states are written, so a crash in between re-processes the events
        # against the old states and emits the same touches again (a state written first would
        # make the redelivered event look seen and its touch would never be emitted).
        async for events in stream.take_events(500, within=0.2):
            def stored(i: int, key: bytes) -> bytes | None:
                with as_current(events[i]):  # the visitor's partition (the raw record's own)
                    return visitors.get(key)

            batch = process_batch(config, [(e.key, e.value) for e in events], stored)
            await send_confirmed(out, batch.published)
            for key, (i, state) in batch.states.items():
                with as_current(events[i]):
                    visitors[key] = state.to_bytes()
            await batch_finished(app, events, watchdog)
            yield None

    return enrich


def persons_records(persons: Persons, name_of: dict[str, str], events: list) -> tuple[dict, dict]:
    """One batch through the persons stage: (its output records by topic, the last event of each
    project, whose partition that project's state writes go to)."""
    persons.begin_batch()
    records: dict[str, list[tuple[bytes, bytes]]] = {}
    last_of_project: dict[bytes, object] = {}
    for event in events:
        last_of_project[event.key] = event
        for name, recs in persons.step(name_of[event.message.topic], event.value).records().items():
            records.setdefault(name, []).extend(recs)
    for name, recs in persons.end_batch().records().items():
        records.setdefault(name, []).extend(recs)
    return records, last_of_project


def write_persons_state(persons: Persons, events: list, last_of_project: dict) -> None:
    """Apply the batch's pending table writes, each project's while one of its own events is
    current: Faust's table writes (store and changelog) go to the current event's partition."""
    for project, event in last_of_project.items():
        with as_current(event):  # the partition this project's rows belong to
            persons.overlay.flush_prefix(project + b"\x1f")
    if persons.overlay.pending:  # a record whose key is not its project: keep its writes anyway
        with as_current(events[-1]):
            persons.overlay.flush()


def add_persons_agent(app: faust.App, inputs: faust.TopicT, name_of: dict[str, str], persons: Persons,
                      out: dict[str, faust.TopicT], watchdog: Watchdog) -> faust.types.AgentT:
    """Register stage 2 on the app (`name_of`: the Kafka name of each input -> its short name), and
    the revocation handler that makes it reload its projects."""
    revoked_since_last_batch = False

    @app.on_partitions_revoked.connect
    def _revoked(sender, revoked, **kwargs) -> None:  # noqa: ANN001 - faust's signal
        # Another worker may advance these projects: reload from the table at the next batch. Not
        # here: a batch under way keeps its pending writes (its outputs are out; its offsets may
        # still be committed if the partitions come back to this worker).
        nonlocal revoked_since_last_batch
        revoked_since_last_batch = True

    @app.agent(inputs, name="persons", supervisor_strategy=ExitingSupervisor)
    async def persons_agent(stream):  # noqa: ANN001 - faust's stream type
        # Batches (stream.take_events): a conversion and the links that arrive with it are credited
        # once. The outputs are sent and acknowledged before the state writes are applied.
        nonlocal revoked_since_last_batch
        async for events in stream.take_events(500, within=0.2):
            if revoked_since_last_batch:
                revoked_since_last_batch = False
                persons.forget()
            records, last_of_project = persons_records(persons, name_of, events)
            await send_confirmed(out, records)
            write_persons_state(persons, events, last_of_project)
            await batch_finished(app, events, watchdog)
            yield None

    return persons_agent


def add_watchdog(app: faust.App, watchdog: Watchdog, bootstrap: str, group: str, inputs: frozenset[str]) -> None:
    """Register the task that exits the worker when the app or an agent crashed (75) or it stalled (70)."""
    stall_seconds = watchdog.stall_seconds

    @app.task
    async def _watch() -> None:
        # A task of its own, not an app.timer: a timer ends when the app crashes (mode's itertimer
        # stops on should_stop), and a check that raises (the broker down during an outage) ended
        # the timer for good; that is how a worker stalled after a broker restart without a word.
        interval, lag_every, lag_checked = max(1.0, min(5.0, stall_seconds / 4)), max(1.0, stall_seconds / 4), 0.0
        while True:
            await asyncio.sleep(interval)
            try:
                what = crashed(app)
                if what:
                    exit_for_restart(CRASHED_EXIT_CODE, "crashed: %s", what)
                if time.monotonic() - lag_checked >= lag_every:
                    lag_checked = time.monotonic()
                    await check_stall(app, watchdog, bootstrap, group, inputs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the watchdog must outlive any one check
                log.warning("watchdog check failed (retried in %.0f s): %r", interval, exc)


async def check_stall(app: faust.App, watchdog: Watchdog, bootstrap: str, group: str, inputs: frozenset[str]) -> None:
    """Exit 70 when a commit waits at a record no agent processed, or when input waits and no batch
    finished, for watchdog.stall_seconds; the restarted worker reads those records again."""
    stall_seconds = watchdog.stall_seconds
    holes = app.consumer.holes(stall_seconds)
    if holes:
        exit_for_restart(STALLED_EXIT_CODE, "stalled: the commit of %s waits at records no agent processed "
                         "(later ones were) for %s s; they are read again after the restart", holes, stall_seconds)
    if time.monotonic() - watchdog.last_batch < stall_seconds:
        return
    busy = bool(app.in_recovery or app.rebalancing)
    assigned = {tp for tp in app.consumer.assignment() if tp.topic in inputs}
    lag = None
    if not busy:
        lag, committed = await asyncio.wait_for(input_lag(bootstrap, group, assigned, inputs), stall_seconds)
        if not assigned:
            watchdog.group_progress(committed)
    if watchdog.stalled(busy, lag):
        exit_for_restart(STALLED_EXIT_CODE, "stalled: %s input records wait and no batch finished in %s s; "
                         "every task's stack follows", lag, stall_seconds, stacks=True)


def build_app(bootstrap: str, prefix: str, data_dir: Path, config: ProcessorConfig,
              app_id: str = "moneytrail-processors", web_port: int = 6066, partitions: int = 4,
              persons_config: PersonsConfig | None = None, stall_seconds: float = 60) -> faust.App:
    """The worker's app: stage 1 (`enrich`) and stage 2 (`persons`) agents, their tables, the watchdog."""
    app = new_app(bootstrap, data_dir, app_id, web_port, partitions)
    watchdog = Watchdog(stall_seconds)
    raw = app.topic(topics.kafka_topic(prefix, topics.RAW), key_type=bytes, value_type=bytes)
    out = output_topics(app, prefix)

    # one visitor's session state, keyed like the raw topic (project:anonymous_id), so the table is
    # co-partitioned with the stream and each worker holds the visitors of its partitions
    visitors = app.Table("visitors", key_type=bytes, value_type=bytes, partitions=partitions)
    add_enrich(app, raw, visitors, out, config, watchdog)

    # The persons stage: keyed by project (all four inputs are), so one project's identity graph
    # lives on one partition; its table is co-partitioned with the inputs (same partition count).
    persons_table = app.Table("persons", key_type=bytes, value_type=bytes, partitions=partitions)
    persons = Persons(TableStore(persons_table), persons_config or PersonsConfig())
    name_of = {topics.kafka_topic(prefix, t): t for t in PERSONS_INPUTS}
    inputs = app.topic(*name_of, key_type=bytes, value_type=bytes)
    add_persons_agent(app, inputs, name_of, persons, out, watchdog)

    inputs_of_agents = frozenset({raw.get_topic_name(), *name_of})
    app.agent_inputs = inputs_of_agents  # their commits are guarded (GuardedConsumer)
    add_watchdog(app, watchdog, bootstrap, app_id, inputs_of_agents)
    return app
