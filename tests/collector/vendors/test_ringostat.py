from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.vendors.base import Accepted, Refused
from collector.vendors.ringostat import FORMAT, map_request
from schemas.families import CALL

from .conftest import fixture_bytes, vendor_request
from .test_calls import check

JSON = {"Content-Type": "application/json"}
ALMATY = ZoneInfo("Asia/Almaty")


TOKEN = "rs-t0k"


def _map(body: bytes, config: dict | None = None, headers: dict | None = None, query: dict | None = None,
         method: str = "POST", token: str | None = TOKEN):
    """A request to a project configured with TOKEN (required), carrying `token` in the header."""
    sent = {**(JSON if headers is None else headers), **({"X-Moneytrail-Token": token} if token else {})}
    return map_request(vendor_request("ringostat", body, sent, {"token": TOKEN, **(config or {})},
                                      method=method, query=query))


def test_the_shared_call_maps_to_a_call():
    out = _map(fixture_bytes("ringostat_call.json"))
    assert isinstance(out, Accepted) and out.ignored == ""
    (d,) = out.drafts
    call = d.properties
    assert d.schema == CALL and d.event_id == "ringostat:1717000500.12345"
    assert (call.call_id, call.vendor, call.tracking_number) == ("1717000500.12345", "ringostat", "+77270000002")
    assert call.started_at == datetime(2024, 5, 29, 10, 8, 20, tzinfo=ALMATY) == d.timestamp
    assert (call.duration_s, call.talk_s, call.answered, call.unique, call.direction) == (120, 101, True, True, "in")
    assert call.recording_url == "https://api.ringostat.net/recordings/FAKE.mp3"
    assert call.campaign == {"source": "google", "medium": "cpc", "campaign": "spring_sale", "content": "ad1",
                             "term": "buy shoes"}
    assert call.vendor_ids == {"ga_client_id": "1234567890.1717000000"}
    assert d.identity == {"phone": "77011234567"} and d.page_url == "https://shop.example.com/?utm_source=google"


def test_a_missed_repeated_call():
    (d,) = _map(fixture_bytes("ringostat_call_missed.json")).drafts
    call = d.properties
    assert (call.answered, call.unique, call.talk_s, call.duration_s) == (False, False, 0, 25)
    assert call.recording_url is None and call.vendor_ids == {}
    assert call.campaign == {"source": "yandex", "medium": "cpc", "campaign": "divan_nov"}


def test_an_outgoing_call_swaps_caller_and_destination():
    (d,) = _map(fixture_bytes("ringostat_call_out.json")).drafts
    call = d.properties
    assert call.direction == "out" and call.tracking_number == "sip_manager1"  # our line is a SIP extension
    assert d.identity == {"phone": "77011234568"}
    assert call.recording_url is None  # its file name carries the client's number


def test_a_json_rpc_call_with_an_offset():
    (d,) = _map(fixture_bytes("ringostat_jsonrpc.json")).drafts
    call = d.properties
    assert d.event_id == "ringostat:1764047200.20003" and call.tracking_number == "+74950000001"
    assert call.started_at.utcoffset() == timedelta(hours=3) and call.answered is False


def test_a_form_a_query_and_a_json_array():
    params = {"uniqueid": "u1", "caller": "77011234567", "dst": "77270000002", "calldate": "1764046800",
              "disposition": "ANSWERED", "billsec": "12"}
    form = _map(urlencode(params).encode(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    get = _map(b"", headers={}, query=params, method="GET")
    assert form.drafts == get.drafts and form.drafts[0].properties.talk_s == 12
    assert form.drafts[0].timestamp == datetime.fromtimestamp(1764046800, timezone.utc)
    batch = _map(orjson.dumps([params, {**params, "uniqueid": "u2"}]))
    assert [d.event_id for d in batch.drafts] == ["ringostat:u1", "ringostat:u2"]
    bad = _map(orjson.dumps([params, {**params, "billsec": "a lot"}]))
    assert bad.detail == ("ringostat: calls[1]: talk (parameter 'billsec'): 'a lot' is not a number of seconds "
                          "(0 to 10000000)")


def test_without_billsec_talk_is_duration_minus_wait_and_answered_follows():
    body = orjson.dumps({"uniqueid": "u1", "dst": "77270000002", "duration": 60, "waittime": 15})
    assert _map(body).drafts[0].properties.talk_s == 45
    body = orjson.dumps({"uniqueid": "u1", "dst": "77270000002", "billsec": 0})
    assert _map(body).drafts[0].properties.answered is False


def test_a_configured_mapping():
    body = orjson.dumps({"call": "c-9", "from": "77011234567", "to": "77270000002", "state": "NO ANSWER"})
    config = {"fields": {"call_id": "call", "caller": "from", "tracking_number": "to", "status": "state"}}
    (d,) = _map(body, config).drafts
    assert d.event_id == "ringostat:c-9" and d.properties.answered is False and d.identity == {"phone": "77011234567"}
    assert _map(body).detail.startswith("ringostat: call_id is required: no value in parameter(s) uniqueid")


def test_the_token_in_a_header_or_the_query():
    body = fixture_bytes("ringostat_call.json")
    refused = _map(body, token=None)
    assert isinstance(refused, Refused) and (refused.reason, refused.status) == ("bad_signature", 401)
    assert isinstance(_map(body), Accepted)
    assert isinstance(_map(body, query={"token": TOKEN}, token=None), Accepted)
    assert _map(body, query={"token": "rs-t0"}, token=None).status == 401
    assert _map(body, {"token": ["x"]}).status == 401


def test_without_a_configured_token_the_webhook_answers_401_and_maps_nothing():
    # the secret URL path alone is not enough: Ringostat signs nothing, so an unconfigured
    # project would take calls from anyone who learnt the URL (it used to answer 200)
    body = fixture_bytes("ringostat_call.json")
    for headers in (JSON, {**JSON, "X-Moneytrail-Token": ""}, {**JSON, "X-Moneytrail-Token": "anything"}):
        out = map_request(vendor_request("ringostat", body, headers, {}))
        assert isinstance(out, Refused) and (out.reason, out.status) == ("bad_signature", 401)
        assert "token" in out.detail and "moneytrail projects configure" in out.detail


def test_bad_bodies_are_refused_with_the_reason():
    assert _map(b"{").reason == "invalid_json"
    assert _map(b"[]").reason == "schema_violation"
    assert _map(b'{"params": 5, "jsonrpc": "2.0"}').detail.startswith("ringostat: call_id is required")
    assert _map(b'"text"').reason == "schema_violation"
    assert _map(b"", headers={}).reason == "schema_violation"
    assert _map(orjson.dumps([{"uniqueid": n} for n in range(1001)])).status == 413


_PARAM = st.sampled_from(sorted({n for names in FORMAT.defaults.values() for n in names} | {"x"}))
_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-5, 2 * 10**12), st.floats(), st.text(max_size=15),
                    st.sampled_from(["77270000002", "ANSWERED", "NO ANSWER", "out", "in", "callback",
                                     "2024-05-29 10:08:20", "null"]))


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(_PARAM, _SCALAR | st.lists(_SCALAR, max_size=2), max_size=20), st.booleans())
def test_random_ringostat_calls_never_raise(call, complete):
    if complete:
        call = {**call, "uniqueid": "u1", "dst": "77270000002"}
    check(_map(orjson.dumps(call)))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=500), st.sampled_from([JSON, {"Content-Type": "application/x-www-form-urlencoded"}, {}]))
def test_random_bytes_never_raise(body, headers):
    check(_map(body, headers=headers))
