"""amoCRM (Kommo) webhooks: deals ("leads") created or moved to a stage, contacts created or edited.

Setup: amoCRM -> Settings -> Integrations -> Web hooks -> add the URL
    https://<collector>/webhooks/amocrm/<project webhook secret>
and tick "Lead added", "Lead status changed", "Contact added", "Contact edited".
Then `moneytrail projects configure <project> amocrm account_id=<id> currency=KZT`
(optionally subdomain=<sub>, stages='{"53861254": "lead", "142": "won"}',
fields='{"1119325": "anonymous_id"}').

Wire format (FORMATS.md section 4): application/x-www-form-urlencoded with PHP-style nested keys,
`leads[status][0][status_id]=142&account[id]=30000001...`; all values strings, times unix seconds.
One request may carry several entities and actions. `forms.parse_form` reads it (a pure function,
PHP `parse_str` semantics, bounded size and depth); bitrix24.py reuses it.

Authentication: amoCRM signs nothing, so the request is authenticated by the project's webhook
secret in the URL path (checked by the route); on top of that `account[id]` / `account[subdomain]`
must equal the configured `account_id` / `subdomain` (else unknown_key, 401). At least one of them
must be configured: an unconfigured amocrm webhook answers 401 (never fails open).

Mapping (identity values are namespaced "amocrm:<id>" so two CRMs in one project never collide):
* leads[add][N]    -> DealChange stage=status_id, stage_kind "lead", event id
                      amocrm:<account>:lead:<id>:add. A lead created directly in a won/lost status
                      (an import, a shop order dropped straight into "Успешно реализовано") also gets
                      the status draft below, or its sale would never be counted.
* leads[status][N] -> DealChange stage=status_id, previous_stage=old_status_id, stage_kind from the
                      config `stages` {status_id: lead|open|won|lost}, default 142 -> won,
                      143 -> lost (amoCRM's system statuses, the same in every pipeline), else open.
                      Event id amocrm:<account>:lead:<id>:status:<status_id>:<updated_at>.
  Both: pipeline=pipeline_id, amount=price (account currency = config `currency`, default KZT,
  Decimal), identity {"deal": "amocrm:<id>"}, utm_* from custom fields named or coded utm_source...
  (amoCRM's tracking fields), anonymous_id / user_id / utm_* from custom fields mapped by id in the
  config `fields` {field_id: anonymous_id|user_id|utm_source|...}. Timestamp updated_at
  (last_modified, created_at, date_create as fallbacks; add prefers created_at).
* leads[update]    -> ignored. amoCRM sends it for every edit (name, responsible, tags, any field)
                      and again beside leads[status] on a stage move, so mapping it would duplicate
                      stage events under other ids. Known gap: a price edited without a stage move
                      is not seen (follow-up: an amount-only DealChange keyed on the price).
* contacts[add|update][N] -> identify drafts linking {"crm_contact": "amocrm:<id>"} with the phones
                      and emails (custom fields coded PHONE / EMAIL, raw: the collector normalises
                      and hashes them) and every linked lead {"deal": "amocrm:<lead>"}. A draft
                      carries one value per kind, so a contact becomes one draft per linked lead
                      (zipped with its phones and emails; extra phones/emails get drafts of their
                      own). All drafts share the crm_contact, so the identity graph joins them.
                      Event ids amocrm:<account>:contact:<id>:<action>:<updated_at> plus
                      ":lead:<lead id>" or ":ids:<n>" (no phone or email in an id).
* everything else (leads[delete|restore|responsible|note], companies, customers, tasks, talks,
  unsorted, ...) -> accepted, listed in Accepted.ignored.

A request whose form holds no amoCRM entity at all is refused (schema_violation), so a wrong URL
is noticed. Reply: 200 {"ok":true}. Retry policy of amoCRM is UNCONFIRMED (FORMATS.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from itertools import zip_longest
from typing import Any


from pydantic import ValidationError

from schemas.envelope import IDENTIFY
from schemas.families import DEAL, DealChange
from schemas.reasons import RejectReason
from schemas.values import reason_of, time_problem

from .base import Accepted, Draft, Refused, VendorRequest, VendorResult, not_configured
from .base import why as _why
from .forms import parse_form

VENDOR = "amocrm"
CRM = "amocrm"

MAX_DRAFTS = 1_000
MAX_IDS_PER_KIND = 10  # phones / emails taken from one contact

ENTITIES = frozenset({"leads", "contacts", "companies", "customers", "tasks", "catalogs", "talks", "unsorted",
                      "messages", "notes", "events"})
STAGE_KINDS = ("lead", "open", "won", "lost")
DEFAULT_STAGES = {"142": "won", "143": "lost"}
UTM_KEYS = ("source", "medium", "campaign", "content", "term")
FIELD_TARGETS = frozenset({"anonymous_id", "user_id"} | {f"utm_{k}" for k in UTM_KEYS})

_ID = re.compile(r"[0-9]{1,20}")
_SECONDS = re.compile(r"[0-9]{1,11}")
_PRICE = re.compile(r"[0-9]{1,18}(?:[.,][0-9]{1,6})?")
_CURRENCY = re.compile(r"[A-Z]{3}")


# ---------------------------------------------------------------------------------------------
# the mapper


@dataclass(frozen=True)
class _Settings:
    currency: str
    stages: dict[str, str]
    fields: dict[str, str]  # custom field id -> anonymous_id | user_id | utm_*

    def stage_kind(self, status_id: str) -> str:
        return self.stages.get(status_id) or DEFAULT_STAGES.get(status_id) or "open"


def map_request(req: VendorRequest) -> VendorResult:
    if all(req.config.get(key) in (None, "") for key in ("account_id", "subdomain")):
        return not_configured(VENDOR, "the amoCRM account (config account_id or subdomain)")
    form = parse_form(req.body)
    if isinstance(form, Refused):
        return Refused(form.reason, f"{VENDOR}: {form.detail}", form.status)
    if not form:
        return Accepted((), ignored="empty body")
    if not any(k in ENTITIES for k in form):
        names = ", ".join(sorted(form)[:5])
        return Refused(RejectReason.schema_violation,
                       f"{VENDOR}: no amoCRM entity (leads[...], contacts[...]) in the form; top-level keys: {names[:200]}")
    account = form.get("account") if isinstance(form.get("account"), dict) else {}
    mismatch = _check_account(account, req.config)
    if mismatch:
        return mismatch
    settings = _settings(req.config)
    if isinstance(settings, Refused):
        return settings
    acct = _text(account.get("id")) or _text(account.get("subdomain")) or "-"
    drafts: list[Draft] = []
    ignored: list[str] = []
    for entity, actions in form.items():
        if entity == "account":
            continue
        if entity not in ENTITIES or not isinstance(actions, dict):
            ignored.append(entity)
            continue
        for action, items in actions.items():
            handler = _HANDLERS.get((entity, action))
            if handler is None:
                ignored.append(f"{entity}[{action}]")
                continue
            if not isinstance(items, dict):
                return Refused(RejectReason.schema_violation,
                               f"{VENDOR}: {entity}[{action}] must hold entities ({entity}[{action}][0][id]=...)")
            for n, item in items.items():
                where = f"{entity}[{action}][{n}]"
                if not isinstance(item, dict):
                    return Refused(RejectReason.schema_violation, f"{VENDOR}: {where} must hold fields ({where}[id]=...)")
                out = handler(item, where, action, acct, settings, req)
                if isinstance(out, Refused):
                    return Refused(out.reason, f"{VENDOR}: {where}: {out.detail}", out.status)
                if isinstance(out, str):
                    ignored.append(f"{where} ({out})")
                    continue
                drafts.extend(out)
                if len(drafts) > MAX_DRAFTS:
                    return Refused(RejectReason.too_large, f"{VENDOR}: more than {MAX_DRAFTS} events in one request", 413)
    note = ("ignored: " + ", ".join(ignored))[:500] if ignored else ""
    return Accepted(tuple(drafts), ignored=note)


def _check_account(account: dict[str, Any], config: Mapping[str, Any]) -> Refused | None:
    for key, field in (("account_id", "id"), ("subdomain", "subdomain")):
        expected = config.get(key)
        if expected in (None, ""):
            continue
        given = _text(account.get(field))
        if given is None:
            return Refused(RejectReason.unknown_key, f"{VENDOR}: account[{field}] is missing but {key} is configured "
                           f"for this project", 401)
        if given.casefold() != str(expected).strip().casefold():
            return Refused(RejectReason.unknown_key, f"{VENDOR}: account[{field}] {given[:64]!r} is not this project's "
                           f"configured {key}", 401)
    return None


def _settings(config: Mapping[str, Any]) -> _Settings | Refused:
    def bad(what: str) -> Refused:
        return Refused(RejectReason.schema_violation, f"{VENDOR}: project setting {what} "
                       f"(moneytrail projects configure <project> {VENDOR} ...)")

    currency = str(config.get("currency") or "KZT").strip().upper()
    if not _CURRENCY.fullmatch(currency):
        return bad(f"currency {currency[:16]!r} is not a 3-letter ISO code")
    stages = config.get("stages") or {}
    if not isinstance(stages, Mapping) or not all(v in STAGE_KINDS for v in stages.values()):
        return bad("stages must be an object {status_id: \"lead\"|\"open\"|\"won\"|\"lost\"}")
    fields = config.get("fields") or {}
    if not isinstance(fields, Mapping) or not all(v in FIELD_TARGETS for v in fields.values()):
        return bad("fields must be an object {custom_field_id: " + "|".join(sorted(FIELD_TARGETS)) + "}")
    return _Settings(currency, {str(k).strip(): v for k, v in stages.items()},
                     {str(k).strip(): v for k, v in fields.items()})


def _lead(item: dict[str, Any], where: str, action: str, acct: str, cfg: _Settings,
          req: VendorRequest) -> list[Draft] | Refused:
    lead_id = _required_id(item, "id")
    if isinstance(lead_id, Refused):
        return lead_id
    status = _required_id(item, "status_id")
    if isinstance(status, Refused):
        return status
    previous = _optional_id(item, "old_status_id")
    pipeline = _optional_id(item, "pipeline_id")
    for value in (previous, pipeline):
        if isinstance(value, Refused):
            return value
    amount = _price(item.get("price"))
    if isinstance(amount, Refused):
        return amount
    order = ("created_at", "date_create", "updated_at", "last_modified") if action == "add" else \
            ("updated_at", "last_modified", "created_at", "date_create")
    when = _when(item, order, req.received_at)
    if isinstance(when, Refused):
        return when
    at, secs = when
    anonymous_id, user_id, campaign = _custom(item, cfg)

    def draft(kind: str, event_id: str, previous_stage: str | None) -> Draft | Refused:
        try:
            change = DealChange(crm=CRM, deal_id=lead_id, stage=status, stage_kind=kind, pipeline=pipeline,
                                amount=amount, currency=cfg.currency if amount is not None else None,
                                previous_stage=previous_stage)
        except ValidationError as exc:
            return Refused(reason_of(exc), _why(exc))
        return Draft(schema=DEAL, event_id=event_id, timestamp=at, properties=change,
                     identity={"deal": f"{CRM}:{lead_id}"}, anonymous_id=anonymous_id, user_id=user_id,
                     campaign=campaign)

    moved = f"amocrm:{acct}:lead:{lead_id}:status:{status}" + (f":{secs}" if secs is not None else "")
    out: list[Draft | Refused] = []
    if action == "add":
        out.append(draft("lead", f"amocrm:{acct}:lead:{lead_id}:add", None))
        if cfg.stage_kind(status) in ("won", "lost"):
            out.append(draft(cfg.stage_kind(status), moved, None))
    else:
        out.append(draft(cfg.stage_kind(status), moved, previous))
    for d in out:
        if isinstance(d, Refused):
            return d
    return out  # type: ignore[return-value]


def _contact(item: dict[str, Any], where: str, action: str, acct: str, cfg: _Settings,
             req: VendorRequest) -> list[Draft] | Refused | str:
    contact_id = _required_id(item, "id")
    if isinstance(contact_id, Refused):
        return contact_id
    when = _when(item, ("updated_at", "last_modified", "created_at", "date_create"), req.received_at)
    if isinstance(when, Refused):
        return when
    at, secs = when
    anonymous_id, user_id, campaign = _custom(item, cfg)
    phones: list[str] = []
    emails: list[str] = []
    for field in _custom_fields(item):
        code = (_text(field.get("code")) or "").upper()
        target = phones if code == "PHONE" else emails if code == "EMAIL" else None
        if target is None:
            continue
        for value in _field_values(field):
            if len(value) <= 254 and value not in target and len(target) < MAX_IDS_PER_KIND:
                target.append(value)
    leads: list[str] = []
    linked = item.get("linked_leads_id")
    if isinstance(linked, dict):
        for key, entry in linked.items():
            lead = _text(entry.get("ID")) if isinstance(entry, dict) else None
            lead = lead or key
            if not _ID.fullmatch(lead):
                return Refused(RejectReason.schema_violation, f"linked_leads_id[{key[:40]}] is not a lead id")
            if lead not in leads:
                leads.append(lead)
    if not (phones or emails or leads or anonymous_id or user_id):
        return "no phone, email or linked lead"
    base = f"amocrm:{acct}:contact:{contact_id}:{action}" + (f":{secs}" if secs is not None else "")
    drafts = []
    rows = list(zip_longest(leads, phones, emails)) or [(None, None, None)]
    for n, (lead, phone, email) in enumerate(rows):
        identity = {"crm_contact": f"{CRM}:{contact_id}"}
        if lead:
            identity["deal"] = f"{CRM}:{lead}"
        if phone:
            identity["phone"] = phone
        if email:
            identity["email"] = email
        suffix = f":lead:{lead}" if lead else f":ids:{n}" if n else ""
        drafts.append(Draft(schema=IDENTIFY, event_id=base + suffix, timestamp=at, identity=identity,
                            anonymous_id=anonymous_id, user_id=user_id, campaign=campaign))
    return drafts


_HANDLERS = {
    ("leads", "add"): _lead,
    ("leads", "status"): _lead,
    ("contacts", "add"): _contact,
    ("contacts", "update"): _contact,
}


# ---------------------------------------------------------------------------------------------
# field helpers


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _required_id(item: dict[str, Any], key: str) -> str | Refused:
    value = _text(item.get(key))
    if value is None:
        return Refused(RejectReason.schema_violation, f"{key} is required")
    if not _ID.fullmatch(value):
        return Refused(RejectReason.schema_violation, f"{key} {value[:40]!r} is not a numeric id")
    return value


def _optional_id(item: dict[str, Any], key: str) -> str | None | Refused:
    if _text(item.get(key)) is None:
        return None
    return _required_id(item, key)


def _price(raw: Any) -> Decimal | None | Refused:
    text = _text(raw)
    if text is None:
        return None
    text = text.replace(" ", "").replace("\u00a0", "")
    if not _PRICE.fullmatch(text):
        return Refused(RejectReason.schema_violation, f"price {text[:40]!r} is not a non-negative amount")
    return Decimal(text.replace(",", "."))


def _when(item: dict[str, Any], keys: tuple[str, ...], default: datetime) -> tuple[datetime, int | None] | Refused:
    """The first present unix-seconds field as an aware UTC time (and its seconds, for event ids)."""
    for key in keys:
        value = item.get(key)
        if value is None or value == "":
            continue
        text = value.strip() if isinstance(value, str) else ""
        if not _SECONDS.fullmatch(text):
            return Refused(RejectReason.schema_violation, f"{key} {str(value)[:40]!r} is not unix seconds")
        secs = int(text)
        try:
            at = datetime.fromtimestamp(secs, UTC)
        except (OverflowError, ValueError, OSError):
            at = None
        problem = time_problem(at, key) if at is not None else None
        if at is None or problem is not None:  # refused here, with the field's name, not later at the edge
            return Refused(RejectReason.time_out_of_range,
                           problem.detail if problem else f"{key} {text[:40]} is out of range")
        return at, secs
    return default, None


def _custom_fields(item: dict[str, Any]) -> list[dict[str, Any]]:
    fields = item.get("custom_fields")
    if not isinstance(fields, dict):
        return []
    return [f for f in fields.values() if isinstance(f, dict)]


def _field_values(field: dict[str, Any]) -> list[str]:
    """values[j][value] (current format) or values[j] (older captures), non-empty, stripped."""
    values = field.get("values")
    if isinstance(values, str):
        values = {"0": values}
    if not isinstance(values, dict):
        return []
    out = []
    for entry in values.values():
        value = _text(entry.get("value")) if isinstance(entry, dict) else _text(entry)
        if value:
            out.append(value)
    return out


def _custom(item: dict[str, Any], cfg: _Settings) -> tuple[str | None, str | None, dict[str, str]]:
    """anonymous_id, user_id and utm_* carried in custom fields (by configured id, or utm_* by name/code)."""
    anonymous_id = user_id = None
    campaign: dict[str, str] = {}
    for field in _custom_fields(item):
        target = cfg.fields.get(_text(field.get("id")) or "")
        if target is None:
            for label in (_text(field.get("code")), _text(field.get("name"))):
                if label and label.lower() in FIELD_TARGETS and label.lower().startswith("utm_"):
                    target = label.lower()
                    break
        values = _field_values(field)
        if target is None or not values:
            continue
        value = values[0][:256]
        if target == "anonymous_id":
            anonymous_id = anonymous_id or value
        elif target == "user_id":
            user_id = user_id or value
        else:
            campaign.setdefault(target[4:], value)
    return anonymous_id, user_id, campaign


