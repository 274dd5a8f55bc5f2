"""`moneytrail demo` as a newcomer runs it: the business is loaded through the public interfaces,
the dashboard link it prints opens in Chromium, and the table's numbers equal the report API's."""

from __future__ import annotations

import json
import re
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, Proc, base_env, free_port, missing_part, show
from tests.integration.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS, _assert_table_is_the_api

pytestmark = pytest.mark.integration


def test_the_demo_serves_a_dashboard_that_matches_the_api(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        missing_part("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    port = free_port()
    demo = Proc(["demo", "--data-dir", str(tmp_path / "demo"), "--port", str(port), "--scale", "0.15", "--days", "30"],
                base_env(tmp_path / "unused"), tmp_path / "demo.log")
    try:
        deadline, link = time.monotonic() + 180, None
        while time.monotonic() < deadline and link is None:
            assert demo.p.poll() is None, demo.output()[-3000:]
            found = re.search(r"dashboard:\s+(\S+#token=(\S+))", demo.output())
            link, token = (found.group(1), found.group(2)) if found else (None, None)
            time.sleep(0.3)
        assert link, demo.output()[-3000:]
        loaded = re.search(r"loaded (\d+) events in (\d+) requests \(([\d.]+) s\)", demo.output())
        assert loaded and int(loaded.group(1)) > 1000, demo.output()[-2000:]
        to = date.today() - timedelta(days=1)
        since = to - timedelta(days=40)
        params = {"from": since.isoformat(), "to": to.isoformat(), "model": "last_non_direct", "currency": "KZT",
                  "lookback_days": "90"}
        api = httpx.get(f"http://127.0.0.1:{port}/api/reports/channels", params=params,
                        headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
        truth = json.loads((tmp_path / "demo" / "demo-ground-truth.json").read_text())
        assert api["total"]["leads"] > 0 and api["total"]["sales"] > 0 and api["total"]["spend"] != "0.00"
        quality = httpx.get(f"http://127.0.0.1:{port}/api/reports/quality", params=params,
                            headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
        attributed = next(r for r in quality["rows"] if r["metric"] == "revenue_attributed")
        lost = next((Decimal(r["revenue"]) for r in api["rows"] if r["channel"] == "(unattributed)"), Decimal(0))
        assert Decimal(attributed["value"]) == Decimal(api["total"]["revenue"]) - lost  # the channel report's own split
        assert Decimal(api["total"]["revenue"]) == Decimal(truth["totals"]["revenue"])
        # identity stitching credits more of it than the cookie-only baseline the ground truth records
        assert attributed["share"] > 1 - truth["totals"]["unattributed_revenue_share"]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000}, locale="ru-RU")
            page.goto(link)
            page.wait_for_selector("#app:not([hidden])")
            page.fill("#from", params["from"])
            page.fill("#to", params["to"])
            page.wait_for_function(
                "([f, t]) => { const t_ = document.getElementById('channels');"
                " return t_.dataset.from === f && t_.dataset.to === t"
                " && !document.getElementById('app').hasAttribute('aria-busy'); }",
                arg=[params["from"], params["to"]], timeout=20_000)
            checked = _assert_table_is_the_api(page, api)
            artifacts = ROOT / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            page.screenshot(path=str(artifacts / "demo-dashboard.png"), full_page=True)
            browser.close()
    finally:
        assert demo.stop() == 0, demo.output()[-3000:]
    show(f"demo: quality report credits {attributed['share'] * 100:.1f}% of revenue to a visit (cookie-only baseline "
         f"{(1 - truth['totals']['unattributed_revenue_share']) * 100:.1f}%); "
         f"{loaded.group(1)} events in {loaded.group(2)} requests loaded in {loaded.group(3)} s; dashboard "
         f"shows {checked} cells equal to the API; ground truth has {len(truth)} sections; "
         f"screenshot test-artifacts/demo-dashboard.png")
