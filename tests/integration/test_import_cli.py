"""`moneytrail import-spend` / `import-rates` against a running server: rows land in the report,
a bad row is refused with its row number and nothing of that file is stored, a re-import of a day
and source replaces it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, Proc, base_env, free_port, wait_http
from tests.integration.test_thin_path import _create_project

pytestmark = pytest.mark.integration


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "moneytrail", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def _spend(base: str, token: str) -> dict:
    report = httpx.get(f"{base}/api/reports/channels?from=2026-10-01&to=2026-10-31&currency=KZT",
                       headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    return {r["channel"]: r["spend"] for r in report["rows"] if r["spend"] != "0.00"}


def test_import_spend_and_rates_from_files(tmp_path: Path) -> None:
    port = free_port()
    env = base_env(tmp_path / "data", MONEYTRAIL_PORT=str(port))
    creds = _create_project(env)
    server = Proc(["serve"], env, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    header = "date,source,medium,campaign,ad,keyword,cost,currency,clicks,impressions\n"
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "2026-10-01,google,cpc,sofas,,,1000,KZT,10,100\n2026-10-02,google,cpc,sofas,,,ten,KZT,1,1\n")
    good = tmp_path / "spend.csv"
    good.write_text(header + "2026-10-01,google,cpc,sofas,,,150000.50,KZT,100,5000\n"
                             "2026-10-01,yandex,cpc,beds,,,100,USD,10,800\n")
    again = tmp_path / "again.json"
    again.write_text(json.dumps([{"date": "2026-10-01", "source": "google", "medium": "cpc", "campaign": "sofas",
                                  "cost": "120000", "currency": "KZT"}]))
    rates = tmp_path / "rates.csv"
    rates.write_text("date,currency,base,rate\n2026-10-01,USD,KZT,480.25\n")
    try:
        wait_http(f"{base}/readyz", server)
        key = ["--write-key", creds["write_key"]]
        refused = _cli(env, "import-spend", str(bad), *key)
        assert refused.returncode == 1 and "row 3" in refused.stderr, refused.stderr
        assert _cli(env, "import-spend", str(tmp_path / "none.csv"), *key).returncode == 2
        wrong_key = _cli(env, "import-spend", str(good), "--write-key", "wk_nope")
        assert wrong_key.returncode == 1 and "401" in wrong_key.stderr
        done = _cli(env, "import-spend", str(good), *key)
        assert done.returncode == 0 and "imported 2 spend rows" in done.stdout, done.stderr
        assert _cli(env, "import-rates", str(rates), *key).returncode == 0
        deadline = time.monotonic() + 20
        while _spend(base, creds["read_token"]) != {"Paid Search": "198025.50"} and time.monotonic() < deadline:
            time.sleep(0.3)  # 150 000.50 KZT + 100 USD x 480.25
        assert _spend(base, creds["read_token"]) == {"Paid Search": "198025.50"}
        assert _cli(env, "import-spend", str(again), *key).returncode == 0  # google's day replaced
        deadline = time.monotonic() + 20
        while _spend(base, creds["read_token"]) != {"Paid Search": "168025.00"} and time.monotonic() < deadline:
            time.sleep(0.3)
        assert _spend(base, creds["read_token"]) == {"Paid Search": "168025.00"}
    finally:
        assert server.stop() == 0, server.output()[-3000:]
