import asyncio
import uuid
from datetime import date

import pytest

from clickhouse import reports
from clickhouse.migrate import MIGRATIONS, applied, available, migrate
from clickhouse.projects import ProjectExists, ProjectStore, UnknownProject
from clickhouse.sink import BatchingSink
from clickhouse.warehouse import WarehouseError, open_warehouse
from schemas import topics


def _touch(project, tid, channel="Direct", day="2026-11-20", anon="a1", bot=False):
    return {"project": project, "touch_id": tid, "anonymous_id": anon, "user_id": "", "started_at": f"{day}T10:00:00Z",
            "source": "(direct)", "medium": "(none)", "campaign": "", "content": "", "term": "", "click_id_type": "",
            "channel": channel, "landing_url": "https://x.kz/", "referrer_host": "", "events": 1, "is_bot": bot}


def test_migrations_run_once_and_are_recorded(wh):
    assert migrate(wh) == []  # the fixture applied them already
    assert applied(wh) == {m.version for m in available(MIGRATIONS)}
    tables = {r["name"] for r in wh.rows("SELECT name FROM system.tables WHERE database = currentDatabase()")}
    assert {"projects", "raw_events", "touches", "dead_letters", "schema_migrations"} <= tables


def test_migration_files_are_numbered(tmp_path):
    (tmp_path / "1_bad.sql").write_text("SELECT 1")
    with pytest.raises(ValueError, match="NNNN_name"):
        available(tmp_path)


def test_a_retried_insert_with_the_same_token_adds_no_rows(wh):
    p = f"p{uuid.uuid4().hex[:8]}"
    rows = [_touch(p, f"t{i}") for i in range(5)]
    wh.insert("touches", rows, token=f"tok-{p}")
    wh.insert("touches", rows, token=f"tok-{p}")
    assert wh.rows("SELECT count() AS c FROM touches WHERE project = {p:String}", {"p": p}) == [{"c": 5}]


def test_rows_of_any_shape_land_whole_and_keys_the_table_lacks_are_dropped(wh):
    """One shape goes positionally, mixed shapes by key; either way every known field lands, an
    unknown one is dropped, and a column added later (a migration) is picked up."""
    p = f"p{uuid.uuid4().hex[:8]}"
    uniform = [{**_touch(p, f"u{i}", channel="Email"), "not_a_column": 1} for i in range(3)]
    mixed = [_touch(p, "m1", channel="Referral"), {**_touch(p, "m2", channel="Referral"), "extra": "x"},
             {k: v for k, v in _touch(p, "m3", channel="Referral").items() if k != "campaign"}]
    wh.insert("touches", uniform)
    wh.insert("touches", mixed)
    got = wh.rows("SELECT touch_id, channel, landing_url, events FROM touches WHERE project = {p:String} "
                       "ORDER BY touch_id", {"p": p})
    assert [(r["touch_id"], r["channel"], r["landing_url"], r["events"]) for r in got] == \
        [("m1", "Referral", "https://x.kz/", 1), ("m2", "Referral", "https://x.kz/", 1),
         ("m3", "Referral", "https://x.kz/", 1)] + [(f"u{i}", "Email", "https://x.kz/", 1) for i in range(3)]
    wh.command("CREATE TABLE IF NOT EXISTS shape_test (project String, a UInt8) ENGINE = MergeTree ORDER BY project")
    wh.insert("shape_test", [{"project": p, "a": 1, "b": 2}])
    wh.command("ALTER TABLE shape_test ADD COLUMN IF NOT EXISTS b UInt8")
    wh.insert("shape_test", [{"project": p, "a": 1, "b": 2}])
    assert wh.rows("SELECT a, b FROM shape_test WHERE project = {p:String} ORDER BY b", {"p": p}) == \
        [{"a": 1, "b": 0}, {"a": 1, "b": 2}]


def test_the_same_touch_delivered_twice_counts_once(wh):
    p = f"p{uuid.uuid4().hex[:8]}"
    wh.insert("touches", [_touch(p, "t1")], token=f"a-{p}")
    wh.insert("touches", [_touch(p, "t1")], token=f"b-{p}")  # another batch: at-least-once redelivery
    assert wh.rows("SELECT count() AS c FROM touches FINAL WHERE project = {p:String}", {"p": p}) == [{"c": 1}]


def _visits(out):
    return {r["channel"]: r["visits"] for r in out["rows"]}


def test_channel_report_counts_visits_per_channel_without_bots(wh):
    p = f"p{uuid.uuid4().hex[:8]}"
    wh.insert("touches", [
        _touch(p, "t1", "Paid Search", anon="a1"), _touch(p, "t2", "Paid Search", anon="a2"),
        _touch(p, "t3", "Direct", anon="a1"), _touch(p, "t4", "Direct", anon="bot", bot=True),
        _touch(p, "t5", "Direct", day="2026-10-01"),
    ])
    out = reports.run(wh, reports.ReportRequest("channels", p, date(2026, 11, 1), date(2026, 11, 30)))
    assert _visits(out) == {"Paid Search": 2, "Direct": 1}
    assert (out["total"]["visits"], out["total"]["leads"], out["total"]["revenue"]) == (3, 0, "0.00")
    assert (out["from"], out["to"], out["report"]) == ("2026-11-01", "2026-11-30", "channels")


def test_sql_errors_become_warehouse_errors(wh):
    with pytest.raises(WarehouseError, match="SYNTAX_ERROR|Syntax error"):
        wh.rows("SELEC 1")


def test_decimals_come_back_as_exact_strings(wh):
    assert wh.rows("SELECT toDecimal64('1234567.89', 2) AS m") == [{"m": "1234567.89"}]


def test_every_query_plans_its_joins_afresh(wh):
    """No join sizes remembered from earlier queries (they made repeated reports ~2x slower)."""
    got = wh.rows("SELECT toUInt8(getSetting('collect_hash_table_stats_during_joins')) AS s")
    assert got == [{"s": 0}]


def test_unknown_warehouse_url_is_refused():
    with pytest.raises(ValueError, match="unknown warehouse URL"):
        open_warehouse("postgres://x")


def test_projects_are_found_by_key_hash_and_rotation_kills_old_keys(wh):
    store = ProjectStore(wh, min_refresh_s=0)
    name = f"Shop {uuid.uuid4().hex[:6]}"
    project, creds = store.create(name, ("https://shop.kz",))
    assert asyncio.run(store.by_write_key(creds.write_key)) == project
    assert asyncio.run(store.by_read_token(creds.read_token)) == project
    assert asyncio.run(store.by_write_key(creds.read_token)) is None
    stored = wh.rows("SELECT * FROM projects FINAL WHERE project_id = {p:String}", {"p": project.project_id})
    assert creds.write_key not in str(stored) and creds.read_token not in str(stored)
    with pytest.raises(ProjectExists):
        store.create(name)
    new = store.rotate(project.project_id)
    assert asyncio.run(store.by_write_key(creds.write_key)) is None
    assert asyncio.run(store.by_write_key(new.write_key)) == project
    with pytest.raises(UnknownProject):
        store.rotate("nope")


async def test_a_change_made_by_another_process_reaches_a_running_collector(wh):
    """Collectors on one ClickHouse server each cache the projects: a key rotated or a webhook secret
    set elsewhere (the CLI, another collector) is seen within max_age_s, not never (it was never:
    a known key was served from the cache forever)."""
    collector, cli = ProjectStore(wh, min_refresh_s=0, max_age_s=0.3), ProjectStore(wh, min_refresh_s=0)
    project, creds = cli.create(f"Shop {uuid.uuid4().hex[:6]}")
    assert await collector.by_webhook_secret(creds.webhook_secret) == project
    new = cli.rotate(project.project_id)
    cli.configure(project.project_id, "payment", {"secret": "s3cret"})
    assert await collector.by_write_key(creds.write_key) == project  # within max_age_s: the cached key
    await asyncio.sleep(0.35)
    assert await collector.by_write_key(creds.write_key) is None
    found = await collector.by_webhook_secret(new.webhook_secret)
    assert found is not None and found.vendor_config["payment"]["secret"] == "s3cret"


async def test_batching_sink_flushes_by_size_and_on_stop(wh):
    p = f"p{uuid.uuid4().hex[:8]}"
    import orjson

    sink = BatchingSink(wh, max_rows=3, max_seconds=60)
    await sink.start()
    await sink.put(topics.TOUCHES, [(b"", orjson.dumps(_touch(p, f"t{i}"))) for i in range(3)])
    for _ in range(100):
        if sink.rows_written >= 3:
            break
        await asyncio.sleep(0.05)
    assert sink.rows_written == 3  # size-triggered, long before max_seconds
    await sink.put(topics.TOUCHES, [(b"", orjson.dumps(_touch(p, "t9")))])
    await sink.stop()
    assert wh.rows("SELECT count() AS c FROM touches FINAL WHERE project = {p:String}", {"p": p}) == [{"c": 4}]


def test_an_empty_report_still_has_a_zero_total_row(wh):
    out = reports.run(wh, reports.ReportRequest("channels", "nobody", date(2026, 1, 1), date(2026, 1, 2)))
    assert out["rows"] == []
    assert out["total"] == {"visits": 0, "leads": 0, "sales": 0, "conversion": None, "revenue": "0.00",
                            "spend": "0.00", "cpl": None, "cpo": None, "roi": None, "romi": None,
                            "average_check": None, "unconverted": 0}


async def test_a_record_the_sink_cannot_read_becomes_a_dead_letter_not_a_crash(wh):
    import orjson

    p = f"p{uuid.uuid4().hex[:8]}"
    sink = BatchingSink(wh, max_rows=100, max_seconds=60)
    await sink.put(topics.TOUCHES, [(b"", b"{broken"), (b"", orjson.dumps(_touch(p, "ok1")))])
    await sink.stop()
    assert wh.rows("SELECT count() AS c FROM touches WHERE project = {p:String}", {"p": p}) == [{"c": 1}]
    dead = wh.rows("SELECT reason, payload FROM dead_letters WHERE payload = '{broken'")
    assert dead == [{"reason": "undecodable", "payload": "{broken"}]


def test_vendor_settings_are_merged_per_vendor_and_survive_key_rotation(wh):
    store = ProjectStore(wh, min_refresh_s=0)
    project, creds = store.create(f"Hooks {uuid.uuid4().hex[:6]}")
    assert asyncio.run(store.by_webhook_secret(creds.webhook_secret)) == project
    store.configure(project.project_id, "stripe", {"signing_secret": "whsec_a"})
    store.configure(project.project_id, "amocrm", {"account_id": "29"})
    assert store.configure(project.project_id, "stripe", {"old": "x", "signing_secret": None}) == {"old": "x"}
    new = store.rotate(project.project_id)
    found = asyncio.run(store.by_webhook_secret(new.webhook_secret))
    assert found.vendor_config == {"stripe": {"old": "x"}, "amocrm": {"account_id": "29"}}
    assert asyncio.run(store.by_webhook_secret(creds.webhook_secret)) is None



def _conv(project, cid, kind, at, anon, value="0", currency="KZT"):
    return {"project": project, "conversion_id": cid, "kind": kind, "source": "test", "at": at, "value": value,
            "currency": currency, "anonymous_id": anon, "user_id": "", "deal_id": "", "stage": "", "stage_kind": "",
            "event_id": cid, "ids": {}}


def _t(project, tid, channel, at, anon, source="x"):
    return {**_touch(project, tid, channel, anon=anon), "started_at": at, "source": source}


@pytest.mark.parametrize("model, channel", [("first_touch", "Paid Social"), ("last_touch", "Direct"),
                                            ("last_non_direct", "Organic Search")])
def test_query_time_models_credit_the_seed_journey(wh, model, channel):
    """Instagram click, Google search a week later, direct 3 days later, then a purchase."""
    p = f"p{uuid.uuid4().hex[:8]}"
    wh.insert("touches", [
        _t(p, "ig", "Paid Social", "2026-11-01T10:00:00Z", "a1", "instagram"),
        _t(p, "gg", "Organic Search", "2026-11-08T10:00:00Z", "a1", "google"),
        _t(p, "dd", "Direct", "2026-11-11T10:00:00Z", "a1", "(direct)"),
    ])
    wh.insert("conversions", [
        _conv(p, "lead-1", "lead", "2026-11-11T10:05:00Z", "a1"),
        _conv(p, "sale-1", "sale", "2026-11-11T11:00:00Z", "a1", "150000.00"),
        _conv(p, "pay-1", "payment", "2026-11-11T11:00:00Z", "a1", "150000.00"),
        _conv(p, "pay-2", "payment", "2026-11-12T11:00:00Z", "nobody", "5000.00"),  # no touch at all
        _conv(p, "pay-3", "payment", "2026-11-12T11:00:00Z", "a1", "99.00", "RUB"),  # another currency
    ])
    out = reports.run(wh, reports.ReportRequest("channels", p, date(2026, 11, 1), date(2026, 11, 30), model=model))
    rows = {r["channel"]: r for r in out["rows"]}
    assert (rows[channel]["leads"], rows[channel]["sales"], rows[channel]["revenue"]) == (1, 1, "150000.00")
    assert rows["(unattributed)"]["revenue"] == "5000.00"
    assert out["total"]["revenue"] == "155000.00" and out["total"]["visits"] == 3
    others = [c for c in rows if c not in (channel, "(unattributed)")]
    assert all(rows[c]["revenue"] == "0.00" for c in others)


def test_lookback_window_and_spend_reimport(wh):
    p = f"p{uuid.uuid4().hex[:8]}"
    wh.insert("touches", [_t(p, "old", "Paid Search", "2026-07-01T10:00:00Z", "a1", "google")])
    wh.insert("conversions", [_conv(p, "lead-1", "lead", "2026-11-02T10:00:00Z", "a1")])
    spend = lambda imp, at, cost, campaign: {  # noqa: E731
        "project": p, "day": "2026-11-02", "source": "google", "medium": "cpc", "campaign": campaign, "ad": "",
        "keyword": "", "channel": "Paid Search", "cost": cost, "currency": "KZT", "clicks": 1, "impressions": 1,
        "import_id": imp, "imported_at": at, "row_id": f"{imp}-{campaign}"}
    wh.insert("ad_spend", [spend("i1", "2026-11-03T00:00:00Z", "100.00", "a"), spend("i1", "2026-11-03T00:00:00Z", "50.00", "b")])
    wh.insert("ad_spend", [spend("i2", "2026-11-04T00:00:00Z", "70.00", "a")])  # re-import of the day
    req = lambda lb: reports.ReportRequest("channels", p, date(2026, 11, 1), date(2026, 11, 30), lookback_days=lb)  # noqa: E731
    short, long = reports.run(wh, req(90)), reports.run(wh, req(150))
    assert {r["channel"]: r["leads"] for r in short["rows"] if r["leads"]} == {"(unattributed)": 1}
    assert {r["channel"]: r["leads"] for r in long["rows"] if r["leads"]} == {"Paid Search": 1}
    assert short["total"]["spend"] == "70.00"  # the second import replaced the whole day
    assert long["total"]["cpl"] == "70.00"


# A call is credited through the person of the visitor who was shown the number: the processors map
# its subject there (identity_map); see tests/clickhouse/test_query_time_models.py.


def test_money_in_other_currencies_is_converted_by_the_days_rate(wh):
    p = f"p{uuid.uuid4().hex[:8]}"
    wh.insert("touches", [_t(p, "t1", "Paid Search", "2026-11-01T10:00:00Z", "a1", "google")])
    wh.insert("conversions", [
        _conv(p, "s1", "sale", "2026-11-02T10:00:00Z", "a1", "100.00", "USD"),
        _conv(p, "p1", "payment", "2026-11-02T10:00:00Z", "a1", "100.00", "USD"),   # rate of Nov 1: 480
        _conv(p, "p2", "payment", "2026-11-20T10:00:00Z", "a1", "10.00", "USD"),    # rate of Nov 15: 500
        _conv(p, "p3", "payment", "2026-11-20T10:00:00Z", "a1", "7.00", "EUR"),     # no EUR rate
        _conv(p, "p4", "payment", "2026-11-20T10:00:00Z", "a1", "1000.00", "KZT"),
    ])
    rate = lambda day, cur, r: {"project": p, "day": day, "currency": cur, "base": "KZT", "rate": r,  # noqa: E731
                                "imported_at": "2026-11-25T00:00:00Z"}
    wh.insert("currency_rates", [rate("2026-11-01", "USD", "480"), rate("2026-11-15", "USD", "500")])
    wh.insert("ad_spend", [{"project": p, "day": "2026-11-05", "source": "google", "medium": "cpc", "campaign": "",
                                 "ad": "", "keyword": "", "channel": "Paid Search", "cost": "20.00", "currency": "USD",
                                 "clicks": 0, "impressions": 0, "import_id": "i", "imported_at": "2026-11-06T00:00:00Z",
                                 "row_id": "r"}])
    out = reports.run(wh, reports.ReportRequest("channels", p, date(2026, 11, 1), date(2026, 11, 30)))
    row = next(r for r in out["rows"] if r["channel"] == "Paid Search")
    assert row["revenue"] == "54000.00"  # 100*480 + 10*500 + 1000, EUR left out
    assert row["spend"] == "9600.00" and row["unconverted"] == 1


def test_a_chat_lead_spanning_a_month_end_counts_once_at_its_first_message(wh):
    p = f"p{uuid.uuid4().hex[:8]}"
    wh.insert("conversions", [_conv(p, "lead:message:whatsapp:h_1", "lead", "2026-10-31T23:50:00Z", "a1")])
    wh.insert("conversions", [_conv(p, "lead:message:whatsapp:h_1", "lead", "2026-11-01T00:10:00Z", "a1")])
    wh.insert("conversions", [_conv(p, "sale:deal:x", "sale", "2026-11-02T10:00:00Z", "a1", "100.00")])
    wh.insert("conversions", [_conv(p, "sale:deal:x", "sale", "2026-11-02T11:00:00Z", "a1", "150.00")])  # price edited
    rows = wh.rows("SELECT conversion_id, toString(at) AS at, toString(value) AS v FROM conversions FINAL "
                        "WHERE project = {p:String} ORDER BY conversion_id", {"p": p})
    assert rows == [{"conversion_id": "lead:message:whatsapp:h_1", "at": "2026-10-31 23:50:00.000", "v": "0"},
                    {"conversion_id": "sale:deal:x", "at": "2026-11-02 11:00:00.000", "v": "150"}]


def test_the_quality_report(wh):
    p = f"p{uuid.uuid4().hex[:8]}"
    wh.insert("touches", [
        _t(p, "t1", "Paid Search", "2026-11-01T10:00:00Z", "a1", "google") | {"campaign": "sofas"},
        _t(p, "t2", "Referral", "2026-11-01T10:00:00Z", "a2", "blog.kz"),
        _t(p, "t3", "Other", "2026-11-01T10:00:00Z", "a3", "partner-x"),
        _t(p, "t4", "Direct", "2026-11-01T10:00:00Z", "a4", "(direct)"),
        {**_t(p, "t5", "Direct", "2026-11-01T10:00:00Z", "bot", "(direct)"), "is_bot": True},
    ])
    wh.insert("conversions", [_conv(p, "p1", "payment", "2026-11-02T10:00:00Z", "a1", "300.00"),
                                   _conv(p, "p2", "payment", "2026-11-02T10:00:00Z", "", "100.00")])
    out = reports.run(wh, reports.ReportRequest("quality", p, date(2026, 11, 1), date(2026, 11, 30)))
    rows = {r["metric"]: r for r in out["rows"]}
    assert (rows["revenue_attributed"]["value"], rows["revenue_attributed"]["share"]) == ("300.00", 0.75)
    assert rows["sessions"]["value"] == "5" and rows["bot_sessions"]["value"] == "1"
    assert rows["direct_sessions"]["share"] == 0.25 and rows["other_channel_sessions"]["value"] == "1"
    assert rows["unknown_source:partner-x/(none)"]["value"] == "1"
