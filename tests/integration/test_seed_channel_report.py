"""The seed article's channel table, built through the public HTTP interfaces (tracker events,
a signed payment webhook, a spend CSV) and read back from the report API: the article's leads,
sales, revenue, spend, CPL, conversion and ROI columns and its total row."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest

from collector.vendors.signing import hmac_sha256
from tests.conftest import ROOT, Proc, base_env, free_port, show, wait_http

pytestmark = pytest.mark.integration
RULES = Path(__file__).parent / "data" / "seed_channels.toml"
# channel: (landing URL tags, leads, sales, revenue, spend)
SEED = {
    "Google Ads": ("utm_source=google&utm_medium=cpc&utm_campaign=sofas", 120, 24, 4_800_000, 600_000),
    "Yandex Direct": ("utm_source=yandex&utm_medium=cpc&utm_campaign=divany", 85, 14, 2_100_000, 450_000),
    "Instagram": ("utm_source=ig&utm_medium=paid_social&utm_campaign=reels", 200, 16, 1_920_000, 400_000),
    "SEO": ("utm_source=seo&utm_medium=organic", 95, 19, 2_850_000, 150_000),
    "TikTok": ("utm_source=tiktok&utm_medium=cpc", 180, 5, 500_000, 350_000),
    "Email": ("utm_source=newsletter&utm_medium=email&utm_campaign=black-friday", 45, 12, 1_680_000, 50_000),
}
SPEND_SOURCE = {"Google Ads": ("google", "cpc"), "Yandex Direct": ("yandex", "cpc"), "Instagram": ("instagram", "cpc"),
                "SEO": ("seo", "organic"), "TikTok": ("tiktok", "cpc"), "Email": ("email", "email")}
START = datetime(2026, 10, 1, 9, tzinfo=timezone.utc)
SECRET = "seed-payment-secret"


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def _cli(env: dict, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "moneytrail", *args], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def post_seed(client: httpx.Client, creds: dict) -> int:
    """The seed business through the public interfaces: tracker pages and form leads (/v1/batch), a
    signed payment webhook, a spend CSV. The project's payment secret must be SECRET. Returns the
    number of tracker events."""
    events, payments, n = [], [], 0
    for channel, (tags, leads, sales, revenue, _spend) in SEED.items():
        for i in range(leads * 2):  # half the visitors leave a lead
            n += 1
            anon, seen = f"{channel}-{i}", START + timedelta(minutes=7 * n)
            events.append({"type": "page", "messageId": f"pv-{anon}", "anonymousId": anon, "timestamp": _iso(seen),
                           "context": {"page": {"url": f"https://mebel.kz/?{tags}", "referrer": ""}}})
            if i < leads:
                events.append({"type": "track", "event": "Form Submitted", "messageId": f"lead-{anon}",
                               "anonymousId": anon, "timestamp": _iso(seen + timedelta(minutes=3)),
                               "properties": {"form_id": "callback", "phone": f"+7701{n:07d}"}})
            if i < sales:
                payments.append({"payment_id": f"pay-{anon}", "amount": str(Decimal(revenue) / sales),
                                 "currency": "KZT", "paid_at": _iso(seen + timedelta(days=2)),
                                 "customer": {"anonymous_id": anon}})
    for k in range(0, len(events), 100):
        r = client.post("/v1/batch", json={"batch": events[k:k + 100]}, auth=(creds["write_key"], ""))
        assert r.status_code == 200 and r.json()["accepted"] == len(events[k:k + 100]), r.text
    body = orjson.dumps({"payments": payments})
    r = client.post(f"/webhooks/payment/{creds['webhook_secret']}", content=body,
                    headers={"X-Moneytrail-Signature": "sha256=" + hmac_sha256(SECRET, body).hex()})
    assert r.status_code == 200, r.text
    csv_lines = ["date;source;medium;campaign;cost;currency"]
    for channel, (_t, _l, _s, _r, spend) in SEED.items():
        source, medium = SPEND_SOURCE[channel]
        for day in range(10):  # spread over ten days, in a Russian spreadsheet's number format
            cost = Decimal(spend) / 10
            csv_lines.append(f"2026-10-{day + 1:02d};{source};{medium};;{str(cost).replace('.', ',')};KZT")
    r = client.post("/api/spend", content="\n".join(csv_lines).encode(),
                    headers={"X-Write-Key": creds["write_key"], "Content-Type": "text/csv"})
    assert r.status_code == 200 and r.json()["rows"] == 60, r.text
    return len(events)


def test_the_seed_channel_table_through_the_public_interfaces(tmp_path: Path) -> None:
    port = free_port()
    env = base_env(tmp_path / "data", MONEYTRAIL_PORT=str(port), MONEYTRAIL_CHANNEL_RULES=str(RULES),
                   MONEYTRAIL_RATE_LIMIT_IP_RPS="0", MONEYTRAIL_RATE_LIMIT_KEY_EPS="0")
    creds = json.loads(_cli(env, "projects", "create", "Mebel Almaty", "--json"))
    server = Proc(["serve"], env, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", server)
        _cli(env, "projects", "configure", "Mebel Almaty", "payment", f"secret={SECRET}")
        with httpx.Client(base_url=base, timeout=30) as client:
            post_seed(client, creds)
            report: dict = {}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                report = client.get("/api/reports/channels", params={"from": "2026-10-01", "to": "2026-11-30"},
                                    headers={"Authorization": f"Bearer {creds['read_token']}"}).json()
                if report["total"].get("sales") == 90 and report["total"].get("spend") == "2000000.00":
                    break
                time.sleep(0.5)
            csv_report = client.get("/api/reports/channels", params={"from": "2026-10-01", "to": "2026-11-30",
                                                                     "format": "csv"},
                                    headers={"Authorization": f"Bearer {creds['read_token']}"}).text
    finally:
        assert server.stop() == 0, server.output()[-3000:]

    rows = {r["channel"]: r for r in report["rows"]}
    for channel, (_tags, leads, sales, revenue, spend) in SEED.items():
        row = rows[channel]
        assert (row["leads"], row["sales"], Decimal(row["revenue"]), Decimal(row["spend"])) == \
            (leads, sales, Decimal(revenue), Decimal(spend)), row
        assert row["visits"] == leads * 2
        assert Decimal(row["cpl"]) == (Decimal(spend) / leads).quantize(Decimal("0.01"))
        assert row["conversion"] == round(sales / leads, 4)
        assert row["roi"] == pytest.approx(round((revenue - spend) / spend, 4))
    total = report["total"]
    assert (total["leads"], total["sales"], total["revenue"], total["spend"]) == (725, 90, "13850000.00", "2000000.00")
    assert total["cpl"] == "2758.62" and total["roi"] == pytest.approx(5.925)  # the article: CPL 2 759, ROI 593%
    assert csv_report.splitlines()[-1].startswith("Total,")
    show(f"seed channel table: 725 leads / 90 sales / 13 850 000 KZT revenue / 2 000 000 KZT spend; "
         f"CPL {total['cpl']}, ROI {total['roi'] * 100:.1f}% (the article: 2 759, 593%)")
