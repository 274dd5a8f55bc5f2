"""The bus port and its two adapters.

`publish` returns only when the records are durable by the adapter's standard: acknowledged by
all in-sync Kafka replicas (acks=all, idempotent producer), or, in memory, handed to every
subscriber's queue. Concurrent publishes share produce batches (KafkaBus's group commit: what
arrives while a round is in flight goes out together in the next), so nobody waits alone for a
round trip.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from typing import Awaitable, Callable, Protocol

from schemas.topics import kafka_topic

from .spool import Spool, SpoolError, SpoolFull

log = logging.getLogger("moneytrail.bus")

Records = list[tuple[bytes, bytes]]  # (key, value)
Handler = Callable[[str, Records], Awaitable[None]]


class BusUnavailable(RuntimeError):
    """The records could not be made durable; the caller must not acknowledge them. `detail` is
    safe to show a client; `retry_after_s` is when trying again may succeed."""

    def __init__(self, message: str, detail: str = "events could not be stored; retry later",
                 retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.detail = detail
        self.retry_after_s = retry_after_s


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


class _Waiter:
    """One publish call: its own future (cancelling it touches nobody else's), resolved when all
    the batches holding its records are acknowledged."""

    __slots__ = ("deadline", "future", "pending")

    def __init__(self, future: asyncio.Future, deadline: float) -> None:
        self.future = future
        self.pending = 0
        self.deadline = deadline  # loop time after which it gives up; inf: never


class _Open:
    """One partition's batch being filled: the records of every request that arrived since the
    last round was sent, and who waits for them."""

    __slots__ = ("builder", "expires", "records", "waiters")

    def __init__(self, builder: object) -> None:
        self.builder = builder
        self.records = 0
        self.waiters: list[_Waiter] = []
        self.expires = _NEVER  # the earliest deadline among its waiters still waiting

    def expire(self, now: float) -> None:
        """Waiters past their deadline give up (TimeoutError); the batch itself still goes out."""
        left = _NEVER
        for w in self.waiters:
            if w.future.done():
                continue
            if w.deadline <= now:
                w.future.set_exception(TimeoutError("kafka did not acknowledge in time"))
            elif w.deadline < left:
                left = w.deadline
        self.expires = left

    def done(self) -> None:
        for w in self.waiters:
            w.pending -= 1
            if w.pending == 0 and not w.future.done():
                w.future.set_result(None)

    def fail(self, exc: BaseException) -> None:
        for w in self.waiters:
            if not w.future.done():
                w.future.set_exception(exc)


_NEVER = float("inf")


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError("kafka did not acknowledge in time"))


class KafkaBus:
    """Kafka through aiokafka (acks=all, idempotent producer), with our own group commit in front
    of it: concurrent publishes fill one batch per partition while the previous round is in
    flight, and each round goes out as whole batches (create_batch/send_batch), so a record costs
    one append, not a producer.send() with its own future (~8 us each). One round in flight at a
    time: records arriving meanwhile wait at most one round trip and then share the next round,
    which is how the producer itself batches (one produce request in flight per broker)."""

    PARTITIONS_TTL_S = 30.0  # re-read a topic's partition count this often (topics can grow)
    # Timeouts are checked by one sweep this often while anything waits, not by a timer per
    # publish (call_later + cancel cost ~1-2 us a request): a caller gives up at most this late.
    SWEEP_S = 0.05

    def __init__(self, bootstrap: str, prefix: str, request_timeout_ms: int = 10_000) -> None:
        self._bootstrap = bootstrap
        self._prefix = prefix
        self._timeout_ms = request_timeout_ms
        self._producer = None
        self._open: dict[tuple[str, int], _Open] = {}
        self._inflight: list[_Open] = []  # the round sent, awaiting its acknowledgement
        self._flusher: asyncio.Task | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._partitions: dict[str, tuple[float, list[int], dict[bytes, int]]] = {}
        self._murmur2: Callable[[bytes], int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # kept: get_running_loop() costs a getpid() syscall

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.partitioner import murmur2

        self._murmur2 = murmur2
        self._loop = asyncio.get_running_loop()

        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=0,  # the batching happens in publish(); a built batch goes out at once
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
            flusher, self._flusher = self._flusher, None
            if flusher is not None and not flusher.done():
                try:  # hand what is being filled to the producer, which flushes it on stop
                    await asyncio.wait_for(asyncio.shield(flusher), self._timeout_ms / 1000)
                except Exception:  # noqa: BLE001 - its waiters learn the outcome from their futures
                    pass
            self._fail_open(BusUnavailable("producer stopped"))
            if self._sweeper is not None:
                self._sweeper.cancel()
                self._sweeper = None
            await producer.stop()  # flushes what is pending

    def _fail_open(self, exc: BaseException) -> None:
        open_, self._open = self._open, {}
        for batch in open_.values():
            batch.fail(exc)

    async def _partition_map(self, name: str) -> tuple[list[int], dict[bytes, int]]:
        known = self._partitions.get(name)
        parts = sorted(await self._producer.partitions_for(name))
        if not parts:
            raise BusUnavailable(f"topic {name} has no partitions (yet)")
        now = self._loop.time()
        cache = known[2] if known is not None and known[1] == parts else {}
        self._partitions[name] = (now, parts, cache)
        return parts, cache

    async def publish(self, topic: str, records: Records, timeout: float | None = None) -> None:
        """Returns when Kafka acknowledged the records. Raises BusUnavailable, or TimeoutError
        after `timeout` s (the records may still land: they are not taken back)."""
        producer = self._producer
        if producer is None:
            raise BusUnavailable("producer not started")
        name = kafka_topic(self._prefix, topic)
        known = self._partitions.get(name)
        loop = self._loop
        if known is not None and loop.time() - known[0] < self.PARTITIONS_TTL_S:
            parts, cache = known[1], known[2]
        else:
            try:
                parts, cache = await asyncio.wait_for(self._partition_map(name), timeout)
            except asyncio.TimeoutError:
                raise
            except Exception as exc:
                raise BusUnavailable(f"kafka metadata for {name}: {exc}") from exc
        swept = timeout is not None and timeout >= self.SWEEP_S  # shorter ones get a timer of their own
        deadline = loop.time() + timeout if swept else _NEVER
        waiter = _Waiter(loop.create_future(), deadline)
        last: _Open | None = None
        for key, value in records:
            partition = cache.get(key)
            if partition is None:
                if key is None:  # as aiokafka does: no key, any partition
                    partition = random.choice(parts)
                else:  # the Java client's partitioner, so every producer agrees
                    partition = parts[(self._murmur2(key) & 0x7FFFFFFF) % len(parts)]
                    if len(cache) >= 100_000:
                        cache.clear()
                    cache[key] = partition
            batch = self._open.get((name, partition))
            if batch is None:
                batch = self._open[(name, partition)] = _Open(producer.create_batch())
            if batch.builder.append(timestamp=None, key=key, value=value) is None:  # full
                if batch.records == 0:
                    raise BusUnavailable(f"a record of {len(value)} bytes does not fit in a batch")
                self._seal(name, partition)
                batch = self._open[(name, partition)] = _Open(producer.create_batch())
                if batch.builder.append(timestamp=None, key=key, value=value) is None:
                    raise BusUnavailable(f"a record of {len(value)} bytes does not fit in a batch")
            batch.records += 1
            if batch is not last and (not batch.waiters or batch.waiters[-1] is not waiter):
                batch.waiters.append(waiter)
                waiter.pending += 1
                if deadline < batch.expires:
                    batch.expires = deadline
            last = batch
        if waiter.pending == 0:
            return  # no records
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        # Our own future: a caller that gives up (timeout, cancel) ends only it, not the round
        # others wait on; the round still lands (and is deduplicated downstream if also spooled).
        if swept:
            if self._sweeper is None:
                self._sweeper = loop.call_later(self.SWEEP_S, self._sweep)
            await waiter.future
        elif timeout is None:
            await waiter.future
        else:
            timer = loop.call_later(timeout, _expire, waiter.future)
            try:
                await waiter.future
            finally:
                timer.cancel()

    def _sweep(self) -> None:
        """Time out the waiters past their deadline, in open batches and in the round in flight."""
        self._sweeper = None
        now = self._loop.time()
        waiting = False
        for batch in itertools.chain(self._open.values(), self._inflight):
            if batch.expires <= now:
                batch.expire(now)
            waiting = waiting or batch.expires != _NEVER
        if waiting and self._producer is not None:
            self._sweeper = self._loop.call_later(self.SWEEP_S, self._sweep)

    def _seal(self, name: str, partition: int) -> None:
        """A full batch: keep it for the next round under a key of its own, so the partition can
        start a fresh one. (Rare: a batch holds 1 MB.)"""
        batch = self._open.pop((name, partition))
        self._open[(name, partition, id(batch))] = batch  # type: ignore[index]

    async def _flush(self) -> None:
        """Send rounds until nothing is open: each round's batches go out together, and the next
        round starts when this one is acknowledged."""
        try:
            while self._open and self._producer is not None:
                producer = self._producer
                round_, self._open = self._open, {}
                self._inflight = list(round_.values())  # swept for timeouts from now on
                sent: list[tuple[asyncio.Future, _Open]] = []
                for tp, batch in round_.items():
                    try:
                        delivery = await producer.send_batch(batch.builder, tp[0], partition=tp[1])
                    except Exception as exc:  # noqa: BLE001 - told to its waiters
                        batch.fail(BusUnavailable(f"kafka refused the batch: {exc!r}"))
                        continue
                    sent.append((delivery, batch))
                for delivery, batch in sent:
                    try:
                        await delivery
                    except Exception as exc:  # noqa: BLE001 - told to its waiters
                        batch.fail(BusUnavailable(f"kafka did not acknowledge: {exc!r}"))
                        continue
                    batch.done()
                self._inflight = []
        finally:
            self._inflight = []
            if self._flusher is asyncio.current_task():
                self._flusher = None
            if self._open and self._producer is None:
                self._fail_open(BusUnavailable("producer stopped"))


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
    neither Kafka nor the spool can take them (the spool at its cap or its reserved free space, or a
    failed write, which is cut back and never acknowledged) does publish raise BusUnavailable (-> 503).
    A full spool refuses while Kafka is back too, until the drain has freed room: order is kept."""

    SPOOL_FULL_RETRY_S = 10  # a full spool empties at Kafka's pace, not at once

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
                await self.kafka.publish(topic, records, self._ack_timeout_s)
                return
            except (BusUnavailable, asyncio.TimeoutError) as exc:
                log.warning("kafka did not acknowledge in %.1fs, spooling: %r", self._ack_timeout_s, exc)
                if isinstance(exc, BusUnavailable):
                    await self._reset_if_broken(exc)
        try:
            await self.spool.append([(topic, k, v) for k, v in records])
        except SpoolFull as exc:
            raise BusUnavailable(str(exc), "Kafka is not acknowledging and this collector's local spool is full; "
                                 "retry later", self.SPOOL_FULL_RETRY_S) from exc
        except SpoolError as exc:
            raise BusUnavailable(str(exc), "Kafka is not acknowledging and this collector's local spool could not "
                                 "store the events; retry later", self.SPOOL_FULL_RETRY_S) from exc
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
