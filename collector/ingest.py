"""From a request body to envelopes. Pure: bytes and request facts in, typed outcome out.

The hot path (`parse`) builds each envelope as a dict and serialises it with orjson: the same JSON,
byte for byte, that `Envelope(...).to_bytes()` writes (tests/collector/test_ingest_fast.py holds
the two together), at a fraction of the cost of constructing and dumping the model per event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.envelope import SCHEMA_OF_WIRE_TYPE, Envelope, EventContext, new_event_id
from schemas.families import HASHED_ID_KINDS, ID_KINDS, ORDER_EVENTS, ORDER_VALUE_KEYS, TYPE_OF_SCHEMA
from schemas.reasons import RejectReason
from schemas.values import MAX_CAMPAIGN_VALUE, MAX_ID, MAX_URL, Invalid, money, reason_of, text_problem, time_problem
from schemas.wire import MESSAGE, MESSAGE_TYPES

from .privacy import EMAIL_KEYS, PHONE_KEYS, Hasher, anonymise_ip, extract_identity, without_pii
from .vendors.base import Draft

_TYPE_OF_WIRE = {"page": "pageview", "track": "track", "identify": "identify", "alias": "alias"}
_TYPE_OF_SCHEMA_CORE = {schema: _TYPE_OF_WIRE[wire] for wire, schema in SCHEMA_OF_WIRE_TYPE.items()}
_CAMPAIGN_FIELDS = ("source", "medium", "name", "term", "content")  # schemas.wire.Campaign's, in its order
_UTC = timezone.utc
_DUMPS_OPTIONS = orjson.OPT_UTC_Z  # datetimes as pydantic writes them: ...T10:00:00Z
MAX_DEPTH = 16
_EMPTY: dict[str, Any] = {}  # read-only stand-in for an absent object
_IDENTITY_KEYS = frozenset(PHONE_KEYS + EMAIL_KEYS)  # keys extract_identity reads (lower-cased)

Record = tuple[bytes, bytes]  # (partition key, envelope JSON)


@dataclass(frozen=True)
class Refusal:
    reason: RejectReason
    detail: str
    index: int | None = None  # position in a batch

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reason": self.reason.value, "detail": self.detail}
        if self.index is not None:
            out["index"] = self.index
        return out


class Parsed:
    """Accepted envelopes as bus records, and what was refused. (A plain class: a frozen dataclass
    costs a microsecond to build, which is a lot per request.)"""

    __slots__ = ("records", "refused")

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.refused: list[Refusal] = []


def _too_deep(node: Any, budget: int) -> bool:
    """True when containers nest more than `budget` levels below this one. Recursion is bounded by
    the budget (the caller's MAX_DEPTH), so a deep body cannot exhaust the stack."""
    values = node.values() if type(node) is dict else node
    for v in values:
        t = type(v)
        if (t is dict or t is list) and (budget == 0 or _too_deep(v, budget - 1)):
            return True
    return False


def _depth_ok(body: bytes, data: Any, limit: int) -> bool:
    # Every level opens a bracket, so a body with few brackets (one event) needs no walk.
    if body.count(b"{") + body.count(b"[") <= limit:
        return True
    return not ((type(data) is dict or type(data) is list) and _too_deep(data, limit - 1))


def _decode_refusal(body: bytes) -> Refusal:
    """Why orjson refused the body (the slow path: only for bodies that are refused)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Refusal(RejectReason.invalid_utf8, f"body is not valid UTF-8 at byte {exc.start}")
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        reason = RejectReason.invalid_utf8 if "surrogate" in str(exc) else RejectReason.invalid_json
        return Refusal(reason, f"body is not valid JSON: {exc}")
    return Refusal(RejectReason.invalid_json, "body is not valid JSON")  # not reached: orjson agrees with itself


def decode_body(body: bytes) -> Any | Refusal:
    try:
        data = orjson.loads(body)  # checks UTF-8 itself; the bytes need no decode first
    except orjson.JSONDecodeError:
        return _decode_refusal(body)
    if not _depth_ok(body, data, MAX_DEPTH):
        return Refusal(RejectReason.too_deep, f"JSON nested deeper than {MAX_DEPTH} levels")
    return data


def messages_of(data: Any, max_batch: int) -> list[Any] | Refusal:
    if isinstance(data, dict) and "batch" in data:
        batch = data["batch"]
        if not isinstance(batch, list):
            return Refusal(RejectReason.schema_violation, "'batch' must be a list of messages")
        if len(batch) > max_batch:
            return Refusal(RejectReason.too_large, f"batch has {len(batch)} messages; at most {max_batch}")
        return batch
    if isinstance(data, dict):
        return [data]
    return Refusal(RejectReason.schema_violation, "body must be a message object or {\"batch\": [...]}")


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=_UTC) if dt.tzinfo is None else dt.astimezone(_UTC)


def _names_someone(*sources: Any) -> bool:
    """Whether any source has a key extract_identity would read: most events carry no phone or
    email, and for them the extraction (normalising, hashing) is skipped."""
    for source in sources:
        if type(source) is dict:
            for k in source:
                if str(k).lower() in _IDENTITY_KEYS:
                    return True
    return False


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    return f"{where}: {err.get('msg')}" if where else str(err.get("msg"))


@dataclass(frozen=True)
class IngestRules:
    """What the collector needs to turn messages into envelopes."""

    hasher: Hasher
    default_region: str = "KZ"
    max_event_bytes: int = 32 * 1024
    skew_tolerance_s: int = 3600


def envelope_record(
    item: Any,
    project: str,
    received_at: datetime,
    client_ip: str | None,
    user_agent: str | None,
    rules: IngestRules,
    forced_type: str | None = None,
    latest: datetime | None = None,
) -> Record | Refusal:
    """One wire message as a bus record: (key, the envelope's JSON) or why it is refused. `latest`:
    the latest event time believed (received_at + the skew tolerance), computed once per request."""
    if type(item) is not dict:
        return Refusal(RejectReason.schema_violation, "a message must be a JSON object")
    if forced_type is not None:
        item = {**item, "type": forced_type}
    wire_type = item.get("type")
    if wire_type not in MESSAGE_TYPES:
        return Refusal(RejectReason.unknown_type, f"type must be one of {', '.join(MESSAGE_TYPES)}; got {wire_type!r}")
    try:
        msg = MESSAGE.validate_python(item)
    except ValidationError as exc:
        return Refusal(reason_of(exc), _first_error(exc))

    ctx = msg.get("context") or _EMPTY
    page = ctx.get("page")
    if page is None and wire_type == "page":
        return Refusal(RejectReason.schema_violation, "context.page: a page message needs context.page.url")
    if latest is None:
        latest = received_at + timedelta(seconds=rules.skew_tolerance_s)
    times = _event_times(msg, received_at, latest)
    if type(times) is Refusal:
        return times
    ts, sent_at, flags = times  # type: ignore[misc]
    campaign = _campaign_of(raw_campaign) if (raw_campaign := ctx.get("campaign")) else {}
    if type(campaign) is Refusal:
        return campaign
    properties = msg.get("properties") or _EMPTY
    if wire_type == "track" and properties and msg["event"].strip().lower() in ORDER_EVENTS:
        if (bad_value := order_value_problem(properties)) is not None:  # it becomes a sale: money rules
            return Refusal(bad_value.reason, bad_value.detail)
    traits = msg.get("traits") or _EMPTY
    user_id = msg.get("userId")
    ids, masked = _identifiers(msg, ctx, traits, properties, user_id, project, rules)
    anonymous_id = msg.get("anonymousId")
    if page is None:
        page = _EMPTY
    envelope = {
        "schema": SCHEMA_OF_WIRE_TYPE[wire_type],
        "event_id": msg.get("messageId") or new_event_id(),
        "type": _TYPE_OF_WIRE[wire_type],
        "project": project,
        "anonymous_id": anonymous_id,
        "user_id": user_id,
        "timestamp": ts,
        "received_at": received_at,
        "sent_at": sent_at,
        # validated on track/alias; on other types an extra field, kept when it is text (as before)
        "event": event if type(event := msg.get("event")) is str else None,
        "previous_id": previous if type(previous := msg.get("previousId")) is str else None,
        "context": {
            "page_url": page.get("url"),
            "page_path": page.get("path"),
            "page_title": page.get("title"),
            "referrer": page.get("referrer"),
            "campaign": campaign,
            "user_agent": ctx.get("userAgent") or user_agent,
            "ip": anonymise_ip(ctx.get("ip") or client_ip),
            "locale": ctx.get("locale"),
        },
        "properties": without_pii(properties, rules.default_region) if properties else {},
        "traits": without_pii(traits, rules.default_region) if traits else {},
        "ids": ids,
        "masked": masked,
        "flags": flags,
    }
    key = f"{project}:{anonymous_id or user_id}".encode()  # Envelope.key: one visitor stays on one partition
    return key, orjson.dumps(envelope, option=_DUMPS_OPTIONS)


def _event_times(msg: Any, received_at: datetime, latest: datetime) -> tuple[datetime, datetime | None, list[str]] | Refusal:
    """(the event's time, its sentAt, flags): the client's clock corrected by sentAt; a time past
    `latest` is flagged clock_skew and becomes received_at."""
    flags: list[str] = []
    try:
        ts = _utc(ts) if (ts := msg.get("timestamp")) else received_at
        sent_at = _utc(sent_at) if (sent_at := msg.get("sentAt")) else None
        if sent_at is not None:  # the client's clock is off by (sent_at - received_at): undo it
            ts = ts + (received_at - sent_at)
    except (OverflowError, ValueError) as exc:  # year 1 with a +05:00 offset is not a UTC time
        return Refusal(RejectReason.time_out_of_range, f"event time out of range: {exc}")
    if (bad_time := time_problem(ts, "timestamp (corrected by sentAt)")) is not None:
        return Refusal(bad_time.reason, bad_time.detail)
    if ts > latest:
        flags.append("clock_skew")
        ts = received_at
    return ts, sent_at, flags


def _campaign_of(raw_campaign: dict[str, Any]) -> dict[str, str] | Refusal:
    """context.campaign's text values: declared fields first, then extras (the order the envelope
    has always had)."""
    campaign = {k: raw_campaign[k] for k in _CAMPAIGN_FIELDS if type(raw_campaign.get(k)) is str}
    campaign.update((k, v) for k, v in raw_campaign.items() if k not in campaign and type(v) is str
                    and k not in _CAMPAIGN_FIELDS)
    for k, v in campaign.items():  # extra keys (gclid, utm_id...) are not bounded by MESSAGE
        if len(v) > MAX_CAMPAIGN_VALUE and k not in _CAMPAIGN_FIELDS:
            return Refusal(RejectReason.value_too_long,
                           f"context.campaign.{k} is {len(v)} characters; at most {MAX_CAMPAIGN_VALUE}")
    return campaign


def _identifiers(msg: Any, ctx: Any, traits: Any, properties: Any, user_id: Any, project: str,
                 rules: IngestRules) -> tuple[dict[str, str], dict[str, str]]:
    """(ids, masked): the phone and email hashes named in traits or properties, the user id, the
    tracker's messenger ref code and promo codes."""
    ctx_traits = ctx.get("traits")  # analytics.js puts traits here on track
    if (traits or properties or ctx_traits) and _names_someone(traits, properties, ctx_traits):
        who = extract_identity(rules.hasher, project, rules.default_region, traits, properties,
                               ctx_traits if isinstance(ctx_traits, dict) else {})
        ids, masked = dict(who.ids), who.masked
    else:
        ids, masked = {}, {}
    if user_id:
        ids["user"] = user_id
    if properties:
        for prop, kind in (("ref_code", "ref"), ("promo_code", "promo")):
            value = properties.get(prop)
            if isinstance(value, str) and value.strip():
                ids[kind] = value.strip().upper()[:64]
    return ids, masked


def order_value_problem(properties: dict[str, Any]) -> Invalid | None:
    """An order's value (the first of revenue / total / value present) must be money the
    warehouse holds, >= 0 (a refund is its own event); absent or empty means a sale of 0."""
    for key in ORDER_VALUE_KEYS:
        if key in properties:
            value = properties[key]
            if value is None or value == "":
                return None
            checked = money(value, f"properties.{key}")
            return checked if isinstance(checked, Invalid) else None
    return None


def envelope_of(
    item: Any,
    project: str,
    received_at: datetime,
    client_ip: str | None,
    user_agent: str | None,
    rules: IngestRules,
    forced_type: str | None = None,
) -> Envelope | Refusal:
    """One wire message as an Envelope (for callers that want the model; the hot path keeps bytes)."""
    result = envelope_record(item, project, received_at, client_ip, user_agent, rules, forced_type)
    return result if isinstance(result, Refusal) else Envelope.from_bytes(result[1])


def parse(
    messages: list[Any],
    project: str,
    client_ip: str | None,
    user_agent: str | None,
    rules: IngestRules,
    body_size: int,
    forced_type: str | None = None,
) -> Parsed:
    received_at = datetime.now(_UTC)
    latest = received_at + timedelta(seconds=rules.skew_tolerance_s)
    max_event_bytes = rules.max_event_bytes
    out = Parsed()
    records, refused = out.records, out.refused
    for i, item in enumerate(messages):
        result = envelope_record(item, project, received_at, client_ip, user_agent, rules, forced_type, latest)
        if type(result) is Refusal:
            refused.append(Refusal(result.reason, result.detail, i))
            continue
        if body_size > max_event_bytes:  # only a body bigger than the limit can hold a big event
            size = len(orjson.dumps(item))
            if size > max_event_bytes:
                refused.append(Refusal(RejectReason.too_large, f"message is {size} bytes; at most {max_event_bytes}", i))
                continue
        records.append(result)
    return out


def envelope_of_draft(draft: Draft, project: str, received_at: datetime, rules: IngestRules) -> Envelope | Refusal:
    """A vendor mapper's draft as an envelope: identity normalised and hashed, PII kept out."""
    ids: dict[str, str] = {}
    masked: dict[str, str] = {}
    raw = dict(draft.identity)
    who = extract_identity(rules.hasher, project, rules.default_region,
                           {k: v for k, v in raw.items() if k in ("phone", "email")})
    ids.update(who.ids)
    masked.update(who.masked)
    for kind, value in raw.items():
        if kind in ("phone", "email") or not value:
            continue
        if kind not in ID_KINDS:
            return Refusal(RejectReason.schema_violation, f"unknown identifier kind {kind!r}")
        ids[kind] = rules.hasher(project, kind, str(value)) if kind in HASHED_ID_KINDS else str(value)[:256]
    if draft.user_id:
        ids.setdefault("user", draft.user_id)
    props = draft.properties.model_dump(mode="json") if draft.properties is not None else {}
    try:
        ts = draft.timestamp.astimezone(timezone.utc) if draft.timestamp.tzinfo else draft.timestamp.replace(tzinfo=timezone.utc)
    except (OverflowError, ValueError) as exc:  # year 1 with a +05:00 offset cannot be represented in UTC
        return Refusal(RejectReason.time_out_of_range, f"event time out of range: {exc}")
    if (bad := _draft_problem(draft, ts)) is not None:
        return Refusal(bad.reason, bad.detail)
    flags: list[str] = []
    if ts > received_at + timedelta(seconds=rules.skew_tolerance_s):
        flags.append("clock_skew")
        ts = received_at
    kind = TYPE_OF_SCHEMA.get(draft.schema) or _TYPE_OF_SCHEMA_CORE.get(draft.schema)
    if kind is None:
        return Refusal(RejectReason.unknown_type, f"no event family {draft.schema!r}")
    return Envelope(
        schema=draft.schema,
        event_id=draft.event_id[:256],
        type=kind,
        project=project,
        anonymous_id=draft.anonymous_id,
        user_id=draft.user_id,
        timestamp=ts,
        received_at=received_at,
        event=draft.event,
        context=EventContext(page_url=draft.page_url, campaign=_segment_campaign(draft.campaign)),
        properties=without_pii(props, rules.default_region),
        ids=ids,
        masked=masked,
        flags=tuple(flags),
    )


def _draft_problem(draft: Draft, ts: datetime) -> Invalid | None:
    """What a vendor draft carries beside its family (already checked by the family model) must
    fit the warehouse too: the time, the tracker ids, the page URL and the UTM values."""
    checks = [time_problem(ts, "event time"), text_problem(draft.anonymous_id, MAX_ID, "anonymous_id"),
              text_problem(draft.user_id, MAX_ID, "user_id"), text_problem(draft.page_url, MAX_URL, "page_url")]
    checks += [text_problem(str(v), MAX_CAMPAIGN_VALUE, f"campaign.{k}") for k, v in draft.campaign.items()]
    return next((c for c in checks if c is not None), None)


def _segment_campaign(campaign: dict[str, str]) -> dict[str, str]:
    """Vendors say utm_campaign's value is the 'campaign'; Segment (and our envelope) calls it 'name'."""
    out = {k.removeprefix("utm_"): str(v) for k, v in campaign.items() if v not in (None, "")}
    if "campaign" in out:
        out.setdefault("name", out.pop("campaign"))
    return out
