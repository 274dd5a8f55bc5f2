"""The demo business end to end: `moneytrail serve` (embedded) on a free port, a project created
and configured through the CLI, the demo loaded through the public HTTP interfaces only (Segment
batches, signed webhooks, spend CSV/JSON, a live call-tracking lease), then the channel report
equals the ground truth: totals exactly (revenue = payments + refunds, exact decimals) and every
channel row as the server is expected to credit it today (by the visitor id it can see). Then the
same plan is loaded again: every id is derived from the seed, so nothing may change."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from moneytrail import demo
from tests.conftest import ROOT, Proc, base_env, free_port, show, wait_http

pytestmark = pytest.mark.integration


def _cli(env: dict, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "moneytrail", *args], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _numbers(row: dict) -> tuple:
    """(visits, leads, sales, revenue, spend) of a report row or a ground-truth row."""
    return (row.get("visits", 0), row.get("leads", 0), row.get("sales", 0), Decimal(row.get("revenue") or 0),
            Decimal(row.get("spend") or 0))


class Loaded:
    def __init__(self, base: str, creds: dict, plan: demo.DemoPlan, result: demo.DemoResult, truth: dict,
                 ticks: list[tuple[int, int]], load_s: float, visible_s: float) -> None:
        self.base, self.creds, self.plan, self.result, self.truth = base, creds, plan, result, truth
        self.ticks, self.load_s, self.visible_s = ticks, load_s, visible_s
        self.reports: dict[str, dict] = {}

    def report(self, model: str = "last_non_direct") -> dict:
        r = httpx.get(f"{self.base}/api/reports/channels", timeout=30,
                      params={"from": self.truth["from"], "to": self.truth["to"], "model": model},
                      headers={"Authorization": f"Bearer {self.creds['read_token']}"})
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    tmp = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = base_env(tmp / "data", MONEYTRAIL_PORT=str(port))  # default rate limits: load() must cope
    server = Proc(["serve"], env, tmp / "serve.log")
    base = f"http://127.0.0.1:{port}"
    plan = demo.generate(seed=42, days=30, scale=0.2)  # today: the period ends yesterday, live calls today
    assert plan.live, "a live call exercises the server's lease join"
    try:
        wait_http(f"{base}/readyz", server)
        creds = json.loads(_cli(env, "projects", "create", demo.BUSINESS, "--origin", demo.SITE, "--json"))
        for vendor, args in demo.configure_args(demo.vendor_settings(plan)):
            _cli(env, "projects", "configure", demo.BUSINESS, vendor, *args)
        ticks: list[tuple[int, int]] = []
        started = time.monotonic()
        result = demo.load(plan, base, creds, progress=lambda done, total: ticks.append((done, total)),
                           ground_truth_path=tmp / "truth.json")
        load_s = time.monotonic() - started
        truth = json.loads(result.ground_truth_path.read_text())
        state = Loaded(base, creds, plan, result, truth, ticks, load_s, 0.0)
        want = truth["totals"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the sink writes in batches: wait until it has everything
            total = state.report()["total"]
            if (total.get("leads"), total.get("sales"), total.get("visits"), total.get("spend")) == \
                    (want["leads"], want["sales"], want["visits"], want["spend"]):
                break
            time.sleep(0.5)
        state.visible_s = time.monotonic() - started
        for model in ("last_non_direct", "first_touch"):
            state.reports[model] = state.report(model)
        yield state
    finally:
        assert server.stop() == 0, server.output()[-3000:]


@pytest.fixture(scope="module")
def reloaded(loaded: Loaded) -> dict[str, Any]:
    """The same plan loaded a second time, and the report after it."""
    again = demo.load(loaded.plan, loaded.base, loaded.creds,
                      ground_truth_path=loaded.result.ground_truth_path.with_name("truth-again.json"))
    assert again.requests == loaded.result.requests
    time.sleep(3)  # the sink writes every 0.5 s: a duplicate would show by now
    return loaded.report()


def test_the_channel_report_equals_the_ground_truth(loaded: Loaded) -> None:
    want = loaded.truth["totals"]
    total = loaded.reports["last_non_direct"]["total"]
    assert (total["leads"], total["sales"], Decimal(total["revenue"]), Decimal(total["spend"]), total["visits"]) == \
        (want["leads"], want["sales"], Decimal(want["revenue"]), Decimal(want["spend"]), want["visits"]), total
    for model, got in loaded.reports.items():
        rows = {r["channel"]: _numbers(r) for r in got["rows"]}
        expected = {ch: _numbers(r) for ch, r in loaded.truth["expected_report"][model].items() if any(_numbers(r))}
        assert rows == expected, (model, rows, expected)
    unattributed = next((r for r in loaded.reports["last_non_direct"]["rows"] if r["channel"] == "(unattributed)"),
                        {"revenue": "0"})
    assert Decimal(unattributed["revenue"]) == Decimal(want["unattributed_revenue"])
    live = loaded.truth["live_calls"]
    assert live and all(x["leased"] for x in live)  # joined by the lease alone: the live call names no visitor
    assert loaded.ticks and loaded.ticks[-1] == (loaded.result.requests, loaded.result.requests)
    assert [d for d, _ in loaded.ticks] == sorted(d for d, _ in loaded.ticks)
    r, plan = loaded.result, loaded.plan
    show(f"demo (seed 42, 30 days, scale 0.2): {r.requests} requests, {r.events} events loaded in {loaded.load_s:.1f} s "
         f"({r.events / loaded.load_s:.0f} events/s), report complete {loaded.visible_s:.1f} s after the start: "
         f"{plan.counts['visitors']} visitors, {want['visits']} visits, {want['leads']} leads ({want['enquiries']} "
         f"enquiries + {want['leads_by_kind'].get('crm', 0)} CRM deals), {want['sales']} sales, "
         f"{Decimal(want['revenue']):,.2f} KZT revenue, {Decimal(want['spend']):,.2f} KZT spend; {len(live)} live "
         f"call(s) joined by lease; revenue unattributed: {want['unattributed_revenue_share']:.0%} (no identity "
         f"stitching yet)")


def test_loading_the_same_plan_again_changes_no_conversion_and_no_spend(loaded: Loaded, reloaded: dict) -> None:
    before = loaded.reports["last_non_direct"]
    money = {r["channel"]: _numbers(r)[1:] for r in before["rows"] if any(_numbers(r)[1:])}
    assert {r["channel"]: _numbers(r)[1:] for r in reloaded["rows"] if any(_numbers(r)[1:])} == money
    assert _numbers(reloaded["total"])[1:] == _numbers(before["total"])[1:]


def test_loading_the_same_plan_again_changes_no_visit(loaded: Loaded, reloaded: dict) -> None:
    before = loaded.reports["last_non_direct"]
    show(f"demo re-load: visits {before['total']['visits']} -> {reloaded['total']['visits']}")
    assert reloaded["total"]["visits"] == before["total"]["visits"]
