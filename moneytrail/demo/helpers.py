"""Small pure helpers of the demo: times as the APIs want them, money, a Russian spreadsheet's
numbers, webhook signatures, and the two random draws the generator makes."""

from __future__ import annotations

import hashlib
import hmac
import math
import random
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterable

from .business import ALMATY

UTC = timezone.utc


def iso_z(dt: datetime) -> str:
    """2025-03-14T09:30:00.000Z (a Segment timestamp)."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def local(dt: datetime) -> datetime:
    """The time in Almaty."""
    return dt.astimezone(ALMATY)


def money(value: Decimal | int | float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def ru_number(value: Decimal | int) -> str:
    """1500.5 -> '1 500,50' (a Russian spreadsheet); integers without decimals."""
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ")
    whole, _, cents = f"{value:.2f}".partition(".")
    return f"{int(whole):,}".replace(",", " ") + "," + cents


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def weighted(rng: random.Random, pairs: Iterable[tuple[str, float]]) -> str:
    """A name drawn with its weight."""
    items = list(pairs)
    total = sum(w for _, w in items)
    x = rng.random() * total
    for name, w in items:
        x -= w
        if x < 0:
            return name
    return items[-1][0]


def geometric(rng: random.Random, p: float) -> int:
    """Failures before the first success (p = chance of success)."""
    return int(math.log(1.0 - rng.random()) / math.log(1.0 - p))
