"""The identity graph: links join identifiers into persons. Pure Python, one state per project.

A step takes the state and one `Link` and returns the state and the records it emits:

    state, emitted = link(state, Link(("anon", "a1"), ("user", "u7"), Evidence.LOGIN, "ev-1", at))

Identifiers
-----------
`Identifier = (kind, value)`. Kinds are a closed set (`KINDS`): user, crm_contact, phone, email,
chat, deal, anon, promo, ref, lease, call, order, payment (the last three were added later, at the
end, so existing anchors and person ids did not change; a call, an order and a payment belong to
one person, like a deal). Phone and email values are already keyed hashes (the caller
hashes; raw values never reach this module). Values are project-scoped by the caller: one
`IdentityGraph` per project. Promo codes must be personal codes (one recipient); a campaign-wide
code ("SUMMER10") is not an identifier and must not be linked, or it joins everyone who used it.

Identifier order: by kind rank (the order of `KINDS` above: stable, person-grade kinds first,
ephemeral device-grade kinds last), then by value (Python string order). It picks the anchor of a
person and orders weak links; it is part of the contract.

Links, strength and verification
--------------------------------
A `Link` is evidence that its two identifiers are one person: `Evidence` says where it comes from.

* Verifying evidence (`VERIFYING`): LOGIN (the site's authenticated backend vouches for it: an
  identify/alias sent by the server, or a phone/email the site verified, e.g. OTP login), CRM (a
  CRM record ties them: contact <-> phone/email/deal), CALL (a completed call: the caller number is
  given by the phone network), MESSENGER (the messenger platform gives it, e.g. a WhatsApp chat's
  wa_id phone). OBSERVED is everything else: identifiers seen together in a client-side event,
  a phone typed into a form, a ref code in a first message, a promo code entered at checkout.
* Device-grade kinds (`DEVICE_KINDS`): anon (a cookie: a family tablet, an office PC), lease (a
  call-tracking number leased to one browser session), ref (a messenger ref code from one
  session's link; it can be forwarded), promo (a code can be passed on). A chat id is person-grade:
  a 1:1 business chat belongs to one messenger account.
* A link is STRONG iff its evidence is verifying and neither endpoint is device-grade (user <->
  phone from a verified login, crm_contact <-> phone, crm_contact <-> deal, chat <-> phone from the
  platform). Every other link is WEAK: every link through a cookie/lease/ref/promo, and every
  OBSERVED link.
* An identifier of a guarded kind (`guard_kinds`, default just "phone") is VERIFIED iff it is an
  endpoint of at least one link with verifying evidence, weak or strong, accepted or not: a phone
  is verified once a CRM contact holds it, a call came from it, or a login or the messenger
  platform vouched for it. A phone only typed into a form is not verified. Verification is a
  property of the set of links, not of their order.

Several links between the same pair of identifiers are one stored link: its time is the earliest,
its evidence flags the union (verifying if any was). That merge is commutative and idempotent, so
a redelivered event changes nothing and emits nothing.

Components and the shared-device guard
--------------------------------------
The persons are a deterministic function of the SET of stored links:

1. Every strong link unites its endpoints. A "verified group" is a strong component holding at
   least one verified identifier: the phones of one CRM contact are one group, not two.
2. Weak links are taken in canonical order: (evidence time, smaller identifier, larger
   identifier), the identifiers in identifier order. A weak link whose endpoints are already in
   one component is accepted (it changes nothing). Otherwise it is accepted and unites the two
   components iff the union holds at most `max_verified_phones` verified groups (default 1);
   else it is REJECTED: the two sides stay different persons and `GuardTripped` is emitted.
3. A person's id is "p_" + the first 16 hex digits of sha256("kind:value") of its anchor, the
   smallest identifier of its component (identifier order). An identifier never linked is its own
   person: `person_id(identifier)`.

So a family tablet (one anon id) on which mother logs in with a verified phone and later father
logs in with his: the tablet joins the person that identified on it first (earlier weak link),
and the second weak link is rejected, because the union would hold two verified groups. One
person whose CRM contact holds two phones is one group, and anything may join it. If that CRM
record arrives after the tablet links, the two phones become one group and the rejected link is
accepted on recompute. Strong links are never guarded: the guard exists for cookies and devices.
A limit of 2 lets up to two verified groups share a device (two phones of one person not yet in
a CRM), at the price of merging two people who share a tablet.

Order independence. Call the "region" of an identifier the connected component of the graph of
ALL stored links (accepted and rejected) containing it. Person components never cross regions,
and steps 1-3 inside a region only read that region's links. When a link arrives, the state of
its region (the union of its endpoints' regions and the link) is recomputed from its stored
links by steps 1-3; every other region is untouched, and its result does not depend on the new
link. By induction, after any sequence of steps every region's persons equal steps 1-3 applied
to the set of links received so far, whatever their arrival order: the final graph depends on
the set only, and replaying the same links in any order gives the same ids. A late link with an
earlier time can therefore move identifiers between persons (a split): that is reported like any
other change.

Emitted records
---------------
Each step that changes anything takes the next `version` (one per step, strictly increasing per
state; all records of the step carry it):

* `MappingRow(identifier, person_id, version)` for every identifier whose person changed, merges
  and splits alike. The previous person of a never-linked identifier is its own `person_id`, so
  the warehouse rule is: the person of an identifier is the `person_id` of its row with the
  highest version, or, without a row, "p_" || lower(hex(SHA256(kind || ':' || value))) [1..16].
* `PersonMerged(old_person, new_person, version)` when every identifier of an old person (before
  the step) now belongs to one other person: downstream may re-key that person's conversions and
  credits wholesale. Includes the implicit singleton person of an identifier seen for the first
  time (an anonymous visitor's history keyed by p(anon) moves to p(user) on login).
* `PersonSplit(old_person, new_persons, version)` when an old person's identifiers now belong to
  several persons (a late, earlier weak link changed a guard decision): re-key by identifier,
  following the MappingRows.
* `GuardTripped(...)` once for each weak link that becomes rejected in this step (the arriving
  link itself, or an older one whose decision a late link changed). A redelivered rejected link
  is not reported again.

For replays into a warehouse that already holds rows, start the new run at a higher version
(`IdentityGraph(first_version=...)`), or truncate the mapping table: versions count steps, they
are not a function of the link set.

Persistence
-----------
`to_rows()` yields (row_key, bytes) pairs shaped for a table keyed by identifier (Faust/RocksDB,
key "kind:value" under the caller's project prefix): each identifier's row holds its current
person and its links (the other endpoint, time in microseconds, flags), so every link is stored
at both ends, plus one "#meta" row with the version and configuration. A step needs only the
link's region, which a table-backed adapter loads by a breadth-first walk over those rows from
the link's two endpoints, recomputes with the same steps, and writes back the rows that changed;
the stored person makes `person_of` one lookup. `from_rows()` restores this in-memory state
(persons recomputed from the links, so they cannot disagree with them).

Complexity and memory
---------------------
A step costs O(R log R) for a region of R links (union-find, sorting its weak links, one sha256
per component); a typical person has 1-5 links. A hub makes every step in its region pay its
size, so n links into one hub cost O(n^2) in all (5,000 cookies on one promo code: ~6 ms per
link at the end). Keep hubs out of links: a lease identifier is one lease of a pool number to one
session (number + lease id), never the bare pool or static number; a promo identifier is a
personal code, never a campaign code.

The in-memory state is two dicts: identifier -> person id, and person id -> its region's list of
links (one list object shared by the region's persons); a link is a 3-tuple (key, key,
micros<<3|flags); an identifier is stored once, as a compact key (one rank character + value),
and a person id once, shared by its identifiers. Measured with tracemalloc on a typical mix
(~3 identifiers per person; most persons a cookie with its call-tracking lease; UUID cookies,
32-hex phone/email hashes): ~240 bytes per identifier held, the same at 100k and 1M. Of that,
the identifier strings themselves ~75, the identifier -> person dict ~38, links (tuples and
their packed ints) ~65, region lists ~30, person id strings ~22, the person -> region dict ~10.
A cookie never linked to anything is not held at all (its person is computed from itself).
CPython on one core: ~90k links/s in time order, ~75k/s shuffled (200k links).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Union

import orjson

Identifier = tuple[str, str]

# Identifier order: rank of the kind, then value. The first kinds make the most stable anchors.
KINDS: tuple[str, ...] = ("user", "crm_contact", "phone", "email", "chat", "deal", "anon", "promo", "ref", "lease",
                          "call", "order", "payment")
KIND_RANK: dict[str, int] = {kind: rank for rank, kind in enumerate(KINDS)}
DEVICE_KINDS: frozenset[str] = frozenset({"anon", "lease", "ref", "promo"})
DEFAULT_MAX_VERIFIED_PHONES = 1
ROWS_FORMAT = 1
META_ROW = "#meta"
GUARD_REASON = "verified_phone_limit"

# Internal compact key: one character per kind, in rank order, then the value. String order of
# keys is identifier order.
_CODE: dict[str, str] = {kind: chr(ord("0") + rank) for rank, kind in enumerate(KINDS)}
_KIND_OF_CODE: dict[str, str] = {code: kind for kind, code in _CODE.items()}

_VERIFY = 1  # the evidence is verifying
_STRONG = 2  # verifying and no device-grade endpoint
_REJECTED = 4  # weak and rejected by the guard at the last recompute
_FLAG_BITS = 3
_FLAG_MASK = (1 << _FLAG_BITS) - 1

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class Evidence(StrEnum):
    """Where a link comes from. See the module docstring for which evidence verifies."""

    LOGIN = "login"
    CRM = "crm"
    CALL = "call"
    MESSENGER = "messenger"
    OBSERVED = "observed"


VERIFYING: frozenset[Evidence] = frozenset({Evidence.LOGIN, Evidence.CRM, Evidence.CALL, Evidence.MESSENGER})


def _check(identifier: Identifier) -> None:
    if not (isinstance(identifier, tuple) and len(identifier) == 2):
        raise ValueError(f"identifier must be a (kind, value) tuple, got {identifier!r}")
    kind, value = identifier
    if kind not in KIND_RANK:
        raise ValueError(f"unknown identifier kind {kind!r}; kinds are {', '.join(KINDS)}")
    if not isinstance(value, str) or not value:
        raise ValueError(f"identifier {kind}: value must be a non-empty string, got {value!r}")


def _key(identifier: Identifier) -> str:
    return _CODE[identifier[0]] + identifier[1]


def _ident(key: str) -> Identifier:
    return (_KIND_OF_CODE[key[0]], key[1:])


def _pid_of_key(key: str) -> str:
    text = f"{_KIND_OF_CODE[key[0]]}:{key[1:]}"
    return "p_" + hashlib.sha256(text.encode()).hexdigest()[:16]


def person_id(identifier: Identifier) -> str:
    """The person id anchored at this identifier; also the person of an identifier never linked."""
    _check(identifier)
    return _pid_of_key(_key(identifier))


def identifier_order(identifier: Identifier) -> tuple[int, str]:
    """Sort key of the identifier order (kind rank, value)."""
    return (KIND_RANK[identifier[0]], identifier[1])


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // _US


def _at(us: int) -> datetime:
    return _EPOCH + us * _US


@dataclass(frozen=True, slots=True)
class Link:
    """Evidence that `a` and `b` are one person, from event `event_id` at time `at` (aware)."""

    a: Identifier
    b: Identifier
    evidence: Evidence
    event_id: str
    at: datetime

    def __post_init__(self) -> None:
        _check(self.a)
        _check(self.b)
        if self.a == self.b:
            raise ValueError(f"link {self.event_id}: an identifier cannot link to itself: {self.a!r}")
        if not isinstance(self.evidence, Evidence):
            object.__setattr__(self, "evidence", Evidence(self.evidence))
        if not isinstance(self.at, datetime) or self.at.tzinfo is None:
            raise ValueError(f"link {self.event_id}: need an aware datetime, got {self.at!r}")
        if self.at.tzinfo is not UTC:
            object.__setattr__(self, "at", self.at.astimezone(UTC))

    @property
    def verifying(self) -> bool:
        return self.evidence in VERIFYING

    @property
    def strong(self) -> bool:
        return self.verifying and self.a[0] not in DEVICE_KINDS and self.b[0] not in DEVICE_KINDS

    def _flags(self) -> int:
        if not self.verifying:
            return 0
        return _VERIFY | (_STRONG if self.strong else 0)


@dataclass(frozen=True, slots=True)
class MappingRow:
    """The warehouse's versioned mapping: keep, per identifier, the row with the highest version."""

    identifier: Identifier
    person_id: str
    version: int


@dataclass(frozen=True, slots=True)
class PersonMerged:
    """Every identifier of `old_person` now belongs to `new_person`."""

    old_person: str
    new_person: str
    version: int


@dataclass(frozen=True, slots=True)
class PersonSplit:
    """The identifiers of `old_person` now belong to several persons; re-key by identifier."""

    old_person: str
    new_persons: tuple[str, ...]
    version: int


@dataclass(frozen=True, slots=True)
class GuardTripped:
    """A weak link was rejected: joining would put `verified_groups` > `limit` verified groups
    (distinct verified phones, phones held together by strong links counting once) in one person.
    `person_a`/`person_b` are the persons of `a`/`b` after the step, `verified` the verified
    identifiers of both; `event_id` is the event whose arrival led to the decision (the link's
    own, or a late link that changed an older decision). `a` and `b` are in identifier order."""

    a: Identifier
    b: Identifier
    link_at: datetime
    person_a: str
    person_b: str
    verified_groups: int
    limit: int
    verified: tuple[Identifier, ...]
    event_id: str
    version: int
    reason: str = GUARD_REASON


Emitted = Union[MappingRow, PersonMerged, PersonSplit, GuardTripped]

_StoredLink = tuple[str, str, int]  # (smaller key, larger key, micros << 3 | flags)


@dataclass(slots=True)
class _Solved:
    person: dict[str, str]  # key -> person id, every endpoint of the region
    rejected: dict[tuple[str, str], int]  # rejected weak pair -> verified groups of the union
    verified: set[str]


class IdentityGraph:
    """Per-project identity state. Mutable: `link()` updates it in place and returns it."""

    __slots__ = ("max_verified_phones", "guard_kinds", "version", "_guard_codes", "_person", "_region")

    def __init__(
        self,
        max_verified_phones: int = DEFAULT_MAX_VERIFIED_PHONES,
        *,
        guard_kinds: Iterable[str] = ("phone",),
        first_version: int = 0,
    ) -> None:
        if not isinstance(max_verified_phones, int) or max_verified_phones < 1:
            raise ValueError(f"max_verified_phones must be an integer >= 1, got {max_verified_phones!r}")
        kinds = frozenset(guard_kinds)
        for kind in kinds:
            if kind not in KIND_RANK:
                raise ValueError(f"unknown guard kind {kind!r}")
            if kind in DEVICE_KINDS:
                raise ValueError(f"guard kind {kind!r} is device-grade; the guard counts person-grade identifiers")
        if not kinds:
            raise ValueError("guard_kinds must not be empty")
        self.max_verified_phones = max_verified_phones
        self.guard_kinds = kinds
        self.version = first_version  # the version of the last step that emitted anything
        self._guard_codes = frozenset(_CODE[k] for k in kinds)
        self._person: dict[str, str] = {}  # key -> person id (every identifier in a stored link)
        self._region: dict[str, list[_StoredLink]] = {}  # person id -> its region's links (shared)

    # ---- queries -------------------------------------------------------------------------------

    def person_of(self, identifier: Identifier) -> str:
        _check(identifier)
        key = _key(identifier)
        pid = self._person.get(key)
        return pid if pid is not None else _pid_of_key(key)

    def members(self, person: str) -> tuple[Identifier, ...]:
        """The identifiers of a person known to the graph, in identifier order (anchor first).
        A person the graph does not hold (e.g. a never-linked identifier's) has no known members."""
        region = self._region.get(person)
        if region is None:
            return ()
        owner = self._person
        found = {k for a, b, _ in region for k in (a, b) if owner[k] == person}
        return tuple(_ident(k) for k in sorted(found))

    def __len__(self) -> int:
        """Identifiers held (those in at least one stored link)."""
        return len(self._person)

    def __contains__(self, identifier: Identifier) -> bool:
        _check(identifier)
        return _key(identifier) in self._person

    def identifiers(self) -> Iterator[Identifier]:
        return (_ident(k) for k in self._person)

    def mapping(self) -> dict[Identifier, str]:
        """identifier -> person id for every identifier held."""
        return {_ident(k): p for k, p in self._person.items()}

    def persons(self) -> set[str]:
        return set(self._region)

    def link_count(self) -> int:
        return sum(len(r) for r in self._regions())

    def _regions(self) -> Iterator[list[_StoredLink]]:
        seen: set[int] = set()
        for region in self._region.values():
            if id(region) not in seen:
                seen.add(id(region))
                yield region

    # ---- the step ------------------------------------------------------------------------------

    def add(self, new: Link) -> list[Emitted]:
        ka, kb = _key(new.a), _key(new.b)
        if kb < ka:
            ka, kb = kb, ka
        flags = new._flags()
        packed = _micros(new.at) << _FLAG_BITS | flags
        pa = self._person.get(ka)
        pb = self._person.get(kb)
        ra = self._region[pa] if pa is not None else None
        rb = self._region[pb] if pb is not None else None
        if ra is not None and ra is rb:
            for i, (x, y, old) in enumerate(ra):
                if x == ka and y == kb:
                    old_flags = old & _FLAG_MASK
                    old_us, new_us = old >> _FLAG_BITS, packed >> _FLAG_BITS
                    if not flags & ~old_flags and new_us >= old_us:
                        return []  # nothing new: a redelivery, or later evidence of a known link
                    ra[i] = (x, y, min(old_us, new_us) << _FLAG_BITS | old_flags | flags)
                    if not flags & ~old_flags and old_flags & _STRONG:
                        return []  # an earlier time for a strong link: its time orders nothing
                    break
            else:
                ra.append((_canonical(ra, ka), _canonical(ra, kb), packed))
            region = ra
        else:
            if ra is not None:
                ka = _canonical(ra, ka)
            if rb is not None:
                kb = _canonical(rb, kb)
            if ra is None and rb is None:
                region = [(ka, kb, packed)]  # a literal: no over-allocation for the common case
            else:
                if rb is None or (ra is not None and len(ra) >= len(rb)):
                    region = ra  # type: ignore[assignment]
                    if rb is not None:
                        region.extend(rb)
                else:
                    region = rb
                    if ra is not None:
                        region.extend(ra)
                region.append((ka, kb, packed))
        return self._apply(region, new.event_id)

    def _solve(self, region: list[_StoredLink]) -> _Solved:
        parent: dict[str, str] = {}
        for a, b, _ in region:
            parent[a] = a
            parent[b] = b

        def find(x: str) -> str:
            p = parent[x]
            while p != x:
                g = parent[p]
                parent[x] = g
                x, p = p, g
            return x

        guard = self._guard_codes
        verified: set[str] = set()
        weak: list[_StoredLink] = []
        for link_ in region:
            a, b, packed = link_
            if packed & _VERIFY:
                if a[0] in guard:
                    verified.add(a)
                if b[0] in guard:
                    verified.add(b)
            if packed & _STRONG:
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[rb] = ra
            else:
                weak.append(link_)
        groups: dict[str, int] = {}
        for k in verified:
            groups[find(k)] = 1
        rejected: dict[tuple[str, str], int] = {}
        if weak:
            if len(weak) > 1:
                weak.sort(key=lambda l: (l[2] >> _FLAG_BITS, l[0], l[1]))
            limit = self.max_verified_phones
            for a, b, _ in weak:
                ra, rb = find(a), find(b)
                if ra == rb:
                    continue
                n = groups.get(ra, 0) + groups.get(rb, 0)
                if n > limit:
                    rejected[(a, b)] = n
                    continue
                parent[rb] = ra
                if n:
                    groups[ra] = n
        anchor: dict[str, str] = {}
        for k in parent:
            r = find(k)
            best = anchor.get(r)
            if best is None or k < best:
                anchor[r] = k
        pid_of_root = {r: _pid_of_key(k) for r, k in anchor.items()}
        return _Solved({k: pid_of_root[find(k)] for k in parent}, rejected, verified)

    def _apply(self, region: list[_StoredLink], event_id: str) -> list[Emitted]:
        solved = self._solve(region)
        newly_rejected: list[tuple[str, str, int, int]] = []
        rejected = solved.rejected
        for i, (a, b, packed) in enumerate(region):
            want = (a, b) in rejected
            if want != bool(packed & _REJECTED):
                region[i] = (a, b, packed ^ _REJECTED)
                if want:
                    newly_rejected.append((a, b, packed >> _FLAG_BITS, rejected[(a, b)]))

        owner = self._person
        regions = self._region
        person = solved.person
        # One string object per person id, shared by its identifiers and the region dict's key:
        # a person id that survives the step keeps its existing object.
        same: dict[str, str] = {}
        for k in person:
            old_pid = owner.get(k)
            if old_pid is not None:
                same[old_pid] = old_pid
        rows: list[tuple[str, str]] = []
        old_persons: dict[str, set[str]] = {}  # old person -> the new persons of its identifiers
        for k, new_pid in person.items():
            new_pid = same.get(new_pid, new_pid)
            old_pid = owner.get(k)
            if old_pid is None:  # first seen: it was its own person
                old_pid = _pid_of_key(k)
                owner[k] = new_pid
            elif old_pid != new_pid:
                owner[k] = new_pid
            if old_pid != new_pid:
                rows.append((k, new_pid))
            targets = old_persons.get(old_pid)
            if targets is None:
                old_persons[old_pid] = {new_pid}
            else:
                targets.add(new_pid)
        new_pids = {owner[k] for k in person}
        for old_pid in old_persons:
            if old_pid not in new_pids:
                regions.pop(old_pid, None)
        for pid in new_pids:
            regions[pid] = region

        if not rows and not newly_rejected:
            return []
        self.version += 1
        v = self.version
        out: list[Emitted] = [MappingRow(_ident(k), pid, v) for k, pid in sorted(rows)]
        for old_pid, targets in sorted(old_persons.items()):
            if len(targets) == 1:
                (new_pid,) = targets
                if new_pid != old_pid:
                    out.append(PersonMerged(old_pid, new_pid, v))
            else:
                out.append(PersonSplit(old_pid, tuple(sorted(targets)), v))
        for a, b, us, n in sorted(newly_rejected):
            pa, pb = solved.person[a], solved.person[b]
            verified = sorted(k for k in solved.verified if solved.person[k] in (pa, pb))
            out.append(GuardTripped(
                a=_ident(a), b=_ident(b), link_at=_at(us), person_a=pa, person_b=pb,
                verified_groups=n, limit=self.max_verified_phones,
                verified=tuple(_ident(k) for k in verified), event_id=event_id, version=v,
            ))
        return out

    # ---- persistence ---------------------------------------------------------------------------

    def to_rows(self) -> Iterator[tuple[str, bytes]]:
        """Rows for a table keyed by identifier ("kind:value"), plus the "#meta" row. Value of an
        identifier row: {"p": person id, "l": [[other "kind:value", micros, flags], ...]}."""
        yield self.meta_row()
        for region in self._regions():
            yield from self._region_rows(region)

    def meta_row(self) -> tuple[str, bytes]:
        return META_ROW, orjson.dumps({
            "format": ROWS_FORMAT,
            "version": self.version,
            "max_verified_phones": self.max_verified_phones,
            "guard_kinds": sorted(self.guard_kinds),
        })

    def region_rows(self, identifier: Identifier) -> list[tuple[str, bytes]]:
        """The rows of the region holding `identifier` plus the "#meta" row: what a step changed
        (a step only touches the region of its link), for a table-backed adapter to write back."""
        _check(identifier)
        pid = self._person.get(_key(identifier))
        rows = [self.meta_row()]
        if pid is not None:
            rows.extend(self._region_rows(self._region[pid]))
        return rows

    def _region_rows(self, region: list[_StoredLink]) -> Iterator[tuple[str, bytes]]:
        adjacency: dict[str, list[list]] = {}
        for a, b, packed in region:
            flags, us = packed & _FLAG_MASK, packed >> _FLAG_BITS
            adjacency.setdefault(a, []).append([_text(b), us, flags])
            adjacency.setdefault(b, []).append([_text(a), us, flags])
        for k, links in adjacency.items():
            yield _text(k), orjson.dumps({"p": self._person[k], "l": links})

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, bytes]]) -> "IdentityGraph":
        meta: dict | None = None
        pairs: dict[tuple[str, str], int] = {}
        for row_key, value in rows:
            data = orjson.loads(value)
            if row_key == META_ROW:
                meta = data
                continue
            k = _key(_parse_text(row_key))
            for other, us, flags in data["l"]:
                o = _key(_parse_text(other))
                a, b = (k, o) if k < o else (o, k)
                packed = us << _FLAG_BITS | (flags & (_VERIFY | _STRONG))
                old = pairs.get((a, b))
                if old is not None and old != packed:
                    raise ValueError(f"rows disagree on the link {_text(a)} - {_text(b)}")
                pairs[(a, b)] = packed
        if meta is None:
            raise ValueError("rows lack the #meta row")
        if meta.get("format") != ROWS_FORMAT:
            raise ValueError(f"unknown identity rows format {meta.get('format')!r}")
        graph = cls(meta["max_verified_phones"], guard_kinds=meta["guard_kinds"], first_version=meta["version"])
        # regions: connected components of all links
        parent: dict[str, str] = {}

        def find(x: str) -> str:
            p = parent.setdefault(x, x)
            while p != x:
                g = parent[p]
                parent[x] = g
                x, p = p, g
            return x

        for a, b in pairs:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[rb] = ra
        canon: dict[str, str] = {}
        by_root: dict[str, list[_StoredLink]] = {}
        for (a, b), packed in pairs.items():
            a = canon.setdefault(a, a)
            b = canon.setdefault(b, b)
            by_root.setdefault(find(a), []).append((a, b, packed))
        for region in by_root.values():
            solved = graph._solve(region)
            for i, (a, b, packed) in enumerate(region):
                if (a, b) in solved.rejected:
                    region[i] = (a, b, packed | _REJECTED)
            graph._person.update(solved.person)
            for pid in set(solved.person.values()):
                graph._region[pid] = region
        return graph


def _canonical(region: list[_StoredLink], key: str) -> str:
    """The key object the region already holds for `key` (one string object per identifier)."""
    for a, b, _ in region:
        if a == key:
            return a
        if b == key:
            return b
    return key


def _text(key: str) -> str:
    return f"{_KIND_OF_CODE[key[0]]}:{key[1:]}"


def _parse_text(text: str) -> Identifier:
    kind, sep, value = text.partition(":")
    if not sep:
        raise ValueError(f"bad identifier row key {text!r}")
    identifier = (kind, value)
    _check(identifier)
    return identifier


def link(state: IdentityGraph, new: Link) -> tuple[IdentityGraph, list[Emitted]]:
    """The step: add one link to the state (in place) and return it with what to emit."""
    return state, state.add(new)


def link_all(state: IdentityGraph, links: Iterable[Link]) -> tuple[IdentityGraph, list[Emitted]]:
    out: list[Emitted] = []
    for new in links:
        out.extend(state.add(new))
    return state, out
