"""The demo business (the moneytrail/demo/ package): deterministic by seed, realistic volumes, every body
valid for the collector's own parsers and mappers, and a ground truth that adds up. The server's
side of it (the same bodies through the real HTTP interfaces) is tests/integration/test_demo_load.py."""

from __future__ import annotations

import base64
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import orjson
import pytest

from collector.ingest import IngestRules, Refusal, envelope_of_draft, parse
from schemas.envelope import Envelope
from collector.privacy import Hasher, normalise_phone
from collector.spend import parse_spend, rows_of_body
from collector.vendors.base import Accepted
from collector.vendors.registry import mapper_of
from moneytrail import demo
from moneytrail.demo.helpers import iso_z
from stream_processors.channels import ChannelRules
from stream_processors.conversions import conversions_of
from stream_processors.sessions import VisitorSessions
from stream_processors.steps import Emitted, ProcessorConfig, process
from tests.collector.vendors.conftest import vendor_request

TODAY = datetime.now(timezone.utc).date() - timedelta(days=10)  # a past day: no live calls, nothing clamped
RULES = IngestRules(Hasher(b"k" * 32))
PROJECT = "shop"


@pytest.fixture(scope="module")
def plan() -> demo.DemoPlan:
    return demo.generate(seed=42, days=90, today=TODAY, scale=1.0)


@pytest.fixture(scope="module")
def truth(plan: demo.DemoPlan) -> dict:
    return demo.ground_truth(plan)


@pytest.fixture(scope="module")
def envelopes(plan: demo.DemoPlan) -> list:
    """Every request of the plan through the collector's own parsers and mappers, as the server
    would run them: (request, envelopes, refusals)."""
    settings = demo.vendor_settings(plan)
    now = datetime.now(timezone.utc)
    out = []
    for req in plan.requests:
        if req.kind == "batch":
            data = orjson.loads(req.body)
            parsed = parse(data["batch"], PROJECT, "127.0.0.1", None, RULES, len(req.body))
            out.append((req, [Envelope.from_bytes(value) for _key, value in parsed.records], parsed.refused))
        elif req.kind == "spend":
            ctype = dict(req.headers)["Content-Type"].split(";")[0]
            rows = rows_of_body(req.body, ctype)
            assert not isinstance(rows, str), rows
            parsed = parse_spend(rows, PROJECT, now, "KZT", first_line=0 if "json" in ctype else 2)
            out.append((req, parsed.envelopes, parsed.errors))
        else:
            vreq = vendor_request(req.vendor, req.body, dict(req.headers), config=settings[req.vendor], received_at=now)
            result = mapper_of(req.vendor)(vreq)
            assert isinstance(result, Accepted), (req.vendor, result)
            envs, refused = [], []
            for draft in result.drafts:
                env = envelope_of_draft(draft, PROJECT, now, RULES)
                (refused if isinstance(env, Refusal) else envs).append(env)
            out.append((req, envs, refused))
    return out


# --- determinism and volumes ----------------------------------------------------------------------

def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    a = demo.generate(seed=7, days=30, today=TODAY, scale=0.5)
    b = demo.generate(seed=7, days=30, today=TODAY, scale=0.5)
    c = demo.generate(seed=8, days=30, today=TODAY, scale=0.5)
    assert a.fingerprint() == b.fingerprint() and a.messages == b.messages
    assert demo.ground_truth(a) == demo.ground_truth(b)
    assert demo.vendor_settings(a) == demo.vendor_settings(b)
    assert c.fingerprint() != a.fingerprint()
    assert not {m["messageId"] for m in a.messages} & {m["messageId"] for m in c.messages}
    assert a.live == []  # a `today` in the past: no live calls


def test_volumes_at_scale_one_are_those_of_a_furniture_shop(plan: demo.DemoPlan, truth: dict) -> None:
    t = truth["totals"]
    assert 3_000 <= plan.counts["visitors"] <= 6_000, plan.counts
    assert 200 <= t["enquiries"] <= 600, t  # forms + calls + chats: "a few hundred leads"
    # every enquiry becomes a CRM deal minutes later: a repeat of the enquiry, one lead between them
    assert t["leads"] + t["repeat_leads"] == t["enquiries"] + t["leads_by_kind"]["crm"]
    assert t["leads_by_kind"]["crm"] <= t["repeat_leads"] < t["enquiries"] + t["leads_by_kind"]["crm"]
    assert 70 <= t["sales"] <= 150, t
    assert Decimal(30_000_000) <= Decimal(t["revenue"]) <= Decimal(60_000_000), t
    assert 0 < t["refunds"] < t["payments"] / 10
    assert plan.counts["cross_device_people"] > 50 and plan.counts["visits"] > plan.counts["visitors"]
    spend = truth["spend_by_source"]
    assert set(spend) == {"google", "yandex", "instagram", "tiktok", "telegram", "seo", "email"}
    assert all(Decimal(v) > 0 for v in spend.values())
    # the SEO invoice: 450 000 a month, split by day, exact for each whole month in the period
    seo = defaultdict(Decimal)
    for r in plan.spend_rows:
        if r["source"] == "seo":
            seo[r["date"].replace(day=1)] += r["cost"]
    whole = [m for m in seo if m > plan.start.date().replace(day=1) and m < TODAY.replace(day=1)]
    assert whole and all(seo[m] == Decimal("450000.00") for m in whole)
    channels = {ch for ch, row in truth["expected_report"]["last_non_direct"].items() if row["visits"]}
    assert channels >= {"Paid Search", "Paid Social", "Organic Search", "Marketplace", "Organic Social", "Email", "Direct"}


def test_scale_multiplies_the_traffic() -> None:
    small = demo.generate(seed=42, days=30, today=TODAY, scale=0.2)
    big = demo.generate(seed=42, days=30, today=TODAY, scale=1.0)
    assert 3 * small.counts["visitors"] < big.counts["visitors"] < 7 * small.counts["visitors"]
    assert demo.ground_truth(small)["totals"]["sales"] > 0


def test_with_today_unset_the_period_ends_yesterday_and_a_few_calls_are_live() -> None:
    p = demo.generate(seed=3, days=20, scale=0.5)
    now = datetime.now(timezone.utc)
    assert p.end.date() == now.date() and len(p.live) == 2
    assert all(m["timestamp"] < iso_z(p.end) for m in p.messages)
    for lc in p.live:
        assert normalise_phone(lc.caller) == lc.caller and p.identifiers["anonymous_id"][lc.anon] == lc.person
    assert demo.ground_truth(p)["to"] == now.date().isoformat()


# --- every body is valid for the collector ------------------------------------------------------------

def test_every_segment_message_is_accepted_with_its_time_and_id(plan: demo.DemoPlan, envelopes: list) -> None:
    n = 0
    for req, envs, refused in envelopes:
        if req.kind != "batch":
            continue
        assert refused == [] and len(envs) == req.events <= demo.BATCH
        for env, msg in zip(envs, orjson.loads(req.body)["batch"]):
            assert env.event_id == msg["messageId"] and env.flags == ()
            assert env.timestamp == datetime.fromisoformat(msg["timestamp"])
            assert env.timestamp < plan.end
            if msg.get("event") == "Form Submitted":
                assert env.ids["phone"].startswith("h_") and "phone" not in env.properties
            if msg.get("event") == "Messenger Link Clicked":
                assert env.ids["ref"] == msg["properties"]["ref_code"]
        n += len(envs)
    assert n == len(plan.messages) == len({m["messageId"] for m in plan.messages})
    assert [m["timestamp"] for m in plan.messages] == sorted(m["timestamp"] for m in plan.messages)


def test_every_webhook_is_accepted_by_its_mapper(plan: demo.DemoPlan, envelopes: list) -> None:
    vendors = Counter()
    ids = []
    for req, envs, refused in envelopes:
        if req.kind != "webhook":
            continue
        assert refused == [], (req.vendor, refused)
        assert len(envs) >= req.events or req.vendor == "amocrm", req
        vendors[req.vendor] += 1
        ids += [e.event_id for e in envs]
        for env in envs:
            assert plan.start <= env.timestamp < plan.end and env.flags == ()
            text = env.to_bytes().decode()
            assert "+7 7" not in text and "Айгерим" not in text  # no raw phones or names leave the collector
    assert set(vendors) == {"calls", "whatsapp", "amocrm", "payment"}
    assert len(ids) == len(set(ids))  # deterministic event ids, none shared: a re-run deduplicates


def test_the_collector_makes_exactly_the_conversions_of_the_ground_truth(plan: demo.DemoPlan, envelopes: list) -> None:
    """Envelopes -> conversions (the server's own step): the same ids, kinds, visitor ids and values
    as the ground truth (a chat's lead is keyed by its hashed chat id on the server)."""
    got: dict[str, object] = {}
    for req, envs, _ in envelopes:
        if req.kind == "spend":
            continue
        for env in envs:
            for c in conversions_of(env, "KZT"):
                got[c.conversion_id] = c
    chat_hash = {RULES.hasher(PROJECT, "chat", chat): chat for chat in plan.identifiers["chat"]}
    found = {}
    for cid, c in got.items():
        if c.kind == "deal":
            continue
        if c.source == "message":
            cid = f"lead:message:whatsapp:{chat_hash[cid.rsplit(':', 1)[1]]}"
        found[cid] = c
    expected = {c.conversion_id: c for c in plan.conversions if not c.live}
    assert set(found) == set(expected)
    for cid, want in expected.items():
        c = found[cid]
        assert (c.kind, c.anonymous_id, c.value) == (want.kind, want.anon, want.value), cid
        if want.via != "message":  # a chat's lead takes the time of its last message on the server
            assert c.at == want.at, cid


def test_the_servers_sessions_are_the_planned_visits(plan: demo.DemoPlan, envelopes: list) -> None:
    """The pageviews through the server's own step (sessionize + channel rules): one touch per
    planned visit, at its time, with its channel."""
    config = ProcessorConfig(rules=ChannelRules.load())
    state: dict[str, VisitorSessions | None] = {}
    touches = {}
    for req, envs, _ in envelopes:
        if req.kind != "batch":
            continue
        for env in envs:
            if env.type != "pageview":
                continue
            new, result = process(config, state.get(env.anonymous_id), env.to_bytes())
            state[env.anonymous_id] = new
            assert isinstance(result, Emitted)
            for t in result.touches:
                touches[t.touch_id] = t
    got = Counter((t.anonymous_id, t.started_at, t.channel) for t in touches.values())
    want = Counter((v.anon, v.start, v.channel) for v in plan.visits if not v.live)
    assert got == want


def test_the_spend_files_parse_and_each_day_and_source_is_in_one_import(plan: demo.DemoPlan, envelopes: list,
                                                                      truth: dict) -> None:
    rules = ChannelRules.load()
    owner: dict[tuple[str, str], int] = {}
    total = Decimal(0)
    kinds = []
    for n, (req, envs, errors) in enumerate(envelopes):
        if req.kind != "spend":
            continue
        kinds.append(dict(req.headers)["Content-Type"])
        assert errors == [] and len(envs) == req.events
        for env in envs:
            p = env.properties
            key = (p["date"], rules.fold_source(p["source"]))
            assert owner.setdefault(key, n) == n, key  # the latest import of a (day, source) replaces the others
            total += Decimal(p["cost"])
    assert total == Decimal(truth["totals"]["spend"])
    russian = next(r for r in plan.requests if r.kind == "spend" and "Расход" in r.body.decode("utf-8-sig"))
    assert ";" in russian.body.decode() and "," in russian.body.decode().splitlines()[1]
    assert any(" " in line.split(";")[4] for line in russian.body.decode().splitlines()[1:])  # 1 500,50
    assert len(kinds) == 3 and any("json" in k for k in kinds)


def test_vendor_settings_are_what_projects_configure_stores(plan: demo.DemoPlan) -> None:
    settings = demo.vendor_settings(plan)
    assert set(settings) == {"payment", "calls", "whatsapp", "amocrm", "calltracking"}
    assert isinstance(settings["calltracking"]["numbers"], list) and settings["calltracking"]["default"]
    assert isinstance(settings["whatsapp"]["phone_number_ids"], list)
    for vendor, args in demo.configure_args(settings):
        back = {}
        for arg in args:  # the CLI's reading of KEY=VALUE: [..] and {..} are JSON, the rest text
            key, _, raw = arg.partition("=")
            back[key] = orjson.loads(raw) if raw[:1] in ("[", "{") else raw
        assert back == settings[vendor]
        assert all(isinstance(v, (str, list, dict)) for v in back.values())


# --- the ground truth ---------------------------------------------------------------------------------

def test_the_ground_truth_adds_up(plan: demo.DemoPlan, truth: dict) -> None:
    t = truth["totals"]
    conv = truth["conversions"]
    kinds = Counter(c["kind"] for c in conv)
    assert (t["leads"] + t["repeat_leads"], t["sales"], t["payments"], t["refunds"]) == (
        kinds["lead"], kinds["sale"], kinds["payment"], kinds["refund"])
    assert t["leads"] == sum(1 for c in conv if c["kind"] == "lead" and not c["repeat"])
    money = [Decimal(c["value"]) for c in conv if c["kind"] in ("payment", "refund")]
    assert sum(money, Decimal(0)) == Decimal(t["revenue"])
    assert all(Decimal(c["value"]) < 0 for c in conv if c["kind"] == "refund")
    for side in ("expected_report", "true_report"):
        for model, rows in truth[side].items():
            assert sum(r["leads"] for r in rows.values()) == t["leads"], (side, model)
            assert sum(r["sales"] for r in rows.values()) == t["sales"]
            assert sum(r["visits"] for r in rows.values()) == t["visits"] == len(plan.visits)
            assert sum(Decimal(r["revenue"]) for r in rows.values()) == Decimal(t["revenue"])
            assert sum(Decimal(r["spend"]) for r in rows.values()) == Decimal(t["spend"])
    assert "(unattributed)" not in truth["true_report"]["last_non_direct"]  # everyone visited before converting
    assert 0 < t["unattributed_revenue_share"] < 1


def test_every_sale_and_payment_belongs_to_a_person_who_visited_before_it(plan: demo.DemoPlan, truth: dict) -> None:
    visits = defaultdict(list)
    for v in plan.visits:
        visits[v.person].append(v.start)
    for c in truth["conversions"]:
        at = datetime.fromisoformat(c["at"])
        assert any(s <= at for s in visits[c["person"]]), c
        assert c["true"]["first_touch"] != "(unattributed)"
        if c["anonymous_id"]:
            assert truth["identifiers"]["anonymous_id"][c["anonymous_id"]] == c["person"]
    won = {c["deal_id"] for c in truth["conversions"] if c["kind"] == "sale" and c["via"] == "crm"}
    for c in truth["conversions"]:
        if c["kind"] in ("payment", "refund") and c.get("deal_id"):
            assert c["deal_id"] in won  # the money of a deal comes after it was won
    sales = [c for c in truth["conversions"] if c["kind"] == "sale"]
    assert {c["true"]["last_non_direct"] for c in sales} > {"Paid Search"}


def test_identifiers_name_the_true_person(plan: demo.DemoPlan, truth: dict) -> None:
    ids = truth["identifiers"]
    persons = truth["persons"]
    assert set(ids) >= {"anonymous_id", "phone", "ref_code", "deal", "payment", "call_id", "chat", "crm_contact"}
    for kind, mapping in ids.items():
        assert all(p in persons for p in mapping.values()), kind
    for pid, person in persons.items():
        for anon in person["anonymous_ids"]:
            assert ids["anonymous_id"][anon] == pid
        if person["phone"]:
            assert ids["phone"][person["phone"]] == pid and normalise_phone(person["phone"]) == person["phone"]
    two = [p for p in persons.values() if p["devices"] > 1 and p["phone"]]
    assert two  # journeys across devices, joined only by the phone left later
    # every ref code a visitor's "Messenger Link Clicked" carries comes back in a WhatsApp message
    sent = {m["properties"]["ref_code"] for m in plan.messages if m.get("event") == "Messenger Link Clicked"}
    texts = b"".join(r.body for r in plan.requests if r.vendor == "whatsapp").decode()
    assert sent and all(f"MT-{code}" in texts for code in sent)
    assert sent == set(ids["ref_code"])


def test_times_are_in_the_past_and_inside_the_period(plan: demo.DemoPlan, truth: dict) -> None:
    start, end = plan.start, plan.end
    assert end == datetime(TODAY.year, TODAY.month, TODAY.day, tzinfo=timezone.utc) and end - start == timedelta(days=90)
    for c in truth["conversions"]:
        assert start <= datetime.fromisoformat(c["at"]) < end
    for v in plan.visits:
        assert start <= v.start <= v.end < end


# --- load() over a fake server ----------------------------------------------------------------------

CREDS = {"write_key": "wk_demo", "read_token": "rt_demo", "webhook_secret": "whs_demo", "project": "p_demo"}


class FakeServer:
    """Answers like the collector would (accepted counts, spend rows, a lease), recording requests."""

    def __init__(self, fail: dict[str, tuple[int, str]] | None = None, busy_once: str | None = None) -> None:
        self.seen: list[httpx.Request] = []
        self.fail = fail or {}
        self.busy_once = busy_once

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        path = request.url.path
        if self.busy_once and path.startswith(self.busy_once):
            self.busy_once = None
            return httpx.Response(429, headers={"Retry-After": "0"}, json={"ok": False, "reason": "rate_limited"})
        for prefix, (status, body) in self.fail.items():
            if path.startswith(prefix):
                return httpx.Response(status, text=body)
        if path == "/v1/batch":
            return httpx.Response(200, json={"ok": True, "accepted": len(orjson.loads(request.content)["batch"])})
        if path == "/api/spend":
            ctype = request.headers["content-type"].split(";")[0]
            rows = rows_of_body(request.content, ctype)
            return httpx.Response(200, json={"ok": True, "rows": len(rows)})
        if path == "/api/calltracking/lease":
            expires = (datetime.now(timezone.utc) + timedelta(minutes=20)).isoformat()
            return httpx.Response(200, json={"number": demo.POOL[0], "lease_id": "l1", "expires_at": expires})
        return httpx.Response(200, json={"ok": True})


def test_load_authenticates_each_interface_its_way_and_reports_progress(tmp_path) -> None:
    plan = demo.generate(seed=5, days=30, scale=0.2)  # today: one live call
    server = FakeServer(busy_once="/v1/batch")
    ticks = []
    result = demo.load(plan, "http://mt.test", CREDS, progress=lambda d, t: ticks.append((d, t)),
                       ground_truth_path=tmp_path / "truth.json", transport=httpx.MockTransport(server))
    total = len(plan.requests) + 3 * len(plan.live)
    assert result.requests == total and ticks[-1] == (total, total) and len(ticks) == total
    assert len(server.seen) == total + 1  # one 429 retried
    paths = Counter(r.url.path.split("/whs_demo")[0] for r in server.seen)
    assert paths["/webhooks/payment"] and paths["/webhooks/amocrm"] and paths["/api/calltracking/lease"] == len(plan.live)
    for r in server.seen:
        if r.url.path == "/v1/batch":
            assert r.headers["authorization"] == "Basic " + base64.b64encode(b"wk_demo:").decode()
        elif r.url.path == "/api/spend":
            assert r.headers["x-write-key"] == "wk_demo"
        elif r.url.path.startswith("/webhooks/"):
            assert r.url.path.endswith("/whs_demo") and "wk_demo" not in str(r.headers)
    truth = orjson.loads((tmp_path / "truth.json").read_bytes())
    assert truth["live_calls"][0]["leased"] and truth["totals"]["leads"] == demo.ground_truth(plan)["totals"]["leads"]
    live_call = orjson.loads(server.seen[-1].content)["calls"][0]
    assert "anonymous_id" not in live_call and live_call["tracking_number"] == demo.POOL[0]  # the lease joins it
    assert result.summary["events"] == result.events > len(plan.messages)


@pytest.mark.parametrize("path, status", [("/webhooks/amocrm", 401), ("/api/spend", 400), ("/v1/batch", 413)])
def test_load_raises_with_the_status_and_body_of_any_refusal(tmp_path, path: str, status: int) -> None:
    plan = demo.generate(seed=5, days=5, today=TODAY, scale=0.2)
    server = FakeServer(fail={path: (status, '{"ok":false,"reason":"nope","detail":"why not"}')})
    with pytest.raises(demo.DemoLoadError) as err:
        demo.load(plan, "http://mt.test", CREDS, ground_truth_path=tmp_path / "t.json",
                  transport=httpx.MockTransport(server))
    assert err.value.status == status and "why not" in str(err.value) and str(status) in str(err.value)
    assert not (tmp_path / "t.json").exists()


def test_a_batch_with_rejected_messages_is_an_error(tmp_path) -> None:
    plan = demo.generate(seed=5, days=5, today=TODAY, scale=0.2)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/batch":
            return httpx.Response(200, json={"ok": True, "accepted": 1, "rejected": [{"index": 1, "reason": "x"}]})
        return FakeServer()(request)

    with pytest.raises(demo.DemoLoadError, match="rejected"):
        demo.load(plan, "http://mt.test", CREDS, ground_truth_path=tmp_path / "t.json",
                  transport=httpx.MockTransport(answer))
