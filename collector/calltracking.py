"""Call tracking: a pool of phone numbers per project, leased to visitors so that a call to a number
can be matched to the visit that showed it.

A lease lasts `lease_minutes` and is extended while the visitor is active (the tracker asks again);
after it ends the number rests for `grace_minutes` before another visitor gets it, so a visitor who
calls a little after leaving is still matched. When every number is taken the project's default
number is shown and the miss is counted (pool sizing). Numbers are handed out least recently used
first, to keep the time between two visitors of one number as long as possible.

One collector process owns a project's pool (see README): several collectors behind a load balancer
must route /api/calltracking/lease of a project to the same process, or split the pool.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Mapping

import orjson

from schemas.envelope import Envelope
from schemas.families import LEASE

from .privacy import normalise_phone


@dataclass(frozen=True)
class PoolConfig:
    numbers: tuple[str, ...]  # E.164
    default: str  # shown when the pool is exhausted or the visitor has no lease
    lease_minutes: int = 20
    grace_minutes: int = 15
    # Static numbers (one per offline ad: a billboard, a radio spot, a flyer): E.164 -> the campaign
    # tags a call to it gets (source, medium, campaign, content, term).
    static: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: Mapping[str, Any], region: str) -> "PoolConfig | str":
        """From `projects configure <p> calltracking numbers=[...] default=+7...`; a reason if unusable."""
        raw = settings.get("numbers") or []
        if isinstance(raw, str):
            raw = [n for n in raw.replace(";", ",").split(",") if n.strip()]
        numbers = []
        for n in raw:
            e164 = normalise_phone(str(n), region, strict=False)
            if not e164:
                return f"calltracking: {n!r} is not a phone number"
            numbers.append(e164)
        default = normalise_phone(str(settings["default"]), region, strict=False) if settings.get("default") else None
        static = static_numbers(settings.get("static") or {}, region)
        if isinstance(static, str):
            return static
        if not numbers and not default and not static:
            return "calltracking is not configured for this project (numbers=[...] default=... or static={...})"
        try:
            lease_minutes = int(settings.get("lease_minutes", 20))
            grace_minutes = int(settings.get("grace_minutes", 15))
        except (TypeError, ValueError):
            return "calltracking: lease_minutes and grace_minutes are whole minutes"
        return cls(tuple(dict.fromkeys(numbers)), default or (numbers[0] if numbers else ""), max(1, lease_minutes),
                   max(0, grace_minutes), static)


_TAGS = ("source", "medium", "campaign", "content", "term")


def static_numbers(raw: Any, region: str) -> dict[str, dict[str, str]] | str:
    """`static='{"+7 727 000 00 09": {"source": "billboard", "medium": "offline", "campaign": "ring"}}'`
    (a JSON object or a dict; utm_ prefixes allowed) as E.164 -> tags; a reason if unusable."""
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return "calltracking: static must be a JSON object {number: {source, medium, campaign}}"
    if not isinstance(raw, dict):
        return "calltracking: static must be an object {number: {source, medium, campaign}}"
    out: dict[str, dict[str, str]] = {}
    for number, tags in raw.items():
        e164 = normalise_phone(str(number), region, strict=False)
        if not e164:
            return f"calltracking: static number {number!r} is not a phone number"
        if not isinstance(tags, dict) or not str(tags.get("source") or tags.get("utm_source") or "").strip():
            return f"calltracking: static number {number} needs at least a source"
        clean = {k.removeprefix("utm_"): str(v).strip() for k, v in tags.items() if str(v).strip()}
        out[e164] = {k: clean[k] for k in _TAGS if k in clean}
    return out


def with_static_campaign(env: Envelope, static: dict[str, dict[str, str]]) -> Envelope:
    """A call to a static number carries that number's campaign tags (flag "static_number"), so the
    processors give the call a touch of its own: the offline ad is its channel."""
    if env.type != "call" or not static:
        return env
    tags = static.get(str(env.properties.get("tracking_number") or ""))
    if not tags:
        return env
    campaign = {("name" if k == "campaign" else k): v for k, v in tags.items()}  # Segment's key for utm_campaign
    return env.model_copy(update={"context": env.context.model_copy(update={"campaign": campaign}),
                                  "flags": (*env.flags, "static_number")})


@dataclass(frozen=True)
class Lease:
    lease_id: str
    number: str
    anonymous_id: str
    started_at: datetime
    expires_at: datetime


@dataclass
class Pool:
    config: PoolConfig
    by_number: dict[str, Lease] = field(default_factory=dict)  # the latest lease of each number
    by_visitor: dict[str, Lease] = field(default_factory=dict)
    exhausted: int = 0  # visitors shown the default number because every number was taken

    def lease(self, anonymous_id: str, now: datetime) -> tuple[Lease | None, bool]:
        """The visitor's lease (extended) or a new one; (None, False) when the pool is exhausted.
        The bool says whether the lease is new or changed (and must be recorded)."""
        length = timedelta(minutes=self.config.lease_minutes)
        held = self.by_visitor.get(anonymous_id)
        if held and held.expires_at > now and self.by_number.get(held.number) == held:
            if held.expires_at - now > length / 2:
                return held, False
            extended = replace(held, expires_at=now + length)
            self._keep(extended)
            return extended, True
        free_since: list[tuple[datetime, str]] = []
        rest = timedelta(minutes=self.config.grace_minutes)
        for number in self.config.numbers:
            last = self.by_number.get(number)
            if last is None:
                free_since.append((datetime.min.replace(tzinfo=now.tzinfo), number))
            elif last.expires_at + rest <= now:
                free_since.append((last.expires_at, number))
        if not free_since:
            self.exhausted += 1
            return None, False
        _, number = min(free_since)
        lease_id = hashlib.sha256(f"{number}|{anonymous_id}|{now.isoformat()}".encode()).hexdigest()[:20]
        new = Lease(lease_id, number, anonymous_id, now, now + length)
        self._keep(new)
        return new, True

    def _keep(self, lease: Lease) -> None:
        self.by_number[lease.number] = lease
        self.by_visitor[lease.anonymous_id] = lease
        if len(self.by_visitor) > 4 * max(len(self.config.numbers), 1) + 1000:  # forget visitors long gone
            live = {lz.anonymous_id for lz in self.by_number.values()}
            self.by_visitor = {a: lz for a, lz in self.by_visitor.items() if a in live}

    def restore(self, leases: list[Lease]) -> None:
        for lease in sorted(leases, key=lambda lz: lz.expires_at):
            if lease.number in self.config.numbers:
                self._keep(lease)


def display(e164: str) -> str:
    """+77270000001 -> +7 727 000 00 01 (Kazakhstan/Russia style); other numbers as given."""
    if e164.startswith("+7") and len(e164) == 12:
        d = e164[2:]
        return f"+7 {d[:3]} {d[3:6]} {d[6:8]} {d[8:]}"
    return e164


def lease_envelope(project: str, lease: Lease, received_at: datetime, grace_minutes: int) -> Envelope:
    return Envelope(
        schema=LEASE, event_id=f"lease:{lease.lease_id}:{int(lease.expires_at.timestamp())}", type="lease",
        project=project, anonymous_id=lease.anonymous_id, timestamp=lease.started_at, received_at=received_at,
        properties={"lease_id": lease.lease_id, "tracking_number": lease.number,
                    "started_at": lease.started_at.isoformat(), "expires_at": lease.expires_at.isoformat(),
                    "matches_until": (lease.expires_at + timedelta(minutes=grace_minutes)).isoformat()},
        ids={"lease": lease.lease_id})


def answer(lease: Lease | None, config: PoolConfig) -> bytes:
    if lease is None:
        return orjson.dumps({"number": config.default, "display": display(config.default), "lease_id": None,
                             "expires_at": None, "extend_after_s": 300, "pool_exhausted": True})
    half = int((lease.expires_at - lease.started_at).total_seconds() // 2)
    return orjson.dumps({"number": lease.number, "display": display(lease.number), "lease_id": lease.lease_id,
                         "expires_at": lease.expires_at.isoformat(), "extend_after_s": max(60, min(half, 600))})
