"""The paths and datadriven reports on the real engine (chDB), over touches, conversions (with their
subject) and identity_map rows inserted directly; every expected number is worked out by hand in the
comments next to the data."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest

from clickhouse import datadriven, reports
from stream_processors.datadriven import PathAggregate, markov

MAY = (date(2026, 5, 1), date(2026, 5, 31))


def _touch(p, tid, anon, at, channel, bot=False):
    return {"project": p, "touch_id": tid, "anonymous_id": anon, "user_id": "", "started_at": at, "source": "x",
            "medium": "", "campaign": "", "content": "", "term": "", "click_id_type": "", "channel": channel,
            "landing_url": "", "referrer_host": "", "events": 1, "is_bot": bot}


def _conv(p, cid, kind, at, subject="", value="0", currency="KZT", anon=""):
    return {"project": p, "conversion_id": cid, "kind": kind, "source": "test", "at": at, "value": value,
            "currency": currency if value != "0" else "", "anonymous_id": anon, "user_id": "", "deal_id": "",
            "stage": "", "stage_kind": "", "event_id": cid, "ids": {}, "subject": subject}


@pytest.fixture(scope="module")
def shop(wh):
    """May 2026, lookback 90 days:
    - Ann (cookie a1): Paid Search May 1 10:00, Paid Search May 2, (bot visit May 3: ignored), Email May 3,
      Paid Search May 5; a Paid Social visit on Jan 1 is out of the 90-day window, a Direct visit on
      May 20 is after her sale. Sale 100 000 on May 6 10:00 (subject anon:a1): path
      Paid Search > Paid Search > Email > Paid Search, 4 touches, 5 days.
    - Ben: cookies b1 and b2 and deal:amocrm:7 are one person (identity_map, version 2; b2 was first
      mapped elsewhere, version 1). Instagram (b1) May 2 10:00, Email (b2) May 4; sale 50 000 on
      May 10 10:00 carried by the deal: path Instagram > Email, 2 touches, 8 days. A lead on May 3
      (subject anon:b1): path Instagram.
    - Eve (cookie e1, old row without subject): Paid Search May 8 10:00; sale 100 USD on May 9 10:00 =
      50 000 at the May 1 rate of 500: path Paid Search, 1 touch, 1 day.
    - Zed: sale 30 000 on May 12, no visit: the unattributed row.
    - Cat (cookie c1): Paid Search May 7, no conversion: a non-converting path Paid Search.
    - Old (cookie o1): Email in March only: no touch in May, not counted."""
    p = f"paths{uuid.uuid4().hex[:8]}"
    wh.insert("touches", [
        _touch(p, "a0", "a1", "2026-01-01T10:00:00Z", "Paid Social"),
        _touch(p, "a1", "a1", "2026-05-01T10:00:00Z", "Paid Search"),
        _touch(p, "a2", "a1", "2026-05-02T10:00:00Z", "Paid Search"),
        _touch(p, "a3", "a1", "2026-05-03T09:00:00Z", "Bot Traffic", bot=True),
        _touch(p, "a4", "a1", "2026-05-03T10:00:00Z", "Email"),
        _touch(p, "a5", "a1", "2026-05-05T10:00:00Z", "Paid Search"),
        _touch(p, "a6", "a1", "2026-05-20T10:00:00Z", "Direct"),
        _touch(p, "b1", "b1", "2026-05-02T10:00:00Z", "Instagram"),
        _touch(p, "b2", "b2", "2026-05-04T10:00:00Z", "Email"),
        _touch(p, "e1", "e1", "2026-05-08T10:00:00Z", "Paid Search"),
        _touch(p, "c1", "c1", "2026-05-07T10:00:00Z", "Paid Search"),
        _touch(p, "o1", "o1", "2026-03-07T10:00:00Z", "Email"),
    ])
    wh.insert("identity_map", [
        {"project": p, "identifier": "anon:b2", "person_id": "p_elsewhere", "version": 1},
        {"project": p, "identifier": "anon:b1", "person_id": "p_ben", "version": 2},
        {"project": p, "identifier": "anon:b2", "person_id": "p_ben", "version": 2},
        {"project": p, "identifier": "deal:amocrm:7", "person_id": "p_ben", "version": 2},
    ])
    wh.insert("conversions", [
        _conv(p, "sale:a", "sale", "2026-05-06T10:00:00Z", "anon:a1", "100000.00"),
        _conv(p, "sale:b", "sale", "2026-05-10T10:00:00Z", "deal:amocrm:7", "50000.00"),
        _conv(p, "lead:b", "lead", "2026-05-03T10:00:00Z", "anon:b1"),
        _conv(p, "sale:e", "sale", "2026-05-09T10:00:00Z", "", "100.00", currency="USD", anon="e1"),
        _conv(p, "sale:z", "sale", "2026-05-12T10:00:00Z", "anon:zz", "30000.00"),
    ])
    wh.insert("currency_rates", [{"project": p, "day": "2026-05-01", "currency": "USD", "base": "KZT",
                                       "rate": "500", "imported_at": "2026-05-01T00:00:00Z"}])
    return p


def _aggregates(wh, p, kind="sale", collapse=False):
    req = reports.ReportRequest("paths", p, *MAY)
    params = {**reports._bounds(req), "kind": kind, "collapse": int(collapse)}
    rows = wh.rows((reports.REPORTS / "paths.sql").read_text(), params)
    return {a.path: (a.conversions, a.value, a.nulls, a.touches, round(a.days, 6)) for a in datadriven.from_rows(rows)}


PS, EM, IG = "Paid Search", "Email", "Instagram"


def test_path_aggregates_follow_persons_windows_and_bots(wh, shop):
    assert _aggregates(wh, shop) == {
        (PS, PS, EM, PS): (1, Decimal("100000.000000"), 0, 4, 5.0),
        (IG, EM): (1, Decimal("50000.000000"), 0, 2, 8.0),
        (PS,): (1, Decimal("50000.000000"), 1, 1, 1.0),  # Eve converted; Cat did not
        (): (1, Decimal("30000.000000"), 0, 0, 0.0),
    }


def test_collapsing_repeats_folds_consecutive_channels_only(wh, shop):
    got = _aggregates(wh, shop, collapse=True)
    assert got[(PS, EM, PS)] == (1, Decimal("100000.000000"), 0, 4, 5.0)  # touches count before the fold
    assert (PS, PS, EM, PS) not in got


def test_lead_paths_when_asked(wh, shop):
    # Ben's lead on May 3 saw only Instagram (May 2); every other person with a touch in May is a null path
    assert _aggregates(wh, shop, kind="lead") == {
        (IG,): (1, Decimal("0.000000"), 0, 1, 1.0),
        (PS, PS, EM, PS, "Direct"): (0, Decimal("0.000000"), 1, 0, 0.0),  # Ann: last 90 days of May
        (PS,): (0, Decimal("0.000000"), 2, 0, 0.0),  # Eve and Cat
    }


def test_paths_report_top_paths_and_assists(wh, shop):
    out = reports.run(wh, reports.ReportRequest("paths", shop, *MAY))
    paths = [r for r in out["rows"] if r["section"] == "path"]
    assert [(r["path"], r["conversions"], r["revenue"], r["average_touches"], r["average_days"]) for r in paths] == [
        ("Paid Search > Paid Search > Email > Paid Search", 1, "100000.00", 4.0, 5.0),
        ("Instagram > Email", 1, "50000.00", 2.0, 8.0),
        ("Paid Search", 1, "50000.00", 1.0, 1.0),
    ]
    channels = {r["channel"]: (r["last_touch_conversions"], r["assisted_conversions"], r["assisted_revenue"])
                for r in out["rows"] if r["section"] == "channel"}
    # Paid Search is last on Ann's path, so it does not assist there; Email assists Ann, Instagram Ben
    assert channels == {PS: (2, 0, "0.00"), EM: (1, 1, "100000.00"), IG: (0, 1, "50000.00")}
    t = out["total"]
    assert (t["conversions"], t["revenue"], t["unattributed_conversions"], t["multi_channel_conversions"],
            t["non_converting_journeys"], t["average_touches"], t["average_days"]) == (
        4, "230000.00", 1, 2, 1, round(7 / 3, 2), round(14 / 3, 2))
    assert out["report"] == "paths" and out["currency"] == "KZT"


def test_datadriven_report_conserves_money_and_matches_the_models(wh, shop):
    out = reports.run(wh, reports.ReportRequest("datadriven", shop, *MAY))
    rows = {r["channel"]: r for r in out["rows"]}
    assert set(rows) == {PS, EM, IG, "(unattributed)"}
    for model in ("markov", "shapley"):
        assert sum(Decimal(r[f"{model}_revenue"]) for r in rows.values()) == Decimal("230000.00")
        assert Decimal(rows["(unattributed)"][f"{model}_revenue"]) == Decimal("30000.00")
        assert sum(r[f"{model}_share"] for c, r in rows.items() if c != "(unattributed)") == pytest.approx(1.0)
        for c in (PS, EM, IG):
            lo, hi = rows[c][f"{model}_ci_low"], rows[c][f"{model}_ci_high"]
            assert 0 <= lo <= hi <= 1
    # Shapley by hand: Ann's 100 000 split over {PS, EM}; Ben's 50 000 over {IG, EM}; Eve's 50 000 to PS
    assert {c: rows[c]["shapley_revenue"] for c in (PS, EM, IG)} == {PS: "100000.00", EM: "75000.00", IG: "25000.00"}
    assert {c: rows[c]["shapley_conversions"] for c in (PS, EM, IG)} == {PS: 1.5, EM: 1.0, IG: 0.5}
    # Markov from the same aggregates, computed directly
    aggs = [PathAggregate(k, c, v, n) for k, (c, v, n, _, _) in _aggregates(wh, shop).items()]
    mk = markov(aggs)
    for c in (PS, EM, IG):
        assert rows[c]["markov_share"] == pytest.approx(mk.shares[c], abs=1e-6)
    assert out["total"]["markov_revenue"] == "230000.00" and out["total"]["journeys"] == 4


def test_both_reports_flow_from_query_parameters_to_csv(wh, shop):
    """What GET /api/reports/{name} does, minus HTTP: the query string through root.report_request,
    reports.run, and the CSV writer (one folder per process: no second chDB for a server here)."""
    from collector.routes.reports import csv_of
    from moneytrail import root

    for name, first_column in (("paths", "section"), ("datadriven", "channel")):
        req = root.report_request(name, shop, {"from": "2026-05-01", "to": "2026-05-31", "currency": "kzt"})
        out = reports.run(wh, req)
        lines = csv_of(out).splitlines()
        assert lines[0].split(",")[0] == first_column
        assert len(lines) == 1 + len(out["rows"]) + 1 and lines[-1].startswith("Total")
    assert out["model"] == "markov+shapley" and out["total"]["shapley_revenue"] == "230000.00"
