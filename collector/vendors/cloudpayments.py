"""CloudPayments (in Kazakhstan: TipTop Pay, same format) notifications: form-encoded POST by default,
JSON when chosen in the cabinet (Content-Type says which, and a body starting with "{" is JSON whatever it says).

Configure: `moneytrail projects configure <project> cloudpayments api_secret=<"Пароль для API">`,
optional `currency=KZT` (Refund notifications carry no Currency: this is used for them; without it a
refund is refused so that CloudPayments retries it once the setting is there).

Signature: Content-HMAC = base64(HMAC-SHA256(api_secret, raw body)). X-Content-HMAC is the same HMAC
over the URL-decoded body (FORMATS.md: the exact rule is unconfirmed, so X-Content-HMAC is checked
against the URL-decoded body, with and without '+' as a space, and against the raw body). Either
header matching is enough; each comparison is constant-time and needs the secret.

Which notification: CloudPayments posts Check, Pay, Fail, Confirm, Refund, Cancel and Recurrent to the
URLs set in the cabinet, and several of them look alike (Check and Pay both say Status=Completed).
Point each at this webhook with ?type=<name> (…/webhooks/cloudpayments/<key>?type=pay); without it
the type is inferred: OperationType=Refund is a refund, Reason/ReasonCode is a fail, Status=Completed
is a payment (so do not point Check here without ?type=check), Status=Authorized waits for Confirm.

Counted (schema payment/1-0-0):
  pay / confirm with Status=Completed   kind payment, event_id "cloudpayments:payment:<TransactionId>"
                                        (a two-stage payment's Pay=Authorized and Confirm share the
                                        transaction, so it is counted once, on Confirm)
  refund                                kind refund, refund_of PaymentTransactionId,
                                        event_id "cloudpayments:refund:<TransactionId>"
Answered {"code":0} with nothing counted: check (before any other check, even of the signature:
moneytrail must never decline a payment, and stores nothing from a check), fail, cancel, recurrent,
Pay with Status=Authorized, card payouts.

Refusals: CloudPayments treats any answer other than HTTP 200 with {"code":0} as undelivered and
sends the notification again later (schedule unconfirmed), so a refusal's HTTP status only has to be
non-200: 401 for a missing/unconfigured signature (delivered after the secret is fixed), 400 for a
body that cannot be read. Money: decimal strings in major units ("15000.00").

Identity: TransactionId (the original's, for a refund) as payment "cloudpayments:<id>" (vendor-made
ids are namespaced; merchant-made ones are not); InvoiceId (our order number) as
order; Email; Phone when present; AccountId (the merchant's user id) as user_id unless it is an email
or a phone number, which go to email/phone instead (never raw personal data in user_id); Data /
JsonData (the merchant's JSON, a JSON string inside the form) for phone, email, order_id, deal_id,
promo_code, moneytrail_anonymous_id / anonymous_id (our anonymous id), user_id and utm_*.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping
from urllib.parse import parse_qsl, unquote_to_bytes

import orjson
from pydantic import ValidationError

from collector.privacy import normalise_phone
from schemas.families import PAYMENT, Payment
from schemas.reasons import RejectReason
from schemas.values import reason_of

from .base import Accepted, Draft, Refused, Reply, VendorRequest, VendorResult, not_configured
from .base import why as _why

REPLY = Reply(200, b'{"code":0}', "application/json")
TYPES = ("check", "pay", "fail", "confirm", "refund", "cancel", "recurrent")
ANONYMOUS_ID_KEYS = ("moneytrail_anonymous_id", "anonymous_id", "anonymousId")
USER_ID_KEYS = ("moneytrail_user_id", "user_id", "userId")
_PHONE_CHARS = re.compile(r"^\+?[0-9 ()\-]{10,20}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")


def signature_matches(secret: str, body: bytes, content_hmac: str | None, x_content_hmac: str | None) -> bool:
    key = secret.encode("utf-8", "surrogatepass")

    def mac(data: bytes) -> bytes:
        return base64.b64encode(hmac.new(key, data, hashlib.sha256).digest())

    def same(given: str | None, expected: bytes) -> bool:
        return bool(given) and hmac.compare_digest(given.strip().encode("utf-8", "replace"), expected)

    raw = mac(body)
    if same(content_hmac, raw):
        return True
    if not x_content_hmac:
        return False
    decoded = {raw, mac(unquote_to_bytes(body)), mac(unquote_to_bytes(body.replace(b"+", b" ")))}
    return any([same(x_content_hmac, expected) for expected in decoded])


def map_request(req: VendorRequest) -> VendorResult:
    if (req.query.get("type") or "").strip().lower() == "check":
        # Check is synchronous and anything but {"code":0} declines the buyer's payment: a wrong or
        # missing secret here must never cost the merchant a sale. Nothing of it is stored, so it
        # is answered without reading it.
        return Accepted((), REPLY, ignored="cloudpayments: a check notification is answered {\"code\":0}, unread")
    secret = req.config.get("api_secret")
    if not isinstance(secret, str) or not secret.strip():
        return not_configured("cloudpayments", "the API secret (api_secret)")
    if not req.header("content-hmac") and not req.header("x-content-hmac"):
        return Refused(RejectReason.bad_signature, "cloudpayments: no Content-HMAC header (turn on notification "
                       "signing? every CloudPayments notification carries one)", 401)
    if not signature_matches(secret.strip(), req.body, req.header("content-hmac"), req.header("x-content-hmac")):
        return Refused(RejectReason.bad_signature, "cloudpayments: Content-HMAC does not match "
                       "base64(HMAC-SHA256(api_secret, body)); is api_secret the cabinet's \"Пароль для API\"?", 401)
    fields = _fields(req)
    if isinstance(fields, Refused):
        return fields
    declared = (req.query.get("type") or "").strip().lower()
    if declared and declared not in TYPES:
        return Refused(RejectReason.unknown_type, f"cloudpayments: ?type={declared!r} is not one of {', '.join(TYPES)}")
    kind = declared or _infer(fields)
    if fields.get("OperationType") == "Refund" and kind in ("pay", "confirm"):
        kind = "refund"  # a Refund URL set with the wrong ?type= still carries OperationType=Refund
    if kind in ("check", "fail", "cancel", "recurrent"):
        return Accepted((), REPLY, ignored=f"cloudpayments: a {kind} notification is not counted")
    status = _opt(fields.get("Status"))
    if kind in ("pay", "confirm") and status != "Completed":
        wait = " (two-stage: counted on Confirm)" if status == "Authorized" else ""
        return Accepted((), REPLY, ignored=f"cloudpayments: {kind} with Status={status!r} is not counted{wait}")
    if kind == "pay" and fields.get("OperationType") not in (None, "", "Payment"):
        operation = fields.get("OperationType")
        return Accepted((), REPLY, ignored=f"cloudpayments: OperationType={operation!r} is not counted")
    if kind is None:
        return Accepted((), REPLY, ignored="cloudpayments: neither a payment (Status=Completed) nor a refund "
                        "(OperationType=Refund); add ?type=... to the notification URL")
    try:
        draft = _draft(kind == "refund", fields, req)
    except (ValidationError, ValueError, TypeError) as exc:
        return Refused(reason_of(exc), f"cloudpayments: {kind}: {_why(exc)}")
    return draft if isinstance(draft, Refused) else Accepted((draft,), REPLY)


def _fields(req: VendorRequest) -> dict[str, Any] | Refused:
    try:
        text = req.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Refused(RejectReason.invalid_utf8, f"cloudpayments: body is not UTF-8 at byte {exc.start}")
    content_type = (req.header("content-type") or "").lower()
    if "json" in content_type or text.lstrip().startswith("{"):  # signed already: sniffing is safe
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return Refused(RejectReason.invalid_json, f"cloudpayments: body is not JSON: {exc}")
        if not isinstance(data, dict):
            return Refused(RejectReason.schema_violation, "cloudpayments: a JSON notification must be an object")
        return data
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (ValueError, UnicodeDecodeError) as exc:
        return Refused(RejectReason.schema_violation, f"cloudpayments: the form body cannot be decoded: {exc}")
    return dict(pairs)


def _infer(fields: Mapping[str, Any]) -> str | None:
    if fields.get("OperationType") == "Refund":
        return "refund"
    if fields.get("Reason") not in (None, "") or fields.get("ReasonCode") not in (None, ""):
        return "fail"
    if fields.get("Status") in ("Completed", "Authorized"):
        return "pay"
    return None


def _draft(refund: bool, f: Mapping[str, Any], req: VendorRequest) -> Draft | Refused:
    tx = _opt(f.get("TransactionId"))
    if not tx:
        raise ValueError("TransactionId is required")
    original = _opt(f.get("PaymentTransactionId")) if refund else tx
    if not original:
        raise ValueError("PaymentTransactionId is required in a refund")
    amount = _decimal(f.get("Amount"), "Amount")
    currency = _opt(f.get("Currency")) or (_opt(req.config.get("currency")) if refund else None)
    if not currency:
        if refund:
            return Refused(RejectReason.schema_violation, "cloudpayments: a Refund notification carries no "
                           "Currency; set the account currency: moneytrail projects configure <project> "
                           "cloudpayments currency=KZT")
        raise ValueError("Currency is required")
    if not _CURRENCY.match(currency):
        raise ValueError(f"Currency {currency!r} is not an ISO-4217 code")
    data = _data(f)
    who: dict[str, str] = {"payment": f"cloudpayments:{original}"}
    user_id = next((data[k] for k in USER_ID_KEYS if data.get(k)), None)
    account = _opt(f.get("AccountId"))
    account_kind = None
    if account:
        account_kind = "email" if _EMAIL.match(account) else "phone" if _is_phone(account) else "user"
        if account_kind == "user":
            user_id = user_id or account
    for kind, value in (("email", _opt(f.get("Email")) or data.get("email")),
                        ("phone", _opt(f.get("Phone")) or data.get("phone")),
                        ("order", _opt(f.get("InvoiceId")) or data.get("order_id")),
                        ("deal", data.get("deal_id")), ("promo", data.get("promo_code"))):
        if value:
            who[kind] = value
    if account_kind in ("email", "phone") and account:
        who.setdefault(account_kind, account)
    payment = Payment(provider="cloudpayments", payment_id=tx, kind="refund" if refund else "payment", amount=amount,
                      currency=currency.upper(), status="succeeded", order_id=who.get("order"),
                      deal_id=who.get("deal"), refund_of=original if refund else None)
    return Draft(schema=PAYMENT, event_id=f"cloudpayments:{'refund' if refund else 'payment'}:{tx}",
                 timestamp=_time(f.get("DateTime")) or req.received_at, properties=payment, identity=who,
                 anonymous_id=next((data[k] for k in ANONYMOUS_ID_KEYS if data.get(k)), None), user_id=user_id,
                 campaign={k[4:]: v for k, v in data.items() if k.startswith("utm_") and len(k) > 4})


def _is_phone(text: str) -> bool:
    """A phone number written as one: '+7 701 123 45 67', or the 11 digits of a Kazakh/Russian number
    ('87011234567', '77011234567'). A plain numeric user id ('1234567890') is not a phone."""
    if not _PHONE_CHARS.match(text):
        return False
    digits = re.sub(r"\D", "", text)
    if not (text.startswith("+") or re.fullmatch(r"[78][0-9]{10}", digits)):
        return False
    return normalise_phone(text, "KZ") is not None


def _data(f: Mapping[str, Any]) -> dict[str, str]:
    """Data / JsonData: the merchant's JSON (a string inside a form; an object in a JSON notification).
    Unreadable Data is not a reason to lose the payment: it is skipped."""
    out: dict[str, str] = {}
    for key in ("JsonData", "Data"):
        value = f.get(key)
        if isinstance(value, str) and value.strip():
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
        if isinstance(value, dict):
            for k, v in value.items():
                text = _opt(v)
                if isinstance(k, str) and text:
                    out.setdefault(k, text)
    return out


def _decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{name} is required (a decimal number)")
    try:
        out = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{name} {value!r} is not a decimal number") from None
    if not out.is_finite() or out < 0:
        raise ValueError(f"{name} {value!r} must be a non-negative number")
    return out


def _time(value: Any) -> datetime | None:
    """DateTime is 'yyyy-MM-dd HH:mm:ss' in UTC (ISO accepted too)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at


def _opt(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (str, int)):
        return str(value).strip() or None
    return None


