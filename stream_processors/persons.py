"""The persons stage: one identity graph per project, and live attribution over it.

The first stage (steps.py, keyed by visitor) emits touches, conversions, number leases and identity
links, all keyed by project. This stage consumes those four, keyed by project, and keeps:

* the identity graph (identity.py) in memory, its rows written back to the store after each step;
* each visitor's touches (by anonymous id), each identifier's conversions, each conversion's last
  credits, and each tracking number's leases and calls, in the store (RocksDB in both run modes:
  rocksdict embedded, a Faust table with a changelog distributed).

A call is matched to the number leases that held its tracking number at its time (start <= t <=
matches_until: the pool rests a number for its grace period, so normally one lease) by a link call
<-> lease; the lease's own link joins it to the visitor. Calls and leases may arrive in any order.

Whenever a conversion arrives, or the touches of a person with conversions change (a touch, a merge,
a split), the conversions of that person are credited afresh with attribution.credit_all over the
person's non-bot touches; when the result differs from the conversion's last one, the whole new
attribution goes out as a new VERSION of that conversion's credit rows (the reader keeps, per
conversion, the rows of its highest version: the credits_current view), so the credits of every
conversion always sum to its value and the final credits depend only on the set of inputs, not on
their order or on a crash in between. (Correcting deltas, attribution.correction, were the first
design: after a hard kill a Faust table can come back with some keys newer than others, and a
delta computed from a stale record double counts; tests/integration/test_faust_restart.py caught it.)

A step returns what it emits and leaves its store writes pending (`Overlay`): the adapter publishes
the output first and then applies the writes, so a crash in between re-processes the message
against the old state and emits the same rows again, never fewer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
import logging
import time
from typing import Any, Protocol

import orjson

from schemas import topics
from schemas.reasons import RejectReason
from schemas.values import COLUMN_PRECISION, MONEY_SCALE, Invalid, money

from .attribution import (DEFAULT_HALF_LIFE_DAYS, DEFAULT_LOOKBACK, MODELS, Conversion, Credit, TouchPoint,
                          credit_all, credit_id, minor_units_of)
from .outputs import dead_letter_record
from .steps import DeadLetter
from .identity import (DEFAULT_MAX_VERIFIED_PHONES, META_ROW, GuardTripped, IdentityGraph, Link, MappingRow,
                       person_id)

log = logging.getLogger("moneytrail.persons")
CREDITED_KINDS = frozenset({"lead", "sale", "payment", "refund"})
DEFAULT_LEAD_REPEAT = timedelta(days=30)
REPEAT_LEAD = "(repeat lead)"  # the channel of a repeat lead's credit rows: weight 0, amount 0
MAX_TOUCHES_PER_VISITOR = 500  # the oldest go first; a visitor with more is a robot or a kiosk
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# wide enough that quantizing any value the column holds (38 digits) to cents is exact, never an error
_MONEY_CTX = Context(prec=COLUMN_PRECISION + 10)
_SEP = "\x1f"


class Store(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def __setitem__(self, key: bytes, value: bytes) -> None: ...
    def items_with_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


class MemoryStore(dict):
    def items_with_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return ((k, v) for k, v in list(self.items()) if k.startswith(prefix))

    def close(self) -> None:
        pass


class Overlay:
    """Writes kept aside until `flush`; reads see them. The writes of the step under way are kept
    apart (`end_step` keeps them, `abort_step` drops them), so a refused record leaves no trace."""

    def __init__(self, base: Store) -> None:
        self.base = base
        self.pending: dict[bytes, bytes] = {}
        self._step: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        value = self._step.get(key)
        if value is None:
            value = self.pending.get(key)
        return value if value is not None else self.base.get(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._step[key] = value

    def items_with_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        seen = dict(self.base.items_with_prefix(prefix))
        for layer in (self.pending, self._step):
            seen.update((k, v) for k, v in layer.items() if k.startswith(prefix))
        return iter(seen.items())

    def end_step(self) -> None:
        self.pending.update(self._step)
        self._step.clear()

    def abort_step(self) -> None:
        self._step.clear()

    def flush(self) -> int:
        """Apply the kept writes to the store (after the output they go with is durable)."""
        return self.flush_prefix(b"")

    def flush_prefix(self, prefix: bytes) -> int:
        """Apply the kept writes whose key starts with prefix (one project's, for a table whose
        writes go to the partition of the event being handled).

        The identity graph's "#meta" row goes first (it holds the mapping-version counter: a kill
        after it and before the region rows makes the redelivered merge emit versions above the
        ones already sent, never the same again), then conversion records (after a crash a record
        is then never older than the touches and links it was credited from; versions make credits
        converge anyway), then the rest."""
        self.end_step()
        keys = sorted((k for k in self.pending if k.startswith(prefix)), key=_write_order)
        many = getattr(self.base, "write_many", None)
        if many is not None:  # one atomic RocksDB write batch (embedded)
            many({key: self.pending.pop(key) for key in keys})
        else:
            for key in keys:
                self.base[key] = self.pending.pop(key)
        return len(keys)

    def discard(self) -> None:
        self._step.clear()
        self.pending.clear()


_META_KEY = f"{_SEP}i{_SEP}{META_ROW}".encode()
_FACT_KEY = f"{_SEP}v{_SEP}".encode()


def _write_order(key: bytes) -> int:
    return 0 if key.endswith(_META_KEY) else 1 if _FACT_KEY in key else 2


@dataclass(frozen=True)
class PersonsConfig:
    lookback: timedelta = DEFAULT_LOOKBACK
    half_life_days: int = DEFAULT_HALF_LIFE_DAYS
    max_verified_phones: int = DEFAULT_MAX_VERIFIED_PHONES
    models: tuple[str, ...] = MODELS
    # A lead of a person within this time after the same person's previous lead is a repeat
    # enquiry (the site form and the CRM deal made from it, a second call about the same sofa):
    # it is kept, but counted and credited once, as the first. Zero: every lead counts.
    lead_repeat: timedelta = DEFAULT_LEAD_REPEAT
    # a fresh graph's first version (a replay rebuilding the state writes above the rows it replaces)
    first_identity_version: int = 0


@dataclass
class PersonsOut:
    """What a step emits: rows for identity_map, identity_guard and credits."""

    identity: list[dict] = field(default_factory=list)
    guards: list[dict] = field(default_factory=list)
    credits: list[dict] = field(default_factory=list)
    matches: list[dict] = field(default_factory=list)  # links this stage made (call <-> lease), for audit

    def records(self) -> dict[str, list[tuple[bytes, bytes]]]:
        out: dict[str, list[tuple[bytes, bytes]]] = {}
        for name, rows in ((topics.IDENTITY, self.identity), (topics.GUARDS, self.guards),
                           (topics.CREDITS, self.credits), (topics.MATCHES, self.matches)):
            if rows:
                out[name] = [(r["project"].encode(), orjson.dumps(r)) for r in rows]
        return out

    def __bool__(self) -> bool:
        return bool(self.identity or self.guards or self.credits or self.matches)


@dataclass(frozen=True)
class Refused:
    """A record this stage cannot use; it goes to the dead-letter topic."""

    reason: RejectReason
    detail: str
    payload: bytes

    def records(self) -> dict[str, list[tuple[bytes, bytes]]]:
        """What a refusal puts on the bus (like PersonsOut.records): its dead letter."""
        return {topics.DEAD_LETTERS: [dead_letter_record(DeadLetter(self.reason, self.detail, self.payload))]}


def _us(text: str) -> int:
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - _EPOCH) // timedelta(microseconds=1)


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _ident(text: str) -> tuple[str, str]:
    kind, _, value = text.partition(":")
    return (kind, value)


class SeenTouches(dict):
    """The touches last stored, by id, as the store holds them (bounded; a miss reads the store).
    A visit is re-sent each time its page count passes a milestone with nothing else changed."""

    LIMIT = 100_000

    def remember(self, touch_id: str, entry: list) -> None:
        if len(self) >= self.LIMIT:
            self.clear()
        self[touch_id] = entry


class ProjectPersons:
    """One project's state. Mutable: the graph changes in place; store writes go to the overlay."""

    def __init__(self, project: str, store: Overlay, config: PersonsConfig) -> None:
        self.project = project
        self.store = store
        self.config = config
        self.seen = SeenTouches()
        self.verified: set[str] = set()  # persons whose stored region rows were checked (_repair_region)
        # In a batch, conversions to credit afresh are collected here and credited once at its end
        # (a form's lead and its phone link arrive together: one attribution, not two).
        self.deferred: dict[str, None] | None = None
        prefix = self._key("i", "")
        rows = [(k[len(prefix):].decode(), v) for k, v in store.items_with_prefix(prefix)]
        self.graph = IdentityGraph.from_rows(rows) if rows else IdentityGraph(
            config.max_verified_phones, first_version=config.first_identity_version)

    # ---- store -------------------------------------------------------------------------------

    def _key(self, tag: str, rest: str) -> bytes:
        return f"{self.project}{_SEP}{tag}{_SEP}{rest}".encode()

    def _load(self, tag: str, rest: str, default: Any) -> Any:
        raw = self.store.get(self._key(tag, rest))
        return orjson.loads(raw) if raw else default

    def _save(self, tag: str, rest: str, value: Any) -> None:
        self.store[self._key(tag, rest)] = orjson.dumps(value)

    # ---- inputs ------------------------------------------------------------------------------

    def on_touch(self, row: dict) -> PersonsOut:
        anon = row.get("anonymous_id") or ""
        if not anon:
            return PersonsOut()
        entry = [row["touch_id"], _us(row["started_at"]), row["channel"], row["source"], row["medium"],
                 row.get("campaign") or "", bool(row.get("is_bot"))]
        if self.seen.get(entry[0]) == entry:
            return PersonsOut()  # a visit re-sent as it grows (2, 5, 10... pages): nothing to credit anew
        touches: list = self._load("t", anon, [])
        earliest = entry[1]
        for i, old in enumerate(touches):
            if old[0] == entry[0]:
                if old == entry:
                    return PersonsOut()  # a redelivery, or only its event count grew
                touches[i] = entry
                earliest = min(earliest, old[1])
                break
        else:
            touches.append(entry)
            if len(touches) > MAX_TOUCHES_PER_VISITOR:
                touches.sort(key=lambda t: (t[1], t[0]))
                del touches[: len(touches) - MAX_TOUCHES_PER_VISITOR]
        self._save("t", anon, touches)
        out = PersonsOut()
        # only conversions whose window can hold the touch change (browsing after a purchase: none)
        window = (earliest, max(entry[1], earliest) + self.config.lookback // timedelta(microseconds=1))
        self._credit_persons({self.graph.person_of(("anon", anon))}, ("anon", anon), out, window)
        self.seen.remember(entry[0], entry)
        return out

    def on_conversion(self, row: dict) -> PersonsOut:
        out = PersonsOut()
        if row.get("kind") not in CREDITED_KINDS:
            return out
        subject = row.get("subject") or (f"anon:{row['anonymous_id']}" if row.get("anonymous_id") else "")
        cid = row["conversion_id"]
        currency = row.get("currency") or ""
        places = Decimal(1).scaleb(-minor_units_of(currency))
        # checked by Persons.step (conversion_value): finite and within the column, so this is exact
        value = Decimal(str(row.get("value") or 0)).quantize(places, ROUND_HALF_EVEN, _MONEY_CTX)
        fact = {"kind": row["kind"], "at": _us(row["at"]), "value": format(value, "f"), "currency": currency,
                "subject": subject}
        stored = self._load("v", cid, None)
        unchanged = False
        if stored is not None:
            old = {k: stored[k] for k in fact}
            unchanged = old == fact or not _replaces(fact, old)
            if not unchanged:
                stored.update(fact)
        else:
            stored = dict(fact, rev=-1, credits=[])
        if not unchanged:
            self._save("v", cid, stored)
        subject, at = stored["subject"], stored["at"]
        # The indexes are repaired even for a conversion seen before: a worker killed while its
        # table writes reached the changelog in part can come back with the fact but not its index
        # entry, and then later touches would never find the conversion (seen in the kill test).
        repaired = False
        if subject:
            attached: list = self._load("c", subject, [])
            if cid not in attached:
                attached.append(cid)
                self._save("c", subject, attached)
                repaired = True
        number = row.get("tracking_number") or ""
        if number and subject.startswith("call:"):
            index = self._load("n", number, {"leases": {}, "calls": {}})
            if index["calls"].get(subject) != at:
                index["calls"][subject] = at
                self._save("n", number, index)
                repaired = True
                for lease_id, (_anon, start, until) in sorted(index["leases"].items()):
                    if start <= at <= until:
                        self._match(subject, lease_id, at, out)
        if unchanged and not repaired:
            return out
        if subject:
            self._credit_persons({self.graph.person_of(_ident(subject))}, _ident(subject), out)
        else:
            self._credit(cid, stored, "", out)
        return out

    def on_lease(self, row: dict) -> PersonsOut:
        out = PersonsOut()
        number, lease_id = row.get("tracking_number") or "", row.get("lease_id") or ""
        if not number or not lease_id:
            return out
        index = self._load("n", number, {"leases": {}, "calls": {}})
        start, until = _us(row["started_at"]), _us(row["matches_until"])
        old = index["leases"].get(lease_id)
        if old is not None:
            start, until = min(start, old[1]), max(until, old[2])  # extensions only grow a lease
            if old == [row.get("anonymous_id") or old[0], start, until]:
                return out
        index["leases"][lease_id] = [row.get("anonymous_id") or "", start, until]
        self._save("n", number, index)
        for call, at in sorted(index["calls"].items()):
            if start <= at <= until:
                self._match(call, lease_id, at, out)
        return out

    def on_link(self, row: dict) -> PersonsOut:
        out = PersonsOut()
        at = datetime.fromisoformat(row["at"])
        self._link(Link(_ident(row["a"]), _ident(row["b"]), row["evidence"], row.get("event_id") or "",
                        at if at.tzinfo else at.replace(tzinfo=UTC)), out)
        return out

    # ---- identity ----------------------------------------------------------------------------

    def _match(self, call: str, lease_id: str, at_us: int, out: PersonsOut) -> None:
        """A call matched to a number lease: the link joins them, and goes to identity_links too."""
        at = _at(at_us)
        event_id = f"match:{call}:{lease_id}"
        out.matches.append({"project": self.project, "a": call, "b": f"lease:{lease_id}", "evidence": "observed",
                            "event_id": event_id, "at": at.isoformat()})
        self._link(Link(_ident(call), ("lease", lease_id), "observed", event_id, at), out)

    def _link(self, link: Link, out: PersonsOut) -> None:
        emitted = self.graph.add(link)
        if not emitted:
            self._repair_region(link.a)
            return
        for e in emitted:
            if isinstance(e, MappingRow):
                out.identity.append({"project": self.project, "identifier": f"{e.identifier[0]}:{e.identifier[1]}",
                                     "person_id": e.person_id, "version": e.version})
            elif isinstance(e, GuardTripped):
                out.guards.append({
                    "project": self.project, "a": f"{e.a[0]}:{e.a[1]}", "b": f"{e.b[0]}:{e.b[1]}",
                    "link_at": e.link_at.isoformat(), "person_a": e.person_a, "person_b": e.person_b,
                    "verified_groups": e.verified_groups, "max_groups": e.limit, "event_id": e.event_id,
                    "version": e.version, "reason": e.reason})
        persons: set[str] = set()
        for row_key, value in self.graph.region_rows(link.a):
            self._save("i", row_key, orjson.loads(value))
            if row_key != META_ROW:
                persons.add(orjson.loads(value)["p"])
        if any(isinstance(e, MappingRow) for e in emitted):
            self._credit_persons(persons, link.a, out)

    def _repair_region(self, identifier: tuple[str, str]) -> None:
        """A link the graph already holds (a redelivery, or the same login again): once per region
        and process, make the stored rows of its region what the graph says. A worker killed while
        a merge's rows reached the changelog in part restarts with a region whose rows disagree
        (some identifiers still on the old person), and the redelivered link changes nothing in
        the graph, so nothing else would write them again."""
        person = self.graph.person_of(identifier)
        if person in self.verified:
            return
        self.verified.add(person)
        for row_key, value in self.graph.region_rows(identifier):
            row = orjson.loads(value)
            if row_key != META_ROW and self._load("i", row_key, None) != row:
                self._save("i", row_key, row)

    def _members(self, person: str, known: tuple[str, str]) -> tuple[tuple[str, str], ...]:
        members = self.graph.members(person)
        return members if members else (known,)

    # ---- attribution -------------------------------------------------------------------------

    def _credit_persons(self, persons: set[str], known: tuple[str, str], out: PersonsOut,
                        window: tuple[int, int] | None = None) -> None:
        """Credit afresh the conversions of these persons (those at a time in `window`, micros)."""
        for person in sorted(persons):
            members = self._members(person, known)
            facts = self._facts(members)
            if not facts:
                continue
            touches: list[TouchPoint] | None = None
            repeats: set[str] = set()
            for cid, fact in facts.items():
                if window is not None and not window[0] <= fact["at"] <= window[1]:
                    continue
                if self.deferred is not None:  # credited at the batch's end (end_batch)
                    self.deferred[cid] = None
                    continue
                if touches is None:
                    touches, repeats = self._touches(members), self._repeat_leads(facts)
                self._credit(cid, fact, person, out, touches, cid in repeats)

    def _facts(self, members: tuple[tuple[str, str], ...]) -> dict[str, dict]:
        """The stored conversions of a person's identifiers, by id (sorted)."""
        cids: set[str] = set()
        for kind, value in members:
            cids.update(self._load("c", f"{kind}:{value}", []))
        facts = {}
        for cid in sorted(cids):
            fact = self._load("v", cid, None)
            if fact is not None:
                facts[cid] = fact
        return facts

    def _repeat_leads(self, facts: dict[str, dict]) -> set[str]:
        """The leads of one person that come within lead_repeat after the person's previous lead
        (in (time, id) order: of two leads at the same moment the first id counts)."""
        gap = self.config.lead_repeat // timedelta(microseconds=1)
        if gap <= 0:
            return set()
        leads = sorted((fact["at"], cid) for cid, fact in facts.items() if fact["kind"] == "lead")
        return {cid for (before, _), (at, cid) in zip(leads, leads[1:]) if at - before <= gap}

    def end_batch(self) -> PersonsOut:
        """Credit the conversions collected during the batch, each once, with its person now."""
        out = PersonsOut()
        deferred, self.deferred = self.deferred or {}, None
        by_person: dict[str, tuple[tuple[str, str], list[str]]] = {}
        for cid in deferred:
            fact = self._load("v", cid, None)
            if fact is None or not fact["subject"]:
                continue
            subject = _ident(fact["subject"])
            person = self.graph.person_of(subject)
            by_person.setdefault(person, (subject, []))[1].append(cid)
        for person, (subject, cids) in sorted(by_person.items()):
            members = self._members(person, subject)
            facts = self._facts(members)
            repeats = self._repeat_leads(facts)
            touches = self._touches(members)
            for cid in sorted(cids):
                if cid in facts:
                    self._credit(cid, facts[cid], person, out, touches, cid in repeats)
        return out

    def _touches(self, members: tuple[tuple[str, str], ...]) -> list[TouchPoint]:
        points = []
        for kind, value in members:
            if kind != "anon":
                continue
            for touch_id, us, channel, source, medium, campaign, is_bot in self._load("t", value, []):
                if not is_bot:
                    points.append(TouchPoint(touch_id, _at(us), channel, source, medium, campaign,
                                             source == "(direct)"))
        return points

    def _credit(self, cid: str, fact: dict, person: str, out: PersonsOut,
                touches: list[TouchPoint] | None = None, repeat: bool = False) -> None:
        conv = Conversion(cid, person, fact["kind"], _at(fact["at"]), Decimal(fact["value"]), fact["currency"])
        if repeat:  # one row a model, weight 0: it supersedes the lead's earlier credits, counts nothing
            current = [Credit(cid, "", REPEAT_LEAD, "", "", "", model, Decimal(0), Decimal(0), "")
                       for model in self.config.models]
        else:
            try:
                current = credit_all(conv, touches or [], self.config.lookback, self.config.half_life_days,
                                     models=self.config.models)
            except (ValueError, InvalidOperation):
                return
        credited = [[c.touch_id, c.channel, c.source, c.medium, c.campaign, c.model, format(c.weight, "f"),
                     format(c.amount, "f")] for c in current]
        if credited == fact["credits"]:
            return  # nothing changed for this conversion
        # A new version of the conversion's whole attribution: readers keep each conversion's rows
        # of its highest version. Versions only grow (nanoseconds, and past the last one), so a
        # batch re-processed after a crash, whatever part of the state survived, ends with the
        # credits of the complete state: there is no bookkeeping of sent deltas to fall behind.
        version = max(time.time_ns(), fact.get("version", 0) + 1)
        fact["rev"] += 1
        fact["version"] = version
        fact["credits"] = credited
        self._save("v", cid, fact)
        for c in current:
            out.credits.append({
                "project": self.project, "conversion_id": cid, "kind": conv.kind,
                "credit_id": credit_id(cid, c.model, c.touch_id, fact["rev"], channel=c.channel, source=c.source,
                                       medium=c.medium, campaign=c.campaign) + f"{version:x}",
                "conversion_at": conv.at.isoformat(), "person_id": person, "model": c.model,
                "touch_id": c.touch_id, "channel": c.channel, "source": c.source, "medium": c.medium,
                "campaign": c.campaign, "weight": format(c.weight, "f"), "amount": format(c.amount, "f"),
                "currency": conv.currency, "revision": fact["rev"], "version": version})


def _replaces(new: dict, old: dict) -> bool:
    """Whether a conversion's new row replaces the stored one: a lead keeps its earliest time (a
    chat's first message), anything else its latest row (like the warehouse's conversions)."""
    if new["kind"] == "lead":
        return (new["at"], new["value"], new["subject"]) < (old["at"], old["value"], old["subject"])
    return (new["at"], new["value"], new["subject"]) > (old["at"], old["value"], old["subject"])


class Persons:
    """Every project's state on one store; `step` routes a record of the four input topics."""

    def __init__(self, store: Store, config: PersonsConfig) -> None:
        self.overlay = Overlay(store)
        self.config = config
        self._projects: dict[str, ProjectPersons] = {}
        self._batch = False

    def project(self, project: str) -> ProjectPersons:
        state = self._projects.get(project)
        if state is None:
            state = self._projects[project] = ProjectPersons(project, self.overlay, self.config)
            if self._batch:
                state.deferred = {}
        return state

    def begin_batch(self) -> None:
        """Until end_batch, steps collect the conversions to credit instead of crediting them."""
        for state in self._projects.values():
            state.deferred = {}
        self._batch = True

    def end_batch(self) -> PersonsOut:
        self._batch = False
        out = PersonsOut()
        for state in self._projects.values():
            done = state.end_batch()
            out.identity += done.identity
            out.guards += done.guards
            out.credits += done.credits
            out.matches += done.matches
        self.overlay.end_step()
        return out

    def step(self, topic: str, value: bytes) -> PersonsOut | Refused:
        try:
            row = orjson.loads(value)
            if topic == topics.CONVERSIONS and isinstance(amount := conversion_value(row), Invalid):
                return Refused(amount.reason, f"persons stage: conversion {row.get('conversion_id')!r}: "
                               f"{amount.detail}"[:500], value)
            state = self.project(str(row["project"]))
            handler = {topics.TOUCHES: state.on_touch, topics.CONVERSIONS: state.on_conversion,
                       topics.LEASES: state.on_lease, topics.LINKS: state.on_link}.get(topic)
            out = handler(row) if handler else PersonsOut()
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
            # ArithmeticError: decimal's InvalidOperation & co. A value must never kill the agent
            self._abandon_step()
            return Refused(RejectReason.undecodable, f"persons stage could not use a {topic} record: {exc!r}"[:500],
                           value)
        except Exception as exc:  # noqa: BLE001 - a record that meets a bug must not crash-loop the worker
            log.exception("persons stage could not process a %s record; dead-lettered", topic)
            self._abandon_step()
            return Refused(RejectReason.processing_error, f"persons stage: {exc!r}"[:500], value)
        self.overlay.end_step()
        return out

    def _abandon_step(self) -> None:
        """Drop what a failed step wrote, and the seen-touch cache (it may name a touch whose write
        was just dropped)."""
        self.overlay.abort_step()
        for state in self._projects.values():
            state.seen.clear()

    def forget(self) -> None:
        """Drop in-memory graphs (after a failed publish: they are ahead of the store)."""
        self.overlay.discard()
        self._projects.clear()
        self._batch = False


def conversion_value(row: dict) -> Decimal | Invalid:
    """A conversion's value as the warehouse column holds it (Decimal(38, 6); refunds are
    negative), or why this stage cannot credit it. The edge refuses such values; this stage also
    meets records from before that check, or from other producers."""
    raw = row.get("value")
    return money(0 if raw in (None, "") else raw, "value", negative_ok=True, max_digits=COLUMN_PRECISION,
                 scale=MONEY_SCALE)


PERSONS_INPUTS = (topics.TOUCHES, topics.CONVERSIONS, topics.LEASES, topics.LINKS)
__all__ = ["PERSONS_INPUTS", "MemoryStore", "Overlay", "Persons", "PersonsConfig", "PersonsOut", "Refused", "person_id"]
