"""Abuse and bad input at the edge: CORS, compressed bodies, rate limits, and no 500 for any body."""

import gzip
import zlib

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.app import Edge, create_app
from collector.cors import KnownOrigins
from collector.limits import TokenBuckets
from collector.ports import CollectorConfig
from schemas.project import Project

from .test_app import PAGE, WRITE, FakeProjects, Published, _report

SHOP = Project("shop", "Shop", origins=("https://mebel.kz", "https://*.mebel.kz"))


class OriginProjects(FakeProjects):
    async def by_write_key(self, key):
        return SHOP if key == WRITE else None

    def list(self):
        return [SHOP]


def _client(published, **config):
    app = create_app(CollectorConfig(pii_key=b"k" * 32, max_request_bytes=4096, **config), OriginProjects(),
                     published, _report)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_preflight_and_allowed_origins():
    published = Published()
    async with _client(published) as c:
        pre = await c.options("/collect", headers={"Origin": "https://mebel.kz", "Access-Control-Request-Method": "POST"})
        assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "https://mebel.kz"
        assert "x-write-key" in pre.headers["access-control-allow-headers"] and pre.headers["vary"] == "Origin"
        ok = await c.post("/collect", json=PAGE, headers={"X-Write-Key": WRITE, "Origin": "https://shop.mebel.kz"})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://shop.mebel.kz"
        bad = await c.post("/collect", json=PAGE, headers={"X-Write-Key": WRITE, "Origin": "https://evil.kz"})
        assert (bad.status_code, bad.json()["reason"]) == (403, "origin_not_allowed")
    assert len(published) == 1


@pytest.mark.parametrize("edge", [False, True], ids=["fastapi", "edge"])
async def test_a_disallowed_origin_is_never_echoed(edge):
    published = Published()
    app = create_app(CollectorConfig(pii_key=b"k" * 32), OriginProjects(), published, _report)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=Edge(app) if edge else app),
                                 base_url="http://t") as c:
        for path in ("/collect", "/v1/batch", "/api/calltracking/lease"):
            pre = await c.options(path, headers={"Origin": "https://evil.kz", "Access-Control-Request-Method": "POST"})
            assert pre.status_code == 204 and "access-control-allow-origin" not in pre.headers, path
            assert "access-control-allow-methods" not in pre.headers
            good = await c.options(path, headers={"Origin": "https://a.mebel.kz", "Access-Control-Request-Method": "POST"})
            assert good.headers["access-control-allow-origin"] == "https://a.mebel.kz", path
        bad = await c.post("/collect", json=PAGE, headers={"X-Write-Key": WRITE, "Origin": "https://evil.kz"})
        lease = await c.post("/api/calltracking/lease", json={"write_key": WRITE, "anonymous_id": "a"},
                             headers={"Origin": "https://evil.kz"})
        # a refusal before the project is known still lets the page read it (the tracker drops it)
        unknown = await c.post("/collect", json=PAGE, headers={"X-Write-Key": "wk_nope", "Origin": "https://evil.kz"})
    for refused in (bad, lease):
        assert (refused.status_code, refused.json()["reason"]) == (403, "origin_not_allowed")
        assert "access-control-allow-origin" not in refused.headers
    assert unknown.status_code == 401
    assert published == []


async def test_known_origins_are_read_again_at_most_once_per_interval():
    reads = []

    def listing():
        reads.append(1)
        return [("https://mebel.kz",), ("https://*.shop.kz",)] if len(reads) > 1 else [("https://mebel.kz",)]

    known = KnownOrigins(listing, min_refresh_s=60)
    assert await known.allows("https://mebel.kz") and not await known.allows("https://a.shop.kz")
    assert not await known.allows("https://evil.kz") and len(reads) == 1  # misses within the interval: no read
    known._loaded_at -= 61  # the interval passed: a project allowing *.shop.kz was added meanwhile
    assert await known.allows("https://a.shop.kz") and len(reads) == 2
    assert await KnownOrigins(lambda: [("https://mebel.kz",), ()]).allows("https://any.kz")  # a project allows all


async def test_gzip_and_deflate_bodies_are_read():
    published = Published()
    body = orjson.dumps({"batch": [PAGE] * 3})
    async with _client(published) as c:
        r1 = await c.post("/collect", content=gzip.compress(body),
                          headers={"X-Write-Key": WRITE, "Content-Encoding": "gzip", "Content-Type": "application/json"})
        r2 = await c.post("/collect", content=zlib.compress(body),
                          headers={"X-Write-Key": WRITE, "Content-Encoding": "deflate", "Content-Type": "application/json"})
    assert (r1.status_code, r2.status_code) == (200, 200) and len(published) == 6


async def test_a_zip_bomb_stops_at_the_limit_and_corrupt_gzip_is_refused():
    published = Published()
    bomb = gzip.compress(b" " * 50_000_000)  # ~50 KB that inflates to 50 MB
    async with _client(published) as c:
        r = await c.post("/collect", content=bomb, headers={"X-Write-Key": WRITE, "Content-Encoding": "gzip"})
        corrupt = await c.post("/collect", content=b"\x1f\x8b\x08garbage", headers={"X-Write-Key": WRITE,
                                                                                   "Content-Encoding": "gzip"})
        unknown = await c.post("/collect", content=b"{}", headers={"X-Write-Key": WRITE, "Content-Encoding": "br"})
    assert (r.status_code, r.json()["reason"]) == (413, "too_large")
    assert (corrupt.status_code, corrupt.json()["reason"]) == (400, "bad_encoding")
    assert (unknown.status_code, unknown.json()["reason"]) == (400, "bad_encoding")
    assert published == []


async def test_rate_limits_answer_429_with_retry_after_and_spare_other_keys():
    published = Published()
    async with _client(published, rate_limit_ip_rps=0, rate_limit_key_eps=5) as c:
        codes = [(await c.post("/collect", json=PAGE, headers={"X-Write-Key": WRITE})).status_code for _ in range(12)]
        limited = await c.post("/collect", json=PAGE, headers={"X-Write-Key": WRITE})
    assert codes[:10] == [200] * 10 and 429 in codes[10:]
    assert limited.json()["reason"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1


def test_token_buckets_refill_and_are_per_key():
    b = TokenBuckets(rate=2, burst=2)
    assert [b.take("a", now=0), b.take("a", now=0)] == [0, 0]
    assert b.take("a", now=0) == pytest.approx(0.5)
    assert b.take("b", now=0) == 0  # another key is not affected
    assert b.take("a", now=0.5) == 0  # refilled
    small = TokenBuckets(rate=1, burst=1, max_keys=2)
    for key in "xyz":
        small.take(key, now=0)
    assert "x" not in small._buckets  # bounded memory: the oldest key is forgotten


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=30,
)
messages = st.fixed_dictionaries({"type": st.sampled_from(["page", "track", "identify", "alias", "x"])},
                                  optional={"anonymousId": json_values, "userId": json_values, "messageId": json_values,
                                            "event": json_values, "timestamp": json_values, "sentAt": json_values,
                                            "context": json_values, "properties": json_values, "traits": json_values,
                                            "previousId": json_values})
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(orjson.dumps),
    messages.map(orjson.dumps),
    st.lists(messages, max_size=5).map(lambda b: orjson.dumps({"batch": b})),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, route=st.sampled_from(["/collect", "/v1/batch", "/v1/track", "/v1/page", "/v1/identify"]))
async def test_no_body_ever_gets_a_500(body, route):
    published = Published()
    async with _client(published, rate_limit_ip_rps=0, rate_limit_key_eps=0) as c:
        r = await c.post(route, content=body, headers={"X-Write-Key": WRITE, "Content-Type": "application/json"})
    assert r.status_code in (200, 400, 413), (r.status_code, r.text)
    assert r.json()["ok"] is (r.status_code == 200)
    if r.status_code != 200:
        assert r.json()["reason"] and r.json()["detail"]


async def test_huge_integers_and_odd_json_are_refused_cleanly():
    published = Published()
    async with _client(published) as c:
        for body in (b'{"type":"page","anonymousId":"a","timestamp":123456789012345678901234567890}',
                     b'{"type":"page","anonymousId":"a","context":{"page":{"url":"x"}},"timestamp":1e400}', b"NaN", b""):
            r = await c.post("/collect", content=body, headers={"X-Write-Key": WRITE, "Content-Type": "application/json"})
            assert r.status_code in (200, 400), (body, r.status_code, r.text)
