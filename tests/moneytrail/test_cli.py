"""The CLI as a user runs it: each command in its own process (chDB: one folder per process)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, base_env


def _run(env, *args, ok=True):
    out = subprocess.run([sys.executable, "-m", "moneytrail", *args], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    if ok:
        assert out.returncode == 0, out.stderr + out.stdout
    return out


@pytest.fixture
def env(tmp_path):
    return base_env(tmp_path / "data")


def test_migrate_applies_once(env):
    assert "0001_init" in _run(env, "migrate").stdout
    assert "up to date" in _run(env, "migrate").stdout


def test_projects_create_list_rotate(env):
    created = json.loads(_run(env, "projects", "create", "Almaty Furniture", "--origin", "https://mebel.kz", "--json").stdout)
    assert created["project"] == "almaty-furniture"
    assert created["write_key"].startswith("wk_") and created["read_token"].startswith("rt_")
    dup = _run(env, "projects", "create", "Almaty Furniture", ok=False)
    assert dup.returncode == 1 and "exists" in dup.stderr
    listed = json.loads(_run(env, "projects", "list", "--json").stdout)
    assert listed == [{"project": "almaty-furniture", "name": "Almaty Furniture", "origins": ["https://mebel.kz"]}]
    assert created["write_key"] not in json.dumps(listed)
    rotated = json.loads(_run(env, "projects", "rotate-key", "Almaty Furniture", "--json").stdout)
    assert rotated["write_key"] != created["write_key"]
    missing = _run(env, "projects", "rotate-key", "nope", ok=False)
    assert missing.returncode == 1


def test_report_needs_a_project_and_valid_dates(env):
    none = _run(env, "report", "channels", ok=False)
    assert none.returncode == 2 and "there are none yet" in none.stderr
    _run(env, "projects", "create", "Shop")
    bad = _run(env, "report", "channels", "--from", "2026-13-01", ok=False)
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr
    table = _run(env, "report", "channels", "--from", "2026-11-01", "--to", "2026-11-02").stdout
    assert all(col in table for col in ("visits", "leads", "sales", "revenue", "spend", "cpl", "roi", "Total"))
    assert "credited at query time: no conversion in the range" in table  # the caption says how it credited
    csv = _run(env, "report", "channels", "--format", "csv").stdout
    assert csv.splitlines()[0].startswith("visits,leads,sales") and csv.splitlines()[-1].startswith("0,0,0")


def test_every_command_has_help(env):
    for cmd in (["serve"], ["worker"], ["sink"], ["migrate"], ["report"], ["projects", "create"],
                ["projects", "list"], ["projects", "rotate-key"]):
        assert "Usage" in _run(env, *cmd, "--help").stdout


def test_worker_refuses_the_memory_bus(env):
    out = _run(env, "worker", ok=False)
    assert out.returncode == 2 and "kafka://" in out.stderr


def test_vendor_settings_are_set_and_never_printed(env):
    _run(env, "projects", "create", "Shop")
    out = _run(env, "projects", "configure", "Shop", "stripe", 'signing_secrets=["whsec_a","whsec_b"]', "tolerance_s=300")
    assert "signing_secrets, tolerance_s" in out.stdout and "whsec_a" not in out.stdout
    removed = _run(env, "projects", "configure", "Shop", "stripe", "tolerance_s=")
    assert "tolerance_s" not in removed.stdout.split(":", 1)[1]
    assert _run(env, "projects", "configure", "Shop", "nosuch", "a=b", ok=False).returncode == 2


def test_a_projects_time_zone_is_set_checked_and_used_by_its_reports(env):
    _run(env, "projects", "create", "Shop")
    assert "report days in Asia/Almaty" in _run(env, "projects", "timezone", "Shop", "Asia/Almaty").stdout
    bad = _run(env, "projects", "timezone", "Shop", "Mars/Olympus", ok=False)
    assert bad.returncode == 2 and "unknown time zone" in bad.stderr
    assert _run(env, "projects", "timezone", "Nope", "UTC", ok=False).returncode == 1
    out = _run(env, "report", "channels", "--from", "2026-05-01", "--to", "2026-05-31", "--format", "json")
    assert json.loads(out.stdout)["timezone"] == "Asia/Almaty"  # the zone was kept


@pytest.mark.parametrize("command", [("report", "channels"), ("serve", "--no-sink"), ("sink",)])
def test_a_clickhouse_server_that_is_away_is_one_line_and_exit_69(tmp_path, command):
    """Not a 40-line traceback: what is away, where, and EX_UNAVAILABLE for a supervisor to retry."""
    from tests.conftest import free_port

    port = free_port()  # nothing listens there
    env = base_env(tmp_path / "data", MONEYTRAIL_WAREHOUSE=f"clickhouse://u:p@127.0.0.1:{port}/shop",
                   MONEYTRAIL_BUS="kafka://127.0.0.1:1", MONEYTRAIL_PII_KEY="x" * 40, MONEYTRAIL_PORT=str(free_port()))
    out = _run(env, *command, ok=False)
    assert out.returncode == 69, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1] == (
        f"moneytrail: the warehouse is unavailable: cannot reach the ClickHouse server at 127.0.0.1:{port} "
        "(database shop): connection refused")
    assert "Traceback" not in out.stderr


def test_the_worker_quiets_the_kafka_clients_repeated_lines():
    """A broker outage made aiokafka log ~800 lines a second through Faust's own handlers."""
    import logging

    from moneytrail.cli import _quiet_client_loggers

    _quiet_client_loggers()
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    conn = logging.getLogger("aiokafka.conn")
    handler = Keep()
    conn.addHandler(handler)
    try:
        for i in range(500):
            conn.error("Unable connect to node with id %s: %s", i % 3, "connection refused")
        conn.error("something else")
    finally:
        conn.removeHandler(handler)
    assert seen == ["Unable connect to node with id 0: connection refused", "something else"]
