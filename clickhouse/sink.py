"""The sink: bus records -> warehouse rows, in batches, idempotently.

Every batch carries a deterministic insert_deduplication_token, so a retried insert of the same
batch adds 0 rows; tables are ReplacingMergeTree on deterministic ids, so a record delivered twice
in different batches (at-least-once) collapses to one row.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from schemas import topics
from schemas.reasons import RejectReason

from .maintenance import Upkeep
from .warehouse import Warehouse, WarehouseError

log = logging.getLogger("moneytrail.sink")

TABLE_OF_TOPIC = {topics.RAW: "raw_events", topics.TOUCHES: "touches", topics.CONVERSIONS: "conversions",
                  topics.SPEND: "ad_spend", topics.LEASES: "leases", topics.RATES: "currency_rates",
                  topics.DEAD_LETTERS: "dead_letters", topics.LINKS: "identity_links",
                  topics.IDENTITY: "identity_map", topics.GUARDS: "identity_guard", topics.CREDITS: "credits",
                  topics.MATCHES: "identity_links"}


def _raw_row(value: bytes) -> dict[str, Any]:
    env = orjson.loads(value)
    return {
        "project": env["project"],
        "event_id": env["event_id"],
        "type": env["type"],
        "schema": env["schema"],
        "anonymous_id": env.get("anonymous_id") or "",
        "user_id": env.get("user_id") or "",
        "timestamp": env["timestamp"],
        "received_at": env["received_at"],
        "payload": value.decode(),
    }


def _touch_row(value: bytes) -> dict[str, Any]:
    row = orjson.loads(value)
    row["user_id"] = row.get("user_id") or ""
    return row


def _dead_row(value: bytes) -> dict[str, Any]:
    return orjson.loads(value)


ROW_OF_TOPIC: dict[str, Callable[[bytes], dict[str, Any]]] = {
    topics.RAW: _raw_row,
    topics.TOUCHES: _touch_row,
    topics.CONVERSIONS: orjson.loads,
    topics.SPEND: orjson.loads,
    topics.LEASES: orjson.loads,
    topics.RATES: orjson.loads,
    topics.DEAD_LETTERS: _dead_row,
    topics.LINKS: orjson.loads,
    topics.IDENTITY: orjson.loads,
    topics.GUARDS: orjson.loads,
    topics.CREDITS: orjson.loads,
    topics.MATCHES: orjson.loads,
}


def convert(topic: str, values: list[bytes]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows for the topic's table, and dead-letter rows for values that cannot become rows (never
    dropped silently, never crashing the sink)."""
    to_row = ROW_OF_TOPIC[topic]
    rows, dead = [], []
    for value in values:
        try:
            rows.append(to_row(value))
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            dead.append({"project": "", "reason": RejectReason.undecodable.value,
                         "detail": f"sink could not read a {topic} record: {exc!r}"[:500],
                         "payload": value.decode("utf-8", "replace")})
    return rows, dead


def row_id(row: dict[str, Any]) -> str:
    if "credit_id" in row:
        return str(row["credit_id"])
    if "identifier" in row:
        return f"{row['identifier']}@{row['version']}"
    if "evidence" in row or "person_a" in row:
        return f"{row['a']}|{row['b']}|{row.get('event_id', '')}|{row.get('version', '')}"
    return str(row.get("conversion_id") or row.get("row_id") or row.get("event_id") or row.get("touch_id")
               or (f"{row['lease_id']}:{row['expires_at']}" if "lease_id" in row else "")
               or (f"{row['base']}:{row['currency']}:{row['day']}:{row['imported_at']}" if "base" in row else "")
               or hashlib.sha1(orjson.dumps(row)).hexdigest())


def batch_token(table: str, ids: list[str]) -> str:
    return hashlib.sha256((table + "\n" + "\n".join(ids)).encode()).hexdigest()[:40]


def insert_with_retry(wh: Warehouse, table: str, rows: list[dict[str, Any]], token: str,
                      stop: Callable[[], bool] = lambda: False, max_backoff_s: float = 5.0) -> bool:
    """Insert until it succeeds (the warehouse may be down): nothing is dropped, nothing is
    committed upstream before this returns True. Returns False only when asked to stop."""
    delay = 0.1
    while True:
        try:
            wh.insert(table, rows, token)
            return True
        except WarehouseError as exc:
            if stop():
                return False
            log.warning("warehouse insert into %s failed, retrying in %.1fs: %s", table, delay, exc)
            time.sleep(delay)
            delay = min(delay * 2, max_backoff_s)


@dataclass
class _Pending:
    rows: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    since: float = 0.0


class BatchingSink:
    """In-process sink (embedded mode): `put` collects records; a flusher writes a table's batch
    when it reaches max_rows or is max_seconds old."""

    def __init__(self, wh: Warehouse, max_rows: int = 10_000, max_seconds: float = 0.5,
                 prune_every_s: float = 0) -> None:
        self._wh = wh
        self._upkeep = Upkeep(wh, prune_every_s)
        self._max_rows = max_rows
        self._max_seconds = max_seconds
        self._pending: dict[str, _Pending] = {}
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self.rows_written = 0

    async def put(self, topic: str, records: list[tuple[bytes, bytes]]) -> None:
        rows, dead = convert(topic, [value for _key, value in records])
        for table, new in ((TABLE_OF_TOPIC[topic], rows), (TABLE_OF_TOPIC[topics.DEAD_LETTERS], dead)):
            if not new:
                continue
            pending = self._pending.setdefault(table, _Pending())
            if not pending.rows:
                pending.since = time.monotonic()
            pending.rows.extend(new)
            pending.ids.extend(row_id(r) for r in new)
            if len(pending.rows) >= self._max_rows:
                self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sink-flusher")

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._max_seconds / 4)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            await self.flush(only_due=True)
            if self._upkeep.due():
                async with self._write_lock:
                    await asyncio.to_thread(self._upkeep.run)

    async def flush(self, only_due: bool = False) -> None:
        async with self._write_lock:
            now = time.monotonic()
            for table, pending in list(self._pending.items()):
                if not pending.rows:
                    continue
                if only_due and len(pending.rows) < self._max_rows and now - pending.since < self._max_seconds:
                    continue
                self._pending[table] = _Pending()
                token = batch_token(table, pending.ids)
                await asyncio.to_thread(insert_with_retry, self._wh, table, pending.rows, token)
                self.rows_written += len(pending.rows)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()
