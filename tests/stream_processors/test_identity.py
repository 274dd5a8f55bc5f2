"""The identity graph: merges, the shared-device guard, deterministic ids, order independence,
versioned mapping rows and persistence."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_processors.identity import (
    Evidence,
    GuardTripped,
    IdentityGraph,
    Link,
    MappingRow,
    PersonMerged,
    PersonSplit,
    link,
    link_all,
    person_id,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
_seq = iter(range(10**9))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def L(a, b, evidence=Evidence.OBSERVED, minute: float = 0, event_id: str | None = None) -> Link:
    return Link(a, b, Evidence(evidence), event_id or f"ev-{next(_seq)}", at(minute))


def pid(kind: str, value: str) -> str:
    """Person id computed here from the documented rule, not by the module."""
    return "p_" + hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:16]


def run(graph: IdentityGraph, *links: Link) -> list:
    out = []
    for new in links:
        state, emitted = link(graph, new)
        assert state is graph
        out.extend(emitted)
    return out


def of_type(records, cls):
    return [r for r in records if isinstance(r, cls)]


ANON = ("anon", "3f1c-anon")
TABLET = ("anon", "family-tablet")
USER = ("user", "u-42")
MOM, DAD = ("user", "mom"), ("user", "dad")
PH_MOM, PH_DAD = ("phone", "hmac-mom"), ("phone", "hmac-dad")


# ---- merges ---------------------------------------------------------------------------------


def test_anonymous_history_merges_on_login():
    g = IdentityGraph()
    assert g.person_of(ANON) == pid(*ANON)  # never seen: its own person
    out = run(g, L(ANON, USER, Evidence.LOGIN))
    assert g.person_of(ANON) == g.person_of(USER) == pid(*USER)  # user outranks anon as anchor
    assert MappingRow(ANON, pid(*USER), 1) in out
    assert not [r for r in of_type(out, MappingRow) if r.identifier == USER]  # user's person unchanged
    assert PersonMerged(pid(*ANON), pid(*USER), 1) in out  # history keyed by p(anon) moves
    assert g.members(pid(*USER)) == (USER, ANON)
    assert g.members(pid(*ANON)) == ()


def test_two_devices_of_one_person_joined_by_the_same_phone():
    phone = ("phone", "hmac-1")
    laptop, mobile = ("anon", "laptop"), ("anon", "mobile")
    lease1, lease2 = ("lease", "7727:1"), ("lease", "7727:2")
    g = IdentityGraph()
    out = run(
        g,
        L(laptop, lease1, minute=0),
        L(lease1, phone, Evidence.CALL, minute=1),  # verified phone
        L(mobile, lease2, minute=60),
        L(lease2, phone, Evidence.CALL, minute=61),
    )
    assert not of_type(out, GuardTripped)
    person = g.person_of(phone)
    assert person == pid(*phone)
    assert {g.person_of(x) for x in (laptop, mobile, lease1, lease2)} == {person}
    assert set(g.members(person)) == {phone, laptop, mobile, lease1, lease2}


def test_typed_phone_also_joins_devices():
    phone = ("phone", "hmac-typed")
    g = IdentityGraph()
    run(g, L(("anon", "a"), phone), L(("anon", "b"), phone))
    assert g.person_of(("anon", "a")) == g.person_of(("anon", "b")) == pid(*phone)


def _family_links():
    return [
        L(MOM, PH_MOM, Evidence.LOGIN, minute=0),
        L(DAD, PH_DAD, Evidence.LOGIN, minute=0),
        L(TABLET, MOM, Evidence.LOGIN, minute=10),  # mother logs in on the tablet first
        L(TABLET, DAD, Evidence.LOGIN, minute=20, event_id="dad-login"),
    ]


def test_shared_device_guard_keeps_people_with_different_verified_phones_apart():
    g = IdentityGraph()
    out = run(g, *_family_links())
    assert g.person_of(MOM) != g.person_of(DAD)
    assert g.person_of(TABLET) == g.person_of(MOM) == pid(*MOM)  # the first to identify keeps it
    assert g.person_of(PH_DAD) == pid(*DAD)
    (trip,) = of_type(out, GuardTripped)
    assert {trip.a, trip.b} == {TABLET, DAD}
    assert trip.event_id == "dad-login"
    assert trip.verified_groups == 2 and trip.limit == 1
    assert trip.reason == "verified_phone_limit"
    assert {trip.person_a, trip.person_b} == {pid(*MOM), pid(*DAD)}
    assert set(trip.verified) == {PH_MOM, PH_DAD}
    assert trip.link_at == at(20)
    # a redelivery of the rejected link is not reported again and changes nothing
    before = g.mapping()
    assert run(g, L(TABLET, DAD, Evidence.LOGIN, minute=20)) == []
    assert g.mapping() == before


def test_shared_device_limit_is_configurable():
    g = IdentityGraph(max_verified_phones=2)
    out = run(g, *_family_links())
    assert not of_type(out, GuardTripped)
    assert len({g.person_of(x) for x in (MOM, DAD, PH_MOM, PH_DAD, TABLET)}) == 1
    # a third verified phone on the same tablet exceeds the limit of two
    kid, ph_kid = ("user", "kid"), ("phone", "hmac-kid")
    out = run(g, L(kid, ph_kid, Evidence.LOGIN, minute=30), L(TABLET, kid, Evidence.LOGIN, minute=31))
    (trip,) = of_type(out, GuardTripped)
    assert trip.verified_groups == 3 and trip.limit == 2
    assert g.person_of(kid) != g.person_of(TABLET)


def test_shared_device_guard_through_call_leases():
    g = IdentityGraph()
    lease1, lease2 = ("lease", "7727:1"), ("lease", "7727:2")
    out = run(
        g,
        L(TABLET, lease1, minute=0),
        L(lease1, PH_MOM, Evidence.CALL, minute=1),
        L(TABLET, lease2, minute=30),
        L(lease2, PH_DAD, Evidence.CALL, minute=31),
    )
    assert g.person_of(PH_MOM) != g.person_of(PH_DAD)
    (trip,) = of_type(out, GuardTripped)
    # the later weak link in canonical order is the one rejected: lease2 -> dad's phone at 31
    assert {trip.a, trip.b} == {lease2, PH_DAD}
    assert g.person_of(lease2) == g.person_of(TABLET) == g.person_of(PH_MOM)


def test_unverified_typed_phones_do_not_trip_the_guard():
    g = IdentityGraph()
    out = run(g, L(TABLET, PH_MOM), L(TABLET, PH_DAD))  # typed into forms: not verified
    assert not of_type(out, GuardTripped)
    assert g.person_of(PH_MOM) == g.person_of(PH_DAD)


def test_strong_links_to_two_phones_of_one_crm_contact_merge():
    contact, deal = ("crm_contact", "c-9"), ("deal", "d-1")
    mobile, office = ("phone", "hmac-mobile"), ("phone", "hmac-office")
    g = IdentityGraph()
    out = run(
        g,
        L(contact, mobile, Evidence.CRM),
        L(contact, office, Evidence.CRM),
        L(contact, deal, Evidence.CRM),
        # a device that called from both numbers joins the one person: one verified group
        L(TABLET, ("lease", "1"), minute=1),
        L(("lease", "1"), mobile, Evidence.CALL, minute=1),
        L(TABLET, ("lease", "2"), minute=2),
        L(("lease", "2"), office, Evidence.CALL, minute=2),
    )
    assert not of_type(out, GuardTripped)
    assert {g.person_of(x) for x in (contact, mobile, office, deal, TABLET)} == {pid(*contact)}


def test_late_crm_record_unblocks_a_rejected_merge():
    g = IdentityGraph()
    lease1, lease2 = ("lease", "1"), ("lease", "2")
    run(g, L(TABLET, lease1), L(lease1, PH_MOM, Evidence.CALL), L(TABLET, lease2, minute=5),
        L(lease2, PH_DAD, Evidence.CALL, minute=5))
    assert g.person_of(PH_MOM) != g.person_of(PH_DAD)
    contact = ("crm_contact", "c-1")
    out = run(g, L(contact, PH_MOM, Evidence.CRM), L(contact, PH_DAD, Evidence.CRM))
    assert not of_type(out, GuardTripped)
    assert {g.person_of(x) for x in (PH_MOM, PH_DAD, TABLET, lease1, lease2)} == {pid(*contact)}
    assert {r.identifier for r in of_type(out, MappingRow)} >= {PH_MOM, PH_DAD, TABLET, lease1, lease2}


def test_late_earlier_link_splits_and_reports():
    g = IdentityGraph()
    # the father's login on the tablet arrives first, the mother's (earlier in time) late
    run(g, L(DAD, PH_DAD, Evidence.LOGIN), L(TABLET, DAD, Evidence.LOGIN, minute=20))
    assert g.person_of(TABLET) == pid(*DAD)
    v_before = g.version
    out = run(g, L(MOM, PH_MOM, Evidence.LOGIN), L(TABLET, MOM, Evidence.LOGIN, minute=10, event_id="late"))
    assert g.person_of(TABLET) == pid(*MOM)
    assert g.person_of(DAD) == g.person_of(PH_DAD) == pid(*DAD)
    last = [r for r in out if r.version == g.version]
    assert MappingRow(TABLET, pid(*MOM), g.version) in last
    assert PersonSplit(pid(*DAD), tuple(sorted([pid(*DAD), pid(*MOM)])), g.version) in last
    (trip,) = of_type(last, GuardTripped)
    assert {trip.a, trip.b} == {TABLET, DAD} and trip.event_id == "late"
    assert g.version == v_before + 2


def test_guard_can_count_user_ids_too():
    g = IdentityGraph(guard_kinds=("phone", "user"))
    out = run(g, L(TABLET, MOM, Evidence.LOGIN, minute=1), L(TABLET, DAD, Evidence.LOGIN, minute=2))
    assert g.person_of(MOM) != g.person_of(DAD)
    assert len(of_type(out, GuardTripped)) == 1
    g2 = IdentityGraph()  # default: only phones count, two logins without phones merge
    run(g2, L(TABLET, MOM, Evidence.LOGIN, minute=1), L(TABLET, DAD, Evidence.LOGIN, minute=2))
    assert g2.person_of(MOM) == g2.person_of(DAD)


# ---- ids, versions, records -----------------------------------------------------------------


def test_person_ids_are_deterministic_and_anchored_by_kind_rank():
    links = [
        L(("anon", "z"), ("lease", "7727:1")),
        L(("anon", "b"), ("anon", "a")),
        L(("ref", "r1"), ("chat", "wa:1")),
        L(("chat", "wa:1"), ("phone", "h9"), Evidence.MESSENGER),
        L(("deal", "d1"), ("crm_contact", "c1"), Evidence.CRM),
    ]
    g1, g2 = IdentityGraph(), IdentityGraph()
    run(g1, *links)
    run(g2, *reversed(links))
    assert g1.mapping() == g2.mapping()
    assert g1.person_of(("lease", "7727:1")) == pid("anon", "z")  # anon outranks lease
    assert g1.person_of(("anon", "b")) == pid("anon", "a")  # same kind: smaller value
    assert g1.person_of(("ref", "r1")) == pid("phone", "h9")  # phone outranks chat
    assert g1.person_of(("deal", "d1")) == pid("crm_contact", "c1")
    assert person_id(("user", "u-42")) == pid("user", "u-42")


def test_versions_increase_per_step_and_can_start_higher():
    g = IdentityGraph(first_version=1000)
    out1 = run(g, L(ANON, USER, Evidence.LOGIN))
    out2 = run(g, L(("anon", "other"), USER, Evidence.LOGIN))
    assert {r.version for r in out1} == {1001}
    assert {r.version for r in out2} == {1002}
    assert run(g, L(ANON, USER, Evidence.LOGIN, minute=5)) == []  # later evidence of a known link
    assert g.version == 1002


def test_stronger_duplicate_evidence_upgrades_a_link():
    g = IdentityGraph()
    contact = ("crm_contact", "c")
    run(g, L(MOM, PH_MOM, Evidence.LOGIN), L(TABLET, MOM, Evidence.LOGIN, minute=1))
    run(g, L(DAD, PH_DAD, Evidence.LOGIN), L(DAD, contact, Evidence.OBSERVED, minute=2))
    run(g, L(contact, PH_MOM, Evidence.OBSERVED, minute=3))  # weak: rejected (two groups)
    assert g.person_of(contact) == pid(*DAD)
    out = run(g, L(contact, PH_MOM, Evidence.CRM, minute=4))  # the CRM confirms it: strong
    # the contact is now in the mother's strong group; the weak dad <-> contact link is rejected
    assert g.person_of(contact) == g.person_of(MOM) == g.person_of(TABLET) == pid(*MOM)
    assert g.person_of(DAD) == pid(*DAD)
    assert MappingRow(contact, pid(*MOM), g.version) in out
    (trip,) = of_type(out, GuardTripped)
    assert {trip.a, trip.b} == {DAD, contact}


def test_link_validation():
    with pytest.raises(ValueError, match="unknown identifier kind"):
        L(("cookie", "x"), USER)
    with pytest.raises(ValueError, match="itself"):
        L(USER, USER)
    with pytest.raises(ValueError, match="non-empty"):
        L(("user", ""), ANON)
    with pytest.raises(ValueError, match="aware"):
        Link(ANON, USER, Evidence.LOGIN, "e", datetime(2025, 1, 1))
    with pytest.raises(ValueError):
        Link(ANON, USER, "telepathy", "e", T0)
    with pytest.raises(ValueError):
        IdentityGraph(max_verified_phones=0)
    with pytest.raises(ValueError):
        IdentityGraph(guard_kinds=("anon",))
    with pytest.raises(ValueError):
        IdentityGraph().person_of(("cookie", "x"))
    almaty = Link(ANON, USER, "login", "e", datetime(2025, 1, 1, 17, tzinfo=timezone(timedelta(hours=5))))
    assert almaty.at == datetime(2025, 1, 1, 12, tzinfo=UTC) and almaty.at.tzinfo is UTC
    assert almaty.evidence is Evidence.LOGIN
    assert not almaty.strong and almaty.verifying  # through a cookie: weak
    assert Link(USER, PH_MOM, "login", "e", T0).strong
    assert not Link(USER, PH_MOM, "observed", "e", T0).strong


def test_rows_round_trip():
    g = IdentityGraph(max_verified_phones=1)
    run(g, *_family_links(), L(("crm_contact", "c"), PH_MOM, Evidence.CRM))
    rows = list(g.to_rows())
    keys = [k for k, _ in rows]
    assert keys[0] == "#meta" and len(keys) == len(set(keys)) == len(g) + 1
    tablet_row = orjson.loads(dict(rows)["anon:family-tablet"])
    assert tablet_row["p"] == pid(*MOM) and len(tablet_row["l"]) == 2
    h = IdentityGraph.from_rows(rows)
    assert h.mapping() == g.mapping() and h.version == g.version
    assert _normal_rows(h) == _normal_rows(g)
    more = [L(("anon", "new"), DAD, Evidence.LOGIN, minute=30), L(("crm_contact", "c"), PH_DAD, Evidence.CRM)]
    assert run(h, *more) == run(g, *more)
    assert h.mapping() == g.mapping()
    with pytest.raises(ValueError, match="meta"):
        IdentityGraph.from_rows(rows[1:])


# ---- properties: arrival order, the reference, the warehouse ---------------------------------

POOL = (
    [("anon", f"a{i}") for i in range(4)]
    + [("user", f"u{i}") for i in range(3)]
    + [("phone", f"h{i}") for i in range(4)]
    + [("crm_contact", f"c{i}") for i in range(2)]
    + [("email", "e0"), ("deal", "d0"), ("lease", "l0"), ("lease", "l1"), ("ref", "r0"), ("chat", "ch0"), ("promo", "pr0")]
)
DEVICE = {"anon", "lease", "ref", "promo"}
VERIFYING = {"login", "crm", "call", "messenger"}
RANK = {k: i for i, k in enumerate(["user", "crm_contact", "phone", "email", "chat", "deal", "anon", "promo", "ref", "lease"])}


def order(identifier):
    return (RANK[identifier[0]], identifier[1])


@st.composite
def links_strategy(draw):
    n = draw(st.integers(0, 22))
    out = []
    for i in range(n):
        a = draw(st.sampled_from(POOL))
        b = draw(st.sampled_from([x for x in POOL if x != a]))
        evidence = draw(st.sampled_from(list(Evidence)))
        minute = draw(st.integers(0, 4))  # few distinct times: ties exercise the tie-break
        out.append(Link(a, b, evidence, f"ev{i}", at(minute)))
    return out


def reference(links, limit, guard_kinds=("phone",)):
    """From scratch: merge duplicate pairs, union strong links, then weak links in canonical
    order, each accepted iff the union holds at most `limit` strong groups with a verified id."""
    pairs = {}
    for l in links:
        a, b = sorted((l.a, l.b), key=order)
        t, v = pairs.get((a, b), (l.at, False))
        pairs[(a, b)] = (min(t, l.at), v or l.evidence.value in VERIFYING)
    verified = {x for (a, b), (_, v) in pairs.items() if v for x in (a, b) if x[0] in guard_kinds}
    ids = {x for p in pairs for x in p}
    strong_comp = {x: frozenset([x]) for x in ids}  # identifier -> its strong component (a set)
    for (a, b), (_, v) in pairs.items():
        if v and a[0] not in DEVICE and b[0] not in DEVICE and strong_comp[a] is not strong_comp[b]:
            merged = strong_comp[a] | strong_comp[b]
            for x in merged:
                strong_comp[x] = merged
    comp = dict(strong_comp)  # identifier -> its component (a set)

    def groups_of(component):
        return {strong_comp[x] for x in component if x in verified}

    weak = sorted(
        (p for p, (_, v) in pairs.items() if not (v and p[0][0] not in DEVICE and p[1][0] not in DEVICE)),
        key=lambda p: (pairs[p][0], order(p[0]), order(p[1])),
    )
    for a, b in weak:
        if comp[a] is comp[b]:
            continue
        merged = comp[a] | comp[b]
        if len(groups_of(merged)) > limit:
            continue
        for x in merged:
            comp[x] = merged
    return {x: pid(*min(comp[x], key=order)) for x in ids}


def _normal_rows(g):
    rows = {}
    for k, v in g.to_rows():
        data = orjson.loads(v)
        if "l" in data:
            data["l"] = sorted(map(tuple, data["l"]))
        else:
            data.pop("version")  # counts steps: not a function of the link set
        rows[k] = data
    return rows


PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(links=links_strategy(), data=st.data(), limit=st.integers(1, 3), guard_users=st.booleans())
def test_any_arrival_order_gives_the_reference_graph(links, data, limit, guard_users):
    kinds = ("phone", "user") if guard_users else ("phone",)
    first = data.draw(st.permutations(links))
    second = data.draw(st.permutations(links))
    g1, _ = link_all(IdentityGraph(limit, guard_kinds=kinds), first)
    g2, _ = link_all(IdentityGraph(limit, guard_kinds=kinds), second)
    seen = {x for l in links for x in (l.a, l.b)}
    assert set(g1.identifiers()) == set(g2.identifiers()) == seen
    assert g1.mapping() == g2.mapping() == reference(links, limit, kinds)
    assert _normal_rows(g1) == _normal_rows(g2)  # the stored state too, rejected flags included
    for person in g1.persons():
        members = g1.members(person)
        assert members and pid(*members[0]) == person
        assert all(g1.person_of(x) == person for x in members)


@PROPS
@given(links=links_strategy(), data=st.data())
def test_versioned_rows_bring_the_warehouse_to_the_final_graph(links, data):
    order_ = data.draw(st.permutations(links))
    g = IdentityGraph()
    warehouse: dict = {}  # identifier -> (version, person): the row with the highest version wins
    last_version = 0
    for new in order_:
        before = g.mapping()
        _, out = link(g, new)
        versions = {r.version for r in out}
        if out:
            assert versions == {g.version} and g.version > last_version
            last_version = g.version
        rows = of_type(out, MappingRow)
        assert len({r.identifier for r in rows}) == len(rows)
        for r in rows:
            assert r.person_id != before.get(r.identifier, pid(*r.identifier))
            if r.version > warehouse.get(r.identifier, (0, ""))[0]:
                warehouse[r.identifier] = (r.version, r.person_id)
        for m in of_type(out, PersonMerged):
            assert g.members(m.old_person) == () and g.members(m.new_person)
        for s in of_type(out, PersonSplit):
            assert len(s.new_persons) > 1 and all(g.members(p) for p in s.new_persons)
        for t in of_type(out, GuardTripped):
            assert g.person_of(t.a) != g.person_of(t.b) and t.verified_groups > t.limit
        # identifiers without a row are their own persons (the warehouse's default)
        for x in g.identifiers():
            assert warehouse.get(x, (0, pid(*x)))[1] == g.person_of(x)
    for x in g.identifiers():
        assert warehouse.get(x, (0, pid(*x)))[1] == g.person_of(x)


@PROPS
@given(links=links_strategy(), cut=st.integers(0, 22))
def test_restored_state_continues_like_the_original(links, cut):
    g = IdentityGraph()
    link_all(g, links[:cut])
    h = IdentityGraph.from_rows(list(g.to_rows()))
    assert h.mapping() == g.mapping() and _normal_rows(h) == _normal_rows(g)
    for new in links[cut:]:
        assert link(h, new)[1] == link(g, new)[1]
    assert h.mapping() == g.mapping()
