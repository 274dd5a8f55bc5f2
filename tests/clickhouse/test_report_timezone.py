"""A project's time zone: its reports count days (the range, spend days, cohort months, call-tracking
days) in that zone. Asia/Almaty is UTC+5: 2026-03-01 20:00 UTC is already 2 March there."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from clickhouse import reports
from clickhouse.projects import ProjectStore, UnknownTimezone, timezone_of

EVENING = "2026-03-01T20:00:00Z"  # 2 March, 01:00 in Almaty
AFTERNOON = "2026-03-01T12:00:00Z"  # 1 March, 17:00 in Almaty


def _touch(p, tid, anon, at, channel):
    return {"project": p, "touch_id": tid, "anonymous_id": anon, "user_id": "", "started_at": at, "source": "x",
            "medium": "", "campaign": "", "content": "", "term": "", "click_id_type": "", "channel": channel,
            "landing_url": "", "referrer_host": "", "events": 1, "is_bot": False}


def _payment(p, cid, at, anon, value):
    return {"project": p, "conversion_id": cid, "kind": "payment", "source": "test", "at": at, "value": value,
            "currency": "KZT", "anonymous_id": anon, "user_id": "", "deal_id": "", "stage": "", "stage_kind": "",
            "event_id": cid, "ids": {}, "subject": f"anon:{anon}"}


def _spend(p, day, cost):
    return {"project": p, "day": day, "source": "google", "medium": "cpc", "campaign": "", "ad": "", "keyword": "",
            "channel": "Paid Search", "cost": cost, "currency": "KZT", "clicks": 0, "impressions": 0,
            "import_id": f"i-{day}", "imported_at": "2026-03-05T00:00:00Z", "row_id": day}


@pytest.fixture(scope="module")
def almaty(wh):
    """A project in Almaty: an evening visit and payment (UTC 1 March = local 2 March), an afternoon
    visit and payment on 1 March, Google spend on the days 1 and 2 March, leases at both times."""
    store = ProjectStore(wh, min_refresh_s=0)
    project, _ = store.create(f"Almaty {uuid.uuid4().hex[:6]}")
    assert store.set_timezone(project.project_id, "Asia/Almaty") == "Asia/Almaty"
    p = project.project_id
    wh.insert("touches", [_touch(p, "t-evening", "v1", EVENING, "Paid Search"),
                               _touch(p, "t-afternoon", "v2", AFTERNOON, "Email")])
    wh.insert("conversions", [_payment(p, "pay-evening", "2026-03-01T20:30:00Z", "v1", "1000.00"),
                                   _payment(p, "pay-afternoon", "2026-03-01T12:30:00Z", "v2", "300.00")])
    wh.insert("ad_spend", [_spend(p, "2026-03-01", "50.00"), _spend(p, "2026-03-02", "70.00")])
    wh.insert("leases", [
        {"project": p, "lease_id": lid, "tracking_number": "+77270000001", "anonymous_id": anon, "started_at": at,
         "expires_at": at, "matches_until": at} for lid, anon, at in (("L1", "v1", EVENING), ("L2", "v2", AFTERNOON))])
    return store, p


def _channels(wh, p, day, tz=None):
    out = reports.run(wh, reports.ReportRequest("channels", p, day, day, timezone=tz))
    return {r["channel"]: (r["visits"], r["revenue"], r["spend"]) for r in out["rows"]}, out


def test_a_day_is_the_projects_local_day(wh, almaty):
    _, p = almaty
    first, out = _channels(wh, p, date(2026, 3, 1))
    assert out["timezone"] == "Asia/Almaty"
    assert first == {"Email": (1, "300.00", "0.00"), "Paid Search": (0, "0.00", "50.00")}
    second, _ = _channels(wh, p, date(2026, 3, 2))
    assert second == {"Paid Search": (1, "1000.00", "70.00")}


def test_a_request_may_ask_for_utc_days(wh, almaty):
    _, p = almaty
    first, out = _channels(wh, p, date(2026, 3, 1), tz="UTC")
    assert out["timezone"] == "UTC"
    assert first == {"Paid Search": (1, "1000.00", "50.00"), "Email": (1, "300.00", "0.00")}


def test_cohort_months_and_call_tracking_days_are_local(wh, almaty):
    _, p = almaty
    cohorts = reports.run(wh, reports.ReportRequest("cohorts", p, date(2026, 2, 1), date(2026, 3, 31)))
    assert {(r["cohort"], r["channel"]) for r in cohorts["rows"]} == {("2026-03", "Paid Search"), ("2026-03", "Email")}
    days = reports.run(wh, reports.ReportRequest("calltracking", p, date(2026, 3, 1), date(2026, 3, 2)))
    assert {r["day"]: r["leases"] for r in days["rows"]} == {"2026-03-01": 1, "2026-03-02": 1}
    utc = reports.run(wh, reports.ReportRequest("calltracking", p, date(2026, 3, 1), date(2026, 3, 2),
                                                     timezone="UTC"))
    assert {r["day"]: r["leases"] for r in utc["rows"]} == {"2026-03-01": 2}


def test_an_unknown_zone_is_refused_and_utc_is_the_default(wh, almaty):
    store, p = almaty
    with pytest.raises(UnknownTimezone):
        store.set_timezone(p, "Asia/Atlantis")
    assert timezone_of(wh, p) == "Asia/Almaty"
    store.rotate(p)  # a key rotation keeps the zone
    assert timezone_of(wh, p) == "Asia/Almaty"
    assert timezone_of(wh, "no-such-project") == "UTC"
    other, _ = store.create(f"Plain {uuid.uuid4().hex[:6]}")
    assert timezone_of(wh, other.project_id) == "UTC"


def test_the_default_range_ends_on_the_projects_own_today(wh):
    """A report without `to` ends today where the business is (UTC+14 here: a different date from
    UTC's for 14 hours of every day), and `from` defaults to 29 days before it."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    from moneytrail import root
    from moneytrail.settings import Settings

    store = ProjectStore(wh, min_refresh_s=0)
    project, _ = store.create(f"Kiritimati {uuid.uuid4().hex[:6]}")
    store.set_timezone(project.project_id, "Pacific/Kiritimati")
    req = root.settings_report_request(Settings(), wh, "channels", project.project_id, {})
    today = datetime.now(ZoneInfo("Pacific/Kiritimati")).date()
    assert (req.date_from, req.date_to) == (today - timedelta(days=29), today)
    assert root.report_request("channels", "p", {}, today=date(2026, 5, 10)).date_from == date(2026, 4, 11)
