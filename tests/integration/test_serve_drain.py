"""SIGTERM drains before the listener closes: a real `moneytrail serve` answers /readyz 503 for
MONEYTRAIL_DRAIN_SECONDS while it still takes events, then shuts down gracefully and exits 0. Before
this, the listener closed first, so a load balancer never saw the 503 the README promises."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT, Proc, base_env, free_port, wait_http

DRAIN_S = 3.0


def test_sigterm_turns_readyz_503_while_ingest_still_answers_then_exits_0(tmp_path: Path) -> None:
    port = free_port()
    env = base_env(tmp_path / "data", MONEYTRAIL_PORT=str(port), MONEYTRAIL_DRAIN_SECONDS=str(DRAIN_S))
    made = subprocess.run([sys.executable, "-m", "moneytrail", "projects", "create", "Drain Shop", "--json"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["write_key"]
    server = Proc(["serve"], env, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    page = {"type": "page", "anonymousId": "drain-1", "context": {"page": {"url": "https://shop.kz/"}}}
    try:
        wait_http(f"{base}/readyz", server)
        with httpx.Client(base_url=base, timeout=5) as client:
            assert client.post("/collect", json=page, headers={"X-Write-Key": key}).status_code == 200
            server.p.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            seen = []
            while time.monotonic() - signalled < DRAIN_S - 0.8:  # inside the window, with a margin
                ready = client.get("/readyz")
                ingest = client.post("/collect", json=page, headers={"X-Write-Key": key})
                seen.append((ready.status_code, ready.json(), ingest.status_code))
                time.sleep(0.2)
        assert len(seen) >= 3, seen
        assert all(s == (503, {"ready": False, "draining": True}, 200) for s in seen), seen
        server.p.wait(DRAIN_S + 30)
        stopped = time.monotonic() - signalled
        assert server.p.returncode == 0, server.output()[-3000:]
        assert stopped >= DRAIN_S - 0.2, stopped  # it served the whole drain period
    finally:
        server.stop()
