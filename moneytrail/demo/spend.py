"""What the ads cost, and how the shop imports it through POST /api/spend: per day and campaign,
from the paid visits the campaigns brought (plus impressions that brought none), the SEO
contractor's monthly invoice split by day, and the newsletter service's fee per send."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import orjson

from .business import CAMPAIGNS, COST_PER_VISIT, CURRENCY, SEO_MONTHLY, SPEND_SOURCE
from .helpers import money, ru_number
from .plan import PlannedRequest
from .world import World


def spend_rows(w: World, sends: list[tuple[date, int]]) -> list[dict[str, Any]]:
    """{date, source, medium, campaign, cost, clicks, impressions} for every day of the period."""
    rng = w.rng
    rows = []
    d = w.start.date()
    while d < w.end.date():
        for kind, campaigns in CAMPAIGNS.items():
            source = SPEND_SOURCE[kind]
            for campaign, _, _ in campaigns:
                visits = w.paid_visits.get((d, source, campaign), 0)
                base = rng.uniform(600, 1800) * w.scale  # impressions that brought no click
                cost = money(visits * COST_PER_VISIT[source] * rng.uniform(0.85, 1.15) + base)
                clicks = round(visits * rng.uniform(1.15, 1.45)) + rng.randrange(0, 3)
                rows.append({"date": d, "source": source, "medium": "cpc", "campaign": campaign, "cost": cost,
                             "clicks": clicks, "impressions": clicks * rng.randrange(30, 90) + rng.randrange(200, 900)})
        d += timedelta(days=1)
    # the SEO contractor: a monthly invoice, split evenly by day (the last day takes the rounding)
    d = w.start.date()
    while d < w.end.date():
        first = d.replace(day=1)
        nxt = (first + timedelta(days=32)).replace(day=1)
        month_days = (nxt - first).days
        per_day = money(SEO_MONTHLY / month_days)
        cost = SEO_MONTHLY - per_day * (month_days - 1) if d == nxt - timedelta(days=1) else per_day
        rows.append({"date": d, "source": "seo", "medium": "organic", "campaign": "seo_contract", "cost": cost,
                     "clicks": 0, "impressions": 0})
        d += timedelta(days=1)
    for d, subscribers in sends:  # the email service: a fee per send plus per recipient
        rows.append({"date": d, "source": "email", "medium": "email",
                     "campaign": f"newsletter_{d.strftime('%Y_%m_%d')}",
                     "cost": money(Decimal(3500) + Decimal("2.5") * subscribers), "clicks": 0,
                     "impressions": subscribers})
    return rows


def spend_requests(rows: list[dict[str, Any]]) -> list[PlannedRequest]:
    """Three imports, each holding whole (day, source) pairs: a plain CSV (Google, Yandex), a
    Russian spreadsheet (Instagram, TikTok, Telegram) and JSON rows (SEO, the newsletter)."""
    out = []
    plain = [r for r in rows if r["source"] in ("google", "yandex")]
    lines = ["date,source,medium,campaign,cost,currency,clicks,impressions"]
    lines += [f"{r['date'].isoformat()},{r['source']},{r['medium']},{r['campaign']},{r['cost']:.2f},{CURRENCY},"
              f"{r['clicks']},{r['impressions']}" for r in plain]
    out.append(PlannedRequest("spend", "/api/spend", ("\n".join(lines) + "\n").encode(),
                              (("Content-Type", "text/csv"),), len(plain)))
    social = [r for r in rows if r["source"] in ("instagram", "tiktok", "telegram")]
    names = {"instagram": "Instagram", "tiktok": "TikTok", "telegram": "Telegram"}
    lines = ["Дата;Источник;utm_medium;Кампания;Расход;Валюта;Клики;Показы"]
    lines += [f"{r['date'].isoformat()};{names[r['source']]};{r['medium']};{r['campaign']};{ru_number(r['cost'])};"
              f"{CURRENCY.lower()};{ru_number(r['clicks'])};{ru_number(r['impressions'])}" for r in social]
    out.append(PlannedRequest("spend", "/api/spend", ("\ufeff" + "\r\n".join(lines) + "\r\n").encode(),
                              (("Content-Type", "text/csv; charset=utf-8"),), len(social)))
    other = [r for r in rows if r["source"] in ("seo", "email")]
    body = orjson.dumps({"rows": [{**r, "date": r["date"].isoformat(), "cost": f"{r['cost']:.2f}", "currency": CURRENCY}
                                  for r in other]})
    out.append(PlannedRequest("spend", "/api/spend", body, (("Content-Type", "application/json"),), len(other)))
    return out
