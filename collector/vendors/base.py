"""The vendor mapper contract (after Snowplow's adapter registry): one module per vendor turns that
vendor's webhook request into drafts of events in our families, or refuses it with a reason from
the closed set. Mappers are pure: request in, typed result out; no I/O, no clock (the request
carries received_at), no exceptions for control flow.

Identity: a mapper puts identifying values in Draft.identity by kind (families.ID_KINDS). Phones,
emails and chat ids may be raw there: the collector normalises and hashes them before anything
leaves the process, and never logs drafts.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping, Union

from pydantic import BaseModel, ValidationError

from schemas.project import Project
from schemas.reasons import RejectReason


@dataclass(frozen=True)
class VendorRequest:
    vendor: str
    project: Project
    method: str  # GET (handshakes, Calltouch) or POST
    headers: Mapping[str, str]  # names lower-cased
    query: Mapping[str, str]
    body: bytes  # raw bytes exactly as received (signatures are over these)
    client_ip: str | None  # the caller's address (after trusted-proxy resolution), for IP allow-lists
    received_at: datetime
    config: Mapping[str, Any]  # this project's settings for this vendor (secrets, account ids, field mapping)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class Draft:
    """An event before the collector makes it an envelope."""

    schema: str  # families.CALL, PAYMENT, ... (or envelope.TRACK / IDENTIFY)
    event_id: str  # deterministic from the vendor's own ids ("stripe:evt_123"), so retries dedupe
    timestamp: datetime  # when it happened (aware)
    properties: BaseModel | None = None  # the family's model instance
    identity: dict[str, str] = field(default_factory=dict)  # kind -> value (phone/email/chat may be raw)
    anonymous_id: str | None = None  # a tracker id the vendor carried back (client_reference_id, metadata)
    user_id: str | None = None
    campaign: dict[str, str] = field(default_factory=dict)  # utm_* the vendor knows, without the prefix
    page_url: str | None = None
    event: str | None = None  # for track drafts


@dataclass(frozen=True)
class Reply:
    """What the vendor expects back on success."""

    status: int = 200
    body: bytes = b'{"ok":true}'
    content_type: str = "application/json"


@dataclass(frozen=True)
class Accepted:
    drafts: tuple[Draft, ...]
    reply: Reply = Reply()
    ignored: str = ""  # why a valid request carried nothing we count (e.g. an event type we skip)


@dataclass(frozen=True)
class Refused:
    reason: RejectReason
    detail: str
    status: int = 400


VendorResult = Union[Accepted, Refused]
Mapper = Callable[[VendorRequest], VendorResult]


def not_configured(vendor: str, what: str) -> Refused:
    """A vendor whose secret is not configured never fails open."""
    return Refused(RejectReason.bad_signature, f"{vendor}: {what} is not configured for this project "
                   f"(moneytrail projects configure <project> {vendor} ...)", 401)


def why(exc: Exception) -> str:
    """A refusal's detail from a validation error: the first field that failed and why."""
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
    return str(exc)


def same_secret(given: str | bytes | None, expected: str | bytes) -> bool:
    """Constant-time comparison."""
    if given is None:
        return False
    a = given.encode() if isinstance(given, str) else given
    b = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)
