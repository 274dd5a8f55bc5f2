"""Nothing a client can send stops the pipeline: on every ingest route a value the warehouse could
not hold (non-finite or over-long money, a negative sale, a time outside DateTime64/Date, a huge
string) is refused at the edge with a reason from the closed set and counted, never accepted.

HTTP routes run through the app; webhooks run the vendor mapper and then envelope_of_draft, which
is exactly what the webhook route does with a request after its signature is checked."""

from __future__ import annotations

import base64
from urllib.parse import parse_qsl, urlencode

import httpx
import orjson
import pytest

from collector.app import create_app
from collector.ingest import Refusal, envelope_of_draft
from collector.ports import CollectorConfig
from collector.vendors import amocrm, bitrix24, calls, cloudpayments, crm, payment, stripe, yookassa
from collector.vendors.base import Accepted, Refused
from collector.vendors.signing import hmac_sha256
from schemas.project import Project

from .test_app import FakeProjects, Published, _report
from .vendors.conftest import NOW, RULES, fixture_bytes, vendor_request

VALUE_REASONS = {"invalid_amount", "time_out_of_range", "value_too_long"}
POISON_AMOUNTS = ["1e309", "NaN", "Infinity", "-5", "1" + "0" * 39, "-0.01"]
POISON_TIMES = ["99999-01-01T00:00:00Z", "+99999-01-01T00:00:00Z", "0001-01-01T00:00:00+05:00",
                "1900-01-01T00:00:00Z", "2200-01-01T00:00:00Z"]
MEGABYTE = "x" * 1_000_000
WRITE_KEY = "wk_test"


class Projects(FakeProjects):
    async def by_write_key(self, key):
        return Project("shop", "Shop") if key == WRITE_KEY else None


@pytest.fixture
def published():
    return Published()


@pytest.fixture
async def client(published):
    # a large event limit: the value rules are what refuses here, not the size limits
    config = CollectorConfig(pii_key=b"k" * 32, max_event_bytes=4_000_000, max_request_bytes=4_000_000)
    app = create_app(config, Projects(), published, _report)
    auth = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                 headers={"Authorization": auth}) as c:
        c.app = app
        yield c


def _order(revenue: object) -> dict:
    return {"type": "track", "event": "Order Completed", "anonymousId": "a1",
            "properties": {"order_id": "o1", "revenue": revenue, "currency": "KZT"}}


def _refused_count(app, reason: str) -> float:
    """Refusals counted under this reason, on any route label."""
    return sum(sample.value for family in app.state.metrics.rejected.collect() for sample in family.samples
               if sample.labels.get("reason") == reason)


async def _refused(client, path: str, message: dict, published) -> dict:
    r = await client.post(path, json=message)
    body = r.json()
    assert r.status_code == 400, (path, r.text[:300])
    reason = body.get("reason") or body["rejected"][0]["reason"]
    assert reason in VALUE_REASONS, body
    assert published == []
    return body


@pytest.mark.parametrize("path, route, wrap", [
    ("/collect", "collect", lambda m: m),
    ("/v1/track", "v1/track", lambda m: m),
    ("/v1/batch", "v1/batch", lambda m: {"batch": [m]}),
])
@pytest.mark.parametrize("revenue", POISON_AMOUNTS + [float("inf")])
async def test_a_poison_order_value_is_refused_with_its_reason_and_counted(client, published, path, route, wrap, revenue):
    if revenue == float("inf"):  # not JSON: a client that writes Infinity bare
        r = await client.post(path, content=orjson.dumps(wrap(_order("x"))).replace(b'"x"', b"Infinity"),
                              headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["reason"] == "invalid_json"
        return
    body = await _refused(client, path, wrap(_order(revenue)), published)
    detail = body.get("detail") or body["rejected"][0]["detail"]
    assert "properties.revenue" in detail
    assert _refused_count(client.app, "invalid_amount") == 1


async def test_a_good_order_value_and_one_without_a_value_are_accepted(client, published):
    for revenue in ("15000.50", 15000.5, 0, None, ""):
        r = await client.post("/collect", json=_order(revenue))
        assert r.status_code == 200, r.text
    assert len(published) == 5


@pytest.mark.parametrize("when", POISON_TIMES + [253402300799000])
async def test_a_time_the_warehouse_cannot_hold_is_refused(client, published, when):
    message = {"type": "page", "anonymousId": "a1", "timestamp": when, "context": {"page": {"url": "https://x.kz/"}}}
    r = await client.post("/v1/page", json=message)
    assert r.status_code == 400, r.text
    assert r.json()["reason"] in VALUE_REASONS | {"schema_violation"}  # an unparseable time is a schema violation
    assert published == []


@pytest.mark.parametrize("where", ["anonymousId", "userId", "messageId", "url", "utm", "utm_extra", "referrer"])
async def test_a_megabyte_string_is_refused_as_too_long(client, published, where):
    message = {"type": "page", "anonymousId": "a1", "context": {"page": {"url": "https://x.kz/"}}}
    if where in ("anonymousId", "userId", "messageId"):
        message[where] = MEGABYTE
    elif where in ("url", "referrer"):
        message["context"]["page"][where] = MEGABYTE
    else:
        message["context"]["campaign"] = {"source": MEGABYTE} if where == "utm" else {"gclid": MEGABYTE}
    r = await client.post("/collect", json=message)
    assert (r.status_code, r.json()["reason"]) == (400, "value_too_long"), r.text[:300]
    assert published == []


async def test_a_megabyte_event_is_refused_by_the_size_limits_before_any_value_is_read(published):
    app = create_app(CollectorConfig(pii_key=b"k" * 32), Projects(), published, _report)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                 headers={"X-Write-Key": WRITE_KEY}) as c:
        r = await c.post("/collect", json=_order(MEGABYTE))
    assert (r.status_code, r.json()["reason"]) == (413, "too_large")


@pytest.mark.parametrize("path", ["/api/spend", "/api/rates"])
@pytest.mark.parametrize("poison", POISON_AMOUNTS + ["date:99999-01-01", "date:1969-12-31", "date:2150-01-01",
                                                    "source:" + MEGABYTE])
async def test_spend_and_rates_refuse_poison_rows_with_their_reason(client, published, path, poison):
    if path == "/api/spend":
        row = {"date": "2026-11-01", "source": "google", "cost": "100.00", "currency": "KZT"}
        money_field = "cost"
    else:
        row = {"date": "2026-11-01", "currency": "USD", "base": "KZT", "rate": "480.5"}
        money_field = "rate"
    field, _, value = poison.partition(":") if poison.startswith(("date:", "source:")) else (money_field, "", poison)
    if field == "source" and path == "/api/rates":
        field = "currency"
    row[field] = value
    r = await client.post(path, json={"rows": [row]})
    assert r.status_code == 400, r.text[:300]
    body = r.json()
    expected = {"cost": "invalid_amount", "rate": "invalid_amount", "date": "time_out_of_range",
                "source": "value_too_long", "currency": "schema_violation"}[field]
    if value == "99999-01-01":
        expected = "schema_violation"  # not a date at all
    assert body["reason"] == expected, body
    assert published == []


# ---- webhooks: the mapper, then the edge's envelope_of_draft ----------------------------------

def _edge(out: Accepted | Refused) -> str:
    """The reason the webhook route refuses with; 'accepted' when every draft became an envelope."""
    if isinstance(out, Refused):
        assert 400 <= out.status < 500 and out.detail
        return out.reason.value
    for draft in out.drafts:
        env = envelope_of_draft(draft, "shop", NOW, RULES)
        if isinstance(env, Refusal):
            return env.reason.value
    return "accepted"


def _signed(body: bytes, secret: str) -> dict[str, str]:
    return {"X-Moneytrail-Signature": "sha256=" + hmac_sha256(secret, body).hex()}


def _payment(amount) -> str:
    body = orjson.dumps({"payment_id": "p1", "amount": amount, "currency": "KZT"})
    return _edge(payment.map_request(vendor_request("payment", body, _signed(body, "s"), {"secret": "s"})))


def _crm(amount) -> str:
    body = orjson.dumps({"deal_id": "D-1", "stage": "won", "stage_kind": "won", "amount": amount, "currency": "KZT"})
    return _edge(crm.map_request(vendor_request("crm", body, _signed(body, "s"), {"secret": "s"})))


def _yookassa(amount) -> str:
    data = orjson.loads(fixture_bytes("yookassa_payment.succeeded_tracked.json"))
    data["object"]["amount"]["value"] = amount
    return _edge(yookassa.map_request(vendor_request("yookassa", orjson.dumps(data), client_ip="185.71.76.1")))


def _cloudpayments(amount) -> str:
    fields = dict(parse_qsl(fixture_bytes("cloudpayments_pay.txt").decode(), keep_blank_values=True))
    fields["Amount"] = fields["PaymentAmount"] = amount
    body = urlencode(fields).encode()
    mac = base64.b64encode(hmac_sha256("cp", body)).decode()
    headers = {"Content-HMAC": mac, "Content-Type": "application/x-www-form-urlencoded"}
    return _edge(cloudpayments.map_request(vendor_request("cloudpayments", body, headers, {"api_secret": "cp"})))


def _amocrm(amount) -> str:
    body = fixture_bytes("amocrm_leads_status.txt").decode()
    body = body.replace("%5Bprice%5D=15000", "%5Bprice%5D=" + urlencode({"x": amount})[2:])
    return _edge(amocrm.map_request(vendor_request("amocrm", body.encode(),
                                                   {"Content-Type": "application/x-www-form-urlencoded"},
                                                   {"account_id": "30000001"})))


def _bitrix24(amount) -> str:
    query = dict(parse_qsl(fixture_bytes("bitrix24_robot_query.txt").decode(), keep_blank_values=True))
    query["amount"] = amount
    return _edge(bitrix24.map_request(vendor_request("bitrix24", b"", {}, {"robot_token": query["token"]},
                                                     query=query)))


def _stripe(amount) -> str:
    data = orjson.loads(fixture_bytes("stripe_checkout.session.completed.json"))
    data["data"]["object"]["amount_total"] = amount
    body = orjson.dumps(data)
    t = int(NOW.timestamp())
    sig = hmac_sha256("whsec_x", f"{t}.".encode() + body).hex()
    return _edge(stripe.map_request(vendor_request("stripe", body, {"Stripe-Signature": f"t={t},v1={sig}"},
                                                   {"signing_secrets": ["whsec_x"]})))


@pytest.mark.parametrize("vendor", [_payment, _crm, _yookassa, _cloudpayments, _amocrm, _bitrix24])
@pytest.mark.parametrize("amount", POISON_AMOUNTS)
def test_webhooks_refuse_poison_amounts_with_a_reason(vendor, amount):
    assert vendor(amount) in VALUE_REASONS | {"schema_violation"}, (vendor.__name__, amount)


@pytest.mark.parametrize("vendor", [_payment, _crm, _yookassa, _cloudpayments, _amocrm, _bitrix24])
def test_webhooks_accept_a_good_amount(vendor):
    assert vendor("15000.00" if vendor is not _amocrm else "15000") == "accepted", vendor.__name__


@pytest.mark.parametrize("amount", [10**19, -5, 1.5])  # minor units: 10^17 in major units
def test_stripe_refuses_minor_units_the_warehouse_cannot_hold(amount):
    assert _stripe(amount) in VALUE_REASONS | {"schema_violation"}
    assert _stripe(1500050) == "accepted"


@pytest.mark.parametrize("started_at", POISON_TIMES)
def test_calls_refuse_a_time_out_of_range(started_at):
    data = orjson.loads(fixture_bytes("calls_call.json"))
    data["started_at"] = started_at
    body = orjson.dumps(data)
    reason = _edge(calls.map_request(vendor_request("calls", body, _signed(body, "s"), {"secret": "s"})))
    assert reason in VALUE_REASONS | {"schema_violation"}


@pytest.mark.parametrize("field", ["anonymous_id", "page_url", "recording_url"])
def test_calls_refuse_a_megabyte_string_or_drop_it(field):
    """The call mapper keeps the call and drops an unusable optional field (calls.py): either way
    no megabyte reaches the bus."""
    data = orjson.loads(fixture_bytes("calls_call.json"))
    data[field] = MEGABYTE
    body = orjson.dumps(data)
    out = calls.map_request(vendor_request("calls", body, _signed(body, "s"), {"secret": "s"}))
    reason = _edge(out)
    assert reason in VALUE_REASONS | {"schema_violation", "accepted"}
    if reason == "accepted":
        for draft in out.drafts:
            env = envelope_of_draft(draft, "shop", NOW, RULES)
            assert len(env.to_bytes()) < 10_000


def test_the_payment_webhook_route_answers_400_with_the_reason():
    """Through HTTP once, for the status and body a vendor sees."""
    import asyncio

    hook_project = Project("shop", "Shop", vendor_config={"payment": {"secret": "s3"}})

    class Hooks(FakeProjects):
        async def by_webhook_secret(self, secret):
            return hook_project if secret == "whs_good" else None

    async def go():
        published = Published()
        app = create_app(CollectorConfig(pii_key=b"k" * 32), Hooks(), published, _report)
        body = orjson.dumps({"payment_id": "p-1", "amount": "1e309", "currency": "KZT"})
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            r = await c.post("/webhooks/payment/whs_good", content=body, headers=_signed(body, "s3"))
        return r, published

    r, published = asyncio.run(go())
    assert (r.status_code, r.json()["reason"]) == (400, "invalid_amount"), r.text
    assert "10^14" in r.json()["detail"] and published == []
