"""The README's two ways to run give the same numbers: the same events, posted through the public
interfaces, once to the embedded server (one process, chDB) and once to the distributed install
as production runs it (`serve --no-sink`, `sink` and `worker` as separate processes, Apache Kafka,
a ClickHouse server), and every report the API serves answers the same in both, for every rule
model. Events: the seed business (1 450 visits, 725 form leads, 90 signed payments, a spend CSV)
and a cross-device buyer (an Instagram ad on the phone, a direct visit on the laptop, signed in on
both, then a payment naming only the user id), so identity stitching is part of what must agree."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from clickhouse.projects import ProjectStore
from tests.conftest import ROOT, ClickhouseServer, Proc, base_env, free_port, show, wait_http
from tests.integration.test_seed_channel_report import RULES, SECRET, post_seed

pytestmark = pytest.mark.integration
RANGE = {"from": "2026-10-01", "to": "2026-11-30"}
MODELS = ("first_touch", "last_touch", "last_non_direct", "linear", "time_decay", "position_based")
# what each mode must agree on: every report the API serves, the credited ones under every model
QUERIES: list[tuple[str, dict[str, str]]] = (
    [("channels", {"model": m}) for m in MODELS]
    + [("channels", {"model": m, "recompute": "true"}) for m in ("last_touch", "linear")]
    + [(name, {}) for name in ("campaigns", "models", "cohorts", "ltv", "funnel", "paths", "datadriven", "quality",
                               "reconciliation", "identity", "calltracking")]
    + [("channels", {"group_by": "source", "model": "linear"})]
)
SALES = 90 + 1  # the seed's payments and the cross-device buyer's


def _cross_device_buyer(client: httpx.Client, creds: dict) -> None:
    ua_phone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1"
    ua_laptop = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Version/17.4 Safari/605.1.15"
    batch = [
        {"type": "page", "messageId": "xd-1", "anonymousId": "xd-phone", "timestamp": "2026-10-20T09:00:00Z",
         "context": {"userAgent": ua_phone,
                     "page": {"url": "https://mebel.kz/?utm_source=ig&utm_medium=paid_social&utm_campaign=reels"}}},
        {"type": "identify", "messageId": "xd-2", "anonymousId": "xd-phone", "userId": "customer-42",
         "timestamp": "2026-10-20T09:05:00Z", "context": {"userAgent": ua_phone}},
        {"type": "page", "messageId": "xd-3", "anonymousId": "xd-laptop", "timestamp": "2026-10-22T20:00:00Z",
         "context": {"userAgent": ua_laptop, "page": {"url": "https://mebel.kz/cart", "referrer": ""}}},
        {"type": "identify", "messageId": "xd-4", "anonymousId": "xd-laptop", "userId": "customer-42",
         "timestamp": "2026-10-22T20:01:00Z", "context": {"userAgent": ua_laptop}},
    ]
    r = client.post("/v1/batch", json={"batch": batch}, auth=(creds["write_key"], ""))
    assert r.status_code == 200, r.text
    from orjson import dumps

    from collector.vendors.signing import hmac_sha256

    body = dumps({"payments": [{"payment_id": "pay-xd", "amount": "350000.00", "currency": "KZT",
                                "paid_at": "2026-10-23T10:00:00Z", "customer": {"user_id": "customer-42"}}]})
    r = client.post(f"/webhooks/payment/{creds['webhook_secret']}", content=body,
                    headers={"X-Moneytrail-Signature": "sha256=" + hmac_sha256(SECRET, body).hex()})
    assert r.status_code == 200, r.text


def _cli(env: dict, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "moneytrail", *args], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    """A report without what may differ between two installs: when the live credits were written,
    and the identity map's version counters (they count the graph's writes, which depend on how the
    events were batched; who belongs to which person must not)."""
    out = dict(report)
    if isinstance(out.get("attribution"), dict):
        out["attribution"] = {k: v for k, v in out["attribution"].items() if k != "credited_at"}
    if out.get("report") == "identity":
        out["rows"] = [{k: v for k, v in r.items() if k != "latest_version"} for r in out["rows"]]
    return out


def _snapshot(client: httpx.Client, token: str) -> dict[str, Any]:
    got = {}
    for name, params in QUERIES:
        r = client.get(f"/api/reports/{name}", params={**RANGE, **params}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, (name, params, r.text)
        got[f"{name} {json.dumps(params, sort_keys=True)}"] = _comparable(r.json())
    return got


def _settled(client: httpx.Client, token: str, timeout: float) -> dict[str, Any]:
    """Every report, once everything posted has been processed: every sale counted, the live
    credits covering the range (the channels report reads them), and two snapshots in a row equal."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        head = client.get("/api/reports/channels", params=RANGE, headers={"Authorization": f"Bearer {token}"}).json()
        ready = (head.get("total", {}).get("sales") == SALES and head["total"].get("spend") == "2000000.00"
                 and head.get("attribution", {}).get("computed") == "live credits")
        if ready:
            now = _snapshot(client, token)
            if now == last:
                return now
            last = now
        time.sleep(1)
    raise AssertionError(f"reports did not settle in {timeout}s; channels: {head}")


def _load_and_read(base: str, env: dict, creds: dict, server: Proc, timeout: float) -> dict[str, Any]:
    wait_http(f"{base}/readyz", server)
    _cli(env, "projects", "configure", "Mebel Almaty", "payment", f"secret={SECRET}")
    if "MONEYTRAIL_WAREHOUSE" in env:  # the CLI wrote to the server; a collector sees it within 5 s
        time.sleep(ProjectStore(None).max_age_s + 0.5)  # type: ignore[arg-type]
    with httpx.Client(base_url=base, timeout=30) as client:
        post_seed(client, creds)
        _cross_device_buyer(client, creds)
        return _settled(client, creds["read_token"], timeout)


def test_every_report_is_the_same_embedded_and_distributed(tmp_path: Path, kafka_bootstrap: str,
                                                           clickhouse_server: ClickhouseServer) -> None:
    common = {"MONEYTRAIL_CHANNEL_RULES": str(RULES), "MONEYTRAIL_RATE_LIMIT_IP_RPS": "0",
              "MONEYTRAIL_RATE_LIMIT_KEY_EPS": "0", "MONEYTRAIL_PII_KEY": "modes-agree-pii-key-0123456789abcdef"}
    # embedded: one process
    port = free_port()
    env = base_env(tmp_path / "embedded", MONEYTRAIL_PORT=str(port), **common)
    creds = json.loads(_cli(env, "projects", "create", "Mebel Almaty", "--json"))
    server = Proc(["serve"], env, tmp_path / "embedded.log")
    started = time.monotonic()
    try:
        embedded = _load_and_read(f"http://127.0.0.1:{port}", env, creds, server, timeout=90)
    finally:
        assert server.stop() == 0, server.output()[-3000:]
    embedded_s = time.monotonic() - started

    # distributed: collector + reports, sink and worker as separate processes, Kafka, a ClickHouse server
    port, web, run = free_port(), free_port(), uuid.uuid4().hex[:8]
    warehouse = clickhouse_server.new_database("modes")
    env = base_env(tmp_path / "collector", MONEYTRAIL_PORT=str(port), MONEYTRAIL_BUS=f"kafka://{kafka_bootstrap}",
                   MONEYTRAIL_WAREHOUSE=warehouse, MONEYTRAIL_TOPIC_PREFIX=f"modes-{run}",
                   MONEYTRAIL_SINK_GROUP=f"sink-{run}", MONEYTRAIL_WORKER_ID=f"processors-{run}",
                   MONEYTRAIL_WORKER_WEB_PORT=str(web), **common)
    creds = json.loads(_cli(env, "projects", "create", "Mebel Almaty", "--json"))
    procs = [Proc(["serve", "--no-sink"], env, tmp_path / "serve.log"),
             Proc(["sink"], {**env, "MONEYTRAIL_DATA_DIR": str(tmp_path / "sink")}, tmp_path / "sink.log"),
             Proc(["worker"], {**env, "MONEYTRAIL_DATA_DIR": str(tmp_path / "worker")}, tmp_path / "worker.log")]
    started = time.monotonic()
    try:
        distributed = _load_and_read(f"http://127.0.0.1:{port}", env, creds, procs[0], timeout=180)
        for p in procs[1:]:
            assert p.p.poll() is None, p.output()[-3000:]
    finally:
        codes = [p.stop() for p in reversed(procs)]
    distributed_s = time.monotonic() - started
    assert codes[-1] == 0, procs[0].output()[-3000:]

    assert distributed.keys() == embedded.keys()
    differ = [k for k in embedded if embedded[k] != distributed[k]]
    assert not differ, {k: (embedded[k], distributed[k]) for k in differ[:2]}
    # and the numbers are the business's, not merely equal: the seed's totals plus the stitched buyer
    channels = embedded['channels {"model": "last_non_direct"}']
    assert channels["total"]["sales"] == SALES and channels["total"]["revenue"] == "14200000.00"
    paid_social = {r["channel"]: r for r in channels["rows"]}["Instagram"]
    assert paid_social["sales"] == 16 + 1  # the laptop's direct visit does not take the sale from the ad
    show(f"embedded (chDB) and distributed (serve --no-sink + sink + worker, Kafka, ClickHouse server "
         f"{warehouse.rsplit('@', 1)[-1]}): {len(QUERIES)} report queries identical; loaded and settled in "
         f"{embedded_s:.0f} s and {distributed_s:.0f} s")
