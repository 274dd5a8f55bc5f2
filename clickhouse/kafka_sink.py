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
from aiokafka.errors import CommitFailedError

from schemas import topics

from .maintenance import Upkeep
from .sink import TABLE_OF_TOPIC, SinkHealth, convert, insert_with_retry
from .warehouse import Warehouse

log = logging.getLogger("moneytrail.sink")


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
        *by_kafka_name,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_rows,
    )
    await consumer.start()
    log.info("sink consuming %s from %s", ", ".join(by_kafka_name), bootstrap)
    try:
        while not stop.is_set():
            batch: dict[TopicPartition, list[Any]] = {}
            count, started = 0, time.monotonic()
            while count < max_rows and time.monotonic() - started < max_seconds and not stop.is_set():
                got = await consumer.getmany(timeout_ms=int(max_seconds * 1000 / 2), max_records=max_rows - count)
                for tp, msgs in got.items():
                    batch.setdefault(tp, []).extend(msgs)
                    count += len(msgs)
                if not got and count:
                    break
            if upkeep.due():  # between two inserts
                await asyncio.to_thread(upkeep.run)
            if not batch:
                continue
            offsets = {}
            for tp, msgs in batch.items():
                name = by_kafka_name[tp.topic]
                rows, dead = convert(name, [m.value for m in msgs])
                token = f"{tp.topic}-{tp.partition}-{msgs[0].offset}-{msgs[-1].offset}"
                for table, part in ((TABLE_OF_TOPIC[name], rows), ("dead_letters", dead)):
                    if part and not await asyncio.to_thread(insert_with_retry, wh, table, part, f"{token}-{table}",
                                                            stop.is_set, health=health):
                        return  # stopping: uncommitted records are re-read by the next sink
                offsets[tp] = msgs[-1].offset + 1
            try:
                await consumer.commit(offsets)
            except CommitFailedError as exc:  # a rebalance took the partitions: re-read, dedupe
                log.warning("offset commit failed after insert (rows will be re-read, deduplicated): %s", exc)
    finally:
        await consumer.stop()
