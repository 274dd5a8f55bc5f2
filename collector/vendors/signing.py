"""Signature checks shared by vendors that sign with an HMAC of the raw body."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from .base import Refused, VendorRequest


def hmac_sha256(secret: str | bytes | int, body: bytes) -> bytes:
    # a secret set from the CLI as digits arrives as a JSON number: it is still the same text
    key = secret if isinstance(secret, bytes) else str(secret).encode()
    return hmac.new(key, body, hashlib.sha256).digest()


def matches_hex(secret: str | bytes, body: bytes, given: str | None, prefix: str = "") -> bool:
    """given == prefix + hex(HMAC-SHA256(secret, body)), compared in constant time."""
    if not given:
        return False
    expected = prefix + hmac_sha256(secret, body).hex()
    return hmac.compare_digest(given.strip().lower().encode(), expected.lower().encode())


def matches_base64(secret: str | bytes, body: bytes, given: str | None) -> bool:
    if not given:
        return False
    expected = base64.b64encode(hmac_sha256(secret, body))
    return hmac.compare_digest(given.strip().encode(), expected)


SIGNATURE_HEADER = "x-moneytrail-signature"


def signed_json_items(req: "VendorRequest", vendor: str, many: str, one: str,
                      limit: int = 1000) -> "tuple[list[dict], bool] | Refused":
    """Our own signed JSON webhooks (payment, crm, calls): the secret configured, the body's
    X-Moneytrail-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>, and one object or
    {"<many>": [objects]}. The objects and whether they came as a batch, or why not."""
    from schemas.reasons import RejectReason

    from .base import Refused, not_configured

    secret = req.config.get("secret")
    if secret is None or str(secret) == "":
        return not_configured(vendor, "the signing secret")
    if not matches_hex(str(secret), req.body, req.header(SIGNATURE_HEADER), prefix="sha256="):
        return Refused(RejectReason.bad_signature, "X-Moneytrail-Signature does not match sha256=HMAC(secret, body)", 401)
    try:
        data = orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        return Refused(RejectReason.invalid_json, f"body is not JSON: {exc}")
    batched = isinstance(data, dict) and many in data
    items = data.get(many) if batched else [data]
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        return Refused(RejectReason.schema_violation, f'body must be a {one} object or {{"{many}": [...]}} (not empty)')
    if len(items) > limit:
        return Refused(RejectReason.too_large, f"{len(items)} {one}s in one request (limit {limit})", 413)
    return items, batched
