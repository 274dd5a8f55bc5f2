"""The sink: bus records -> warehouse rows, in batches, idempotently.

Every batch carries a deterministic insert_deduplication_token, so a retried insert of the same
batch adds 0 rows; tables are ReplacingMergeTree on deterministic ids, so a record delivered twice
in different batches (at-least-once) collapses to one row. A batch of credits or touches first
writes the exact change it makes to the live aggregates (clickhouse/live.py; write_batch).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from schemas import topics
from schemas.reasons import RejectReason

from . import live
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


# ClickHouse error codes that are about the rows themselves (the same rows fail the same way on
# every try), not about the warehouse being away: a value that does not parse or does not fit its
# column. Anything else (connection refused, timeouts, memory, too many parts, no code at all) is
# taken as the warehouse being unavailable and retried without limit: a wrong guess there delays,
# a wrong guess here would dead-letter good rows.
DATA_ERROR_CODES = frozenset({
    6,    # CANNOT_PARSE_TEXT
    25,   # CANNOT_PARSE_ESCAPE_SEQUENCE
    26,   # CANNOT_PARSE_QUOTED_STRING
    27,   # CANNOT_PARSE_INPUT_ASSERTION_FAILED (e.g. "NaN" where a decimal is expected)
    32,   # ATTEMPT_TO_READ_AFTER_EOF
    33,   # CANNOT_READ_ALL_DATA
    36,   # BAD_ARGUMENTS
    38,   # CANNOT_PARSE_DATE
    41,   # CANNOT_PARSE_DATETIME
    43,   # ILLEGAL_TYPE_OF_ARGUMENT
    53,   # TYPE_MISMATCH
    69,   # ARGUMENT_OUT_OF_BOUND ("Too many digits (39 > 38) in decimal value")
    70,   # CANNOT_CONVERT_TYPE
    72,   # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    131,  # TOO_LARGE_STRING_SIZE
    190,  # SIZES_OF_ARRAYS_DONT_MATCH
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    407,  # DECIMAL_OVERFLOW
})
_CODE = re.compile(r"Code: (\d+)\.")
DATA_RETRIES = 2  # tries of a refused batch before it is split: a refusal is usually final at once
_DETAIL_CHARS = 1000


def refuses_data(exc: Exception) -> bool:
    """Whether an insert failed because of the rows (final), not the warehouse (transient).
    chDB and clickhouse-connect both carry the server's "Code: N." in the message; a connection
    failure carries none."""
    if not isinstance(exc, WarehouseError):  # a row orjson cannot serialise (JSONEncodeError)
        return isinstance(exc, TypeError)
    match = _CODE.search(str(exc))
    return match is not None and int(match.group(1)) in DATA_ERROR_CODES


# Codes that mean the warehouse is busy or away for now, not that the statement is wrong.
TRANSIENT_ERROR_CODES = frozenset({
    159,  # TIMEOUT_EXCEEDED
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    203,  # NO_FREE_CONNECTION
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    241,  # MEMORY_LIMIT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY
    252,  # TOO_MANY_PARTS
    425,  # SYSTEM_ERROR
})


def warehouse_unavailable(exc: Exception) -> bool:
    """Whether a failed statement means the warehouse cannot be reached or is overloaded (answer
    503, retry later), not a refusal of the statement. A connection failure carries no code."""
    if not isinstance(exc, WarehouseError):
        return False
    match = _CODE.search(str(exc))
    return match is None or int(match.group(1)) in TRANSIENT_ERROR_CODES


@dataclass
class SinkHealth:
    """How the sink's inserts are going, for /readyz and /metrics. Written by the sink's thread,
    read by the event loop: plain numbers, a torn read is harmless."""

    failing_since: float | None = None  # monotonic time of the first failure of the current outage
    last_error: str = ""
    insert_failures: int = 0  # inserts that failed (each retry counts)
    dead_lettered: int = 0  # rows the warehouse refused, written to dead_letters
    lost: int = 0  # dead letters the warehouse refused too (logged with their payload)

    def failed(self, exc: Exception) -> None:
        self.insert_failures += 1
        self.last_error = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        if self.failing_since is None:
            self.failing_since = time.monotonic()

    def succeeded(self) -> None:
        self.failing_since = None

    def failing_for(self) -> float:
        return 0.0 if self.failing_since is None else time.monotonic() - self.failing_since


def piece_token(token: str, lo: int, hi: int) -> str:
    """The deduplication token of rows [lo, hi) of a split batch: the same batch splits the same
    way on every try (the same rows are refused), so a retry after a crash adds 0 rows."""
    piece = f"{token}.{lo}-{hi}"
    return piece if len(piece) <= 128 else hashlib.sha256(piece.encode()).hexdigest()[:40]


def _pause(seconds: float, stop: Callable[[], bool]) -> bool:
    """Sleep, waking early when asked to stop; True when stopping."""
    end = time.monotonic() + seconds
    while not stop():
        left = end - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(left, 0.05))
    return True


def _dead_letter(row: dict[str, Any], table: str, exc: Exception) -> dict[str, Any]:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return {"project": str(row.get("project") or ""), "reason": RejectReason.warehouse_refused.value,
            "detail": f"{table}: {detail}"[:_DETAIL_CHARS],
            "payload": orjson.dumps(row, default=str).decode()}


def insert_with_retry(wh: Warehouse, table: str, rows: list[dict[str, Any]], token: str,
                      stop: Callable[[], bool] = lambda: False, max_backoff_s: float = 5.0,
                      health: SinkHealth | None = None, data_retries: int = DATA_RETRIES) -> bool:
    """Insert the rows so that nothing after them waits on them. A warehouse that is down is
    retried without limit (nothing is dropped; nothing is committed upstream before this returns
    True). Rows the warehouse refuses (a value that does not fit its column) are isolated by
    splitting the batch in halves after `data_retries` tries: the refused rows go to dead_letters
    with the warehouse's reason, the others are inserted, each piece under its own deterministic
    token. Returns False only when `stop()` turned true while the warehouse was unavailable."""
    health = health if health is not None else SinkHealth()
    pieces = [(0, len(rows), token, data_retries)]  # a stack: the left half is written first
    dead: list[dict[str, Any]] = []
    delay = 0.1
    while pieces:
        lo, hi, piece, tries_left = pieces.pop()
        try:
            wh.insert(table, rows[lo:hi], piece)
        except (WarehouseError, TypeError) as exc:
            health.failed(exc)
            if refuses_data(exc) and tries_left <= 0:
                if hi - lo == 1:
                    log.warning("warehouse refused a row of %s, dead-lettered: %s", table, health.last_error)
                    dead.append(_dead_letter(rows[lo], table, exc))
                else:
                    mid = (lo + hi) // 2
                    pieces.append((mid, hi, piece_token(token, mid, hi), 0))
                    pieces.append((lo, mid, piece_token(token, lo, mid), 0))
                continue
            pieces.append((lo, hi, piece, tries_left - 1 if refuses_data(exc) else tries_left))
            log.warning("warehouse insert into %s failed, retrying in %.1fs: %s", table, delay, health.last_error)
            if _pause(delay, stop):
                return False
            delay = min(delay * 2, max_backoff_s)
            continue
        health.succeeded()
        delay = 0.1
    if dead:
        health.dead_lettered += len(dead)
        if table == TABLE_OF_TOPIC[topics.DEAD_LETTERS]:  # a dead letter refused: nowhere left but the log
            health.lost += len(dead)
            for d in dead:
                log.error("warehouse refused a dead letter; its payload: %s", d["payload"][:2000])
            return True
        return insert_with_retry(wh, TABLE_OF_TOPIC[topics.DEAD_LETTERS], dead, piece_token(token, -1, len(rows)),
                                 stop, max_backoff_s, health, data_retries)
    return True


def live_token(token: str) -> str:
    """The token of a batch's live-aggregate deltas."""
    return piece_token(token, -2, 0) if len(token) + 5 > 128 else f"{token}-live"


def _live_deltas(wh: Warehouse, table: str, rows: list[dict[str, Any]], stop: Callable[[], bool],
                 max_backoff_s: float, health: SinkHealth) -> list[dict[str, Any]] | None:
    """The batch's deltas (live.deltas), reading the warehouse; retried without limit while it is
    unavailable (None: stopping meanwhile). A read the warehouse refuses DATA_RETRIES + 1 times
    (no such read is known) is logged and the batch goes in without deltas rather than stopping
    the topic for good."""
    delay, refused = 0.1, 0
    while True:
        try:
            return live.deltas(wh, table, rows)
        except WarehouseError as exc:
            health.failed(exc)
            if not warehouse_unavailable(exc):
                refused += 1
                if refused > DATA_RETRIES:
                    log.error("could not compute the live aggregates of a %s batch (%d rows), written without "
                              "them: %s", table, len(rows), health.last_error)
                    return []
            log.warning("reading %s for the live aggregates failed, retrying in %.1fs: %s", table, delay,
                        health.last_error)
            if _pause(delay, stop):
                return None
            delay = min(delay * 2, max_backoff_s)


def write_batch(wh: Warehouse, table: str, rows: list[dict[str, Any]], token: str,
                stop: Callable[[], bool] = lambda: False, max_backoff_s: float = 5.0,
                health: SinkHealth | None = None) -> bool:
    """insert_with_retry, and for credits and touches their live-aggregate deltas first (under
    live_token(token)): deltas computed against the warehouse before the rows are in, so a batch
    re-written after a crash between the two computes the same deltas under the same token (the
    warehouse drops them) and one re-written after both computes none (clickhouse/live.py)."""
    health = health if health is not None else SinkHealth()
    target = live.LIVE_OF.get(table)
    if target is not None and rows:
        deltas = _live_deltas(wh, table, rows, stop, max_backoff_s, health)
        if deltas is None:
            return False
        if deltas and not insert_with_retry(wh, target, deltas, live_token(token), stop, max_backoff_s, health):
            return False
    return insert_with_retry(wh, table, rows, token, stop, max_backoff_s, health)


@dataclass
class _Pending:
    rows: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    since: float = 0.0


class BatchingSink:
    """In-process sink (embedded mode): `put` collects records; a flusher writes a table's batch
    when it reaches max_rows or is max_seconds old. A batch the warehouse refuses in part is split
    (insert_with_retry), so it never holds up the batches after it; `stop` ends a sink that is
    retrying an unavailable warehouse within `stop_grace_s`."""

    def __init__(self, wh: Warehouse, max_rows: int = 10_000, max_seconds: float = 0.5,
                 prune_every_s: float = 0, stop_grace_s: float = 5.0) -> None:
        self._wh = wh
        self._upkeep = Upkeep(wh, prune_every_s)
        self._max_rows = max_rows
        self._max_seconds = max_seconds
        self._stop_grace_s = stop_grace_s
        self._pending: dict[str, _Pending] = {}
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._give_up_at: float | None = None  # set by stop(): retries end then
        self.rows_written = 0
        self.rows_unwritten = 0  # rows given up at stop because the warehouse stayed unavailable
        self.health = SinkHealth()

    def _stopping(self) -> bool:
        return self._give_up_at is not None and time.monotonic() >= self._give_up_at

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
        while self._give_up_at is None:
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
                written = await asyncio.to_thread(write_batch, self._wh, table, pending.rows, token,
                                                  self._stopping, health=self.health)
                if written:
                    self.rows_written += len(pending.rows)
                else:  # stopping with the warehouse away: the in-process bus cannot keep them
                    self.rows_unwritten += len(pending.rows)
                    log.error("stopping with the warehouse unavailable: %d %s rows not written (%s)",
                              len(pending.rows), table, self.health.last_error)

    async def stop(self) -> None:
        """Write what is pending and end. The flusher is not cancelled mid-insert (its thread would
        go on writing): it sees the stop, and its retries end `stop_grace_s` from now."""
        self._give_up_at = time.monotonic() + self._stop_grace_s
        self._wake.set()
        if self._task:
            await self._task
        await self.flush()
