"""Stage 1 gives the same records, byte for byte, as the step chain it was refactored from: a varied
corpus of raw envelopes (pageviews with UTM tags, click ids and referrers, sessions and late hits,
logged-in and server-side visitors, bots, forms, orders, calls, static-number calls, messages,
identify, alias, CRM deals, payments and refunds, offline conversions, spend, rates, leases, broken
payloads and records a step fails on) goes through `process` and `process_batch`; every record
published, every visitor state written, and whether `process` kept the visitor object, is compared
with `golden/stage1.json` (the batches' records and states as a SHA-256 of them), written by the
step chain before the refactoring.

Regenerate (only for an intended change of behaviour): python -m tests.stream_processors.test_stage1_golden
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from schemas.envelope import Envelope, EventContext
from stream_processors.channels import ChannelRules
from stream_processors.outputs import process_batch, records_of
from stream_processors.steps import ProcessorConfig, load_visitor, process

GOLDEN = Path(__file__).parent / "golden" / "stage1.json"
T0 = datetime(2026, 9, 1, 9, 0, tzinfo=timezone.utc)
UA = "Mozilla/5.0 (Linux; Android 13; CUBOT P80) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36"
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def _env(type_: str, n: int, at: datetime, anon: str | None = "v1", **kw) -> Envelope:
    schema = kw.pop("schema", f"{type_}/1-0-0")
    return Envelope(schema=schema, event_id=kw.pop("event_id", f"e{n}"), type=type_, project=kw.pop("project", "shop"),
                    anonymous_id=anon, timestamp=at, received_at=kw.pop("received_at", at), **kw)


def _page(n: int, at: datetime, anon: str | None, url: str, referrer: str = "", ua: str = UA, **kw) -> Envelope:
    campaign = kw.pop("campaign", {})
    return _env("pageview", n, at, anon, context=EventContext(page_url=url, referrer=referrer, user_agent=ua,
                                                               campaign=campaign), **kw)


def scripted() -> list[bytes]:  # noqa: PLR0915 - a corpus, read top to bottom
    """Hand-written envelopes, each a case the step chain treats on its own."""
    m = timedelta(minutes=1)
    out: list[Envelope] = []
    add = out.append
    # one visitor's sessions: a tagged landing, a reload, internal pages, a milestone, a timeout, a new campaign
    add(_page(1, T0, "v1", "https://mebel.kz/?utm_source=google&utm_medium=cpc&utm_campaign=Sofas&gclid=abc123"))
    add(_page(2, T0 + m, "v1", "https://mebel.kz/?utm_source=google&utm_medium=cpc&utm_campaign=Sofas&gclid=abc123"))
    for i in range(3, 9):
        add(_page(i, T0 + i * m, "v1", f"https://mebel.kz/catalog/{i}", "https://mebel.kz/catalog"))
    add(_page(9, T0 + 8 * m, "v1", "https://mebel.kz/catalog/9"))  # the same instant as the last
    add(_page(1, T0 + 9 * m, "v1", "https://mebel.kz/?utm_source=google"))  # the opening hit redelivered
    add(_page(10, T0 + 2 * m, "v1", "https://mebel.kz/late"))  # late, direct: joins
    add(_page(11, T0 - 20 * m, "v1", "https://mebel.kz/earlier"))  # late, lowers started_at
    add(_page(12, T0 + 5 * m, "v1", "https://mebel.kz/?utm_source=ig&utm_medium=paid_social"))  # late, other campaign
    add(_page(13, T0 - 3 * timedelta(hours=5), "v1", "https://mebel.kz/"))  # long before: a touch of its own
    add(_page(14, T0 + 9 * m, "v1", "https://mebel.kz/?yclid=777", "https://yandex.kz/"))  # new campaign at once
    add(_page(15, T0 + 3 * timedelta(hours=1), "v1", "https://mebel.kz/", "https://www.google.kz/"))  # after a timeout
    add(_page(16, T0 + 2 * timedelta(hours=1), "v1", "https://mebel.kz/x"))  # late, before the open session: alone
    add(_page(17, T0 + 10 * m, "v1", "https://mebel.kz/y"))  # late, inside a closed session: dropped
    # a visitor who logs in, changes user, logs out
    add(_page(20, T0, "v2", "https://mebel.kz/", "https://www.instagram.com/"))
    add(_page(21, T0 + m, "v2", "https://mebel.kz/a", user_id="u-42"))
    add(_page(22, T0 + 2 * m, "v2", "https://mebel.kz/b", user_id="u-42"))
    add(_page(23, T0 + 3 * m, "v2", "https://mebel.kz/c", user_id="u-43"))
    add(_page(24, T0 + 4 * m, "v2", "https://mebel.kz/d"))
    add(_page(25, T0 + 5 * m, "v2", "https://mebel.kz/?fbclid=IwAR0", "https://l.facebook.com/", user_id="u-43"))
    # a server-side pageview (user id only), UTM in context.campaign, click ids, referrers of every kind
    add(_page(30, T0, None, "https://mebel.kz/account", user_id="u-7"))
    add(_page(31, T0 + m, None, "https://mebel.kz/account/2", user_id="u-7"))
    add(_page(32, T0, "v3", "https://mebel.kz/", campaign={"source": "Yandex", "medium": "CPC", "campaign": "Beds"}))
    for i, (url, ref) in enumerate([
        ("https://mebel.kz/?msclkid=1", ""), ("https://mebel.kz/?ttclid=2", ""), ("https://mebel.kz/?wbraid=3", ""),
        ("https://mebel.kz/?ysclid=4", "https://ya.ru/"), ("https://mebel.kz/", "https://kaspi.kz/shop/p/1"),
        ("https://mebel.kz/", "https://t.me/mebel"), ("https://mebel.kz/", "https://mail.google.com/"),
        ("https://mebel.kz/", "https://some-blog.example/post"), ("https://mebel.kz/?utm_source=billboard&utm_medium=qr", ""),
        ("https://mebel.kz/?utm_medium=email&utm_source=Newsletter&utm_content=A&utm_term=sofa", ""),
        ("not a url at all", "::::"), ("", ""),
    ]):
        add(_page(40 + i, T0 + i * m, f"w{i}", url, ref))
    # bots: kept, marked
    add(_page(60, T0, "b1", "https://mebel.kz/?utm_source=google&utm_medium=cpc", ua=BOT_UA))
    add(_page(61, T0 + m, "b1", "https://mebel.kz/next", ua="facebookexternalhit/1.1"))
    add(_page(62, T0, "b2", "https://mebel.kz/", ua="WhatsApp/2.23.20.0"))
    add(_page(63, T0, "b3", "https://mebel.kz/", ua=""))
    # forms and track events
    add(_env("track", 70, T0 + m, "v1", event="Form Submitted", ids={"phone": "h_p1", "email": "h_m1"}))
    add(_env("form", 71, T0 + m, "v2", properties={"form_id": "callback"}, ids={"phone": "h_p2"}, user_id="u-43"))
    add(_env("track", 72, T0 + m, "v3", event="Button Clicked", properties={"x": 1}))
    add(_env("track", 73, T0 + m, "v3", event="Order Completed",
             properties={"order_id": "1001", "revenue": 25000.5, "currency": "rub"}))
    add(_env("track", 74, T0 + m, "v3", event="purchase", properties={"total": "0"}))
    add(_env("track", 75, T0 + m, "v3", event="order_completed", properties={"value": "abc", "order_id": 7}))
    add(_env("track", 76, T0 + m, None, event="generate_lead", user_id="u-9", ids={"promo": "SALE10"}))
    # calls: unique, repeat, outgoing, a static number, a static number naming nobody
    call = {"vendor": "calltouch", "call_id": "c1", "tracking_number": "+77270000001", "started_at": T0.isoformat()}
    add(_env("call", 80, T0, None, properties=call, ids={"phone": "h_caller", "lease": "L1"}))
    add(_env("call", 81, T0, None, properties={**call, "call_id": "c2", "unique": False}, ids={"phone": "h_caller"}))
    add(_env("call", 82, T0, None, properties={**call, "call_id": "c3", "direction": "out"}, ids={"phone": "h_c3"}))
    add(_env("call", 83, T0, None, properties={**call, "call_id": "c4"}, ids={"phone": "h_c4"}, flags=("static_number",),
             context=EventContext(campaign={"source": "billboard", "medium": "offline", "campaign": "Ring Road"})))
    add(_env("call", 84, T0, None, properties={"vendor": "calltouch", "tracking_number": "+7727"}, flags=("static_number",),
             context=EventContext(campaign={"source": "radio"})))
    add(_env("call", 85, T0, "v1", properties={**call, "call_id": "c5"}, flags=("static_number", "clock_skew"),
             ids={"phone": "h_p1"}, context=EventContext(campaign={"source": "tv", "medium": "offline"})))
    # messenger
    msg = {"platform": "whatsapp", "message_id": "m1", "direction": "in"}
    add(_env("message", 90, T0, None, properties=msg, ids={"chat": "h_chat1", "phone": "h_p1", "ref": "MT-ABCD1234"}))
    add(_env("message", 91, T0, None, properties={**msg, "direction": "out"}, ids={"chat": "h_chat1"}))
    add(_env("message", 92, T0, None, properties={**msg, "platform": "telegram"}, ids={"ref": "mt_x"}))
    add(_env("message", 93, T0, None, properties=msg))
    # identify and alias
    add(_env("identify", 100, T0, "v2", user_id="u-43", traits={"plan": "pro"}, ids={"email": "h_m2", "phone": "h_p2"}))
    add(_env("identify", 101, T0, None, user_id="u-44", ids={"crm_contact": "amocrm:5", "phone": "h_p5"}))
    add(_env("identify", 102, T0, "v9"))
    add(_env("alias", 103, T0, "v9", user_id="u-9", previous_id="v8"))
    # CRM deals
    deal = {"crm": "amocrm", "deal_id": "77", "stage": "142", "amount": "150000.00", "currency": "KZT"}
    for i, kind in enumerate(("lead", "open", "won", "lost", None)):
        props = {**deal, "stage_kind": kind} if kind else deal
        add(_env("deal", 110 + i, T0 + i * m, None, properties=props,
                 ids={"deal": "amocrm:77", "crm_contact": "amocrm:5", "phone": "h_p5"}))
    add(_env("deal", 116, T0, None, properties={"crm": "bitrix24", "deal_id": "9", "stage_kind": "won", "amount": 12.5},
             ids={"email": "h_m9"}))
    add(_env("deal", 117, T0, None, properties={"crm": "bitrix24", "deal_id": "10", "stage_kind": "open"}))
    # payments and refunds
    pay = {"provider": "stripe", "payment_id": "pi_1", "kind": "payment", "amount": "1500.50", "currency": "KZT"}
    add(_env("payment", 120, T0, "v3", properties={**pay, "deal_id": "77"}, ids={"deal": "amocrm:77"}))
    add(_env("payment", 121, T0, "v3", properties=pay, ids={"order": "o-5"}))
    add(_env("payment", 122, T0, None, properties={**pay, "kind": "refund"}, ids={"payment": "stripe:pi_1"}))
    add(_env("payment", 123, T0, None, properties={"provider": "kaspi", "kind": "payment", "amount": 10}, user_id="u-7"))
    # offline conversions
    add(_env("offline_conversion", 130, T0, None, properties={"conversion_id": "x1", "kind": "sale", "value": "99.90",
                                                              "currency": "usd"}, ids={"phone": "h_p1"}))
    add(_env("offline_conversion", 131, T0, None, properties={"conversion_id": "x2", "kind": "lead"}, ids={"email": "h_m1"}))
    # spend, rates, leases
    add(_env("spend", 140, T0, None, event_id="spend:i:0",
             properties={"date": "2026-09-01", "source": "Яндекс", "medium": "cpc", "campaign": " Sofas ",
                         "cost": "15000.00", "currency": "kzt", "import_id": "i", "clicks": 12, "impressions": None}))
    add(_env("spend", 141, T0, None, event_id="spend:i:1",
             properties={"date": "2026-09-01", "source": "Facebook Ads", "cost": 12.5, "currency": "USD", "ad": "A1"}))
    add(_env("rate", 142, T0, None, properties={"date": "2026-09-01", "currency": "USD", "base": "KZT", "rate": 512.3}))
    add(_env("lease", 143, T0, "v1", properties={"lease_id": "L1", "tracking_number": "+77270000001",
                                                 "started_at": T0.isoformat(), "expires_at": (T0 + m).isoformat(),
                                                 "matches_until": (T0 + 60 * m).isoformat()}))
    add(_env("lease", 144, T0, None, properties={"lease_id": "L2", "tracking_number": "+77270000002",
                                                 "started_at": T0.isoformat(), "expires_at": (T0 + m).isoformat(),
                                                 "matches_until": (T0 + 60 * m).isoformat()}))
    # an unknown type, an envelope naming nobody, another project
    add(_env("custom", 150, T0, None, properties={"a": 1}))
    add(_env("track", 151, T0, None, event="Form Submitted"))
    add(_page(152, T0, "v1", "https://other.kz/?utm_source=google&utm_medium=cpc", project="other"))
    payloads = [e.to_bytes() for e in out]
    # broken payloads: dead letters (undecodable) and records a step fails on (processing_error)
    payloads += [b"", b"not json", b"\xff\xfe", b"[]", b'{"type": "pageview"}',
                 _env("pageview", 160, T0).to_bytes().replace(b'"timestamp":"', b'"timestamp":"x'),
                 _env("spend", 161, T0, None, properties={"source": "google"}).to_bytes(),
                 _env("rate", 162, T0, None, properties={"date": "2026-09-01"}).to_bytes(),
                 _env("lease", 163, T0, None, properties={"lease_id": "L3"}).to_bytes(),
                 _env("spend", 164, T0, None, properties={"date": "d", "cost": 1, "currency": "x", "clicks": "many"}).to_bytes()]
    return payloads


def generated(n: int = 1000, seed: int = 11) -> list[bytes]:
    """A seeded mix of visits (landings, inner pages, returns days later, late beacons) and conversions."""
    rng = random.Random(seed)
    landings = [("https://mebel.kz/?utm_source=google&utm_medium=cpc&utm_campaign=sofas&gclid={r}", ""),
                ("https://mebel.kz/?utm_source=ig&utm_medium=paid_social&utm_campaign=reels", ""),
                ("https://mebel.kz/", "https://www.google.kz/"), ("https://mebel.kz/", "https://kaspi.kz/shop/p/1"),
                ("https://mebel.kz/?yclid={r}", "https://yandex.kz/"), ("https://mebel.kz/catalog", "")]
    clock: dict[int, datetime] = {}
    out = []
    for i in range(n):
        v = rng.randrange(60)
        step = rng.choice((timedelta(minutes=1), timedelta(minutes=3), timedelta(minutes=29), timedelta(minutes=30),
                           timedelta(minutes=31), timedelta(hours=5), timedelta(days=2), -timedelta(minutes=10)))
        clock[v] = clock.get(v, T0 + timedelta(minutes=rng.randrange(600))) + step
        at, anon = clock[v], f"g{v}"
        user = f"gu{v // 3}" if rng.random() < 0.2 else None
        kind = rng.random()
        if kind < 0.8:
            url, ref = rng.choice(landings) if rng.random() < 0.5 else (f"https://mebel.kz/p/{rng.randrange(50)}", "")
            env = _page(1000 + i, at, anon, url.format(r=rng.randrange(5)), ref, user_id=user,
                        ua=BOT_UA if v == 7 else UA)
        elif kind < 0.9:
            env = _env("track", 1000 + i, at, anon, event="Form Submitted", ids={"phone": f"h_{v // 2}"}, user_id=user)
        elif kind < 0.95:
            env = _env("track", 1000 + i, at, anon, event="Order Completed", user_id=user,
                       properties={"order_id": f"o{i}", "revenue": rng.randrange(1, 90) * 1000, "currency": "KZT"})
        else:
            env = _env("identify", 1000 + i, at, anon, user_id=f"gu{v}", ids={"email": f"h_m{v}"})
        out.append(env.to_bytes())
        if rng.random() < 0.03:  # a redelivery
            out.append(env.to_bytes())
    return out


def _key_of(payload: bytes) -> bytes:
    try:
        return Envelope.from_bytes(payload).key
    except Exception:  # noqa: BLE001 - a broken payload: any key
        return b"shop:?"


def _b64(data: bytes | None) -> str | None:
    """The bytes as text: themselves when UTF-8 (every record and state), else base64."""
    if data is None:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode()


def _encoded(records: dict[str, list[tuple[bytes, bytes]]]) -> dict[str, list[list[str]]]:
    return {topic: [[_b64(k), _b64(v)] for k, v in recs] for topic, recs in sorted(records.items())}


def observed() -> dict:
    """What stage 1 does with the corpus: per record through `process` (state carried per key, as the
    runners do), and through `process_batch` in batches of 7 and of everything at once."""
    config = ProcessorConfig(ChannelRules.load())
    payloads = scripted() + generated()
    states: dict[bytes, bytes] = {}
    steps = []
    for payload in payloads:
        key = _key_of(payload)
        visitor = load_visitor(states.get(key))
        try:
            new, result = process(config, visitor, payload)
        except Exception as exc:  # noqa: BLE001 - process_batch dead-letters it; here: what was raised
            steps.append({"raised": repr(exc)})
            continue
        kept = new is visitor
        step = {"kept": kept, "records": _encoded(records_of(result))}
        if not kept:
            step["state"] = None if new is None else _b64(new.to_bytes())
            if new is not None:
                states[key] = new.to_bytes()
        steps.append(step)
    batches = {}
    for size in (7, len(payloads)):
        stored: dict[bytes, bytes] = {}
        runs = []
        for i in range(0, len(payloads), size):
            records = [(_key_of(p), p) for p in payloads[i:i + size]]
            batch = process_batch(config, records, lambda _i, key: stored.get(key))
            for key, (_pos, state) in batch.states.items():
                stored[key] = state.to_bytes()
            runs.append({"published": _encoded(batch.published),
                         "states": {_b64(k): [pos, _b64(s.to_bytes())] for k, (pos, s) in sorted(batch.states.items())}})
        # a digest: the records themselves are the steps' records again (the file stays small)
        batches[str(size)] = hashlib.sha256(json.dumps(runs, sort_keys=True).encode()).hexdigest()
    return {"steps": steps, "batches": batches}


def test_stage_one_emits_what_it_emitted_before_the_pipeline_refactoring():
    expected = json.loads(GOLDEN.read_text())
    got = json.loads(json.dumps(observed()))
    assert len(got["steps"]) == len(expected["steps"])
    for i, (g, e) in enumerate(zip(got["steps"], expected["steps"])):
        assert g == e, f"record {i}"
    assert got["batches"] == expected["batches"]


if __name__ == "__main__":
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(observed(), indent=0, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
