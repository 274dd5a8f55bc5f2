"""YooKassa (ЮKassa) HTTP notifications: {"type": "notification", "event": "<object>.<status>",
"object": {...}}, JSON POST, no signature.

Authentication is the caller's address: it must be in YooKassa's published list (as hard-coded in
the official Python and PHP SDKs, see FORMATS.md), or in the project's own `allowed_ips` (a list of
addresses/CIDRs that REPLACES the default: `moneytrail projects configure <project> yookassa
allowed_ips='["185.71.76.0/27", ...]'`). There is no switch that allows any address: a request
whose address is unknown, unparseable or outside the list is refused (403), never accepted.
req.client_ip is the address after the route's trusted-proxy resolution.

Counted (schema payment/1-0-0):
  payment.succeeded   kind payment, event_id "yookassa:payment.succeeded:<payment id>"
  refund.succeeded    kind refund, refund_of = payment_id, event_id "yookassa:refund.succeeded:<refund id>"
Every other event (payment.waiting_for_capture, payment.canceled, deal.*, payout.*) is answered 200
with nothing counted. YooKassa ignores the answer's body and redelivers for 24 h on anything but 200.

Money: amount.value is a decimal string in major units ("12900.00"), amount.currency ISO-4217.

Identity: the payment id as payment "yookassa:<id>" (vendor-made ids are namespaced; a refund carries
the payment_id it returns, which is how a refund joins its payment: refunds carry no metadata).
From the merchant's metadata: order_id as order, deal_id as deal, phone, email, promo_code,
moneytrail_anonymous_id / anonymous_id as the anonymous id, moneytrail_user_id / user_id as user_id,
utm_* as the campaign. receipt.customer email/phone when the object carries a receipt.
metadata.client_id (a Google Analytics cid in many shops) is not our tracker's id and is not used.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

import orjson
from pydantic import ValidationError

from schemas.families import PAYMENT, Payment
from schemas.reasons import RejectReason
from schemas.values import reason_of

from .base import Accepted, Draft, Refused, Reply, VendorRequest, VendorResult
from .base import why as _why

# yoomoney/yookassa-sdk-python src/yookassa/domain/common/security_helper.py (same list in the PHP SDK)
OFFICIAL_IPS = (
    "185.71.76.0/27",
    "185.71.77.0/27",
    "77.75.153.0/25",
    "77.75.154.128/25",
    "77.75.156.11",
    "77.75.156.35",
    "2a02:5180:0:1509::/64",
    "2a02:5180:0:2655::/64",
    "2a02:5180:0:1533::/64",
    "2a02:5180:0:2669::/64",
)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
OFFICIAL_NETWORKS: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in OFFICIAL_IPS)
REPLY = Reply(200, b"{}", "application/json")
COUNTED = ("payment.succeeded", "refund.succeeded")
ANONYMOUS_ID_KEYS = ("moneytrail_anonymous_id", "anonymous_id", "anonymousId")
USER_ID_KEYS = ("moneytrail_user_id", "user_id", "userId")


def allowed_networks(config: Mapping[str, Any]) -> tuple[Network, ...] | Refused:
    """The official list, or the project's allowed_ips instead of it. A bad setting refuses all."""
    value = config.get("allowed_ips")
    if value is None:
        return OFFICIAL_NETWORKS
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        return _misconfigured(f"allowed_ips must be a list of addresses or CIDRs, got {type(value).__name__}")
    networks = []
    for item in items:
        try:
            net = ipaddress.ip_network(str(item).strip(), strict=False)
        except ValueError:
            return _misconfigured(f"allowed_ips entry {item!r} is not an IP address or CIDR")
        if net.prefixlen == 0:
            return _misconfigured(f"allowed_ips entry {item!r} would allow every address")
        networks.append(net)
    if not networks:
        return _misconfigured("allowed_ips is empty")
    return tuple(networks)


def address_allowed(ip: str | None, networks: tuple[Network, ...]) -> bool:
    if not ip:
        return False
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # ::ffff:185.71.76.1 from a dual-stack socket
    return any(addr in net for net in networks if net.version == addr.version)


def map_request(req: VendorRequest) -> VendorResult:
    networks = allowed_networks(req.config)
    if isinstance(networks, Refused):
        return networks
    if not address_allowed(req.client_ip, networks):
        source = "YooKassa's published list" if networks is OFFICIAL_NETWORKS else "this project's allowed_ips"
        return Refused(RejectReason.origin_not_allowed, f"yookassa: notifications are accepted only from {source}; "
                       f"this came from {req.client_ip!r}", 403)
    try:
        data = orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        return Refused(RejectReason.invalid_json, f"yookassa: body is not JSON: {exc}")
    if not isinstance(data, dict):
        return Refused(RejectReason.schema_violation, "yookassa: body must be a notification object")
    event, obj = data.get("event"), data.get("object")
    if not isinstance(event, str) or not event or not isinstance(obj, dict):
        return Refused(RejectReason.schema_violation,
                       "yookassa: a notification needs \"event\" (a string) and \"object\" (an object)")
    if event not in COUNTED:
        return Accepted((), REPLY, ignored=f"yookassa: {event} is not counted (counted: {', '.join(COUNTED)})")
    if obj.get("status") not in (None, "succeeded"):
        return Refused(RejectReason.schema_violation,
                       f"yookassa: {event} carries an object with status {obj.get('status')!r}, not 'succeeded'")
    try:
        draft = _draft(event, obj, req.received_at)
    except (ValidationError, ValueError, TypeError) as exc:
        return Refused(reason_of(exc), f"yookassa: {event}: {_why(exc)}")
    return Accepted((draft,), REPLY)


def _draft(event: str, obj: dict[str, Any], received_at: datetime) -> Draft:
    object_id = _opt(obj.get("id"))
    if not object_id:
        raise ValueError("object.id is required")
    refund = event == "refund.succeeded"
    original = _opt(obj.get("payment_id")) if refund else object_id
    if not original:
        raise ValueError("object.payment_id is required in a refund")
    amount = obj.get("amount")
    if not isinstance(amount, dict):
        raise ValueError("object.amount must be {\"value\": \"...\", \"currency\": \"...\"}")
    value, currency = amount.get("value"), amount.get("currency")
    if not isinstance(value, str):
        raise ValueError(f"object.amount.value must be a decimal string, got {value!r}")
    try:
        money = Decimal(value.strip())
    except InvalidOperation:
        raise ValueError(f"object.amount.value {value!r} is not a decimal number") from None
    if not isinstance(currency, str):
        raise ValueError(f"object.amount.currency must be a string, got {currency!r}")
    meta = _meta(obj)
    who = _who(obj, meta, original)
    payment = Payment(provider="yookassa", payment_id=object_id, kind="refund" if refund else "payment",
                      amount=money, currency=currency.strip().upper(), status="succeeded", order_id=who.get("order"),
                      deal_id=who.get("deal"), refund_of=original if refund else None)
    at = _time(obj.get("captured_at")) or _time(obj.get("created_at")) or received_at
    return Draft(schema=PAYMENT, event_id=f"yookassa:{event}:{object_id}", timestamp=at, properties=payment,
                 identity=who, anonymous_id=next((meta[k] for k in ANONYMOUS_ID_KEYS if meta.get(k)), None),
                 user_id=next((meta[k] for k in USER_ID_KEYS if meta.get(k)), None),
                 campaign={k[4:]: v for k, v in meta.items() if k.startswith("utm_") and len(k) > 4})


def _who(obj: dict[str, Any], meta: dict[str, str], payment_id: str) -> dict[str, str]:
    receipt = obj.get("receipt") if isinstance(obj.get("receipt"), dict) else {}
    customer = receipt.get("customer") if isinstance(receipt.get("customer"), dict) else {}
    who = {"payment": f"yookassa:{payment_id}"}
    for kind, value in (("phone", meta.get("phone") or _opt(customer.get("phone")) or _opt(receipt.get("phone"))),
                        ("email", meta.get("email") or _opt(customer.get("email")) or _opt(receipt.get("email"))),
                        ("order", meta.get("order_id") or meta.get("orderId")),
                        ("deal", meta.get("deal_id")), ("promo", meta.get("promo_code"))):
        if value:
            who[kind] = value
    return who


def _meta(obj: dict[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return {}
    out = {}
    for k, v in meta.items():
        if isinstance(k, str) and isinstance(v, (str, int)) and not isinstance(v, bool) and str(v).strip():
            out[k] = str(v).strip()
    return out


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def _misconfigured(what: str) -> Refused:
    return Refused(RejectReason.origin_not_allowed, f"yookassa: {what}; every notification is refused until it is "
                   f"fixed (moneytrail projects configure <project> yookassa allowed_ips=...)", 403)


def _opt(value: Any) -> str | None:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value).strip() or None
    return None


