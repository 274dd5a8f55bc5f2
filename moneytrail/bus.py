"""The bus port and its two adapters.

`publish` returns only when the records are durable by the adapter's standard: acknowledged by
all in-sync Kafka replicas (acks=all, idempotent producer), or, in memory, handed to every
subscriber's queue. Concurrent publishes share the producer's batches (linger), so nobody waits
alone for a round trip.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Protocol

from schemas.topics import kafka_topic

from .spool import Spool, SpoolError

log = logging.getLogger("moneytrail.bus")

Records = list[tuple[bytes, bytes]]  # (key, value)
Handler = Callable[[str, Records], Awaitable[None]]


class BusUnavailable(RuntimeError):
    """The records could not be made durable; the caller must not acknowledge them."""


class Bus(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def publish(self, topic: str, records: Records) -> None: ...


class MemoryBus:
    """In-process bus for embedded mode. Each subscriber has its own bounded queue and task, like
    a consumer group: a slow sink slows publishers (backpressure) instead of growing memory."""

    def __init__(self, queue_size: int = 1000) -> None:
        self._subs: dict[str, list[tuple[asyncio.Queue, Handler]]] = {}
        self._tasks: list[asyncio.Task] = []
        self._queue_size = queue_size

    def subscribe(self, topic: str, handler: Handler) -> None:
        self._subs.setdefault(topic, []).append((asyncio.Queue(self._queue_size), handler))

    async def start(self) -> None:
        for topic, subs in self._subs.items():
            for queue, handler in subs:
                self._tasks.append(asyncio.create_task(self._drain(topic, queue, handler)))

    async def _drain(self, topic: str, queue: asyncio.Queue, handler: Handler) -> None:
        while True:
            records = await queue.get()
            try:
                await handler(topic, records)
            except Exception:  # a handler bug must not kill the bus; the handler dead-letters itself
                log.exception("handler for %s failed", topic)
            finally:
                queue.task_done()

    async def publish(self, topic: str, records: Records) -> None:
        for queue, _ in self._subs.get(topic, ()):
            await queue.put(records)

    async def drain(self) -> None:
        """Wait until every queued record has been handled (repeats: handlers publish onward)."""
        for _ in range(10):
            queues = [q for subs in self._subs.values() for q, _ in subs]
            if all(q.empty() and q._unfinished_tasks == 0 for q in queues):  # noqa: SLF001
                return
            for q in queues:
                await q.join()

    async def stop(self) -> None:
        await self.drain()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


class KafkaBus:
    def __init__(self, bootstrap: str, prefix: str, request_timeout_ms: int = 10_000) -> None:
        self._bootstrap = bootstrap
        self._prefix = prefix
        self._timeout_ms = request_timeout_ms
        self._producer = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_batch_size=1 << 20,
            request_timeout_ms=self._timeout_ms,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()  # flushes what is pending

    async def publish(self, topic: str, records: Records) -> None:
        if self._producer is None:
            raise BusUnavailable("producer not started")
        name = kafka_topic(self._prefix, topic)
        try:
            futures = [await self._producer.send(name, value, key=key) for key, value in records]
            await asyncio.gather(*futures)
        except Exception as exc:
            raise BusUnavailable(f"kafka did not acknowledge: {exc}") from exc


def bus_from_url(url: str, prefix: str) -> Bus:
    if url.startswith("memory://"):
        return MemoryBus()
    if url.startswith("kafka://"):
        return KafkaBus(url.removeprefix("kafka://").rstrip("/"), prefix)
    raise ValueError(f"unknown bus URL {url!r}: use memory:// or kafka://host:9092[,host2:9092]")


async def ensure_topics(bootstrap: str, prefix: str, partitions: int, replication: int = 1) -> list[str]:
    """Create our topics if they are missing (so consumers that start first see every partition).
    Returns the names created now."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from schemas.topics import ALL

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [kafka_topic(prefix, t) for t in ALL]
        missing = [n for n in wanted if n not in existing]
        if missing:
            result = await admin.create_topics(
                [NewTopic(n, num_partitions=partitions, replication_factor=replication) for n in missing]
            )
            for name, code, *_ in getattr(result, "topic_errors", []):
                if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (another process won the race)
                    raise BusUnavailable(f"could not create topic {name}: error {code}")
        return missing
    finally:
        await admin.close()


class SpooledKafkaBus:
    """Kafka with a local spool behind it: a publish is durable when Kafka acknowledged it within
    `ack_timeout_s`, or else when it is fsynced to the spool. While the spool holds anything, new
    records go to the spool too (so order is kept), and a drainer moves them to Kafka. Only when
    neither Kafka nor the spool can take them does publish raise BusUnavailable (-> 503)."""

    def __init__(self, kafka: KafkaBus, spool: Spool, ack_timeout_s: float = 2.0, drain_every_s: float = 1.0) -> None:
        self.kafka = kafka
        self.spool = spool
        self._ack_timeout_s = ack_timeout_s
        self._drain_every_s = drain_every_s
        self._drainer: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self.spooled = 0

    async def start(self) -> None:
        await self._connect()
        self._drainer = asyncio.create_task(self._drain_forever(), name="spool-drainer")

    async def _connect(self) -> bool:
        """Start the producer; a collector must start (and spool) even while Kafka is away."""
        if self.kafka.started:
            return True
        try:
            await asyncio.wait_for(self.kafka.start(), timeout=self._ack_timeout_s * 5)
            return True
        except Exception as exc:  # noqa: BLE001
            log.warning("kafka unreachable at start, events go to the spool until it is back: %s", exc)
            await self.kafka.stop()
            return False

    async def stop(self) -> None:
        if self._drainer is not None:
            self._drainer.cancel()
            await asyncio.gather(self._drainer, return_exceptions=True)
        try:  # a last attempt, bounded: what stays in the spool is drained at the next start
            await asyncio.wait_for(self.spool.drain(self._publish_spooled), timeout=self._ack_timeout_s * 2)
        except Exception as exc:  # noqa: BLE001
            log.warning("spool not fully drained at shutdown (%d records kept for the next start): %s",
                        self.spool.pending, exc)
        await self.kafka.stop()
        self.spool.close()

    async def publish(self, topic: str, records: Records) -> None:
        if self.spool.pending == 0:
            try:
                await asyncio.wait_for(self.kafka.publish(topic, records), timeout=self._ack_timeout_s)
                return
            except (BusUnavailable, asyncio.TimeoutError) as exc:
                log.warning("kafka did not acknowledge in %.1fs, spooling: %r", self._ack_timeout_s, exc)
                if isinstance(exc, BusUnavailable):
                    await self._reset_if_broken(exc)
        try:
            await self.spool.append([(topic, k, v) for k, v in records])
        except SpoolError as exc:
            raise BusUnavailable(str(exc)) from exc
        self.spooled += len(records)
        self._wake.set()

    async def _publish_spooled(self, records: list[tuple[str, bytes, bytes]]) -> None:
        by_topic: dict[str, Records] = {}
        for topic, key, value in records:
            by_topic.setdefault(topic, []).append((key, value))
        for topic, recs in by_topic.items():  # within a topic the order is kept
            await asyncio.wait_for(self.kafka.publish(topic, recs), timeout=self._ack_timeout_s * 5)

    async def _drain_forever(self) -> None:
        delay = self._drain_every_s
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if self.spool.pending == 0 or not await self._connect():
                continue
            try:
                moved = await self.spool.drain(self._publish_spooled)
                if moved:
                    log.info("drained %d spooled records to kafka", moved)
                delay = self._drain_every_s
            except Exception as exc:  # noqa: BLE001 - kafka still away: keep the records, back off
                log.warning("spool drain failed (%d pending), retrying: %s", self.spool.pending, exc)
                await self._reset_if_broken(exc)
                delay = min(delay * 2, 10.0)

    async def _reset_if_broken(self, exc: BaseException) -> None:
        """An idempotent producer whose sequence numbers went out of step with the broker (after an
        outage, sends cancelled on timeout) never recovers: start a fresh one (a new producer id).
        Re-sent records are deduplicated downstream by their ids."""
        if not isinstance(exc, asyncio.TimeoutError):
            await self.kafka.stop()
