import hashlib
from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.ingest import IngestRules, envelope_of_draft
from collector.privacy import Hasher
from collector.vendors.base import Accepted, Refused
from collector.vendors.signing import hmac_sha256
from collector.vendors.whatsapp import map_request
from schemas.families import MESSAGE

from .conftest import NOW, fixture_bytes, vendor_request
from .test_calls import check

SECRET = "test_app_secret_FAKE"
CONFIG = {"app_secret": SECRET, "verify_token": "my-verify-token"}


def _sig(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac_sha256(secret, body).hex(), "Content-Type": "application/json"}


def _post(body: bytes, config: dict | None = None):
    return map_request(vendor_request("whatsapp", body, _sig(body), CONFIG if config is None else config))


def _wamid_digest(name: str, n: int = 0) -> str:
    data = orjson.loads(fixture_bytes(name))
    messages = [m for e in data["entry"] for c in e["changes"] for m in c["value"].get("messages", [])]
    return hashlib.sha256(messages[n]["id"].encode()).hexdigest()[:32]


def test_the_shared_text_message_with_the_documented_signature():
    body = fixture_bytes("whatsapp_text_message.json")
    headers = {"X-Hub-Signature-256": "sha256=d4d9e37d3383005038d0cbdc8449b7781f0e4b8e5ab75a3151bed9ea21f1c92d"}
    out = map_request(vendor_request("whatsapp", body, headers, CONFIG))
    assert isinstance(out, Accepted) and out.ignored == "" and out.reply.status == 200
    (d,) = out.drafts
    digest = _wamid_digest("whatsapp_text_message.json")
    assert d.schema == MESSAGE and d.event_id == f"whatsapp:{digest}"
    assert d.properties.model_dump() == {"platform": "whatsapp", "message_id": digest, "direction": "in",
                                         "ref_code": None, "text_campaign": {}, "ad_referral": {}}
    assert d.identity == {"chat": "77011234567", "phone": "77011234567"}
    assert d.timestamp == datetime.fromtimestamp(1717000200, timezone.utc) and d.campaign == {}


def test_the_shared_click_to_whatsapp_message_carries_the_ad_referral():
    (d,) = _post(fixture_bytes("whatsapp_text_message_ctwa_referral.json")).drafts
    assert d.properties.ad_referral == {
        "source_url": "https://fb.me/FAKEadlink", "source_id": "120200000000000001", "source_type": "ad",
        "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ-FAKE-ctwa-clid", "headline": "Spring sale",
        "body": "Write to us on WhatsApp", "media_type": "image"}
    assert d.event_id == "whatsapp:" + _wamid_digest("whatsapp_text_message_ctwa_referral.json")


def test_a_prefilled_text_gives_the_ref_code_and_utm_tags():
    (d,) = _post(fixture_bytes("whatsapp_text_ref_utm.json")).drafts
    assert d.properties.ref_code == "7K3QX9AB"
    assert d.properties.text_campaign == {"source": "instagram", "medium": "cpc", "campaign": "divan_nov"}
    assert d.campaign == {"source": "instagram", "medium": "cpc", "name": "divan_nov"}
    assert d.identity == {"chat": "77011234568", "phone": "77011234568", "ref": "7K3QX9AB"}


def test_the_wamid_and_the_phone_never_reach_the_envelope():
    body = fixture_bytes("whatsapp_text_ref_utm.json")
    (d,) = _post(body).drafts
    env = envelope_of_draft(d, "shop", NOW, IngestRules(Hasher(b"k" * 32)))
    wamid = orjson.loads(body)["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    assert env.ids["chat"].startswith("h_") and env.ids["phone"].startswith("h_") and env.ids["ref"] == "7K3QX9AB"
    assert b"7011234568" not in env.to_bytes() and wamid.encode() not in env.to_bytes()
    assert b"HBgL" not in env.to_bytes()  # the base64 of the phone-bearing wamid


def test_a_batch_of_entries_changes_and_message_kinds():
    out = _post(fixture_bytes("whatsapp_batch.json"))
    image, button = out.drafts
    assert image.properties.ref_code == "AB12CD34" and image.identity["chat"] == "77011234567"
    assert button.properties.ref_code is None and button.identity == {"chat": "79161234567", "phone": "79161234567"}
    assert image.event_id != button.event_id
    assert out.ignored == "whatsapp: ignored 1 system message(s), 1 change(s) of field 'account_update'"


def test_delivery_receipts_are_acknowledged_without_drafts():
    out = _post(fixture_bytes("whatsapp_statuses.json"))
    assert isinstance(out, Accepted) and out.drafts == () and out.ignored == "whatsapp: ignored 2 status update(s)"
    other = _post(b'{"object": "page", "entry": []}')
    assert other.drafts == () and "'page' is not whatsapp_business_account" in other.ignored


def test_phone_number_ids_filter_one_apps_numbers():
    body = fixture_bytes("whatsapp_text_message.json")
    assert len(_post(body, {**CONFIG, "phone_number_ids": "106540352242922, 1"}).drafts) == 1
    assert len(_post(body, {**CONFIG, "phone_number_ids": 106540352242922}).drafts) == 1  # the CLI stores numbers
    out = _post(body, {**CONFIG, "phone_number_ids": ["999"]})
    assert out.drafts == () and "phone_number_id not in phone_number_ids" in out.ignored


def test_unsigned_wrongly_signed_or_unconfigured_is_refused():
    body = fixture_bytes("whatsapp_text_message.json")
    assert map_request(vendor_request("whatsapp", body, {}, CONFIG)).status == 401
    bad = map_request(vendor_request("whatsapp", body, _sig(body, "other"), CONFIG))
    assert isinstance(bad, Refused) and bad.reason == "bad_signature"
    unconfigured = _post(body, {"verify_token": "x"})
    assert unconfigured.status == 401 and "app_secret" in unconfigured.detail


@pytest.mark.parametrize(("query", "status", "reason"), [
    ({"hub.mode": "subscribe", "hub.verify_token": "my-verify-token", "hub.challenge": "1158201444"}, 200, None),
    ({"hub_mode": "subscribe", "hub_verify_token": "my-verify-token", "hub_challenge": "1158201444"}, 200, None),
    ({"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1158201444"}, 403, "bad_signature"),
    ({"hub.mode": "unsubscribe", "hub.verify_token": "my-verify-token", "hub.challenge": "1"}, 403, "bad_signature"),
    ({"hub.challenge": "1158201444"}, 403, "bad_signature"),
    ({"hub.mode": "subscribe", "hub.verify_token": "my-verify-token"}, 400, "schema_violation"),
    ({"hub.mode": "subscribe", "hub.verify_token": "my-verify-token", "hub.challenge": "<script>"}, 400,
     "schema_violation"),
])
def test_the_verification_handshake(query, status, reason):
    out = map_request(vendor_request("whatsapp", b"", {}, CONFIG, method="GET", query=query))
    if status == 200:
        assert isinstance(out, Accepted) and out.drafts == ()
        assert (out.reply.status, out.reply.body, out.reply.content_type) == (200, b"1158201444", "text/plain")
    else:
        assert isinstance(out, Refused) and (out.status, out.reason) == (status, reason)


def test_the_handshake_needs_a_verify_token():
    query = {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}
    out = map_request(vendor_request("whatsapp", b"", {}, {"app_secret": SECRET}, method="GET", query=query))
    assert isinstance(out, Refused) and out.status == 401 and "verify_token" in out.detail


@pytest.mark.parametrize(("body", "detail"), [
    (b"{", "whatsapp: body is not JSON"),
    (b"[]", "whatsapp: body must be a JSON object"),
    (b'{"object": "whatsapp_business_account", "entry": {}}', "whatsapp: entry must be a list"),
    (b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": '
     b'{"messages": [{"from": "77011234567"}]}}]}]}',
     "whatsapp: entry[0].changes[0].value.messages[0].id is required"),
    (b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": '
     b'{"messages": [{"id": "wamid.X", "timestamp": "soon"}]}}]}]}',
     "whatsapp: entry[0].changes[0].value.messages[0].timestamp: 'soon' is not a date"),
])
def test_malformed_notifications_are_refused_with_the_path(body, detail):
    out = _post(body)
    assert isinstance(out, Refused) and out.detail.startswith(detail), out


_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**12), st.text(max_size=12),
                  st.sampled_from(["messages", "whatsapp_business_account", "77011234567", "text", "system",
                                   "1717000200", "Хочу MT-7K3QX9AB utm_source=ig"]))
_KEYS = st.sampled_from(["object", "entry", "changes", "field", "value", "messages", "statuses", "metadata",
                         "phone_number_id", "from", "id", "timestamp", "text", "body", "type", "referral",
                         "ctwa_clid", "source_id", "button", "image", "caption", "interactive", "button_reply",
                         "title"])
_JSON = st.recursive(_LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=5),
                     max_leaves=30)


@settings(max_examples=500, deadline=None)
@given(_JSON, st.booleans())
def test_random_signed_notifications_never_raise(data, wrap):
    if wrap:  # the envelope right, so the insides are read
        data = {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": data}]}]}
    check(_post(orjson.dumps(data)))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=500))
def test_random_signed_bytes_never_raise(body):
    check(_post(body))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["hub.mode", "hub.verify_token", "hub.challenge", "hub_mode", "x"]),
                       st.text(max_size=20) | st.just("subscribe") | st.just("my-verify-token"), max_size=5))
def test_random_handshakes_never_raise(query):
    check(map_request(vendor_request("whatsapp", b"", {}, CONFIG, method="GET", query=query)))


async def test_through_the_webhook_route_the_handshake_echoes_and_messages_are_published():
    import httpx

    from collector.app import create_app
    from collector.ports import CollectorConfig
    from schemas.project import Project

    from ..test_app import FakeProjects, Published, _report

    project = Project("shop", "Shop", vendor_config={"whatsapp": CONFIG})

    class Projects(FakeProjects):
        async def by_webhook_secret(self, secret):
            return project if secret == "whs_good" else None

    published = Published()
    app = create_app(CollectorConfig(pii_key=b"k" * 32), Projects(), published, _report)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.get("/webhooks/whatsapp/whs_good", params={
            "hub.mode": "subscribe", "hub.verify_token": "my-verify-token", "hub.challenge": "1158201444"})
        assert (r.status_code, r.text, r.headers["content-type"].split(";")[0]) == (200, "1158201444", "text/plain")
        body = fixture_bytes("whatsapp_text_ref_utm.json")
        r = await client.post("/webhooks/whatsapp/whs_good", content=body, headers=_sig(body))
        assert r.status_code == 200, r.text
        wrong = await client.get("/webhooks/whatsapp/whs_good", params={
            "hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"})
        assert wrong.status_code == 403
    (topic, env), = published
    assert (topic, env.type, env.ids["ref"], env.properties["platform"]) == ("raw", "message", "7K3QX9AB", "whatsapp")
    assert b"7011234568" not in env.to_bytes()
