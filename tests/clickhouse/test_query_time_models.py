"""Query-time attribution (clickhouse/reports/_credited.sql) against the live processors' rules
(stream_processors/attribution.py credit_all) on the same rows: random persons, touches,
conversions and identity_map rows written straight into a chDB warehouse.

Exact for first_touch, last_touch, last_non_direct, linear and position_based. time_decay: the
SQL has exp only in Float64 (the live side uses 28-digit decimals), so its weights may differ by
at most 1e-15 each (measured: up to 2e-17 over 300 random worlds), and an amount may differ by one minor unit only
where the live split is within that error of a tie (two remainders, or a quota and an integer);
the test checks that every such difference is at a near-tie. Money is conserved in every model.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal

import orjson
from hypothesis import HealthCheck, given, settings, strategies as st

from clickhouse import reports
from stream_processors.attribution import MODELS, Conversion, TouchPoint, credit_all, minor_units_of

UTC = timezone.utc
START = datetime(2026, 3, 1, tzinfo=UTC)
ANONS = [f"a{i}" for i in range(6)]
OTHERS = ["call:ct:1", "call:ct:2", "user:u1", "payment:stripe:pi_1", "deal:amocrm:7"]
IDENTIFIERS = [f"anon:{a}" for a in ANONS] + OTHERS
CHANNELS = [("Paid Search", "google"), ("Paid Social", "instagram"), ("Direct", "(direct)"), ("Email", "newsletter"),
            ("Organic Search", "google")]
CURRENCIES = ["KZT", "USD", "JPY", "KWD"]  # 2, 2, 0 and 3 decimals
WEIGHT_TOLERANCE = Decimal("1e-15")


def person_of(identifier: str) -> str:
    """The contract's own person of an identifier with no identity_map row."""
    return "p_" + hashlib.sha256(identifier.encode()).hexdigest()[:16]


def _touch_row(project, tid, anon, at, channel, source, bot=False, campaign="c1"):
    return {"project": project, "touch_id": tid, "anonymous_id": anon, "user_id": "", "started_at": _iso(at),
            "source": source, "medium": "cpc", "campaign": campaign, "content": "", "term": "", "click_id_type": "",
            "channel": channel, "landing_url": "https://shop.kz/", "referrer_host": "", "events": 1, "is_bot": bot}


def _conv_row(project, cid, kind, at, value, currency, subject="", anon=""):
    return {"project": project, "conversion_id": cid, "kind": kind, "source": "test", "at": _iso(at),
            "value": format(value, "f"), "currency": currency, "anonymous_id": anon, "user_id": "", "deal_id": "",
            "stage": "", "stage_kind": "", "event_id": cid, "ids": {}, "subject": subject}


def _link_row(project, a, b):
    return {"project": project, "a": a, "b": b, "evidence": "observed", "event_id": f"{a}|{b}",
            "at": "2026-03-01T00:00:00Z"}


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@st.composite
def worlds(draw):
    ms = st.integers(0, 50 * 86_400_000)  # 50 days, millisecond steps (the warehouse keeps ms)
    touches = draw(st.lists(st.tuples(st.sampled_from(ANONS + [""]), ms, st.sampled_from(CHANNELS), st.booleans()),
                            max_size=14))
    # a few touches on the same millisecond (ties go by touch_id) and exactly 7 days apart
    touches += [(a, t + d, ch, b) for a, t, ch, b in touches[:2] for d in (0, 7 * 86_400_000)]
    mapping = draw(st.lists(st.tuples(st.sampled_from(IDENTIFIERS), st.sampled_from(IDENTIFIERS), st.integers(1, 5)),
                            max_size=6))
    conversions = draw(st.lists(st.tuples(
        st.sampled_from(["lead", "sale", "payment", "refund"]), ms, st.integers(0, 10**9), st.booleans(),
        st.sampled_from(CURRENCIES), st.sampled_from(IDENTIFIERS + [""]), st.sampled_from(ANONS + [""])),
        min_size=1, max_size=8))
    lookback = draw(st.integers(1, 40))
    return touches, mapping, conversions, lookback


def _load(wh, world):
    """Rows into a fresh project; returns it with the Python side's (conversions, touches by person)."""
    touches, mapping, conversions, lookback = world
    p = f"q{uuid.uuid4().hex[:10]}"
    rows = [{"project": p, "identifier": identifier, "person_id": person_of(anchor), "version": version}
            for identifier, anchor, version in mapping]
    # one person per (identifier, version): the processors never write two for one version
    rows = list({(r["identifier"], r["version"]): r for r in rows}.values())
    latest: dict[str, tuple[int, str]] = {}
    for r in rows:
        if r["version"] >= latest.get(r["identifier"], (0, ""))[0]:
            latest[r["identifier"]] = (r["version"], r["person_id"])
    if rows:
        wh.insert("identity_map", rows)
        # the links the mapping came from (the processors write both); an anchor is an end of one
        wh.insert("identity_links", [_link_row(p, identifier, anchor) for identifier, anchor, _ in mapping])

    def person(identifier: str) -> str:
        return latest[identifier][1] if identifier in latest else person_of(identifier)

    by_person: dict[str, list[TouchPoint]] = defaultdict(list)
    trows = []
    for i, (anon, t, (channel, source), bot) in enumerate(touches):
        at = START + timedelta(milliseconds=t)
        tid = f"t{i:02d}"
        trows.append(_touch_row(p, tid, anon, at, channel, source, bot=bot and i % 3 == 0))
        if anon and not (bot and i % 3 == 0):  # the live stage keeps no touch without a cookie
            by_person[person(f"anon:{anon}")].append(TouchPoint(tid, at, channel, source, "cpc", "c1",
                                                                source == "(direct)"))
    if trows:
        wh.insert("touches", trows)
    convs, crows = [], []
    for i, (kind, t, units, finer, currency, subject, anon) in enumerate(conversions):
        places = minor_units_of(currency)
        # a value finer than the minor unit is stored as sent; the live stage rounds it half to even
        value = Decimal(0) if kind == "lead" else Decimal(units).scaleb(-places - finer) * (-1 if kind == "refund" else 1)
        at = START + timedelta(days=10, milliseconds=t)
        cid = f"c{i:02d}"
        crows.append(_conv_row(p, cid, kind, at, value, currency if kind != "lead" else "", subject, anon))
        ident = subject or (f"anon:{anon}" if anon else "")  # naming nobody: no touch (persons.py)
        live_value = value.quantize(Decimal(1).scaleb(-places), ROUND_HALF_EVEN)
        convs.append(Conversion(cid, person(ident) if ident else "", kind, at, live_value,
                                currency if kind != "lead" else ""))
    wh.insert("conversions", crows)
    return p, convs, by_person, lookback


def _near_tie(whole: int, live_units: list[int], i: int, slack: int) -> bool:
    """Is touch i's share of `whole` minor units (live weights in 1e-18 units) within `slack`
    of a tie: its remainder close to another's, or its quota close to a whole unit?"""
    one = 10**18
    rest = [(whole * u) % one for u in live_units]
    return rest[i] <= slack or one - rest[i] <= slack or any(
        abs(rest[i] - r) <= slack for j, r in enumerate(rest) if j != i)


def _compare(live, sql, model, whole):
    """Per touch of one conversion and model: equal credits (time_decay: see the module doc)."""
    assert set(live) == set(sql), (model, live, sql)
    if model != "time_decay":
        assert live == sql, model
        return
    units = [int(w.scaleb(18)) for w, _ in live.values()]
    slack = whole * 2000 + 1  # |weight error| <= 1e-15 = 1000 units: twice that, times the amount
    for i, key in enumerate(live):
        (lw, la), (sw, sa) = live[key], sql[key]
        assert abs(lw - sw) <= WEIGHT_TOLERANCE, (key, lw, sw)
        if la != sa:
            assert _near_tie(whole, units, i, slack), (key, la, sa)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(world=worlds())
def test_query_time_credits_equal_the_live_credits(wh, world):
    p, convs, by_person, lookback = _load(wh, world)
    req = reports.ReportRequest("channels", p, date(2026, 3, 11), date(2026, 4, 30), lookback_days=lookback)
    sql: dict[tuple[str, str], dict] = defaultdict(dict)
    for r in reports.credits(wh, req):
        sql[(r["conversion_id"], r["model"])][(r["touch_id"], r["channel"])] = (Decimal(r["weight"]),
                                                                                Decimal(r["amount"]))
    # a person's lead within 30 days after their previous one is a repeat (persons.py): no credit
    leads: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for conv in convs:
        if conv.kind == "lead" and conv.person_id:
            leads[conv.person_id].append((conv.at, conv.conversion_id))
    repeats = {cid for rows in leads.values() for (before, _), (at, cid) in zip(sorted(rows), sorted(rows)[1:])
               if at - before <= timedelta(days=30)}
    assert {k[0] for k in sql} == {c.conversion_id for c in convs} - repeats
    for conv in convs:
        if conv.conversion_id in repeats:
            continue
        credits = credit_all(conv, by_person.get(conv.person_id, []), timedelta(days=lookback))
        for model in MODELS:
            live = {(c.touch_id, c.channel): (c.weight, c.amount) for c in credits if c.model == model}
            got = sql[(conv.conversion_id, model)]
            # money of every conversion is conserved, in every model
            assert sum(a for _, a in got.values()) == conv.value
            assert sum(w for w, _ in got.values()) == 1
            whole = abs(int(conv.value.scaleb(minor_units_of(conv.currency))))
            _compare(live, got, model, whole)


def test_the_seed_journey_gets_each_models_credits(wh):
    """Instagram click, Google search a week later, a direct visit 3 days later, then a purchase of
    100 000 KZT: each model's own definition of the split."""
    p = f"q{uuid.uuid4().hex[:10]}"
    ig, gg, dd = START, START + timedelta(days=7), START + timedelta(days=10)
    wh.insert("touches", [_touch_row(p, "ig", "v1", ig, "Paid Social", "instagram"),
                               _touch_row(p, "gg", "v1", gg, "Organic Search", "google"),
                               _touch_row(p, "dd", "v1", dd, "Direct", "(direct)")])
    wh.insert("conversions", [_conv_row(p, "buy", "payment", dd, Decimal("100000.00"), "KZT", "anon:v1")])
    got: dict[str, dict[str, str]] = defaultdict(dict)
    for r in reports.credits(wh, reports.ReportRequest("channels", p, date(2026, 3, 1), date(2026, 3, 31))):
        got[r["model"]][r["channel"]] = r["amount"]
    assert got["first_touch"] == {"Paid Social": "100000.000000"}
    assert got["last_touch"] == {"Direct": "100000.000000"}
    assert got["last_non_direct"] == {"Organic Search": "100000.000000"}
    # a third each; the cent left over goes to the earliest touch
    assert got["linear"] == {"Paid Social": "33333.340000", "Organic Search": "33333.330000", "Direct": "33333.330000"}
    assert got["position_based"] == {"Paid Social": "40000.000000", "Organic Search": "20000.000000",
                                     "Direct": "40000.000000"}
    # 2^(-10/7) : 2^(-3/7) : 1, half-life 7 days
    assert got["time_decay"] == {"Paid Social": "17569.130000", "Organic Search": "35138.270000",
                                 "Direct": "47292.600000"}
    shares = [2 ** (-10 / 7), 2 ** (-3 / 7), 1]
    assert [round(100000 * s / sum(shares), 2) for s in shares] == [17569.13, 35138.27, 47292.6]


def test_a_call_is_credited_through_the_person_of_the_visitor_who_was_shown_the_number(wh):
    """The processors map a call's subject to the person of the visitor who held the number (whose
    cookie is the person's anchor, so it has no row itself); a later version wins."""
    p = f"q{uuid.uuid4().hex[:10]}"
    wh.insert("touches", [_touch_row(p, "t1", "v1", START, "Paid Search", "yandex"),
                               _touch_row(p, "t2", "v2", START, "Paid Social", "instagram")])
    wh.insert("identity_map", [
        {"project": p, "identifier": "call:ct:1", "person_id": person_of("anon:v2"), "version": 1},
        {"project": p, "identifier": "call:ct:1", "person_id": person_of("anon:v1"), "version": 2},
        {"project": p, "identifier": "lease:L1", "person_id": person_of("anon:v1"), "version": 2},
    ])
    wh.insert("identity_links", [_link_row(p, "anon:v1", "lease:L1"), _link_row(p, "anon:v2", "lease:L0")])
    at = START + timedelta(minutes=30)
    wh.insert("conversions", [_conv_row(p, "call-1", "lead", at, Decimal(0), "", "call:ct:1"),
                                   _conv_row(p, "call-2", "lead", at, Decimal(0), "", "call:ct:9")])
    out = reports.run(wh, reports.ReportRequest("channels", p, date(2026, 3, 1), date(2026, 3, 31)))
    assert {r["channel"]: r["leads"] for r in out["rows"] if r["leads"]} == {"Paid Search": 1, "(unattributed)": 1}



@st.composite
def streams(draw):
    """Touches, conversions and identity links in a random arrival order, as the persons stage reads them."""
    ms = st.integers(0, 40 * 86_400_000)
    records = [("t", a, t, ch) for a, t, ch in draw(st.lists(
        st.tuples(st.sampled_from(ANONS), ms, st.sampled_from(CHANNELS)), max_size=12))]
    records += [("c", k, t, v, s) for k, t, v, s in draw(st.lists(st.tuples(
        st.sampled_from(["lead", "payment", "refund"]), ms, st.integers(1, 10**7), st.sampled_from(IDENTIFIERS)),
        min_size=1, max_size=6))]
    records += [("l", a, b, ev) for a, b, ev in draw(st.lists(st.tuples(
        st.sampled_from(IDENTIFIERS), st.sampled_from(IDENTIFIERS), st.sampled_from(["observed", "login"])),
        max_size=6)) if a != b]
    return draw(st.permutations(records)), draw(st.integers(1, 30))


def run_persons_stage(wh, records, config) -> tuple[str, dict[str, list[dict]]]:
    """The live persons stage over `streams()` records in their arrival order, in a fresh project;
    its identity_map rows and credits and the input rows are written as the sink writes them."""
    from schemas import topics
    from stream_processors.persons import MemoryStore, Persons

    p = f"q{uuid.uuid4().hex[:10]}"
    stage = Persons(MemoryStore(), config)
    tables: dict[str, list[dict]] = defaultdict(list)
    for i, rec in enumerate(records):
        if rec[0] == "t":
            row, topic = _touch_row(p, f"t{i:02d}", rec[1], START + timedelta(milliseconds=rec[2]), *rec[3]), topics.TOUCHES
            tables["touches"].append(row)
        elif rec[0] == "c":
            kind, t, units, subject = rec[1:]
            value = Decimal(0) if kind == "lead" else Decimal(units).scaleb(-2) * (-1 if kind == "refund" else 1)
            row = _conv_row(p, f"c{i:02d}", kind, START + timedelta(days=5, milliseconds=t), value,
                            "" if kind == "lead" else "KZT", subject)
            topic = topics.CONVERSIONS
            tables["conversions"].append(row)
        else:
            row, topic = {**_link_row(p, rec[1], rec[2]), "evidence": rec[3], "event_id": f"e{i}"}, topics.LINKS
            tables["identity_links"].append(row)
        out = stage.step(topic, orjson.dumps(row))
        tables["identity_map"] += out.identity
        tables["credits"] += out.credits
    from clickhouse.sink import write_batch

    for table, rows in tables.items():
        if table != "credits":
            write_batch(wh, table, rows, f"{p}-{table}")  # touches: with their live-aggregate deltas
    # the credits as the sink gets them: in the order emitted, in batches of 7 rows, so a version's
    # rows are split over two batches as often as not (the live aggregates must follow that too)
    for n in range(0, len(tables["credits"]), 7):
        write_batch(wh, "credits", tables["credits"][n:n + 7], f"{p}-credits-{n}")
    return p, tables


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=streams())
def test_query_time_credits_equal_what_the_persons_stage_wrote(wh, stream):
    """The live persons stage (identity graph + credit_all + corrections) over a random arrival
    order, its identity_map rows and credits written as the sink writes them; the query-time SQL
    over the same touches, conversions and links gives the same net credits."""
    from stream_processors.persons import PersonsConfig

    records, lookback = stream
    p, tables = run_persons_stage(wh, records, PersonsConfig(lookback=timedelta(days=lookback)))
    live: dict[tuple[str, str], dict] = defaultdict(dict)
    for r in wh.rows("SELECT conversion_id, model, touch_id, channel, toString(sum(weight)) AS w, "
                          "toString(sum(amount)) AS a FROM credits_current WHERE project = {p:String} "
                          "GROUP BY conversion_id, model, touch_id, channel HAVING sum(weight) != 0 OR sum(amount) != 0",
                          {"p": p}):
        live[(r["conversion_id"], r["model"])][(r["touch_id"], r["channel"])] = (Decimal(r["w"]), Decimal(r["a"]))
    req = reports.ReportRequest("channels", p, date(2026, 3, 1), date(2026, 4, 30), lookback_days=lookback)
    sql: dict[tuple[str, str], dict] = defaultdict(dict)
    for r in reports.credits(wh, req):
        sql[(r["conversion_id"], r["model"])][(r["touch_id"], r["channel"])] = (Decimal(r["weight"]),
                                                                                Decimal(r["amount"]))
    assert set(sql) == set(live)
    values = {r["conversion_id"]: Decimal(r["value"]) for r in tables["conversions"]}
    for (cid, model), got in sql.items():
        _compare({k: (w.normalize(), a.normalize()) for k, (w, a) in live[(cid, model)].items()},
                 {k: (w.normalize(), a.normalize()) for k, (w, a) in got.items()}, model,
                 abs(int(values[cid].scaleb(2))))
