"""What counts as a conversion. Pure: an envelope in, the conversions it is out.

Kinds and where they come from:
- lead: a site form (track "Form Submitted" or the form family), a call (not flagged as a repeat
  call by the call-tracking service), the first message of a chat (one lead per chat: the id is the
  chat's), a CRM deal created (stage_kind lead), an offline lead.
- deal: a CRM deal moved to an open or lost stage (the funnel between lead and sale).
- sale: a CRM deal won, an offline sale, a Segment "Order Completed", a payment that names no CRM
  deal (a shop without a CRM: the payment is the sale).
- payment / refund: money received / returned (refund values are negative). Revenue in reports is
  payments plus refunds; a project that records no payments gets revenue from its sales' values.

Ids are deterministic (built from the vendor's own ids), so a redelivered or replayed input makes
the same conversion, which the warehouse keeps once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from types import EllipsisType

import orjson

from schemas.envelope import Envelope
from schemas.families import ORDER_EVENTS  # the edge checks their value as money (schemas.values)

FORM_EVENTS = frozenset({"form submitted", "form_submitted", "form_submit", "lead", "generate_lead"})
KINDS = ("lead", "deal", "sale", "payment", "refund")


@dataclass(frozen=True, slots=True)
class ConversionRecord:
    conversion_id: str
    project: str
    kind: str  # lead | deal | sale | payment | refund
    source: str  # form | call | message | crm | payment | offline | track
    at: datetime
    value: Decimal = Decimal(0)
    currency: str = ""
    anonymous_id: str = ""
    user_id: str = ""
    deal_id: str = ""
    stage: str = ""
    stage_kind: str = ""
    event_id: str = ""
    tracking_number: str = ""  # calls: the number dialled, matched to the visitor who was shown it
    ids: dict[str, str] = field(default_factory=dict)
    # The identifier ("kind:value") that carries the conversion to its person: the person of the
    # subject (identity_map, latest version) is the conversion's person. See subject_of.
    subject: str = ""

    def to_bytes(self) -> bytes:
        return orjson.dumps({
            "conversion_id": self.conversion_id, "project": self.project, "kind": self.kind, "source": self.source,
            "at": self.at.isoformat(), "value": format(self.value, "f"), "currency": self.currency,
            "anonymous_id": self.anonymous_id, "user_id": self.user_id, "deal_id": self.deal_id, "stage": self.stage,
            "stage_kind": self.stage_kind, "event_id": self.event_id, "tracking_number": self.tracking_number,
            "ids": self.ids, "subject": self.subject,
        })


def _money(value: object) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def subject_of(env: Envelope) -> tuple[str, str] | None:
    """The conversion's own identifier (kind, value): the record the vendor keeps for it, so that
    every other identifier of the event links to it. A call is its call id (its caller phone and
    the number lease it is matched to link to it), a message its chat, a CRM deal its deal, a
    payment its payment id, a site event its anonymous id; then user, order, and any identifier.
    None when the event names nobody."""
    p = env.properties
    if env.type == "call" and p.get("call_id"):
        return ("call", f"{p.get('vendor')}:{p.get('call_id')}")
    if env.type == "message" and env.ids.get("chat"):
        return ("chat", env.ids["chat"])
    if env.type == "deal":
        return ("deal", env.ids.get("deal") or f"{p.get('crm')}:{p.get('deal_id')}")
    if env.type == "payment" and p.get("payment_id"):
        return ("payment", env.ids.get("payment") or f"{p.get('provider')}:{p.get('payment_id')}")
    if env.anonymous_id:
        return ("anon", env.anonymous_id)
    if env.user_id:
        return ("user", env.user_id)
    for kind in ("order", "phone", "email", "crm_contact", "deal", "chat", "payment", "promo", "lease", "ref"):
        if env.ids.get(kind):
            return (kind, env.ids[kind])
    return None


def conversions_of(env: Envelope, default_currency: str = "KZT", subject: tuple[str, str] | None | EllipsisType = ...
                   ) -> tuple[ConversionRecord, ...]:
    """The conversions an event is; `subject`: its subject_of when the caller has it already."""
    p = env.properties
    if subject is ...:
        subject = subject_of(env)
    subject_text = f"{subject[0]}:{subject[1]}" if subject else ""

    def make(cid: str, kind: str, source: str, value: Decimal | None = None, currency: str | None = None,
             **extra: str) -> ConversionRecord:
        return ConversionRecord(subject=subject_text,
            conversion_id=cid, project=env.project, kind=kind, source=source, at=env.timestamp,
            value=value if value is not None else Decimal(0),
            currency=(currency or default_currency).upper() if value is not None else "",
            anonymous_id=env.anonymous_id or "", user_id=env.user_id or "", event_id=env.event_id,
            ids=dict(env.ids), **extra)

    if env.type == "form" or (env.type == "track" and (env.event or "").strip().lower() in FORM_EVENTS):
        return (make(f"lead:form:{env.event_id}", "lead", "form"),)
    if env.type == "track" and (env.event or "").strip().lower() in ORDER_EVENTS:
        value = _money(p.get("revenue", p.get("total", p.get("value"))))
        order = str(p.get("order_id") or env.event_id)
        currency = str(p.get("currency") or default_currency)
        out = [make(f"sale:order:{order}", "sale", "track", value or Decimal(0), currency)]
        if value:
            out.append(make(f"payment:order:{order}", "payment", "track", value, currency))
        return tuple(out)
    if env.type == "call":
        if p.get("unique") is False or p.get("direction") == "out":
            return ()
        return (make(f"lead:call:{p.get('vendor')}:{p.get('call_id')}", "lead", "call",
                     tracking_number=str(p.get("tracking_number") or "")),)
    if env.type == "message":
        chat = env.ids.get("chat")
        if p.get("direction") == "out" or not chat:
            return ()
        return (make(f"lead:message:{p.get('platform')}:{chat}", "lead", "message"),)
    if env.type == "deal":
        deal, kind = str(p.get("deal_id")), p.get("stage_kind")
        value, currency = _money(p.get("amount")), p.get("currency")
        extra = {"deal_id": deal, "stage": str(p.get("stage") or ""), "stage_kind": str(kind or "")}
        if kind == "lead":
            return (make(f"lead:crm:{p.get('crm')}:{deal}", "lead", "crm", **extra),)
        if kind == "won":
            return (make(f"sale:deal:{p.get('crm')}:{deal}", "sale", "crm", value or Decimal(0), currency, **extra),)
        return (make(f"deal:{p.get('crm')}:{deal}:{extra['stage']}", "deal", "crm", value, currency, **extra),)
    if env.type == "payment":
        amount = _money(p.get("amount")) or Decimal(0)
        if p.get("kind") == "refund":
            return (make(f"refund:{p.get('provider')}:{p.get('payment_id')}", "refund", "payment", -amount,
                         p.get("currency"), deal_id=str(p.get("deal_id") or "")),)
        pid = f"{p.get('provider')}:{p.get('payment_id')}"
        payment = make(f"payment:{pid}", "payment", "payment", amount, p.get("currency"), deal_id=str(p.get("deal_id") or ""))
        if p.get("deal_id"):  # the deal's won stage is the sale
            return (payment,)
        return (payment, make(f"sale:payment:{pid}", "sale", "payment", amount, p.get("currency")))
    if env.type == "offline_conversion":
        kind = "sale" if p.get("kind") == "sale" else "lead"
        return (make(f"{kind}:offline:{p.get('conversion_id')}", kind, "offline",
                     _money(p.get("value")) if kind == "sale" else None, p.get("currency")),)
    return ()
