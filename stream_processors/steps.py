"""The step chain for raw envelopes. Pure: a step takes its state and an event and returns the new
state and what it emits. No Faust, FastAPI or ClickHouse here: the embedded runner and the Faust
agent both call `process` with the state they keep per visitor (key = the raw record's key,
project:anonymous_id)."""

from __future__ import annotations

import logging
from functools import lru_cache

import orjson
import re2
from crawleruseragents import CRAWLER_USER_AGENTS_DATA
from dataclasses import dataclass
from datetime import timedelta
from typing import Union

from pydantic import ValidationError

from schemas.envelope import Envelope
from schemas.reasons import RejectReason
from schemas.touch import Touch

from .channels import ChannelRules, classify
from .conversions import ConversionRecord, conversions_of, subject_of
from .links import LinkRecord, links_of
from .sessions import DEFAULT_TIMEOUT, VisitorSessions, hit_of, sessionize

log = logging.getLogger("moneytrail.processors")

# Crawlers, link-preview fetchers (facebookexternalhit, WhatsApp, TelegramBot ...) and headless
# browsers, from the maintained crawler-user-agents list (case-sensitive patterns, as written there),
# instead of substrings ("bot" flagged CUBOT phones and missed WhatsApp). HTTP libraries (curl,
# python-requests, okhttp ...) are left out: server-side events legitimately come from them.
# One RE2 automaton: Python's re tries the ~1500 alternatives one by one (~0.2 ms for a phone's UA,
# linear in its length), RE2 matches them all in one pass (~3 us); its DFA needs more than the
# default 8 MB of memory for this many alternatives (else it logs and falls back to a slower engine).
_BOT_PATTERN = "|".join(f"(?:{c['pattern']})" for c in CRAWLER_USER_AGENTS_DATA
                        if "http-library" not in c.get("tags", ()))
_BOT_OPTIONS = re2.Options()
_BOT_OPTIONS.max_mem = 64 << 20
_BOTS = re2.compile(_BOT_PATTERN, _BOT_OPTIONS)


@dataclass(frozen=True)
class ProcessorConfig:
    rules: ChannelRules
    session_timeout: timedelta = DEFAULT_TIMEOUT
    default_currency: str = "KZT"


@dataclass(frozen=True)
class TableRow:
    """A row for a warehouse table (spend with its channel, a number lease)."""

    row: dict

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.row)


@dataclass(frozen=True)
class Emitted:
    """A step accepted its input and emits these records (possibly none)."""

    touches: tuple[Touch, ...] = ()
    conversions: tuple[ConversionRecord, ...] = ()
    spend: tuple[TableRow, ...] = ()  # ad_spend rows
    leases: tuple[TableRow, ...] = ()  # leases rows
    rates: tuple[TableRow, ...] = ()  # currency_rates rows
    links: tuple[LinkRecord, ...] = ()  # identity links for the persons stage


@dataclass(frozen=True)
class DeadLetter:
    """Input found invalid after acceptance; goes to the dead-letter topic with its reason."""

    reason: RejectReason
    detail: str
    payload: bytes


StepResult = Union[Emitted, DeadLetter]


@lru_cache(maxsize=4096)  # a site sees few distinct user agents, each on every pageview
def is_bot(user_agent: str | None) -> bool:
    return bool(user_agent) and _BOTS.search(user_agent) is not None


def decode(payload: bytes) -> Envelope | DeadLetter:
    try:
        return Envelope.from_bytes(payload)
    except ValidationError as exc:
        return DeadLetter(RejectReason.undecodable, str(exc)[:500], payload)


def load_visitor(data: bytes | None) -> VisitorSessions | None:
    """Stored visitor state, or None when absent or unreadable (a state written by a newer
    version, or corrupted: the visitor starts afresh rather than stalling the stream)."""
    if not data:
        return None
    try:
        return VisitorSessions.from_bytes(data)
    except (ValueError, TypeError, IndexError) as exc:
        log.warning("unreadable visitor state dropped: %s", exc)
        return None


def process(config: ProcessorConfig, visitor: VisitorSessions | None, payload: bytes
            ) -> tuple[VisitorSessions | None, StepResult]:
    """One raw envelope of one visitor: the visitor's new state (the same object when unchanged)
    and what it emits. Sessions, then (as they land) identity, conversions and attribution."""
    env = decode(payload)
    if isinstance(env, DeadLetter):
        return visitor, env
    if env.type == "spend":
        return visitor, Emitted(spend=(spend_of(config.rules, env),))
    if env.type == "rate":
        p = env.properties
        return visitor, Emitted(rates=(TableRow({
            "project": env.project, "day": p["date"], "currency": p["currency"], "base": p["base"],
            "rate": str(p["rate"]), "imported_at": env.received_at.isoformat()}),))
    if env.type == "lease":
        p = env.properties
        return visitor, Emitted(links=links_of(env), leases=(TableRow({
            "project": env.project, "lease_id": p["lease_id"], "tracking_number": p["tracking_number"],
            "anonymous_id": env.anonymous_id or "", "started_at": p["started_at"], "expires_at": p["expires_at"],
            "matches_until": p["matches_until"]}),))
    if env.type == "call" and "static_number" in env.flags:
        return visitor, static_call(config, env)
    if env.type != "pageview":
        return visitor, Emitted(conversions=conversions_of(env, config.default_currency), links=links_of(env))
    ctx = env.context
    where = classify(config.rules, ctx.page_url, ctx.referrer, ctx.campaign)
    new, touches = sessionize(visitor, hit_of(env, where, is_bot(ctx.user_agent)), config.session_timeout)
    # a logged-in visitor's every pageview names the same user: link once per session or user change
    fresh = touches or visitor is None or (env.user_id or None) != (visitor.user_id or None)
    return new, Emitted(touches=touches, links=links_of(env) if fresh else ())


def static_call(config: ProcessorConfig, env: Envelope) -> Emitted:
    """A call to a static number (an offline ad's own number) is a touch of its own, with the
    number's campaign tags as its source: the call's person gets a visit "through the billboard".
    The touch is kept under the pseudo-visitor "call:<vendor>:<call id>", linked to the call."""
    subject = subject_of(env)
    if subject is None:
        return Emitted(conversions=conversions_of(env, config.default_currency), links=links_of(env))
    visitor_id = f"{subject[0]}:{subject[1]}"
    where = classify(config.rules, None, None, env.context.campaign)
    _, touches = sessionize(None, hit_of(env.model_copy(update={"anonymous_id": visitor_id}), where, False),
                            config.session_timeout)
    own = LinkRecord(env.project, visitor_id, f"anon:{visitor_id}", "observed", env.event_id, env.timestamp.isoformat())
    return Emitted(touches=touches, conversions=conversions_of(env, config.default_currency),
                   links=(*links_of(env), own))


def spend_of(rules: ChannelRules, env: Envelope) -> TableRow:
    p = env.properties
    source, medium = rules.fold_source(str(p.get("source", ""))), rules.fold_medium(str(p.get("medium", "")))
    return TableRow({
        "project": env.project, "day": p["date"], "source": source, "medium": medium or "(none)",
        "campaign": str(p.get("campaign", "")).strip().lower(), "ad": str(p.get("ad", "")),
        "keyword": str(p.get("keyword", "")), "channel": rules.channel_of(source, medium),
        "cost": str(p["cost"]), "currency": str(p["currency"]).upper(), "clicks": int(p.get("clicks") or 0),
        "impressions": int(p.get("impressions") or 0), "import_id": str(p.get("import_id", "")),
        "imported_at": env.received_at.isoformat(), "row_id": env.event_id,
    })
