"""Event families: the typed `properties` of each envelope type, versioned (family/MAJOR-MINOR-PATCH).

Identity-bearing values never live here: the collector moves them into the envelope's `ids`
(keyed hashes for phones, emails and WhatsApp chats) and `masked` (display forms), so properties
are free of personal data by construction.

Money is Decimal (exact); JSON numbers from vendors are read through their shortest decimal repr.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from .values import MAX_SHORT, MAX_URL, Amount, Rate, SignedAmount, WarehouseDate, WarehouseTime

FORM = "form/1-0-0"
CALL = "call/1-0-0"
MESSAGE = "message/1-0-0"
DEAL = "deal/1-0-0"
PAYMENT = "payment/1-0-0"
OFFLINE = "offline_conversion/1-0-0"
SPEND = "spend/1-0-0"
LEASE = "lease/1-0-0"
RATE = "rate/1-0-0"

# identifiers an envelope may carry in `ids` (closed set; the identity graph's node kinds)
ID_KINDS = ("user", "phone", "email", "crm_contact", "deal", "lease", "chat", "ref", "promo", "order", "payment")
HASHED_ID_KINDS = ("phone", "email", "chat")

# Money, times and text are checked by schemas.values (the warehouse's limits, one place for every
# route): an amount is finite, >= 0, at most 20 digits with 6 decimals; times fit DateTime64.
Money = Amount
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Short = Annotated[str, Field(max_length=MAX_SHORT)]

# track events that are orders (a sale, and a payment of their value), and the properties their
# value is read from, first present wins (stream_processors.conversions reads them the same way)
ORDER_EVENTS = frozenset({"order completed", "order_completed", "purchase"})
ORDER_VALUE_KEYS = ("revenue", "total", "value")

_strict = ConfigDict(extra="forbid", frozen=True)


class FormSubmitted(BaseModel):
    """A site form sent (a lead). Identity fields (phone, email) are in the envelope's ids."""

    model_config = _strict
    form_id: Short | None = None
    form_name: Short | None = None
    fields: dict[Short, Short] = Field(default_factory=dict, max_length=64)  # non-identity fields


class Call(BaseModel):
    """A phone call, as a call-tracking service reports it."""

    model_config = _strict
    call_id: Short
    vendor: Short
    tracking_number: Short  # the number dialled (ours, E.164): matched to the session that leased it
    started_at: WarehouseTime
    duration_s: int | None = Field(None, ge=0)
    talk_s: int | None = Field(None, ge=0)
    answered: bool | None = None
    unique: bool | None = None  # the vendor's "first call from this caller"
    direction: Literal["in", "out"] = "in"
    recording_url: Annotated[str, Field(max_length=MAX_URL)] | None = None
    vendor_ids: dict[Short, Short] = Field(default_factory=dict)  # vendor session / GA / Metrica client ids
    campaign: dict[Short, Short] = Field(default_factory=dict)  # utm_* the vendor attributed, if any


class Message(BaseModel):
    """A messenger message (WhatsApp, Telegram). The chat id (a phone for WhatsApp) is in ids."""

    model_config = _strict
    platform: Literal["whatsapp", "telegram"]
    message_id: Short
    direction: Literal["in", "out"] = "in"
    ref_code: Short | None = None  # the tracker's code from the decorated link, if the text carries it
    text_campaign: dict[Short, Short] = Field(default_factory=dict)  # "(utm_source=google)" written in the text
    ad_referral: dict[Short, Short] = Field(default_factory=dict)  # click-to-WhatsApp ad: source_id, ctwa_clid...


class DealChange(BaseModel):
    """A CRM deal created or moved to a stage. stage_kind is what the funnel and sales count."""

    model_config = _strict
    crm: Short
    deal_id: Short
    stage: Short
    stage_kind: Literal["lead", "open", "won", "lost"]
    pipeline: Short | None = None
    amount: Money | None = None
    currency: Currency | None = None
    previous_stage: Short | None = None


class Payment(BaseModel):
    """Money received or returned. amount is positive; kind says which way it went."""

    model_config = _strict
    provider: Short
    payment_id: Short
    kind: Literal["payment", "refund"]
    amount: Money
    currency: Currency
    status: Short = "succeeded"
    order_id: Short | None = None
    deal_id: Short | None = None
    refund_of: Short | None = None


class OfflineConversion(BaseModel):
    """A lead or sale recorded outside the site (a shop till, a promo code, an imported list)."""

    model_config = _strict
    conversion_id: Short
    kind: Literal["lead", "sale"]
    value: Money = Decimal(0)
    currency: Currency | None = None
    promo_code: Short | None = None


class SpendRow(BaseModel):
    """One day of ad (or other channel) spend."""

    model_config = _strict
    date: WarehouseDate
    source: Short
    medium: Short = ""
    campaign: Short = ""
    ad: Short = ""
    keyword: Short = ""
    cost: Money
    currency: Currency
    clicks: int = Field(0, ge=0, le=2**63 - 1)  # UInt64 / Int64 columns
    impressions: int = Field(0, ge=0, le=2**63 - 1)
    import_id: Short = ""  # set by the collector: the latest import of a (day, source) replaces earlier ones


class NumberLease(BaseModel):
    """A call-tracking number shown to one visitor from started_at to expires_at."""

    model_config = _strict
    lease_id: Short
    tracking_number: Short  # E.164
    started_at: WarehouseTime
    expires_at: WarehouseTime
    matches_until: WarehouseTime  # expires_at + the pool's grace: a call until then still belongs to this visit


class CurrencyRate(BaseModel):
    """On `date`, one unit of `currency` was worth `rate` units of `base` (the report currency)."""

    model_config = _strict
    date: WarehouseDate
    currency: Currency
    base: Currency
    rate: Rate


FAMILY_OF_SCHEMA: dict[str, type[BaseModel]] = {
    FORM: FormSubmitted,
    CALL: Call,
    MESSAGE: Message,
    DEAL: DealChange,
    PAYMENT: Payment,
    OFFLINE: OfflineConversion,
    SPEND: SpendRow,
    LEASE: NumberLease,
    RATE: CurrencyRate,
}
TYPE_OF_SCHEMA = {s: s.split("/", 1)[0] for s in FAMILY_OF_SCHEMA}
