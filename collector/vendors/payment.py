"""Generic payment webhook (our own JSON), for payment systems we have no mapper for yet and for a
shop's own backend. Signed: X-Moneytrail-Signature: sha256=<hex HMAC-SHA256 of the raw body> with
the secret configured by `moneytrail projects configure <project> payment secret=<...>`.

Body: one payment or {"payments": [...]}:
  {"payment_id": "ord-1001-pay", "kind": "payment" | "refund", "amount": "15000.00",
   "currency": "KZT", "paid_at": "2026-11-20T10:00:00+05:00", "order_id": "1001", "deal_id": "...",
   "refund_of": "...", "status": "succeeded",
   "customer": {"phone": "...", "email": "...", "crm_contact_id": "...", "user_id": "...",
                "anonymous_id": "..."}, "promo_code": "..."}
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from schemas.families import PAYMENT, Payment
from schemas.reasons import RejectReason
from schemas.values import reason_of

from .base import Accepted, Draft, Refused, VendorRequest, VendorResult
from .base import why as _why
from .signing import signed_json_items



def map_request(req: VendorRequest) -> VendorResult:
    items = signed_json_items(req, "payment", "payments", "payment")
    if isinstance(items, Refused):
        return items
    items, _batched = items
    drafts = []
    for n, item in enumerate(items):
        draft = _draft(item, req)
        if isinstance(draft, Refused):
            return Refused(draft.reason, f"payments[{n}]: {draft.detail}", draft.status)
        drafts.append(draft)
    return Accepted(tuple(drafts))


def _draft(item: dict[str, Any], req: VendorRequest) -> Draft | Refused:
    customer = item.get("customer") if isinstance(item.get("customer"), dict) else {}
    try:
        payment = Payment(
            provider=str(item.get("provider") or "generic"),
            payment_id=str(item.get("payment_id") or ""),
            kind=item.get("kind", "payment"),
            amount=item.get("amount"),
            currency=str(item.get("currency", "")).upper(),
            status=str(item.get("status") or "succeeded"),
            order_id=_opt(item.get("order_id")),
            deal_id=_opt(item.get("deal_id")),
            refund_of=_opt(item.get("refund_of")),
        )
        paid_at = datetime.fromisoformat(item["paid_at"]) if item.get("paid_at") else req.received_at
    except (ValidationError, ValueError, TypeError) as exc:
        return Refused(reason_of(exc), _why(exc))
    if not payment.payment_id:
        return Refused(RejectReason.schema_violation, "payment_id is required")
    identity = {"payment": payment.payment_id}
    for kind, key in (("phone", "phone"), ("email", "email"), ("crm_contact", "crm_contact_id"),
                      ("order", "order_id"), ("deal", "deal_id"), ("promo", "promo_code")):
        value = customer.get(key) if key in customer else item.get(key)
        if value:
            identity[kind] = str(value)
    return Draft(schema=PAYMENT, event_id=f"payment:{payment.kind}:{payment.payment_id}", timestamp=paid_at,
                 properties=payment, identity=identity, anonymous_id=_opt(customer.get("anonymous_id")),
                 user_id=_opt(customer.get("user_id")))


def _opt(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


