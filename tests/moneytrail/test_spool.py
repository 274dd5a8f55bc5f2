import asyncio
import builtins
import errno
import os
import stat

import pytest

from moneytrail.bus import BusUnavailable, SpooledKafkaBus
from moneytrail.spool import Spool, SpoolError, SpoolFull, _frame


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


def _kafka_gone_after(batches):
    """A publisher that takes `batches` batches, then fails as an unreachable Kafka does."""
    calls = 0

    async def publish(chunk):
        nonlocal calls
        calls += 1
        if calls > batches:
            raise ConnectionError("kafka away")

    return publish


async def test_a_failed_drain_keeps_the_records_and_a_restart_resumes(tmp_path):
    spool = Spool(tmp_path)
    await spool.append(_recs(20))
    with pytest.raises(ConnectionError):
        await spool.drain(_kafka_gone_after(1), batch=5)
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


# --- a full disk, a write cut short, a crash mid-write (issue 11) ------------------------------


async def _drained(spool, batch=500):
    got = []

    async def publish(chunk):
        got.extend(v for _, _, v in chunk)

    await spool.drain(publish, batch=batch)
    return got


def _vals(n, start=0):
    return [f"v{i}".encode() for i in range(start, start + n)]


def _last_segment(folder):
    return sorted(folder.glob("spool-*.log"))[-1]


def _in(folder, fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}").startswith(str(folder))
    except OSError:
        return False


def full_disk(monkeypatch, folder):
    """The filesystem under `folder` has no free block: creating a file, growing one or writing a
    fresh one fails with ENOSPC; overwriting bytes a file already holds still works (ext4, xfs)."""

    def no_space(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    real_open, real_write, real_pwrite, real_bopen = os.open, os.write, os.pwrite, builtins.open

    def fake_open(path, flags, mode=0o777, **kw):
        if str(path).startswith(str(folder)) and flags & os.O_CREAT and not os.path.exists(path):
            no_space()
        return real_open(path, flags, mode, **kw)

    def fake_write(fd, data):
        if _in(folder, fd) and stat.S_ISREG(os.fstat(fd).st_mode) and len(data):
            no_space()  # appending needs new blocks
        return real_write(fd, data)

    def fake_pwrite(fd, data, offset):
        if _in(folder, fd) and offset + len(data) > os.fstat(fd).st_size:
            no_space()
        return real_pwrite(fd, data, offset)

    def fake_bopen(file, mode="r", *a, **kw):
        if isinstance(file, (str, os.PathLike)) and str(file).startswith(str(folder)) and set(mode) & set("wax+"):
            no_space()
        return real_bopen(file, mode, *a, **kw)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "write", fake_write)
    monkeypatch.setattr(os, "pwrite", fake_pwrite)
    monkeypatch.setattr(builtins, "open", fake_bopen)


async def test_a_torn_tail_is_cut_at_open_so_later_records_are_readable(tmp_path):
    spool = Spool(tmp_path)
    await spool.append(_recs(3))
    spool.close()
    seg = _last_segment(tmp_path)
    good = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(b"\x00\x00\x00\x30\xde\xad")  # a crash mid-write: a header and nothing more
    again = Spool(tmp_path)
    assert seg.stat().st_size == good, "the torn tail must be cut at open"
    await again.append(_recs(2, 3))  # acknowledged after the cut: must be readable
    again.close()
    assert await _drained(Spool(tmp_path)) == _vals(5)


async def test_a_crash_in_the_middle_of_a_write_loses_only_that_write(tmp_path):
    spool = Spool(tmp_path)
    await spool.append(_recs(4))
    spool.close()
    frame = _frame("raw", b"k", b"x" * 300)
    with open(_last_segment(tmp_path), "ab") as f:
        f.write(frame[: len(frame) // 2])  # half of the record reached the disk, then the crash
    again = Spool(tmp_path)
    assert again.pending == 4
    await again.append(_recs(2, 4))
    assert await _drained(again) == _vals(6)


async def test_a_write_cut_short_is_truncated_and_fails_only_its_request(tmp_path, monkeypatch):
    spool = Spool(tmp_path)
    await spool.append(_recs(3))
    real_write, cut = os.write, {"on": True}

    def short_then_full(fd, data):  # what RLIMIT_FSIZE or a filling disk does: a short write, then an error
        if fd == spool._fd and cut["on"]:
            if cut.setdefault("wrote", False):
                raise OSError(errno.EFBIG, "File too large")
            cut["wrote"] = True
            return real_write(fd, bytes(data[: len(data) // 2]))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", short_then_full)
    with pytest.raises(SpoolError):
        await spool.append(_recs(5, 100))
    cut["on"] = False
    await spool.append(_recs(2, 3))  # acknowledged: must come back
    assert spool.pending == 5
    assert await _drained(spool) == _vals(5)
    spool.close()
    assert await _drained(Spool(tmp_path)) == []  # and nothing of the failed write after a restart


async def test_a_hole_left_by_an_older_version_is_read_past(tmp_path):
    """Spools written before issue 11 may hold a torn record followed by acknowledged ones."""
    good = b"".join(_frame(*r) for r in _recs(2))
    torn = _frame(*_recs(1, 50)[0])[:9]
    after = b"".join(_frame(*r) for r in _recs(3, 2))
    (tmp_path / "spool-00000001.log").write_bytes(good + torn + after)
    assert await _drained(Spool(tmp_path)) == _vals(5)


async def test_the_size_cap_refuses_before_writing_anything(tmp_path):
    spool = Spool(tmp_path, segment_bytes=400, max_bytes=2000)
    acked = 0
    with pytest.raises(SpoolFull, match="cap"):
        for i in range(100):  # bounded: the cap is reached long before
            await spool.append(_recs(3, i * 3))
            acked += 3
    assert 0 < acked < 300
    assert sum(p.stat().st_size for p in tmp_path.glob("spool-*.log")) <= 2000
    assert await _drained(spool) == _vals(acked)
    assert sum(p.stat().st_size for p in tmp_path.glob("spool-*.log")) == 0  # drained segments deleted
    await spool.append(_recs(3, 1000))  # room again


async def test_the_reserved_free_space_is_never_used(tmp_path, monkeypatch):
    free = {"bytes": 10_000}
    real = os.statvfs

    def statvfs(path):
        st = real(path)
        return os.statvfs_result((st.f_bsize, 1, st.f_blocks, free["bytes"], free["bytes"], *tuple(st)[5:]))

    monkeypatch.setattr(os, "statvfs", statvfs)
    spool = Spool(tmp_path, min_free_bytes=9_000)
    await spool.append(_recs(3))  # ~60 bytes: leaves more than 9 000 free
    before = _last_segment(tmp_path).stat().st_size
    with pytest.raises(SpoolFull, match="free"):
        await spool.append([("raw", b"k", b"x" * 2000)])
    assert _last_segment(tmp_path).stat().st_size == before
    assert await _drained(spool) == _vals(3)


async def test_the_drain_makes_progress_on_a_full_disk(tmp_path, monkeypatch):
    spool = Spool(tmp_path, segment_bytes=200)
    for i in range(10):
        await spool.append(_recs(4, i * 4))
    assert len(list(tmp_path.glob("spool-*.log"))) > 3
    full_disk(monkeypatch, tmp_path)
    sent = []

    async def publish(chunk):
        sent.extend(v for _, _, v in chunk)

    assert await spool.drain(publish, batch=5) == 40
    assert sent == _vals(40)  # each once, in order: the checkpoint advanced without new space
    assert len(list(tmp_path.glob("spool-*.log"))) == 1  # drained segments deleted (frees space)
    spool.close()
    monkeypatch.undo()
    assert Spool(tmp_path).pending == 0  # the progress was durable


async def test_a_torn_checkpoint_falls_back_to_resending_never_to_skipping(tmp_path):
    spool = Spool(tmp_path)
    await spool.append(_recs(10))
    with pytest.raises(ConnectionError):
        await spool.drain(_kafka_gone_after(1), batch=4)
    spool.close()
    assert Spool(tmp_path).pending == 6
    ckpt = next(p for p in tmp_path.iterdir() if p.name.startswith("checkpoint"))
    ckpt.write_bytes(b"\xff" * ckpt.stat().st_size)  # torn beyond recognition
    again = Spool(tmp_path)
    assert again.pending == 10  # re-sent from the start (consumers dedupe by id), none skipped
    assert await _drained(again) == _vals(10)


async def test_a_full_spool_answers_unavailable_with_a_reason(tmp_path):
    kafka = FakeKafka()
    kafka.up = False
    bus = SpooledKafkaBus(kafka, Spool(tmp_path, max_bytes=300), ack_timeout_s=0.05)
    with pytest.raises(BusUnavailable) as caught:
        for i in range(50):
            await bus.publish("raw", [(b"k", b"x" * 40)])
    assert caught.value.retry_after_s > 0 and "full" in caught.value.detail
    await bus.stop()


async def test_after_a_full_disk_a_healthy_kafka_takes_everything_again(tmp_path, monkeypatch):
    kafka = FakeKafka()
    kafka.up = False
    spool = Spool(tmp_path, segment_bytes=300)
    bus = SpooledKafkaBus(kafka, spool, ack_timeout_s=0.05, drain_every_s=0.02)
    for i in range(12):
        await bus.publish("raw", [(b"k", f"{i}".encode())])
    full_disk(monkeypatch, tmp_path)
    with pytest.raises(BusUnavailable):
        await bus.publish("raw", [(b"k", b"refused")])
    kafka.up = True
    await bus.start()
    for _ in range(200):  # bounded: ~4 s
        if spool.pending == 0:
            break
        await asyncio.sleep(0.02)
    assert spool.pending == 0
    monkeypatch.undo()  # the drain deleted segments: space again
    await bus.publish("raw", [(b"k", b"later")])
    await bus.stop()
    assert [v for _, v in kafka.got] == [f"{i}".encode() for i in range(12)] + [b"later"]
