import asyncio
import os

import pytest

from moneytrail.bus import BusUnavailable, SpooledKafkaBus
from moneytrail.spool import Spool, SpoolError


def _recs(n, start=0):
    return [("raw", f"k{i}".encode(), f"v{i}".encode()) for i in range(start, start + n)]


async def test_appended_records_drain_in_order_and_only_once(tmp_path):
    spool = Spool(tmp_path)
    await asyncio.gather(*(spool.append(_recs(10, i * 10)) for i in range(5)))  # concurrent: group commit
    assert spool.pending == 50
    got = []

    async def publish(chunk):
        got.extend(chunk)

    assert await spool.drain(publish, batch=7) == 50
    assert sorted(v for _, _, v in got) == sorted(v for _, _, v in _recs(50)) and spool.pending == 0
    assert await spool.drain(publish) == 0 and len(got) == 50


async def test_a_failed_drain_keeps_the_records_and_a_restart_resumes(tmp_path):
    spool = Spool(tmp_path)
    await spool.append(_recs(20))
    calls = 0

    async def flaky(chunk):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionError("kafka away")

    with pytest.raises(ConnectionError):
        await spool.drain(flaky, batch=5)
    assert spool.pending == 15  # the first batch of 5 was acknowledged
    spool.close()
    again = Spool(tmp_path)  # a restart
    assert again.pending == 15
    got = []

    async def ok(chunk):
        got.extend(chunk)

    await again.drain(ok)
    assert [v for _, _, v in got] == [f"v{i}".encode() for i in range(5, 20)]


async def test_a_torn_tail_is_cut_off(tmp_path):
    spool = Spool(tmp_path)
    await spool.append(_recs(3))
    spool.close()
    seg = sorted(tmp_path.glob("spool-*.log"))[-1]
    with open(seg, "ab") as f:
        f.write(b"\x00\x00\x00\x30\xde\xad")  # a crash mid-write
    assert Spool(tmp_path).pending == 3


async def test_segments_roll_over_and_drained_ones_are_deleted(tmp_path):
    spool = Spool(tmp_path, segment_bytes=200)
    for i in range(10):
        await spool.append(_recs(3, i * 3))
    assert len(list(tmp_path.glob("spool-*.log"))) > 3

    async def publish(chunk):
        pass

    await spool.drain(publish)
    assert spool.pending == 0 and len(list(tmp_path.glob("spool-*.log"))) == 1


async def test_disk_errors_surface_as_spool_errors(tmp_path):
    spool = Spool(tmp_path)
    os.close(spool._fd)
    spool._fd = os.open(os.devnull, os.O_RDONLY)  # writes now fail
    with pytest.raises(SpoolError):
        await spool.append(_recs(1))


class FakeKafka:
    def __init__(self):
        self.up, self.started, self.got = True, True, []

    async def start(self):
        if not self.up:
            raise ConnectionError("down")
        self.started = True

    async def stop(self):
        self.started = False

    async def publish(self, topic, records, timeout=None):
        if not self.up:  # an unreachable broker does not answer; KafkaBus.publish gives up after timeout
            await asyncio.wait_for(asyncio.sleep(10), timeout)
        self.got.extend(records)


async def test_kafka_silence_spools_then_drains_in_order(tmp_path):
    kafka = FakeKafka()
    bus = SpooledKafkaBus(kafka, Spool(tmp_path), ack_timeout_s=0.05, drain_every_s=0.02)
    await bus.start()
    await bus.publish("raw", [(b"k", b"1")])
    kafka.up = False
    await bus.publish("raw", [(b"k", b"2")])  # times out -> spooled, still acknowledged
    assert bus.spooled == 1
    kafka.up = True
    await bus.publish("raw", [(b"k", b"3")])  # spool not empty -> behind the spooled one
    for _ in range(100):
        if bus.spool.pending == 0:
            break
        await asyncio.sleep(0.02)
    await bus.stop()
    assert [v for _, v in kafka.got] == [b"1", b"2", b"3"]


async def test_no_kafka_and_no_disk_means_unavailable(tmp_path):
    kafka = FakeKafka()
    kafka.up = False
    bus = SpooledKafkaBus(kafka, Spool(tmp_path), ack_timeout_s=0.05)
    os.close(bus.spool._fd)
    bus.spool._fd = os.open(os.devnull, os.O_RDONLY)
    with pytest.raises(BusUnavailable):
        await bus.publish("raw", [(b"k", b"x")])
