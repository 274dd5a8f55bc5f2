"""The thin path end to end, with real parts: POST /collect -> bus -> channel step -> sink ->
touches table -> GET /api/reports/channels, in embedded mode (one process, chDB) and distributed
mode (collector process + Apache Kafka + Faust worker process + sink)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, ClickhouseServer, kafka_port, Proc, base_env, free_port, show, wait_http

pytestmark = pytest.mark.integration
N = 1000
VISITORS = 300  # visitor k gets pageviews k, k+300, k+600(, k+900): one channel each, so one session
CHANNELS = [
    ("https://shop.kz/sofas?utm_source=google&utm_medium=cpc&utm_campaign=sofas", "https://www.google.com/", "Paid Search"),
    ("https://shop.kz/?utm_source=ig&utm_medium=paid_social", "", "Paid Social"),
    ("https://shop.kz/", "https://yandex.kz/search", "Organic Search"),
    ("https://shop.kz/", "", "Direct"),
]


def _page(i: int, run: str) -> dict:
    url, ref, _ = CHANNELS[i % len(CHANNELS)]
    return {"type": "page", "messageId": f"{run}-{i}", "anonymousId": f"visitor-{i % VISITORS}",
            "context": {"page": {"url": url, "referrer": ref}, "userAgent": "Mozilla/5.0 (X11; Linux x86_64)"}}


def _post_all(base: str, write_key: str, run: str) -> None:
    """500 single events and 25 batches of 20, from 4 threads."""
    def single(i: int) -> int:
        return httpx.post(f"{base}/collect", json=_page(i, run), headers={"X-Write-Key": write_key}, timeout=30).status_code

    def batch(b: int) -> int:
        events = [_page(500 + b * 20 + j, run) for j in range(20)]
        return httpx.post(f"{base}/v1/batch", json={"batch": events}, auth=(write_key, ""), timeout=30).status_code

    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(single, range(500))) + list(pool.map(batch, range(25)))
    assert codes == [200] * 525


def _refusals_are_not_stored(base: str, write_key: str) -> None:
    bad_key = httpx.post(f"{base}/collect", json=_page(0, "refused"), headers={"X-Write-Key": "wk_nope"})
    malformed = httpx.post(f"{base}/collect", content=b'{"type":"page",', headers={"X-Write-Key": write_key,
                                                                              "Content-Type": "application/json"})
    assert (bad_key.status_code, bad_key.json()["reason"]) == (401, "unknown_key")
    assert (malformed.status_code, malformed.json()["reason"]) == (400, "invalid_json")


def _create_project(env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-m", "moneytrail", "projects", "create", "Test Shop", "--json"],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _wait_visits(base: str, read_token: str, want: int, timeout: float) -> tuple[dict, float]:
    started = time.monotonic()
    report: dict = {}
    while time.monotonic() - started < timeout:
        report = httpx.get(f"{base}/api/reports/channels", headers={"Authorization": f"Bearer {read_token}"}).json()
        if report["total"].get("visits") == want:
            return report, time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"expected {want} visits within {timeout}s, report says {report}")


def _expected_rows() -> dict[str, int]:
    """Visits (sessions) per channel: each visitor's pageviews within minutes are one session."""
    counts: dict[str, int] = {}
    for k in range(VISITORS):
        channel = CHANNELS[k % len(CHANNELS)][2]
        counts[channel] = counts.get(channel, 0) + 1
    return counts


def _stored_counts(env: dict[str, str], project: str) -> dict:
    """Row counts read straight from the chDB folder, after the server stopped (its own process:
    chDB hosts one folder per process)."""
    code = (
        "import json, sys; from moneytrail import root; from clickhouse.warehouse import open_warehouse\n"
        "wh = open_warehouse(root.load_settings().warehouse_url)\n"
        "q = lambda s: wh.rows(s, {'p': sys.argv[1]})[0]['c']\n"
        "print(json.dumps({'touches': q('SELECT count() AS c FROM touches FINAL WHERE project = {p:String}'),"
        " 'touch_ids': q('SELECT uniqExact(touch_id) AS c FROM touches WHERE project = {p:String}'),"
        " 'raw': q('SELECT count() AS c FROM raw_events FINAL WHERE project = {p:String}'),"
        " 'dead': q('SELECT count() AS c FROM dead_letters WHERE project = {p:String}')}))\n"
        "wh.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", code, project], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _chdb_version() -> str:
    import chdb

    return chdb.__version__


def _broker_version() -> str:
    log = Path(f"/tmp/moneytrail-kafka-{kafka_port()}/server.log")
    found = [line for line in log.read_text(errors="replace").splitlines() if "Kafka version:" in line] if log.exists() else []
    return "Kafka " + found[-1].split("Kafka version:")[-1].split()[0] if found else "Kafka version not logged"


def _check_report(report: dict) -> None:
    assert {r["channel"]: r["visits"] for r in report["rows"]} == _expected_rows()
    assert report["total"]["visits"] == VISITORS and report["total"]["leads"] == 0


def test_embedded_mode_1000_pageviews_land_exactly_once(tmp_path: Path) -> None:
    port = free_port()
    env = base_env(tmp_path / "data", MONEYTRAIL_PORT=str(port))
    creds = _create_project(env)
    server = Proc(["serve"], env, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", server)
        _refusals_are_not_stored(base, creds["write_key"])
        _post_all(base, creds["write_key"], uuid.uuid4().hex[:8])
        report, waited = _wait_visits(base, creds["read_token"], VISITORS, timeout=30)
        _check_report(report)
        # the CLI, while the server owns the folder, asks the server
        cli = subprocess.run([sys.executable, "-m", "moneytrail", "report", "channels", "--format", "json"],
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)["total"]["visits"] == VISITORS
        show(f"embedded mode (chDB {_chdb_version()}): {N} pageviews -> {VISITORS} sessions visible in the report {waited:.2f}s after the last POST")
    finally:
        assert server.stop() == 0, server.output()[-3000:]
    assert _stored_counts(env, creds["project"]) == {"touches": VISITORS, "touch_ids": VISITORS, "raw": N, "dead": 0}


def _server_counts(warehouse: str, project: str) -> dict:
    from clickhouse.warehouse import ServerWarehouse

    wh = ServerWarehouse(warehouse)
    try:
        q = lambda sql: wh.rows(sql, {"p": project})[0]["c"]  # noqa: E731
        return {"touches": q("SELECT count() AS c FROM touches FINAL WHERE project = {p:String}"),
                "touch_ids": q("SELECT uniqExact(touch_id) AS c FROM touches WHERE project = {p:String}"),
                "raw": q("SELECT count() AS c FROM raw_events FINAL WHERE project = {p:String}"),
                "dead": q("SELECT count() AS c FROM dead_letters WHERE project = {p:String}")}
    finally:
        wh.close()


def test_distributed_mode_1000_pageviews_land_exactly_once(tmp_path: Path, kafka_bootstrap: str,
                                                           clickhouse_server: ClickhouseServer) -> None:
    """As a production install runs: the collector (`serve --no-sink`), the sink and the Faust worker
    as three processes, Apache Kafka between them, a ClickHouse server as the warehouse."""
    port, web = free_port(), free_port()
    run = uuid.uuid4().hex[:8]
    warehouse = clickhouse_server.new_database("thin")
    env = base_env(tmp_path / "data", MONEYTRAIL_PORT=str(port), MONEYTRAIL_BUS=f"kafka://{kafka_bootstrap}",
                   MONEYTRAIL_WAREHOUSE=warehouse,
                   MONEYTRAIL_TOPIC_PREFIX=f"test-{run}", MONEYTRAIL_SINK_GROUP=f"sink-{run}",
                   MONEYTRAIL_WORKER_ID=f"processors-{run}", MONEYTRAIL_WORKER_WEB_PORT=str(web),
                   MONEYTRAIL_PII_KEY="integration-test-pii-key-0123456789abcdef")
    creds = _create_project(env)
    server = Proc(["serve", "--no-sink"], env, tmp_path / "serve.log")
    sink = Proc(["sink"], {**env, "MONEYTRAIL_DATA_DIR": str(tmp_path / "sink")}, tmp_path / "sink.log")
    worker = Proc(["worker"], {**env, "MONEYTRAIL_DATA_DIR": str(tmp_path / "worker")}, tmp_path / "worker.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", server)
        _refusals_are_not_stored(base, creds["write_key"])
        _post_all(base, creds["write_key"], run)
        assert worker.p.poll() is None, worker.output()[-3000:]
        report, waited = _wait_visits(base, creds["read_token"], VISITORS, timeout=60)
        _check_report(report)
        log = worker.output()
        assert "moneytrail worker: Faust app" in log and "[^Worker]: Ready" in log, log[-3000:]
        show(f"distributed mode: Apache Kafka at {kafka_bootstrap} ({_broker_version()}), Faust worker pid {worker.p.pid} "
             f"consuming test-{run}.raw.v1, sink pid {sink.p.pid}, ClickHouse server {warehouse.rsplit('@', 1)[-1]}: "
             f"{N} pageviews -> {VISITORS} sessions visible in the report {waited:.2f}s after the last POST")
    finally:
        worker.stop()
        sink_code = sink.stop()
        server_code = server.stop()
    assert server_code == 0, server.output()[-3000:]
    assert sink_code == 0, sink.output()[-3000:]
    assert _server_counts(warehouse, creds["project"]) == {"touches": VISITORS, "touch_ids": VISITORS, "raw": N, "dead": 0}
