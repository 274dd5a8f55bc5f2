"""A local spool: an append-only, fsynced log of records the bus has not acknowledged yet.

When Kafka does not acknowledge in time, the collector writes the records here (one fsync shared by
every request waiting at that moment: group commit) and answers 2xx; a drainer publishes them to
Kafka, in order, when it is back. Records may then reach Kafka twice (a timed-out send can still
land): every record carries a deterministic id and the warehouse collapses duplicates.

Layout: segment files spool-NNNNNNNN.log of framed records [len u32][crc32 u32][payload], payload =
[topic len u8][topic][key len u32][key][value]; a checkpoint file names the first record not yet
drained (segment, byte offset). A torn tail (crash mid-write) fails its CRC and is cut off.
"""

from __future__ import annotations

import asyncio
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Iterator

Record = tuple[str, bytes, bytes]  # topic, key, value
_HEAD = struct.Struct(">II")


class SpoolError(RuntimeError):
    """The spool could not make records durable (disk full, permissions)."""


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


@dataclass(frozen=True)
class Position:
    segment: int
    offset: int


class Spool:
    def __init__(self, folder: Path, segment_bytes: int = 64 << 20) -> None:
        self.folder = folder
        self.segment_bytes = segment_bytes
        folder.mkdir(parents=True, exist_ok=True)
        self._checkpoint = self._read_checkpoint()
        segments = self._segments()
        self._segment = segments[-1] if segments else max(self._checkpoint.segment, 1)
        self._fd = os.open(self._path(self._segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size
        self._queue: list[tuple[list[Record], asyncio.Future]] = []
        self._writer: asyncio.Task | None = None
        self.pending = sum(1 for _ in self._read_from(self._checkpoint))

    # --- writing -----------------------------------------------------------------------------
    async def append(self, records: list[Record]) -> None:
        """Returns once the records are fsynced. Raises SpoolError if they could not be."""
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.append((records, fut))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued())
        await fut

    async def _write_queued(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            data = b"".join(_frame(*r) for records, _ in batch for r in records)
            try:
                await asyncio.to_thread(self._write, data)
            except OSError as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(SpoolError(f"spool write failed: {exc}"))
                continue
            self.pending += sum(len(records) for records, _ in batch)
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    def _write(self, data: bytes) -> None:
        if self._size + len(data) > self.segment_bytes and self._size > 0:
            os.close(self._fd)
            self._segment += 1
            self._fd = os.open(self._path(self._segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._size = 0
            self._fsync_dir()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)
        self._size += len(data)

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
            await asyncio.to_thread(self._write_checkpoint, end)
            self._checkpoint = end
            self.pending = max(0, self.pending - len(chunk))
            done += len(chunk)
        await asyncio.to_thread(self._drop_drained)
        return done

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
        for seg in self._segments():
            if seg < start.segment:
                continue
            path = self._path(seg)
            data = path.read_bytes()
            pos = start.offset if seg == start.segment else 0
            while pos + _HEAD.size <= len(data):
                length, crc = _HEAD.unpack_from(data, pos)
                payload = data[pos + _HEAD.size:pos + _HEAD.size + length]
                if len(payload) < length or zlib.crc32(payload) != crc:
                    break  # a torn tail: what follows was never acknowledged to anyone
                pos += _HEAD.size + length
                yield _unframe(payload), Position(seg, pos)
            if seg == self._segment:
                return
            # a finished segment is read to its end; the next one starts at 0

    def _drop_drained(self) -> None:
        for seg in self._segments():
            if seg < self._checkpoint.segment and seg != self._segment:
                self._path(seg).unlink(missing_ok=True)
        if self.pending == 0 and self._checkpoint.segment == self._segment and self._checkpoint.offset == self._size > 0:
            # everything drained: start a fresh segment so the spool does not grow forever
            os.close(self._fd)
            old = self._segment
            self._segment += 1
            self._fd = os.open(self._path(self._segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._size = 0
            self._write_checkpoint(Position(self._segment, 0))
            self._checkpoint = Position(self._segment, 0)
            self._path(old).unlink(missing_ok=True)

    # --- files -------------------------------------------------------------------------------
    def _path(self, seg: int) -> Path:
        return self.folder / f"spool-{seg:08d}.log"

    def _segments(self) -> list[int]:
        return sorted(int(p.stem.split("-")[1]) for p in self.folder.glob("spool-*.log"))

    def _read_checkpoint(self) -> Position:
        try:
            seg, off = (self.folder / "checkpoint").read_text().split()
            return Position(int(seg), int(off))
        except (FileNotFoundError, ValueError):
            segments = self._segments()
            return Position(segments[0] if segments else 1, 0)

    def _write_checkpoint(self, pos: Position) -> None:
        tmp = self.folder / "checkpoint.tmp"
        with open(tmp, "w") as f:
            f.write(f"{pos.segment} {pos.offset}")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.folder / "checkpoint")

    def _fsync_dir(self) -> None:
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        os.close(self._fd)
