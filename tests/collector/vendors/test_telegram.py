from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.ingest import IngestRules, envelope_of_draft
from collector.privacy import Hasher
from collector.vendors.base import Accepted, Refused
from collector.vendors.telegram import map_request
from schemas.families import MESSAGE

from .conftest import NOW, fixture_bytes, vendor_request
from .test_calls import check

TOKEN = "tg-Secret_token-1"
CONFIG = {"secret_token": TOKEN}
HEADERS = {"X-Telegram-Bot-Api-Secret-Token": TOKEN, "Content-Type": "application/json"}


def _map(body: bytes, config: dict | None = None, headers: dict | None = None):
    return map_request(vendor_request("telegram", body, HEADERS if headers is None else headers,
                                      CONFIG if config is None else config))


def test_the_shared_start_update_maps_to_a_message():
    out = _map(fixture_bytes("telegram_start_deeplink.json"))
    assert isinstance(out, Accepted) and out.ignored == ""
    (d,) = out.drafts
    assert d.schema == MESSAGE and d.event_id == "telegram:123456789"
    assert d.properties.model_dump() == {"platform": "telegram", "message_id": "42", "direction": "in",
                                         "ref_code": None, "text_campaign": {}, "ad_referral": {}}
    assert d.identity == {"chat": "telegram:111222333"}  # a base64 start payload is not our ref code
    assert d.timestamp == datetime.fromtimestamp(1717000400, timezone.utc)


def test_a_deep_link_start_gives_the_ref_code():
    (d,) = _map(fixture_bytes("telegram_start_ref.json"), {**CONFIG, "bot_id": 7012345678}).drafts
    assert d.event_id == "telegram:7012345678:987650001"
    assert d.properties.ref_code == "7K3QX9AB"
    assert d.identity == {"chat": "telegram:5012345678", "ref": "7K3QX9AB"}
    env = envelope_of_draft(d, "shop", NOW, IngestRules(Hasher(b"k" * 32)))
    assert env.ids["chat"].startswith("h_") and env.ids["ref"] == "7K3QX9AB" and b"5012345678" not in env.to_bytes()


def test_a_contact_shared_by_the_sender_is_their_phone():
    (d,) = _map(fixture_bytes("telegram_contact.json")).drafts
    assert d.identity == {"chat": "telegram:5012345678", "phone": "77011234567"}
    assert d.properties.ref_code is None  # the quoted /start belongs to the earlier message
    update = orjson.loads(fixture_bytes("telegram_contact.json"))
    update["message"]["contact"]["user_id"] = 999  # someone else's contact card
    (d,) = _map(orjson.dumps(update)).drafts
    assert d.identity == {"chat": "telegram:5012345678"}


def test_utm_tags_and_a_code_in_a_plain_text_or_caption():
    update = {"update_id": 5, "message": {"message_id": 3, "date": 1764046800, "from": {"id": 42, "is_bot": False},
                                          "chat": {"id": -100, "type": "group"},
                                          "caption": "хочу такой (utm_source=tiktok) MT-7K3QX9AB"}}
    (d,) = _map(orjson.dumps(update)).drafts
    assert d.properties.text_campaign == {"source": "tiktok"} and d.campaign == {"source": "tiktok"}
    assert d.identity == {"chat": "telegram:42", "ref": "7K3QX9AB"}  # the sender, not the group


@pytest.mark.parametrize(("update", "ignored"), [
    (fixture_bytes("telegram_edited_message.json"), "telegram: edited_message update not counted"),
    (b'{"update_id": 1, "callback_query": {"id": "1"}}', "telegram: callback_query update not counted"),
    (b'{"update_id": 1}', "telegram: empty update not counted"),
    (b'{"update_id": 1, "message": {"message_id": 2, "date": 1764046800, "sender_chat": {"id": -1}}}',
     "telegram: message without a person as sender"),
    (b'{"update_id": 1, "message": {"message_id": 2, "date": 1764046800, "from": {"id": 3, "is_bot": true}}}',
     "telegram: message from a bot"),
])
def test_other_updates_are_acknowledged_without_drafts(update, ignored):
    out = _map(update)
    assert isinstance(out, Accepted) and out.drafts == () and out.ignored.startswith(ignored), out


def test_the_secret_token_is_required_and_checked():
    body = fixture_bytes("telegram_start_deeplink.json")
    unconfigured = _map(body, {})
    assert isinstance(unconfigured, Refused) and unconfigured.status == 401 and "secret_token" in unconfigured.detail
    for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": TOKEN + "x"}):
        out = _map(body, headers=headers)
        assert isinstance(out, Refused) and (out.reason, out.status) == ("bad_signature", 401)
    numeric = _map(body, {"secret_token": 123456}, {"X-Telegram-Bot-Api-Secret-Token": "123456"})
    assert isinstance(numeric, Accepted)  # the CLI stores a numeric value as a number


@pytest.mark.parametrize(("body", "detail"), [
    (b"nope", "telegram: body is not JSON"),
    (b"[1]", "telegram: body must be an Update object"),
    (b'{"message": {}}', "telegram: update_id is required (a non-negative integer), got None"),
    (b'{"update_id": true, "message": {}}', "telegram: update_id is required"),
    (b'{"update_id": 1, "message": []}', "telegram: message must be an object"),
    (b'{"update_id": 1, "message": {"from": {"id": 1}}}', "telegram: message.message_id is required"),
    (b'{"update_id": 1, "message": {"message_id": 1, "from": {"id": 1}, "date": -5}}',
     "telegram: message.date: -5 is not a date"),
])
def test_malformed_updates_are_refused_with_the_field(body, detail):
    out = _map(body)
    assert isinstance(out, Refused) and out.reason in ("invalid_json", "schema_violation")
    assert out.detail.startswith(detail), out


def test_a_bad_bot_id_is_a_config_error():
    out = _map(fixture_bytes("telegram_start_deeplink.json"), {**CONFIG, "bot_id": "mybot"})
    assert isinstance(out, Refused) and out.status == 500 and "bot_id" in out.detail


_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 2 * 10**12), st.text(max_size=12),
                  st.sampled_from(["/start mt_7K3QX9AB", "utm_source=x", "+77011234567", "private"]))
_KEYS = st.sampled_from(["update_id", "message", "edited_message", "message_id", "from", "chat", "id", "is_bot",
                         "date", "text", "caption", "contact", "phone_number", "user_id", "type"])
_JSON = st.recursive(_LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=5),
                     max_leaves=25)


@settings(max_examples=500, deadline=None)
@given(_JSON, _JSON | st.fixed_dictionaries({"id": st.integers(-10, 10**12)}, optional={"is_bot": st.booleans()}),
       st.booleans())
def test_random_updates_never_raise(message, sender, wrap):
    data = message
    if wrap:  # a well-formed update around random insides, so they are read
        inner = message if isinstance(message, dict) else {"text": message}
        data = {"update_id": 1, "message": {"message_id": 1, "date": 1764046800, **inner, "from": sender}}
    check(_map(orjson.dumps(data)))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=500))
def test_random_bytes_never_raise(body):
    check(_map(body))
