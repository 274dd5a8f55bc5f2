"""What a generated demo is made of: the HTTP requests to send, and the truth behind them (the
visits, the conversions with their true person, the live calls to place during the load)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson

WEBHOOK_SLOT = "{webhook_secret}"  # replaced by the project's webhook secret at load time


@dataclass(frozen=True)
class PlannedRequest:
    """One HTTP request of the load. path may hold WEBHOOK_SLOT; the write key is added at load."""

    kind: str  # batch | spend | webhook
    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...]
    events: int  # messages / rows / webhook items it carries
    vendor: str = ""


@dataclass
class Visit:
    """One session (one touch): the hits of one visitor within 30 minutes, one attribution."""

    person: str
    anon: str
    start: datetime
    end: datetime
    kind: str  # how it arrived (our label: google_ads, direct ...)
    channel: str  # as classify() gives it with the default rules
    source: str
    medium: str
    campaign: str
    non_direct: bool
    live: bool = False


@dataclass
class Conversion:
    """A conversion as the server counts it (one conversion_id), with the truth behind it."""

    conversion_id: str
    kind: str  # lead | sale | payment | refund
    via: str  # form | call | message | crm | payment
    at: datetime
    person: str
    anon: str  # the visitor id the server sees on it ('' = none)
    value: Decimal = Decimal(0)
    ref: dict[str, str] = field(default_factory=dict)
    live: bool = False


@dataclass
class LiveCall:
    """A call placed while load() runs: a lease for the visitor, a pageview, a call to the number."""

    person: str
    anon: str
    user_agent: str
    caller: str  # E.164
    call_id: str
    page_message_id: str
    page_url: str


@dataclass
class DemoPlan:
    seed: int
    days: int
    today: date
    scale: float
    run_key: str
    start: datetime  # first instant of the demo period (UTC)
    end: datetime  # first instant after it: `today` 00:00 UTC (historical events are all before it)
    requests: list[PlannedRequest]
    messages: list[dict[str, Any]]  # every Segment message, in time order (also inside requests)
    live: list[LiveCall]
    secrets: dict[str, dict[str, Any]]
    visits: list[Visit]
    conversions: list[Conversion]
    spend_rows: list[dict[str, Any]]  # {date, source, medium, campaign, cost (Decimal), ...}
    identifiers: dict[str, dict[str, str]]  # kind -> value -> person
    persons: dict[str, dict[str, Any]]
    counts: dict[str, int]

    def fingerprint(self) -> str:
        """A digest of everything that would be sent: equal plans send equal bytes."""
        h = hashlib.sha256()
        for r in self.requests:
            h.update(r.kind.encode() + b"\0" + r.path.encode() + b"\0" + r.body + b"\0")
            for k, v in r.headers:
                h.update(f"{k}:{v}\0".encode())
        for lc in self.live:
            h.update(orjson.dumps(lc.__dict__))
        return h.hexdigest()
