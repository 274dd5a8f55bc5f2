"""Stage 1: one raw envelope of one visitor through a straight pipeline of named steps. Pure: the
visitor's state and the raw bytes in, the new state and what to emit out. No Faust, FastAPI or
ClickHouse here: the embedded runner and the Faust agent both call `process` (through
outputs.process_batch) with the state they keep per visitor (key = the raw record's key,
project:anonymous_id).

    decode -> classify -> sessionize -> conversions -> links -> outputs      (PIPELINE, in order)

Like Plausible's ingestion pipeline (lib/plausible/ingestion/event.ex), every step takes the event
being built (`Draft`) and returns it, filled in, or a `DeadLetter` with a reason from the closed set
(schemas.reasons), which ends the pipeline; each runs once and reads only what the steps before it
produced. Errors are values, not exceptions: an exception out of a step is a bug, which
outputs.process_batch dead-letters (processing_error). The envelope's type picks its route (ROUTES)
once, in decode; a step that has nothing to do for a route passes the draft on:

    route        classify                 sessionize              conversions  links             outputs
    pageview     channel rules, bot?      the visitor's sessions  -            once a session *  touches, links
    static_call  the number's campaign    a touch of its own      the lead     + the call's own  all three
    event        -                        -                       conversions  links             conversions, links
    lease        -                        -                       -            links             links, a leases row
    spend        source, medium, channel  -                       -            -                 an ad_spend row
    rate         -                        -                       -            -                 a rates row

    * a logged-in visitor's every pageview names the same user: linked once per session or user change
"""

from __future__ import annotations

import logging
from functools import lru_cache

import orjson
import re2
from crawleruseragents import CRAWLER_USER_AGENTS_DATA
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Union

from pydantic import ValidationError

from schemas.envelope import Envelope
from schemas.reasons import RejectReason
from schemas.touch import Touch

from .channels import Attribution, ChannelRules, classify
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


# Routes: what the pipeline does with an envelope, picked from its type by decode (module doc). Plain
# strings (module globals): the steps compare them on every event, and an Enum member's lookup costs
# more than the comparison.
PAGEVIEW = "pageview"
STATIC_CALL = "static_call"  # a call to a static number (an offline ad's own number) naming a subject
EVENT = "event"  # a site event, form, call, message, identify, CRM deal, payment ...
LEASE = "lease"
SPEND = "spend"
RATE = "rate"
ROUTES = frozenset({PAGEVIEW, STATIC_CALL, EVENT, LEASE, SPEND, RATE})

_ROUTE_OF_TYPE = {"pageview": PAGEVIEW, "lease": LEASE, "spend": SPEND, "rate": RATE}


@dataclass(slots=True)
class Draft:
    """The event being built: one envelope through the pipeline, each step filling in its part.
    Private to one `process` call (the steps fill it in place and pass it on)."""

    payload: bytes
    visitor: VisitorSessions | None  # the visitor's state before this event
    env: Envelope | None = None  # decode
    route: str = EVENT  # decode: one of ROUTES
    subject: tuple[str, str] | None = None  # decode: the event's own identifier (conversions.subject_of)
    where: Attribution | None = None  # classify: where the visit (or the static number's call) came from
    is_bot: bool = False  # classify
    spend_channel: tuple[str, str, str] = ("", "", "")  # classify: a spend row's source, medium, channel
    state: VisitorSessions | None = None  # sessionize: the visitor's state after this event
    touches: tuple[Touch, ...] = ()  # sessionize
    conversions: tuple[ConversionRecord, ...] = ()  # conversions
    links: tuple[LinkRecord, ...] = ()  # links
    emitted: Emitted | None = None  # outputs


Step = Callable[[ProcessorConfig, Draft], Union[Draft, DeadLetter]]


def decode_step(config: ProcessorConfig, draft: Draft) -> Draft | DeadLetter:
    """The envelope (or a dead letter: undecodable), its route and its subject."""
    env = decode(draft.payload)
    if isinstance(env, DeadLetter):
        return env
    draft.env = env
    route = _ROUTE_OF_TYPE.get(env.type, EVENT)
    if route != SPEND and route != RATE:  # rows for the warehouse name nobody
        draft.subject = subject_of(env)
        if env.type == "call" and "static_number" in env.flags and draft.subject is not None:
            route = STATIC_CALL  # naming nobody, it is an ordinary call (a lead, its links)
    draft.route = route
    return draft


def classify_step(config: ProcessorConfig, draft: Draft) -> Draft:
    """Where the visit came from (channel rules) and whether a bot made it; a static number's call
    comes from the number's campaign tags; a spend row's source and medium fold to its channel."""
    env, route, rules = draft.env, draft.route, config.rules
    if route == PAGEVIEW:
        ctx = env.context
        draft.where = classify(rules, ctx.page_url, ctx.referrer, ctx.campaign)
        draft.is_bot = is_bot(ctx.user_agent)
    elif route == STATIC_CALL:
        draft.where = classify(rules, None, None, env.context.campaign)
    elif route == SPEND:
        p = env.properties
        source, medium = rules.fold_source(str(p.get("source", ""))), rules.fold_medium(str(p.get("medium", "")))
        draft.spend_channel = (source, medium, rules.channel_of(source, medium))
    return draft


def _call_visitor(subject: tuple[str, str]) -> str:
    """The pseudo-visitor a static number's call keeps its touch under: "call:<vendor>:<call id>"."""
    return f"{subject[0]}:{subject[1]}"


def sessionize_step(config: ProcessorConfig, draft: Draft) -> Draft:
    """A pageview joins or opens the visitor's session (its touch when emitted); a static number's
    call is a one-hit session of its pseudo-visitor (the call's person gets a visit "through the
    billboard"). Every other route keeps the visitor's state as it is (the same object)."""
    env, route = draft.env, draft.route
    draft.state = draft.visitor
    if route == PAGEVIEW:
        hit = hit_of(env, draft.where, draft.is_bot)
        draft.state, draft.touches = sessionize(draft.visitor, hit, config.session_timeout)
    elif route == STATIC_CALL:
        hit = hit_of(env.model_copy(update={"anonymous_id": _call_visitor(draft.subject)}), draft.where, False)
        _, draft.touches = sessionize(None, hit, config.session_timeout)
    return draft


def conversions_step(config: ProcessorConfig, draft: Draft) -> Draft:
    """What the event counts as (conversions.py): a lead, a deal stage, a sale, a payment, a refund."""
    if draft.route == EVENT or draft.route == STATIC_CALL:
        draft.conversions = conversions_of(draft.env, config.default_currency, draft.subject)
    return draft


def links_step(config: ProcessorConfig, draft: Draft) -> Draft:
    """The identity links the event is evidence of (links.py). A logged-in visitor's every pageview
    names the same user: a pageview links once per session or user change. A static number's call
    also links its pseudo-visitor to the call."""
    env, route, subject = draft.env, draft.route, draft.subject
    if route == PAGEVIEW:
        visitor = draft.visitor
        if draft.touches or visitor is None or (env.user_id or None) != (visitor.user_id or None):
            draft.links = links_of(env, subject)
    elif route == STATIC_CALL:
        visitor_id = _call_visitor(subject)
        own = LinkRecord(env.project, visitor_id, f"anon:{visitor_id}", "observed", env.event_id,
                         env.timestamp.isoformat())
        draft.links = (*links_of(env, subject), own)
    elif route == EVENT or route == LEASE:
        draft.links = links_of(env, subject)
    return draft


def outputs_step(config: ProcessorConfig, draft: Draft) -> Draft:
    """What the event emits: its touches, conversions and links, and a spend, rate or lease row."""
    env, route = draft.env, draft.route
    spend = leases = rates = ()
    if route == SPEND:
        spend = (spend_row(env, *draft.spend_channel),)
    elif route == RATE:
        rates = (rate_row(env),)
    elif route == LEASE:
        leases = (lease_row(env),)
    draft.emitted = Emitted(touches=draft.touches, conversions=draft.conversions, spend=spend, leases=leases,
                            rates=rates, links=draft.links)
    return draft


# The pipeline, in order: (name, step). Each step runs once per envelope with what the steps before
# it produced; a DeadLetter ends it.
PIPELINE: tuple[tuple[str, Step], ...] = (
    ("decode", decode_step),
    ("classify", classify_step),
    ("sessionize", sessionize_step),
    ("conversions", conversions_step),
    ("links", links_step),
    ("outputs", outputs_step),
)


def process(config: ProcessorConfig, visitor: VisitorSessions | None, payload: bytes
            ) -> tuple[VisitorSessions | None, StepResult]:
    """One raw envelope of one visitor through PIPELINE: the visitor's new state (the same object
    when unchanged) and what it emits, or the state as it was and the dead letter."""
    draft = Draft(payload, visitor)
    for _name, step in PIPELINE:
        out = step(config, draft)
        if isinstance(out, DeadLetter):
            return visitor, out
        draft = out
    return draft.state, draft.emitted


def spend_row(env: Envelope, source: str, medium: str, channel: str) -> TableRow:
    """An ad_spend row: the spend envelope with its folded source and medium and their channel."""
    p = env.properties
    return TableRow({
        "project": env.project, "day": p["date"], "source": source, "medium": medium or "(none)",
        "campaign": str(p.get("campaign", "")).strip().lower(), "ad": str(p.get("ad", "")),
        "keyword": str(p.get("keyword", "")), "channel": channel,
        "cost": str(p["cost"]), "currency": str(p["currency"]).upper(), "clicks": int(p.get("clicks") or 0),
        "impressions": int(p.get("impressions") or 0), "import_id": str(p.get("import_id", "")),
        "imported_at": env.received_at.isoformat(), "row_id": env.event_id,
    })


def rate_row(env: Envelope) -> TableRow:
    p = env.properties
    return TableRow({
        "project": env.project, "day": p["date"], "currency": p["currency"], "base": p["base"],
        "rate": str(p["rate"]), "imported_at": env.received_at.isoformat()})


def lease_row(env: Envelope) -> TableRow:
    p = env.properties
    return TableRow({
        "project": env.project, "lease_id": p["lease_id"], "tracking_number": p["tracking_number"],
        "anonymous_id": env.anonymous_id or "", "started_at": p["started_at"], "expires_at": p["expires_at"],
        "matches_until": p["matches_until"]})
