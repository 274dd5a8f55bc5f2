"""A local spool: an append-only, fsynced log of records the bus has not acknowledged yet.

When Kafka does not acknowledge in time, the collector writes the records here (one fsync shared by
every request waiting at that moment: group commit) and answers 2xx; a drainer publishes them to
Kafka, in order, when it is back. Records may then reach Kafka twice (a timed-out send can still
land, a crash re-sends since the last checkpoint): every record carries a deterministic id and the
consumers collapse duplicates.

Layout: segment files spool-NNNNNNNN.log of framed records [len u32][crc32 u32][payload], payload =
[topic len u8][topic][key len u32][key][value].

What is acknowledged can always be given back:
- A write is acknowledged only after all its bytes are written and fsynced. A write that fails part
  way (disk full, RLIMIT_FSIZE, EIO) is truncated back to the last good record before anything else
  is written, and that request fails (the caller answers 503). A crash mid-write leaves a torn tail:
  it is cut at open.
- Before writing, the size cap (`max_bytes`) and the free space to leave on the filesystem
  (`min_free_bytes`) are checked: beyond them the write is refused (SpoolFull) with nothing written.
- The checkpoint (first record not yet drained) is two fixed-size, checksummed slots in one small
  file, overwritten in place alternately: advancing it needs no free space, and a torn slot is
  detected and the other (older) one used, which re-sends a little and never skips. Segments fully
  drained are deleted at once: that frees space on a full disk.
- Spools written by older versions may hold a torn record followed by acknowledged ones: readers
  skip a damaged stretch to the next intact frame instead of stopping there.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import mmap
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Iterator

log = logging.getLogger("moneytrail.spool")

Record = tuple[str, bytes, bytes]  # topic, key, value
_HEAD = struct.Struct(">II")
_MIN_PAYLOAD = 6  # topic length byte, a one-byte topic, key length
_CKPT = struct.Struct(">4sQQQ")  # magic, sequence, segment, offset; then crc32 of these
_CKPT_MAGIC = b"MTSC"
_SLOT = 64  # bytes per checkpoint slot (two slots): far below a disk sector, so written in one piece
_CKPT_FILE = "checkpoint.bin"


class SpoolError(RuntimeError):
    """The spool could not make records durable (disk full, permissions). Nothing was acknowledged."""


class SpoolFull(SpoolError):
    """Taking the records would pass the spool's size cap or its reserved free space."""


def _frame(topic: str, key: bytes, value: bytes) -> bytes:
    t = topic.encode()
    payload = bytes([len(t)]) + t + struct.pack(">I", len(key)) + key + value
    return _HEAD.pack(len(payload), zlib.crc32(payload)) + payload


def _unframe(payload: bytes) -> Record:
    n = payload[0]
    topic = payload[1:1 + n].decode()
    (klen,) = struct.unpack_from(">I", payload, 1 + n)
    start = 5 + n
    return topic, payload[start:start + klen], payload[start + klen:]


def _frame_at(buf: mmap.mmap | bytes, pos: int, end: int) -> bytes | None:
    """The payload of the intact frame at pos, or None."""
    if pos + _HEAD.size > end:
        return None
    length, crc = _HEAD.unpack_from(buf, pos)
    if length < _MIN_PAYLOAD or pos + _HEAD.size + length > end:
        return None
    payload = buf[pos + _HEAD.size:pos + _HEAD.size + length]
    if zlib.crc32(payload) != crc:
        return None
    n = payload[0]
    if n == 0 or 5 + n > length or 5 + n + struct.unpack_from(">I", payload, 1 + n)[0] > length:
        return None
    return payload


def _frames(buf: mmap.mmap | bytes, pos: int, end: int, name: str = "") -> Iterator[tuple[bytes, int]]:
    """(payload, position after it) for each intact frame in buf[pos:end]. A damaged stretch is
    skipped to the next intact frame (a CRC-32 match by chance: 1 in 4 billion per try)."""
    while pos + _HEAD.size <= end:
        payload = _frame_at(buf, pos, end)
        if payload is None:
            nxt = next((p for p in range(pos + 1, end - _HEAD.size + 1) if _frame_at(buf, p, end) is not None), None)
            if nxt is None:
                return  # a torn tail: nothing intact follows
            log.warning("spool %s: skipped %d damaged bytes at offset %d", name, nxt - pos, pos)
            pos = nxt
            continue
        pos += _HEAD.size + len(payload)
        yield payload, pos


@dataclass(frozen=True)
class Position:
    segment: int
    offset: int


class Spool:
    def __init__(self, folder: Path, segment_bytes: int = 64 << 20, max_bytes: int = 0,
                 min_free_bytes: int = 0) -> None:
        """max_bytes: the most the segment files may hold together (0: no cap). min_free_bytes: a
        write that would leave less free space than this on the spool's filesystem is refused."""
        self.folder = folder
        self.max_bytes = max_bytes
        self.min_free_bytes = min_free_bytes
        # segments small enough that draining frees space in steps, well before the cap is reached
        self.segment_bytes = min(segment_bytes, max(4096, max_bytes // 16)) if max_bytes else segment_bytes
        folder.mkdir(parents=True, exist_ok=True)
        self._io = threading.Lock()  # the writer and the drainer run in threads; both touch files
        segments = self._segments()
        self._segment = segments[-1] if segments else 1
        self._fd = os.open(self._path(self._segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = self._cut_torn_tail()  # bytes of intact records in the active segment
        self._torn = False  # a failed write whose truncation failed too: truncate before writing again
        self.bytes = sum(self._path(s).stat().st_size for s in self._segments())
        self._ckpt_fd: int | None = None
        self._ckpt_seq = 0
        self._checkpoint = self._open_checkpoint()
        self._queue: list[tuple[list[Record], asyncio.Future]] = []
        self._writer: asyncio.Task | None = None
        self.pending = sum(1 for _ in self._read_from(self._checkpoint))

    # --- writing -----------------------------------------------------------------------------
    async def append(self, records: list[Record]) -> None:
        """Returns once the records are fsynced. Raises SpoolError (SpoolFull) if they could not be;
        then nothing of them is kept."""
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.append((records, fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued())
        await fut

    async def _write_queued(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await asyncio.to_thread(self._write, b"".join(_frame(*r) for records, _ in batch for r in records))
                self._settle(batch, None)
            except SpoolFull as exc:
                if len(batch) == 1:
                    self._settle(batch, exc)
                    continue
                for one in batch:  # the group does not fit: each request alone may
                    try:
                        await asyncio.to_thread(self._write, b"".join(_frame(*r) for r in one[0]))
                        self._settle([one], None)
                    except SpoolError as exc1:
                        self._settle([one], exc1)
            except SpoolError as exc:
                self._settle(batch, exc)

    def _settle(self, batch: list[tuple[list[Record], asyncio.Future]], exc: SpoolError | None) -> None:
        if exc is None:
            self.pending += sum(len(records) for records, _ in batch)
        for _, fut in batch:
            if not fut.done():
                fut.set_exception(exc) if exc is not None else fut.set_result(None)

    def _write(self, data: bytes) -> None:
        with self._io:
            if self._torn:
                self._truncate_back()
            self._check_room(len(data))
            if self._size + len(data) > self.segment_bytes and self._size > 0:
                self._roll()
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view):]
                os.fsync(self._fd)
            except OSError as exc:
                # Not acknowledged: cut what reached the file, so the next record follows the last
                # good one (else it would sit behind a torn record, unreadable though acknowledged).
                self._torn = True
                try:
                    self._truncate_back()
                except SpoolError as again:
                    log.error("%s", again)
                raise SpoolError(f"spool write failed: {exc}") from exc
            self._size += len(data)
            self.bytes += len(data)

    def _check_room(self, need: int) -> None:
        if self.max_bytes and self.bytes + need > self.max_bytes:
            raise SpoolFull(f"spool full: it holds {self.bytes} bytes, its cap (MONEYTRAIL_SPOOL_MAX_BYTES) is {self.max_bytes}")
        if self.min_free_bytes:
            st = os.statvfs(self.folder)
            free = st.f_bavail * st.f_frsize
            if free - need < self.min_free_bytes:
                raise SpoolFull(f"spool disk full: {free} bytes free, {self.min_free_bytes} kept free "
                                "(MONEYTRAIL_SPOOL_MIN_FREE_BYTES)")

    def _truncate_back(self) -> None:
        try:
            os.ftruncate(self._fd, self._size)
            os.fsync(self._fd)
        except OSError as exc:
            raise SpoolError(f"spool: could not cut a failed write back to {self._size} bytes: {exc}") from exc
        self._torn = False

    def _roll(self) -> None:
        """Start the next segment (open it first: if that fails, the current one stays)."""
        try:
            fd = os.open(self._path(self._segment + 1), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise SpoolError(f"spool: could not start a new segment: {exc}") from exc
        os.close(self._fd)
        self._fd, self._segment, self._size = fd, self._segment + 1, 0
        self._fsync_dir()

    def _cut_torn_tail(self) -> int:
        """At open: cut the active segment after its last intact record (a crash mid-write)."""
        size = os.fstat(self._fd).st_size
        good = 0
        if size:
            with open(self._path(self._segment), "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as mm:
                for _, good in _frames(mm, 0, size, self._path(self._segment).name):
                    pass
        if good < size:
            log.warning("spool %s: cut a torn tail of %d bytes (a write cut short by a crash or a full disk)",
                        self._path(self._segment).name, size - good)
            os.ftruncate(self._fd, good)
            os.fsync(self._fd)
        return good

    # --- draining ----------------------------------------------------------------------------
    async def drain(self, publish: Callable[[list[Record]], Awaitable[None]], batch: int = 500) -> int:
        """Publish spooled records in order, batch by batch, advancing the checkpoint after each
        acknowledged batch. Stops at the first failure (raised to the caller). Returns the count."""
        done = 0
        while True:
            chunk, end = await asyncio.to_thread(self._read_batch, self._checkpoint, batch)
            if not chunk:
                break
            await publish(chunk)
            self._checkpoint = end
            self.pending = max(0, self.pending - len(chunk))
            done += len(chunk)
            await asyncio.to_thread(self._advance, end)
        await asyncio.to_thread(self._drop_drained)
        return done

    def _advance(self, end: Position) -> None:
        """After a published batch: record the checkpoint (in place: needs no free space), then
        delete the segments before it, which frees space. Deleting is safe even when the checkpoint
        could not be written: a restart starts at the first segment still there."""
        with self._io:  # under the lock: a cancelled drain's thread may still be finishing
            self._write_checkpoint(end)
            for seg in self._segments():
                if seg < end.segment and seg != self._segment:
                    self._unlink(seg)

    def _read_batch(self, start: Position, limit: int) -> tuple[list[Record], Position]:
        out: list[Record] = []
        end = start
        for record, after in self._read_from(start):
            out.append(record)
            end = after
            if len(out) >= limit:
                break
        return out, end

    def _read_from(self, start: Position) -> Iterator[tuple[Record, Position]]:
        with self._io:  # one consistent view: a write may roll to a new segment meanwhile
            active, active_size, segments = self._segment, self._size, self._segments()
        for i, seg in enumerate(segments):
            if seg < start.segment:
                continue
            pos = start.offset if seg == start.segment else 0
            # the active segment is read only up to its last acknowledged record: bytes past it are
            # a write in progress, or a failed one about to be cut
            end = active_size if seg == active else self._file_size(seg)
            if end > pos:
                try:
                    f = open(self._path(seg), "rb")
                except FileNotFoundError:
                    continue
                with f, mmap.mmap(f.fileno(), end, access=mmap.ACCESS_READ) as mm:
                    last = None
                    for payload, after in _frames(mm, pos, end, self._path(seg).name):
                        if last is not None:
                            yield last
                        last = (_unframe(payload), Position(seg, after))
                    if last is not None:
                        # a segment's last record: the position after it is the next segment's start
                        # (so the finished segment counts as drained and is deleted at once)
                        nxt = segments[i + 1] if i + 1 < len(segments) and seg != active else None
                        yield last[0], (Position(nxt, 0) if nxt is not None else last[1])
            if seg == active:
                return

    def _drop_drained(self) -> None:
        with self._io:
            for seg in self._segments():
                if seg < self._checkpoint.segment and seg != self._segment:
                    self._unlink(seg)
            if self._checkpoint.segment == self._segment and self._checkpoint.offset == self._size > 0:
                # everything drained: start a fresh segment so the spool does not grow forever
                old = self._segment
                try:
                    self._roll()
                except SpoolError as exc:  # a full disk may refuse a new file: try again next time
                    log.warning("%s", exc)
                    return
                self._checkpoint = Position(self._segment, 0)
                self._write_checkpoint(self._checkpoint)
                self._unlink(old)  # drained: safe to delete whatever the checkpoint says

    # --- checkpoint --------------------------------------------------------------------------
    def _open_checkpoint(self) -> Position:
        """The newest intact checkpoint slot; else the legacy text checkpoint; else the first
        segment's start (re-sends: safe). A checkpoint before the first segment still there means
        those were drained and deleted."""
        path = self.folder / _CKPT_FILE
        pos = None
        try:
            raw = path.read_bytes()
            slots = [self._parse_slot(raw[i * _SLOT:(i + 1) * _SLOT]) for i in range(2)]
            best = max((s for s in slots if s is not None), default=None)
            if best is not None:
                self._ckpt_seq, pos = best[0], Position(best[1], best[2])
            else:
                log.warning("spool checkpoint unreadable (torn): re-sending from the oldest segment")
        except FileNotFoundError:
            pos = self._legacy_checkpoint()
        segments = self._segments()
        first = segments[0] if segments else self._segment
        if pos is None or pos.segment < first:
            pos = Position(first, 0)
        elif pos.segment == self._segment and pos.offset > self._size:
            log.warning("spool checkpoint %s is past the last intact record: re-sending that segment", pos)
            pos = Position(pos.segment, 0)
        if not path.exists():
            self._create_checkpoint(pos)
        return pos

    @staticmethod
    def _parse_slot(raw: bytes) -> tuple[int, int, int] | None:
        if len(raw) < _CKPT.size + 4:
            return None
        magic, seq, seg, off = _CKPT.unpack_from(raw)
        (crc,) = struct.unpack_from(">I", raw, _CKPT.size)
        if magic != _CKPT_MAGIC or zlib.crc32(raw[:_CKPT.size]) != crc:
            return None
        return seq, seg, off

    def _legacy_checkpoint(self) -> Position | None:
        try:  # written by versions before issue 11: "<segment> <offset>"
            seg, off = (self.folder / "checkpoint").read_text().split()
            return Position(int(seg), int(off))
        except (FileNotFoundError, ValueError):
            return None

    @staticmethod
    def _slot(seq: int, pos: Position) -> bytes:
        head = _CKPT.pack(_CKPT_MAGIC, seq, pos.segment, pos.offset)
        return (head + struct.pack(">I", zlib.crc32(head))).ljust(_SLOT, b"\0")

    def _create_checkpoint(self, pos: Position) -> None:
        """Both slots, written to a new file renamed into place. On a full disk this may fail: the
        spool works without (its progress is then kept by deleting drained segments) and tries again."""
        tmp = self.folder / (_CKPT_FILE + ".new")
        try:
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(self._slot(self._ckpt_seq, pos) + self._slot(self._ckpt_seq, pos))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.folder / _CKPT_FILE)
            self._fsync_dir()
        except OSError as exc:
            log.warning("spool: could not create its checkpoint file (will retry): %s", exc)
            tmp.unlink(missing_ok=True)
            return
        for old in ("checkpoint", "checkpoint.tmp"):
            (self.folder / old).unlink(missing_ok=True)

    def _write_checkpoint(self, pos: Position) -> None:
        """Overwrite the older slot in place. A failure is logged, not raised: the records are in
        Kafka already, and a restart from an older checkpoint only re-sends."""
        try:
            if self._ckpt_fd is None:
                path = self.folder / _CKPT_FILE
                if not path.exists():
                    self._create_checkpoint(pos)
                self._ckpt_fd = os.open(path, os.O_WRONLY)
            seq = self._ckpt_seq + 1
            data = self._slot(seq, pos)
            if os.pwrite(self._ckpt_fd, data, (seq % 2) * _SLOT) != len(data):
                raise OSError(errno.EIO, "short checkpoint write")
            os.fdatasync(self._ckpt_fd)
            self._ckpt_seq = seq
        except OSError as exc:
            log.warning("spool: checkpoint not written (a restart re-sends from the previous one): %s", exc)

    # --- files -------------------------------------------------------------------------------
    def _path(self, seg: int) -> Path:
        return self.folder / f"spool-{seg:08d}.log"

    def _segments(self) -> list[int]:
        return sorted(int(p.stem.split("-")[1]) for p in self.folder.glob("spool-*.log"))

    def _file_size(self, seg: int) -> int:
        try:
            return self._path(seg).stat().st_size
        except FileNotFoundError:
            return 0

    def _unlink(self, seg: int) -> None:
        size = self._file_size(seg)
        self._path(seg).unlink(missing_ok=True)
        self.bytes = max(0, self.bytes - size)

    def _fsync_dir(self) -> None:
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        os.close(self._fd)
        if self._ckpt_fd is not None:
            os.close(self._ckpt_fd)
            self._ckpt_fd = None
