"""The generator's state: one random sequence (every draw of a plan comes from it, in a fixed
order: that is what makes a plan reproducible), the run key every id carries, the people, and
everything emitted so far (Segment messages, webhook bodies, the truth behind them). The
primitives here (ids, phone numbers, times of day, people and their devices) are what site.py,
backoffice.py and people.py draw with."""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time as dtime, timedelta
from typing import Any

from stream_processors.channels import ChannelRules

from .business import (ALMATY, ARRIVAL_HOURS, MOBILE_PREFIXES, NAMES, RETURNS, UA_DESKTOP, UA_MOBILE,
                       vendor_accounts)
from .helpers import UTC, local, weighted
from .plan import Conversion, LiveCall, Visit

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # the alphabet of the tracker's ref codes


@dataclass
class Person:
    pid: str
    devices: list[tuple[str, str]]  # (anonymous id, user agent)
    mobile: bool
    phone: str | None = None
    name: str = ""
    visits: list[Visit] = field(default_factory=list)
    subscribed_at: datetime | None = None
    customer_since: datetime | None = None
    first_kind: str = ""

    @property
    def device(self) -> tuple[str, str]:
        return self.devices[-1]


class World:
    def __init__(self, seed: int, days: int, today: date, scale: float, live_calls: bool) -> None:
        self.seed, self.days, self.today, self.scale = seed, days, today, scale
        self.rng = random.Random(seed)
        key = f"moneytrail-demo|{seed}|{days}|{today.isoformat()}|{scale!r}"
        self.run = hashlib.sha256(key.encode()).hexdigest()[:10]
        self.num = int(self.run[:6], 16) % 900 + 100  # a 3-digit run prefix for numeric vendor ids
        self.end = datetime.combine(today, dtime.min, UTC)
        self.start = self.end - timedelta(days=days)
        self.rules = ChannelRules.load()
        self.persons: list[Person] = []
        self.messages: list[dict[str, Any]] = []  # Segment messages
        self.visits: list[Visit] = []
        self.conversions: list[Conversion] = []
        self.calls: list[tuple[datetime, dict[str, Any]]] = []  # webhook items, by vendor
        self.whatsapp: list[tuple[datetime, dict[str, Any]]] = []
        self.amocrm: list[tuple[datetime, list[tuple[str, str]], int]] = []
        self.payments: list[tuple[datetime, dict[str, Any]]] = []
        self.ids: dict[str, dict[str, str]] = defaultdict(dict)  # kind -> identifier -> person
        self.phones: set[str] = set()
        self.counter = Counter()
        self.paid_visits: Counter[tuple[date, str, str]] = Counter()
        self.live: list[LiveCall] = []
        self.live_wanted = live_calls
        self.secrets = vendor_accounts(seed)

    # ids -----------------------------------------------------------------------------------------
    def next(self, what: str) -> int:
        self.counter[what] += 1
        return self.counter[what]

    def message_id(self) -> str:
        return f"demo-{self.run}-{self.next('message'):06d}"

    def anon(self) -> str:
        r = self.rng.getrandbits(128)
        h = f"{r:032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[r % 4]}{h[17:20]}-{h[20:32]}"

    def new_phone(self) -> str:
        while True:
            phone = f"+7{self.rng.choice(MOBILE_PREFIXES)}{self.rng.randrange(10**7):07d}"
            if phone not in self.phones and phone[5] != "0":
                self.phones.add(phone)
                return phone

    def phone_of(self, p: Person) -> str:
        if p.phone is None:
            p.phone = self.new_phone()
            self.ids["phone"][p.phone] = p.pid
        return p.phone

    def phone_written(self, e164: str) -> str:
        """The same number as people type it."""
        d = e164[2:]
        return self.rng.choice((e164, f"+7 {d[:3]} {d[3:6]} {d[6:8]} {d[8:]}", f"8 ({d[:3]}) {d[3:6]}-{d[6:8]}-{d[8:]}",
                                f"8{d}", f"+7 ({d[:3]}) {d[3:6]} {d[6:]}"))

    def ref_code(self) -> str:
        return "".join(self.rng.choice(CROCKFORD) for _ in range(8))

    # time ------------------------------------------------------------------------------------------
    def daytime(self, at: datetime, first: int = 8, last: int = 24) -> datetime:
        """at, moved forward into local hours [first, last) when it falls at night."""
        when = local(at)
        if when.hour < first:
            when = when.replace(hour=first, minute=self.rng.randrange(60), second=self.rng.randrange(60))
        elif when.hour >= last:
            when = (when + timedelta(days=1)).replace(hour=first, minute=self.rng.randrange(60),
                                                      second=self.rng.randrange(60))
        return when.astimezone(UTC).replace(microsecond=0)

    def arrival_time(self, day: int) -> datetime:
        d = self.start.date() + timedelta(days=day)
        hour = weighted(self.rng, [(str(h), w) for h, w in ARRIVAL_HOURS])
        minute, second = self.rng.randrange(60), self.rng.randrange(60)
        when = datetime(d.year, d.month, d.day, int(hour), minute, second, tzinfo=ALMATY)
        return when.astimezone(UTC)

    def gap(self, mean_days: float = 2.0) -> timedelta:
        return timedelta(hours=max(3.0, self.rng.expovariate(1.0 / (24 * mean_days))))

    # people ----------------------------------------------------------------------------------------
    def new_person(self, first_kind: str) -> Person:
        mobile_share = 0.92 if first_kind in ("instagram_ads", "tiktok_ads", "instagram_bio", "kaspi") else 0.72
        mobile = self.rng.random() < mobile_share
        p = Person(pid=f"P{len(self.persons) + 1:05d}", devices=[], mobile=mobile, first_kind=first_kind,
                   name=self.rng.choice(NAMES))
        self.add_device(p, mobile)
        self.persons.append(p)
        return p

    def add_device(self, p: Person, mobile: bool) -> None:
        anon = self.anon()
        p.devices.append((anon, self.rng.choice(UA_MOBILE if mobile else UA_DESKTOP)))
        self.ids["anonymous_id"][anon] = p.pid

    def return_kind(self, first_kind: str, table: tuple[tuple[str, float], ...] = RETURNS) -> str:
        kind = weighted(self.rng, table)
        if kind == "same":
            kind = first_kind
        return kind
