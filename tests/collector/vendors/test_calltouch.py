from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.ingest import IngestRules, envelope_of_draft
from collector.privacy import Hasher
from collector.vendors.base import Accepted, Refused
from collector.vendors.calltouch import FORMAT, map_request
from schemas.families import CALL

from .conftest import NOW, fixture_bytes, vendor_request
from .test_calls import check

CALLTOUCH_IP = "92.118.67.200"  # inside 92.118.66.0/23
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ALMATY = ZoneInfo("Asia/Almaty")
WEBHOOK = fixture_bytes("calltouch_call_webhook.txt")


def _post(body: bytes, config: dict | None = None, ip: str | None = CALLTOUCH_IP, headers: dict | None = None,
          query: dict | None = None):
    return map_request(vendor_request("calltouch", body, headers or FORM, config or {}, client_ip=ip, query=query))


def _get(query: dict[str, str], config: dict | None = None, ip: str | None = CALLTOUCH_IP):
    return map_request(vendor_request("calltouch", b"", {}, config or {}, method="GET", query=query, client_ip=ip))


def test_the_shared_form_webhook_maps_to_a_call():
    out = _post(WEBHOOK)
    assert isinstance(out, Accepted) and out.ignored == ""
    (d,) = out.drafts
    call = d.properties
    assert d.schema == CALL and d.event_id == "calltouch:123456789"
    assert (call.call_id, call.vendor, call.tracking_number) == ("123456789", "calltouch", "+77270000001")
    assert call.started_at == datetime(2024, 5, 29, 10, 5, tzinfo=ALMATY) == d.timestamp
    assert (call.duration_s, call.talk_s, call.answered, call.unique, call.direction) == (95, None, True, True, "in")
    assert call.campaign == {"source": "google", "medium": "cpc", "campaign": "spring_sale", "content": "ad1",
                             "term": "buy+shoes"}
    assert d.campaign["name"] == "spring_sale"
    assert call.vendor_ids == {"session_id": "987654321", "ct_client_id": "5555555",
                               "ga_client_id": "1234567890.1717000000", "ya_client_id": "1717000000123456789"}
    assert d.identity == {"phone": "77011234567"}
    assert d.page_url == "https://shop.example.com/?utm_source=google"
    env = envelope_of_draft(d, "shop", NOW, IngestRules(Hasher(b"k" * 32)))
    assert env.ids["phone"].startswith("h_") and b"7011234567" not in env.to_bytes()


def test_the_same_parameters_as_a_get_query_give_the_same_call():
    query = dict(parse_qsl(WEBHOOK.decode()))
    assert _get(query).drafts == _post(WEBHOOK).drafts


def test_the_calls_api_record_as_json_maps_too():
    (d,) = _post(fixture_bytes("calltouch_calls_api_record.json"), headers={"Content-Type": "application/json"}).drafts
    call = d.properties
    assert d.event_id == "calltouch:123456789" and call.tracking_number == "+77270000001"
    assert call.started_at == datetime(2024, 5, 29, 10, 5, tzinfo=ALMATY)
    assert (call.answered, call.unique, call.duration_s) == (True, True, 95)
    assert call.campaign["term"] == "buy shoes" and call.vendor_ids["ct_caller_id"] == "c1a2b3-FAKE"
    assert d.identity == {"phone": "77011234567"}


def test_a_missed_call_with_a_dd_mm_yyyy_time():
    (d,) = _post(fixture_bytes("calltouch_call_missed.txt")).drafts
    call = d.properties
    assert (call.answered, call.unique, call.duration_s) == (False, False, 31)
    assert call.started_at == datetime(2025, 11, 25, 10, 7, tzinfo=ALMATY)
    assert call.campaign == {"source": "yandex", "medium": "cpc", "campaign": "divan_nov"}


def test_a_call_start_notification_is_acknowledged_but_not_counted():
    out = _post(fixture_bytes("calltouch_callphase_connected.txt"))
    assert isinstance(out, Accepted) and out.drafts == () and "'callconnected'" in out.ignored
    counted = _post(fixture_bytes("calltouch_callphase_connected.txt"), {"final_phases": ["callconnected"]})
    assert counted.drafts[0].event_id == "calltouch:123456791"
    assert counted.drafts[0].properties.started_at == datetime.fromtimestamp(1764047300, timezone.utc)


def test_the_field_mapping_is_configurable():
    body = urlencode({"id": "42", "client_phone": "87011234567", "line": "+7 727 300 00 00", "talk": "50",
                      "when": "2025-11-25T10:00:00+05:00", "successful": "false"}).encode()
    assert _post(body).detail.startswith("calltouch: call_id is required: no value in parameter(s) callid, call_id")
    config = {"fields": {"call_id": "id", "caller": "Client_Phone", "tracking_number": ["x", "line"],
                         "talk": "talk", "started_at": "when", "utm_source": ""}}
    (d,) = _post(body, config).drafts
    assert d.event_id == "calltouch:42" and d.identity == {"phone": "87011234567"}
    assert (d.properties.tracking_number, d.properties.talk_s, d.properties.answered) == ("+77273000000", 50, False)


def test_a_wrong_mapping_config_is_refused_with_the_known_fields():
    out = _post(WEBHOOK, {"fields": {"phone": "x"}})
    assert isinstance(out, Refused) and out.status == 500 and "unknown field(s) phone" in out.detail
    assert "caller" in out.detail
    assert _post(WEBHOOK, {"fields": "caller=x"}).status == 500
    assert _post(WEBHOOK, {"fields": {"caller": 5}}).status == 500


@pytest.mark.parametrize(("ip", "config", "allowed"), [
    ("92.118.66.1", {}, True),
    ("92.118.67.254", {}, True),
    ("::ffff:92.118.66.10", {}, True),
    ("92.118.68.1", {}, False),
    ("10.0.0.1", {}, False),
    (None, {}, False),
    ("not-an-ip", {}, False),
    ("10.0.0.1", {"allowed_ips": ["10.0.0.0/8"]}, True),
    ("10.0.0.1", {"allowed_ips": "192.168.0.0/16, 10.0.0.1"}, True),
    ("92.118.66.1", {"allowed_ips": ["10.0.0.0/8"]}, False),  # the list replaces the default
    ("2001:db8::1", {"allowed_ips": ["0.0.0.0/0", "::/0"]}, True),
])
def test_the_sender_address_is_checked(ip, config, allowed):
    out = _post(WEBHOOK, config, ip=ip)
    if allowed:
        assert isinstance(out, Accepted)
    else:
        assert isinstance(out, Refused) and (out.reason, out.status) == ("origin_not_allowed", 403)


def test_a_bad_allow_list_is_a_config_error():
    for value in ([], "", ["nonsense"], 5):
        out = _post(WEBHOOK, {"allowed_ips": value})
        assert isinstance(out, Refused) and out.status == 500 and "allowed_ips" in out.detail


def test_an_optional_token():
    config = {"token": "t0k"}
    assert _post(WEBHOOK, config).status == 401
    assert _post(WEBHOOK, config, query={"token": "nope"}).reason == "bad_signature"
    assert isinstance(_post(WEBHOOK, config, query={"token": "t0k"}), Accepted)
    assert isinstance(_post(WEBHOOK, config, headers={**FORM, "X-Moneytrail-Token": "t0k"}), Accepted)


def test_bad_requests_are_refused_with_the_reason():
    assert _get({}).detail == "calltouch: no parameters in the query string or the body"
    assert _post(b"callid=1&phonenumber=%FF\xff").reason == "invalid_utf8"
    assert _post(b"{oops", headers={"Content-Type": "application/json"}).reason == "invalid_json"
    assert _post(b"a=1", headers={"Content-Type": "multipart/form-data; boundary=x"}).status == 415
    no_number = _post(b"callid=1&callerphone=77011234567")
    assert no_number.detail.startswith("calltouch: tracking_number is required")
    assert "77011234567" not in no_number.detail
    bad_time = _post(b"callid=1&phonenumber=77270000001&calltime=31%2F02%2F2024")
    assert bad_time.detail.startswith("calltouch: started_at (parameter 'calltime'): '31/02/2024' is not a date")


def test_every_default_parameter_is_lower_case():
    # the request's keys are lower-cased before lookup, so an upper-case default could never match
    assert all(name == name.lower() for names in FORMAT.defaults.values() for name in names)


_PARAM = st.sampled_from(sorted({n for names in FORMAT.defaults.values() for n in names} | {"x", "token"}))
_VALUE = st.one_of(st.text(max_size=20), st.integers(-5, 2 * 10**12).map(str),
                   st.sampled_from(["77270000001", "+77011234567", "29/05/2024 10:05:00", "2024-05-29 10:05:00",
                                    "successful", "true", "calldisconnected", "callconnected", "out", "null", ""]))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(_PARAM, _VALUE), max_size=25), st.booleans(), st.booleans())
def test_random_calltouch_parameters_never_raise(pairs, as_get, complete):
    if complete:
        pairs = [("callid", "1"), ("phonenumber", "77270000001")] + pairs
    out = _get(dict(pairs)) if as_get else _post(urlencode(pairs).encode())
    check(out)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=500), st.sampled_from([FORM, {"Content-Type": "application/json"}, {}]))
def test_random_bytes_never_raise(body, headers):
    check(_post(body, headers=headers))


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_PARAM, inner, max_size=5),
                    max_leaves=20))
def test_random_json_never_raises(data):
    check(_post(orjson.dumps(data), headers={"Content-Type": "application/json"}))


async def test_through_the_webhook_route_a_get_from_an_allowed_address_is_published():
    import httpx

    from collector.app import create_app
    from collector.ports import CollectorConfig
    from schemas.project import Project

    from ..test_app import FakeProjects, Published, _report

    project = Project("shop", "Shop", vendor_config={"calltouch": {"allowed_ips": ["127.0.0.1"]}})

    class Projects(FakeProjects):
        async def by_webhook_secret(self, secret):
            return project if secret == "whs_good" else None

    published = Published()
    app = create_app(CollectorConfig(pii_key=b"k" * 32), Projects(), published, _report)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/webhooks/calltouch/whs_good?" + WEBHOOK.decode())
        assert r.status_code == 200, r.text
    project.vendor_config["calltouch"]["allowed_ips"] = ["92.118.66.0/23"]
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/webhooks/calltouch/whs_good?" + WEBHOOK.decode())
        assert (r.status_code, r.json()["reason"]) == (403, "origin_not_allowed")
    (topic, env), = published
    assert (topic, env.type, env.event_id, env.properties["tracking_number"]) == (
        "raw", "call", "calltouch:123456789", "+77270000001")
    assert env.ids["phone"].startswith("h_") and b"7011234567" not in env.to_bytes()
