"""The persons stage: identity + live credits over shuffled, redelivered and restarted streams."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
from hypothesis import given, settings, strategies as st

from schemas import topics
from stream_processors.attribution import MODELS, Conversion, TouchPoint, credit_all
from stream_processors.identity import person_id
from stream_processors.persons import MemoryStore, Persons, PersonsConfig, Refused

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PROJECT = "p1"


def touch(tid: str, anon: str, at: datetime, channel: str, source: str, bot: bool = False) -> tuple[str, dict]:
    return topics.TOUCHES, {"project": PROJECT, "touch_id": tid, "anonymous_id": anon, "started_at": at.isoformat(),
                            "channel": channel, "source": source, "medium": "cpc" if source != "(direct)" else "(none)",
                            "campaign": f"{source}-camp", "is_bot": bot}


def conversion(cid: str, kind: str, at: datetime, value: str, subject: str, number: str = "") -> tuple[str, dict]:
    return topics.CONVERSIONS, {"project": PROJECT, "conversion_id": cid, "kind": kind, "at": at.isoformat(),
                                "value": value, "currency": "KZT" if value != "0" else "", "subject": subject,
                                "anonymous_id": subject[5:] if subject.startswith("anon:") else "",
                                "tracking_number": number}


def link(a: str, b: str, evidence: str, at: datetime, event: str = "") -> tuple[str, dict]:
    return topics.LINKS, {"project": PROJECT, "a": a, "b": b, "evidence": evidence, "event_id": event or f"{a}-{b}",
                          "at": at.isoformat()}


def lease(lease_id: str, number: str, anon: str, start: datetime, until: datetime) -> tuple[str, dict]:
    return topics.LEASES, {"project": PROJECT, "lease_id": lease_id, "tracking_number": number, "anonymous_id": anon,
                           "started_at": start.isoformat(), "expires_at": until.isoformat(),
                           "matches_until": until.isoformat()}


def run(records, persons: Persons | None = None, store: MemoryStore | None = None, batch: int = 1):
    """Records through the stage; batch > 1 credits once per batch of that many (as the embedded
    runner does), 1 credits at every record (as the Faust agent does)."""
    store = store if store is not None else MemoryStore()
    persons = persons or Persons(store, PersonsConfig())
    out = defaultdict(list)

    def emit(result) -> None:
        for name, recs in result.records().items():
            out[name].extend(orjson.loads(v) for _, v in recs)

    for start in range(0, len(records), batch):
        if batch > 1:
            persons.begin_batch()
        for topic, row in records[start:start + batch]:
            result = persons.step(topic, orjson.dumps(row))
            assert not isinstance(result, Refused), result
            emit(result)
        if batch > 1:
            emit(persons.end_batch())
        persons.overlay.flush()
    return out, persons, store


def net_credits(rows) -> dict:
    """(conversion, model, touch, channel) -> (weight, amount) of each conversion's latest version
    (what the credits_current view reads), zero entries dropped; each credit_id once."""
    latest: dict[str, int] = {}
    for r in rows:
        latest[r["conversion_id"]] = max(latest.get(r["conversion_id"], 0), r["version"])
    seen, sums = set(), defaultdict(lambda: [Decimal(0), Decimal(0)])
    for r in rows:
        if r["credit_id"] in seen or r["version"] != latest[r["conversion_id"]]:
            continue
        seen.add(r["credit_id"])
        acc = sums[(r["conversion_id"], r["model"], r["touch_id"], r["channel"])]
        acc[0] += Decimal(r["weight"])
        acc[1] += Decimal(r["amount"])
    return {k: tuple(v) for k, v in sums.items() if v[0] or v[1]}


def final_persons(rows) -> dict:
    best: dict[str, tuple[int, str]] = {}
    for r in rows:
        if r["identifier"] not in best or r["version"] > best[r["identifier"]][0]:
            best[r["identifier"]] = (r["version"], r["person_id"])
    return {k: p for k, (_, p) in best.items()}


# ---- the seed journey ------------------------------------------------------------------------

SEED = [
    touch("t-ig", "phone-browser", T0, "Paid Social", "instagram"),
    touch("t-g", "laptop", T0 + timedelta(days=7), "Paid Search", "google"),
    touch("t-d", "laptop", T0 + timedelta(days=10), "Direct", "(direct)"),
    link("anon:phone-browser", "phone:h1", "observed", T0 + timedelta(minutes=5)),
    link("anon:laptop", "phone:h1", "observed", T0 + timedelta(days=10, minutes=5)),
    conversion("sale:1", "sale", T0 + timedelta(days=10, hours=1), "100000", "anon:laptop"),
]


def test_seed_journey_credits_every_model_over_both_devices():
    out, _, _ = run(SEED)
    net = net_credits(out[topics.CREDITS])
    by_model = defaultdict(dict)
    for (cid, model, _touch, channel), (w, a) in net.items():
        by_model[model][channel] = a
    assert by_model["first_touch"] == {"Paid Social": Decimal("100000.00")}
    assert by_model["last_touch"] == {"Direct": Decimal("100000.00")}
    assert by_model["last_non_direct"] == {"Paid Search": Decimal("100000.00")}
    assert by_model["linear"] == {"Paid Social": Decimal("33333.34"), "Paid Search": Decimal("33333.33"),
                                  "Direct": Decimal("33333.33")}
    assert by_model["position_based"] == {"Paid Social": Decimal("40000.00"), "Paid Search": Decimal("20000.00"),
                                          "Direct": Decimal("40000.00")}
    td = by_model["time_decay"]
    assert td["Direct"] > td["Paid Search"] > td["Paid Social"] and sum(td.values()) == Decimal("100000.00")


def test_conversion_before_the_merge_is_corrected_not_duplicated():
    # the sale arrives while the laptop is still a stranger: credited to the laptop's touches only,
    # then the phone link merges the phone browser in and a new version of its credits replaces it
    records = [SEED[0], SEED[1], SEED[2], SEED[5], SEED[3], SEED[4]]
    out, _, _ = run(records)
    credits = out[topics.CREDITS]
    assert {r["revision"] for r in credits} == {0, 1}
    first = [r for r in credits if r["model"] == "first_touch" and r["revision"] == 0]
    assert [r["channel"] for r in first] == ["Paid Search"]
    assert net_credits(credits) == net_credits(run(SEED)[0][topics.CREDITS])
    for model in MODELS:
        assert sum(a for (c, m, _, _), (_, a) in net_credits(credits).items() if m == model) == Decimal("100000.00")


def test_no_touch_gives_an_explicit_unattributed_credit():
    out, _, _ = run([conversion("lead:x", "lead", T0, "0", "chat:c9")])
    rows = out[topics.CREDITS]
    assert {r["channel"] for r in rows} == {"(unattributed)"}
    assert {r["model"] for r in rows} == set(MODELS)
    assert all(Decimal(r["weight"]) == 1 for r in rows)


def test_a_call_is_matched_to_the_lease_in_either_order():
    number = "+77010000001"
    call_at = T0 + timedelta(minutes=20)
    records = [
        touch("t1", "v1", T0, "Paid Search", "yandex"),
        link("anon:v1", "lease:L1", "observed", T0),
        lease("L1", number, "v1", T0, T0 + timedelta(minutes=35)),
        lease("L0", number, "v0", T0 - timedelta(hours=2), T0 - timedelta(hours=1)),  # an earlier visitor
        link("call:ct:9", "phone:h7", "call", call_at),
        conversion("lead:call:ct:9", "lead", call_at, "0", "call:ct:9", number),
    ]
    expected = None
    for order in (records, list(reversed(records))):
        out, persons, _ = run(order)
        credits = net_credits(out[topics.CREDITS])
        assert {ch for (_, _, _, ch) in credits} == {"Paid Search"}
        assert persons.project(PROJECT).graph.person_of(("call", "ct:9")) == \
            persons.project(PROJECT).graph.person_of(("anon", "v1"))
        assert persons.project(PROJECT).graph.person_of(("anon", "v0")) == person_id(("anon", "v0"))
        assert [(m["a"], m["b"]) for m in out[topics.MATCHES]] == [("call:ct:9", "lease:L1")]  # for identity_links
        expected = expected or credits
        assert credits == expected


def test_bot_touches_are_never_credited():
    out, _, _ = run([touch("t1", "b", T0, "Referral", "spam.example", bot=True),
                     conversion("lead:1", "lead", T0 + timedelta(hours=1), "0", "anon:b")])
    assert {r["channel"] for r in out[topics.CREDITS]} == {"(unattributed)"}


def test_a_bad_record_is_refused_and_leaves_no_state():
    store = MemoryStore()
    persons = Persons(store, PersonsConfig())
    result = persons.step(topics.LINKS, orjson.dumps({"project": PROJECT, "a": "nosuchkind:1", "b": "anon:x",
                                                      "evidence": "observed", "event_id": "e", "at": T0.isoformat()}))
    assert isinstance(result, Refused) and "nosuchkind" in result.detail
    persons.overlay.flush()
    assert len(store) == 0
    assert isinstance(persons.step(topics.TOUCHES, b"{not json"), Refused)


def test_guard_refuses_a_shared_tablet_and_reports_it():
    out, _, _ = run([
        link("anon:tablet", "phone:mum", "login", T0),
        link("anon:tablet", "phone:dad", "login", T0 + timedelta(days=1)),
    ])
    (guard,) = out[topics.GUARDS]
    assert guard["reason"] == "verified_phone_limit" and guard["verified_groups"] == 2
    persons = final_persons(out[topics.IDENTITY])
    assert persons["anon:tablet"] == person_id(("phone", "mum"))


# ---- order independence, redelivery, restarts ----------------------------------------------------

@st.composite
def journeys(draw):
    n_people = draw(st.integers(1, 4))
    records, truth = [], {}
    channels = [("Paid Search", "google"), ("Paid Social", "instagram"), ("Direct", "(direct)"),
                ("Email", "mailchimp")]
    n = 0
    for p in range(n_people):
        devices = [f"d{p}-{i}" for i in range(draw(st.integers(1, 3)))]
        phone = f"phone:h{p}"
        for d in devices:
            for _ in range(draw(st.integers(0, 3))):
                n += 1
                ch, src = draw(st.sampled_from(channels))
                at = T0 + timedelta(hours=draw(st.integers(0, 24 * 60)))
                records.append(touch(f"t{n}", d, at, ch, src))
            if draw(st.booleans()) or d == devices[0]:
                records.append(link(f"anon:{d}", phone, "observed", T0 + timedelta(hours=draw(st.integers(0, 24 * 60)))))
            truth[f"anon:{d}"] = p
        for c in range(draw(st.integers(0, 2))):
            at = T0 + timedelta(hours=draw(st.integers(0, 24 * 70)))
            value = str(draw(st.integers(0, 10**7))) + "." + f"{draw(st.integers(0, 99)):02d}"
            records.append(conversion(f"sale:{p}:{c}", "sale", at, value, f"anon:{draw(st.sampled_from(devices))}"))
        for c in range(draw(st.integers(0, 3))):  # enquiries; some within 30 days of another: repeats
            at = T0 + timedelta(hours=draw(st.integers(0, 24 * 70)))
            records.append(conversion(f"lead:{p}:{c}", "lead", at, "0", f"anon:{draw(st.sampled_from(devices))}"))
    return records


def repeat_leads(records, person_of) -> set[str]:
    """The rule, written out plainly: a person's lead within 30 days after their previous lead."""
    leads = defaultdict(list)
    for topic, row in records:
        if topic == topics.CONVERSIONS and row["kind"] == "lead":
            leads[person_of(row["subject"])].append((datetime.fromisoformat(row["at"]), row["conversion_id"]))
    repeats = set()
    for rows in leads.values():
        rows.sort()
        repeats |= {cid for (before, _), (at, cid) in zip(rows, rows[1:]) if at - before <= timedelta(days=30)}
    return repeats


@settings(max_examples=60, deadline=None)
@given(journeys(), st.randoms(use_true_random=False))
def test_any_order_with_redeliveries_and_a_restart_gives_the_same_final_credits(records, rnd):
    reference, ref_persons, _ = run(records)
    shuffled = list(records)
    rnd.shuffle(shuffled)
    shuffled += rnd.sample(records, k=min(3, len(records)))  # at-least-once: some arrive twice
    cut = rnd.randint(0, len(shuffled))
    store = MemoryStore()
    first, _, _ = run(shuffled[:cut], store=store, batch=rnd.choice([1, 3, 50]))
    second, restarted, _ = run(shuffled[cut:], store=store, batch=rnd.choice([1, 7]))  # a new process, same store
    credits = first[topics.CREDITS] + second[topics.CREDITS]
    assert net_credits(credits) == net_credits(reference[topics.CREDITS])
    assert restarted.project(PROJECT).graph.mapping() == ref_persons.project(PROJECT).graph.mapping()
    # and the live credits are what credit_all gives on the final graph
    graph = ref_persons.project(PROJECT).graph
    touches_of = defaultdict(list)
    for topic, row in records:
        if topic == topics.TOUCHES:
            touches_of[graph.person_of(("anon", row["anonymous_id"]))].append(TouchPoint(
                row["touch_id"], datetime.fromisoformat(row["started_at"]), row["channel"], row["source"],
                row["medium"], row["campaign"], row["source"] == "(direct)"))
    expected = []
    repeats = repeat_leads(records, lambda subject: graph.person_of(("anon", subject[5:])))
    for topic, row in records:
        if topic == topics.CONVERSIONS and row["conversion_id"] not in repeats:
            p = graph.person_of(("anon", row["subject"][5:]))
            expected += credit_all(Conversion(row["conversion_id"], p, row["kind"], datetime.fromisoformat(row["at"]),
                                              Decimal(row["value"]), row["currency"]), touches_of[p])
    want = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for c in expected:
        want[(c.conversion_id, c.model, c.touch_id, c.channel)][0] += c.weight
        want[(c.conversion_id, c.model, c.touch_id, c.channel)][1] += c.amount
    assert net_credits(credits) == {k: tuple(v) for k, v in want.items() if v[0] or v[1]}
    for cid in {row["conversion_id"] for t, row in records if t == topics.CONVERSIONS}:
        value = next(Decimal(r["value"]) for t, r in records if t == topics.CONVERSIONS and r["conversion_id"] == cid)
        for model in MODELS:
            assert sum(a for (c, m, _, _), (_, a) in net_credits(credits).items() if c == cid and m == model) == value
            weight = sum(w for (c, m, _, _), (w, _) in net_credits(credits).items() if c == cid and m == model)
            assert weight == (0 if cid in repeats else 1)  # a repeat lead counts nothing, any other one once


def test_replay_gives_the_same_ids():
    a, _, _ = run(SEED)
    b, _, _ = run(SEED)
    # credit rows carry their version (a time), so ids differ between runs; what they say does not
    assert net_credits(a[topics.CREDITS]) == net_credits(b[topics.CREDITS])
    assert a[topics.IDENTITY] == b[topics.IDENTITY]


def test_a_call_to_a_static_number_is_a_touch_of_its_offline_campaign():
    from collector.calltracking import static_numbers, with_static_campaign
    from schemas.envelope import Envelope
    from stream_processors.channels import ChannelRules
    from stream_processors.outputs import records_of
    from stream_processors.steps import ProcessorConfig, process

    static = static_numbers('{"8 727 000 00 09": {"utm_source": "billboard", "utm_medium": "offline", '
                            '"utm_campaign": "Ring Road"}}', "KZ")
    assert static == {"+77270000009": {"source": "billboard", "medium": "offline", "campaign": "Ring Road"}}
    assert "not a phone number" in static_numbers({"abc": {"source": "x"}}, "KZ")
    assert "needs at least a source" in static_numbers({"+77270000009": {"medium": "offline"}}, "KZ")
    call = Envelope(schema="call/1-0-0", event_id="ct:1", type="call", project=PROJECT, timestamp=T0, received_at=T0,
                    properties={"call_id": "1", "vendor": "calltouch", "tracking_number": "+77270000009",
                                "started_at": T0.isoformat()}, ids={"phone": "h_caller"})
    assert with_static_campaign(call.model_copy(update={"properties": {**call.properties, "tracking_number": "+7700"}}),
                                static).flags == ()
    env = with_static_campaign(call, static)
    assert "static_number" in env.flags
    _, result = process(ProcessorConfig(ChannelRules.load()), None, env.to_bytes())
    (touch_,) = result.touches
    assert (touch_.source, touch_.medium, touch_.campaign, touch_.channel) == ("billboard", "offline", "ring road", "Offline")
    records = {t: [orjson.loads(v) for _, v in recs] for t, recs in records_of(result).items()}
    out, persons, _ = run([(t, r) for t in (topics.LINKS, topics.TOUCHES, topics.CONVERSIONS) for r in records.get(t, [])])
    assert {r["channel"] for r in out[topics.CREDITS]} == {"Offline"}
    graph = persons.project(PROJECT).graph
    assert graph.person_of(("phone", "h_caller")) == graph.person_of(("anon", "call:calltouch:1"))


# ---- repeat leads ------------------------------------------------------------------------------

ENQUIRY = [
    touch("t-g", "laptop", T0, "Paid Search", "google"),
    link("anon:laptop", "phone:h1", "observed", T0 + timedelta(minutes=5)),
    conversion("lead:form:1", "lead", T0 + timedelta(minutes=5), "0", "anon:laptop"),
    # the CRM deal the form became, ten minutes later, names the same phone
    link("deal:amocrm:77", "phone:h1", "crm", T0 + timedelta(minutes=15)),
    conversion("lead:crm:amocrm:77", "lead", T0 + timedelta(minutes=15), "0", "deal:amocrm:77"),
]


def _lead_weights(out) -> dict[tuple[str, str], Decimal]:
    weights: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for (cid, model, _t, _c), (w, _a) in net_credits(out[topics.CREDITS]).items():
        weights[(cid, model)] += w
    return dict(weights)


def test_a_crm_deal_made_from_a_site_enquiry_is_one_lead_in_any_order():
    for records in (ENQUIRY, list(reversed(ENQUIRY)), [ENQUIRY[4], ENQUIRY[3], ENQUIRY[0], ENQUIRY[2], ENQUIRY[1]]):
        out, _, _ = run(records)
        weights = _lead_weights(out)
        assert {cid for (cid, _m), w in weights.items() if w} == {"lead:form:1"}
        assert all(weights[("lead:form:1", m)] == 1 for m in MODELS)
        # the repeat's own rows say why it counts nothing
        latest = max(r["version"] for r in out[topics.CREDITS] if r["conversion_id"] == "lead:crm:amocrm:77")
        rows = [r for r in out[topics.CREDITS] if r["conversion_id"] == "lead:crm:amocrm:77" and r["version"] == latest]
        assert {(r["channel"], r["weight"]) for r in rows} == {("(repeat lead)", "0")} and len(rows) == len(MODELS)


def test_leads_further_apart_than_the_repeat_window_both_count():
    later = conversion("lead:crm:amocrm:78", "lead", T0 + timedelta(days=31), "0", "deal:amocrm:78")
    out, _, _ = run([*ENQUIRY[:3], link("deal:amocrm:78", "phone:h1", "crm", T0 + timedelta(days=31)), later])
    assert {cid for (cid, _m), w in _lead_weights(out).items() if w == 1} == {"lead:form:1", "lead:crm:amocrm:78"}


def test_a_merge_turns_a_lead_into_a_repeat_and_a_split_window_setting_of_zero_counts_every_lead():
    # two strangers' leads, then the phone joins them: the later lead becomes a repeat
    records = [ENQUIRY[0], ENQUIRY[2], ENQUIRY[4], ENQUIRY[1], ENQUIRY[3]]
    out, _, _ = run(records[:3])
    assert {cid for (cid, _m), w in _lead_weights(out).items() if w} == {"lead:form:1", "lead:crm:amocrm:77"}
    out, _, _ = run(records)
    assert {cid for (cid, _m), w in _lead_weights(out).items() if w} == {"lead:form:1"}
    store = MemoryStore()
    out, _, _ = run(ENQUIRY, Persons(store, PersonsConfig(lead_repeat=timedelta(0))), store)
    assert {cid for (cid, _m), w in _lead_weights(out).items() if w} == {"lead:form:1", "lead:crm:amocrm:77"}


def test_a_conversion_redelivered_after_a_partial_state_write_gets_its_index_back():
    """A worker killed while its table writes reached the changelog only in part: the conversion's
    fact survived, the index from its subject to it did not. The redelivered conversion repairs the
    index, so the visits that come later are credited (found by the Faust kill test)."""
    lead = conversion("lead:form:f1", "lead", T0 + timedelta(days=5), "0", "anon:d1")
    _, _, store = run([lead])
    lost = [k for k in store if b"\x1fc\x1f" in k]
    assert lost, "the subject's index of conversions"
    for key in lost:
        del store[key]
    out, _, _ = run([lead, touch("pv1", "d1", T0, "Paid Social", "instagram")], store=store)
    latest = max(r["version"] for r in out[topics.CREDITS])
    assert {r["channel"] for r in out[topics.CREDITS] if r["version"] == latest} == {"Paid Social"}
    again, _, _ = run([lead], store=store)  # a third delivery: nothing left to repair, nothing sent
    assert not again[topics.CREDITS]


def test_a_link_redelivered_after_a_partial_merge_write_restores_the_regions_rows():
    """A merge's identity rows reached the store only in part (a kill between changelog records):
    after the restart the graph is rebuilt from the links that survived, and the redelivered link,
    which changes nothing in it, writes the region's rows again so the next restart agrees too."""
    merge = [link("anon:d1", "user:u1", "login", T0), link("anon:d2", "user:u1", "login", T0 + timedelta(days=1))]
    _, _, store = run(merge)
    row = next(k for k in store if k.endswith(b"\x1fi\x1fanon:d1"))
    whole = store.pop(row)
    run([merge[0]], store=store)  # a fresh stage on the store: the restarted worker
    assert store.get(row) == whole
    before = dict(store)
    run([merge[0]], store=store)  # nothing to repair: nothing written
    assert store == before


def test_a_flush_writes_the_graphs_version_counter_first_then_conversions():
    """Faust sends each table write to the changelog in write order; a kill part-way keeps a prefix.
    The "#meta" row (the identity-version counter) first: a lost merge is redone with new versions."""
    class Recorder(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.order: list[bytes] = []

        def __setitem__(self, key: bytes, value: bytes) -> None:
            self.order.append(key)
            super().__setitem__(key, value)

    store = Recorder()
    run([touch("pv1", "d1", T0, "Paid Social", "instagram"), link("anon:d1", "user:u1", "login", T0),
         conversion("pay:1", "payment", T0 + timedelta(days=1), "100", "anon:d1")], store=store, batch=3)
    kinds = [k.split(b"\x1f")[1] + (b"#meta" if k.endswith(b"#meta") else b"") for k in store.order]
    assert kinds[0] == b"i#meta" and kinds[1] == b"v", kinds
    assert set(kinds[2:]) >= {b"i", b"t", b"c"}, kinds
