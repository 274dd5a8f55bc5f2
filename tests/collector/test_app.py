"""The collector's HTTP contract, with fake ports (the real path is in tests/integration)."""

import base64

import httpx
import orjson
import pytest

from collector.app import create_app
from collector.ports import CollectorConfig
from schemas.envelope import Envelope
from schemas.project import Credentials, Project

WRITE, READ = "wk_good", "rt_good"
PROJECT = Project("shop", "Shop")


class FakeProjects:
    async def by_write_key(self, key):
        return PROJECT if key == WRITE else None

    async def by_read_token(self, token):
        return PROJECT if token == READ else None

    def get(self, pid):
        return PROJECT if pid == "shop" else None

    def list(self):
        return [PROJECT]

    def create(self, name, origins=()):
        return Project(name.lower(), name, tuple(origins)), Credentials("wk_n", "rt_n", "whs_n")

    def rotate(self, pid):
        raise LookupError(pid)

    def set_timezone(self, pid, name):
        if pid != "shop":
            raise LookupError(pid)
        if name not in ("UTC", "Asia/Almaty"):
            raise ValueError(f"unknown time zone {name!r}")
        return name


class Published(list):
    fail = False

    async def __call__(self, topic, records):
        if self.fail:
            raise RuntimeError("broker down")
        self.extend((topic, Envelope.from_bytes(v)) for _, v in records)


async def _report(name, project, query):
    if name != "channels":
        raise LookupError(f"no report {name!r}")
    if "bad" in query:
        raise ValueError("unknown parameter bad")
    return {"report": name, "rows": [{"channel": "Direct", "visits": 2}], "total": {"visits": 2}, "project": project,
            "query": query}


@pytest.fixture
def published():
    return Published()


@pytest.fixture
async def client(published):
    app = create_app(CollectorConfig(max_request_bytes=4096, max_event_bytes=1024, admin_token="adm_x",
                                     pii_key=b"test-key-test-key-test-key"),
                     FakeProjects(), published, _report)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


PAGE = {"type": "page", "messageId": "m1", "anonymousId": "a1",
        "context": {"page": {"url": "https://shop.kz/?utm_source=google", "referrer": "https://google.com/"}}}


async def test_page_with_write_key_in_each_place_is_accepted(client, published):
    basic = base64.b64encode(f"{WRITE}:".encode()).decode()
    r1 = await client.post("/collect", json=PAGE, headers={"Authorization": f"Basic {basic}"})
    r2 = await client.post("/collect", json=PAGE, headers={"X-Write-Key": WRITE})
    r3 = await client.post("/collect", content=orjson.dumps({**PAGE, "write_key": WRITE}),
                           headers={"Content-Type": "text/plain"})  # sendBeacon
    assert [r.status_code for r in (r1, r2, r3)] == [200, 200, 200]
    assert len(published) == 3
    topic, env = published[0]
    assert topic == "raw" and env.event_id == "m1" and env.type == "pageview" and env.project == "shop"
    assert env.context.page_url == PAGE["context"]["page"]["url"]


async def test_unknown_or_missing_write_key_is_401_and_nothing_published(client, published):
    r = await client.post("/collect", json=PAGE, headers={"X-Write-Key": "wk_bad"})
    r2 = await client.post("/collect", json=PAGE)
    assert (r.status_code, r.json()["reason"]) == (401, "unknown_key")
    assert r2.status_code == 401 and "write key" in r2.json()["detail"]
    assert published == []


@pytest.mark.parametrize(
    "body, status, reason",
    [
        (b'{"type": "page"', 400, "invalid_json"),
        (b"\xff\xfe{}", 400, "invalid_utf8"),
        (b'{"type":"page","anonymousId":"\\ud800","context":{"page":{"url":"x"}}}', 400, "invalid_utf8"),
        (b"[" * 40 + b"]" * 40, 400, "too_deep"),
        (b'{"type":"purchase","anonymousId":"a"}', 400, "unknown_type"),
        (b'{"type":"page","context":{"page":{"url":"x"}}}', 400, "schema_violation"),
        (b'{"type":"page","anonymousId":"a"}', 400, "schema_violation"),
        (b'{"batch": {}}', 400, "schema_violation"),
        (b'"just a string"', 400, "schema_violation"),
        (b"x" * 5000, 413, "too_large"),
    ],
)
async def test_bad_input_gets_status_and_reason(client, published, body, status, reason):
    r = await client.post("/collect", content=body, headers={"X-Write-Key": WRITE, "Content-Type": "application/json"})
    assert (r.status_code, r.json()["reason"]) == (status, reason), r.text
    assert r.json()["detail"]
    assert published == []


async def test_batch_keeps_good_events_and_names_the_bad_ones(client, published):
    batch = {"batch": [PAGE, {"type": "track", "anonymousId": "a1"}, {**PAGE, "messageId": "m2"}]}
    r = await client.post("/collect", json=batch, headers={"X-Write-Key": WRITE})
    assert r.status_code == 200
    assert r.json()["accepted"] == 2
    assert r.json()["rejected"] == [{"reason": "schema_violation", "detail": "track.event: Field required", "index": 1}]
    assert [e.event_id for _, e in published] == ["m1", "m2"]


async def test_oversized_event_in_batch_is_refused_alone(client, published):
    big = {**PAGE, "messageId": "big", "properties": {"blob": "x" * 2000}}
    r = await client.post("/collect", json={"batch": [PAGE, big]}, headers={"X-Write-Key": WRITE})
    assert r.json()["accepted"] == 1 and r.json()["rejected"][0]["reason"] == "too_large"


async def test_bus_down_answers_503_with_retry_after(client, published):
    published.fail = True
    r = await client.post("/collect", json=PAGE, headers={"X-Write-Key": WRITE})
    assert r.status_code == 503 and r.headers["retry-after"]


async def test_segment_routes_force_the_type(client, published):
    r = await client.post("/v1/track", json={"event": "Order Completed", "userId": "u1"},
                          auth=(WRITE, ""))
    assert r.status_code == 200
    assert published[0][1].type == "track" and published[0][1].event == "Order Completed"


async def test_client_clock_skew_is_corrected_and_future_clamped(client, published):
    await client.post("/collect", json={**PAGE, "timestamp": "2026-01-01T10:00:00Z", "sentAt": "2026-01-01T10:00:05Z"},
                      headers={"X-Write-Key": WRITE})
    await client.post("/collect", json={**PAGE, "timestamp": "2099-01-01T00:00:00Z"}, headers={"X-Write-Key": WRITE})
    first, second = published[0][1], published[1][1]
    assert abs((first.received_at - first.timestamp).total_seconds() - 5) < 1
    assert second.timestamp == second.received_at and "clock_skew" in second.flags


async def test_ip_is_anonymised(client, published):
    await client.post("/collect", json={**PAGE, "context": {**PAGE["context"], "ip": "91.185.7.123"}},
                      headers={"X-Write-Key": WRITE})
    assert published[0][1].context.ip == "91.185.7.0"


async def test_reports_need_a_read_token_not_a_write_key(client):
    ok = await client.get("/api/reports/channels", headers={"Authorization": f"Bearer {READ}"})
    write = await client.get("/api/reports/channels", headers={"Authorization": f"Bearer {WRITE}"})
    none = await client.get("/api/reports/channels")
    missing = await client.get("/api/reports/nope", headers={"Authorization": f"Bearer {READ}"})
    assert ok.status_code == 200 and ok.json()["total"] == {"visits": 2}
    assert write.status_code == 403 and none.status_code == 401 and missing.status_code == 404


async def test_report_parameters_reach_the_report_and_bad_ones_get_400(client):
    auth = {"Authorization": f"Bearer {READ}"}
    r = await client.get("/api/reports/channels?model=linear&group_by=source&margin=0.3&order=2&collapse=true"
                         "&format=json", headers=auth)
    assert r.json()["query"] == {"model": "linear", "group_by": "source", "margin": "0.3", "order": "2",
                                 "collapse": "true"}
    bad = await client.get("/api/reports/channels?bad=1", headers=auth)
    assert (bad.status_code, bad.json()["reason"]) == (400, "bad_parameter")


async def test_report_as_csv_has_a_total_row(client):
    r = await client.get("/api/reports/channels?format=csv", headers={"Authorization": f"Bearer {READ}"})
    assert r.text.splitlines() == ["channel,visits", "Direct,2", "Total,2"]


async def test_metrics_count_accepted_and_refused_by_reason(client):
    await client.post("/collect", json=PAGE, headers={"X-Write-Key": WRITE})
    await client.post("/collect", content=b"{", headers={"X-Write-Key": WRITE})
    text = (await client.get("/metrics")).text
    assert 'moneytrail_events_accepted_total{route="collect"} 1.0' in text
    assert 'moneytrail_events_rejected_total{reason="invalid_json",route="collect"} 1.0' in text


async def test_a_bad_header_key_is_refused_before_the_body_is_parsed(client, published):
    r = await client.post("/collect", content=b"{not json", headers={"X-Write-Key": "wk_bad"})
    assert (r.status_code, r.json()["reason"]) == (401, "unknown_key")


async def test_phone_and_email_are_hashed_and_never_published_raw(client, published):
    await client.post("/v1/identify", json={"userId": "u1", "traits": {"phone": "+7 701 123 45 67",
                                            "email": "Buyer@Example.com", "name": "Aigerim", "plan": "pro"}},
                      auth=(WRITE, ""))
    await client.post("/collect", json={"type": "track", "event": "Form Submitted", "anonymousId": "a1",
                                        "properties": {"phone": "87011234567", "form_id": "callback"}},
                      headers={"X-Write-Key": WRITE})
    identify, form = published[0][1], published[1][1]
    assert identify.ids["phone"] == form.ids["phone"] and identify.ids["user"] == "u1"
    assert identify.traits == {"plan": "pro"} and form.properties == {"form_id": "callback"}
    wire = b"".join(e.to_bytes() for _, e in published)
    for raw in (b"7011234567", b"701 123", b"Buyer", b"buyer@", b"Aigerim"):
        assert raw not in wire
    assert identify.masked == {"phone": "+7701***4567", "email": "b***r@example.com"}


async def test_the_admin_sets_a_projects_time_zone_with_clear_refusals(client):
    admin = {"Authorization": "Bearer adm_x"}
    ok = await client.post("/api/admin/projects/shop/timezone", json={"timezone": "Asia/Almaty"}, headers=admin)
    assert ok.status_code == 200 and ok.json() == {"project": "shop", "timezone": "Asia/Almaty"}
    bad = await client.post("/api/admin/projects/shop/timezone", json={"timezone": "Mars/Olympus"}, headers=admin)
    assert (bad.status_code, bad.json()["reason"]) == (400, "unknown_timezone")
    none = await client.post("/api/admin/projects/nope/timezone", json={"timezone": "UTC"}, headers=admin)
    assert (none.status_code, none.json()["reason"]) == (404, "unknown_project")
    anyone = await client.post("/api/admin/projects/shop/timezone", json={"timezone": "UTC"},
                               headers={"Authorization": "Bearer rt_x"})
    assert anyone.status_code == 401
