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

        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_batch_size=1 << 20,
            request_timeout_ms=self._timeout_ms,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()  # flushes what is pending
            self._producer = None

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
