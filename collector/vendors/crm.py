"""Generic CRM webhook (our own JSON), for CRMs we have no mapper for (1C, RetailCRM, a home-grown
one) and for a shop's own backend. Signed like the generic payment webhook:
    X-Moneytrail-Signature: sha256=<hex HMAC-SHA256 of the raw body>
with the secret set by `moneytrail projects configure <project> crm secret=<...>`.
URL: https://<collector>/webhooks/crm/<project webhook secret>, POST, Content-Type application/json.

Body: one deal change, or {"deals": [<deal change>, ...]} (at most 1000):
  {
    "deal_id": "D-1001",              required, string or integer
    "stage": "won",                   required: the CRM's own stage id or name
    "stage_kind": "won",              required: lead | open | won | lost (what funnels and sales count)
    "pipeline": "retail",             optional
    "amount": "150000.00",            optional, major units (string or JSON number), >= 0
    "currency": "KZT",                required when amount is given (ISO 4217)
    "changed_at": "2026-11-20T10:00:00+05:00",  optional: ISO 8601 with an offset, or unix seconds;
                                      default: when we received it
    "previous_stage": "invoice",      optional
    "crm": "1c",                      optional, default "generic"
    "contact": {"crm_contact_id": "C-77", "phone": "+7 701 123 45 67", "email": "buyer@example.com",
                "anonymous_id": "<our tracker's anonymous id>", "user_id": "<the site's user id>"},
    "campaign": {"source": "google", "medium": "cpc", "campaign": "...", "content": "...", "term": "..."}
  }
Each change -> a DealChange draft with identity {"deal": deal_id, "crm_contact", "phone", "email"}
(raw ids, as the generic payment webhook uses, so a shop sending both links deals and payments; phone
and email are normalised and hashed by the collector). Event id crm:<crm>:deal:<deal_id>:stage:<stage>
plus ":<changed_at unix seconds>" when changed_at is given: send changed_at, or a second entry into
the same stage is taken for a retry of the first. The whole request is refused if any change is
invalid (the detail names it: "deals[3]: stage_kind: ..."), so nothing is half-stored.
Reply: 200 {"ok":true}.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from schemas.families import DEAL, DealChange
from schemas.reasons import RejectReason
from schemas.values import reason_of

from .base import Accepted, Draft, Refused, VendorRequest, VendorResult
from .base import why as _why
from .signing import signed_json_items

VENDOR = "crm"
HEADER = "x-moneytrail-signature"
MAX_DEALS = 1_000
UTM_KEYS = ("source", "medium", "campaign", "content", "term")


def map_request(req: VendorRequest) -> VendorResult:
    items = signed_json_items(req, VENDOR, "deals", "deal change", MAX_DEALS)
    if isinstance(items, Refused):
        return items
    items, batched = items
    drafts = []
    for n, item in enumerate(items):
        draft = _draft(item, req)
        if isinstance(draft, Refused):
            where = f"deals[{n}]: " if batched else ""
            return Refused(draft.reason, where + draft.detail, draft.status)
        drafts.append(draft)
    return Accepted(tuple(drafts))


def _draft(item: dict[str, Any], req: VendorRequest) -> Draft | Refused:
    def bad(detail: str) -> Refused:
        return Refused(RejectReason.schema_violation, detail)

    contact = item.get("contact", {})
    if contact is None:
        contact = {}
    if not isinstance(contact, dict):
        return bad("contact must be an object")
    campaign = item.get("campaign", {})
    if campaign is None:
        campaign = {}
    if not isinstance(campaign, dict):
        return bad("campaign must be an object")
    deal_id = _id(item.get("deal_id"))
    if deal_id is None:
        return bad("deal_id is required (a string or an integer)")
    stage = _id(item.get("stage"))
    if stage is None:
        return bad("stage is required (a string)")
    if "stage_kind" not in item:
        return bad("stage_kind is required: lead | open | won | lost")
    amount = item.get("amount")
    if isinstance(amount, bool):
        return bad("amount must be a number or a decimal string")
    if amount not in (None, "") and not item.get("currency"):
        return bad("currency is required when amount is given")
    currency = item.get("currency")
    try:
        change = DealChange(
            crm=_id(item.get("crm")) or "generic",
            deal_id=deal_id,
            stage=stage,
            stage_kind=item.get("stage_kind"),
            pipeline=_id(item.get("pipeline")),
            amount=None if amount == "" else amount,
            currency=currency.strip().upper() if isinstance(currency, str) and currency.strip() else None,
            previous_stage=_id(item.get("previous_stage")),
        )
    except ValidationError as exc:  # amount: schemas.values (finite, digits, >= 0: a deal's value, not a refund)
        return Refused(reason_of(exc), _why(exc))
    changed = item.get("changed_at")
    at = _time(changed)
    if isinstance(at, str):
        return bad(at)
    identity = {"deal": change.deal_id}
    for kind, key in (("crm_contact", "crm_contact_id"), ("phone", "phone"), ("email", "email")):
        value = _id(contact.get(key))
        if value:
            identity[kind] = value
    utm = {k: str(v)[:256] for k in UTM_KEYS if isinstance(v := campaign.get(k), (str, int)) and str(v).strip()}
    event_id = f"crm:{change.crm}:deal:{change.deal_id}:stage:{change.stage}"
    if at is not None:
        event_id += f":{int(at.timestamp())}"
    return Draft(schema=DEAL, event_id=event_id, timestamp=at or req.received_at, properties=change,
                 identity=identity, anonymous_id=_id(contact.get("anonymous_id")), user_id=_id(contact.get("user_id")),
                 campaign=utm)


def _id(value: Any) -> str | None:
    """A string or integer identifier, stripped; None when absent or empty (bools and floats are not ids)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()[:512]
    return None


def _time(value: Any) -> datetime | None | str:
    """changed_at as an aware datetime; None when absent; an error text when unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not 0 <= value < 10**11:
            return f"changed_at {value!r} is not unix seconds"
        return datetime.fromtimestamp(int(value), UTC)
    if not isinstance(value, str):
        return "changed_at must be an ISO 8601 string or unix seconds"
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        return f"changed_at {value[:40]!r} is not ISO 8601"
    if at.tzinfo is None:
        return f"changed_at {value[:40]!r} needs a UTC offset (e.g. +05:00 or Z)"
    try:
        seconds = at.timestamp()
    except (OverflowError, ValueError):
        seconds = -1.0
    if not 0 <= seconds < 10**11:
        return f"changed_at {value[:40]!r} is out of range"
    return at


