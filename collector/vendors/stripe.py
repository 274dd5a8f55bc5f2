"""Stripe webhooks (one event per POST, JSON), signed with the endpoint's secret.

Configure: `moneytrail projects configure <project> stripe signing_secrets='["whsec_..."]'`
(a single `signing_secret=whsec_...` also works; list both secrets while rolling one), optional
`tolerance_s` (default 300, the stripe-python default) and `client_reference_id` (what the Checkout
Session's client_reference_id holds: `anonymous_id` (default: our tracker's id, set it when creating
the session), `user_id`, `order`, or `ignore`).

Signature (Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]): HMAC-SHA256 with the whsec_ string as
the key over f"{t}." + the raw body, any v1 may match (secret rotation sends one per secret), compared
in constant time; a genuine signature older than tolerance_s (relative to received_at) is a replay and
is refused as stale. Parsing mirrors stripe-python's WebhookSignature.verify_header, except that t must
be plain digits.

Counted (schema payment/1-0-0):
  checkout.session.completed              when payment_status == "paid" (delayed methods: "unpaid",
                                          then async_payment_succeeded; "no_payment_required": nothing)
  checkout.session.async_payment_succeeded
  payment_intent.succeeded                amount_received
  charge.refunded                         a refund of what THIS event refunded: amount_refunded minus
                                          previous_attributes.amount_refunded (cumulative otherwise)
Every other type is answered 2xx with nothing counted (Stripe retries anything else for days).

One Stripe event, one event id; one payment, one payment id. Every draft's event_id is
"stripe:<evt_...>" (Stripe repeats the evt id on each retry, so retries dedupe). Checkout fires
checkout.session.completed AND payment_intent.succeeded for the same money: both drafts carry the same
payment_id, so the conversions they make share one conversion id ("payment:stripe:<payment_id>") and
subject (the payment identifier) and the money is counted once downstream. They must NOT share an
event_id: the warehouse keeps one raw row per event_id (the last received), and the PaymentIntent copy
lacks the Session's anonymous id, campaign and phone (Session metadata and client_reference_id are not
copied to the PaymentIntent), so a replay from raw_events would lose the visitor whenever the
PaymentIntent event arrived last (Stripe does not order deliveries). With two raw rows both copies'
identity links survive any arrival order and any replay.
The payment id is the PaymentIntent's id, except for a PaymentIntent an invoice created
(PaymentIntent.invoice: subscriptions; the Session then has payment_intent null and names the
invoice): the invoice's id, which is what that Session falls back to, so a subscription's first
payment is one payment too. A Session with neither falls back to its own id. Refunds carry
refund_of = the same id (charge.invoice, else charge.payment_intent, else the charge). From API
version 2025-03-31 Stripe dropped PaymentIntent.invoice: on such endpoints subscribe a subscription
Checkout to checkout.session.completed OR payment_intent.succeeded, not both.

Identity: email and phone (customer_details, customer_email, receipt_email, billing_details,
shipping), the Customer as crm_contact "stripe:cus_..." (Stripe's customer record is the merchant's
person-grade customer id, stable across that customer's payments; it is not the merchant's own
login id, which is `user`), the payment id as payment "stripe:pi_..." (or "stripe:in_..."; vendor-made
ids are namespaced like amocrm.py's, so two systems never collide; a refund carries its payment's,
which is how it joins), metadata.order_id as order (the merchant's own id: not namespaced),
metadata.deal_id as deal; our anonymous id from metadata.moneytrail_anonymous_id /
metadata.anonymous_id or client_reference_id; metadata.user_id (the merchant's login id) as user_id;
metadata utm_* as the campaign. Checkout Session metadata is NOT copied to the PaymentIntent: pass
payment_intent_data.metadata too if payment_intent.succeeded should carry it.

Money: integer minor units; zero-decimal currencies are already major units, three-decimal ones are
thousandths.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Mapping, Sequence

import orjson
from pydantic import ValidationError

from schemas.families import PAYMENT, Payment
from schemas.reasons import RejectReason
from schemas.values import reason_of

from .base import Accepted, Draft, Refused, VendorRequest, VendorResult, not_configured
from .base import why as _why

HEADER = "stripe-signature"
DEFAULT_TOLERANCE_S = 300
# docs.stripe.com/currencies (via FORMATS.md): amounts in these are whole units already
ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND",
                          "VUV", "XAF", "XOF", "XPF"})
# docs.stripe.com/currencies "three-decimal currencies" (not confirmed from a source in FORMATS.md)
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})

PAYMENT_TYPES = ("checkout.session.completed", "checkout.session.async_payment_succeeded", "payment_intent.succeeded")
REFUND_TYPES = ("charge.refunded",)
HANDLED = PAYMENT_TYPES + REFUND_TYPES
CLIENT_REFERENCE_MODES = ("anonymous_id", "user_id", "order", "ignore")

ANONYMOUS_ID_KEYS = ("moneytrail_anonymous_id", "anonymous_id", "anonymousId")
USER_ID_KEYS = ("moneytrail_user_id", "user_id", "userId")
_T = re.compile(r"^[0-9]{1,12}$")


# --- signature -------------------------------------------------------------------------------

def signing_secrets(config: Mapping[str, Any]) -> list[str]:
    """signing_secrets (a list, or one string, comma-separated allowed) plus signing_secret."""
    found: list[str] = []
    for key in ("signing_secrets", "signing_secret"):
        value = config.get(key)
        items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else []
        found.extend(s.strip() for s in items if isinstance(s, str) and s.strip())
    return list(dict.fromkeys(found))


def tolerance_of(config: Mapping[str, Any]) -> int | Refused:
    value = config.get("tolerance_s", DEFAULT_TOLERANCE_S)
    if value is None:
        return DEFAULT_TOLERANCE_S
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return Refused(RejectReason.bad_signature, f"stripe: tolerance_s must be a positive whole number of seconds, "
                       f"got {value!r} (replay protection cannot be switched off)", 401)
    return value


def verify_signature(body: bytes, header: str | None, secrets: Sequence[str], tolerance_s: int,
                     now: datetime) -> Refused | None:
    """None when some v1 in the header is HMAC-SHA256(secret, f"{t}." + body) for some secret and t
    is not older than tolerance_s before now; otherwise why not."""
    if not header:
        return Refused(RejectReason.bad_signature, "stripe: no Stripe-Signature header")
    items = [item.split("=", 2) for item in header.split(",")]
    stamps = [i[1] if len(i) > 1 else "" for i in items if i[0] == "t"]
    if not stamps or not _T.match(stamps[0]):
        return Refused(RejectReason.bad_signature, "stripe: Stripe-Signature has no t=<unix seconds>")
    candidates = [i[1] for i in items if i[0] == "v1" and len(i) > 1]
    if not candidates:
        return Refused(RejectReason.bad_signature, "stripe: Stripe-Signature has no v1 signature")
    t = int(stamps[0])
    signed = f"{t}.".encode() + body
    given = [c.encode("utf-8", "replace") for c in candidates]
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode("utf-8", "surrogatepass"), signed, hashlib.sha256).hexdigest().encode()
        if any(hmac.compare_digest(expected, g) for g in given):
            matched = True
    if not matched:
        return Refused(RejectReason.bad_signature, f"stripe: no v1 in Stripe-Signature matches HMAC-SHA256 of "
                       f"t.body with the {len(secrets)} configured signing secret(s)")
    age = now.timestamp() - t
    if t < now.timestamp() - tolerance_s:
        return Refused(RejectReason.stale_signature, f"stripe: signature timestamp t={t} is {int(age)} s old; "
                       f"at most {tolerance_s} s (a replayed request?)")
    return None


# --- mapping ---------------------------------------------------------------------------------

def map_request(req: VendorRequest) -> VendorResult:
    secrets = signing_secrets(req.config)
    if not secrets:
        return not_configured("stripe", "the webhook signing secret (signing_secrets)")
    tolerance = tolerance_of(req.config)
    if isinstance(tolerance, Refused):
        return tolerance
    refused = verify_signature(req.body, req.header(HEADER), secrets, tolerance, req.received_at)
    if refused is not None:
        return refused
    try:
        event = orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        return Refused(RejectReason.invalid_json, f"stripe: body is not JSON: {exc}")
    if not isinstance(event, dict):
        return Refused(RejectReason.schema_violation, "stripe: body must be an event object")
    evt_id, kind = event.get("id"), event.get("type")
    if not isinstance(evt_id, str) or not evt_id or not isinstance(kind, str) or not kind:
        return Refused(RejectReason.schema_violation, "stripe: an event needs a string id and type")
    if kind not in HANDLED:
        return Accepted((), ignored=f"stripe: {kind} is not counted (counted: {', '.join(HANDLED)})")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        return Refused(RejectReason.schema_violation, f"stripe: {kind} {evt_id} has no data.object")
    mode = req.config.get("client_reference_id") or "anonymous_id"
    if mode not in CLIENT_REFERENCE_MODES:
        return Refused(RejectReason.schema_violation, f"stripe: setting client_reference_id must be one of "
                       f"{', '.join(CLIENT_REFERENCE_MODES)}; got {mode!r}", 500)
    at = _time(event.get("created"), req.received_at)
    try:
        if kind.startswith("checkout.session."):
            out = _session(evt_id, kind, obj, at, mode)
        elif kind == "payment_intent.succeeded":
            out = _payment_intent(evt_id, obj, at)
        else:
            out = _refund(evt_id, obj, data.get("previous_attributes"), at)
    except (ValidationError, ValueError, TypeError) as exc:
        return Refused(reason_of(exc), f"stripe: {kind} {evt_id}: {_why(exc)}")
    if isinstance(out, str):
        return Accepted((), ignored=f"stripe: {kind} {evt_id}: {out}")
    return Accepted((out,))


def _session(evt_id: str, kind: str, s: dict[str, Any], at: datetime, mode: str) -> Draft | str:
    status = s.get("payment_status")
    if kind == "checkout.session.completed" and status != "paid":
        if status == "unpaid":
            return ("payment_status is 'unpaid' (a delayed payment method): counted on "
                    "checkout.session.async_payment_succeeded")
        return f"payment_status is {status!r}: no money was taken"
    details = _dict(s.get("customer_details"))
    meta = _meta(s)
    pi = _id(s.get("payment_intent"))
    payment_id = pi or _id(s.get("invoice")) or _opt(s.get("id"))
    if not payment_id:
        raise ValueError("the session has no id")
    who = _who(meta, email=details.get("email") or s.get("customer_email"), phone=details.get("phone"),
               customer=s.get("customer"), payment=payment_id)
    anonymous_id, user_id = _ids_of(meta)
    ref = _opt(s.get("client_reference_id"))
    if ref:
        if mode == "anonymous_id" and not anonymous_id:
            anonymous_id = ref
        elif mode == "user_id" and not user_id:
            user_id = ref
        elif mode == "order":
            who.setdefault("order", ref)
    payment = _payment(payment_id, "payment", _major(s.get("amount_total"), s.get("currency"), "amount_total"),
                       s.get("currency"), who, meta)
    return Draft(schema=PAYMENT, event_id=f"stripe:{evt_id}", timestamp=at, properties=payment,
                 identity=who, anonymous_id=anonymous_id, user_id=user_id, campaign=_campaign(meta))


def _payment_intent(evt_id: str, pi: dict[str, Any], at: datetime) -> Draft | str:
    pi_id = _opt(pi.get("id"))
    if not pi_id:
        raise ValueError("the PaymentIntent has no id")
    received = pi.get("amount_received")
    minor = received if received is not None else pi.get("amount")
    amount = _major(minor, pi.get("currency"), "amount_received")
    if amount == 0:
        return "amount_received is 0"
    meta = _meta(pi)
    shipping = _dict(pi.get("shipping"))
    payment_id = _id(pi.get("invoice")) or pi_id  # the invoice that created it: what its Session names
    who = _who(meta, email=pi.get("receipt_email"), phone=shipping.get("phone"), customer=pi.get("customer"),
               payment=payment_id)
    anonymous_id, user_id = _ids_of(meta)
    payment = _payment(payment_id, "payment", amount, pi.get("currency"), who, meta)
    return Draft(schema=PAYMENT, event_id=f"stripe:{evt_id}", timestamp=at, properties=payment,
                 identity=who, anonymous_id=anonymous_id, user_id=user_id, campaign=_campaign(meta))


def _refund(evt_id: str, ch: dict[str, Any], previous: Any, at: datetime) -> Draft | str:
    total = ch.get("amount_refunded")
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise ValueError(f"amount_refunded must be a non-negative integer, got {total!r}")
    before = previous.get("amount_refunded") if isinstance(previous, dict) else None
    if before is None:
        minor = total
    elif isinstance(before, bool) or not isinstance(before, int):
        raise ValueError(f"previous_attributes.amount_refunded must be an integer, got {before!r}")
    else:
        minor = total - before
    if minor <= 0:
        return f"nothing newly refunded (amount_refunded {total}, before {before})"
    charge_id = _opt(ch.get("id"))
    original = _id(ch.get("invoice")) or _id(ch.get("payment_intent")) or charge_id
    if not original:
        raise ValueError("the charge has neither an id nor a payment_intent")
    meta = _meta(ch)
    billing = _dict(ch.get("billing_details"))
    who = _who(meta, email=billing.get("email") or ch.get("receipt_email"), phone=billing.get("phone"),
               customer=ch.get("customer"), payment=original)
    anonymous_id, user_id = _ids_of(meta)
    payment = _payment(evt_id, "refund", _major(minor, ch.get("currency"), "amount_refunded"), ch.get("currency"),
                       who, meta, refund_of=original)
    return Draft(schema=PAYMENT, event_id=f"stripe:{evt_id}", timestamp=at, properties=payment, identity=who,
                 anonymous_id=anonymous_id, user_id=user_id)


# --- helpers ---------------------------------------------------------------------------------

def _major(minor: Any, currency: Any, field: str) -> Decimal:
    """Stripe's integer minor units as a Decimal in major units."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise ValueError(f"{field} must be an integer amount in minor units, got {minor!r}")
    if minor < 0:
        raise ValueError(f"{field} must not be negative, got {minor}")
    code = currency.upper() if isinstance(currency, str) else ""
    if code in ZERO_DECIMAL:
        return Decimal(minor)
    return Decimal(minor).scaleb(-3 if code in THREE_DECIMAL else -2)


def _payment(payment_id: str, kind: str, amount: Decimal, currency: Any, who: dict[str, str],
             meta: dict[str, str], refund_of: str | None = None) -> Payment:
    if not isinstance(currency, str):
        raise ValueError(f"currency must be a string, got {currency!r}")
    return Payment(provider="stripe", payment_id=payment_id, kind=kind, amount=amount, currency=currency.upper(),
                   status="succeeded", order_id=who.get("order"), deal_id=meta.get("deal_id") or None,
                   refund_of=refund_of)


def _who(meta: dict[str, str], *, email: Any, phone: Any, customer: Any, payment: str | None) -> dict[str, str]:
    who: dict[str, str] = {}
    customer_id = _id(customer)
    for kind, value in (("email", _opt(email) or meta.get("email")), ("phone", _opt(phone) or meta.get("phone")),
                        ("crm_contact", customer_id and f"stripe:{customer_id}"),
                        ("payment", payment and f"stripe:{payment}"),
                        ("order", meta.get("order_id") or meta.get("orderId")),
                        ("deal", meta.get("deal_id")), ("promo", meta.get("promo_code"))):
        if value:
            who[kind] = value
    return who


def _ids_of(meta: dict[str, str]) -> tuple[str | None, str | None]:
    anonymous_id = next((meta[k] for k in ANONYMOUS_ID_KEYS if meta.get(k)), None)
    user_id = next((meta[k] for k in USER_ID_KEYS if meta.get(k)), None)
    return anonymous_id, user_id


def _campaign(meta: dict[str, str]) -> dict[str, str]:
    return {k[4:]: v for k, v in meta.items() if k.startswith("utm_") and len(k) > 4 and v}


def _meta(obj: dict[str, Any]) -> dict[str, str]:
    """metadata: string keys to non-empty string values (Stripe only stores strings)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return {}
    return {k: v.strip() for k, v in meta.items() if isinstance(k, str) and isinstance(v, str) and v.strip()}


def _id(value: Any) -> str | None:
    """An id field, or the id of an expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return _opt(value)


def _opt(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _time(created: Any, fallback: datetime) -> datetime:
    if isinstance(created, bool) or not isinstance(created, int):
        return fallback
    try:
        return datetime.fromtimestamp(created, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return fallback


