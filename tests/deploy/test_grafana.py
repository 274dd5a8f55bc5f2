"""deploy/grafana/ checked without a Grafana: the datasource is the official ClickHouse plugin on the
compose ClickHouse service with its secrets from the environment, the dashboard provider finds
the mounted dashboard, and every panel's SQL, with Grafana's variables and the plugin's macros
replaced the way they replace them, runs on the real engine (chDB, every migration applied) over
a few hand-made rows and returns hand-computed numbers.

chDB hosts one folder per process and tests/clickhouse keeps its folder open for the whole
session, so the warehouse here lives in a process of its own (as in tests/moneytrail/test_cli.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date, datetime, time as dtime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from clickhouse.reports import ReportRequest
from clickhouse.sink import write_batch
from stream_processors.attribution import MODELS, UNATTRIBUTED
from tests.deploy.test_compose import TEST_ENV, load_compose

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "clickhouse.yaml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "moneytrail.yaml"
DASHBOARD = GRAFANA / "dashboards" / "moneytrail.json"
PLUGIN = "grafana-clickhouse-datasource"

SHOP, OTHER = "mebel-almaty", "other-shop"
TODAY = datetime.now(timezone.utc).date()
# The dashboard's time range in the test: the last 7 UTC days, today included.
RANGE_FROM = datetime.combine(TODAY - timedelta(days=7), dtime(0, 0), timezone.utc)
RANGE_TO = datetime.combine(TODAY, dtime(23, 59, 59), timezone.utc)


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _panels() -> dict[str, dict[str, Any]]:
    return {p["title"]: p for p in _dashboard()["panels"] if p.get("type") != "row"}


def _sql(panel: dict[str, Any]) -> str:
    (target,) = panel["targets"]
    return target["rawSql"]


def _variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in _dashboard()["templating"]["list"]}


# ---- what Grafana and the plugin do to a query before ClickHouse sees it ------------------------

_GRAFANA_VAR = re.compile(r"\$\{(?P<name>\w+)(?::(?P<fmt>\w+))?\}|\$(?P<bare>(?!__)\w+)|\[\[(?P<old>\w+)\]\]")


def _grafana_vars(sql: str, values: dict[str, str]) -> str:
    """Grafana's template service (front end): ${var}, ${var:sqlstring}, $var, [[var]]."""

    def sub(m: re.Match[str]) -> str:
        name = m.group("name") or m.group("bare") or m.group("old")
        if name not in values:
            raise AssertionError(f"the query uses ${name}, which is no variable of the dashboard")
        fmt = m.group("fmt")
        if fmt is None:  # the plugin's own format: a single value goes in as it is
            return values[name]
        assert fmt == "sqlstring", f"${{{name}:{fmt}}}: only sqlstring is handled here"
        return "'" + values[name].replace("'", "''") + "'"

    return _GRAFANA_VAR.sub(sub, sql)


def _plugin_macros(sql: str, start: datetime, end: datetime) -> str:
    """The ClickHouse plugin's macros (back end, pkg/macros/macros.go): seconds, UTC."""
    f, t = int(start.timestamp()), int(end.timestamp())
    fd, td = start.strftime("%Y-%m-%d"), end.strftime("%Y-%m-%d")
    sql = re.sub(r"\$__timeFilter\(\s*([^)]+?)\s*\)",
                 lambda m: f"{m[1]} >= toDateTime({f}) AND {m[1]} <= toDateTime({t})", sql)
    sql = re.sub(r"\$__dateFilter\(\s*([^)]+?)\s*\)",
                 lambda m: f"{m[1]} >= toDate('{fd}') AND {m[1]} <= toDate('{td}')", sql)
    sql = sql.replace("$__fromTime", f"toDateTime({f})").replace("$__toTime", f"toDateTime({t})")
    return sql


def expand(sql: str, values: dict[str, str], start: datetime = RANGE_FROM, end: datetime = RANGE_TO) -> str:
    out = _plugin_macros(_grafana_vars(sql, values), start, end)
    assert "$" not in out, f"a macro or variable the test does not know is left in:\n{out}"
    return out


# ---- the warehouse, in a process of its own ------------------------------------------------------


def _at(day: date, hour: int = 12) -> str:
    return f"{day.isoformat()}T{hour:02d}:00:00Z"


def _touch(project: str, tid: str, anon: str, channel: str, day: date, hour: int = 10, source: str = "google",
           bot: bool = False) -> dict[str, Any]:
    return {"project": project, "touch_id": tid, "anonymous_id": anon, "user_id": "", "started_at": _at(day, hour),
            "source": source, "medium": "cpc", "campaign": "spring", "content": "", "term": "", "click_id_type": "",
            "channel": channel, "landing_url": "https://mebel.kz/", "referrer_host": "", "events": 1, "is_bot": bot}


def _credit(cid: str, conv: str, kind: str, day: date, model: str, channel: str, weight: str, amount: str,
            currency: str = "KZT", revision: int = 0, project: str = SHOP) -> dict[str, Any]:
    return {"project": project, "credit_id": cid, "conversion_id": conv, "kind": kind, "conversion_at": _at(day),
            "person_id": "p_1", "model": model, "touch_id": "", "channel": channel, "source": "", "medium": "",
            "campaign": "", "weight": weight, "amount": amount, "currency": currency, "revision": revision}


def _spend(day: date, source: str, channel: str, cost: str, import_id: str, imported_at: str, row: str,
           currency: str = "KZT", project: str = SHOP) -> dict[str, Any]:
    return {"project": project, "day": day.isoformat(), "source": source, "medium": "cpc", "campaign": "spring",
            "ad": "", "keyword": "", "channel": channel, "cost": cost, "currency": currency, "clicks": 1,
            "impressions": 10, "import_id": import_id, "imported_at": imported_at, "row_id": row}


def seed(wh: Any, today: date) -> None:
    """A furniture shop's last three days. The numbers the tests expect are worked out below them."""
    d1, d2, d3 = today - timedelta(days=3), today - timedelta(days=2), today - timedelta(days=1)
    old = today - timedelta(days=20)  # outside the 7-day range
    wh.insert("projects", [
        {"project_id": SHOP, "name": "Mebel Almaty", "write_key_hash": "", "read_token_hash": "",
         "webhook_secret_hash": "", "origins": [], "created_at": _at(d1), "updated_at": _at(d1)},
        {"project_id": OTHER, "name": "Other shop", "write_key_hash": "", "read_token_hash": "",
         "webhook_secret_hash": "", "origins": [], "created_at": _at(d1), "updated_at": _at(d1)},
        {"project_id": "gone", "name": "Closed shop", "write_key_hash": "", "read_token_hash": "",
         "webhook_secret_hash": "", "origins": [], "created_at": _at(d1), "updated_at": _at(d1), "deleted": 1},
    ])
    # touches and credits as the sink writes them: with their live-aggregate deltas (clickhouse/live.py)
    write_batch(wh, "touches", [
        _touch(SHOP, "t1", "a1", "Paid Search", d1),
        _touch(SHOP, "t2", "a1", "Social", d2, source="instagram"),
        _touch(SHOP, "t3", "a2", "Paid Search", d2),
        _touch(SHOP, "t4", "a3", "Direct", d3, source="(direct)"),
        _touch(SHOP, "t5", "bot", "Paid Search", d3, bot=True),  # a bot: never a visit
        _touch(SHOP, "t6", "a2", "Social", d3, hour=9, source="instagram"),
        _touch(SHOP, "t0", "a0", "Paid Search", old),  # out of range
        _touch(OTHER, "x1", "b1", "Paid Search", d3),  # another project
    ], "grafana-touches-1")
    write_batch(wh, "touches", [_touch(SHOP, "t3", "a2", "Paid Search", d2)], "grafana-touches-2")  # redelivered

    lnd, ft = "last_non_direct", "first_touch"
    write_batch(wh, "credits", [
        # last_non_direct
        _credit("c1", "lead1", "lead", d1, lnd, "Paid Search", "1", "0"),
        _credit("c2", "lead2", "lead", d2, lnd, "Paid Search", "1", "0"),
        _credit("c3", "sale1", "sale", d2, lnd, "Social", "1", "300000"),
        _credit("c4", "pay1", "payment", d2, lnd, "Social", "1", "300000"),
        _credit("c5", "ref1", "refund", d3, lnd, "Social", "1", "-20000"),
        # pay2 first went to Social; an identity merge later moved it to Paid Search (delta rows)
        _credit("c6", "pay2", "payment", d3, lnd, "Social", "1", "120000"),
        _credit("c6r1a", "pay2", "payment", d3, lnd, "Social", "-1", "-120000", revision=1),
        _credit("c6r1b", "pay2", "payment", d3, lnd, "Paid Search", "1", "120000", revision=1),
        _credit("c7", "pay3", "payment", d3, lnd, UNATTRIBUTED, "1", "80000"),
        _credit("c8", "pay4", "payment", d3, lnd, "Paid Search", "1", "100", currency="USD"),
        _credit("c9", "pay0", "payment", old, lnd, "Paid Search", "1", "555555"),  # out of range
        # first_touch: everything of a1 and a2 goes to their first touch, Paid Search
        _credit("f1", "pay1", "payment", d2, ft, "Paid Search", "1", "300000"),
        _credit("f2", "ref1", "refund", d3, ft, "Paid Search", "1", "-20000"),
        _credit("f3", "pay2", "payment", d3, ft, "Paid Search", "1", "120000"),
        _credit("f4", "pay3", "payment", d3, ft, UNATTRIBUTED, "1", "80000"),
        # another project
        _credit("o1", "opay", "payment", d3, lnd, "Paid Search", "1", "777777", project=OTHER),
    ], "grafana-credits-1")
    write_batch(wh, "credits", [_credit("c4", "pay1", "payment", d2, lnd, "Social", "1", "300000")],
                "grafana-credits-2")  # at-least-once: the same credit_id again

    wh.insert("ad_spend", [
        # (d2, google): two imports, the later one replaces the earlier
        _spend(d2, "google", "Paid Search", "30000", "imp-a", _at(d2, 20), "r1"),
        _spend(d2, "google", "Paid Search", "20000", "imp-a", _at(d2, 20), "r2"),
        _spend(d2, "google", "Paid Search", "40000", "imp-b", _at(d2, 22), "r1"),
        _spend(d2, "google", "Paid Search", "20000", "imp-b", _at(d2, 22), "r2"),
        _spend(d3, "google", "Paid Search", "40000", "imp-c", _at(d3, 20), "r1"),
        _spend(d2, "instagram", "Social", "70000", "imp-d", _at(d2, 20), "r1"),
        _spend(d3, "instagram", "Social", "30000", "imp-e", _at(d3, 20), "r1"),
        _spend(d3, "tiktok", "Social", "50", "imp-f", _at(d3, 20), "r1", currency="USD"),
        _spend(old, "google", "Paid Search", "999999", "imp-g", _at(old, 20), "r1"),  # out of range
        _spend(d3, "google", "Paid Search", "888888", "imp-h", _at(d3, 20), "r1", project=OTHER),
    ])


# Every non-bot visit of SHOP the live aggregates hold (t1..t4, t6, t0).
SEEDED_VISITS = 6


def serve_queries(folder: str, today: str) -> None:
    """In the child process: a fresh warehouse, every migration, the rows (and so the live
    aggregates), then each query of stdin ({name: sql}) -> stdout ({name: {"rows"|"error"}})."""
    from clickhouse.migrate import migrate
    from clickhouse.warehouse import ChdbWarehouse, WarehouseError

    queries = json.loads(sys.stdin.read())
    wh = ChdbWarehouse(folder)
    try:
        migrate(wh)
        seed(wh, date.fromisoformat(today))
        # written with the rows, nothing to wait for (no refresh on a timer any more)
        seen = wh.rows("SELECT sum(visits) AS v FROM live_visits WHERE project = {p:String}", {"p": SHOP})
        assert int(seen[0]["v"]) == SEEDED_VISITS, seen
        out: dict[str, Any] = {}
        for name, sql in queries.items():
            try:
                out[name] = {"rows": wh.rows(sql)}
            except WarehouseError as exc:
                out[name] = {"error": str(exc)[:2000]}
        print(json.dumps(out))
    finally:
        wh.close()


def run_in_chdb(folder: Path, queries: dict[str, str]) -> dict[str, Any]:
    code = "import sys; from tests.deploy.test_grafana import serve_queries; serve_queries(sys.argv[1], sys.argv[2])"
    proc = subprocess.run([sys.executable, "-c", code, str(folder), TODAY.isoformat()], input=json.dumps(queries),
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _values(model: str) -> dict[str, str]:
    return {"project": SHOP, "model": model, "currency": "KZT"}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    queries = {}
    for model in ("last_non_direct", "first_touch"):
        for title, panel in _panels().items():
            queries[f"{title}|{model}"] = expand(_sql(panel), _values(model))
    for name, var in _variables().items():
        if var["type"] == "query":
            queries[f"variable:{name}"] = expand(var["query"]["rawSql"], _values("last_non_direct"))
    return run_in_chdb(tmp_path_factory.mktemp("grafana") / "warehouse", queries)


def _rows(results: dict[str, Any], name: str) -> list[dict[str, Any]]:
    assert "error" not in results[name], f"{name}: {results[name].get('error')}"
    return results[name]["rows"]


# ---- provisioning files ------------------------------------------------------------------------


_ENV_REF = re.compile(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$")


def _grafana_env_value(value: Any, env: dict[str, str]) -> str:
    """A provisioning value as Grafana resolves it: $VAR / ${VAR} from the container's environment."""
    m = _ENV_REF.match(str(value))
    if not m:
        return str(value)
    assert m.group(1) in env, f"{value}: the grafana service does not set {m.group(1)}"
    return env[m.group(1)]


def test_datasource_is_the_clickhouse_plugin_on_the_compose_service() -> None:
    services = load_compose()["services"]
    grafana_env = {k: str(v) for k, v in services["grafana"]["environment"].items()}
    (ds,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert ds["type"] == PLUGIN and ds["uid"] == "moneytrail-clickhouse"
    assert ds.get("editable") is False, "a provisioned datasource edited in the UI is lost on restart"
    jd = ds["jsonData"]
    host = _grafana_env_value(jd["host"], grafana_env)
    assert host in services and services[host]["image"].startswith("clickhouse/clickhouse-server")
    assert jd["protocol"] == "http" and int(_grafana_env_value(jd["port"], grafana_env)) == 8123
    assert not jd.get("secure"), "the compose ClickHouse speaks plain HTTP inside the network"
    ch = services[host]["environment"]
    assert _grafana_env_value(jd["username"], grafana_env) == ch["CLICKHOUSE_USER"]
    assert _grafana_env_value(jd["defaultDatabase"], grafana_env) == ch["CLICKHOUSE_DB"]
    # the password only ever arrives from the environment, and it is the server's
    password = ds["secureJsonData"]["password"]
    assert _ENV_REF.match(password), "a literal password in a provisioning file"
    assert _grafana_env_value(password, grafana_env) == ch["CLICKHOUSE_PASSWORD"] == TEST_ENV["CLICKHOUSE_PASSWORD"]
    raw = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["grafana"]["environment"]
    assert ":?" in raw[_ENV_REF.match(password).group(1)], "Grafana's ClickHouse password must be required"
    assert "password" not in json.dumps(jd).lower()


def test_dashboard_provider_finds_the_mounted_dashboard() -> None:
    grafana = load_compose()["services"]["grafana"]
    mounts = {}
    for vol in grafana["volumes"]:
        source, target, *mode = vol.split(":")
        mounts[target] = (source, mode)
    (provider,) = yaml.safe_load(PROVIDERS.read_text())["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    source, mode = mounts[path]
    assert mode == ["ro"] and (ROOT / source / DASHBOARD.name).resolve() == DASHBOARD.resolve()
    assert (ROOT / mounts["/etc/grafana/provisioning"][0]).resolve() == (GRAFANA / "provisioning").resolve()


def test_variables_project_model_and_currency() -> None:
    variables = _variables()
    assert {"project", "model", "currency"} <= set(variables)
    model = variables["model"]
    assert model["type"] == "custom" and tuple(model["query"].split(",")) == MODELS
    assert tuple(o["value"] for o in model["options"]) == MODELS
    default = ReportRequest("channels", "p", TODAY, TODAY).model
    assert model["current"]["value"] == default, "the reports' default model"
    for name in ("project", "currency"):
        assert variables[name]["datasource"]["uid"] == "moneytrail-clickhouse"
        assert not variables[name].get("multi") and not variables[name].get("includeAll"), \
            "the panels compare with = : one value"


def test_every_panel_is_bound_to_the_project_the_model_and_the_time_range() -> None:
    panels = _panels()
    assert {p["type"] for p in panels.values()} >= {"barchart", "table", "timeseries", "stat"}
    assert _dashboard()["time"]["from"].startswith("now-")
    for title, panel in panels.items():
        (target,) = panel["targets"]
        assert target["datasource"]["uid"] == "moneytrail-clickhouse", title
        assert target["editorType"] == "sql", title
        sql = target["rawSql"]
        assert re.search(r"\$__(timeFilter|dateFilter|fromTime|toTime)", sql), f"{title}: ignores the time range"
        assert "${project:sqlstring}" in sql, f"{title}: not filtered by the project"
        assert "live_channel_daily" not in sql, f"{title}: the refreshed table is gone (migration 0014)"
        if "live_money" in sql:
            assert "${model:sqlstring}" in sql, f"{title}: live credits of every model summed together"
        assert not re.search(r"\bFROM (touches|credits)", sql), f"{title}: reads the rows, not the live aggregates"
        if panel["type"] == "timeseries":
            assert target["format"] == 0 and re.search(r"ORDER BY time\b", sql), title


# ---- the panels on the real engine -------------------------------------------------------------


def test_every_query_runs(results: dict[str, Any]) -> None:
    errors = {name: r["error"] for name, r in results.items() if "error" in r}
    assert errors == {}
    assert len(results) == 2 * len(_panels()) + 2


def test_roi_table(results: dict[str, Any]) -> None:
    """last_non_direct, KZT, last 7 days. Revenue = payments + refunds (the range has payments):
    Paid Search 120 000 (pay2 after its correction), Social 300 000 - 20 000, unattributed 80 000;
    the 100 USD payment, the stale snapshot, the old and the other project's rows are left out.
    Spend = the latest import per (day, source): Paid Search 60 000 (imp-b, not imp-a) + 40 000,
    Social 70 000 + 30 000 (the USD row left out). ROI = (revenue - spend) / spend."""
    rows = _rows(results, "ROI per channel|last_non_direct")
    got = {r["channel"]: (r["visits"], r["leads"], r["sales"], r["revenue"], r["spend"], r["roi"]) for r in rows}
    assert got == {
        "Social": (2, 0, 1, "280000.00", "100000.00", 1.8),
        "Paid Search": (2, 2, 0, "120000.00", "100000.00", 0.2),
        UNATTRIBUTED: (0, 0, 0, "80000.00", "0.00", None),
        "Direct": (1, 0, 0, "0.00", "0.00", None),
        "Total": (5, 2, 1, "480000.00", "200000.00", 1.4),
    }
    assert [r["channel"] for r in rows] == ["Social", "Paid Search", UNATTRIBUTED, "Direct", "Total"]


def test_revenue_and_spend_per_channel(results: dict[str, Any]) -> None:
    rows = _rows(results, "Revenue and spend per channel|last_non_direct")
    assert [(r["channel"], r["revenue"], r["spend"]) for r in rows] == [
        ("Social", "280000.00", "100000.00"),
        ("Paid Search", "120000.00", "100000.00"),
        (UNATTRIBUTED, "80000.00", "0.00"),
    ]


def test_the_model_variable_changes_the_credit(results: dict[str, Any]) -> None:
    rows = _rows(results, "Revenue and spend per channel|first_touch")
    assert [(r["channel"], r["revenue"], r["spend"]) for r in rows] == [
        ("Paid Search", "400000.00", "100000.00"),
        (UNATTRIBUTED, "80000.00", "0.00"),
        ("Social", "0.00", "100000.00"),  # spend with no credited revenue under this model
    ]
    total = _rows(results, "ROI per channel|first_touch")[-1]
    assert (total["channel"], total["revenue"], total["roi"]) == ("Total", "480000.00", 1.4)


def test_revenue_per_day_by_channel(results: dict[str, Any]) -> None:
    d2, d3 = (TODAY - timedelta(days=n) for n in (2, 1))
    rows = _rows(results, "Revenue per day by channel|last_non_direct")
    assert [(r["time"], r["channel"], r["revenue"]) for r in rows] == [
        (f"{d2} 00:00:00", "Social", "300000.00"),
        (f"{d3} 00:00:00", UNATTRIBUTED, "80000.00"),
        (f"{d3} 00:00:00", "Paid Search", "120000.00"),
        (f"{d3} 00:00:00", "Social", "-20000.00"),
    ]


def test_unattributed_revenue_share(results: dict[str, Any]) -> None:
    # 80 000 / 480 000 = 0.1666... (divided at 6 places, rounded to 4)
    assert _rows(results, "Unattributed revenue share|last_non_direct") == [{"unattributed_share": 0.1667}]
    assert _rows(results, "Unattributed revenue share|first_touch") == [{"unattributed_share": 0.1667}]


def test_visits_per_day_agree_with_the_live_table(results: dict[str, Any]) -> None:
    d1, d2, d3 = (TODAY - timedelta(days=n) for n in (3, 2, 1))
    rows = _rows(results, "Visits per day|last_non_direct")
    assert [(r["time"], r["channel"], r["visits"]) for r in rows] == [
        (f"{d1} 00:00:00", "Paid Search", 1),
        (f"{d2} 00:00:00", "Paid Search", 1),
        (f"{d2} 00:00:00", "Social", 1),
        (f"{d3} 00:00:00", "Direct", 1),
        (f"{d3} 00:00:00", "Social", 1),
    ]
    per_channel: dict[str, int] = {}
    for r in rows:
        per_channel[r["channel"]] = per_channel.get(r["channel"], 0) + r["visits"]
    table = {r["channel"]: r["visits"] for r in _rows(results, "ROI per channel|last_non_direct")
             if r["channel"] != "Total" and r["visits"]}
    assert per_channel == table


def test_variable_queries(results: dict[str, Any]) -> None:
    # two columns: the plugin takes the first as the value, the second as the text
    projects = _rows(results, "variable:project")
    assert [list(r.values()) for r in projects] == [[SHOP, "Mebel Almaty"], [OTHER, "Other shop"]]
    assert [r["currency"] for r in _rows(results, "variable:currency")] == ["KZT", "USD"]


def test_macro_expansion_matches_the_plugin() -> None:
    sql = expand("SELECT 1 WHERE $__timeFilter(started_at) AND $__dateFilter(day) AND p = ${project:sqlstring}",
                 {"project": "o'shop"}, datetime(2026, 1, 2, tzinfo=timezone.utc),
                 datetime(2026, 1, 3, 12, tzinfo=timezone.utc))
    assert sql == ("SELECT 1 WHERE started_at >= toDateTime(1767312000) AND started_at <= toDateTime(1767441600)"
                   " AND day >= toDate('2026-01-02') AND day <= toDate('2026-01-03') AND p = 'o''shop'")
    with pytest.raises(AssertionError, match="no variable"):
        expand("SELECT ${nope}", {})
