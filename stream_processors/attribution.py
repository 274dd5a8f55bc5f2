"""Rule-based attribution of one conversion over a person's touches. Pure: no Faust, FastAPI or
ClickHouse here; the live processors and the tests call these same functions.

Money rules (DESIGN.md, "Attribution and money"):

- Weights are Decimals with ``WEIGHT_PLACES`` (18) decimals; the weights of one conversion and
  model sum to exactly 1. Exact model shares (rationals; 28-digit Decimals for time decay) are
  rounded to 10**-18 by the largest-remainder method.
- Amounts are allocated in the currency's minor units (2 for KZT, RUB, USD...; see
  ``minor_units_of``) from those published weights by the largest-remainder method, so the
  amounts of one conversion and model sum to exactly the conversion's value and never carry more
  decimals than the minor unit. Ties go to the earlier touch (touch order is (at, touch_id)).
  A negative value (a refund) is allocated as the mirror image of the positive one.
- A conversion with no touch in the window gets one explicit unattributed credit.
- When a person's touches change later (an identity merge), ``correction`` emits delta rows so
  that what was emitted before plus the deltas nets exactly to the new attribution.

The money primitives (``minor_units_of``, ``largest_remainder``, ``decimal_of``) are public: the
data-driven models (``datadriven.py``: Markov, Shapley) split revenue with the same ones.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal

MODELS = ("first_touch", "last_touch", "last_non_direct", "linear", "time_decay", "position_based")

UNATTRIBUTED = "(unattributed)"
DEFAULT_LOOKBACK = timedelta(days=90)
DEFAULT_HALF_LIFE_DAYS = 7
WEIGHT_PLACES = 18
DEFAULT_MINOR_UNITS = 2
# ISO 4217 currencies whose minor unit is not 2 (KZT, RUB, USD, EUR... have 2).
_MINOR_UNITS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
    "RWF": 0, "UGX": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}

# One fixed context for every inexact step (time decay), so results do not depend on the
# thread's decimal context and are the same on every machine.
_CTX = Context(prec=28, rounding=ROUND_HALF_EVEN)
# Only rescales (exact) go through this one: its precision never rounds a coefficient.
_EXACT = Context(prec=999_999, Emax=999_999, Emin=-999_999)
# ln 2 to 34 digits, written out so every machine starts from the same constant.
_LN2 = Decimal("0.6931471805599453094172321214581766")
_WEIGHT_UNITS = 10**WEIGHT_PLACES
_MICROS_PER_DAY = Decimal(86_400_000_000)
_ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class TouchPoint:
    touch_id: str
    at: datetime  # timezone-aware (UTC)
    channel: str
    source: str
    medium: str
    campaign: str
    is_direct: bool

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError(f"touch {self.touch_id!r}: time must be timezone-aware")


@dataclass(frozen=True, slots=True)
class Conversion:
    conversion_id: str
    person_id: str
    kind: str  # lead, sale, payment, refund...
    at: datetime  # timezone-aware (UTC)
    value: Decimal  # 0 for leads, negative for refunds
    currency: str

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError(f"conversion {self.conversion_id!r}: time must be timezone-aware")
        if not isinstance(self.value, Decimal) or not self.value.is_finite():
            raise TypeError(f"conversion {self.conversion_id!r}: value must be a finite Decimal")


@dataclass(frozen=True, slots=True)
class Credit:
    conversion_id: str
    touch_id: str  # "" for the unattributed credit
    channel: str  # "(unattributed)" for the unattributed credit
    source: str
    medium: str
    campaign: str
    model: str
    weight: Decimal  # WEIGHT_PLACES decimals; a correction row carries the weight's delta
    amount: Decimal  # minor-unit decimals; a correction row carries the amount's delta
    credit_id: str
    # Carried from the conversion so a sink / materialized view needs no join.
    person_id: str = ""
    kind: str = ""
    conversion_at: datetime | None = None
    currency: str = ""
    revision: int = 0  # 0 for the first attribution, 1, 2... for corrections


# ---------------------------------------------------------------------------------------------
# Money (also used by datadriven.py)


def minor_units_of(currency: str) -> int:
    """The number of decimals of a currency's minor unit (ISO 4217); 2 when unknown."""
    return _MINOR_UNITS.get(currency.strip().upper(), DEFAULT_MINOR_UNITS)


def largest_remainder(total: int, shares: list[int]) -> list[int]:
    """Split the non-negative integer ``total`` in proportion to the non-negative integer
    ``shares``: floor of each quota, then the leftover units one by one to the largest
    remainders, ties to the lower index. The parts sum to exactly ``total``."""
    denominator = sum(shares)
    parts: list[int] = []
    remainders: list[int] = []
    for share in shares:
        q, r = divmod(total * share, denominator)
        parts.append(q)
        remainders.append(r)
    leftover = total - sum(parts)
    if leftover:
        order = sorted(range(len(shares)), key=lambda i: (-remainders[i], i))
        for i in order[:leftover]:
            parts[i] += 1
    return parts


def decimal_of(units: int, places: int) -> Decimal:
    """units * 10**-places, exactly, with exactly ``places`` decimals (no '-0')."""
    return Decimal(units).scaleb(-places, _EXACT)


def _minor_units_count(value: Decimal, places: int) -> int:
    """The value as an integer count of 10**-places, exactly; ValueError when it has more
    decimals than that."""
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise ValueError(f"value {value} is not finite")
    coefficient = int("".join(map(str, digits)) or "0")
    shift = exponent + places
    if shift >= 0:
        units = coefficient * 10**shift
    else:
        units, rest = divmod(coefficient, 10**-shift)
        if rest:
            raise ValueError(f"value {value} has more decimals than the currency's minor unit ({places})")
    return -units if sign else units


# ---------------------------------------------------------------------------------------------
# Touches and model shares


def _ordered(touches: list[TouchPoint]) -> list[TouchPoint]:
    """Touches sorted by (at, touch_id); a repeated touch_id is kept once (its earliest)."""
    seen: set[str] = set()
    out: list[TouchPoint] = []
    for t in sorted(touches, key=lambda t: (t.at, t.touch_id)):
        if t.touch_id not in seen:
            seen.add(t.touch_id)
            out.append(t)
    return out


def in_window(touches: list[TouchPoint], conversion_at: datetime, lookback: timedelta = DEFAULT_LOOKBACK) -> list[TouchPoint]:
    """The touches that can be credited: conversion_at - lookback <= at <= conversion_at, in
    (at, touch_id) order, each touch_id once."""
    start = conversion_at - lookback
    return _ordered([t for t in touches if start <= t.at <= conversion_at])


def _half_life(half_life_days: float | int | Decimal) -> Decimal:
    h = half_life_days if isinstance(half_life_days, Decimal) else Decimal(str(half_life_days))
    if not h.is_finite() or h <= 0:
        raise ValueError(f"half-life must be a positive number of days, got {half_life_days}")
    return h


def _time_decay_shares(touches: list[TouchPoint], conversion_at: datetime, half_life_days) -> list[int]:
    """Integer shares proportional to 2**(-days_before_conversion / half_life), computed with
    28-digit Decimals in a fixed context as exp(exponent * ln 2) (exp and multiply are correctly
    rounded in both the C and the pure-Python decimal modules, so every machine gets the same
    digits; Decimal power is slower and only "almost always" correctly rounded) and scaled
    exactly to integers."""
    micros_per_half_life = _CTX.multiply(_MICROS_PER_DAY, _half_life(half_life_days))
    raw: list[Decimal] = []
    for t in touches:
        delta = conversion_at - t.at
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        exponent = _CTX.divide(Decimal(-micros), micros_per_half_life)
        raw.append(_CTX.exp(_CTX.multiply(exponent, _LN2)))
    # Each raw value is coefficient * 10**exponent: bring all to the smallest exponent.
    tuples = [r.as_tuple() for r in raw]
    low = min(tp.exponent for tp in tuples)
    return [int("".join(map(str, tp.digits))) * 10 ** (tp.exponent - low) for tp in tuples]


def _shares(model: str, touches: list[TouchPoint], conversion_at: datetime, half_life_days) -> list[int]:
    n = len(touches)
    if model == "first_touch":
        return [1] + [0] * (n - 1)
    if model == "last_touch":
        return [0] * (n - 1) + [1]
    if model == "last_non_direct":
        chosen = n - 1  # all direct: the last touch, direct as it is
        for i in range(n - 1, -1, -1):
            if not touches[i].is_direct:
                chosen = i
                break
        return [1 if i == chosen else 0 for i in range(n)]
    if model == "linear":
        return [1] * n
    if model == "time_decay":
        return _time_decay_shares(touches, conversion_at, half_life_days)
    if model == "position_based":
        if n <= 2:
            return [1] * n
        # 40% first, 40% last, 20% over the n - 2 middle touches: 2(n-2) : 1 ... 1 : 2(n-2).
        return [2 * (n - 2)] + [1] * (n - 2) + [2 * (n - 2)]
    raise ValueError(f"unknown attribution model {model!r}; known: {', '.join(MODELS)}")


def _weight_units(model, touches, conversion_at, half_life_days) -> list[int]:
    if not touches:
        return []
    return largest_remainder(_WEIGHT_UNITS, _shares(model, touches, conversion_at, half_life_days))


def credit_id(conversion_id: str, model: str, touch_id: str, revision: int = 0, *, channel: str = "",
              source: str = "", medium: str = "", campaign: str = "") -> str:
    """Deterministic id of a credit row. The touch's attributes are part of it so that a
    correction which moves a touch to another channel (a negative row for the old attributes,
    a positive one for the new) gives two distinct ids in one revision."""
    key = "\x1f".join((conversion_id, model, touch_id or "", str(revision), channel, source, medium, campaign))
    return hashlib.sha256(key.encode()).hexdigest()[:32]


# ---------------------------------------------------------------------------------------------
# Public API


def weights(model: str, touches_in_window: list[TouchPoint], conversion_at: datetime,
            half_life_days: float | int | Decimal = DEFAULT_HALF_LIFE_DAYS) -> list[tuple[TouchPoint, Decimal]]:
    """The credited touches of a model with their weights (18 decimals, summing to exactly 1),
    in (at, touch_id) order. Touches after the conversion are never credited; touches with a
    zero weight are left out. Empty when there is no touch."""
    touches = _ordered([t for t in touches_in_window if t.at <= conversion_at])
    units = _weight_units(model, touches, conversion_at, half_life_days)
    return [(t, decimal_of(u, WEIGHT_PLACES)) for t, u in zip(touches, units) if u]


def credit(conv: Conversion, touches: list[TouchPoint], model: str, lookback: timedelta = DEFAULT_LOOKBACK,
           half_life_days: float | int | Decimal = DEFAULT_HALF_LIFE_DAYS, *, minor_units: int | None = None,
           revision: int = 0) -> list[Credit]:
    """Credit rows of one conversion under one model, in touch order. Weights sum to exactly 1
    and amounts to exactly conv.value; no touch in the window gives one unattributed credit.
    ValueError for an unknown model or a value finer than the currency's minor unit."""
    return credit_all(conv, touches, lookback, half_life_days, minor_units=minor_units, revision=revision,
                      models=(model,))


def credit_all(conv: Conversion, touches: list[TouchPoint], lookback: timedelta = DEFAULT_LOOKBACK,
               half_life_days: float | int | Decimal = DEFAULT_HALF_LIFE_DAYS, *, minor_units: int | None = None,
               revision: int = 0, models: tuple[str, ...] = MODELS) -> list[Credit]:
    """Credit rows of one conversion under every model (MODELS order), as ``credit`` gives them."""
    for model in models:
        if model not in MODELS:
            raise ValueError(f"unknown attribution model {model!r}; known: {', '.join(MODELS)}")
    places = minor_units_of(conv.currency) if minor_units is None else minor_units
    total = _minor_units_count(conv.value, places)
    sign = -1 if total < 0 else 1
    common = dict(person_id=conv.person_id, kind=conv.kind, conversion_at=conv.at, currency=conv.currency,
                  revision=revision)
    cid = conv.conversion_id
    window = in_window(touches, conv.at, lookback)
    out: list[Credit] = []
    for model in models:
        if not window:
            out.append(Credit(cid, "", UNATTRIBUTED, "", "", "", model, _ONE, decimal_of(total, places),
                              credit_id(cid, model, "", revision, channel=UNATTRIBUTED), **common))
            continue
        units = _weight_units(model, window, conv.at, half_life_days)
        credited = [(t, u) for t, u in zip(window, units) if u]
        amounts = largest_remainder(abs(total), [u for _, u in credited])
        out.extend(
            Credit(cid, t.touch_id, t.channel, t.source, t.medium, t.campaign, model,
                   decimal_of(u, WEIGHT_PLACES), decimal_of(sign * a, places),
                   credit_id(cid, model, t.touch_id, revision, channel=t.channel, source=t.source,
                             medium=t.medium, campaign=t.campaign),
                   **common)
            for (t, u), a in zip(credited, amounts)
        )
    return out


def _key(c: Credit) -> tuple[str, str, str, str, str, str, str]:
    return (c.conversion_id, c.model, c.touch_id or "", c.channel, c.source, c.medium, c.campaign)


def net(credits: list[Credit]) -> dict[tuple, tuple[Decimal, Decimal]]:
    """Net (weight, amount) per (conversion, model, touch, channel, source, medium, campaign),
    keys whose weight and amount both net to zero left out."""
    sums: dict[tuple, list[Decimal]] = {}
    for c in credits:
        acc = sums.setdefault(_key(c), [Decimal(0), Decimal(0)])
        acc[0] += c.weight
        acc[1] += c.amount
    return {k: (w, a) for k, (w, a) in sums.items() if w or a}


def correction(previous: list[Credit], current: list[Credit], revision: int | None = None) -> list[Credit]:
    """The rows to emit so that previous + emitted nets to current, per (conversion, model,
    touch; with the touch's channel, source, medium and campaign): one delta row per key that
    changed, negative where credit went away, positive where it is new. Nothing when identical.

    ``previous`` is everything emitted so far for these conversions (first attribution and any
    earlier corrections); ``current`` is the full fresh attribution (e.g. ``credit_all`` after a
    merge). A (conversion, model) in previous but absent from current is cancelled to zero.
    ``revision`` defaults to one more than the highest revision in previous; it goes into the
    emitted rows' ids, so a second correction never reuses an id of the first."""
    if revision is None:
        revision = max((c.revision for c in previous), default=0) + 1
    before = net(previous)
    after = net(current)
    latest_prev: dict[tuple, Credit] = {}
    for c in previous:
        latest_prev[_key(c)] = c
    latest_cur: dict[tuple, Credit] = {}
    for c in current:
        latest_cur[_key(c)] = c
    zero = (Decimal(0), Decimal(0))
    emitted: list[Credit] = []
    # Cancellations first (in previous order), then additions / changes (in current order).
    keys = [k for k in latest_prev if k not in after] + list(latest_cur)
    seen: set[tuple] = set()
    for k in keys:
        if k in seen:
            continue
        seen.add(k)
        w0, a0 = before.get(k, zero)
        w1, a1 = after.get(k, zero)
        dw, da = w1 - w0, a1 - a0
        if not dw and not da:
            continue
        template = latest_cur.get(k) or latest_prev[k]
        emitted.append(replace(
            template, weight=dw, amount=da, revision=revision,
            credit_id=credit_id(template.conversion_id, template.model, template.touch_id, revision,
                                channel=template.channel, source=template.source, medium=template.medium,
                                campaign=template.campaign),
        ))
    return emitted
