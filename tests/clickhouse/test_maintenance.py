"""Superseded credit versions are deleted; what reports read (credits_current) stays the same."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson

from clickhouse.maintenance import Upkeep, prune_superseded_credits
from clickhouse.sink import BatchingSink
from schemas import topics


def _credit(project: str, conversion: str, version: int, touch: str, weight: str, amount: str) -> dict:
    return {"project": project, "credit_id": f"{conversion}:{touch}:{version:x}", "conversion_id": conversion,
            "kind": "sale", "conversion_at": "2026-05-01T10:00:00Z", "person_id": "p_1", "model": "linear",
            "touch_id": touch, "channel": f"ch-{touch}", "source": "s", "medium": "m", "campaign": "",
            "weight": weight, "amount": amount, "currency": "KZT", "revision": version, "version": version}


def _current(wh, project):
    return sorted((r["conversion_id"], r["touch_id"], r["amount"]) for r in wh.rows(
        "SELECT conversion_id, touch_id, toString(amount) AS amount FROM credits_current WHERE project = {p:String}",
        {"p": project}))


def _rows(wh, project):
    return wh.rows("SELECT count() AS n FROM credits WHERE project = {p:String}", {"p": project})[0]["n"]


def test_older_versions_go_and_the_current_credits_stay(wh):
    p = f"m{uuid.uuid4().hex[:8]}"
    wh.insert("credits", [
        _credit(p, "sale:1", 1, "t1", "1", "100"),                                        # a first visit
        _credit(p, "sale:1", 2, "t1", "0.5", "50"), _credit(p, "sale:1", 2, "t2", "0.5", "50"),  # a second
        _credit(p, "sale:1", 3, "t1", "0.333333333333333334", "33.34"),                  # a third
        _credit(p, "sale:1", 3, "t2", "0.333333333333333333", "33.33"),
        _credit(p, "sale:1", 3, "t3", "0.333333333333333333", "33.33"),
        _credit(p, "sale:2", 7, "t9", "1", "10"),                                        # only one version
    ])
    before = _current(wh, p)
    assert _rows(wh, p) == 7
    prune_superseded_credits(wh)
    assert _rows(wh, p) == 4  # version 3 of sale:1 and sale:2's only version
    assert _current(wh, p) == before
    prune_superseded_credits(wh)  # nothing more to do
    assert _rows(wh, p) == 4 and _current(wh, p) == before


def test_the_sink_prunes_between_batches_when_due(wh):
    p = f"m{uuid.uuid4().hex[:8]}"

    async def run() -> None:
        sink = BatchingSink(wh, max_rows=1000, max_seconds=0.2, prune_every_s=0.3)
        await sink.start()
        await sink.put(topics.CREDITS, [(p.encode(), orjson.dumps(_credit(p, "sale:1", v, "t1", "1", "100")))
                                        for v in (1, 2, 3)])
        started = time.monotonic()
        while _rows(wh, p) != 1 and time.monotonic() - started < 10:
            await asyncio.sleep(0.1)
        await sink.stop()

    asyncio.run(run())
    assert _rows(wh, p) == 1
    assert _current(wh, p) == [("sale:1", "t1", "100")]
    assert not Upkeep(wh, 0).due()  # 0: never
