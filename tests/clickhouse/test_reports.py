"""The channels, campaigns and models reports over query-time credits (reports/_credited.sql), and
the report parameters (moneytrail.root.report_request)."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from clickhouse import reports
from moneytrail import root

START = datetime(2026, 5, 1, 10, tzinfo=timezone.utc)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _touch(p, tid, anon, at, channel, source, campaign="", content="", term=""):
    return {"project": p, "touch_id": tid, "anonymous_id": anon, "user_id": "", "started_at": _iso(at),
            "source": source, "medium": "cpc", "campaign": campaign, "content": content, "term": term,
            "click_id_type": "", "channel": channel, "landing_url": "https://shop.kz/", "referrer_host": "",
            "events": 1, "is_bot": False}


def _conv(p, cid, kind, at, anon, value="0"):
    return {"project": p, "conversion_id": cid, "kind": kind, "source": "test", "at": _iso(at), "value": value,
            "currency": "KZT" if value != "0" else "", "anonymous_id": anon, "user_id": "", "deal_id": "",
            "stage": "", "stage_kind": "", "event_id": cid, "ids": {}, "subject": f"anon:{anon}"}


def _spend(p, source, channel, campaign, cost, ad="", keyword=""):
    return {"project": p, "day": "2026-05-05", "source": source, "medium": "cpc", "campaign": campaign, "ad": ad,
            "keyword": keyword, "channel": channel, "cost": cost, "currency": "KZT", "clicks": 1, "impressions": 1,
            "import_id": "i1", "imported_at": "2026-05-06T00:00:00Z", "row_id": f"{source}-{campaign}-{ad}"}


@pytest.fixture(scope="module")
def shop(wh):
    """Two visitors: v1 clicks a Google ad (sofas / red) then an Instagram ad, leaves a lead and pays
    90 000; v2 comes from Instagram only, leaves a lead and pays 30 000. Spend: Google 20 000
    (sofas, 15 000 of it on the red ad's keyword "divan"), Instagram 10 000."""
    p = f"r{uuid.uuid4().hex[:10]}"
    wh.insert("touches", [
        _touch(p, "t1", "v1", START, "Paid Search", "google", "sofas", "red", "divan"),
        _touch(p, "t2", "v1", START + timedelta(days=2), "Paid Social", "instagram", "reels"),
        _touch(p, "t3", "v2", START + timedelta(days=3), "Paid Social", "instagram", "reels"),
    ])
    wh.insert("conversions", [
        _conv(p, "l1", "lead", START + timedelta(days=2, hours=1), "v1"),
        _conv(p, "s1", "payment", START + timedelta(days=4), "v1", "90000.00"),
        _conv(p, "l2", "lead", START + timedelta(days=3, hours=1), "v2"),
        _conv(p, "s2", "payment", START + timedelta(days=4), "v2", "30000.00"),
    ])
    wh.insert("ad_spend", [_spend(p, "google", "Paid Search", "sofas", "15000.00", "red", "divan"),
                                _spend(p, "google", "Paid Search", "sofas", "5000.00", "blue"),
                                _spend(p, "instagram", "Paid Social", "reels", "10000.00")])
    return p


def _run(wh, p, name, **kw):
    return reports.run(wh, reports.ReportRequest(name, p, date(2026, 5, 1), date(2026, 5, 31), **kw))


def test_channels_under_linear_credit_fractional_leads_and_split_money(wh, shop):
    out = _run(wh, shop, "channels", model="linear")
    rows = {r["channel"]: r for r in out["rows"]}
    assert (rows["Paid Search"]["leads"], rows["Paid Search"]["revenue"]) == (0.5, "45000.00")
    assert (rows["Paid Social"]["leads"], rows["Paid Social"]["revenue"]) == (1.5, "75000.00")
    assert rows["Paid Search"]["cpl"] == "40000.00"  # 20 000 / 0.5
    assert (out["total"]["leads"], out["total"]["revenue"], out["total"]["spend"]) == (2, "120000.00", "30000.00")


def test_romi_needs_a_margin(wh, shop):
    plain = _run(wh, shop, "channels", model="first_touch")
    with_margin = _run(wh, shop, "channels", model="first_touch", margin=Decimal("0.3"))
    google = next(r for r in with_margin["rows"] if r["channel"] == "Paid Search")
    assert google["revenue"] == "90000.00" and google["roi"] == 3.5
    assert google["romi"] == 0.35  # (90 000 * 0.3 - 20 000) / 20 000
    assert with_margin["total"]["romi"] == 0.2  # (120 000 * 0.3 - 30 000) / 30 000
    assert all(r["romi"] is None for r in plain["rows"]) and plain["total"]["romi"] is None


def test_channels_grouped_by_source_and_by_campaign(wh, shop):
    by_source = _run(wh, shop, "channels", model="last_touch", group_by="source")
    assert {r["source"]: (r["revenue"], r["spend"]) for r in by_source["rows"]} == {
        "instagram": ("120000.00", "10000.00"), "google": ("0.00", "20000.00")}
    by_campaign = _run(wh, shop, "channels", model="first_touch", group_by="campaign")
    assert {r["campaign"]: r["leads"] for r in by_campaign["rows"]} == {"sofas": 1, "reels": 1}
    assert "channel" not in by_campaign["rows"][0] and by_campaign["total"]["leads"] == 2


def test_the_campaign_drill_down(wh, shop):
    out = _run(wh, shop, "campaigns", model="first_touch")
    got = [(r["level"], r["channel"], r["campaign"], r["content"], r["term"], r["revenue"], r["spend"])
           for r in out["rows"]]
    assert got == [
        ("channel", "Paid Search", None, None, None, "90000.00", "20000.00"),
        ("campaign", "Paid Search", "sofas", None, None, "90000.00", "20000.00"),
        ("ad", "Paid Search", "sofas", "red", "divan", "90000.00", "15000.00"),
        ("ad", "Paid Search", "sofas", "blue", "(none)", "0.00", "5000.00"),
        ("channel", "Paid Social", None, None, None, "30000.00", "10000.00"),
        ("campaign", "Paid Social", "reels", None, None, "30000.00", "10000.00"),
        ("ad", "Paid Social", "reels", "(none)", "(none)", "30000.00", "10000.00"),
    ]
    assert (out["total"]["revenue"], out["total"]["spend"], out["total"]["visits"]) == ("120000.00", "30000.00", 3)


def test_models_side_by_side_conserve_the_total(wh, shop):
    out = _run(wh, shop, "models")
    rows = {r["channel"]: r for r in out["rows"]}
    assert rows["Paid Search"]["revenue_first_touch"] == "90000.00"
    assert rows["Paid Search"]["revenue_last_touch"] == "0.00"
    assert rows["Paid Search"]["revenue_linear"] == "45000.00"
    assert rows["Paid Social"]["leads_position_based"] == 1.5
    for model in reports.QUERY_TIME_MODELS:
        assert out["total"][f"revenue_{model}"] == "120000.00" and out["total"][f"leads_{model}"] == 2
        assert sum(Decimal(r[f"revenue_{model}"]) for r in out["rows"]) == Decimal("120000.00")


@pytest.mark.parametrize("query, message", [
    ({"model": "markov"}, "datadriven report"),
    ({"model": "u_shaped"}, "unknown model"),
    ({"group_by": "ad"}, "group_by must be one of"),
    ({"margin": "35%"}, "margin must be a fraction"),
    ({"margin": "1.2"}, "between 0 and 1"),
])
def test_bad_report_parameters_are_refused_with_a_reason(query, message):
    with pytest.raises(ValueError, match=message):
        root.report_request("channels", "p", {"from": "2026-05-01", "to": "2026-05-31", **query})


def test_report_parameters_reach_the_request():
    req = root.report_request("models", "p", {"from": "2026-05-01", "to": "2026-05-31", "model": "time_decay",
                                              "margin": "0.35", "group_by": "source"})
    assert (req.model, req.margin, req.group_by) == ("time_decay", Decimal("0.35"), "source")
    with pytest.raises(ValueError, match="grouped by campaign already"):
        root.report_request("campaigns", "p", {"group_by": "campaign"})


def test_report_request_refuses_unknown_parameters_and_reads_path_options():
    from datetime import date

    import pytest as _pytest

    from moneytrail import root

    with _pytest.raises(ValueError, match="unknown parameter lookback"):
        root.report_request("channels", "p", {"lookback": "30"})
    req = root.report_request("datadriven", "p", {"from": "2026-01-01", "to": "2026-01-31", "kind": "lead",
                                                  "collapse": "true", "order": "3", "resamples": "10", "seed": "7"})
    assert (req.kind, req.collapse, req.order, req.resamples, req.seed, req.date_from) == \
        ("lead", True, 3, 10, 7, date(2026, 1, 1))
    for bad, why in (({"order": "5"}, "order must be between 1 and 4"), ({"kind": "refund"}, "kind must be"),
                     ({"collapse": "maybe"}, "collapse must be"), ({"resamples": "x"}, "resamples must be a whole")):
        with _pytest.raises(ValueError, match=why):
            root.report_request("paths", "p", bad)


def test_reports_of_an_installation_may_read_its_live_credits_unless_told_to_recompute(tmp_path):
    from moneytrail import root
    from moneytrail.settings import Settings

    settings = Settings(data_dir=tmp_path, lookback_days=60, lead_repeat_days=14)

    class NoZone:  # the project's time zone: none set
        def rows(self, sql, params=None):
            return []

    req = root.settings_report_request(settings, NoZone(), "channels", "p", {})
    assert req.live == reports.LiveRules(60, 14) and (req.lookback_days, req.lead_repeat_days) == (60, 14)
    assert not req.recompute
    assert root.settings_report_request(settings, NoZone(), "channels", "p", {"recompute": "true"}).recompute
    with pytest.raises(ValueError, match="recompute must be true or false"):
        root.report_request("channels", "p", {"recompute": "yes please"})
    assert root.report_request("channels", "p", {}).live is None  # no installation: query time only
