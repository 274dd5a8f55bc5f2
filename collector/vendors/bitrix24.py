"""Bitrix24 deals, two ways in (FORMATS.md section 5). Bitrix24 does NOT resend anything that failed
(no retries, "if your server crashes ... Bitrix24 will not resend anything"): a refusal or an outage
here is data lost, so completeness needs a periodic crm.deal.list reconciliation (follow-up).

(a) Event handlers: an outbound webhook (Developer resources -> Other -> Outbound webhook) or an app
    subscribed to ONCRMDEALADD / ONCRMDEALUPDATE, handler URL
        https://<collector>/webhooks/bitrix24/<project webhook secret>
    `moneytrail projects configure <project> bitrix24 application_token=<the token Bitrix24 shows>`.
    Body: form-encoded `event=ONCRMDEALUPDATE&data[FIELDS][ID]=759&ts=...&auth[domain]=...
    &auth[member_id]=...&auth[application_token]=...`. auth[application_token] must equal the
    configured token (else bad_signature, 401). Only the deal id is sent, and a mapper does no I/O,
    so each event becomes a `track` draft "crm_deal_changed" with identity {"deal": "b24:<id>"} and
    properties {crm, deal_id, change: add|update, domain} (no personal data). Event id
    bitrix24:<member_id>:deal:<id>:<event>:<ts>; timestamp = ts (the queue's send time, seconds
    after the change; received_at when absent). Other events are accepted and ignored.
    FOLLOW-UP (outside this module): a processor consuming crm_deal_changed calls
    crm.deal.get (deprecated upstream -> crm.item.get entityTypeId=2) on the portal with a stored
    inbound-webhook/OAuth credential, optionally crm.contact.get for PHONE[]/EMAIL[], and turns the
    result into a DealChange with `deal_change_of` / a full draft with `deal_draft_of` below (both
    pure). Don't update the deal from that handler: crm.deal.update re-fires ONCRMDEALUPDATE (loop).

(b) Robots / business processes: a "Webhook" robot on each deal stage (Automation rules), or the
    webhook action of a business process, with the URL template the user pastes into Bitrix24
    (fields inserted with the robot editor's "..." menu; Bitrix24 substitutes them):

        https://<collector>/webhooks/bitrix24/<project webhook secret>?token=<robot_token>
          &deal_id={{ID}}&stage={{STAGE_ID}}&semantic={{STAGE_SEMANTIC_ID}}&pipeline={{CATEGORY_ID}}
          &amount={{OPPORTUNITY}}&currency={{CURRENCY_ID}}&contact_id={{CONTACT_ID}}
          &phone={{CONTACT.PHONE}}&email={{CONTACT.EMAIL}}&utm_source={{UTM_SOURCE}}
          &utm_medium={{UTM_MEDIUM}}&utm_campaign={{UTM_CAMPAIGN}}&utm_content={{UTM_CONTENT}}
          &utm_term={{UTM_TERM}}

    `moneytrail projects configure <project> bitrix24 robot_token=<random string>`. Parameters are
    read from the query string and from a form body (a business process posts
    document_id[0]=crm&document_id[1]=CCrmDocumentDeal&document_id[2]=DEAL_<id>, used when deal_id
    is absent); the query wins. Optional: stage_kind=lead|open|won|lost, previous_stage,
    anonymous_id / user_id (e.g. from a UF_CRM_* field holding our tracker id). A parameter left
    as an unsubstituted "{{...}}" / "{=...}" counts as absent. Amounts accept "15000.00",
    "15 000,00" and Bitrix24's money form "15000.00|KZT". Each call -> one DealChange draft, identity
    {"deal": "b24:<id>", "crm_contact": "b24:<contact_id>", phone, email}; event id
    bitrix24:deal:<id>:stage:<stage>:<received_at seconds> (a robot runs once per stage entry).

Stage kind: the request's explicit stage_kind, else the config `stages` {stage_id: kind}, else
STAGE_SEMANTIC_ID (P -> open, S -> won, F -> lost), else the stage id's own name (WON -> won;
LOSE, APOLOGY -> lost; also with a "C<n>:" pipeline prefix), else open. Pipeline: the given
category, else n from a "C<n>:" stage prefix, else "0" (stages without prefix are pipeline 0).
Currency: the given one, else config `currency` (default KZT).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from schemas.envelope import TRACK
from schemas.families import DEAL, DealChange
from schemas.reasons import RejectReason
from schemas.values import reason_of

from .forms import parse_form
from .base import Accepted, Draft, Refused, VendorRequest, VendorResult, not_configured, same_secret
from .base import why as _why

VENDOR = "bitrix24"
CRM = "bitrix24"
PREFIX = "b24"  # identity namespace: {"deal": "b24:759"}
DEAL_EVENTS = {"ONCRMDEALADD": "add", "ONCRMDEALUPDATE": "update"}
STAGE_KINDS = ("lead", "open", "won", "lost")
SEMANTIC = {"P": "open", "S": "won", "F": "lost"}
NAMED_STAGES = {"WON": "won", "LOSE": "lost", "APOLOGY": "lost"}
UTM_KEYS = ("source", "medium", "campaign", "content", "term")
FIELD_TARGETS = frozenset({"anonymous_id", "user_id"} | {f"utm_{k}" for k in UTM_KEYS})

_ID = re.compile(r"[0-9]{1,20}")
_SECONDS = re.compile(r"[0-9]{1,11}")
_DOC_DEAL = re.compile(r"DEAL_([0-9]{1,20})")
_PIPELINE_PREFIX = re.compile(r"C([0-9]{1,10}):")
_CURRENCY = re.compile(r"[A-Z]{3}")
_PLAIN = re.compile(r"[0-9]{1,18}(?:\.[0-9]{1,6})?")
_SPACES = re.compile(r"[\s\u00a0\u202f\u2009]+")
_PARENS = re.compile(r"\s*\([^()]*\)\s*$")


class DealNotice(BaseModel):
    """Properties of a crm_deal_changed track event: which deal changed, no personal data."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    crm: Literal["bitrix24"] = "bitrix24"
    deal_id: str
    change: Literal["add", "update"]
    domain: str | None = None


def map_request(req: VendorRequest) -> VendorResult:
    form = parse_form(req.body) if req.body else {}
    if isinstance(form, Refused):
        return Refused(form.reason, f"{VENDOR}: {form.detail}", form.status)
    if "event" in form:
        return _event(form, req)
    return _robot(form, req)


# ---------------------------------------------------------------------------------------------
# (a) event handlers


def _event(form: dict[str, Any], req: VendorRequest) -> VendorResult:
    token = req.config.get("application_token")
    if token in (None, ""):
        return not_configured(VENDOR, "the outbound webhook's application_token")
    auth = form.get("auth") if isinstance(form.get("auth"), dict) else {}
    given = auth.get("application_token")
    if not isinstance(given, str) or not same_secret(given, str(token)):
        what = "is missing" if not isinstance(given, str) or not given else "does not match"
        return Refused(RejectReason.bad_signature, f"{VENDOR}: auth[application_token] {what} the configured "
                       "application_token (the token shown on the outbound webhook / saved at ONAPPINSTALL)", 401)
    event = form.get("event")
    event = event.strip().upper() if isinstance(event, str) else ""
    change = DEAL_EVENTS.get(event)
    if change is None:
        return Accepted((), ignored=f"event {event[:64]!r} is not mapped (only {', '.join(DEAL_EVENTS)})")
    data = form.get("data") if isinstance(form.get("data"), dict) else {}
    fields = data.get("FIELDS") if isinstance(data.get("FIELDS"), dict) else {}
    deal_id = _clean(fields.get("ID"))
    if deal_id is None or not _ID.fullmatch(deal_id):
        shown = "is missing" if deal_id is None else f"{deal_id[:40]!r} is not a numeric id"
        return Refused(RejectReason.schema_violation, f"{VENDOR}: {event}: data[FIELDS][ID] {shown}")
    ts = _clean(form.get("ts"))
    if ts is not None and not _SECONDS.fullmatch(ts):
        return Refused(RejectReason.schema_violation, f"{VENDOR}: ts {ts[:40]!r} is not unix seconds")
    at = datetime.fromtimestamp(int(ts), UTC) if ts else req.received_at
    domain = _clean(auth.get("domain"))
    portal = _clean(auth.get("member_id")) or domain or "-"
    notice = DealNotice(deal_id=deal_id, change=change, domain=domain[:255] if domain else None)
    event_id = f"bitrix24:{portal[:64]}:deal:{deal_id}:{event.lower()}" + (f":{ts}" if ts else "")
    return Accepted((Draft(schema=TRACK, event="crm_deal_changed", event_id=event_id, timestamp=at,
                           properties=notice, identity={"deal": f"{PREFIX}:{deal_id}"}),))


# ---------------------------------------------------------------------------------------------
# (b) robot / business-process webhooks


def _robot(form: dict[str, Any], req: VendorRequest) -> VendorResult:
    params: dict[str, str] = {k: v for k, v in form.items() if isinstance(v, str)}
    params.update({k: v for k, v in req.query.items() if isinstance(v, str)})
    if "token" not in params:
        return Refused(RejectReason.bad_signature, f"{VENDOR}: neither an event handler call (event=..., "
                       "auth[application_token]) nor a robot call (token=<robot_token> in the URL)", 401)
    token = req.config.get("robot_token")
    if token in (None, ""):
        return not_configured(VENDOR, "robot_token")
    if not same_secret(params["token"], str(token)):
        return Refused(RejectReason.bad_signature, f"{VENDOR}: the token parameter does not match the configured "
                       "robot_token", 401)

    def bad(detail: str) -> Refused:
        return Refused(RejectReason.schema_violation, f"{VENDOR} robot: {detail}")

    deal_id = _param(params, "deal_id", "id")
    if deal_id is None:
        document = form.get("document_id")
        doc = _clean(document.get("2")) if isinstance(document, dict) else None
        match = _DOC_DEAL.fullmatch(doc) if doc else None
        deal_id = match.group(1) if match else None
    if deal_id is None:
        return bad("deal_id is required (deal_id={{ID}} in the URL, or document_id[2]=DEAL_<id>)")
    if not _ID.fullmatch(deal_id):
        return bad(f"deal_id {deal_id[:40]!r} is not a numeric id")
    stage = _param(params, "stage", "stage_id")
    if stage is None:
        return bad("stage is required (stage={{STAGE_ID}} in the URL)")
    try:
        stages = _stage_config(req.config)
        kind = stage_kind_of(stage, _param(params, "semantic", "stage_semantic_id"), stages,
                             _param(params, "stage_kind"))
        amount, currency_in_amount = _amount(_param(params, "amount", "opportunity"))
        currency = _currency(_param(params, "currency", "currency_id") or currency_in_amount, req.config)
        pipeline = _param(params, "pipeline", "category_id", "category") or _pipeline_of(stage)
        change = DealChange(crm=CRM, deal_id=deal_id, stage=stage, stage_kind=kind, pipeline=pipeline,
                            amount=amount, currency=currency if amount is not None else None,
                            previous_stage=_param(params, "previous_stage"))
    except ValidationError as exc:
        return Refused(reason_of(exc), f"{VENDOR} robot: {_why(exc)}")
    except ValueError as exc:
        return bad(str(exc))
    identity = {"deal": f"{PREFIX}:{deal_id}"}
    contact = _param(params, "contact_id")
    if contact and contact != "0":
        if not _ID.fullmatch(contact):
            return bad(f"contact_id {contact[:40]!r} is not a numeric id")
        identity["crm_contact"] = f"{PREFIX}:{contact}"
    for kind_, key in (("phone", "phone"), ("email", "email")):
        value = _first_of_list(_param(params, key))
        if value:
            identity[kind_] = value
    campaign = {k: v[:256] for k in UTM_KEYS if (v := _param(params, f"utm_{k}"))}
    event_id = f"bitrix24:deal:{deal_id}:stage:{stage[:128]}:{int(req.received_at.timestamp())}"
    return Accepted((Draft(schema=DEAL, event_id=event_id, timestamp=req.received_at, properties=change,
                           identity=identity, anonymous_id=_short(_param(params, "anonymous_id")),
                           user_id=_short(_param(params, "user_id")), campaign=campaign),))


# ---------------------------------------------------------------------------------------------
# crm.deal.get results (for the follow-up that fetches the deal)


def deal_change_of(deal: Mapping[str, Any], stages: Mapping[str, str] | None = None,
                   currency_default: str = "KZT") -> DealChange:
    """A crm.deal.get result (the `result` object, or the whole response) as a DealChange.
    Raises ValueError (pydantic's ValidationError is one) when the deal cannot be read."""
    if isinstance(deal.get("result"), Mapping):
        deal = deal["result"]
    deal_id = _clean(_str(deal.get("ID")))
    if deal_id is None or not _ID.fullmatch(deal_id):
        raise ValueError(f"ID {deal.get('ID')!r} is not a numeric deal id")
    stage = _clean(_str(deal.get("STAGE_ID")))
    if stage is None:
        raise ValueError("STAGE_ID is required")
    kind = stage_kind_of(stage, _clean(_str(deal.get("STAGE_SEMANTIC_ID"))), _valid_stages(stages), None)
    amount, _ = _amount(_clean(_str(deal.get("OPPORTUNITY"))))
    currency = (_clean(_str(deal.get("CURRENCY_ID"))) or currency_default).upper()
    pipeline = _clean(_str(deal.get("CATEGORY_ID"))) or _pipeline_of(stage)
    return DealChange(crm=CRM, deal_id=deal_id, stage=stage, stage_kind=kind, pipeline=pipeline, amount=amount,
                      currency=currency if amount is not None else None)


def deal_draft_of(deal: Mapping[str, Any], config: Mapping[str, Any], received_at: datetime) -> Draft:
    """A crm.deal.get result as a full DEAL draft: identity {"deal": "b24:<ID>", "crm_contact":
    "b24:<CONTACT_ID>"}, campaign from UTM_*, anonymous_id / user_id / utm_* from UF_CRM_* fields
    mapped in the config `fields` {"UF_CRM_...": "anonymous_id"}, timestamp MOVED_TIME (else
    DATE_MODIFY, else received_at). Event id bitrix24:deal:<id>:stage:<stage>:<moved seconds>.
    Raises ValueError when the deal cannot be read."""
    if isinstance(deal.get("result"), Mapping):
        deal = deal["result"]
    change = deal_change_of(deal, _stage_config(config), _currency(None, config))
    at = received_at
    for key in ("MOVED_TIME", "DATE_MODIFY"):
        text = _clean(_str(deal.get(key)))
        if text:
            at = datetime.fromisoformat(text)
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            try:
                in_range = 0 <= at.timestamp() < 10**11
            except OverflowError:
                in_range = False
            if not in_range:
                raise ValueError(f"{key} {text[:40]!r} is out of range")
            break
    identity = {"deal": f"{PREFIX}:{change.deal_id}"}
    contact = _clean(_str(deal.get("CONTACT_ID")))
    if contact and contact != "0":
        identity["crm_contact"] = f"{PREFIX}:{contact}"
    campaign = {k: v[:256] for k in UTM_KEYS if (v := _clean(_str(deal.get(f"UTM_{k.upper()}"))))}
    fields = config.get("fields") or {}
    if not isinstance(fields, Mapping) or not all(v in FIELD_TARGETS for v in fields.values()):
        raise ValueError("config fields must be an object {UF_CRM_...: " + "|".join(sorted(FIELD_TARGETS)) + "}")
    anonymous_id = user_id = None
    for field, target in fields.items():
        value = _short(_clean(_str(deal.get(str(field)))))
        if not value:
            continue
        if target == "anonymous_id":
            anonymous_id = value
        elif target == "user_id":
            user_id = value
        else:
            campaign.setdefault(target[4:], value)
    return Draft(schema=DEAL, event_id=f"bitrix24:deal:{change.deal_id}:stage:{change.stage[:128]}:"
                 f"{int(at.timestamp())}", timestamp=at, properties=change, identity=identity,
                 anonymous_id=anonymous_id, user_id=user_id, campaign=campaign)


def stage_kind_of(stage: str, semantic: str | None, stages: Mapping[str, str], explicit: str | None) -> str:
    """lead|open|won|lost for a stage (see the module docstring for the order). ValueError when an
    explicit kind or a semantic id is not one Bitrix24 / we know."""
    if explicit is not None:
        if explicit.lower() not in STAGE_KINDS:
            raise ValueError(f"stage_kind {explicit[:40]!r} is not one of {', '.join(STAGE_KINDS)}")
        return explicit.lower()
    if stage in stages:
        return stages[stage]
    if semantic is not None:
        if semantic.upper() not in SEMANTIC:
            raise ValueError(f"semantic {semantic[:40]!r} is not a STAGE_SEMANTIC_ID (P, S or F)")
        return SEMANTIC[semantic.upper()]
    name = stage.split(":", 1)[1] if _PIPELINE_PREFIX.match(stage) else stage
    return NAMED_STAGES.get(name.upper(), "open")


# ---------------------------------------------------------------------------------------------
# helpers


def _str(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, Decimal)):
        return repr(value) if isinstance(value, float) else str(value)
    return value if isinstance(value, str) else None


def _clean(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or "{{" in value or "{=" in value:  # a template field Bitrix24 left unsubstituted
        return None
    return value


def _param(params: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = _clean(params.get(name))
        if value is not None:
            return value
    return None


def _short(value: str | None) -> str | None:
    return value[:256] if value else None


def _first_of_list(value: str | None) -> str | None:
    """"+7 701 123 45 67 (Рабочий), +7 702 ..." -> "+7 701 123 45 67" (multi-fields print as a list)."""
    if not value:
        return None
    first = _PARENS.sub("", re.split(r"[,;]", value, maxsplit=1)[0]).strip()
    return first[:254] or None


def _amount(text: str | None) -> tuple[Decimal | None, str | None]:
    """("15000.00" | "15 000,00" | "15000.00|KZT") -> (Decimal, currency from the |suffix or None)."""
    if text is None:
        return None, None
    number, _, currency = text.partition("|")
    number = _SPACES.sub("", number)
    if "," in number:
        number = number.replace(",", "") if "." in number else number.replace(",", ".")
    if not _PLAIN.fullmatch(number):
        raise ValueError(f"amount {text[:40]!r} is not a non-negative amount")
    try:
        return Decimal(number), (currency.strip() or None)
    except InvalidOperation:  # unreachable after the pattern, kept so nothing can escape
        raise ValueError(f"amount {text[:40]!r} is not a number") from None


def _currency(given: str | None, config: Mapping[str, Any]) -> str:
    currency = (given or str(config.get("currency") or "KZT")).strip().upper()
    if not _CURRENCY.fullmatch(currency):
        raise ValueError(f"currency {currency[:16]!r} is not a 3-letter ISO code")
    return currency


def _pipeline_of(stage: str) -> str:
    match = _PIPELINE_PREFIX.match(stage)
    return match.group(1) if match else "0"


def _valid_stages(stages: Any) -> dict[str, str]:
    if stages in (None, ""):
        return {}
    if not isinstance(stages, Mapping) or not all(v in STAGE_KINDS for v in stages.values()):
        raise ValueError("config stages must be an object {stage_id: \"lead\"|\"open\"|\"won\"|\"lost\"} "
                         f"(moneytrail projects configure <project> {VENDOR} stages=...)")
    return {str(k).strip(): v for k, v in stages.items()}


def _stage_config(config: Mapping[str, Any]) -> dict[str, str]:
    return _valid_stages(config.get("stages"))


