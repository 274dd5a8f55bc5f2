"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against `moneytrail serve`
(embedded): the seed article's shop, loaded through the public HTTP interfaces, plus visitors who
came back through another channel (so the attribution models disagree), a payment nobody can be
traced to (the unattributed row), a channel that loses money and CRM deals opened for some Google
visitors. Every number cell of the channel table must carry exactly the report API's value for the
same parameters, under each model, and so must the cohort heatmap, the funnel (table and chart),
top paths and a channel's campaigns (or those panels say the server does not serve the report);
the read token must leave the address bar; the page must ask nothing of any other origin."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from collector.vendors.signing import hmac_sha256
from tests.conftest import ROOT, Proc, base_env, free_port, missing_part, show, wait_http
from tests.integration.test_seed_channel_report import RULES, SECRET, SEED, SPEND_SOURCE, START

pytestmark = pytest.mark.integration
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
FROM, TO = "2026-10-01", "2026-11-30"
# the table's number columns (the API's field names), in the page's order
FIELDS = ("visits", "leads", "sales", "conversion", "revenue", "spend", "cpl", "cpo", "roi", "average_check")
MODELS = ("last_non_direct", "first_touch", "last_touch")
ALL_MODELS = ("last_non_direct", "last_touch", "first_touch", "linear", "time_decay", "position_based")
FUNNEL_FIELDS = ("visits", "leads", "deals", "sales", "visit_to_lead", "lead_to_deal", "deal_to_sale")
CRM_SECRET = "seed-crm-secret"
DEALS = 8  # Google Ads visitors whose deal reached an open stage
THIN, NBSP = "\u202f", "\u00a0"


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def _cli(env: dict, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "moneytrail", *args], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _page(anon: str, at: datetime, query: str = "") -> dict:
    return {"type": "page", "messageId": f"pv-{anon}-{at.timestamp():.0f}", "anonymousId": anon, "timestamp": _iso(at),
            "context": {"page": {"url": f"https://mebel.kz/{'?' + query if query else ''}", "referrer": ""}}}


def _lead(anon: str, at: datetime, n: int) -> dict:
    return {"type": "track", "event": "Form Submitted", "messageId": f"lead-{anon}", "anonymousId": anon,
            "timestamp": _iso(at), "properties": {"form_id": "callback", "phone": f"+7702{n:07d}"}}


def _payment(pid: str, anon: str, amount: str, at: datetime) -> dict:
    return {"payment_id": pid, "amount": amount, "currency": "KZT", "paid_at": _iso(at), "customer": {"anonymous_id": anon}}


def _dataset() -> tuple[list[dict], list[dict], list[str]]:
    """(tracking events, payments, spend CSV lines): the seed article's table and the extras."""
    events, payments, n = [], [], 0
    for channel, (tags, leads, sales, revenue, _spend) in SEED.items():
        for i in range(leads * 2):  # half the visitors leave a lead
            n += 1
            anon, seen = f"{channel}-{i}", START + timedelta(minutes=7 * n)
            events.append(_page(anon, seen, tags))
            if i < leads:
                events.append(_lead(anon, seen + timedelta(minutes=3), n))
            if i < sales:
                payments.append(_payment(f"pay-{anon}", anon, str(Decimal(revenue) / sales), seen + timedelta(days=2)))
    later = START + timedelta(days=12)
    for i in range(10):  # found on Instagram, came back by typing the address, bought
        n += 1
        anon = f"ig-then-direct-{i}"
        events += [_page(anon, later + timedelta(hours=i), "utm_source=ig&utm_medium=paid_social&utm_campaign=reels"),
                   _page(anon, later + timedelta(days=2, hours=i)),
                   _lead(anon, later + timedelta(days=2, hours=i, minutes=2), n)]
        payments.append(_payment(f"pay-{anon}", anon, "150000.00", later + timedelta(days=2, hours=i, minutes=30)))
    for i in range(6):  # found on TikTok, came back from a Google ad, bought
        n += 1
        anon = f"tt-then-google-{i}"
        events += [_page(anon, later + timedelta(hours=i), "utm_source=tiktok&utm_medium=cpc"),
                   _page(anon, later + timedelta(days=3, hours=i), "utm_source=google&utm_medium=cpc&utm_campaign=sofas"),
                   _lead(anon, later + timedelta(days=3, hours=i, minutes=5), n)]
        payments.append(_payment(f"pay-{anon}", anon, "210000.00", later + timedelta(days=3, hours=i, minutes=40)))
    for i in range(4):  # a VK campaign (no rule of its own: "Other") that costs more than it brings
        n += 1
        anon = f"vk-{i}"
        events += [_page(anon, later + timedelta(hours=i), "utm_source=vk&utm_medium=cpc&utm_campaign=test"),
                   _lead(anon, later + timedelta(hours=i, minutes=4), n)]
    payments.append(_payment("pay-vk-0", "vk-0", "100000.00", later + timedelta(days=1)))
    # paid at the shop by someone the site never saw: no touch, the unattributed row
    payments.append(_payment("pay-walk-in", "walk-in-customer", "75000.00", later + timedelta(days=4)))

    csv_lines = ["date;source;medium;campaign;cost;currency"]
    for channel, (_t, _l, _s, _r, spend) in SEED.items():
        source, medium = SPEND_SOURCE[channel]
        for day in range(10):  # spread over ten days, in a Russian spreadsheet's number format
            csv_lines.append(f"2026-10-{day + 1:02d};{source};{medium};;{str(Decimal(spend) / 10).replace('.', ',')};KZT")
    csv_lines.append("2026-10-13;vk;cpc;test;250 000,00;KZT")
    return events, payments, csv_lines


def _deals() -> list[dict]:
    """CRM deals of the first Google Ads visitors, moved to an open stage (the funnel's deal step)."""
    return [{"deal_id": f"D-{i}", "stage": "talks", "stage_kind": "open", "crm": "1c",
             "changed_at": _iso(START + timedelta(days=1, minutes=7 * (i + 1))),
             "contact": {"anonymous_id": f"Google Ads-{i}"}} for i in range(DEALS)]


def _expected_raw(value: Any) -> str:
    return "null" if value is None else value if isinstance(value, str) else json.dumps(value)


def _same(raw: str, value: Any) -> bool:
    """The cell's data-raw is the API's value: decimal strings verbatim, numbers equal as numbers
    (JavaScript prints 7.0 as "7"), null as "null"."""
    if value is None or isinstance(value, str):
        return raw == _expected_raw(value)
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return raw == str(value)
    return raw not in ("", "null") and float(raw) == value


def _cells(page, table: str = "#channels") -> dict[tuple[str, str], str]:  # noqa: ANN001
    found = page.eval_on_selector_all(
        f"{table} td[data-field][data-channel]",
        "cells => cells.map(c => [c.dataset.channel, c.dataset.field, c.dataset.raw])")
    out: dict[tuple[str, str], str] = {}
    for channel, field, raw in found:
        assert (channel, field) not in out, f"two cells for {channel} / {field}"
        out[(channel, field)] = raw
    return out


def _assert_table_is_the_api(page, report: dict) -> int:  # noqa: ANN001
    """Every number cell of every row and of the total row against the API's JSON."""
    cells = _cells(page)
    rows = {r["channel"]: r for r in report["rows"]}
    rows["__total__"] = report["total"]
    assert {c for c, _f in cells} == set(rows), (sorted({c for c, _f in cells}), sorted(rows))
    checked = 0
    for channel, row in rows.items():
        for field in FIELDS:
            assert field in row, f"the API has no {field!r} for {channel}: {row}"
            raw = cells.get((channel, field))
            assert raw is not None, f"no cell for {channel} / {field}"
            assert _same(raw, row[field]), f"{channel} / {field}: page {raw!r}, API {row[field]!r}"
            checked += 1
    return checked


def _money(text: str) -> str:
    """How the page writes a KZT amount: whole tenge, thin-space thousands."""
    whole = Decimal(text).quantize(Decimal(1), ROUND_HALF_UP)
    sign = "\u2212" if whole < 0 else ""
    return sign + f"{abs(whole):,}".replace(",", THIN) + NBSP + "\u20b8"


def _percent(fraction: float) -> str:
    pct = (Decimal(repr(fraction)) * 100).quantize(Decimal("0.1"), ROUND_HALF_UP)
    return ("\u2212" if pct < 0 else "") + str(abs(pct)).replace(".", ",") + THIN + "%"


def _wait_panel(page, name: str, model: str, states: tuple[str, ...] = ("ok",)) -> str:  # noqa: ANN001
    """Waits until the panel shows the report for the range and model; returns its state."""
    page.wait_for_function(
        "([n, f, t, m, states]) => { const p = document.getElementById('panel-' + n);"
        " if (!p || p.hasAttribute('aria-busy') || !states.includes(p.dataset.state)) return false;"
        " return p.dataset.state !== 'ok' || (p.dataset.from === f && p.dataset.to === t && p.dataset.model === m); }",
        arg=[name, FROM, TO, model, list(states)], timeout=20_000)
    return page.get_attribute(f"#panel-{name}", "data-state")


def _assert_cohorts_are_the_api(page, report: dict, channel: str = "") -> int:  # noqa: ANN001
    """The heatmap for one first-touch channel (or all of them, summed) against the API's rows."""
    page.select_option("#cohort-channel", channel)
    page.wait_for_function("c => document.getElementById('cohorts').dataset.channel === c", arg=channel)
    months: dict[tuple[str, int], Decimal] = {}
    sizes: dict[tuple[str, str], int] = {}
    for r in report["rows"]:
        if channel and r["channel"] != channel:
            continue
        months[(r["cohort"], r["month"])] = months.get((r["cohort"], r["month"]), Decimal(0)) + Decimal(r["revenue"])
        sizes[(r["cohort"], r["channel"])] = r["customers"]
    cells = page.eval_on_selector_all(
        "#cohorts tbody td[data-month]", "cs => cs.map(c => [c.dataset.cohort, +c.dataset.month, c.dataset.raw])")
    assert cells, "no heatmap cells"
    shown = {(c, m): Decimal(raw) for c, m, raw in cells}
    assert {k: v for k, v in shown.items() if v} == {k: v for k, v in months.items() if v}, (shown, months)
    per_cohort = page.eval_on_selector_all(
        "#cohorts tbody td[data-field=customers]", "cs => cs.map(c => [c.dataset.cohort, +c.dataset.raw])")
    expected = {}
    for (cohort, _ch), n in sizes.items():
        expected[cohort] = expected.get(cohort, 0) + n
    assert dict(per_cohort) == expected
    total_revenue = Decimal(page.get_attribute('#cohorts tfoot td[data-field=revenue]:not([data-month])', "data-raw"))
    assert total_revenue == sum(months.values(), Decimal(0))
    per_customer = page.get_attribute("#cohorts tfoot td[data-field=per_customer]", "data-raw")
    assert Decimal(per_customer) == (total_revenue / sum(expected.values())).quantize(Decimal("0.01"), ROUND_HALF_UP)
    if not channel:
        assert sum(expected.values()) == report["total"]["customers"]
        assert total_revenue == Decimal(report["total"]["revenue"])
        assert per_customer == report["total"]["revenue_per_customer"]
    return len(cells) + len(per_cohort)


def _assert_rows_are_the_api(page, selector: str, rows: list[dict], skip: tuple[str, ...]) -> int:  # noqa: ANN001
    """A table drawn from whatever columns a report returns: every shown cell is the API's value."""
    found = page.eval_on_selector_all(f"{selector} td[data-row][data-field]",
                                      "cs => cs.map(c => [+c.dataset.row, c.dataset.field, c.dataset.raw])")
    assert {i for i, _f, _r in found} == set(range(len(rows))), (found[:5], len(rows))
    for i, field, raw in found:
        assert field not in skip and _same(raw, rows[i][field]), (i, field, raw, rows[i].get(field))
    shown = {(i, f) for i, f, _r in found}
    for i, row in enumerate(rows):  # nothing with a value is left out
        assert all((i, f) in shown for f, v in row.items() if v is not None and f not in skip), (i, row)
    return len(found)


def _wait_for(page, model: str) -> None:  # noqa: ANN001
    page.wait_for_function(
        "([f, t, m]) => { const t_ = document.getElementById('channels');"
        " return t_.dataset.from === f && t_.dataset.to === t && t_.dataset.model === m"
        " && !document.getElementById('app').hasAttribute('aria-busy'); }",
        arg=[FROM, TO, model], timeout=20_000)


def test_the_dashboard_shows_the_report_api_in_chromium(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        missing_part("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = base_env(tmp_path / "data", MONEYTRAIL_PORT=str(port), MONEYTRAIL_CHANNEL_RULES=str(RULES),
                   MONEYTRAIL_RATE_LIMIT_IP_RPS="0", MONEYTRAIL_RATE_LIMIT_KEY_EPS="0")
    creds = json.loads(_cli(env, "projects", "create", "Mebel Almaty", "--json"))
    token = creds["read_token"]
    server = Proc(["serve"], env, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = tmp_path / "dashboard.png"
    try:
        wait_http(f"{base}/readyz", server)
        _cli(env, "projects", "configure", "Mebel Almaty", "payment", f"secret={SECRET}")
        _cli(env, "projects", "configure", "Mebel Almaty", "crm", f"secret={CRM_SECRET}")
        events, payments, csv_lines = _dataset()
        with httpx.Client(base_url=base, timeout=30) as client:
            for k in range(0, len(events), 100):
                r = client.post("/v1/batch", json={"batch": events[k:k + 100]}, auth=(creds["write_key"], ""))
                assert r.status_code == 200 and r.json()["accepted"] == len(events[k:k + 100]), r.text

            def pay(items: list[dict]) -> None:
                body = orjson.dumps({"payments": items})
                r = client.post(f"/webhooks/payment/{creds['webhook_secret']}", content=body,
                                headers={"X-Moneytrail-Signature": "sha256=" + hmac_sha256(SECRET, body).hex()})
                assert r.status_code == 200, r.text

            pay(payments)
            body = orjson.dumps({"deals": _deals()})
            r = client.post(f"/webhooks/crm/{creds['webhook_secret']}", content=body,
                            headers={"X-Moneytrail-Signature": "sha256=" + hmac_sha256(CRM_SECRET, body).hex()})
            assert r.status_code == 200, r.text
            r = client.post("/api/spend", content="\n".join(csv_lines).encode(),
                            headers={"X-Write-Key": creds["write_key"], "Content-Type": "text/csv"})
            assert r.status_code == 200 and r.json()["rows"] == len(csv_lines) - 1, r.text

            def api(model: str, name: str = "channels") -> dict:
                r = client.get(f"/api/reports/{name}", headers=auth, params={
                    "from": FROM, "to": TO, "model": model, "currency": "KZT", "lookback_days": "90", "format": "json"})
                assert r.status_code == 200, r.text
                return r.json()

            def served(name: str) -> bool:
                r = client.get(f"/api/reports/{name}", headers=auth, params={"from": FROM, "to": TO})
                assert r.status_code in (200, 404), r.text
                return r.status_code == 200

            expected_revenue = sum(Decimal(p["amount"]) for p in payments)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # everything is in the warehouse before the browser looks
                now = api("last_touch")
                if (Decimal(now["total"].get("revenue") or 0) == expected_revenue
                        and Decimal(now["total"].get("spend") or 0) == Decimal("2250000")
                        and now["total"].get("leads") == 725 + 20 and now["total"].get("visits") == 1450 + 36
                        and api("last_touch", "funnel")["total"]["deals"] == DEALS):
                    break
                time.sleep(0.5)
            else:
                raise AssertionError(f"the data did not arrive: {now['total']}\n{server.output()[-3000:]}")
            reports = {m: api(m) for m in MODELS}
            by_model = {m: {r["channel"]: r["revenue"] for r in reports[m]["rows"]} for m in MODELS}
            assert len({json.dumps(v, sort_keys=True) for v in by_model.values()}) == 3, by_model  # the models disagree

            # the other reports the page draws, checked against the data before the browser looks
            cohorts = api("last_non_direct", "cohorts")
            first_buyers: dict[str, int] = {}
            for r in cohorts["rows"]:
                first_buyers[r["channel"]] = first_buyers.get(r["channel"], 0) + (r["customers"] if r["month"] == 0 else 0)
            # first touch of each buyer: Google's 24, TikTok's 5 + 6 who came back by a Google ad, Instagram's
            # 16 + 10 who came back directly, the walk-in with no visit
            assert (first_buyers["Google Ads"], first_buyers["TikTok"], first_buyers["Instagram"],
                    first_buyers["(unattributed)"]) == (24, 11, 26, 1), first_buyers
            assert Decimal(cohorts["total"]["revenue"]) == expected_revenue
            funnel = api("last_non_direct", "funnel")
            assert next(r for r in funnel["rows"] if r["channel"] == "Google Ads")["deals"] == DEALS
            extra = {name: served(name) for name in ("paths", "campaigns")}

            requests: list[str] = []
            problems: list[str] = []
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1440, "height": 1000}, locale="ru-RU",
                                        timezone_id="Asia/Almaty")
                page.on("request", lambda req: requests.append(req.url))
                page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text} at {msg.location.get('url')}")
                        if msg.type in ("error", "warning") else None)
                page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

                # 1. the link with the token; the token leaves the address bar at once
                page.goto(f"{base}/dashboard#token={token}")
                page.wait_for_selector("#app:not([hidden])")
                assert token not in page.url and "token" not in page.url, page.url
                assert page.evaluate("sessionStorage.getItem('moneytrail.read_token')") == token
                page.wait_for_function("() => document.getElementById('updated').textContent.startsWith('updated')")  # a function: CSP forbids eval
                assert page.input_value("#model") == "last_non_direct"
                assert page.input_value("#currency") == "KZT"  # from the response

                # 2. the range that covers the data
                page.fill("#from", FROM)
                page.fill("#to", TO)
                _wait_for(page, "last_non_direct")
                checked = _assert_table_is_the_api(page, reports["last_non_direct"])
                assert token not in page.url

                # how it reads: Russian/Kazakh number formatting, the total row, highlights
                total = reports["last_non_direct"]["total"]
                assert page.text_content('#channels [data-channel="__total__"][data-field="revenue"]') == \
                    _money(total["revenue"])
                assert page.text_content('#channels [data-channel="__total__"][data-field="roi"]') == _percent(total["roi"])
                assert page.text_content('#channels [data-channel="Google Ads"][data-field="spend"]') == \
                    "600" + THIN + "000" + NBSP + "\u20b8"
                other = next(r for r in reports["last_non_direct"]["rows"] if r["channel"] == "Other")
                assert other["roi"] < 0
                assert "neg" in page.get_attribute('#channels [data-channel="Other"][data-field="roi"]', "class")
                assert page.text_content('#channels [data-channel="(unattributed)"][data-field="cpl"]') == "\u2014"
                assert page.eval_on_selector('#channels [data-channel="(unattributed)"][data-field="revenue"]',
                                             "c => c.closest('tr').classList.contains('unattributed')")
                assert page.text_content("tfoot th") == "Total"

                # 3. the other models: the table follows the API
                for model in ("first_touch", "last_touch", "last_non_direct"):
                    page.select_option("#model", model)
                    _wait_for(page, model)
                    checked += _assert_table_is_the_api(page, reports[model])
                assert "?" in page.url and "model=last_non_direct" in page.url and token not in page.url

                # 3b. the reports around the table, for the same range and model
                assert page.eval_on_selector_all("#model option", "os => os.map(o => o.value)") == list(ALL_MODELS)
                _wait_panel(page, "cohorts", "last_non_direct")
                panel_cells = _assert_cohorts_are_the_api(page, cohorts)
                panel_cells += _assert_cohorts_are_the_api(page, cohorts, "TikTok")
                page.select_option("#cohort-channel", "")
                _wait_panel(page, "funnel", "last_non_direct")
                funnel_cells = _cells(page, "#funnel")
                rows = {r["channel"]: r for r in funnel["rows"]} | {"__total__": funnel["total"]}
                assert {c for c, _f in funnel_cells} == set(rows)
                for (channel, field), raw in funnel_cells.items():
                    assert _same(raw, rows[channel][field]), (channel, field, raw)
                panel_cells += len(funnel_cells)
                assert len(funnel_cells) == len(rows) * len(FUNNEL_FIELDS)
                bars = page.evaluate("() => { const c = Chart.getChart(document.getElementById('chart-funnel'));"
                                     " return [c.data.labels, c.data.datasets.map(d => d.data)]; }")
                for label, deals, sales in zip(bars[0], bars[1][2], bars[1][3]):
                    assert (deals or 0, sales or 0) == (rows[label]["deals"], rows[label]["sales"]), label
                if extra["paths"]:
                    assert _wait_panel(page, "paths", "last_non_direct") == "ok"
                    top = [r for r in api("last_non_direct", "paths")["rows"] if r.get("section", "path") == "path"][:10]
                    assert top, "the paths report has no path"
                    panel_cells += _assert_rows_are_the_api(page, "#panel-paths", top, ("section",))
                else:
                    assert _wait_panel(page, "paths", "last_non_direct", ("unknown",)) == "unknown"
                    assert "does not serve" in page.text_content("#panel-paths [data-panel-note]")
                # drill-down: a channel's name opens its campaigns
                page.click('#channels [data-drill="Google Ads"]')
                page.wait_for_selector("#panel-campaigns:not([hidden])")
                assert page.text_content("#drill-channel") == "Google Ads"
                if extra["campaigns"]:
                    assert _wait_panel(page, "campaigns", "last_non_direct") == "ok"
                    page.wait_for_function("() => document.getElementById('panel-campaigns').dataset.channel === 'Google Ads'")
                    mine = [r for r in api("last_non_direct", "campaigns")["rows"] if r.get("channel", "Google Ads") == "Google Ads"]
                    assert mine, "the campaigns report has no Google Ads row"
                    panel_cells += _assert_rows_are_the_api(page, "#panel-campaigns", mine, ("channel",))
                else:
                    assert _wait_panel(page, "campaigns", "last_non_direct", ("unknown",)) == "unknown"
                    assert "campaigns report" in page.text_content("#panel-campaigns [data-panel-note]")

                # 4. sorting by a column: ROI, best first, no value last, the unattributed row apart
                page.click('#channels thead th[data-sort="roi"] button')
                order = page.eval_on_selector_all("#channels tbody tr", "rs => rs.map(r => r.querySelector("
                                                  "'[data-field=roi]').dataset.raw)")
                rois = [float(x) for x in order if x != "null"]
                assert rois == sorted(rois, reverse=True) and order[:len(rois)] == [o for o in order if o != "null"], order
                assert page.get_attribute('#channels thead th[data-sort="roi"]', "aria-sort") == "descending"
                page.click('#channels thead th[data-sort="roi"] button')
                page.click('#channels thead th[data-sort="revenue"] button')  # back to revenue, largest first

                # 5. live: a new payment shows up without reloading, within one refresh
                before = page.get_attribute('#channels [data-channel="__total__"][data-field="revenue"]', "data-raw")
                pay([_payment("pay-live", "Google Ads-0", "333000.00", START + timedelta(days=20))])
                page.wait_for_function(
                    "b => document.querySelector('#channels [data-channel=\"__total__\"][data-field=\"revenue\"]')"
                    ".dataset.raw !== b", arg=before, timeout=35_000)
                live = api("last_non_direct")
                assert Decimal(live["total"]["revenue"]) == Decimal(before) + Decimal("333000.00")
                checked += _assert_table_is_the_api(page, live)
                # the panels refresh with the table: Google Ads-0 bought again, in the month of the first purchase
                live_cohorts = api("last_non_direct", "cohorts")
                assert Decimal(live_cohorts["total"]["revenue"]) == Decimal(cohorts["total"]["revenue"]) + Decimal("333000.00")
                page.wait_for_function(
                    "r => document.querySelector('#cohorts tfoot td[data-field=revenue]:not([data-month])').dataset.raw === r",
                    arg=live_cohorts["total"]["revenue"], timeout=35_000)
                panel_cells += _assert_cohorts_are_the_api(page, live_cohorts)
                assert re.fullmatch(r"updated \d\d:\d\d:\d\d", page.text_content("#updated")), page.text_content("#updated")

                page.wait_for_timeout(300)
                page.screenshot(path=str(shot), full_page=True)
                (artifacts / "dashboard.png").write_bytes(shot.read_bytes())

                # 6. a refused token: cleared, asked again with the API's reason, then accepted
                page.evaluate("sessionStorage.setItem('moneytrail.read_token', 'rt_not-a-real-token')")
                page.reload()
                page.wait_for_selector("#token-panel:not([hidden])")
                assert "unknown read token" in page.text_content("#token-message")
                assert page.evaluate("sessionStorage.getItem('moneytrail.read_token')") is None
                assert page.is_hidden("#app")
                page.screenshot(path=str(tmp_path / "dashboard-token.png"))
                (artifacts / "dashboard-token.png").write_bytes((tmp_path / "dashboard-token.png").read_bytes())
                page.fill("#token-input", token)
                page.click("#token-form button[type=submit]")
                _wait_for(page, "last_non_direct")  # the query string kept the range and the model
                checked += _assert_table_is_the_api(page, api("last_non_direct"))
                page.screenshot(path=str(tmp_path / "dashboard-after-relogin.png"), full_page=True)
                browser.close()
    finally:
        assert server.stop() == 0, server.output()[-3000:]

    foreign = [u for u in requests if not (u.startswith(base + "/") or u.startswith("data:"))]
    assert not foreign, f"the page asked other origins: {foreign}"
    # the refused token's 401 is logged by Chromium as a failed resource, and so is the 404 of a
    # report this server does not serve (asked once); anything else is a defect
    unknown = [f"/api/reports/{name}?" for name, ok in extra.items() if not ok]
    problems = [p for p in problems if "401" not in p and not ("404" in p and any(u in p for u in unknown))]
    assert not problems, problems
    assert all(token not in u for u in requests if "/api/" not in u), "the token travelled outside the report API"
    show(f"dashboard: Chromium showed {checked} number cells equal to GET /api/reports/channels under "
         f"{', '.join(MODELS)}, and {panel_cells} cells of the cohort heatmap, funnel"
         f"{', top paths' if extra['paths'] else ''}{', campaigns' if extra['campaigns'] else ''} equal to their reports "
         f"(not served: {', '.join(n for n, ok in extra.items() if not ok) or 'none'}); "
         f"token moved from #fragment to sessionStorage; a live payment appeared without reload; "
         f"{len(requests)} requests, all to {base}; screenshot at {artifacts / 'dashboard.png'}")
