"""KafkaBus's own batching against a real broker: concurrent publishes share produce batches,
every record lands once on the partition the Java client's partitioner picks, in order per key,
and a caller that gives up cancels nobody else."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from moneytrail.bus import BusUnavailable, KafkaBus, ensure_topics
from schemas.topics import RAW, kafka_topic

pytestmark = pytest.mark.integration


async def _read_all(bootstrap: str, topic: str, want: int, timeout: float = 30) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=f"t-{uuid.uuid4().hex[:6]}", enable_auto_commit=False)
    await consumer.start()
    got: list = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(got) < want and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(records)
    finally:
        await consumer.stop()
    return got


async def test_concurrent_publishes_share_batches_and_land_once_in_order(kafka_bootstrap: str) -> None:
    prefix = f"test-bus-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, prefix, partitions=4)
    bus = KafkaBus(kafka_bootstrap, prefix)
    await bus.start()
    batches = 0
    send_batch = bus._producer.send_batch  # noqa: SLF001 - counting the produce batches

    async def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        nonlocal batches
        batches += 1
        return await send_batch(*args, **kwargs)

    bus._producer.send_batch = counted  # noqa: SLF001
    try:
        async def client(c: int) -> None:
            for i in range(10):  # one visitor per client, 3 events per request, in order
                await bus.publish(RAW, [(f"shop:v{c}".encode(), f"{c}:{i}:{j}".encode()) for j in range(3)])

        await asyncio.gather(*(client(c) for c in range(40)))
        got = await _read_all(kafka_bootstrap, kafka_topic(prefix, RAW), 1200)
    finally:
        await bus.stop()
    assert len(got) == 1200 and len({r.value for r in got}) == 1200  # each record once
    parts = sorted({r.partition for r in got})
    assert len(parts) > 1
    for r in got:  # where the Java client (and aiokafka's default) would put it
        assert r.partition == DefaultPartitioner()(r.key, [0, 1, 2, 3], [0, 1, 2, 3])
    by_key: dict[bytes, list[tuple[int, int]]] = {}
    for r in sorted(got, key=lambda r: (r.partition, r.offset)):
        c, i, j = map(int, r.value.split(b":"))
        by_key.setdefault(r.key, []).append((i, j))
    assert all(seq == sorted(seq) for seq in by_key.values())  # per visitor, in publish order
    assert batches < 400 / 4, f"{batches} produce batches for 400 publishes: requests did not share batches"


async def test_a_caller_that_gives_up_cancels_only_itself_and_a_stopped_bus_refuses(kafka_bootstrap: str) -> None:
    prefix = f"test-bus-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, prefix, partitions=2)
    bus = KafkaBus(kafka_bootstrap, prefix)
    await bus.start()
    try:
        await bus.publish(RAW, [(b"shop:a", b"zero")])  # the topic's metadata is known from here on
        impatient = asyncio.ensure_future(bus.publish(RAW, [(b"shop:a", b"first")]))
        patient = asyncio.ensure_future(bus.publish(RAW, [(b"shop:a", b"second")]))
        await asyncio.sleep(0)
        impatient.cancel()
        await patient  # shares the round the cancelled one was in
        assert impatient.cancelled()
        with pytest.raises(TimeoutError):  # no broker answers in a microsecond: the caller spools instead
            await bus.publish(RAW, [(b"shop:a", b"timed out")], timeout=1e-6)
        got = await _read_all(kafka_bootstrap, kafka_topic(prefix, RAW), 4)
        # the rounds were sent whole: what a caller gave up on still lands (deduplicated downstream)
        assert sorted(r.value for r in got) == [b"first", b"second", b"timed out", b"zero"]
    finally:
        await bus.stop()
    with pytest.raises(BusUnavailable):
        await bus.publish(RAW, [(b"shop:a", b"late")])


async def test_callers_time_out_by_the_sweep_in_open_and_in_flight_batches_and_the_rest_still_lands(
        kafka_bootstrap: str) -> None:
    prefix = f"test-bus-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, prefix, partitions=1)
    bus = KafkaBus(kafka_bootstrap, prefix)
    await bus.start()
    loop = asyncio.get_running_loop()
    try:
        await bus.publish(RAW, [(b"shop:a", b"zero")])
        gate = asyncio.Event()  # the broker "hangs": the round stays in flight until the gate opens
        real_send = bus._producer.send_batch  # noqa: SLF001

        async def held(*args, **kwargs):
            await gate.wait()
            return await real_send(*args, **kwargs)

        bus._producer.send_batch = held  # noqa: SLF001
        started = loop.time()
        in_flight = asyncio.ensure_future(bus.publish(RAW, [(b"shop:a", b"one")], timeout=0.2))
        await asyncio.sleep(0.02)  # its round is taken and being sent
        queued = asyncio.ensure_future(bus.publish(RAW, [(b"shop:a", b"two")], timeout=0.3))  # the next round
        patient = asyncio.ensure_future(bus.publish(RAW, [(b"shop:a", b"three")]))
        with pytest.raises(TimeoutError):
            await in_flight
        waited = loop.time() - started
        assert 0.2 <= waited < 0.2 + 2 * KafkaBus.SWEEP_S + 0.3, waited
        with pytest.raises(TimeoutError):
            await queued
        assert 0.3 <= loop.time() - started and not patient.done()
        gate.set()
        await asyncio.wait_for(patient, 10)
        got = await _read_all(kafka_bootstrap, kafka_topic(prefix, RAW), 4)
        assert sorted(r.value for r in got) == [b"one", b"three", b"two", b"zero"]  # given up on, still sent
    finally:
        await bus.stop()
