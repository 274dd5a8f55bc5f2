import json
from datetime import datetime, timezone
from decimal import Decimal

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.app import create_app
from collector.ingest import IngestRules, envelope_of_draft
from collector.ports import CollectorConfig
from collector.privacy import Hasher
from collector.vendors.base import Accepted, Refused
from collector.vendors.yookassa import OFFICIAL_IPS, map_request
from schemas.envelope import Envelope
from schemas.families import PAYMENT
from schemas.project import Project

from .conftest import fixture_bytes, vendor_request

YOOKASSA_IP = "185.71.76.5"
PAYMENT_ID = "2f3c6a99-000f-5000-9000-1d2a3b4c5d6e"


def _map(body: bytes, ip: str | None = YOOKASSA_IP, config: dict | None = None):
    headers = {"Content-Type": "application/json"}
    return map_request(vendor_request("yookassa", body, headers, config or {}, client_ip=ip))


def _one(out):
    assert isinstance(out, Accepted), out
    assert out.reply.status == 200 and out.reply.body == b"{}"
    (draft,) = out.drafts
    assert draft.schema == PAYMENT
    return draft


def test_payment_succeeded_is_a_payment_in_major_units():
    d = _one(_map(fixture_bytes("yookassa_payment.succeeded.json")))
    assert d.event_id == f"yookassa:payment.succeeded:{PAYMENT_ID}"
    p = d.properties
    assert (p.provider, p.payment_id, p.kind, p.currency, p.order_id, p.refund_of) == (
        "yookassa", PAYMENT_ID, "payment", "RUB", "ORD-10492", None)
    assert p.amount == Decimal("12900.00") and str(p.amount) == "12900.00"
    assert d.timestamp == datetime(2024, 5, 29, 10, 1, 12, 345000, tzinfo=timezone.utc)  # captured_at
    assert d.identity == {"payment": f"yookassa:{PAYMENT_ID}", "phone": "+77011234567", "email": "buyer@example.com",
                          "order": "ORD-10492"}
    assert d.anonymous_id is None  # metadata.client_id is a Google Analytics cid, not ours
    assert d.user_id is None and d.campaign == {}


def test_refund_succeeded_is_a_refund_joined_to_its_payment():
    d = _one(_map(fixture_bytes("yookassa_refund.succeeded.json")))
    assert d.event_id == "yookassa:refund.succeeded:2f3d1b2c-0015-5000-8000-1a2b3c4d5e6f"
    p = d.properties
    assert (p.kind, p.payment_id, p.refund_of, p.amount, p.currency) == (
        "refund", "2f3d1b2c-0015-5000-8000-1a2b3c4d5e6f", PAYMENT_ID, Decimal("12900.00"), "RUB")
    assert d.identity == {"payment": f"yookassa:{PAYMENT_ID}"}
    assert d.timestamp == datetime(2024, 6, 5, 8, 0, tzinfo=timezone.utc)


def test_our_ids_and_campaign_from_metadata():
    d = _one(_map(fixture_bytes("yookassa_payment.succeeded_tracked.json")))
    assert d.anonymous_id == "anon_9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a" and d.user_id == "77001"
    assert d.campaign == {"source": "vk", "campaign": "june"}
    assert d.properties.amount == Decimal("1990.50") and d.properties.currency == "RUB"  # sent lowercase
    assert d.timestamp == datetime(2024, 5, 31, 9, 30, 45, 120000, tzinfo=timezone.utc)
    assert d.identity == {"payment": "yookassa:2f3c8d21-000f-5000-8000-2c3d4e5f6071", "order": "ORD-10533"}


def test_receipt_customer_contacts_are_used_when_metadata_has_none():
    data = orjson.loads(fixture_bytes("yookassa_payment.succeeded_tracked.json"))
    data["object"]["receipt"] = {"customer": {"email": "receipt@example.com", "phone": "79161234567"}, "items": []}
    d = _one(_map(orjson.dumps(data)))
    assert d.identity["email"] == "receipt@example.com" and d.identity["phone"] == "79161234567"


def test_other_events_are_acknowledged_with_200_and_not_counted():
    out = _map(fixture_bytes("yookassa_payment.waiting_for_capture.json"))
    assert isinstance(out, Accepted) and out.drafts == () and out.reply.status == 200 and out.reply.body == b"{}"
    assert "payment.waiting_for_capture is not counted" in out.ignored


@pytest.mark.parametrize("ip", ["185.71.76.0", "185.71.76.31", "185.71.77.17", "77.75.153.127", "77.75.154.200",
                                "77.75.156.11", "77.75.156.35", "2a02:5180:0:1509::1", "2a02:5180:0:2669:ffff::9",
                                "::ffff:185.71.76.5", " 77.75.156.35 "])
def test_every_official_range_is_allowed(ip):
    assert isinstance(_map(fixture_bytes("yookassa_payment.succeeded.json"), ip), Accepted)


@pytest.mark.parametrize("ip", ["185.71.76.32", "185.71.75.255", "77.75.153.128", "77.75.154.127", "77.75.156.12",
                                "127.0.0.1", "10.0.0.1", "2a02:5180:0:150a::1", "2a02:5180::1", "::1",
                                "::ffff:127.0.0.1", "", None, "not-an-ip", "185.71.76.5, 1.2.3.4"])
def test_anything_else_is_refused_403_and_not_stored(ip):
    out = _map(fixture_bytes("yookassa_payment.succeeded.json"), ip)
    assert isinstance(out, Refused) and out.reason == "origin_not_allowed" and out.status == 403
    assert "published list" in out.detail and repr(ip) in out.detail


def test_the_official_list_is_the_one_in_formats_md(formats_dir):
    text = (formats_dir / "FORMATS.md").read_text()
    block = text.split("## 2. YooKassa", 1)[1].split("```", 2)[1]
    assert tuple(line.strip() for line in block.strip().splitlines()) == OFFICIAL_IPS


def test_allowed_ips_replaces_the_default_list():
    body = fixture_bytes("yookassa_payment.succeeded.json")
    config = {"allowed_ips": ["10.8.0.0/16", "192.0.2.7"]}
    assert isinstance(_map(body, "10.8.3.4", config), Accepted)
    assert isinstance(_map(body, "192.0.2.7", config), Accepted)
    replaced = _map(body, YOOKASSA_IP, config)
    assert isinstance(replaced, Refused) and "this project's allowed_ips" in replaced.detail
    assert isinstance(_map(body, "10.8.3.4", {"allowed_ips": "10.8.0.0/16, 192.0.2.7"}), Accepted)


def test_there_is_no_switch_that_fails_open():
    body = fixture_bytes("yookassa_payment.succeeded.json")
    for config in ({"allow_any_ip": True}, {"allow_any_ip": "true", "allowed_ips": None}, {"verify_ip": False}):
        out = _map(body, "203.0.113.9", config)
        assert isinstance(out, Refused) and out.status == 403, config


@pytest.mark.parametrize("allowed, why", [([], "allowed_ips is empty"), (["0.0.0.0/0"], "would allow every address"),
                                          (["::/0"], "would allow every address"), (["10.0.0.300"], "is not an IP"),
                                          ({"ip": "10.0.0.1"}, "must be a list"), (7, "must be a list")])
def test_a_bad_allowed_ips_refuses_everything(allowed, why):
    out = _map(fixture_bytes("yookassa_payment.succeeded.json"), "10.0.0.1", {"allowed_ips": allowed})
    assert isinstance(out, Refused) and out.status == 403 and why in out.detail
    official = _map(fixture_bytes("yookassa_payment.succeeded.json"), YOOKASSA_IP, {"allowed_ips": allowed})
    assert isinstance(official, Refused)


@pytest.mark.parametrize("mutate, reason, expect", [
    (lambda d: d["object"]["amount"].update(value=12900), "schema_violation", "must be a decimal string"),
    (lambda d: d["object"]["amount"].update(value="12 900"), "schema_violation", "is not a decimal number"),
    (lambda d: d["object"]["amount"].update(value="-1.00"), "invalid_amount", "amount"),
    (lambda d: d["object"]["amount"].update(value="NaN"), "invalid_amount", "amount"),
    (lambda d: d["object"]["amount"].update(currency="рубли"), "schema_violation", "currency"),
    (lambda d: d["object"].pop("amount"), "schema_violation", "object.amount must be"),
    (lambda d: d["object"].pop("id"), "schema_violation", "object.id is required"),
    (lambda d: d["object"].update(status="canceled"), "schema_violation", "status 'canceled'"),
    (lambda d: d.pop("object"), "schema_violation", "needs \"event\""),
])
def test_malformed_notifications_are_refused_with_the_field(mutate, reason, expect):
    data = orjson.loads(fixture_bytes("yookassa_payment.succeeded.json"))
    mutate(data)
    out = _map(orjson.dumps(data))
    assert isinstance(out, Refused) and out.reason == reason and expect in out.detail and out.status == 400


def test_a_refund_without_payment_id_is_refused():
    data = orjson.loads(fixture_bytes("yookassa_refund.succeeded.json"))
    del data["object"]["payment_id"]
    out = _map(orjson.dumps(data))
    assert isinstance(out, Refused) and "payment_id is required" in out.detail


def test_not_json_is_refused():
    out = _map(b"event=payment.succeeded")
    assert isinstance(out, Refused) and out.reason == "invalid_json"
    assert _map(b"[1, 2]").reason == "schema_violation"


def test_the_address_is_checked_before_the_body_is_read():
    out = _map(b"not json at all", "203.0.113.9")
    assert isinstance(out, Refused) and out.reason == "origin_not_allowed"


def test_every_draft_becomes_an_envelope():
    rules = IngestRules(Hasher(b"k" * 32))
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for name in ("yookassa_payment.succeeded.json", "yookassa_refund.succeeded.json",
                 "yookassa_payment.succeeded_tracked.json"):
        (d,) = _map(fixture_bytes(name)).drafts
        env = envelope_of_draft(d, "shop", now, rules)
        assert isinstance(env, Envelope), (name, env)
        assert env.ids["payment"].startswith("yookassa:")
        raw = env.to_bytes().decode()
        assert "buyer@example.com" not in raw and "+77011234567" not in raw


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
_notification = st.fixed_dictionaries({
    "type": st.just("notification") | _json,
    "event": st.sampled_from(["payment.succeeded", "refund.succeeded", "payment.canceled"]) | _json,
    "object": st.dictionaries(st.sampled_from(["id", "payment_id", "status", "amount", "metadata", "receipt",
                                               "captured_at", "created_at"]),
                              _json | st.fixed_dictionaries({"value": _json, "currency": _json}), max_size=8) | _json,
})


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200), _json.map(lambda v: json.dumps(v).encode()),
                 _notification.map(lambda v: json.dumps(v).encode())),
       st.sampled_from([YOOKASSA_IP, "1.2.3.4", None, "::ffff:185.71.77.1", "zz"]),
       st.sampled_from([{}, {"allowed_ips": ["185.71.76.0/27"]}, {"allowed_ips": [None]}, {"allowed_ips": "x"}]))
def test_any_body_gives_accepted_or_refused_never_an_exception(body, ip, config):
    out = _map(body, ip, config)
    assert isinstance(out, (Accepted, Refused))
    if isinstance(out, Accepted):
        assert out.reply.body == b"{}" and all(d.schema == PAYMENT for d in out.drafts)


# --- through the webhook route -------------------------------------------------------------------

class _Projects:
    async def by_webhook_secret(self, key: str):
        return Project("shop", "Shop") if key == "whs_t" else None


async def _post(trusted: tuple[str, ...], headers: dict[str, str]):
    published: list[Envelope] = []

    async def publish(topic, records):
        published.extend(Envelope.from_bytes(v) for _, v in records)

    async def report(name, project, query):
        raise LookupError(name)

    app = create_app(CollectorConfig(pii_key=b"k" * 32, trusted_proxies=trusted), _Projects(), publish, report)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 4000)),
                                 base_url="http://t") as client:
        r = await client.post("/webhooks/yookassa/whs_t", content=fixture_bytes("yookassa_payment.succeeded.json"),
                              headers={"Content-Type": "application/json", **headers})
    return r, published


async def test_through_the_route_the_address_behind_a_trusted_proxy_is_checked():
    r, published = await _post(("127.0.0.1/32",), {"X-Forwarded-For": f"203.0.113.9, {YOOKASSA_IP}"})
    assert (r.status_code, r.content) == (200, b"{}")
    (env,) = published
    assert env.event_id == f"yookassa:payment.succeeded:{PAYMENT_ID}" and env.properties["amount"] == "12900.00"


async def test_through_the_route_a_forged_forwarded_for_is_not_believed():
    r, published = await _post((), {"X-Forwarded-For": YOOKASSA_IP})  # 127.0.0.1 is no trusted proxy here
    assert (r.status_code, r.json()["reason"]) == (403, "origin_not_allowed") and published == []
    r, published = await _post(("127.0.0.1/32",), {"X-Forwarded-For": f"{YOOKASSA_IP}, 203.0.113.9"})
    assert r.status_code == 403 and published == []  # the client wrote the first hop; the proxy saw 203.0.113.9
