"""generate(): the whole demo in memory, and the vendor settings a project needs to accept it.
The simulation runs in a fixed order (the days' journeys, the newsletters, the live calls, the
spend, the showcase), then everything is packed into HTTP requests in time order."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson

from .business import FIRST, NEW_PEOPLE_PER_DAY, WEEKDAY
from .helpers import UTC, sign, weighted
from .people import journey, live_calls, newsletters, showcase
from .plan import WEBHOOK_SLOT, DemoPlan, PlannedRequest
from .spend import spend_requests, spend_rows
from .world import World

BATCH = 100  # Segment messages per /v1/batch request


def generate(seed: int = 42, days: int = 90, today: date | None = None, scale: float = 1.0) -> DemoPlan:
    """The whole demo in memory (no I/O): deterministic for (seed, days, today, scale). With
    today=None the period ends yesterday (UTC) and a few calls are placed live during load()."""
    if days < 1 or scale <= 0:
        raise ValueError("days must be >= 1 and scale > 0")
    current = datetime.now(UTC).date()
    live = today is None or today == current
    today = today or current
    w = World(seed, days, today, scale, live)
    for day in range(days):
        d = w.start.date() + timedelta(days=day)
        expected = NEW_PEOPLE_PER_DAY * scale * WEEKDAY[d.weekday()] * (0.9 + 0.2 * day / max(days - 1, 1))
        n = int(expected) + (1 if w.rng.random() < expected - int(expected) else 0)
        for _ in range(n):
            journey(w, day, weighted(w.rng, ((k, v[0]) for k, v in FIRST.items())))
    sends = newsletters(w)
    if live:
        live_calls(w)
    rows = spend_rows(w, sends)
    showcase(w)

    messages = sorted(w.messages, key=lambda m: (m["timestamp"], m["messageId"]))
    requests = spend_requests(rows) + _batches(messages) + _webhooks(w)
    persons = {p.pid: {"anonymous_ids": [a for a, _ in p.devices], "phone": p.phone, "first_arrival": p.first_kind,
                       "devices": len(p.devices)} for p in w.persons}
    counts = {
        "people": len(w.persons), "visitors": sum(len(p.devices) for p in w.persons),
        "cross_device_people": sum(1 for p in w.persons if len(p.devices) > 1),
        "visits": len(w.visits), "pageviews": sum(1 for m in messages if m["type"] == "page"),
        "segment_messages": len(messages), "calls": len(w.calls) + len(w.live), "whatsapp_messages": len(w.whatsapp),
        "amocrm_hooks": len(w.amocrm), "deals": w.counter["deal"], "payments": len(w.payments),
        "spend_rows": len(rows), "live_calls": len(w.live),
    }
    return DemoPlan(seed=seed, days=days, today=today, scale=scale, run_key=w.run, start=w.start, end=w.end,
                    requests=requests, messages=messages, live=w.live, secrets=w.secrets, visits=w.visits,
                    conversions=w.conversions, spend_rows=rows,
                    identifiers={k: dict(v) for k, v in w.ids.items()}, persons=persons, counts=counts)


def _batches(messages: list[dict[str, Any]]) -> list[PlannedRequest]:
    """The tracker's messages as Segment batches of BATCH, in time order."""
    return [PlannedRequest("batch", "/v1/batch", orjson.dumps({"batch": messages[k:k + BATCH]}),
                           (("Content-Type", "application/json"),), len(messages[k:k + BATCH]))
            for k in range(0, len(messages), BATCH)]


def _webhook(vendor: str, body: bytes, headers: dict[str, str], events: int) -> PlannedRequest:
    return PlannedRequest("webhook", f"/webhooks/{vendor}/{WEBHOOK_SLOT}", body, tuple(headers.items()), events, vendor)


def _webhooks(w: World) -> list[PlannedRequest]:
    """The back office's webhooks, signed as each vendor signs: the PBX's calls in batches of 100,
    one WhatsApp message each, amoCRM's hooks, the payments in batches of 50; each in time order."""
    out = []
    secret = w.secrets["calls"]["secret"]
    calls = [body for _, body in sorted(w.calls, key=lambda x: (x[0], x[1]["call_id"]))]
    for k in range(0, len(calls), 100):  # the PBX exports calls in batches
        body = orjson.dumps({"calls": calls[k:k + 100]})
        out.append(_webhook("calls", body, {"Content-Type": "application/json",
                                            "X-Moneytrail-Signature": sign(secret, body)}, len(calls[k:k + 100])))
    secret = w.secrets["whatsapp"]["app_secret"]
    for _, wa in sorted(w.whatsapp, key=lambda x: (x[0], x[1]["entry"][0]["changes"][0]["value"]["messages"][0]["id"])):
        body = orjson.dumps(wa)
        out.append(_webhook("whatsapp", body, {"Content-Type": "application/json",
                                               "X-Hub-Signature-256": sign(secret, body)}, 1))
    for _, pairs, n in sorted(w.amocrm, key=lambda x: (x[0], x[1][0][1], len(x[1]))):
        out.append(_webhook("amocrm", urlencode(pairs).encode(), {"Content-Type": "application/x-www-form-urlencoded"},
                            n))
    secret = w.secrets["payment"]["secret"]
    payments = [item for _, item in sorted(w.payments, key=lambda x: (x[0], x[1]["payment_id"]))]
    for k in range(0, len(payments), 50):
        body = orjson.dumps({"payments": payments[k:k + 50]})
        out.append(_webhook("payment", body, {"Content-Type": "application/json",
                                              "X-Moneytrail-Signature": sign(secret, body)}, len(payments[k:k + 50])))
    return out


def vendor_settings(plan: DemoPlan) -> dict[str, dict[str, Any]]:
    """{vendor: {key: value}} to apply with `moneytrail projects configure <project> <vendor>
    KEY=VALUE ...` before load(). Scalars are text; lists and mappings are sent as JSON."""
    return {vendor: {k: (list(v) if isinstance(v, (list, tuple)) else dict(v) if isinstance(v, dict) else v)
                     for k, v in values.items()} for vendor, values in plan.secrets.items()}


def configure_args(settings: dict[str, dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """The settings as `projects configure` arguments: [(vendor, ["KEY=VALUE", ...]), ...]."""
    out = []
    for vendor, values in settings.items():
        args = []
        for key, value in values.items():
            text = orjson.dumps(value).decode() if isinstance(value, (list, dict)) else str(value)
            args.append(f"{key}={text}")
        out.append((vendor, args))
    return out
