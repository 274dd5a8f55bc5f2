"""Signature checks shared by vendors that sign with an HMAC of the raw body."""

from __future__ import annotations

import base64
import hashlib
import hmac


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
