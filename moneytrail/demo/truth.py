"""The ground truth of a plan: for every identifier the TRUE person; for every conversion its
true channel (over all of the person's visits on every device) and the channel a cookie-only join
is expected to report (by the visitor id the server can see); totals as the server counts them
(leads = forms + unique inbound calls + chats + CRM deals created; sales = won deals + payments
naming no deal; revenue = payments + refunds) and spend per source and channel. Channels are
computed by stream_processors.channels.classify with the default rules, exactly as the server does."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from stream_processors.channels import ChannelRules

from .business import BUSINESS, CURRENCY, SITE
from .helpers import iso_z
from .plan import DemoPlan, Visit

LOOKBACK_DAYS = 90
LEAD_REPEAT_DAYS = 30  # the server's default MONEYTRAIL_LEAD_REPEAT_DAYS
UNATTRIBUTED = "(unattributed)"
MODELS = ("first_touch", "last_touch", "last_non_direct")
NOTES = ("totals count as the server counts: leads = forms + unique inbound calls + WhatsApp chats + CRM deals "
         f"created, a person's lead within {LEAD_REPEAT_DAYS} days after their previous one being a repeat "
         "that counts nothing (the CRM deal made from an enquiry); sales = won deals + payments that name no deal; "
         "revenue = payments + refunds. 'true' = "
         "over all the person's visits on every device; 'expected' = what a cookie-only join can see (the "
         "conversion's own visitor id, or the lease for live calls; no identity stitching): the baseline that "
         "stitching must beat. A WhatsApp chat's "
         "conversion_id here holds the raw wa_id; the server's holds its keyed hash.")


def pick(visits: list[Visit], at: datetime, model: str, lookback_days: int) -> str:
    """The channel a model credits among visits that started in [at - lookback, at]."""
    window = [v for v in visits if at - timedelta(days=lookback_days) <= v.start <= at]
    if not window:
        return UNATTRIBUTED
    if model == "first_touch":
        return min(window, key=lambda v: v.start).channel
    if model == "last_touch":
        return max(window, key=lambda v: v.start).channel
    return max(window, key=lambda v: (v.non_direct, v.start)).channel


def repeat_leads(plan: DemoPlan, lead_repeat_days: int = LEAD_REPEAT_DAYS) -> set[str]:
    """The leads the server counts as repeats: a person's lead within lead_repeat_days after their
    previous lead (an enquiry and the CRM deal made from it; the demo's person is the server's:
    every lead names the person's phone)."""
    leads: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for c in plan.conversions:
        if c.kind == "lead":
            leads[c.person].append((c.at, c.conversion_id))
    repeats: set[str] = set()
    for rows in leads.values():
        rows.sort()
        repeats |= {cid for (before, _), (at, cid) in zip(rows, rows[1:])
                    if at - before <= timedelta(days=lead_repeat_days)}
    return repeats


def ground_truth(plan: DemoPlan, lookback_days: int = LOOKBACK_DAYS) -> dict[str, Any]:
    """Who is who, the true and the expected (server-side) channel of every conversion, totals."""
    repeats = repeat_leads(plan)
    conversions = _conversions(plan, lookback_days, repeats)
    spend_by_source, spend_by_channel = _spend(plan)
    visits_by_channel = Counter(v.channel for v in plan.visits)

    def report(which: str, model: str) -> dict[str, dict[str, Any]]:
        return _report(conversions, which, model, visits_by_channel, spend_by_channel)

    return {
        "business": BUSINESS, "site": SITE, "currency": CURRENCY, "seed": plan.seed, "days": plan.days,
        "scale": plan.scale, "today": plan.today.isoformat(), "run_key": plan.run_key,
        "from": plan.start.date().isoformat(),
        "to": (plan.today if plan.live else plan.end.date() - timedelta(days=1)).isoformat(),
        "lookback_days": lookback_days,
        "notes": NOTES,
        "identifiers": plan.identifiers,
        "persons": plan.persons,
        "conversions": conversions,
        "totals": _totals(plan, conversions, repeats, sum(spend_by_source.values(), Decimal(0))),
        "spend_by_source": {k: f"{v:.2f}" for k, v in sorted(spend_by_source.items())},
        "spend_by_channel": {k: f"{v:.2f}" for k, v in sorted(spend_by_channel.items())},
        "expected_report": {m: report("expected", m) for m in MODELS},
        "true_report": {m: report("true", m) for m in MODELS},
        "counts": plan.counts,
    }


def _conversions(plan: DemoPlan, lookback_days: int, repeats: set[str]) -> list[dict[str, Any]]:
    """Every conversion in time order with its true and its expected channel under each model."""
    by_person: dict[str, list[Visit]] = defaultdict(list)
    by_anon: dict[str, list[Visit]] = defaultdict(list)
    for v in plan.visits:
        by_person[v.person].append(v)
        by_anon[v.anon].append(v)
    out = []
    for c in sorted(plan.conversions, key=lambda c: (c.at, c.conversion_id)):
        true = {m: pick(by_person[c.person], c.at, m, lookback_days) for m in MODELS}
        server = {m: pick(by_anon[c.anon], c.at, m, lookback_days) if c.anon else UNATTRIBUTED for m in MODELS}
        out.append({"conversion_id": c.conversion_id, "kind": c.kind, "via": c.via, "at": iso_z(c.at),
                    "person": c.person, "anonymous_id": c.anon, "value": f"{c.value:.2f}", **c.ref,
                    "live": c.live, "repeat": c.conversion_id in repeats, "true": true, "expected": server})
    return out


def _spend(plan: DemoPlan) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
    """Spend by source and by channel, folded and classified by the default channel rules."""
    rules = ChannelRules.load()
    by_source: dict[str, Decimal] = defaultdict(Decimal)
    by_channel: dict[str, Decimal] = defaultdict(Decimal)
    for r in plan.spend_rows:
        source, medium = rules.fold_source(r["source"]), rules.fold_medium(r["medium"])
        by_source[source] += r["cost"]
        by_channel[rules.channel_of(source, medium)] += r["cost"]
    return by_source, by_channel


def _report(conversions: list[dict[str, Any]], which: str, model: str, visits_by_channel: Counter[str],
            spend_by_channel: dict[str, Decimal]) -> dict[str, dict[str, Any]]:
    """The channel report of a model, by the true or the expected channel."""
    rows: dict[str, dict[str, Any]] = defaultdict(lambda: {"visits": 0, "leads": 0, "sales": 0,
                                                           "revenue": Decimal(0), "spend": Decimal(0)})
    for c in conversions:
        ch = c[which][model]
        if c["kind"] == "lead":
            rows[ch]["leads"] += 0 if c["repeat"] else 1
        elif c["kind"] == "sale":
            rows[ch]["sales"] += 1
        else:
            rows[ch]["revenue"] += Decimal(c["value"])
    for ch, n in visits_by_channel.items():
        rows[ch]["visits"] = n
    for ch, cost in spend_by_channel.items():
        rows[ch]["spend"] = cost
    return {ch: {**r, "revenue": f"{r['revenue']:.2f}", "spend": f"{r['spend']:.2f}"}
            for ch, r in sorted(rows.items())}


def _totals(plan: DemoPlan, conversions: list[dict[str, Any]], repeats: set[str], spend: Decimal) -> dict[str, Any]:
    kinds = Counter(c.kind for c in plan.conversions)
    revenue = sum((c.value for c in plan.conversions if c.kind in ("payment", "refund")), Decimal(0))
    money_rows = [c for c in conversions if c["kind"] in ("payment", "refund")]
    unattributed = sum((Decimal(c["value"]) for c in money_rows if c["expected"]["last_non_direct"] == UNATTRIBUTED),
                       Decimal(0))
    # revenue the server credits to a channel other than the true one (a device switch)
    elsewhere = {m: sum((Decimal(c["value"]) for c in money_rows
                         if c["expected"][m] not in (UNATTRIBUTED, c["true"][m])), Decimal(0)) for m in MODELS}
    leads_by_via = Counter(c.via for c in plan.conversions if c.kind == "lead")
    customers = {c.person for c in plan.conversions if c.kind == "sale"}
    return {
        "visits": len(plan.visits), "leads": kinds["lead"] - len(repeats), "repeat_leads": len(repeats),
        "sales": kinds["sale"], "revenue": f"{revenue:.2f}",
        "payments": kinds["payment"], "refunds": kinds["refund"], "spend": f"{spend:.2f}",
        "leads_by_kind": dict(sorted(leads_by_via.items())),
        "enquiries": leads_by_via["form"] + leads_by_via["call"] + leads_by_via["message"],
        "customers": len(customers),
        "unattributed_revenue": f"{unattributed:.2f}",
        "unattributed_revenue_share": float(unattributed / revenue) if revenue else 0.0,
        "misattributed_revenue": {m: f"{v:.2f}" for m, v in elsewhere.items()},
        "misattributed_revenue_share": {m: float(v / revenue) if revenue else 0.0 for m, v in elsewhere.items()},
    }


def write_ground_truth(plan: DemoPlan, path: Path | str, extra: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    truth = ground_truth(plan)
    if extra:
        truth.update(extra)
    path.write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2))
    return path

