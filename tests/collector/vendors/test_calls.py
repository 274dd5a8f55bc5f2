from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.ingest import IngestRules, Refusal, envelope_of_draft
from collector.privacy import Hasher
from collector.vendors.base import Accepted, Refused
from collector.vendors.calls import Bad, answered, direction, flag, map_request, moment, our_number, seconds
from collector.vendors.signing import hmac_sha256
from schemas.families import CALL
from schemas.reasons import RejectReason

from .conftest import NOW, fixture_bytes, vendor_request

SECRET = "calls-secret"
CONFIG = {"secret": SECRET}
RULES = IngestRules(Hasher(b"k" * 32))
ALMATY = ZoneInfo("Asia/Almaty")


def _signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-Moneytrail-Signature": "sha256=" + hmac_sha256(secret, body).hex()}


def _map(body: bytes, config: dict | None = None):
    return map_request(vendor_request("calls", body, _signed(body), CONFIG if config is None else config))


def check(out: Accepted | Refused) -> None:
    """Either a refusal with a reason from the closed set, or drafts the collector can store."""
    if isinstance(out, Refused):
        assert out.reason in RejectReason and out.detail and 400 <= out.status < 600
        return
    for draft in out.drafts:
        env = envelope_of_draft(draft, "shop", NOW, RULES)
        assert not isinstance(env, Refusal), env


def test_a_signed_call_maps_to_the_call_family():
    out = _map(fixture_bytes("calls_call.json"))
    assert isinstance(out, Accepted) and out.ignored == ""
    (d,) = out.drafts
    call = d.properties
    assert d.schema == CALL and d.event_id == "calls:pbx-1764046800.101"
    assert (call.call_id, call.vendor, call.tracking_number) == ("pbx-1764046800.101", "asterisk", "+77270000001")
    assert call.started_at == datetime(2025, 11, 25, 5, 0, tzinfo=timezone.utc) == d.timestamp
    assert (call.duration_s, call.talk_s, call.answered, call.unique, call.direction) == (95, 80, True, True, "in")
    assert call.recording_url == "https://pbx.example.com/rec/FAKE-101.mp3"
    assert call.campaign == {"source": "google", "medium": "cpc", "campaign": "divan_nov", "term": "купить диван"}
    assert d.campaign == {"source": "google", "medium": "cpc", "name": "divan_nov", "term": "купить диван"}
    assert call.vendor_ids == {"ga_client_id": "1234567890.1764000000"}
    assert d.identity == {"phone": "8 701 123 45 67"} and d.anonymous_id == "anon-7f3a"
    assert d.page_url == "https://shop.example.com/divany?utm_source=google&utm_medium=cpc"


def test_the_caller_is_hashed_and_never_in_the_envelope():
    (d,) = _map(fixture_bytes("calls_call.json")).drafts
    env = envelope_of_draft(d, "shop", NOW, RULES)
    assert env.ids["phone"].startswith("h_") and env.masked["phone"] == "+7701***4567"
    assert b"1234567" not in env.to_bytes().replace(b"1234567890.1764000000", b"")
    assert env.properties["tracking_number"] == "+77270000001" and env.context.campaign["name"] == "divan_nov"


def test_a_batch_with_unix_and_naive_times_and_an_outgoing_call():
    out = _map(fixture_bytes("calls_batch.json"))
    missed, outgoing = out.drafts
    assert missed.event_id == "calls:pbx-1764046900.102" and missed.properties.vendor == "generic"
    assert missed.properties.started_at == datetime.fromtimestamp(1764046900, timezone.utc)
    assert (missed.properties.answered, missed.properties.talk_s, missed.properties.unique) == (False, 0, None)
    assert outgoing.properties.direction == "out" and outgoing.properties.tracking_number == "+77270000009"
    assert outgoing.properties.started_at == datetime(2025, 11, 25, 10, 3, 20, tzinfo=ALMATY)
    assert outgoing.identity == {"phone": "+77011234568"}


def test_the_timezone_and_region_come_from_the_config():
    body = orjson.dumps({"call_id": "c1", "tracking_number": "84950000001", "started_at": "2025-11-25 10:00:00"})
    (d,) = _map(body, {**CONFIG, "timezone": "Europe/Moscow", "region": "RU"}).drafts
    assert d.properties.tracking_number == "+74950000001"
    assert d.properties.started_at.utcoffset() == timedelta(hours=3)


def test_without_a_start_time_the_call_started_duration_before_it_was_received():
    body = orjson.dumps({"call_id": "c1", "tracking_number": "+77270000001", "duration_s": 60})
    (d,) = _map(body).drafts
    assert d.timestamp == NOW - timedelta(seconds=60)


def test_urls_and_ids_that_carry_the_callers_number_are_dropped():
    body = orjson.dumps({"call_id": "c1", "tracking_number": "+77270000001", "caller": "+7 701 123 45 67",
                         "recording_url": "https://pbx/rec/in-77011234567.wav",
                         "page_url": "https://s.kz/?tel=7011234567",
                         "vendor_ids": {"pbx_caller": "87011234567", "session": "s-1"}})
    (d,) = _map(body).drafts
    assert d.properties.recording_url is None and d.page_url is None
    assert d.properties.vendor_ids == {"session": "s-1"}


def test_unsigned_wrongly_signed_or_unconfigured_is_refused():
    body = fixture_bytes("calls_call.json")
    assert map_request(vendor_request("calls", body, {}, CONFIG)).status == 401
    bad = map_request(vendor_request("calls", body, _signed(body, "other"), CONFIG))
    assert isinstance(bad, Refused) and bad.reason == "bad_signature"
    unconfigured = _map(body, {})
    assert unconfigured.status == 401 and "not configured" in unconfigured.detail
    assert _map(body, {"secret": ["x"]}).status == 401  # a list is not a secret


def test_a_numeric_secret_from_the_cli_is_read_as_text():
    body = fixture_bytes("calls_call.json")
    out = map_request(vendor_request("calls", body, _signed(body, "12345"), {"secret": 12345}))
    assert isinstance(out, Accepted)


@pytest.mark.parametrize(("call", "detail"), [
    ({"tracking_number": "+77270000001"}, "calls[0]: call_id is required"),
    ({"call_id": "c1"}, "calls[0]: tracking_number is required"),
    ({"call_id": "c1", "tracking_number": "nope"}, "calls[0]: tracking_number: 'nope' is not a phone number"),
    ({"call_id": "c1", "tracking_number": "+77270000001", "duration_s": -1}, "calls[0]: duration_s: -1 is not"),
    ({"call_id": "c1", "tracking_number": "+77270000001", "answered": "maybe"}, "calls[0]: answered: 'maybe' is not"),
    ({"call_id": "c1", "tracking_number": "+77270000001", "direction": "sideways"}, "calls[0]: direction: 'sideways'"),
    ({"call_id": "c1", "tracking_number": "+77270000001", "started_at": "yesterday"},
     "calls[0]: started_at: 'yesterday'"),
    ({"call_id": "c1", "tracking_number": "+77270000001", "started_at": "1900-01-01T00:00:00"}, "calls[0]: started_at"),
    ({"call_id": "c1", "tracking_number": "+77270000001", "campaign": "google"},
     "calls[0]: campaign must be an object"),
    ({"call_id": "x" * 201, "tracking_number": "+77270000001"}, "calls[0]: call_id is longer than 200"),
])
def test_bad_calls_are_refused_with_the_field(call, detail):
    out = _map(orjson.dumps({"calls": [call]}))
    assert isinstance(out, Refused) and out.reason == "schema_violation" and out.detail.startswith(detail), out


def test_a_bad_body_is_refused_with_the_reason():
    assert _map(b"{not json").reason == "invalid_json"
    assert _map(b"[1, 2]").reason == "schema_violation"
    assert _map(b'{"calls": []}').reason == "schema_violation"
    too_many = _map(orjson.dumps({"calls": [{"call_id": str(n)} for n in range(1001)]}))
    assert (too_many.reason, too_many.status) == ("too_large", 413)
    bad_zone = _map(fixture_bytes("calls_call.json"), {**CONFIG, "timezone": "Mars/Olympus"})
    assert bad_zone.status == 500 and "timezone" in bad_zone.detail
    assert _map(fixture_bytes("calls_call.json"), {**CONFIG, "region": "XX"}).status == 500


@pytest.mark.parametrize(("value", "expected"), [
    ("29/05/2024 10:05:00", datetime(2024, 5, 29, 10, 5, tzinfo=ALMATY)),
    ("29.05.2024 10:05", datetime(2024, 5, 29, 10, 5, tzinfo=ALMATY)),
    ("2024-05-29 10:05:00", datetime(2024, 5, 29, 10, 5, tzinfo=ALMATY)),
    ("2024-05-29T10:05:00Z", datetime(2024, 5, 29, 10, 5, tzinfo=timezone.utc)),
    ("2024-05-29T10:05:00+03:00", datetime(2024, 5, 29, 7, 5, tzinfo=timezone.utc)),
    (1716959100, datetime(2024, 5, 29, 5, 5, tzinfo=timezone.utc)),
    ("1716959100", datetime(2024, 5, 29, 5, 5, tzinfo=timezone.utc)),
    ("1716959100000", datetime(2024, 5, 29, 5, 5, tzinfo=timezone.utc)),
    ("", None), (None, None), ("null", None),
])
def test_dates(value, expected):
    assert moment(value, "t", ALMATY) == expected


@pytest.mark.parametrize("value", ["31/02/2024 10:00:00", "tomorrow", True, 12, "2024-13-01", "9999999999999999"])
def test_not_dates(value):
    with pytest.raises(Bad, match="^t: "):
        moment(value, "t", ALMATY)


def test_value_parsers():
    assert [answered(v) for v in ("ANSWERED", "NO ANSWER", "BUSY", "FAILED", "successful", "unsuccessful", True,
                                  "false", 0, "RINGING", None)] == [
        True, False, False, False, True, False, True, False, False, None, None]
    assert [flag(v, "f") for v in ("true", "0", 1, "да", False, "")] == [True, False, True, True, False, None]
    assert [seconds(v, "s") for v in ("95", 95.4, "12,6", 0, None)] == [95, 95, 13, 0, None]
    assert [direction(v, "d", strict=False) for v in ("in", "OUT", "outgoing", "callback", "weird", None)] == [
        "in", "out", "out", "in", "in", "in"]
    for bad in (True, "abc", -1, float("1e9")):
        with pytest.raises(Bad):
            seconds(bad, "s")


def test_our_number_accepts_possible_numbers_but_not_words():
    assert our_number("+7 727 300 00 00", "KZ") == "+77273000000"
    assert our_number("77270000001", "KZ") == "+77270000001"  # a range phonenumbers does not know: still ours
    assert our_number("87011234567", "KZ") == "+77011234567"
    assert our_number("sip:100@pbx", "KZ") is None and our_number("12", "KZ") is None


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10, 2 * 10**13), st.floats(allow_nan=True),
                    st.text(max_size=20), st.sampled_from(["+77270000001", "77011234567", "29/05/2024 10:05:00",
                                                           "in", "out", "ANSWERED", "2024-05-29T10:05:00Z"]),
                    st.lists(st.integers(-10**6, 10**6), max_size=2),
                    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2))
_KEYS = st.sampled_from(["call_id", "tracking_number", "caller", "started_at", "duration_s", "talk_s", "answered",
                         "unique", "direction", "recording_url", "campaign", "vendor_ids", "vendor", "anonymous_id",
                         "page_url"])


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=15), st.booleans(), st.booleans())
def test_random_calls_never_raise(call, batch, complete):
    if complete:  # the required fields present, so the optional ones are all read
        call = {**call, "call_id": "c-1", "tracking_number": "+77270000001"}
    check(_map(orjson.dumps({"calls": [call]} if batch else call)))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=500))
def test_random_signed_bytes_never_raise(body):
    check(_map(body))


_CONFIG_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=False),
                          st.text(max_size=12), st.lists(st.text(max_size=8), max_size=3),
                          st.dictionaries(st.sampled_from(["caller", "call_id", "phone", "talk"]),
                                          st.none() | st.text(max_size=6) | st.integers(), max_size=3),
                          st.sampled_from(["Asia/Almaty", "Europe/Moscow", "../../etc/passwd", "KZ", "RU",
                                           "92.118.66.0/23", "::/0", "calldisconnected"]))
_CONFIG_KEYS = st.sampled_from(["secret", "timezone", "region", "fields", "allowed_ips", "final_phases", "token",
                                "app_secret", "verify_token", "phone_number_ids", "secret_token", "bot_id"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_CONFIG_KEYS, _CONFIG_VALUE, max_size=6),
       st.sampled_from(["calls", "calltouch", "ringostat", "whatsapp", "telegram"]), st.sampled_from(["GET", "POST"]))
def test_any_project_config_gives_an_answer_never_an_exception(config, vendor, method):
    """Settings are typed by whoever ran `moneytrail projects configure`: a wrong one is refused, never a crash."""
    from collector.vendors.registry import mapper_of

    body = {"calls": fixture_bytes("calls_call.json"), "calltouch": fixture_bytes("calltouch_call_webhook.txt"),
            "ringostat": fixture_bytes("ringostat_call.json"),
            "whatsapp": fixture_bytes("whatsapp_text_message.json"),
            "telegram": fixture_bytes("telegram_start_ref.json")}[vendor]
    secret = config.get("secret") or config.get("app_secret") or ""
    headers = {"X-Moneytrail-Signature": "sha256=" + hmac_sha256(str(secret), body).hex(),
               "X-Hub-Signature-256": "sha256=" + hmac_sha256(str(secret), body).hex(),
               "X-Telegram-Bot-Api-Secret-Token": str(config.get("secret_token"))}
    query = {"hub.mode": "subscribe", "hub.verify_token": str(config.get("verify_token")), "hub.challenge": "1"}
    check(mapper_of(vendor)(vendor_request(vendor, body, headers, config, method=method, query=query,
                                           client_ip="92.118.66.1")))
