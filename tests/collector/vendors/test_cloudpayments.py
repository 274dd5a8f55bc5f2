import base64
import hashlib
import hmac
import json
from datetime import datetime, timezone
from decimal import Decimal
from urllib.parse import parse_qsl, unquote_plus, urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.app import create_app
from collector.ingest import IngestRules, envelope_of_draft
from collector.ports import CollectorConfig
from collector.privacy import Hasher
from collector.vendors.base import Accepted, Refused
from collector.vendors.cloudpayments import map_request
from schemas.envelope import Envelope
from schemas.families import PAYMENT
from schemas.project import Project

from .conftest import NOW, fixture_bytes, vendor_request

SECRET = "test_api_secret_FAKE"
VECTOR = "68+9zLch22e7uI5/woq2urpr0ZtkkT33eJyxmf2GJ2E="  # FORMATS.md: SECRET over cloudpayments_pay.txt
FORM = "application/x-www-form-urlencoded; charset=utf-8"
CONFIG = {"api_secret": SECRET}


def _mac(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def _map(body: bytes, headers: dict | None = None, config: dict | None = None, query: dict | None = None,
         content_type: str | None = FORM):
    h = {"Content-HMAC": _mac(body)} if headers is None else dict(headers)
    if content_type:
        h["Content-Type"] = content_type
    return map_request(vendor_request("cloudpayments", body, h, CONFIG if config is None else config, query=query))


def _form(**changes: str) -> bytes:
    """cloudpayments_pay.txt with fields changed (None removes one)."""
    fields = dict(parse_qsl(fixture_bytes("cloudpayments_pay.txt").decode(), keep_blank_values=True))
    for k, v in changes.items():
        if v is None:
            fields.pop(k, None)
        else:
            fields[k] = v
    return urlencode(fields).encode()


def _one(out):
    assert isinstance(out, Accepted), out
    assert out.reply.status == 200 and out.reply.body == b'{"code":0}'
    (draft,) = out.drafts
    assert draft.schema == PAYMENT
    return draft


def _ignored(out, *words: str):
    assert isinstance(out, Accepted) and out.drafts == (), out
    assert out.reply.body == b'{"code":0}'
    for word in words:
        assert word in out.ignored, out.ignored


# --- the signature -------------------------------------------------------------------------------

def test_the_formats_test_vector():
    body = fixture_bytes("cloudpayments_pay.txt")
    assert _mac(body) == VECTOR
    assert isinstance(_map(body, {"Content-HMAC": VECTOR}), Accepted)
    assert isinstance(_map(body, {"content-hmac": VECTOR}), Accepted)  # header names arrive lower-cased


def test_x_content_hmac_over_the_url_decoded_body_or_the_raw_body():
    body = fixture_bytes("cloudpayments_pay.txt")
    decoded = unquote_plus(body.decode()).encode()
    assert decoded != body
    assert isinstance(_map(body, {"X-Content-HMAC": _mac(decoded)}), Accepted)
    assert isinstance(_map(body, {"X-Content-HMAC": _mac(body)}), Accepted)
    out = _map(body, {"X-Content-HMAC": _mac(decoded, "other")})
    assert isinstance(out, Refused) and out.reason == "bad_signature"
    # the URL-decoded form is only accepted in X-Content-HMAC, as FORMATS.md describes
    assert isinstance(_map(body, {"Content-HMAC": _mac(decoded)}), Refused)


@pytest.mark.parametrize("headers", [{}, {"Content-HMAC": ""}, {"Content-HMAC": _mac(b"x")},
                                     {"Content-HMAC": VECTOR + "="}, {"Content-HMAC": "плохо"}])
def test_unsigned_or_wrongly_signed_is_refused_401(headers):
    out = _map(fixture_bytes("cloudpayments_pay.txt"), headers)
    assert isinstance(out, Refused) and out.reason == "bad_signature" and out.status == 401


def test_a_tampered_body_is_refused():
    body = fixture_bytes("cloudpayments_pay.txt")
    tampered = body.replace(b"Amount=15000.00", b"Amount=150000.00")
    assert tampered != body
    assert _map(tampered, {"Content-HMAC": VECTOR}).reason == "bad_signature"


@pytest.mark.parametrize("config", [{}, {"api_secret": ""}, {"api_secret": "  "}, {"api_secret": 12345},
                                    {"secret": SECRET}])
def test_without_the_api_secret_nothing_is_accepted(config):
    out = _map(fixture_bytes("cloudpayments_pay.txt"), {"Content-HMAC": VECTOR}, config)
    assert isinstance(out, Refused) and out.status == 401 and "not configured" in out.detail


# --- the mapping ---------------------------------------------------------------------------------

def test_pay_form_is_a_payment_in_major_units():
    d = _one(_map(fixture_bytes("cloudpayments_pay.txt")))
    assert d.event_id == "cloudpayments:payment:1234567890"
    p = d.properties
    assert (p.provider, p.payment_id, p.kind, p.currency, p.order_id, p.refund_of) == (
        "cloudpayments", "1234567890", "payment", "KZT", "ORD-10492", None)
    assert p.amount == Decimal("15000.00") and str(p.amount) == "15000.00"
    assert d.timestamp == datetime(2024, 5, 29, 10, 0, 5, tzinfo=timezone.utc)
    assert d.identity == {"payment": "cloudpayments:1234567890", "email": "buyer@example.com", "phone": "+77011234567",
                          "order": "ORD-10492"}
    assert d.user_id is None  # AccountId is the buyer's email here: an email, never a raw user id
    assert d.anonymous_id is None  # Data.client_id is a Google Analytics cid, not ours
    assert d.campaign == {"source": "google"}


def test_the_json_variant_maps_like_the_form():
    form = _one(_map(fixture_bytes("cloudpayments_pay.txt")))
    body = fixture_bytes("cloudpayments_pay.json")
    d = _one(_map(body, content_type="application/json"))
    assert d.event_id == form.event_id and d.identity == form.identity and d.campaign == form.campaign
    assert d.properties.amount == Decimal("15000") and d.properties.currency == "KZT"
    assert d.timestamp == form.timestamp
    assert _one(_map(body, content_type=None)).event_id == form.event_id  # sniffed without a Content-Type


def test_refund_is_joined_to_the_original_transaction():
    body = fixture_bytes("cloudpayments_refund.txt")
    missing = _map(body)
    assert isinstance(missing, Refused) and missing.reason == "schema_violation"
    assert "carries no Currency" in missing.detail and "currency=KZT" in missing.detail
    d = _one(_map(body, config={**CONFIG, "currency": "kzt"}))
    assert d.event_id == "cloudpayments:refund:1234567999"
    p = d.properties
    assert (p.kind, p.payment_id, p.refund_of, p.amount, p.currency) == (
        "refund", "1234567999", "1234567890", Decimal("15000.00"), "KZT")
    assert d.identity == {"payment": "cloudpayments:1234567890", "email": "buyer@example.com", "phone": "+77011234567",
                          "order": "ORD-10492"}
    assert d.timestamp == datetime(2024, 6, 5, 8, 0, tzinfo=timezone.utc)


def test_fail_authorized_check_cancel_and_recurrent_are_answered_but_not_counted():
    _ignored(_map(fixture_bytes("cloudpayments_fail.txt")), "fail")
    _ignored(_map(_form(Status="Authorized")), "Authorized", "Confirm")
    _ignored(_map(fixture_bytes("cloudpayments_pay.txt"), query={"type": "check"}), "check")
    _ignored(_map(fixture_bytes("cloudpayments_pay.txt"), query={"type": "cancel"}), "cancel")
    recurrent = urlencode({"Id": "sc_FAKE0001", "AccountId": "u-1", "Description": "Monthly",
                           "Email": "buyer@example.com",
                           "Amount": "1000", "Currency": "KZT", "Status": "Active"}).encode()
    _ignored(_map(recurrent), "neither a payment")
    _ignored(_map(recurrent, query={"type": "recurrent"}), "recurrent")
    _ignored(_map(_form(OperationType="CardPayout")), "CardPayout")


def test_check_is_always_approved_even_when_the_secret_is_wrong_so_no_sale_is_blocked():
    body = fixture_bytes("cloudpayments_pay.txt")
    for headers, config in (({"Content-HMAC": _mac(body, "wrong")}, CONFIG), ({}, {}), ({}, CONFIG)):
        _ignored(_map(body, headers, config, query={"type": "check"}), "check")
    assert isinstance(_map(body, {}, CONFIG, query={"type": "pay"}), Refused)  # only Check skips the signature


def test_a_two_stage_payment_is_counted_once_on_confirm():
    authorized = _map(_form(Status="Authorized"), query={"type": "pay"})
    _ignored(authorized, "two-stage")
    confirm = _one(_map(_form(OperationType=None), query={"type": "confirm"}))
    assert confirm.event_id == "cloudpayments:payment:1234567890" and confirm.properties.kind == "payment"


def test_a_refund_url_with_the_wrong_type_is_still_a_refund():
    body = fixture_bytes("cloudpayments_refund.txt")
    d = _one(_map(body, config={**CONFIG, "currency": "KZT"}, query={"type": "pay"}))
    assert d.properties.kind == "refund"


def test_an_unknown_type_is_refused():
    out = _map(fixture_bytes("cloudpayments_pay.txt"), query={"type": "payout"})
    assert isinstance(out, Refused) and out.reason == "unknown_type" and "'payout'" in out.detail


@pytest.mark.parametrize("account, kind, value", [
    ("u-20931", "user", "u-20931"), ("1234567890", "user", "1234567890"), ("42", "user", "42"),
    ("7012345678", "user", "7012345678"),  # a numeric id that is also a possible Kazakh number: still an id
    ("+7 701 765 43 21", "phone", "+7 701 765 43 21"), ("87017654321", "phone", "87017654321"),
    ("other@example.com", "email", None),
])
def test_account_id_is_a_user_id_unless_it_is_personal_data(account, kind, value):
    d = _one(_map(_form(AccountId=account, Data="{}", Email="")))
    if kind == "user":
        assert d.user_id == value and "phone" not in d.identity and "email" not in d.identity
    elif kind == "phone":
        assert d.user_id is None and d.identity["phone"] == value
    else:
        assert d.user_id is None and d.identity["email"] == account


def test_our_ids_from_data_or_json_data():
    data = json.dumps({"moneytrail_anonymous_id": "anon_1f2e3d4c", "user_id": "u-5", "utm_source": "instagram",
                       "utm_medium": "social", "deal_id": "bx-771", "promo_code": "SPRING10"})
    d = _one(_map(_form(Data=data, AccountId="u-ignored")))
    assert d.anonymous_id == "anon_1f2e3d4c" and d.user_id == "u-5"  # Data's user_id wins over AccountId
    assert d.campaign == {"source": "instagram", "medium": "social"}
    assert d.identity["deal"] == "bx-771" and d.identity["promo"] == "SPRING10" and d.properties.deal_id == "bx-771"
    d2 = _one(_map(_form(Data=None, JsonData=json.dumps({"anonymous_id": "anon_9"}))))
    assert d2.anonymous_id == "anon_9"


def test_unreadable_data_does_not_lose_the_payment():
    d = _one(_map(_form(Data="{not json")))
    assert d.properties.amount == Decimal("15000.00") and d.anonymous_id is None and "phone" not in d.identity


@pytest.mark.parametrize("changes, expect", [
    ({"Amount": "abc"}, "Amount 'abc' is not a decimal number"),
    ({"Amount": "-5"}, "must be a non-negative number"),
    ({"Amount": None}, "Amount is required"),
    ({"Currency": "тенге"}, "is not an ISO-4217 code"),
    ({"Currency": None}, "Currency is required"),
    ({"TransactionId": ""}, "TransactionId is required"),
])
def test_malformed_payments_are_refused_with_the_field(changes, expect):
    out = _map(_form(**changes))
    assert isinstance(out, Refused) and out.reason == "schema_violation" and out.status == 400
    assert expect in out.detail and out.detail.startswith("cloudpayments: pay:")


def test_unreadable_bodies_are_refused():
    assert _map(b"\xff\xfe=1").reason == "invalid_utf8"
    assert _map(b"{nope", content_type="application/json").reason == "invalid_json"
    assert _map(b"[1]", content_type="application/json").reason == "schema_violation"


def test_every_draft_becomes_an_envelope():
    rules = IngestRules(Hasher(b"k" * 32))
    config = {**CONFIG, "currency": "KZT"}
    for name in ("cloudpayments_pay.txt", "cloudpayments_pay.json", "cloudpayments_refund.txt"):
        (d,) = _map(fixture_bytes(name), config=config).drafts
        env = envelope_of_draft(d, "shop", NOW, rules)
        assert isinstance(env, Envelope), (name, env)
        assert env.ids["payment"] == "cloudpayments:1234567890" and env.ids["order"] == "ORD-10492"
        raw = env.to_bytes().decode()
        assert "buyer@example.com" not in raw and "+77011234567" not in raw


# --- never raises --------------------------------------------------------------------------------

_scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
_json = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=15)
_keys = st.sampled_from(["TransactionId", "PaymentTransactionId", "Amount", "Currency", "OperationType", "Status",
                         "InvoiceId", "AccountId", "Email", "Phone", "Data", "JsonData", "DateTime", "Reason",
                         "ReasonCode"])
_fields = st.dictionaries(
    _keys, _scalar | st.sampled_from(["Completed", "Authorized", "Refund", "Payment", "KZT", "1.5"]), max_size=10)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200), _json.map(lambda v: json.dumps(v).encode()),
                 _fields.map(lambda f: json.dumps(f).encode()),
                 _fields.map(lambda f: urlencode({k: "" if v is None else str(v) for k, v in f.items()}).encode())),
       st.sampled_from([FORM, "application/json", None, "text/plain"]),
       st.sampled_from([{}, {"type": "pay"}, {"type": "refund"}, {"type": "confirm"}, {"type": "??"}]),
       st.sampled_from([CONFIG, {**CONFIG, "currency": "KZT"}, {**CONFIG, "currency": 5}, {}]))
def test_any_signed_body_gives_accepted_or_refused_never_an_exception(body, content_type, query, config):
    out = _map(body, None, config, query, content_type)
    assert isinstance(out, (Accepted, Refused))
    if isinstance(out, Accepted):
        assert out.reply.body == b'{"code":0}'


# --- through the webhook route -------------------------------------------------------------------

class _Projects:
    async def by_webhook_secret(self, key: str):
        return Project("shop", "Shop", vendor_config={"cloudpayments": CONFIG}) if key == "whs_t" else None


async def test_through_the_route_the_answer_is_code_0_and_a_bad_signature_stores_nothing():
    published: list[Envelope] = []

    async def publish(topic, records):
        published.extend(Envelope.from_bytes(v) for _, v in records)

    async def report(name, project, query):
        raise LookupError(name)

    app = create_app(CollectorConfig(pii_key=b"k" * 32), _Projects(), publish, report)
    body = fixture_bytes("cloudpayments_pay.txt")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        bad = await client.post("/webhooks/cloudpayments/whs_t?type=pay", content=body,
                                headers={"Content-Type": FORM, "Content-HMAC": _mac(body, "wrong")})
        assert (bad.status_code, bad.json()["reason"]) == (401, "bad_signature") and published == []
        ok = await client.post("/webhooks/cloudpayments/whs_t?type=pay", content=body,
                               headers={"Content-Type": FORM, "Content-HMAC": VECTOR})
    assert (ok.status_code, ok.content, ok.headers["content-type"]) == (200, b'{"code":0}', "application/json")
    (env,) = published
    assert env.event_id == "cloudpayments:payment:1234567890" and env.properties["amount"] == "15000.00"
    assert env.ids["order"] == "ORD-10492" and env.ids["email"].startswith("h_")
