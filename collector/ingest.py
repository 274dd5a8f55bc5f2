"""From a request body to envelopes. Pure: bytes and request facts in, typed outcome out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.envelope import SCHEMA_OF_WIRE_TYPE, Envelope, EventContext, new_event_id
from schemas.families import HASHED_ID_KINDS, ID_KINDS, TYPE_OF_SCHEMA
from schemas.reasons import RejectReason
from schemas.wire import MESSAGE, MESSAGE_TYPES

from .privacy import Hasher, anonymise_ip, extract_identity, without_pii
from .vendors.base import Draft

_TYPE_OF_WIRE = {"page": "pageview", "track": "track", "identify": "identify", "alias": "alias"}
_TYPE_OF_SCHEMA_CORE = {schema: _TYPE_OF_WIRE[wire] for wire, schema in SCHEMA_OF_WIRE_TYPE.items()}
MAX_DEPTH = 16


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


@dataclass(frozen=True)
class Parsed:
    envelopes: list[Envelope] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


def _depth(value: Any, limit: int) -> int:
    """Depth of nested containers, stopping once past limit (iterative: no recursion bombs)."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        node, d = stack.pop()
        if d > limit:
            return d
        deepest = max(deepest, d)
        if isinstance(node, dict):
            stack.extend((v, d + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, d + 1) for v in node if isinstance(v, (dict, list)))
    return deepest


def decode_body(body: bytes) -> Any | Refusal:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Refusal(RejectReason.invalid_utf8, f"body is not valid UTF-8 at byte {exc.start}")
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        reason = RejectReason.invalid_utf8 if "surrogate" in str(exc) else RejectReason.invalid_json
        return Refusal(reason, f"body is not valid JSON: {exc}")
    if _depth(data, MAX_DEPTH) > MAX_DEPTH:
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
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


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


def envelope_of(
    item: Any,
    project: str,
    received_at: datetime,
    client_ip: str | None,
    user_agent: str | None,
    rules: IngestRules,
    forced_type: str | None = None,
) -> Envelope | Refusal:
    if not isinstance(item, dict):
        return Refusal(RejectReason.schema_violation, "a message must be a JSON object")
    if forced_type is not None:
        item = {**item, "type": forced_type}
    wire_type = item.get("type")
    if wire_type not in MESSAGE_TYPES:
        return Refusal(RejectReason.unknown_type, f"type must be one of {', '.join(MESSAGE_TYPES)}; got {wire_type!r}")
    try:
        msg = MESSAGE.validate_python(item)
    except ValidationError as exc:
        return Refusal(RejectReason.schema_violation, _first_error(exc))

    flags: list[str] = []
    ts = _utc(msg.timestamp) if msg.timestamp else received_at
    sent_at = _utc(msg.sentAt) if msg.sentAt else None
    if sent_at is not None:  # the client's clock is off by (sent_at - received_at): undo it
        ts = ts + (received_at - sent_at)
    if ts > received_at + timedelta(seconds=rules.skew_tolerance_s):
        flags.append("clock_skew")
        ts = received_at

    ctx = msg.context
    page = ctx.page
    campaign = ctx.campaign.model_dump(exclude_none=True) if ctx.campaign else {}
    if wire_type == "page" and page is None:
        return Refusal(RejectReason.schema_violation, "context.page: a page message needs context.page.url")
    ctx_traits = (msg.context.model_extra or {}).get("traits")  # analytics.js puts traits here on track
    who = extract_identity(rules.hasher, project, rules.default_region, msg.traits, msg.properties,
                           ctx_traits if isinstance(ctx_traits, dict) else {})
    ids = dict(who.ids)
    if msg.userId:
        ids["user"] = msg.userId
    for prop, kind in (("ref_code", "ref"), ("promo_code", "promo")):  # the tracker's messenger ref code, promo codes
        value = msg.properties.get(prop)
        if isinstance(value, str) and value.strip():
            ids[kind] = value.strip().upper()[:64]
    return Envelope(
        schema=SCHEMA_OF_WIRE_TYPE[wire_type],
        event_id=msg.messageId or new_event_id(),
        type=_TYPE_OF_WIRE[wire_type],
        project=project,
        anonymous_id=msg.anonymousId,
        user_id=msg.userId,
        timestamp=ts,
        received_at=received_at,
        sent_at=sent_at,
        event=getattr(msg, "event", None),
        previous_id=getattr(msg, "previousId", None),
        context=EventContext(
            page_url=page.url if page else None,
            page_path=page.path if page else None,
            page_title=page.title if page else None,
            referrer=page.referrer if page else None,
            campaign={k: v for k, v in campaign.items() if isinstance(v, str)},
            user_agent=ctx.userAgent or user_agent,
            ip=anonymise_ip(ctx.ip or client_ip),
            locale=ctx.locale,
        ),
        properties=without_pii(msg.properties),
        traits=without_pii(msg.traits),
        ids=ids,
        masked=who.masked,
        flags=tuple(flags),
    )


def parse(
    messages: list[Any],
    project: str,
    client_ip: str | None,
    user_agent: str | None,
    rules: IngestRules,
    body_size: int,
    forced_type: str | None = None,
) -> Parsed:
    received_at = datetime.now(timezone.utc)
    max_event_bytes = rules.max_event_bytes
    out = Parsed()
    for i, item in enumerate(messages):
        result = envelope_of(item, project, received_at, client_ip, user_agent, rules, forced_type)
        if isinstance(result, Refusal):
            out.refused.append(Refusal(result.reason, result.detail, i))
            continue
        if body_size > max_event_bytes:  # only a body bigger than the limit can hold a big event
            size = len(orjson.dumps(item))
            if size > max_event_bytes:
                out.refused.append(Refusal(RejectReason.too_large, f"message is {size} bytes; at most {max_event_bytes}", i))
                continue
        out.envelopes.append(result)
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
        return Refusal(RejectReason.schema_violation, f"event time out of range: {exc}")
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
        properties=without_pii(props),
        ids=ids,
        masked=masked,
        flags=tuple(flags),
    )


def _segment_campaign(campaign: dict[str, str]) -> dict[str, str]:
    """Vendors say utm_campaign's value is the 'campaign'; Segment (and our envelope) calls it 'name'."""
    out = {k.removeprefix("utm_"): str(v) for k, v in campaign.items() if v not in (None, "")}
    if "campaign" in out:
        out.setdefault("name", out.pop("campaign"))
    return out
