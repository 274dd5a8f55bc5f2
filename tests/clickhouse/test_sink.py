"""The sink never lets one row stop the rows after it: refused rows are split out of their batch
and dead-lettered with the warehouse's reason; a warehouse that is away is retried, and a stop
signal ends the retrying promptly. On both adapters (their error messages differ)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
import pytest

from clickhouse.sink import BatchingSink, SinkHealth, insert_with_retry, refuses_data
from clickhouse.warehouse import WarehouseError
from schemas import topics

TOO_MANY_DIGITS = "1" + "0" * 38  # 39 digits: Decimal(38, 6) cannot hold it


def _conversion(project: str, i: int, value: str = "100.50") -> dict[str, Any]:
    return {"project": project, "conversion_id": f"sale:order:{i}", "kind": "sale", "source": "track",
            "at": "2026-11-20T10:00:00+00:00", "value": value, "currency": "KZT", "anonymous_id": f"a{i}",
            "user_id": "", "deal_id": "", "stage": "", "stage_kind": "", "event_id": f"e{i}",
            "tracking_number": "", "ids": {}, "subject": f"anon:a{i}"}


def _count(wh, table: str, project: str) -> int:
    return wh.rows(f"SELECT count() AS c FROM {table} WHERE project = {{p:String}}", {"p": project})[0]["c"]


def test_one_refused_row_in_a_thousand_is_dead_lettered_and_the_rest_inserted(wh):
    p = f"p{uuid.uuid4().hex[:8]}"
    rows = [_conversion(p, i, TOO_MANY_DIGITS if i == 637 else "100.50") for i in range(1000)]
    health = SinkHealth()
    assert insert_with_retry(wh, "conversions", rows, f"test-{p}", health=health)
    assert _count(wh, "conversions", p) == 999
    dead = wh.rows("SELECT reason, detail, payload FROM dead_letters WHERE project = {p:String}", {"p": p})
    assert len(dead) == 1 and health.dead_lettered == 1
    assert dead[0]["reason"] == "warehouse_refused"
    assert "digits" in dead[0]["detail"].lower() and dead[0]["detail"].startswith("conversions:")
    assert orjson.loads(dead[0]["payload"])["conversion_id"] == "sale:order:637"
    assert health.failing_since is None  # the warehouse answered: it is not failing

    # the same batch again (a crash before the offsets were committed): every piece has the same
    # token as before, so nothing is added
    assert insert_with_retry(wh, "conversions", rows, f"test-{p}", health=SinkHealth())
    assert _count(wh, "conversions", p) == 999
    assert _count(wh, "dead_letters", p) == 1


def test_nan_and_a_bad_time_are_refused_by_the_warehouse_as_data(wh):
    p = f"p{uuid.uuid4().hex[:8]}"
    bad = [dict(_conversion(p, 1), value="NaN"), dict(_conversion(p, 2), at="not a time")]
    for row in bad:
        with pytest.raises(WarehouseError) as caught:
            wh.insert("conversions", [row], None)
        assert refuses_data(caught.value), str(caught.value)[:300]
    assert insert_with_retry(wh, "conversions", bad + [_conversion(p, 3)], f"test-{p}")
    assert _count(wh, "conversions", p) == 1
    assert _count(wh, "dead_letters", p) == 2


class _Away:
    """A warehouse that cannot be reached (as clickhouse-connect says it)."""

    def __init__(self) -> None:
        self.tries = 0

    def insert(self, table: str, rows: Any, token: str | None = None) -> None:
        self.tries += 1
        raise WarehouseError("Error HTTPConnectionPool(host='127.0.0.1', port=1): Connection refused")


def test_a_warehouse_that_is_away_is_retried_not_split_and_a_stop_ends_it_promptly():
    away = _Away()
    assert not refuses_data(WarehouseError("Error HTTPConnectionPool(host='x'): Connection refused"))
    deadline = time.monotonic() + 1.0
    health = SinkHealth()
    started = time.monotonic()
    assert not insert_with_retry(away, "touches", [{"project": "p"}] * 10, "t", lambda: time.monotonic() > deadline,
                                 health=health)
    assert time.monotonic() - started < 1.5
    assert away.tries >= 3 and health.dead_lettered == 0  # retried whole: never split into dead letters
    assert health.failing_for() > 0.5 and "Connection refused" in health.last_error


async def test_a_poison_row_delays_the_next_thousand_events_by_at_most_a_few_seconds(wh):
    p = f"p{uuid.uuid4().hex[:8]}"
    sink = BatchingSink(wh, max_rows=10_000, max_seconds=0.2)
    await sink.start()
    try:
        await sink.put(topics.CONVERSIONS, [(b"", orjson.dumps(_conversion(p, 0, TOO_MANY_DIGITS)))])
        await asyncio.sleep(0.3)  # the poison row is in a batch of its own, or not: either must work
        started = time.monotonic()
        await sink.put(topics.CONVERSIONS, [(b"", orjson.dumps(_conversion(p, i))) for i in range(1, 1001)])
        while _count(wh, "conversions", p) < 1000 and time.monotonic() - started < 20:
            await asyncio.sleep(0.05)
        delay = time.monotonic() - started
    finally:
        await sink.stop()
    assert _count(wh, "conversions", p) == 1000
    assert _count(wh, "dead_letters", p) == 1
    assert delay < 5, f"the next 1 000 events took {delay:.2f}s"
    print(f"next 1000 events after a poison row reached the warehouse in {delay:.2f}s")


class _Switch:
    """The real warehouse behind a switch: while `down`, inserts fail as a refused connection."""

    def __init__(self, wh) -> None:
        self.wh, self.down = wh, False

    def insert(self, table: str, rows: Any, token: str | None = None) -> None:
        if self.down:
            raise WarehouseError("Connection refused")
        self.wh.insert(table, rows, token)

    def rows(self, *a: Any) -> Any:
        return self.wh.rows(*a)

    def command(self, *a: Any) -> None:
        self.wh.command(*a)


async def test_a_sink_retrying_an_unavailable_warehouse_stops_within_its_grace_and_recovers_when_it_is_back(chdb_wh):
    p = f"p{uuid.uuid4().hex[:8]}"
    switch = _Switch(chdb_wh)
    switch.down = True
    sink = BatchingSink(switch, max_rows=10_000, max_seconds=0.1, stop_grace_s=0.5)
    await sink.start()
    await sink.put(topics.CONVERSIONS, [(b"", orjson.dumps(_conversion(p, 1)))])
    await asyncio.sleep(1.0)
    assert sink.health.failing_for() > 0.3 and sink.health.insert_failures >= 2
    switch.down = False  # back: the same batch goes in, the health says so
    for _ in range(100):
        if _count(chdb_wh, "conversions", p) == 1:
            break
        await asyncio.sleep(0.05)
    assert _count(chdb_wh, "conversions", p) == 1 and sink.health.failing_since is None
    switch.down = True
    await sink.put(topics.CONVERSIONS, [(b"", orjson.dumps(_conversion(p, 2)))])
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await sink.stop()
    assert time.monotonic() - started < 2.0
    assert sink.rows_unwritten == 1  # said, not silently dropped
