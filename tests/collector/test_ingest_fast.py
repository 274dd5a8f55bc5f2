"""The hot ingest path: envelopes built as dicts must be the JSON the Envelope model writes, the
bare-ASGI edge must answer as the FastAPI route does, and the depth check's shortcut must agree
with a full walk."""

from __future__ import annotations

import gzip
from datetime import datetime, timezone

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.app import Edge, create_app
from collector.ingest import MAX_DEPTH, IngestRules, Refusal, decode_body, envelope_record, parse
from collector.ports import CollectorConfig
from collector.privacy import Hasher
from schemas.envelope import Envelope
from schemas.reasons import RejectReason

from .test_app import PAGE, WRITE, FakeProjects, Published, _report

RULES = IngestRules(Hasher(b"k" * 32))
NOW = datetime(2026, 1, 15, 12, 0, 0, 123456, tzinfo=timezone.utc)

scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=6))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                               max_size=3), max_leaves=10)
text = st.text(min_size=1, max_size=12)


def _maybe(good: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(good, good, good, json_values)  # mostly valid, sometimes anything


pages = st.fixed_dictionaries({}, optional={"url": _maybe(text), "path": _maybe(text), "title": _maybe(text),
                                            "referrer": _maybe(text), "extra": json_values})
campaigns = st.fixed_dictionaries({}, optional={"name": _maybe(text), "source": _maybe(text), "utm_x": json_values})
contexts = st.fixed_dictionaries({}, optional={"page": _maybe(pages), "campaign": _maybe(campaigns), "locale": _maybe(text),
                                               "userAgent": _maybe(text), "ip": st.sampled_from(["91.185.7.123", "::1", "x"]),
                                               "traits": json_values})
times = st.sampled_from(["2026-01-15T10:00:00Z", "2026-01-15T10:00:00.5+05:00", "2099-01-01T00:00:00Z", 1700000000,
                         "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
props = st.fixed_dictionaries({}, optional={  # personal data under its keys, codes and plain values under others
    "phone": st.sampled_from(["+7 701 123 45 67", "87011234567", "n/a"]), "Email": st.just("Buyer@Example.com"),
    "name": st.just("Buyer Name"), "ref_code": st.sampled_from(["ab12", " x ", ""]), "promo_code": _maybe(text),
    "path": json_values, "nested": st.dictionaries(st.sampled_from(["phone", "email"]), st.just("Buyer 701 123"), max_size=2)})
messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["page", "track", "identify", "alias"]), "anonymousId": _maybe(text)},
    optional={"userId": _maybe(text), "messageId": _maybe(text), "event": _maybe(text), "previousId": _maybe(text),
              "timestamp": _maybe(times), "sentAt": _maybe(times), "context": _maybe(contexts), "properties": _maybe(props),
              "traits": _maybe(props), "name": _maybe(text)})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(item=messages)
def test_a_record_is_the_json_the_envelope_model_writes(item: dict) -> None:
    result = envelope_record(item, "shop", NOW, "10.1.2.3", "UA/1", RULES)
    if isinstance(result, Refusal):
        assert result.reason in (RejectReason.schema_violation, RejectReason.unknown_type, RejectReason.time_out_of_range,
                                 RejectReason.value_too_long, RejectReason.invalid_amount) and result.detail
        return
    key, value = result
    env = Envelope.from_bytes(value)
    assert env.to_bytes() == value  # same keys, same order, same formats (datetimes as ...Z)
    assert env.key == key
    for raw in (b"7011234567", b"701 123", b"Buyer", b"buyer@"):
        assert raw not in value  # phones and emails never leave raw


def test_what_used_to_crash_is_now_a_clean_answer() -> None:
    page = {"type": "page", "anonymousId": "a", "context": {"page": {"url": "https://shop.kz/"}}}
    odd_event = envelope_record({**page, "event": 5, "previousId": {"x": 1}}, "shop", NOW, None, None, RULES)
    assert not isinstance(odd_event, Refusal)
    assert orjson.loads(odd_event[1])["event"] is None and orjson.loads(odd_event[1])["previous_id"] is None
    text_event = envelope_record({**page, "event": "Viewed"}, "shop", NOW, None, None, RULES)
    assert orjson.loads(text_event[1])["event"] == "Viewed"  # a text extra is kept, as before
    year_one = envelope_record({**page, "timestamp": "0001-01-01T00:00:00+05:00"}, "shop", NOW, None, None, RULES)
    assert isinstance(year_one, Refusal) and year_one.reason is RejectReason.time_out_of_range
    assert "out of range" in year_one.detail


def test_validation_errors_keep_their_wording() -> None:
    cases = [({"type": "track", "anonymousId": "a"}, "track.event: Field required"),
             ({"type": "page", "context": {"page": {"url": "x"}}}, "page: Value error, anonymousId or userId is required"),
             ({"type": "alias", "userId": "u"}, "alias.previousId: Field required"),
             ({"type": "page", "anonymousId": "a", "timestamp": "soon"}, "page.timestamp: Input should be a valid datetime "
                                                                        "or date, input is too short")]
    for item, detail in cases:
        result = envelope_record(item, "shop", NOW, None, None, RULES)
        assert isinstance(result, Refusal) and (result.reason, result.detail) == (RejectReason.schema_violation, detail)


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@st.composite
def nested_values(draw: st.DrawFn) -> object:
    """A chain of containers of a drawn depth (around the limit), with siblings and strings full
    of brackets along the way (which the byte-count shortcut must not be fooled by)."""
    value: object = draw(st.text(alphabet="{}[]ab", max_size=6))
    for _ in range(draw(st.integers(0, MAX_DEPTH + 4))):
        sibling = draw(st.integers(-5, 5) | st.text(alphabet="{[", max_size=8) | st.lists(st.integers(-9, 9), max_size=2))
        value = draw(st.sampled_from([[value, sibling], [sibling, value], {"k": value, "s": sibling}, {"k": value}]))
    return value


@settings(max_examples=300, deadline=None)
@given(value=nested_values())
def test_the_depth_check_agrees_with_a_full_walk(value: object) -> None:
    result = decode_body(orjson.dumps(value))
    if _depth(value) > MAX_DEPTH:
        assert isinstance(result, Refusal) and result.reason is RejectReason.too_deep
    else:
        assert result == value


def test_a_deep_batch_is_refused_and_one_level_less_is_not() -> None:
    def nested(n: int) -> object:
        return "x" if n == 0 else {"a": nested(n - 1)}

    ok = orjson.dumps({"batch": [{"type": "track", "properties": nested(MAX_DEPTH - 3)}]})  # depth 16
    deep = orjson.dumps({"batch": [{"type": "track", "properties": nested(MAX_DEPTH - 2)}]})  # depth 17
    assert not isinstance(decode_body(ok), Refusal)
    assert decode_body(deep).reason is RejectReason.too_deep


def test_undecodable_bodies_keep_their_reasons() -> None:
    assert decode_body(b"\xff{}").reason is RejectReason.invalid_utf8
    assert decode_body(b'{"a":"\\ud800"}').reason is RejectReason.invalid_utf8
    assert decode_body(b'{"a":').reason is RejectReason.invalid_json
    assert decode_body(b'{"a":1e400}').reason is RejectReason.invalid_json


def test_parse_counts_every_refusal_with_its_index() -> None:
    batch = [PAGE, "not an object", {"type": "purchase", "anonymousId": "a"}, {**PAGE, "messageId": "m2"}]
    parsed = parse(batch, "shop", "10.0.0.1", None, RULES, 1000)
    assert [orjson.loads(v)["event_id"] for _, v in parsed.records] == ["m1", "m2"]
    assert [(r.index, r.reason) for r in parsed.refused] == [(1, RejectReason.schema_violation),
                                                             (2, RejectReason.unknown_type)]


def _apps(published: Published):
    fastapi = create_app(CollectorConfig(pii_key=b"k" * 32, max_request_bytes=4096, rate_limit_ip_rps=0,
                                         rate_limit_key_eps=0), FakeProjects(), published, _report)
    return fastapi, Edge(fastapi)


async def test_the_bare_asgi_edge_answers_as_the_route_does() -> None:
    published = Published()
    fastapi, edge = _apps(published)
    bodies = [orjson.dumps(PAGE), orjson.dumps({"batch": [PAGE, {"type": "track", "anonymousId": "a"}]}), b"{", b"[]",
              b"x" * 5000, orjson.dumps({"type": "track", "anonymousId": "a", "event": "E", "properties": {"phone": "1"}})]
    for body in bodies:
        answers = []
        for app in (fastapi, edge):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                r = await c.post("/collect", content=body, headers={"X-Write-Key": WRITE, "Content-Type": "application/json"})
            answers.append((r.status_code, r.json(), r.headers["content-type"], r.headers.get("retry-after")))
        assert answers[0] == answers[1], body
    assert len(published) == 2 * 3  # each accepted event once per app


async def test_the_edge_reads_gzip_and_streamed_bodies_and_lets_pages_read_refusals() -> None:
    published = Published()
    _, edge = _apps(published)
    body = orjson.dumps({"batch": [PAGE, PAGE]})

    async def chunks():
        for i in range(0, len(body), 50):
            yield body[i:i + 50]

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=edge), base_url="http://t") as c:
        zipped = await c.post("/collect", content=gzip.compress(body),
                              headers={"X-Write-Key": WRITE, "Content-Encoding": "gzip"})
        streamed = await c.post("/v1/batch", content=chunks(), auth=(WRITE, ""))
        refused = await c.post("/collect", content=b"{", headers={"X-Write-Key": WRITE, "Origin": "https://shop.kz"})
        pre = await c.options("/collect", headers={"Origin": "https://shop.kz", "Access-Control-Request-Method": "POST"})
    assert (zipped.status_code, streamed.status_code) == (200, 200) and len(published) == 4
    assert refused.status_code == 400 and refused.headers["access-control-allow-origin"] == "https://shop.kz"
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "https://shop.kz"


async def test_a_client_that_leaves_mid_body_gets_nothing_and_nothing_is_published() -> None:
    published = Published()
    _, edge = _apps(published)
    messages = [{"type": "http.request", "body": b'{"type":"pa', "more_body": True}, {"type": "http.disconnect"}]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/collect", "headers": [(b"x-write-key", WRITE.encode())],
             "client": ("127.0.0.1", 1)}
    await edge(scope, receive, send)
    assert sent == [] and published == []
