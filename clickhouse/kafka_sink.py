"""Distributed-mode sink: Kafka topics -> warehouse. Offsets are committed only after the insert
succeeded; while the warehouse is down the loop keeps retrying the same batch (same token) and
consumes nothing new, so nothing is lost and a retry adds 0 rows. Rows the warehouse refuses are
split out of the batch and dead-lettered (sink.insert_with_retry), so they never stop the topic."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, IllegalStateError

from schemas import topics

from .maintenance import Upkeep
from .sink import TABLE_OF_TOPIC, SinkHealth, convert, write_batch
from .warehouse import Warehouse

log = logging.getLogger("moneytrail.sink")
PLAN = "sink-batch-end:"  # commit metadata: the last offset of the batch being inserted from the committed one


class _Plans(ConsumerRebalanceListener):
    """Deterministic batch boundaries across a crash. Before a partition's batch [first, last] is
    inserted (token topic-partition-first-last), `first` is committed with the metadata
    PLAN + last; once inserted, last + 1 is committed. A sink that starts on a partition whose
    committed offset carries a plan (its predecessor died mid-insert, or a rebalance came between
    the insert and the commit) re-inserts exactly [first, last] under the same token, which the
    warehouse deduplicates; the batch boundaries otherwise depend on what a poll happened to
    return, and a re-read batch of other bounds would store its rows twice."""

    def __init__(self) -> None:
        self.unchecked: set[TopicPartition] = set()  # assigned, committed offset and plan not read yet
        self.known: dict[TopicPartition, tuple[int, int]] = {}  # tp -> (first, last) of an unfinished batch

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.unchecked |= set(assigned)

    async def check(self, consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient, group_id: str,
                    fetched: dict[TopicPartition, list[Any]]) -> bool:
        """Read committed offsets and plans of newly assigned partitions and put the consumer back
        at the committed offsets (at the first fetched record where none is committed yet); True
        when there were any: the caller drops what it fetched."""
        if not self.unchecked:
            return False
        tps, self.unchecked = list(self.unchecked), set()
        committed = await admin.list_consumer_group_offsets(group_id, partitions=tps)
        for tp in tps:
            self.known.pop(tp, None)
            done = committed.get(tp)
            if done is None or done.offset < 0:
                _rewind(consumer, {tp: fetched[tp]} if fetched.get(tp) else {})
                continue
            try:
                consumer.seek(tp, done.offset)
            except IllegalStateError:  # no longer ours
                continue
            if (done.metadata or "").startswith(PLAN):
                self.known[tp] = (done.offset, int(done.metadata[len(PLAN):]))
                log.info("%s-%d: re-inserting the unfinished batch %d-%s under its token", tp.topic, tp.partition,
                         done.offset, done.metadata[len(PLAN):])
        return True


def _rewind(consumer: AIOKafkaConsumer, parts: dict[TopicPartition, list[Any]]) -> None:
    for tp, msgs in parts.items():
        try:
            consumer.seek(tp, msgs[0].offset)
        except IllegalStateError:  # no longer ours: its next owner reads from the committed offset
            pass


async def run_kafka_sink(
    wh: Warehouse,
    bootstrap: str,
    prefix: str,
    group_id: str,
    stop: asyncio.Event,
    max_rows: int = 10_000,
    max_seconds: float = 0.5,
    prune_every_s: float = 0,
    health: SinkHealth | None = None,
) -> None:
    health = health if health is not None else SinkHealth()
    upkeep = Upkeep(wh, prune_every_s)
    by_kafka_name = {topics.kafka_topic(prefix, t): t for t in TABLE_OF_TOPIC}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_rows,
    )
    plans = _Plans()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    consumer.subscribe(list(by_kafka_name), listener=plans)
    log.info("sink consuming %s from %s", ", ".join(by_kafka_name), bootstrap)
    carry: dict[TopicPartition, list[Any]] = {}  # the first part of a planned batch, waiting for the rest
    try:
        while not stop.is_set():
            batch, carry = carry, {}
            count, started = sum(len(m) for m in batch.values()), time.monotonic()
            limit = max_rows + count
            while count < limit and time.monotonic() - started < max_seconds and not stop.is_set():
                got = await consumer.getmany(timeout_ms=int(max_seconds * 1000 / 2), max_records=limit - count)
                for tp, msgs in got.items():
                    batch.setdefault(tp, []).extend(msgs)
                    count += len(msgs)
                if not got and count:
                    break
            if await plans.check(consumer, admin, group_id, batch):
                continue  # a (re)assignment: positions are back at the committed offsets
            if upkeep.due():  # between two inserts
                await asyncio.to_thread(upkeep.run)
            ready: dict[TopicPartition, list[Any]] = {}
            for tp, msgs in batch.items():
                plan = plans.known.get(tp)
                if plan is None or plan[0] != msgs[0].offset:
                    plans.known.pop(tp, None)
                elif msgs[-1].offset < plan[1]:
                    carry[tp] = msgs  # the planned batch is not all fetched yet
                    continue
                elif msgs[-1].offset > plan[1]:
                    msgs = [m for m in msgs if m.offset <= plan[1]]
                    consumer.seek(tp, plan[1] + 1)
                ready[tp] = msgs
            if not ready:
                continue
            try:
                await consumer.commit({tp: (msgs[0].offset, f"{PLAN}{msgs[-1].offset}") for tp, msgs in ready.items()})
            except CommitFailedError as exc:  # a rebalance: nothing inserted, re-read from the committed offsets
                log.warning("could not record the batch plan (rebalance), re-reading: %s", exc)
                _rewind(consumer, {**ready, **carry})
                carry = {}
                continue
            for tp, msgs in ready.items():
                plans.known[tp] = (msgs[0].offset, msgs[-1].offset)
            batch = ready
            offsets = {}
            for tp, msgs in batch.items():
                name = by_kafka_name[tp.topic]
                rows, dead = convert(name, [m.value for m in msgs])
                token = f"{tp.topic}-{tp.partition}-{msgs[0].offset}-{msgs[-1].offset}"
                for table, part in ((TABLE_OF_TOPIC[name], rows), ("dead_letters", dead)):
                    # credits and touches: their live-aggregate deltas first, under the same planned token
                    if part and not await asyncio.to_thread(write_batch, wh, table, part, f"{token}-{table}",
                                                            stop.is_set, health=health):
                        return  # stopping: uncommitted records are re-read by the next sink
                offsets[tp] = msgs[-1].offset + 1
            try:
                await consumer.commit(offsets)
            except CommitFailedError as exc:  # a rebalance took the partitions: re-read, same plan, dedupe
                log.warning("offset commit failed after insert (rows will be re-read, deduplicated): %s", exc)
            else:
                for tp in offsets:
                    plans.known.pop(tp, None)
    finally:
        await consumer.stop()
        await admin.close()
