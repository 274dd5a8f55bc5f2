"""What the warehouse can hold: the one place every route checks money, times and text against.

A value the warehouse would refuse must be refused at the edge, with a reason a person can act
on, not accepted and then stuck in the sink. The limits follow the columns (clickhouse/migrations):
money columns are Decimal(38, 6) (conversions.value, ad_spend.cost, credits.amount) and rates
Decimal(38, 10); times are DateTime64(3, 'UTC') (1900-01-01 .. 2299-12-31) and days are Date
(ad_spend.day, currency_rates.day, and the live view's toDate(...)): 1970-01-01 .. 2149-06-06.
Beyond its range ClickHouse clamps or wraps a value silently, so every time and day must lie in
the narrower of the two.

Money accepted at the edge is tighter than the column: at most 20 digits, 6 of them decimals
(10^14: a hundred trillion, more than any one payment), so a sum of many still fits Decimal(38, 6)
and every step's Decimal arithmetic stays exact. Non-finite values (NaN, Infinity, 1e309) and a
sign the kind forbids are refused: an amount is >= 0; money going back is its own kind (refund).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Context, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError
from pydantic_core import PydanticCustomError

from .reasons import RejectReason

COLUMN_PRECISION = 38  # Decimal(38, S) money columns
MONEY_SCALE = 6
MONEY_MAX_DIGITS = 20
RATE_SCALE = 10
RATE_MAX_DIGITS = 28

MIN_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_TIME = datetime(2149, 6, 6, 23, 59, 59, 999000, tzinfo=timezone.utc)
MIN_DATE, MAX_DATE = MIN_TIME.date(), MAX_TIME.date()

# Text limits. Ids: vendor and client ids are uuids, numbers or short slugs. URLs: browsers and
# servers commonly stop at 8 KB. UTM values are labels a person typed (GA4 keeps 100 characters).
MAX_ID = 256
MAX_SHORT = 512  # names, stages, statuses
MAX_CAMPAIGN_VALUE = 1024
MAX_URL = 8192
MAX_TEXT = 8192


@dataclass(frozen=True)
class Invalid:
    """Why a value cannot go to the warehouse."""

    reason: RejectReason
    detail: str


def money(value: Any, field: str = "amount", *, negative_ok: bool = False, max_digits: int = MONEY_MAX_DIGITS,
          scale: int = MONEY_SCALE) -> Decimal | Invalid:
    """A money value as an exact Decimal, or why it is refused. JSON numbers are read through their
    shortest repr (1500.5, not 1500.4999...); strings are trimmed; bools are not numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        return Invalid(RejectReason.invalid_amount, f"{field} must be a number; got {type(value).__name__}")
    try:
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, ValueError):
        return Invalid(RejectReason.invalid_amount, f"{field} must be a number; got {str(value)[:40]!r}")
    if not d.is_finite():
        return Invalid(RejectReason.invalid_amount, f"{field} must be a finite number; got {str(value)[:40]!r}")
    if d < 0 and not negative_ok:
        return Invalid(RejectReason.invalid_amount, f"{field} must not be negative; got {d} "
                       "(money going back is a refund, its own kind)")
    exact = Context(prec=COLUMN_PRECISION * 2 + 4)  # enough for any value that can pass
    _sign, digits, exponent = d.as_tuple()
    whole = max(0, len(digits) + int(exponent))
    if whole > max_digits - scale:
        return Invalid(RejectReason.invalid_amount, f"{field} has {whole} digits before the point; at most "
                       f"{max_digits - scale} (the largest accepted is 10^{max_digits - scale} - 1)")
    if -int(exponent) > scale:
        kept = d.quantize(Decimal(1).scaleb(-scale), context=exact)
        if kept != d:  # trailing zeros are not precision: 10.500000000 is 10.5
            return Invalid(RejectReason.invalid_amount, f"{field} has {-int(exponent)} decimals; at most {scale}")
        d = kept
    elif int(exponent) > 0:  # 1E+3 is written 1000 everywhere after this
        d = d.quantize(Decimal(1), context=exact)
    return d


def time_problem(at: datetime | date, field: str = "timestamp") -> Invalid | None:
    """None when the warehouse can hold the time (or date); an aware time is compared in UTC."""
    if isinstance(at, datetime):
        try:
            utc = at.astimezone(timezone.utc) if at.tzinfo else at.replace(tzinfo=timezone.utc)
        except (OverflowError, ValueError):  # year 1 with a +05:00 offset is no UTC time
            return Invalid(RejectReason.time_out_of_range, f"{field} {at.isoformat()} is out of range: "
                           f"the warehouse holds {MIN_DATE} .. {MAX_DATE}")
        ok = MIN_TIME <= utc <= MAX_TIME
    else:
        ok = MIN_DATE <= at <= MAX_DATE
    if ok:
        return None
    return Invalid(RejectReason.time_out_of_range, f"{field} {at.isoformat()} is out of range: "
                   f"the warehouse holds {MIN_DATE} .. {MAX_DATE}")


def text_problem(value: Any, limit: int, field: str) -> Invalid | None:
    if isinstance(value, str) and len(value) > limit:
        return Invalid(RejectReason.value_too_long, f"{field} is {len(value)} characters; at most {limit}")
    return None


# ---- the same rules as pydantic types, for the families and the wire messages ----------------
# Their errors carry our reason as the error type, so reason_of() can say which rule refused.

def _money_validator(field: str, negative_ok: bool, max_digits: int, scale: int):
    def check(value: Any) -> Decimal:
        d = money(value, field, negative_ok=negative_ok, max_digits=max_digits, scale=scale)
        if isinstance(d, Invalid):
            raise PydanticCustomError(d.reason.value, d.detail)
        return d
    return check


def _time_check(value: datetime | date) -> datetime | date:
    problem = time_problem(value, "value")
    if problem is not None:
        raise PydanticCustomError(problem.reason.value, problem.detail)
    return value


Amount = Annotated[Decimal, BeforeValidator(_money_validator("value", False, MONEY_MAX_DIGITS, MONEY_SCALE))]
SignedAmount = Annotated[Decimal, BeforeValidator(_money_validator("value", True, MONEY_MAX_DIGITS, MONEY_SCALE))]
Rate = Annotated[Decimal, BeforeValidator(_money_validator("value", False, RATE_MAX_DIGITS, RATE_SCALE)), Field(gt=0)]
WarehouseTime = Annotated[datetime, AfterValidator(_time_check)]
WarehouseDate = Annotated[date, AfterValidator(_time_check)]

# pydantic's own error types that mean one of our reasons
_REASON_OF_ERROR = {
    "string_too_long": RejectReason.value_too_long,
    "too_long": RejectReason.value_too_long,
    "finite_number": RejectReason.invalid_amount,
    "decimal_max_digits": RejectReason.invalid_amount,
    "decimal_max_places": RejectReason.invalid_amount,
    "decimal_whole_digits": RejectReason.invalid_amount,
}


def reason_of(exc: Exception) -> RejectReason:
    """The refusal reason of a validation error: ours when a value rule refused, else schema_violation."""
    if not isinstance(exc, ValidationError):
        return RejectReason.schema_violation
    kind = exc.errors()[0].get("type", "")
    if kind in RejectReason.__members__:
        return RejectReason(kind)
    return _REASON_OF_ERROR.get(kind, RejectReason.schema_violation)
