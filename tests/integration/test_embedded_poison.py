"""Embedded mode, real chDB: a row the warehouse refuses (one that passed the edge: put straight on
the sink, as a future bug or an older collector could) is dead-lettered with the warehouse's
reason, and the next 1 000 events reach the warehouse within a few seconds."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from moneytrail import root
from schemas import topics
from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def test_a_refused_row_does_not_hold_up_the_next_thousand_events(tmp_path):
    # in a process of its own: chDB hosts one folder per process, and this test's server has its own
    out = subprocess.run([sys.executable, "-m", "tests.integration.test_embedded_poison", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["count"] == 1000
    assert got["delay"] < 5, f"the next 1 000 events took {got['delay']:.2f}s"
    assert [d["reason"] for d in got["dead"]] == ["warehouse_refused"] and "Too many digits" in got["dead"][0]["detail"]
    assert got["ready"] == 200 and "moneytrail_sink_dead_lettered 1.0" in got["metrics"]


async def _scenario(tmp_path: Path) -> dict:
    settings = root.load_settings(data_dir=tmp_path / "data", sink_batch_seconds=0.2, rate_limit_ip_rps=0,
                                  rate_limit_key_eps=0)
    server = root.build_server(settings)
    project, creds = server.projects.create("Poison Shop")
    app = server.fastapi
    async with app.router.lifespan_context(app):
        poison = {"project": project.project_id, "conversion_id": "sale:order:poison", "kind": "sale",
                  "source": "track", "at": "2026-11-20T10:00:00+00:00", "value": "1" + "0" * 38, "currency": "KZT",
                  "anonymous_id": "p", "user_id": "", "deal_id": "", "stage": "", "stage_kind": "", "event_id": "e",
                  "tracking_number": "", "ids": {}, "subject": "anon:p"}
        await server.sink.put(topics.CONVERSIONS, [(b"", orjson.dumps(poison))])
        started = time.monotonic()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app), base_url="http://t",
                                     headers={"X-Write-Key": creds.write_key}) as c:
            for b in range(2):
                batch = [{"type": "page", "anonymousId": f"v{b}-{i}", "messageId": f"m{b}-{i}",
                          "context": {"page": {"url": "https://shop.kz/?utm_source=google&utm_medium=cpc"}}}
                         for i in range(500)]
                r = await c.post("/v1/batch", json={"batch": batch})
                assert r.status_code == 200, r.text
            count = 0
            while time.monotonic() - started < 30:
                count = server.warehouse.rows("SELECT count() AS c FROM raw_events WHERE project = {p:String}",
                                              {"p": project.project_id})[0]["c"]
                if count >= 1000:
                    break
                await asyncio.sleep(0.1)
            delay = time.monotonic() - started
            ready = await c.get("/readyz")
            metrics = (await c.get("/metrics")).text
        dead = server.warehouse.rows("SELECT reason, detail FROM dead_letters WHERE project = {p:String}",
                                     {"p": project.project_id})
    return {"count": count, "delay": delay, "dead": dead, "ready": ready.status_code,
            "metrics": "\n".join(line for line in metrics.splitlines() if line.startswith("moneytrail_sink"))}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_scenario(Path(sys.argv[1])))))

