"""Apache Superset, a real BI tool, reading the live aggregates from a real ClickHouse server (issue
13 item 6): deploy/superset/superset.sh installs Superset into .superset-venv/ (skipped when up to
date), provisions it (metadata database, admin, the bundle of deploy/superset/bundle/: a read-only
ClickHouse connection, the datasets, the "channels, revenue and ROI" dashboard) and starts it on
127.0.0.1. moneytrail runs as in production (collector `serve --no-sink`, Faust worker, sink, Apache
Kafka between them) on a fresh database of the ClickHouse test server. Chromium logs in and opens
the dashboard; a visit, a lead and a signed payment are posted to the collector; the dashboard must
show the sale within seconds with the live report API's numbers, in its table and in its chart."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from collector.vendors.signing import hmac_sha256
from stream_processors.attribution import MODELS
from tests.conftest import ROOT, ClickhouseServer, Proc, base_env, free_port, missing_part, show, wait_http

pytestmark = pytest.mark.integration
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCRIPT = ROOT / "deploy" / "superset" / "superset.sh"
BUNDLE = ROOT / "deploy" / "superset" / "bundle"
READER = "moneytrail_reader"  # deploy/local/clickhouse.sh's read-only user (its default name and password)
ADMIN_PASSWORD = "superset-admin-" + secrets.token_hex(4)
SECRET = "superset-payment-secret"
AMOUNT = Decimal("187500.50")
CHANNEL = "Paid Search"  # google / cpc under the built-in channel rules


def _reader_works(server: ClickhouseServer) -> bool:
    """The server knows the read-only user and refuses it a write."""
    def q(sql: str) -> httpx.Response:
        return httpx.post(f"http://127.0.0.1:{server.port}/", content=sql, auth=(READER, READER), timeout=10)
    try:
        return q("SELECT 1").status_code == 200 and "READONLY" in q("CREATE DATABASE ro_probe").text
    except httpx.HTTPError:
        return False


def _superset(command: str, env: dict[str, str], timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    out = subprocess.run(["bash", str(SCRIPT), command], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout)
    return out, time.monotonic() - t0


def _cli(env: dict, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "moneytrail", *args], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _number(text: str) -> Decimal:
    return Decimal(re.sub(r"[^\d.\-]", "", text))


def _table_rows(page) -> dict[str, dict[str, str]]:  # noqa: ANN001
    """The Channels table as the browser shows it: channel -> {column: the cell's text}. (Superset
    draws the header, the body and the summary row as three tables; a body cell names its column.)"""
    rows = page.evaluate("""() => [...document.querySelectorAll('tbody tr')].map(tr => Object.fromEntries(
        [...tr.querySelectorAll('td[aria-labelledby^="header-"]')].map(
            td => [td.getAttribute('aria-labelledby').slice('header-'.length), td.innerText.trim()])))""")
    return {r["channel"]: r for r in rows if "channel" in r and "revenue" in r}


def test_bundle_models_are_the_attribution_models() -> None:
    """live_channels repeats each visit row once per model: the list must be the processors' own."""
    text = (BUNDLE / "datasets" / "moneytrail_clickhouse" / "live_channels.yaml").read_text()
    listed = re.search(r"arrayJoin\((\[[^\]]*\])\)", text)
    assert listed and tuple(json.loads(listed.group(1).replace("'", '"'))) == MODELS


def test_a_sale_appears_in_the_superset_dashboard_with_the_api_numbers(
        tmp_path: Path, kafka_bootstrap: str, clickhouse_server: ClickhouseServer) -> None:
    if not CHROMIUM.exists():
        missing_part("Debian's chromium is not installed (apt-get install chromium)")
    started = time.monotonic()
    env0 = {k: v for k, v in os.environ.items() if not k.startswith(("SUPERSET_", "MONEYTRAIL_"))}

    # 1. Superset's own environment (cached: a no-op when .superset-venv matches requirements.txt)
    installed, install_s = _superset("install", env0, timeout=1500)
    if installed.returncode != 0:
        missing_part(f"could not install Apache Superset: {installed.stdout[-2000:]} {installed.stderr[-3000:]}")

    # 2. the ClickHouse server with its read-only user (a server started by an older clickhouse.sh
    #    has none: then one of our own)
    own_server = None
    server = clickhouse_server
    if not _reader_works(server):
        own_server = server = ClickhouseServer(free_port(), tmp_path / "clickhouse")
        server.start(clean=True)
    warehouse = server.new_database("superset")
    database = urlsplit(warehouse).path.lstrip("/")

    port, web, superset_port = free_port(), free_port(), free_port()
    run = uuid.uuid4().hex[:8]
    env = base_env(tmp_path / "data", MONEYTRAIL_PORT=str(port), MONEYTRAIL_BUS=f"kafka://{kafka_bootstrap}",
                   MONEYTRAIL_WAREHOUSE=warehouse, MONEYTRAIL_TOPIC_PREFIX=f"superset-{run}",
                   MONEYTRAIL_SINK_GROUP=f"sink-{run}", MONEYTRAIL_WORKER_ID=f"processors-{run}",
                   MONEYTRAIL_WORKER_WEB_PORT=str(web), MONEYTRAIL_PII_KEY="integration-test-pii-key-0123456789abcdef")
    creds = json.loads(_cli(env, "projects", "create", "Superset Shop", "--json"))  # migrates the database
    _cli(env, "projects", "configure", "Superset Shop", "payment", f"secret={SECRET}")
    superset_env = {**env0, "SUPERSET_PORT": str(superset_port), "SUPERSET_DATA_DIR": str(tmp_path / "superset"),
                    "SUPERSET_SECRET_KEY": secrets.token_hex(32), "SUPERSET_ADMIN_PASSWORD": ADMIN_PASSWORD,
                    "SUPERSET_CLICKHOUSE_PORT": str(server.port), "SUPERSET_CLICKHOUSE_DATABASE": database}
    collector = Proc(["serve", "--no-sink"], env, tmp_path / "serve.log")
    sink = Proc(["sink"], {**env, "MONEYTRAIL_DATA_DIR": str(tmp_path / "sink")}, tmp_path / "sink.log")
    worker = Proc(["worker"], {**env, "MONEYTRAIL_DATA_DIR": str(tmp_path / "worker")}, tmp_path / "worker.log")
    base = f"http://127.0.0.1:{port}"
    superset = f"http://127.0.0.1:{superset_port}"
    auth = {"Authorization": f"Bearer {creds['read_token']}"}
    shot = tmp_path / "superset-dashboard.png"
    start_s = 0.0
    try:
        # 3. Superset: provisioned from deploy/superset/, then serving (while moneytrail starts up)
        out, start_s = _superset("start", superset_env, timeout=600)
        assert out.returncode == 0, f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        wait_http(f"{base}/readyz", collector)

        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw, httpx.Client(base_url=base, timeout=30) as client:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            chart_data: list[dict] = []

            def on_response(resp) -> None:  # noqa: ANN001  what the charts were given to draw
                if "/api/v1/chart/data" in resp.url and resp.status == 200:
                    try:
                        chart_data.append({**resp.json(), "at": round(time.monotonic() - started, 1)})
                    except Exception:  # noqa: BLE001  a response the page navigated away from
                        pass

            page.on("response", on_response)
            page.goto(f"{superset}/login/")
            page.fill("#username", "admin")
            page.fill("#password", ADMIN_PASSWORD)
            page.keyboard.press("Enter")
            page.wait_for_url("**/superset/welcome/**", timeout=60_000)
            page.goto(f"{superset}/superset/dashboard/moneytrail-channels/")
            page.get_by_text("Revenue per channel").first.wait_for(timeout=60_000)

            # 4. a visit from a Google Ads click, its lead and its signed payment, to the collector
            now = datetime.now(timezone.utc)
            anon = f"visitor-{run}"
            events = [
                {"type": "page", "messageId": f"pv-{run}", "anonymousId": anon, "timestamp": now.isoformat(),
                 "context": {"page": {"url": "https://shop.kz/?utm_source=google&utm_medium=cpc&utm_campaign=sofas",
                                      "referrer": "https://www.google.com/"}}},
                {"type": "track", "event": "Form Submitted", "messageId": f"lead-{run}", "anonymousId": anon,
                 "timestamp": (now + timedelta(seconds=30)).isoformat(),
                 "properties": {"form_id": "callback", "phone": "+77010000001"}},
            ]
            r = client.post("/v1/batch", json={"batch": events}, auth=(creds["write_key"], ""))
            assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
            body = orjson.dumps({"payments": [{"payment_id": f"pay-{run}", "amount": str(AMOUNT), "currency": "KZT",
                                               "paid_at": (now + timedelta(seconds=60)).isoformat(),
                                               "customer": {"anonymous_id": anon}}]})
            r = client.post(f"/webhooks/payment/{creds['webhook_secret']}", content=body,
                            headers={"X-Moneytrail-Signature": "sha256=" + hmac_sha256(SECRET, body).hex()})
            assert r.status_code == 200, r.text
            posted = time.monotonic()

            # 5. the API's live report has it ...
            day = now.date()
            params = {"from": (day - timedelta(days=1)).isoformat(), "to": (day + timedelta(days=1)).isoformat(),
                      "model": "last_non_direct", "currency": "KZT"}
            live: dict = {}
            while time.monotonic() - posted < 60:
                live = client.get("/api/reports/live", headers=auth, params=params).json()
                if Decimal(str(live.get("total", {}).get("revenue") or 0)) == AMOUNT:
                    break
                time.sleep(0.25)
            else:
                raise AssertionError(f"the sale is not in /api/reports/live after 60 s: {live}\n"
                                     f"{worker.output()[-2000:]}\n{sink.output()[-2000:]}")
            api_s = time.monotonic() - posted
            (api_row,) = [row for row in live["rows"] if Decimal(str(row["revenue"])) != 0]
            assert api_row["channel"] == CHANNEL, live
            assert (api_row["visits"], Decimal(str(api_row["leads"])), Decimal(str(api_row["sales"]))) == (1, 1, 1), live

            # ... and so, within seconds, does the dashboard (its own 10 s auto-refresh; a reload
            # every 15 s in case a refresh is missed)
            rows: dict = {}
            last_reload = time.monotonic()
            while time.monotonic() - posted < 90:
                rows = _table_rows(page)
                if CHANNEL in rows and _number(rows[CHANNEL].get("revenue") or "0") == AMOUNT:
                    break
                if time.monotonic() - last_reload > 15:
                    page.reload()
                    last_reload = time.monotonic()
                page.wait_for_timeout(250)
            else:
                page.screenshot(path=str(shot), full_page=True)
                raise AssertionError(f"the dashboard does not show the sale 90 s after it was posted: {rows} "
                                     f"(screenshot {shot})")
            shown_s = time.monotonic() - posted

            def bar_data() -> list[tuple[str, Decimal]] | None:
                seen = [res for payload in chart_data for res in payload.get("result", [])
                        if set(res.get("colnames") or []) == {"channel", "revenue"}]
                return [(d["channel"], Decimal(str(d["revenue"]))) for d in seen[-1]["data"]] if seen else None

            while bar_data() != [(CHANNEL, AMOUNT)] and time.monotonic() - posted < 120:  # drawn with the table
                page.wait_for_timeout(250)
            chart_s = time.monotonic() - posted
            page.wait_for_timeout(1500)  # the chart's drawing animation ends
            page.screenshot(path=str(shot), full_page=True)
            browser.close()

        # 6. the table's numbers are the API's ...
        cells = rows[CHANNEL]
        assert int(_number(cells["visits"])) == api_row["visits"], (cells, api_row)
        assert _number(cells["leads"]) == Decimal(str(api_row["leads"])), (cells, api_row)
        assert _number(cells["sales"]) == Decimal(str(api_row["sales"])), (cells, api_row)
        assert _number(cells["revenue"]) == Decimal(str(api_row["revenue"])) == AMOUNT, (cells, api_row)
        assert cells["revenue"] == f"{AMOUNT:,.2f}", cells  # as a person reads it: 187,500.50
        assert list(rows) == [CHANNEL], rows
        # ... and so is what the revenue chart was given to draw (ECharts paints on a canvas)
        timeline = [(p["at"], r.get("colnames"), r.get("data")) for p in chart_data for r in p.get("result", [])]
        assert bar_data() == [(CHANNEL, AMOUNT)], timeline
    finally:
        _superset("stop", superset_env, timeout=60)
        worker.stop()
        sink.stop()
        collector.stop()
        if own_server is not None:
            own_server.stop()
    total_s = time.monotonic() - started
    show(f"superset: Apache Superset 6.1.0 ({'installed' if 'installed into' in installed.stdout else 'cached'} env: "
         f"{install_s:.1f}s; provision + start {start_s:.1f}s) on ClickHouse {server.port}/{database} as {READER}: "
         f"a sale posted to the collector was in /api/reports/live after {api_s:.2f}s and in the Superset "
         f"dashboard's table (Chromium) after {shown_s:.2f}s and in its chart after {chart_s:.2f}s; whole test {total_s:.0f}s; screenshot {shot}")
