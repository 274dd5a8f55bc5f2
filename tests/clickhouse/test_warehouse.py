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


def test_migrations_run_once_and_are_recorded(chdb_wh):
    assert migrate(chdb_wh) == []  # the fixture applied them already
    assert applied(chdb_wh) == {m.version for m in available(MIGRATIONS)}
    tables = {r["name"] for r in chdb_wh.rows("SELECT name FROM system.tables WHERE database = currentDatabase()")}
    assert {"projects", "raw_events", "touches", "dead_letters", "schema_migrations"} <= tables


def test_migration_files_are_numbered(tmp_path):
    (tmp_path / "1_bad.sql").write_text("SELECT 1")
    with pytest.raises(ValueError, match="NNNN_name"):
        available(tmp_path)


def test_a_retried_insert_with_the_same_token_adds_no_rows(chdb_wh):
    p = f"p{uuid.uuid4().hex[:8]}"
    rows = [_touch(p, f"t{i}") for i in range(5)]
    chdb_wh.insert("touches", rows, token=f"tok-{p}")
    chdb_wh.insert("touches", rows, token=f"tok-{p}")
    assert chdb_wh.rows("SELECT count() AS c FROM touches WHERE project = {p:String}", {"p": p}) == [{"c": 5}]


def test_the_same_touch_delivered_twice_counts_once(chdb_wh):
    p = f"p{uuid.uuid4().hex[:8]}"
    chdb_wh.insert("touches", [_touch(p, "t1")], token=f"a-{p}")
    chdb_wh.insert("touches", [_touch(p, "t1")], token=f"b-{p}")  # another batch: at-least-once redelivery
    assert chdb_wh.rows("SELECT count() AS c FROM touches FINAL WHERE project = {p:String}", {"p": p}) == [{"c": 1}]


def test_channel_report_counts_visits_per_channel_without_bots(chdb_wh):
    p = f"p{uuid.uuid4().hex[:8]}"
    chdb_wh.insert("touches", [
        _touch(p, "t1", "Paid Search", anon="a1"), _touch(p, "t2", "Paid Search", anon="a2"),
        _touch(p, "t3", "Direct", anon="a1"), _touch(p, "t4", "Direct", anon="bot", bot=True),
        _touch(p, "t5", "Direct", day="2026-10-01"),
    ])
    out = reports.run(chdb_wh, reports.ReportRequest("channels", p, date(2026, 11, 1), date(2026, 11, 30)))
    assert out["rows"] == [{"channel": "Paid Search", "visits": 2, "visitors": 2},
                           {"channel": "Direct", "visits": 1, "visitors": 1}]
    assert out["total"] == {"visits": 3, "visitors": 2}
    assert (out["from"], out["to"], out["report"]) == ("2026-11-01", "2026-11-30", "channels")


def test_sql_errors_become_warehouse_errors(chdb_wh):
    with pytest.raises(WarehouseError, match="SYNTAX_ERROR|Syntax error"):
        chdb_wh.rows("SELEC 1")


def test_decimals_come_back_as_exact_strings(chdb_wh):
    assert chdb_wh.rows("SELECT toDecimal64('1234567.89', 2) AS m") == [{"m": "1234567.89"}]


def test_unknown_warehouse_url_is_refused():
    with pytest.raises(ValueError, match="unknown warehouse URL"):
        open_warehouse("postgres://x")


def test_projects_are_found_by_key_hash_and_rotation_kills_old_keys(chdb_wh):
    store = ProjectStore(chdb_wh, min_refresh_s=0)
    name = f"Shop {uuid.uuid4().hex[:6]}"
    project, creds = store.create(name, ("https://shop.kz",))
    assert asyncio.run(store.by_write_key(creds.write_key)) == project
    assert asyncio.run(store.by_read_token(creds.read_token)) == project
    assert asyncio.run(store.by_write_key(creds.read_token)) is None
    stored = chdb_wh.rows("SELECT * FROM projects FINAL WHERE project_id = {p:String}", {"p": project.project_id})
    assert creds.write_key not in str(stored) and creds.read_token not in str(stored)
    with pytest.raises(ProjectExists):
        store.create(name)
    new = store.rotate(project.project_id)
    assert asyncio.run(store.by_write_key(creds.write_key)) is None
    assert asyncio.run(store.by_write_key(new.write_key)) == project
    with pytest.raises(UnknownProject):
        store.rotate("nope")


async def test_batching_sink_flushes_by_size_and_on_stop(chdb_wh):
    p = f"p{uuid.uuid4().hex[:8]}"
    import orjson

    sink = BatchingSink(chdb_wh, max_rows=3, max_seconds=60)
    await sink.start()
    await sink.put(topics.TOUCHES, [(b"", orjson.dumps(_touch(p, f"t{i}"))) for i in range(3)])
    for _ in range(100):
        if sink.rows_written >= 3:
            break
        await asyncio.sleep(0.05)
    assert sink.rows_written == 3  # size-triggered, long before max_seconds
    await sink.put(topics.TOUCHES, [(b"", orjson.dumps(_touch(p, "t9")))])
    await sink.stop()
    assert chdb_wh.rows("SELECT count() AS c FROM touches FINAL WHERE project = {p:String}", {"p": p}) == [{"c": 4}]


def test_an_empty_report_still_has_a_zero_total_row(chdb_wh):
    out = reports.run(chdb_wh, reports.ReportRequest("channels", "nobody", date(2026, 1, 1), date(2026, 1, 2)))
    assert out["rows"] == [] and out["total"] == {"visits": 0, "visitors": 0}


async def test_a_record_the_sink_cannot_read_becomes_a_dead_letter_not_a_crash(chdb_wh):
    import orjson

    p = f"p{uuid.uuid4().hex[:8]}"
    sink = BatchingSink(chdb_wh, max_rows=100, max_seconds=60)
    await sink.put(topics.TOUCHES, [(b"", b"{broken"), (b"", orjson.dumps(_touch(p, "ok1")))])
    await sink.stop()
    assert chdb_wh.rows("SELECT count() AS c FROM touches WHERE project = {p:String}", {"p": p}) == [{"c": 1}]
    dead = chdb_wh.rows("SELECT reason, payload FROM dead_letters WHERE payload = '{broken'")
    assert dead == [{"reason": "undecodable", "payload": "{broken"}]


def test_vendor_settings_are_merged_per_vendor_and_survive_key_rotation(chdb_wh):
    store = ProjectStore(chdb_wh, min_refresh_s=0)
    project, creds = store.create(f"Hooks {uuid.uuid4().hex[:6]}")
    assert asyncio.run(store.by_webhook_secret(creds.webhook_secret)) == project
    store.configure(project.project_id, "stripe", {"signing_secret": "whsec_a"})
    store.configure(project.project_id, "amocrm", {"account_id": "29"})
    assert store.configure(project.project_id, "stripe", {"old": "x", "signing_secret": None}) == {"old": "x"}
    new = store.rotate(project.project_id)
    found = asyncio.run(store.by_webhook_secret(new.webhook_secret))
    assert found.vendor_config == {"stripe": {"old": "x"}, "amocrm": {"account_id": "29"}}
    assert asyncio.run(store.by_webhook_secret(creds.webhook_secret)) is None
