"""The live aggregates (live_money, live_visits: migration 0014, clickhouse/live.py) stay exactly
what the stored credits and touches give, whatever the delivery: a batch delivered twice, a record
re-emitted under a new version, a conversion re-credited to another channel by a merge, a repeat
lead, a touch re-emitted as it grows and moved by a late hit, a sink that crashed between a batch's
deltas and its rows. After each: the aggregates equal their definition over credits_current and
touches FINAL, and the reports read from them equal the reports credited at query time."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

import orjson

from clickhouse import live, reports
from clickhouse.sink import insert_with_retry, live_token, write_batch
from schemas import topics
from stream_processors.persons import MemoryStore, Persons, PersonsConfig
from tests.clickhouse.test_query_time_models import START, _conv_row, _link_row, _touch_row

FROM, TO = date(2026, 2, 1), date(2026, 4, 30)
LIVE = reports.LiveRules(30, 30)
H = 3_600_000  # ms


class Stage:
    """The real persons stage; each input row and each output written as the sink writes them, one
    batch per step unless told otherwise."""

    def __init__(self, wh) -> None:
        self.wh, self.p = wh, f"la{uuid.uuid4().hex[:10]}"
        self.stage = Persons(MemoryStore(), PersonsConfig(lookback=timedelta(days=30)))
        self.n = 0

    def _token(self, what: str) -> str:
        self.n += 1
        return f"{self.p}-{what}-{self.n}"

    def step(self, topic: str, row: dict, write_credits: bool = True) -> list[dict]:
        table = {topics.TOUCHES: "touches", topics.CONVERSIONS: "conversions", topics.LINKS: "identity_links"}[topic]
        write_batch(self.wh, table, [row], self._token(table))
        out = self.stage.step(topic, orjson.dumps(row))
        if out.identity:
            self.wh.insert("identity_map", out.identity, self._token("identity"))
        if write_credits and out.credits:
            write_batch(self.wh, "credits", out.credits, self._token("credits"))
        return out.credits

    def touch(self, tid: str, anon: str, ms: int, channel: str, source: str, **kw) -> list[dict]:
        return self.step(topics.TOUCHES, _touch_row(self.p, tid, anon, START + timedelta(milliseconds=ms), channel,
                                                    source, **kw))

    def conv(self, cid: str, kind: str, ms: int, value: str, subject: str, **kw) -> list[dict]:
        return self.step(topics.CONVERSIONS, _conv_row(self.p, cid, kind, START + timedelta(milliseconds=ms),
                                                       Decimal(value), "" if kind == "lead" else "KZT", subject), **kw)

    def link(self, a: str, b: str) -> list[dict]:
        return self.step(topics.LINKS, {**_link_row(self.p, a, b), "event_id": f"{a}|{b}"})


def _money(wh, p: str, definition: bool) -> set[tuple]:
    sql = ("SELECT project, model, toString(hour) AS h, channel, source, campaign, currency AS cur,"
           " sum(conversions) AS n, sum(leads) AS l, sum(sales) AS s, sum(sales_value) AS sv, sum(revenue) AS r,"
           " sum(payments) AS pw FROM live_money WHERE project = {p:String}"
           " GROUP BY project, model, h, channel, source, campaign, cur")
    if definition:
        sql = ("SELECT project, model, toString(hour) AS h, channel, source, campaign, cur, n, l, s, sv, r, pw FROM ("
               "SELECT project, model, toStartOfHour(toDateTime(conversion_at, 'UTC')) AS hour, channel, source,"
               " campaign, if(kind IN ('payment', 'refund', 'sale'), toString(currency), '') AS cur,"
               " toInt64(countIf(model = 'first_touch')) AS n, sumIf(weight, kind = 'lead') AS l,"
               " sumIf(weight, kind = 'sale') AS s, sumIf(amount, kind = 'sale') AS sv,"
               " sumIf(amount, kind IN ('payment', 'refund')) AS r, sumIf(weight, kind IN ('payment', 'refund')) AS pw"
               " FROM credits_current WHERE project = {p:String} AND kind IN ('lead', 'sale', 'payment', 'refund')"
               " GROUP BY project, model, hour, channel, source, campaign, cur)")
    return {tuple(r.values()) for r in wh.rows(sql, {"p": p})
            if any(Decimal(str(v)) != 0 for v in list(r.values())[7:])}


def _visits(wh, p: str, definition: bool) -> dict[tuple, int]:
    sql = ("SELECT toString(hour) AS h, channel, source, campaign, sum(visits) AS v FROM live_visits"
           " WHERE project = {p:String} GROUP BY h, channel, source, campaign HAVING v != 0")
    if definition:
        sql = ("SELECT toString(toStartOfHour(toDateTime(started_at, 'UTC'))) AS h, channel, source, campaign,"
               " count() AS v FROM touches FINAL WHERE project = {p:String} AND NOT is_bot"
               " GROUP BY h, channel, source, campaign")
    return {tuple(list(r.values())[:4]): int(r["v"]) for r in wh.rows(sql, {"p": p})}


def exact(wh, p: str, reports_too: bool = True) -> None:
    """The aggregates are their definition; the reports read from them are the query-time ones."""
    assert _money(wh, p, False) == _money(wh, p, True)
    assert _visits(wh, p, False) == _visits(wh, p, True)
    assert wh.rows(live.DRIFT_MONEY, {"p": p}) == [] and wh.rows(live.DRIFT_VISITS, {"p": p}) == []
    if not reports_too:
        return
    for model in ("first_touch", "last_touch", "linear", "position_based"):
        for group_by in reports.GROUP_BY:
            req = reports.ReportRequest("channels", p, FROM, TO, model=model, group_by=group_by, lookback_days=30,
                                        live=LIVE)
            got = reports.run(wh, req)
            assert got["attribution"].get("read") == "live aggregates", got["attribution"]
            want = reports.run(wh, reports.ReportRequest(**{**req.__dict__, "recompute": True}))
            assert (got["rows"], got["total"]) == (want["rows"], want["total"]), (model, group_by)
        live_rows = reports.run(wh, reports.ReportRequest("live", p, FROM, TO, model=model))["rows"]
        want = reports.run(wh, reports.ReportRequest("channels", p, FROM, TO, model=model, lookback_days=30,
                                                     recompute=True, live=LIVE))["rows"]
        assert {r["channel"]: (r["visits"], float(r["leads"]), float(r["sales"]), r["revenue"]) for r in live_rows} \
            == {r["channel"]: (r["visits"], r["leads"], r["sales"], r["revenue"]) for r in want
                if r["visits"] or r["leads"] or r["sales"] or Decimal(r["revenue"])}, model
    models = reports.ReportRequest("models", p, FROM, TO, lookback_days=30, live=LIVE)
    got = reports.run(wh, models)
    assert got["attribution"].get("read") == "live aggregates"
    want = reports.run(wh, reports.ReportRequest(**{**models.__dict__, "recompute": True}))
    assert (got["rows"], got["total"]) == (want["rows"], want["total"])


def _journey(s: Stage) -> None:
    s.touch("t1", "a1", 0, "Paid Search", "google")
    s.touch("t2", "a1", 86_400_000, "Email", "newsletter")
    s.conv("lead1", "lead", 2 * 86_400_000, "0", "anon:a1")
    s.conv("pay1", "payment", 3 * 86_400_000, "150000.00", "anon:a1")


def test_a_batch_delivered_twice_counts_once(wh):
    s = Stage(wh)
    s.touch("t1", "a1", 0, "Paid Search", "google")
    credits = s.conv("pay1", "payment", 86_400_000, "1000.00", "anon:a1", write_credits=False)
    touch = _touch_row(s.p, "t1", "a1", START, "Paid Search", "google")
    for token in ("b1", "b1", "b2"):  # the same token (a retry), then a re-read batch of other bounds
        write_batch(wh, "credits", credits, f"{s.p}-{token}")
        write_batch(wh, "touches", [touch], f"{s.p}-t-{token}")
        exact(wh, s.p)
    write_batch(wh, "credits", credits[:2] + credits, f"{s.p}-b3")  # rows repeated inside a batch
    exact(wh, s.p)


def test_a_record_re_emitted_under_a_new_version_changes_nothing_it_should_not(wh):
    """A Faust worker killed after sending its outputs and before saving its state credits the
    conversion again: the same credits under a new version (new credit ids)."""
    s = Stage(wh)
    _journey(s)
    current = wh.rows("SELECT * FROM credits_current WHERE project = {p:String} AND conversion_id = 'pay1'",
                      {"p": s.p})
    version = max(int(r["version"]) for r in current) + 1
    again = [{**r, "version": version, "credit_id": f"{r['credit_id']}-again", "emitted_at": None} for r in current]
    again = [{k: v for k, v in r.items() if v is not None} for r in again]
    write_batch(wh, "credits", again, f"{s.p}-again")
    exact(wh, s.p)
    # and an older version arriving late: credits_current does not move, nor do the aggregates
    old = [{**r, "version": 1, "credit_id": f"{r['credit_id']}-old"} for r in again]
    write_batch(wh, "credits", [{**r, "channel": "Nowhere"} for r in old], f"{s.p}-old")
    exact(wh, s.p)


def test_a_merge_re_credits_a_conversion_to_another_channel(wh):
    s = Stage(wh)
    s.touch("t1", "a1", 0, "Paid Search", "google")
    s.touch("t2", "a2", 86_400_000, "Email", "newsletter")
    s.conv("pay1", "payment", 2 * 86_400_000, "99000.00", "anon:a2")
    exact(wh, s.p)
    assert s.link("anon:a1", "anon:a2"), "the merge re-credits the payment"
    exact(wh, s.p)
    first = reports.run(wh, reports.ReportRequest("live", s.p, FROM, TO, model="first_touch"))
    assert {r["channel"]: r["revenue"] for r in first["rows"]}["Paid Search"] == "99000.00"


def test_a_repeat_lead_counts_nothing(wh):
    s = Stage(wh)
    s.touch("t1", "a1", 0, "Paid Search", "google")
    s.conv("lead2", "lead", 5 * 86_400_000, "0", "anon:a1")
    exact(wh, s.p)
    s.conv("lead1", "lead", 2 * 86_400_000, "0", "anon:a1")  # earlier: lead2 becomes a repeat (weight 0)
    exact(wh, s.p)
    totals = reports.run(wh, reports.ReportRequest("live", s.p, FROM, TO, model="first_touch"))["total"]
    assert Decimal(totals["leads"]) == 1


def test_a_touch_re_emitted_as_it_grows_and_moved_by_a_late_hit_is_one_visit(wh):
    s = Stage(wh)
    base = START + timedelta(hours=10, minutes=10)
    row = _touch_row(s.p, "t1", "a1", base, "Paid Search", "google")
    for pages in (2, 5, 10):
        write_batch(wh, "touches", [{**row, "events": pages}], f"{s.p}-pages-{pages}")
        exact(wh, s.p, reports_too=False)
    # a late hit 20 minutes earlier: the touch starts in the hour before
    moved = {**row, "events": 11, "started_at": (base - timedelta(minutes=20)).isoformat().replace("+00:00", "Z")}
    write_batch(wh, "touches", [moved], f"{s.p}-late")
    exact(wh, s.p, reports_too=False)
    assert sum(_visits(wh, s.p, False).values()) == 1
    # all three in one batch, then a bot flag and a channel change
    write_batch(wh, "touches", [{**moved, "events": 12}, {**moved, "events": 13, "channel": "Social"},
                                {**moved, "events": 14, "campaign": "c2"}], f"{s.p}-three")
    exact(wh, s.p, reports_too=False)
    write_batch(wh, "touches", [{**moved, "is_bot": True}], f"{s.p}-bot")
    exact(wh, s.p, reports_too=False)
    assert _visits(wh, s.p, False) == {}
    write_batch(wh, "touches", [{**moved, "is_bot": False}], f"{s.p}-unbot")
    # moved across midnight: a row of another day is another row of the touches table (its key has
    # the day), so query time counts both, and so do the aggregates
    write_batch(wh, "touches", [{**moved, "started_at": "2026-02-28T23:50:00.000Z"}], f"{s.p}-midnight")
    exact(wh, s.p, reports_too=False)
    assert sum(_visits(wh, s.p, False).values()) == 2


def test_a_crash_between_the_deltas_and_the_rows(wh):
    """The sink wrote a batch's deltas and died before its rows: the batch re-read (same plan, same
    token) computes the same deltas, which the warehouse drops, then writes the rows."""
    s = Stage(wh)
    s.touch("t1", "a1", 0, "Paid Search", "google")
    s.touch("t2", "a2", 86_400_000, "Email", "newsletter")
    credits = s.conv("pay1", "payment", 2 * 86_400_000, "99000.00", "anon:a2")
    touch = _touch_row(s.p, "t3", "a2", START + timedelta(days=2, hours=1), "Social", "instagram")
    for table, rows in (("touches", [touch]), ("credits", [{**r, "version": int(r["version"]) + 1,
                                                            "credit_id": r["credit_id"] + "-v2",
                                                            "channel": "Moved"} for r in credits])):
        token = f"{s.p}-crash-{table}"
        insert_with_retry(wh, live.LIVE_OF[table], live.deltas(wh, table, rows), live_token(token))
        # crash: the rows never went in; the restarted sink writes the whole batch again
        if table == "credits":  # the deltas are in, the rows are not: the aggregates are ahead
            assert wh.rows(live.DRIFT_MONEY, {"p": s.p})
        write_batch(wh, table, rows, token)
        exact(wh, s.p, reports_too=False)
        write_batch(wh, table, rows, token)  # and once more after both (a commit lost)
        exact(wh, s.p, reports_too=False)
    assert any(r[3] == "Moved" for r in _money(wh, s.p, False))


def test_a_rebuild_gives_the_same_aggregates(wh):
    s = Stage(wh)
    _journey(s)
    before = _money(wh, s.p, False), _visits(wh, s.p, False)
    for _ in range(2):  # twice: the second rebuild's blocks equal the first's, and must not be dropped
        live.rebuild(wh, s.p)
        assert (_money(wh, s.p, False), _visits(wh, s.p, False)) == before
    exact(wh, s.p)
