"""Live aggregates (migration 0014): the exact change a batch of credits or touches makes to
live_money / live_visits, computed against what the warehouse already holds.

A sum is not idempotent and rows reach the sink more than once for reasons it cannot see (a Faust
worker killed after sending its outputs but before saving its state re-emits them, under a new
version; a sink batch re-read after a crash). So nothing here counts rows as they arrive: for each
conversion of a credits batch the delta is what its newest version in the batch gives minus what its
stored newest version gives (credits_current moves the same way), nothing when the batch holds no
newer version than the stored one (a redelivery, an older version), and only the rows the warehouse
lacks when the batch holds more rows of the stored version (a version split over two batches). For a
touches batch, per stored row identity (project, day of start, touch_id: the touches table's key) the
visit moves from the stored row's bucket to the batch's last row's when they differ, and a touch not
stored yet adds one (bots count nothing).

The sink (sink.write_batch) inserts these deltas BEFORE the batch's rows, under the batch's token +
'-live': a crash between the two recomputes the same deltas (the warehouse did not change) under the
same token, which the warehouse drops; a crash after both recomputes none. This relies on one writer
per project at a time (credits and touches are keyed by project: a Kafka partition has one sink, the
embedded runner has one sink), and on the deltas being read and written before the rows.

Pure but for the one indexed read per project (credits by (project, conversion_id), touches by
(project, day, touch_id)); both adapters run the same SQL.
"""

from __future__ import annotations

import decimal
from collections import defaultdict
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Iterable

from .warehouse import Warehouse

MONEY, VISITS = "live_money", "live_visits"
LIVE_OF = {"credits": MONEY, "touches": VISITS}  # table of the batch -> table of its deltas
KINDS = frozenset({"lead", "sale", "payment", "refund"})  # what reports credit
MONEY_KEY = ("project", "model", "hour", "channel", "source", "campaign", "currency")
MONEY_SUMS = ("conversions", "leads", "sales", "sales_value", "revenue", "payments")
COUNTED_MODEL = "first_touch"  # `conversions` counts a conversion once: its one first_touch row
_EXACT = decimal.Context(prec=120)  # sums of Decimal(38, 18) values, never rounded

_STORED_CREDITS = """
SELECT conversion_id, version, model, credit_id, kind, toString(conversion_at) AS conversion_at, channel, source,
       campaign, weight, amount, currency
FROM credits
WHERE project = {p:String} AND conversion_id IN {ids:Array(String)}
  AND (conversion_id, version) IN (
      SELECT conversion_id, max(version) FROM credits
      WHERE project = {p:String} AND conversion_id IN {ids:Array(String)}
      GROUP BY conversion_id)
"""

_STORED_TOUCHES = """
SELECT touch_id, toString(toDate(started_at)) AS day, toString(started_at) AS started_at, channel, source, campaign,
       is_bot, toString(processed_at) AS processed_at
FROM touches FINAL
WHERE project = {p:String} AND toDate(started_at) >= {d0:Date} AND toDate(started_at) <= {d1:Date}
  AND touch_id IN {ids:Array(String)}
"""


def _instant(value: Any) -> datetime:
    """A DateTime64 as the sink or the warehouse writes it (ISO 8601 with or without a zone, or
    'YYYY-MM-DD hh:mm:ss.fff' in UTC), in UTC."""
    at = datetime.fromisoformat(str(value).strip())
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


def _hour(value: Any) -> str:
    return _instant(value).strftime("%Y-%m-%d %H:00:00")


def _dec(value: Any) -> Decimal:
    return Decimal(str(value))


def _credit_key(row: dict[str, Any]) -> tuple[int, str, str]:
    return int(row.get("version") or 0), str(row["model"]), str(row["credit_id"])


def _add_money(sums: dict[tuple, list], row: dict[str, Any], project: str, sign: int) -> None:
    kind = str(row["kind"])
    weight, amount = _dec(row["weight"]), _dec(row["amount"])
    if kind not in KINDS or (weight == 0 and amount == 0):  # credits_current leaves such rows out
        return
    key = (project, str(row["model"]), _hour(row["conversion_at"]), str(row.get("channel") or ""),
           str(row.get("source") or ""), str(row.get("campaign") or ""),
           str(row.get("currency") or "") if kind != "lead" else "")
    acc = sums.setdefault(key, [0, Decimal(0), Decimal(0), Decimal(0), Decimal(0), Decimal(0)])
    s = Decimal(sign)
    acc[0] += sign if row["model"] == COUNTED_MODEL else 0
    if kind == "lead":
        acc[1] = _EXACT.add(acc[1], s * weight)
    elif kind == "sale":
        acc[2] = _EXACT.add(acc[2], s * weight)
        acc[3] = _EXACT.add(acc[3], s * amount)
    else:
        acc[4] = _EXACT.add(acc[4], s * amount)
        acc[5] = _EXACT.add(acc[5], s * weight)


def money_deltas(wh: Warehouse, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """live_money rows that move it from what the stored credits give to what they give with this
    batch in (zero rows left out)."""
    batch: dict[str, dict[str, dict[tuple, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        try:
            batch[str(row["project"])][str(row["conversion_id"])][_credit_key(row)] = row
        except (KeyError, TypeError, ValueError):  # a row the warehouse will refuse too (dead-lettered)
            continue
    sums: dict[tuple, list] = {}
    for project, convs in batch.items():
        stored: dict[str, dict[tuple, dict[str, Any]]] = defaultdict(dict)
        for r in wh.rows(_STORED_CREDITS, {"p": project, "ids": sorted(convs)}):
            stored[r["conversion_id"]][_credit_key(r)] = r
        for cid, got in convs.items():
            newest = max(k[0] for k in got)
            new = {k: r for k, r in got.items() if k[0] == newest}
            old = stored.get(cid, {})
            old_version = max((k[0] for k in old), default=None)
            if old_version is not None and newest < old_version:
                continue  # an older version: credits_current does not move
            if old_version == newest:  # more rows of the stored version (it was split over batches)
                new, old = {k: r for k, r in new.items() if k not in old}, {}
            try:
                for r in new.values():
                    _add_money(sums, r, project, +1)
                for r in old.values():
                    _add_money(sums, r, project, -1)
            except (KeyError, TypeError, ValueError, decimal.InvalidOperation):
                continue  # unreadable rows: the warehouse refuses them (dead letters), they count nothing
    return [{**dict(zip(MONEY_KEY, key)), "conversions": acc[0], "leads": format(acc[1], "f"),
             "sales": format(acc[2], "f"), "sales_value": format(acc[3], "f"), "revenue": format(acc[4], "f"),
             "payments": format(acc[5], "f")}
            for key, acc in sums.items() if any(acc)]


def _bucket(row: dict[str, Any]) -> tuple[str, str, str, str, bool]:
    return (_hour(row["started_at"]), str(row.get("channel") or ""), str(row.get("source") or ""),
            str(row.get("campaign") or ""), bool(row.get("is_bot")))


def visit_deltas(wh: Warehouse, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """live_visits rows that move it from the stored touches (FINAL) to the touches with this batch in."""
    batch: dict[str, dict[tuple[date, str], dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        try:
            batch[str(row["project"])][(_instant(row["started_at"]).date(), str(row["touch_id"]))] = row  # last wins
        except (KeyError, TypeError, ValueError):
            continue
    counts: dict[tuple, int] = defaultdict(int)
    for project, touches in batch.items():
        days = [d for d, _ in touches]
        stored = {(date.fromisoformat(r["day"]), r["touch_id"]): r for r in wh.rows(_STORED_TOUCHES, {
            "p": project, "d0": min(days).isoformat(), "d1": max(days).isoformat(),
            "ids": sorted({t for _, t in touches})})}
        for key, row in touches.items():
            try:
                new = _bucket(row)
                old_row = stored.get(key)
                if old_row is not None and row.get("processed_at") and \
                        _instant(row["processed_at"]) < _instant(old_row["processed_at"]):
                    continue  # an older row than the stored one: FINAL keeps the stored one
                old = _bucket(old_row) if old_row is not None else None
            except (KeyError, TypeError, ValueError):
                continue
            if old == new:
                continue
            if old is not None and not old[4]:
                counts[(project, *old[:4])] -= 1
            if not new[4]:
                counts[(project, *new[:4])] += 1
    return [{"project": k[0], "hour": k[1], "channel": k[2], "source": k[3], "campaign": k[4], "visits": n}
            for k, n in counts.items() if n]


def deltas(wh: Warehouse, table: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The deltas of a batch of `table` rows, for the table LIVE_OF[table]."""
    return money_deltas(wh, rows) if table == "credits" else visit_deltas(wh, rows)


_REBUILD = (
    ("live_money", """
INSERT INTO live_money
SELECT project, model, toStartOfHour(toDateTime(conversion_at, 'UTC')) AS hour, channel, source, campaign,
       if(kind IN ('payment', 'refund', 'sale'), toString(currency), '') AS cur,
       toInt64(countIf(model = 'first_touch')), sumIf(weight, kind = 'lead'), sumIf(weight, kind = 'sale'),
       sumIf(amount, kind = 'sale'), sumIf(amount, kind IN ('payment', 'refund')),
       sumIf(weight, kind IN ('payment', 'refund'))
FROM credits_current
WHERE project = {p:String} AND kind IN ('lead', 'sale', 'payment', 'refund')
GROUP BY project, model, hour, channel, source, campaign, cur
SETTINGS insert_deduplicate = 0"""),
    ("live_visits", """
INSERT INTO live_visits
SELECT project, toStartOfHour(toDateTime(started_at, 'UTC')) AS hour, channel, source, campaign, toInt64(count())
FROM touches FINAL
WHERE project = {p:String} AND NOT is_bot
GROUP BY project, hour, channel, source, campaign
SETTINGS insert_deduplicate = 0"""),
)


def rebuild(wh: Warehouse, project: str) -> None:
    """A project's aggregates afresh from credits_current and touches FINAL (a replay: touches
    rewritten or deleted, credits re-versioned): its rows deleted, then summed again."""
    for table, insert in _REBUILD:
        wh.command(f"DELETE FROM {table} WHERE project = {{p:String}}", {"p": project})
        wh.command(insert, {"p": project})



# The aggregates against their definition: the rows where they differ (none: exact). For tests and
# for an operator's check; each is a scan of the project's credits / touches.
DRIFT_MONEY = """
SELECT model, toString(hour) AS hour, channel, source, campaign, currency, sum(n) AS conversions, sum(l) AS leads,
       sum(s) AS sales, sum(sv) AS sales_value, sum(r) AS revenue, sum(pw) AS payments
FROM (
    SELECT model, hour, channel, source, campaign, currency, conversions AS n, leads AS l, sales AS s,
           sales_value AS sv, revenue AS r, payments AS pw
    FROM live_money WHERE project = {p:String}
    UNION ALL
    SELECT model, toStartOfHour(toDateTime(conversion_at, 'UTC')), channel, source, campaign,
           if(kind IN ('payment', 'refund', 'sale'), toString(currency), ''),
           -toInt64(model = 'first_touch'), -if(kind = 'lead', weight, 0), -if(kind = 'sale', weight, 0),
           -if(kind = 'sale', amount, 0), -if(kind IN ('payment', 'refund'), amount, 0),
           -if(kind IN ('payment', 'refund'), weight, 0)
    FROM credits_current WHERE project = {p:String} AND kind IN ('lead', 'sale', 'payment', 'refund')
)
GROUP BY model, hour, channel, source, campaign, currency
HAVING conversions != 0 OR leads != 0 OR sales != 0 OR sales_value != 0 OR revenue != 0 OR payments != 0
"""

DRIFT_VISITS = """
SELECT toString(hour) AS hour, channel, source, campaign, sum(v) AS visits
FROM (
    SELECT hour, channel, source, campaign, visits AS v FROM live_visits WHERE project = {p:String}
    UNION ALL
    SELECT toStartOfHour(toDateTime(started_at, 'UTC')), channel, source, campaign, -1
    FROM touches FINAL WHERE project = {p:String} AND NOT is_bot
)
GROUP BY hour, channel, source, campaign
HAVING visits != 0
"""
