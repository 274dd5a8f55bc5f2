"""Kafka stopped for 30 s while 10 000 events are sent: every event that got a 2xx is in the
warehouse exactly once after Kafka returns; events that got 503 are not stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, Proc, base_env, free_port, missing_part, query_folder, show, wait_http

pytestmark = pytest.mark.integration
EVENTS, BATCH = 10_000, 20
KAFKA = ROOT / "deploy" / "local" / "kafka.sh"


def _kafka(cmd: str, port: int, controller: int, data: Path, clean: bool = False) -> None:
    env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(controller), "KAFKA_DATA_DIR": str(data)}
    if clean:
        env["KAFKA_CLEAN"] = "1"
    out = subprocess.run(["bash", str(KAFKA), cmd], env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        missing_part(f"kafka.sh {cmd} failed: {out.stdout[-1500:]} {out.stderr[-1500:]}")


def _metric(base: str, name: str) -> float:
    for line in httpx.get(f"{base}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return -1.0


def test_events_acknowledged_during_a_kafka_outage_land_exactly_once(tmp_path: Path) -> None:
    kport, kcontrol = free_port(), free_port()
    kdata = tmp_path / "kafka"
    _kafka("start", kport, kcontrol, kdata, clean=True)
    port, web, run = free_port(), free_port(), uuid.uuid4().hex[:8]
    env = base_env(tmp_path / "data", MONEYTRAIL_PORT=str(port), MONEYTRAIL_BUS=f"kafka://127.0.0.1:{kport}",
                   MONEYTRAIL_TOPIC_PREFIX=f"outage-{run}", MONEYTRAIL_SINK_GROUP=f"sink-{run}",
                   MONEYTRAIL_WORKER_ID=f"processors-{run}", MONEYTRAIL_WORKER_WEB_PORT=str(web),
                   MONEYTRAIL_PII_KEY="outage-test-pii-key-0123456789abcdef", MONEYTRAIL_KAFKA_ACK_TIMEOUT_S="1",
                   MONEYTRAIL_RATE_LIMIT_IP_RPS="0", MONEYTRAIL_RATE_LIMIT_KEY_EPS="0")
    creds = json.loads(subprocess.run([sys.executable, "-m", "moneytrail", "projects", "create", "Outage", "--json"],
                                      env=env, cwd=ROOT, capture_output=True, text=True, timeout=120).stdout)
    server = Proc(["serve", "--sink"], env, tmp_path / "serve.log")
    worker = Proc(["worker"], {**env, "MONEYTRAIL_DATA_DIR": str(tmp_path / "worker")}, tmp_path / "worker.log")
    base = f"http://127.0.0.1:{port}"
    accepted: list[str] = []
    refused: list[str] = []
    lock = threading.Lock()

    def send(first_batch: int, batches: int) -> None:
        with httpx.Client(timeout=30) as client:
            for b in range(first_batch, first_batch + batches):
                ids = [f"{run}-{b}-{j}" for j in range(BATCH)]
                body = {"batch": [{"type": "page", "messageId": i, "anonymousId": f"v-{i}",
                                   "context": {"page": {"url": "https://mebel.kz/?utm_source=google&utm_medium=cpc"}}}
                                  for i in ids]}
                status = client.post(f"{base}/v1/batch", json=body, auth=(creds["write_key"], "")).status_code
                with lock:
                    (accepted if status == 200 else refused).extend(ids) if status in (200, 503) else None
                assert status in (200, 503), status
                time.sleep(0.05)

    try:
        wait_http(f"{base}/readyz", server)
        batches = EVENTS // BATCH
        senders = [threading.Thread(target=send, args=(t * batches // 4, batches // 4)) for t in range(4)]
        for t in senders:
            t.start()
        time.sleep(3)
        _kafka("stop", kport, kcontrol, kdata)
        stopped_at = time.monotonic()
        time.sleep(30)
        spooled_during = _metric(base, "moneytrail_spooled")
        _kafka("start", kport, kcontrol, kdata)
        outage = time.monotonic() - stopped_at
        for t in senders:
            t.join(300)
        assert len(accepted) + len(refused) == EVENTS
        deadline = time.monotonic() + 180
        visits = -1
        while time.monotonic() < deadline:
            pending = _metric(base, "moneytrail_spool_pending")
            report = httpx.get(f"{base}/api/reports/channels", headers={"Authorization": f"Bearer {creds['read_token']}"},
                               timeout=30).json()
            visits = report["total"]["visits"]
            if pending == 0 and visits == len(accepted):
                break
            time.sleep(1)
        assert visits == len(accepted), f"{visits} visits for {len(accepted)} acknowledged events"
    finally:
        worker.stop()
        server_code = server.stop()
        _kafka("stop", kport, kcontrol, kdata)
    assert server_code == 0, server.output()[-3000:]
    stored = query_folder(env, "SELECT count() AS n, uniqExact(event_id) AS ids FROM raw_events FINAL WHERE project = {p:String}",
                          {"p": creds["project"]})[0]
    assert stored == {"n": len(accepted), "ids": len(accepted)}
    if refused:
        leaked = query_folder(env, "SELECT count() AS n FROM raw_events WHERE event_id IN {ids:Array(String)}",
                              {"ids": refused[:1000]})[0]["n"]
        assert leaked == 0
    assert spooled_during > 0, "the outage never reached the spool"
    show(f"Kafka outage: broker stopped {outage:.0f}s while {EVENTS} events were sent; {len(accepted)} got 2xx "
         f"({spooled_during:.0f} of them via the local spool), {len(refused)} got 503; warehouse holds exactly "
         f"{stored['n']} (no loss, no duplicates)")
