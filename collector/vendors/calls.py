"""Call tracking: our generic call webhook (vendor `calls`), and the pieces the Calltouch and
Ringostat mappers share (settings, value parsers, configurable field mapping, the Call draft).

Generic call webhook, for PBXs and call-tracking services we have no mapper for yet:
POST /webhooks/calls/<project webhook secret>, signed like `payment`:
X-Moneytrail-Signature: sha256=<hex HMAC-SHA256 of the raw body>, key = config `secret`.

Body: one call, or {"calls": [...]} (at most 1000; all or nothing: one bad call refuses the request):
  {"call_id": "pbx-1717000500.12345",   required; unique within the project: event id calls:<call_id>
   "tracking_number": "+77270000001",   required; OUR number: the one the client dialled (an outgoing
                                        call: the line we called from). E.164, or national/without '+'
                                        (read with config `region`)
   "caller": "+77011234567",            the CLIENT's number, whatever the direction (kept only as a
                                        keyed hash by the collector); may be missing (hidden number)
   "started_at": "2026-11-20T10:00:00+05:00",  ISO 8601, "dd/mm/yyyy hh:mm:ss" or unix seconds; a time
                                        without offset is in config `timezone`; missing: received
                                        time minus duration_s
   "duration_s": 95, "talk_s": 80,      whole seconds >= 0 (total, and talking)
   "answered": true, "unique": true,    unique = the first call from this caller
   "direction": "in" | "out",           default "in"
   "recording_url": "https://...",
   "campaign": {"source": "google", "medium": "cpc", "campaign": "spring_sale", "content": "ad1",
                "term": "sofa"},        the utm_ prefix is optional; "name" is read as "campaign"
   "vendor_ids": {"ga_client_id": "1234567890.1717000000"},   any vendor session / client ids
   "vendor": "asterisk",                the service's name (Call.vendor), default "generic"
   "anonymous_id": "...", "page_url": "https://..."}   the tracker's anonymous id / landing page, if known

Config keys: secret (required), timezone (IANA, default Asia/Almaty), region (ISO country for
numbers without '+', default KZ).

Privacy: the client's number is only ever put in Draft.identity["phone"] (hashed by the collector);
a recording URL, landing URL or vendor id that contains the client's number is dropped.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Literal, Mapping
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import orjson
import phonenumbers
from pydantic import ValidationError

from schemas.families import CALL, Call
from schemas.reasons import RejectReason
from schemas.values import reason_of

from ..privacy import normalise_phone
from .base import Accepted, Draft, Refused, VendorRequest, VendorResult, not_configured, same_secret
from .base import why
from .messaging import context_campaign
from .signing import signed_json_items

HEADER = "x-moneytrail-signature"
TOKEN_HEADER = "x-moneytrail-token"
TOKEN_PARAM = "token"
DEFAULT_TIMEZONE = "Asia/Almaty"
DEFAULT_REGION = "KZ"
MAX_SECONDS = 10_000_000  # ~115 days: anything longer is not a call
MAX_ID = 200
MAX_CALLS = 1_000  # per request
UTM_KEYS = ("source", "medium", "campaign", "content", "term")
CONFIG_ERROR = 500  # the project's settings are wrong: ours to fix, and a vendor that retries will resend


class Bad(ValueError):
    """A value that cannot be read; the message names the field and is safe to show (no phones)."""


# --- settings ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    tz: ZoneInfo
    region: str


def settings_of(vendor: str, config: Mapping[str, Any]) -> Settings | Refused:
    name = config.get("timezone") or DEFAULT_TIMEZONE
    try:
        tz = ZoneInfo(str(name))
    except Exception:  # ZoneInfoNotFoundError, ValueError, OSError for odd keys
        return Refused(RejectReason.schema_violation, f"{vendor}: config timezone {str(name)[:64]!r} is not an "
                       "IANA time zone (e.g. Asia/Almaty, Europe/Moscow)", CONFIG_ERROR)
    region = str(config.get("region") or DEFAULT_REGION).strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        return Refused(RejectReason.schema_violation, f"{vendor}: config region {region[:16]!r} is not a country "
                       "code (e.g. KZ, RU)", CONFIG_ERROR)
    return Settings(tz, region)


def secret_of(value: Any) -> str | None:
    """A configured secret as text. The CLI stores a value that parses as JSON as JSON, so a
    numeric secret arrives as an int; anything else (lists, floats, booleans) is not a secret."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    return value if isinstance(value, str) and value else None


def token_refused(vendor: str, req: VendorRequest, required: bool = False) -> Refused | None:
    """The shared token (config `token`): header X-Moneytrail-Token or query parameter `token` must
    equal it. `required`: a vendor with nothing else to check the caller by (Ringostat) answers 401
    until a token is configured (never fails open); optional where an address allow-list checks too."""
    if "token" not in req.config:
        return not_configured(vendor, "the token (config token)") if required else None
    token = secret_of(req.config.get("token"))
    if token is None:
        return not_configured(vendor, "the token (config token must be a string)")
    given = req.header(TOKEN_HEADER) or req.query.get(TOKEN_PARAM)
    if not same_secret(given, token):
        return Refused(RejectReason.bad_signature, f"{vendor}: the X-Moneytrail-Token header or the token query "
                       "parameter does not match the configured token", 401)
    return None


# --- value parsers (raise Bad) ------------------------------------------------------------------

_EMPTY = frozenset({"", "null", "none", "undefined", "nil"})
_DMY = re.compile(r"(\d{1,2})[./](\d{1,2})[./](\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?")
_UNIX = re.compile(r"\d{9,13}(?:\.\d{1,6})?")


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def scalar(value: Any) -> str | int | float | bool | None:
    """A plain value, stripped; None for missing, empty, "null" and containers."""
    if isinstance(value, str):
        value = value.strip()
        return None if value.lower() in _EMPTY else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (bool, int, float)):
        return value
    return None


def as_text(value: Any, limit: int = 512) -> str | None:
    value = scalar(value)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)[:limit]


def seconds(value: Any, name: str) -> int | None:
    value = scalar(value)
    if value is None:
        return None
    number: float | int | None = None
    if isinstance(value, str):
        try:
            number = float(value.replace(",", "."))
        except ValueError:
            number = None
    elif not isinstance(value, bool):
        number = value
    if number is None or not math.isfinite(number) or not 0 <= number <= MAX_SECONDS:
        raise Bad(f"{name}: {show(value)} is not a number of seconds (0 to {MAX_SECONDS})")
    return int(round(number))


_TRUE = frozenset({"true", "1", "yes", "y", "t", "on", "да"})
_FALSE = frozenset({"false", "0", "no", "n", "f", "off", "нет"})


def flag(value: Any, name: str) -> bool | None:
    value = scalar(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise Bad(f"{name}: {show(value)} is not true or false")


_ANSWERED = frozenset({"answered", "answer", "successful", "success", "true", "1", "yes", "да", "успешный",
                       "состоялся", "разговорсостоялся"})
_MISSED = frozenset({"noanswer", "busy", "failed", "fail", "cancel", "canceled", "cancelled", "congestion",
                     "chanunavail", "unsuccessful", "notsuccessful", "missed", "lost", "false", "0", "no", "нет",
                     "пропущенный", "неуспешный", "занято"})


def answered(value: Any) -> bool | None:
    """ANSWERED / NO ANSWER / BUSY / FAILED (Asterisk dispositions, Ringostat), successful=true/false
    or status=successful/unsuccessful (Calltouch). Unknown words: not known (None)."""
    value = scalar(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return bool(value) if value in (0, 1) else None
    key = re.sub(r"[\s_\-]+", "", value.lower())
    if key in _ANSWERED:
        return True
    if key in _MISSED:
        return False
    return None


_IN = frozenset({"in", "incoming", "inbound", "входящий", "callback"})
_OUT = frozenset({"out", "outgoing", "outbound", "исходящий"})


def direction(value: Any, name: str, strict: bool) -> Literal["in", "out"]:
    """in/incoming/inbound, out/outgoing/outbound; "callback" (a call ordered on the site) is the
    client's, so "in". Unknown values: refused when strict, else "in" (call tracking is mostly that)."""
    value = scalar(value)
    if value is None:
        return "in"
    text = str(value).strip().lower()
    if text in _OUT:
        return "out"
    if text in _IN or not strict:
        return "in"
    raise Bad(f"{name}: {show(value)} is not \"in\" or \"out\"")


def moment(value: Any, name: str, tz: ZoneInfo) -> datetime | None:
    """unix seconds (or milliseconds), "dd/mm/yyyy hh:mm:ss" (also dd.mm.yyyy), or ISO 8601; a time
    without an offset is in tz. Years outside 1990-2100 are refused."""
    value = scalar(value)
    if value is None:
        return None
    bad = Bad(f"{name}: {show(value)} is not a date (dd/mm/yyyy hh:mm:ss, ISO 8601 or unix seconds)")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, (int, float)) or _UNIX.fullmatch(value):
        number = float(value)
        if number > 1e11:
            number /= 1000  # milliseconds
        if not 631152000 <= number <= 4102444800:  # 1990 .. 2100
            raise bad
        return datetime.fromtimestamp(number, timezone.utc)
    try:
        if m := _DMY.fullmatch(value):
            d, mo, y, h, mi, s = (int(g) if g else 0 for g in m.groups())
            when = datetime(y, mo, d, h, mi, s)
        else:
            when = datetime.fromisoformat(value)
    except ValueError:
        raise bad from None
    if not 1990 <= when.year <= 2100:
        raise bad
    return when if when.tzinfo else when.replace(tzinfo=tz)




# --- the call draft -------------------------------------------------------------------------------

@dataclass
class CallFacts:
    """A call as read from a vendor's request, before normalisation."""

    call_id: str
    ours: str  # our number as sent (tracking number; the calling line for an outgoing call)
    client: str | None  # the client's number as sent
    ours_field: str = "tracking_number"  # where ours came from, for messages
    vendor: str | None = None  # the service, when the request names it (generic webhook)
    started_at: datetime | None = None
    duration_s: int | None = None
    talk_s: int | None = None
    answered: bool | None = None
    unique: bool | None = None
    direction: Literal["in", "out"] = "in"
    recording_url: str | None = None
    campaign: dict[str, str] = field(default_factory=dict)  # keys without utm_
    vendor_ids: dict[str, str] = field(default_factory=dict)
    anonymous_id: str | None = None
    page_url: str | None = None


def our_number(raw: str, region: str) -> str | None:
    """Our tracking number in E.164: privacy.normalise_phone, or, when the number is only possible
    (right length, but a range the phone metadata does not know as assigned: new ranges, fake test
    numbers), its E.164 form all the same: it is the business's own number, and refusing the call
    would lose it."""
    if found := normalise_phone(raw, region):
        return found
    text = str(raw).strip()
    digits = re.sub(r"\D", "", text)
    if not 7 <= len(digits) <= 15 or re.search(r"[^\d\s()+\-.]", text):
        return None
    candidates = ["+" + digits] if text.startswith("+") else ["+" + digits, digits]
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def call_draft(vendor: str, facts: CallFacts, req: VendorRequest, settings: Settings,
               event_prefix: str | None = None) -> Draft | Refused:
    """The Call draft: event id <event_prefix or vendor>:<call id>, our number in E.164, the
    client's number raw in identity["phone"], anything carrying the client's number dropped."""
    vendor = facts.vendor or vendor
    if len(facts.call_id) > MAX_ID:
        return Refused(RejectReason.schema_violation, f"call_id is longer than {MAX_ID} characters")
    ours = our_number(facts.ours, settings.region)
    if ours is None:
        if facts.direction == "in":
            return Refused(RejectReason.schema_violation, f"{facts.ours_field}: {show(facts.ours)} is not a phone "
                           f"number (our tracking number; numbers without '+' are read as {settings.region})")
        ours = facts.ours.strip()[:64]  # an outgoing call's line may be a SIP extension
    client = (facts.client or "").strip()[:64] or None
    digits = re.sub(r"\D", "", client or "")
    needle = digits[-10:] if len(digits) >= 7 else None

    def clean(value: str | None) -> str | None:
        return None if value is None or (needle and needle in value) else value

    started = facts.started_at or req.received_at - timedelta(seconds=facts.duration_s or 0)
    recording = clean(facts.recording_url)
    try:
        call = Call(
            call_id=facts.call_id, vendor=vendor, tracking_number=ours, started_at=started,
            duration_s=facts.duration_s, talk_s=facts.talk_s, answered=facts.answered, unique=facts.unique,
            direction=facts.direction, recording_url=recording if recording and len(recording) <= 512 else None,
            vendor_ids={k[:64]: v[:512] for k, v in facts.vendor_ids.items() if clean(v)},
            campaign={k[:64]: v[:512] for k, v in facts.campaign.items()},
        )
    except ValidationError as exc:
        return Refused(reason_of(exc), why(exc))
    anonymous_id = facts.anonymous_id if facts.anonymous_id and len(facts.anonymous_id) <= 256 else None
    return Draft(schema=CALL, event_id=f"{event_prefix or vendor}:{facts.call_id}", timestamp=started,
                 properties=call, identity={"phone": client} if client else {}, anonymous_id=anonymous_id,
                 campaign=context_campaign(call.campaign), page_url=clean(facts.page_url))


# --- the generic webhook ----------------------------------------------------------------------------

def map_request(req: VendorRequest) -> VendorResult:
    items = signed_json_items(req, "calls", "calls", "call", MAX_CALLS)
    if isinstance(items, Refused):
        return items
    items, _batched = items
    settings = settings_of("calls", req.config)
    if isinstance(settings, Refused):
        return settings
    drafts = []
    for n, item in enumerate(items):
        try:
            facts = _generic(item, settings)
        except Bad as exc:
            return Refused(RejectReason.schema_violation, f"calls[{n}]: {exc}")
        draft = call_draft("generic", facts, req, settings, event_prefix="calls")
        if isinstance(draft, Refused):
            return Refused(draft.reason, f"calls[{n}]: {draft.detail}", draft.status)
        drafts.append(draft)
    return Accepted(tuple(drafts))


def _required(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise Bad(f"{key} is required (a string)")
    return str(value).strip()


def _optional(item: dict[str, Any], key: str) -> str | None:
    value = item.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Bad(f"{key}: {show(value)} is not a string")
    return str(value).strip() or None


def _tags(item: dict[str, Any], key: str) -> dict[str, Any]:
    value = item.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Bad(f"{key} must be an object of strings")
    if len(value) > 32:
        raise Bad(f"{key} has more than 32 entries")
    return value


def _generic(item: dict[str, Any], settings: Settings) -> CallFacts:
    campaign: dict[str, str] = {}
    for raw_key, raw in _tags(item, "campaign").items():
        key = str(raw_key).strip().lower().removeprefix("utm_")
        key = "campaign" if key == "name" else key
        if (text := as_text(raw)) is not None and key:
            campaign.setdefault(key, text)
    vendor_ids = {str(k).strip(): text for k, v in _tags(item, "vendor_ids").items()
                  if str(k).strip() and (text := as_text(v)) is not None}
    vendor = _optional(item, "vendor")
    return CallFacts(
        vendor=vendor[:64] if vendor else None,
        call_id=_required(item, "call_id"),
        ours=_required(item, "tracking_number"),
        client=_optional(item, "caller"),
        started_at=moment(item.get("started_at"), "started_at", settings.tz),
        duration_s=seconds(item.get("duration_s"), "duration_s"),
        talk_s=seconds(item.get("talk_s"), "talk_s"),
        answered=flag(item.get("answered"), "answered"),
        unique=flag(item.get("unique"), "unique"),
        direction=direction(item.get("direction"), "direction", strict=True),
        recording_url=_optional(item, "recording_url"),
        campaign=campaign,
        vendor_ids=vendor_ids,
        anonymous_id=_optional(item, "anonymous_id"),
        page_url=_optional(item, "page_url"),
    )


# --- flat, configurable vendor formats (Calltouch, Ringostat) ----------------------------------------

@dataclass(frozen=True)
class FlatFormat:
    """A vendor whose call parameters are chosen by the user in the vendor's cabinet: a default
    mapping from our field names to the vendor's parameter names (matched case-insensitively, the
    first present one wins), overridable per field by config `fields`, e.g. {"caller": "client_phone"}
    or {"talk": ["billsec", "talk_time"]}; "" switches a field off."""

    vendor: str
    defaults: Mapping[str, tuple[str, ...]]
    vendor_ids: tuple[str, ...]  # fields that go to Call.vendor_ids under their own name


# our field names, common to the flat formats (a format may add vendor id fields and "phase")
FLAT_FIELDS = ("call_id", "caller", "tracking_number", "started_at", "duration", "talk", "wait", "status",
               "unique", "repeated", "direction", "recording_url", "page_url", "anonymous_id",
               "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")


def fields_of(fmt: FlatFormat, config: Mapping[str, Any]) -> dict[str, tuple[str, ...]] | Refused:
    custom = config.get("fields")
    if custom is None:
        return dict(fmt.defaults)
    example = 'e.g. {"caller": "client_phone"}'
    if not isinstance(custom, Mapping):
        return Refused(RejectReason.schema_violation, f"{fmt.vendor}: config fields must be a JSON object "
                       f"of our field -> the parameter name ({example})", CONFIG_ERROR)
    unknown = sorted(str(k) for k in custom if k not in fmt.defaults)
    if unknown:
        return Refused(RejectReason.schema_violation, f"{fmt.vendor}: config fields has unknown field(s) "
                       f"{', '.join(unknown)[:200]}; known: {', '.join(fmt.defaults)}", CONFIG_ERROR)
    out = dict(fmt.defaults)
    for key, names in custom.items():
        if names is None or names == "":
            out[key] = ()
        elif isinstance(names, str):
            out[key] = (names.strip().lower(),)
        elif isinstance(names, list) and all(isinstance(n, str) for n in names):
            out[key] = tuple(n.strip().lower() for n in names if n.strip())
        else:
            return Refused(RejectReason.schema_violation, f"{fmt.vendor}: config fields.{key} must be a parameter "
                           f"name or a list of names ({example})", CONFIG_ERROR)
    return out


def records_of(vendor: str, req: VendorRequest) -> list[dict[str, Any]] | Refused:
    """The call records of a flat webhook: the query string (GET, or extra parameters of a POST)
    merged with the body: a form (application/x-www-form-urlencoded), a JSON object, a JSON array
    of objects, or JSON-RPC ({"jsonrpc": ..., "params": {...}}). Keys lower-cased."""
    query = _lowered(req.query.items())
    body = req.body.strip()
    if not body:
        if not query:
            return Refused(RejectReason.schema_violation, f"{vendor}: no parameters in the query string or the body")
        return [query]
    content_type = (req.header("content-type") or "").lower()
    if "multipart/" in content_type:
        return Refused(RejectReason.unsupported_media_type, f"{vendor}: send the parameters as a query string, a "
                       "form (application/x-www-form-urlencoded) or JSON, not multipart", 415)
    if "json" in content_type or body[:1] in (b"{", b"["):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return Refused(RejectReason.invalid_json, f"{vendor}: body is not JSON: {exc}")
        if isinstance(data, dict) and isinstance(data.get("params"), dict) and ("jsonrpc" in data or "method" in data):
            data = data["params"]
        items = data if isinstance(data, list) else [data]
        if not items or not all(isinstance(i, dict) for i in items):
            return Refused(RejectReason.schema_violation, f"{vendor}: a JSON body must be an object of call "
                           "parameters or a non-empty array of them")
        if len(items) > MAX_CALLS:
            return Refused(RejectReason.too_large, f"{vendor}: {len(items)} calls in one request (limit {MAX_CALLS})",
                           413)
        return [{**query, **_lowered(i.items())} for i in items]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Refused(RejectReason.invalid_utf8, f"{vendor}: the form body is not UTF-8 (byte {exc.start})")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, errors="replace", max_num_fields=1000)
    except ValueError as exc:
        return Refused(RejectReason.schema_violation, f"{vendor}: the form body cannot be read: {exc}")
    return [{**query, **_lowered(pairs)}]


def _lowered(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        out.setdefault(str(key).strip().lower(), value)
    return out


def lookup(record: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str, Any]:
    """(parameter name, value) of the first of names present with a value; ("", None) if none."""
    for name in names:
        value = scalar(record.get(name))
        if value is not None:
            return name, value
    return "", None


def flat_facts(fmt: FlatFormat, record: Mapping[str, Any], fields: Mapping[str, tuple[str, ...]],
               settings: Settings) -> CallFacts:
    """A flat record read through the field mapping. "caller" is who called and
    "tracking_number" the number called, as the vendors report them: for an outgoing call the
    client is the one called. talk = duration - wait when only those are sent; answered is
    talk > 0 when no status is sent; unique = not repeated when only that is sent."""

    def get(key: str) -> tuple[str, Any]:
        name, value = lookup(record, fields.get(key, ()))
        return (f"{key} (parameter {name!r})" if name else key), value

    def text(key: str) -> str | None:
        return as_text(get(key)[1])

    def number(key: str) -> int | None:
        label, value = get(key)
        return seconds(value, label)

    def boolean(key: str) -> bool | None:
        label, value = get(key)
        return flag(value, label)

    label, call_id = get("call_id")
    if call_id is None:
        raise Bad(_missing(fmt, "call_id", fields))
    label, way = get("direction")
    way = direction(way, label, strict=False)
    caller_label, caller = get("caller")
    called_label, called = get("tracking_number")
    client, ours, ours_label = (called, caller, caller_label) if way == "out" else (caller, called, called_label)
    if ours is None:
        raise Bad(_missing(fmt, "caller" if way == "out" else "tracking_number", fields))
    duration, talk, wait = number("duration"), number("talk"), number("wait")
    was_answered = answered(get("status")[1])
    if was_answered is None and talk is not None:
        was_answered = talk > 0
    if talk is None and duration is not None and wait is not None:
        talk = max(duration - wait, 0)
    unique = boolean("unique")
    if unique is None:
        repeated = boolean("repeated")
        unique = None if repeated is None else not repeated
    label, started = get("started_at")
    return CallFacts(
        call_id=as_text(call_id) or "",
        ours=as_text(ours) or "",
        client=as_text(client, 64),
        ours_field=ours_label,
        started_at=moment(started, label, settings.tz),
        duration_s=duration,
        talk_s=talk,
        answered=was_answered,
        unique=unique,
        direction=way,
        recording_url=text("recording_url"),
        campaign={key: value for key in UTM_KEYS if (value := text(f"utm_{key}"))},
        vendor_ids={key: value for key in fmt.vendor_ids if (value := text(key))},
        anonymous_id=text("anonymous_id"),
        page_url=as_text(get("page_url")[1], 4096),
    )


def _missing(fmt: FlatFormat, key: str, fields: Mapping[str, tuple[str, ...]]) -> str:
    names = ", ".join(fields.get(key, ())) or "none configured"
    return (f"{key} is required: no value in parameter(s) {names} (set config fields.{key} to the name "
            f"your {fmt.vendor} webhook uses)")


Skip = Callable[[Mapping[str, Any], Mapping[str, tuple[str, ...]]], str | None]


def flat_request(fmt: FlatFormat, req: VendorRequest, skip: Skip | None = None) -> VendorResult:
    """The shared body of the flat mappers once the request is authenticated. skip(record, fields)
    may return why a record is not counted (e.g. a call-start notification)."""
    settings = settings_of(fmt.vendor, req.config)
    if isinstance(settings, Refused):
        return settings
    fields = fields_of(fmt, req.config)
    if isinstance(fields, Refused):
        return fields
    records = records_of(fmt.vendor, req)
    if isinstance(records, Refused):
        return records
    drafts: list[Draft] = []
    skipped: list[str] = []
    for n, record in enumerate(records):
        where = f"calls[{n}]: " if len(records) > 1 else ""
        if skip is not None and (reason := skip(record, fields)):
            skipped.append(reason)
            continue
        try:
            facts = flat_facts(fmt, record, fields, settings)
        except Bad as exc:
            return Refused(RejectReason.schema_violation, f"{fmt.vendor}: {where}{exc}")
        draft = call_draft(fmt.vendor, facts, req, settings)
        if isinstance(draft, Refused):
            return Refused(draft.reason, f"{fmt.vendor}: {where}{draft.detail}", draft.status)
        drafts.append(draft)
    return Accepted(tuple(drafts), ignored="; ".join(dict.fromkeys(skipped)))
