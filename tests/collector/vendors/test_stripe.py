import hashlib
import hmac
import json
import time
from datetime import datetime, timezone
from decimal import Decimal

import httpx
import orjson
import pytest
import stripe as stripe_sdk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.app import create_app
from collector.ingest import IngestRules, envelope_of_draft
from collector.ports import CollectorConfig
from collector.privacy import Hasher
from collector.vendors.base import Accepted, Refused
from collector.vendors.stripe import map_request, verify_signature
from schemas.envelope import Envelope
from schemas.families import PAYMENT
from schemas.project import Project

from .conftest import fixture_bytes, vendor_request

SECRET = "whsec_test_FAKEsecret"
# FORMATS.md test vector: SECRET over the exact bytes of stripe_checkout.session.completed.json
VECTOR_T = 1717000123
VECTOR = "t=1717000123,v1=f09f6f4da3fb13ab4cb594eb3c7f89142143cae418415c1eef6847a5f6a8f800"
PI = "pi_3PAbCdEfGhIjKlMn0aBcDeFg"
SESSION_EVT, PI_EVT = "evt_1PAbCdEfGhIjKlMnOpQrStUv", "evt_3PAbCdEfGhIjKlMn0zZzZzZz"
ANON = "anon_7f3c2a9e-1b44-4c1e-9a55-0c6d2e8f1a10"


def _at(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=timezone.utc)


def _v1(body: bytes, secret: str, t: int) -> str:
    """Computed here, independently of the mapper: hex HMAC-SHA256(secret, f"{t}." + body)."""
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def _header(body: bytes, t: int, *secrets: str) -> str:
    return ",".join([f"t={t}"] + [f"v1={_v1(body, s, t)}" for s in secrets])


def _map(body: bytes, header: str | None, received_at: datetime, config: dict | None = None):
    headers = {"Stripe-Signature": header} if header is not None else {}
    config = {"signing_secrets": [SECRET]} if config is None else config
    return map_request(vendor_request("stripe", body, headers, config, received_at=received_at))


def _sdk_accepts(body: bytes, header: str, secret: str, tolerance: int | None) -> bool:
    try:
        return stripe_sdk.WebhookSignature.verify_header(body.decode(), header, secret, tolerance) is True
    except stripe_sdk.SignatureVerificationError:
        return False


def _signed(name: str, t: int = VECTOR_T):
    """A fixture, signed at t and received 5 s later."""
    body = fixture_bytes(name)
    return _map(body, _header(body, t, SECRET), _at(t + 5))


def _one(out) -> object:
    assert isinstance(out, Accepted), out
    (draft,) = out.drafts
    assert draft.schema == PAYMENT
    return draft


# --- the signature -------------------------------------------------------------------------------

def test_the_formats_test_vector_is_accepted_by_us_and_by_stripe_python():
    body = fixture_bytes("stripe_checkout.session.completed.json")
    assert _header(body, VECTOR_T, SECRET) == VECTOR  # our test helper agrees with the vector
    assert _sdk_accepts(body, VECTOR, SECRET, None)  # the SDK's tolerance uses the wall clock: checked below
    assert isinstance(_map(body, VECTOR, _at(VECTOR_T + 299)), Accepted)
    stale = _map(body, VECTOR, _at(VECTOR_T + 301))
    assert isinstance(stale, Refused) and stale.reason == "stale_signature" and stale.status == 400
    assert "301 s old" in stale.detail


def test_headers_this_test_and_the_sdk_generate_are_accepted_by_both():
    body = fixture_bytes("stripe_payment_intent.succeeded.json")
    now = int(time.time())
    ours = _header(body, now, SECRET)
    sdks = stripe_sdk.WebhookSignature.generate_signature_header(body.decode(), SECRET, timestamp=now)
    assert ours == sdks
    for header in (ours, sdks):
        assert _sdk_accepts(body, header, SECRET, 300)
        assert isinstance(_map(body, header, _at(now)), Accepted)


@pytest.mark.parametrize("case", ["tampered body", "wrong secret", "301 s old", "no v1", "no t", "v0 only"])
def test_bad_or_old_signatures_are_rejected_by_both_with_400(case):
    body = fixture_bytes("stripe_checkout.session.completed.json")
    now = int(time.time())
    sent, header = body, _header(body, now, SECRET)
    if case == "tampered body":
        sent = body.replace(b'"amount_total": 4990', b'"amount_total": 499000')
        assert sent != body
    elif case == "wrong secret":
        header = _header(body, now, "whsec_other_FAKE")
    elif case == "301 s old":
        header = _header(body, now - 301, SECRET)
    elif case == "no v1":
        header = f"t={now}"
    elif case == "no t":
        header = f"v1={_v1(body, SECRET, now)}"
    elif case == "v0 only":
        header = f"t={now},v0={_v1(body, SECRET, now)}"
    assert not _sdk_accepts(sent, header, SECRET, 300)
    out = _map(sent, header, _at(now))
    assert isinstance(out, Refused) and out.status == 400
    assert out.reason == ("stale_signature" if case == "301 s old" else "bad_signature")


def test_exactly_at_the_tolerance_is_accepted_one_second_later_is_not():
    body = fixture_bytes("stripe_payment_intent.succeeded.json")
    header = _header(body, VECTOR_T, SECRET)
    assert isinstance(_map(body, header, _at(VECTOR_T + 300)), Accepted)
    assert _map(body, header, _at(VECTOR_T + 301)).reason == "stale_signature"
    custom = {"signing_secrets": [SECRET], "tolerance_s": 30}
    assert isinstance(_map(body, header, _at(VECTOR_T + 30), custom), Accepted)
    assert _map(body, header, _at(VECTOR_T + 31), custom).reason == "stale_signature"


def test_a_wrong_and_stale_signature_is_bad_not_stale():
    body = fixture_bytes("stripe_payment_intent.succeeded.json")
    out = _map(body, _header(body, VECTOR_T, "whsec_other_FAKE"), _at(VECTOR_T + 10_000))
    assert out.reason == "bad_signature"


def test_rotation_any_v1_and_any_configured_secret_matches():
    body = fixture_bytes("stripe_payment_intent.succeeded.json")
    t = VECTOR_T
    both = _header(body, t, "whsec_old_FAKE", SECRET)  # Stripe signs with both while rolling
    assert _sdk_accepts(body, both, SECRET, None) and _sdk_accepts(body, both, "whsec_old_FAKE", None)
    assert isinstance(_map(body, both, _at(t)), Accepted)
    assert isinstance(_map(body, both, _at(t), {"signing_secret": "whsec_old_FAKE"}), Accepted)
    only_new = _header(body, t, SECRET)
    assert isinstance(_map(body, only_new, _at(t), {"signing_secrets": ["whsec_old_FAKE", SECRET]}), Accepted)
    assert isinstance(_map(body, only_new, _at(t), {"signing_secrets": "whsec_old_FAKE," + SECRET}), Accepted)
    assert _map(body, only_new, _at(t), {"signing_secrets": ["whsec_old_FAKE"]}).reason == "bad_signature"


def test_unsigned_or_unconfigured_is_refused():
    body = fixture_bytes("stripe_payment_intent.succeeded.json")
    missing = _map(body, None, _at(VECTOR_T))
    assert isinstance(missing, Refused) and missing.reason == "bad_signature" and missing.status == 400
    assert "no Stripe-Signature" in missing.detail
    header = _header(body, VECTOR_T, SECRET)
    for config in ({}, {"signing_secrets": []}, {"signing_secret": "  "}, {"signing_secrets": [None, 5]}):
        out = _map(body, header, _at(VECTOR_T), config)
        assert isinstance(out, Refused) and out.status == 401 and "not configured" in out.detail, config


@pytest.mark.parametrize("tolerance", [0, -5, "soon", True, 1.5])
def test_replay_protection_cannot_be_switched_off(tolerance):
    body = fixture_bytes("stripe_payment_intent.succeeded.json")
    config = {"signing_secrets": [SECRET], "tolerance_s": tolerance}
    out = _map(body, _header(body, VECTOR_T, SECRET), _at(VECTOR_T), config)
    assert isinstance(out, Refused) and "tolerance_s" in out.detail


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["t", "v1", "v0", " t", "v1 ", "x", ""]),
                          st.text(alphabet="0123456789abcdef=, _+-", max_size=70)), max_size=4),
       st.booleans(), st.booleans())
def test_we_never_accept_a_header_stripe_python_rejects(noise, genuine_t, genuine_v1):
    body = b'{"id":"evt_1","type":"customer.created","data":{"object":{}}}'
    now = int(time.time())
    parts = ([f"t={now}"] if genuine_t else []) + [f"{k}={v}" for k, v in noise]
    if genuine_v1:
        parts.append(f"v1={_v1(body, SECRET, now)}")
    header = ",".join(parts)
    ours = verify_signature(body, header, [SECRET], 300, _at(now)) is None
    if ours:
        assert _sdk_accepts(body, header, SECRET, 300), header
    if genuine_t and genuine_v1:  # both parse the same header the same way
        assert ours == _sdk_accepts(body, header, SECRET, 300), header


# --- the mapping ---------------------------------------------------------------------------------

def test_checkout_session_completed_is_the_payment_with_our_anonymous_id():
    d = _one(_signed("stripe_checkout.session.completed.json"))
    assert d.event_id == f"stripe:{SESSION_EVT}"
    assert d.timestamp == _at(1717000123)
    p = d.properties
    assert (p.provider, p.payment_id, p.kind, p.currency, p.status) == ("stripe", PI, "payment", "USD", "succeeded")
    assert p.amount == Decimal("49.90") and str(p.amount) == "49.90"
    assert p.order_id == "ORD-10492" and p.refund_of is None
    assert d.identity == {"email": "buyer@example.com", "phone": "+77011234567",
                          "crm_contact": "stripe:cus_QAbCdEfGhIjKlM", "payment": f"stripe:{PI}", "order": "ORD-10492"}
    assert d.anonymous_id == "anon_7f3c2a9e-1b44-4c1e-9a55-0c6d2e8f1a10" and d.user_id is None
    assert d.campaign == {"source": "google", "campaign": "spring_sale"}


def test_payment_intent_succeeded_is_the_same_payment_under_its_own_event_id():
    session = _one(_signed("stripe_checkout.session.completed.json"))
    d = _one(_signed("stripe_payment_intent.succeeded.json"))
    # two Stripe events, two raw rows; one payment: same payment_id, same payment identifier
    assert (session.event_id, d.event_id) == (f"stripe:{SESSION_EVT}", f"stripe:{PI_EVT}")
    assert d.properties == session.properties and d.identity["payment"] == session.identity["payment"]
    assert d.timestamp == _at(1717000120)
    assert d.identity == {"email": "buyer@example.com", "crm_contact": "stripe:cus_QAbCdEfGhIjKlM",
                          "payment": f"stripe:{PI}", "order": "ORD-10492"}
    assert d.anonymous_id is None and d.campaign == {}


def _replayed(arrivals: list[str]) -> tuple[dict, dict, dict]:
    """The fixtures delivered in this order, kept as raw_events keeps them (one row per event_id,
    the last received wins), then replayed: stage 1 and the persons stage, with one Paid Search
    visit of our visitor before the payment. Returns (raw rows by event_id, conversion rows by
    conversion_id, last_touch credits by channel)."""
    from schemas import topics
    from stream_processors.channels import ChannelRules
    from stream_processors.outputs import records_of
    from stream_processors.steps import ProcessorConfig, process
    from tests.stream_processors.test_persons import PROJECT, net_credits, run, touch

    rules = IngestRules(Hasher(b"k" * 32))
    raw: dict[str, bytes] = {}
    for name in arrivals:
        env = envelope_of_draft(_one(_signed(name)), PROJECT, _at(VECTOR_T + 60), rules)
        raw[env.event_id] = env.to_bytes()  # ReplacingMergeTree(received_at) ORDER BY (project, event_id)
    records = [touch("t-visit", ANON, _at(VECTOR_T - 3600), "Paid Search", "google")]
    conversions: dict[str, dict] = {}
    for payload in raw.values():
        _, result = process(ProcessorConfig(ChannelRules.load()), None, payload)
        for topic, recs in records_of(result).items():
            rows = [orjson.loads(v) for _, v in recs]
            records += [(topic, r) for r in rows if topic in (topics.LINKS, topics.CONVERSIONS)]
            conversions.update((r["conversion_id"], r) for r in rows if topic == topics.CONVERSIONS)
    out, _, _ = run(records)
    by_channel: dict[str, Decimal] = {}
    for (_cid, model, _touch, channel), (_w, amount) in net_credits(out[topics.CREDITS]).items():
        if model == "last_touch":
            by_channel[channel] = by_channel.get(channel, Decimal(0)) + amount
    return {k: Envelope.from_bytes(v) for k, v in raw.items()}, conversions, by_channel


@pytest.mark.parametrize("order", ["session first", "payment intent first"])
def test_checkout_and_its_payment_intent_in_any_order_are_one_payment_of_our_visitor_after_a_replay(order):
    names = ["stripe_checkout.session.completed.json", "stripe_payment_intent.succeeded.json"]
    raw, conversions, credited = _replayed(names if order == "session first" else names[::-1])
    # credited once, in full, to our visitor's visit: 49.90 for the payment and for the sale
    assert credited == {"Paid Search": Decimal("99.80")}
    # one payment and one sale (the warehouse keeps one row per conversion id), on the payment
    assert sorted(conversions) == [f"payment:stripe:{PI}", f"sale:payment:stripe:{PI}"]
    assert {c["subject"] for c in conversions.values()} == {f"payment:stripe:{PI}"}
    # both raw rows survive (one event id each): the session's anonymous id is still stored
    assert {e.event_id: e.anonymous_id for e in raw.values()} == {f"stripe:{SESSION_EVT}": ANON,
                                                                   f"stripe:{PI_EVT}": None}


def _subscription(kind: str) -> bytes:
    """A subscription Checkout (no PaymentIntent on the Session; its first invoice made one), the
    invoice's PaymentIntent, and that charge's refund: the saved payloads as Stripe sends them for
    such a payment (API 2024-06-20: payment_intent null on the Session, PaymentIntent.invoice and
    Charge.invoice set)."""
    name = {"session": "stripe_checkout.session.completed.json", "pi": "stripe_payment_intent.succeeded.json",
            "refund": "stripe_charge.refunded.json"}[kind]
    event = orjson.loads(fixture_bytes(name))
    obj = event["data"]["object"]
    if kind == "session":
        obj.update(mode="subscription", payment_intent=None, invoice="in_1PSuBsCrIpTiOnFAKE", subscription="sub_1FAKE")
    else:
        obj.update(invoice="in_1PSuBsCrIpTiOnFAKE")
    return orjson.dumps(event)


def test_a_subscription_checkout_and_its_invoices_payment_intent_are_one_payment():
    drafts = {}
    for kind in ("session", "pi", "refund"):
        body = _subscription(kind)
        drafts[kind] = _one(_map(body, _header(body, VECTOR_T, SECRET), _at(VECTOR_T)))
    session, pi, refund = drafts["session"], drafts["pi"], drafts["refund"]
    assert session.properties.payment_id == pi.properties.payment_id == "in_1PSuBsCrIpTiOnFAKE"
    assert session.identity["payment"] == pi.identity["payment"] == "stripe:in_1PSuBsCrIpTiOnFAKE"
    assert session.event_id != pi.event_id and session.anonymous_id == ANON
    assert refund.properties.refund_of == "in_1PSuBsCrIpTiOnFAKE"
    assert refund.identity["payment"] == "stripe:in_1PSuBsCrIpTiOnFAKE"


def test_charge_refunded_in_full_is_a_refund_of_the_payment():
    d = _one(_signed("stripe_charge.refunded.json"))
    assert d.event_id == "stripe:evt_3PAbCdEfGhIjKlMn0rEfUnDd"
    p = d.properties
    assert (p.kind, p.amount, p.currency, p.refund_of, p.payment_id) == (
        "refund", Decimal("49.90"), "USD", PI, "evt_3PAbCdEfGhIjKlMn0rEfUnDd")
    assert d.identity == {"email": "buyer@example.com", "phone": "+77011234567",
                          "crm_contact": "stripe:cus_QAbCdEfGhIjKlM", "payment": f"stripe:{PI}", "order": "ORD-10492"}
    assert d.timestamp == _at(1717600000)


def test_a_partial_refund_counts_only_what_this_event_refunded():
    d = _one(_signed("stripe_charge.refunded_partial.json"))
    assert d.properties.amount == Decimal("20.00")  # amount_refunded 3000 - previously 1000, in cents
    assert d.event_id == "stripe:evt_3PAbCdEfGhIjKlMn0pArTiAl" and d.properties.kind == "refund"


def test_without_previous_attributes_the_cumulative_amount_is_the_refund():
    event = orjson.loads(fixture_bytes("stripe_charge.refunded_partial.json"))
    del event["data"]["previous_attributes"]
    body = orjson.dumps(event)
    d = _one(_map(body, _header(body, VECTOR_T, SECRET), _at(VECTOR_T)))
    assert d.properties.amount == Decimal("30.00")


def test_a_refund_event_that_refunded_nothing_new_is_ignored():
    event = orjson.loads(fixture_bytes("stripe_charge.refunded_partial.json"))
    event["data"]["previous_attributes"]["amount_refunded"] = 3000
    body = orjson.dumps(event)
    out = _map(body, _header(body, VECTOR_T, SECRET), _at(VECTOR_T))
    assert isinstance(out, Accepted) and out.drafts == () and "nothing newly refunded" in out.ignored


def test_async_payment_succeeded_takes_metadata_ids_over_client_reference_id():
    d = _one(_signed("stripe_checkout.session.async_payment_succeeded.json"))
    assert d.event_id == "stripe:evt_1PBsEpAaSyNcFAKE0000asyn"
    assert d.properties.payment_id == "pi_3PBsEpAaSyNcFAKE0sEpA123"
    assert d.properties.amount == Decimal("120.00") and d.properties.currency == "EUR"
    assert d.properties.deal_id == "amocrm-lead-88123"
    assert d.anonymous_id == "anon_0b6e5f7a-2c1d-4e3f-8a9b-7c6d5e4f3a2b" and d.user_id == "u-20931"
    assert d.identity == {"email": "Buyer.Two@Example.com", "payment": "stripe:pi_3PBsEpAaSyNcFAKE0sEpA123",
                          "deal": "amocrm-lead-88123"}


def test_client_reference_id_meaning_is_configurable():
    event = orjson.loads(fixture_bytes("stripe_checkout.session.completed.json"))
    event["data"]["object"]["client_reference_id"] = "ORD-777"
    body = orjson.dumps(event)
    header = _header(body, VECTOR_T, SECRET)
    as_order = _one(_map(body, header, _at(VECTOR_T), {"signing_secrets": [SECRET], "client_reference_id": "order"}))
    assert as_order.anonymous_id is None and as_order.identity["order"] == "ORD-10492"  # metadata wins
    event["data"]["object"]["metadata"] = {}
    body = orjson.dumps(event)
    header = _header(body, VECTOR_T, SECRET)
    as_order = _one(_map(body, header, _at(VECTOR_T), {"signing_secrets": [SECRET], "client_reference_id": "order"}))
    assert as_order.identity["order"] == "ORD-777" and as_order.properties.order_id == "ORD-777"
    as_user = _one(_map(body, header, _at(VECTOR_T), {"signing_secrets": [SECRET], "client_reference_id": "user_id"}))
    assert as_user.user_id == "ORD-777" and as_user.anonymous_id is None
    ignored = _one(_map(body, header, _at(VECTOR_T), {"signing_secrets": [SECRET], "client_reference_id": "ignore"}))
    assert ignored.anonymous_id is None and ignored.user_id is None and "order" not in ignored.identity
    bad = _map(body, header, _at(VECTOR_T), {"signing_secrets": [SECRET], "client_reference_id": "cart"})
    assert isinstance(bad, Refused) and "client_reference_id" in bad.detail


def test_zero_decimal_currencies_are_not_divided():
    d = _one(_signed("stripe_payment_intent.succeeded_jpy.json"))
    assert d.properties.amount == Decimal("5000") and d.properties.currency == "JPY"
    assert d.identity == {"email": "tanaka@example.com", "phone": "+81 3-1234-5678",
                          "crm_contact": "stripe:cus_QJpYeNFAKEcust", "payment": "stripe:pi_3PCjPyYeNFAKE0000000jpyA",
                          "order": "JP-771"}
    assert d.anonymous_id == "anon_5d1f0c2e-8f3a-4b6c-9d7e-1a2b3c4d5e6f"
    assert d.campaign == {"source": "yandex", "medium": "cpc"}


@pytest.mark.parametrize("currency, minor, major", [
    ("kzt", 1500000, "15000.00"), ("rub", 99, "0.99"), ("krw", 12000, "12000"), ("kwd", 12340, "12.340"),
    ("usd", 0, None)])
def test_minor_units_to_major(currency, minor, major):
    event = orjson.loads(fixture_bytes("stripe_payment_intent.succeeded.json"))
    event["data"]["object"].update(currency=currency, amount=minor, amount_received=minor)
    body = orjson.dumps(event)
    out = _map(body, _header(body, VECTOR_T, SECRET), _at(VECTOR_T))
    if major is None:
        assert isinstance(out, Accepted) and out.drafts == () and "amount_received is 0" in out.ignored
    else:
        d = _one(out)
        assert d.properties.amount == Decimal(major) and d.properties.currency == currency.upper()


def test_an_unpaid_session_and_other_event_types_are_acknowledged_but_not_counted():
    unpaid = _signed("stripe_checkout.session.completed_unpaid.json")
    assert isinstance(unpaid, Accepted) and unpaid.drafts == () and unpaid.reply.status == 200
    assert "unpaid" in unpaid.ignored and "async_payment_succeeded" in unpaid.ignored
    other = _signed("stripe_customer.created.json")
    assert isinstance(other, Accepted) and other.drafts == () and "customer.created is not counted" in other.ignored
    event = orjson.loads(fixture_bytes("stripe_checkout.session.completed.json"))
    event["data"]["object"]["payment_status"] = "no_payment_required"
    body = orjson.dumps(event)
    free = _map(body, _header(body, VECTOR_T, SECRET), _at(VECTOR_T))
    assert isinstance(free, Accepted) and free.drafts == () and "no_payment_required" in free.ignored


@pytest.mark.parametrize("mutate, expect", [
    (lambda o: o.update(amount_total="49.90"), "amount_total must be an integer"),
    (lambda o: o.update(amount_total=-1), "amount_total must not be negative"),
    (lambda o: o.update(currency=None), "currency must be a string"),
    (lambda o: o.update(currency="dollars"), "currency"),
])
def test_a_signed_but_malformed_payment_is_refused_with_the_field(mutate, expect):
    event = orjson.loads(fixture_bytes("stripe_checkout.session.completed.json"))
    mutate(event["data"]["object"])
    body = orjson.dumps(event)
    out = _map(body, _header(body, VECTOR_T, SECRET), _at(VECTOR_T))
    assert isinstance(out, Refused) and out.reason == "schema_violation" and expect in out.detail
    assert out.detail.startswith("stripe: checkout.session.completed evt_1PAbCdEfGhIjKlMnOpQrStUv")


def test_every_draft_becomes_an_envelope_with_hashed_contacts():
    rules = IngestRules(Hasher(b"k" * 32))
    names = ["stripe_checkout.session.completed.json", "stripe_payment_intent.succeeded.json",
             "stripe_charge.refunded.json", "stripe_charge.refunded_partial.json",
             "stripe_checkout.session.async_payment_succeeded.json", "stripe_payment_intent.succeeded_jpy.json"]
    for name in names:
        d = _one(_signed(name))
        env = envelope_of_draft(d, "shop", _at(VECTOR_T + 10**7), rules)
        assert isinstance(env, Envelope), (name, env)
        assert env.ids["email"].startswith("h_") and "@" not in env.ids["email"]
        assert env.ids["payment"].startswith("stripe:pi_")
        raw = env.to_bytes().decode()
        assert d.identity["email"] not in raw and d.identity.get("phone", "@@") not in raw


# --- never raises --------------------------------------------------------------------------------

def _dumps(value) -> bytes:
    return json.dumps(value).encode()  # the stdlib writes any integer (orjson stops at 64 bits)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
_event_like = st.fixed_dictionaries({
    "id": st.one_of(st.just("evt_x"), _json),
    "type": st.sampled_from(["checkout.session.completed", "checkout.session.async_payment_succeeded",
                             "payment_intent.succeeded", "charge.refunded", "x"]) | _json,
    "created": st.one_of(st.integers(), _json),
    "data": st.fixed_dictionaries({"object": st.dictionaries(st.sampled_from(
        ["id", "amount", "amount_total", "amount_received", "amount_refunded", "currency", "payment_status", "metadata",
         "customer", "customer_details", "payment_intent", "billing_details", "client_reference_id", "invoice",
         "shipping"]),
        _json | st.integers(), max_size=10), "previous_attributes": _json}) | _json,
})


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200), _json.map(_dumps), _event_like.map(_dumps)),
       st.sampled_from([{"signing_secrets": [SECRET]}, {"signing_secrets": [SECRET], "client_reference_id": "order"},
                        {"signing_secrets": [SECRET], "tolerance_s": "x"}, {}]),
       st.booleans())
def test_any_body_gives_accepted_or_refused_never_an_exception(body, config, sign):
    header = _header(body, VECTOR_T, SECRET) if sign else "t=1,v1=00"
    out = _map(body, header, _at(VECTOR_T), config)
    assert isinstance(out, (Accepted, Refused))


@given(st.text(max_size=100))
def test_any_header_gives_accepted_or_refused(header):
    out = _map(b"{}", header, _at(VECTOR_T))
    assert isinstance(out, Refused) and out.reason in ("bad_signature", "stale_signature")


# --- through the webhook route -------------------------------------------------------------------

class _Projects:
    def __init__(self, project: Project):
        self.project = project

    async def by_webhook_secret(self, key: str):
        return self.project if key == "whs_t" else None


async def test_through_the_route_a_wrong_or_301_s_old_signature_is_400_and_nothing_is_stored():
    published: list[Envelope] = []

    async def publish(topic, records):
        published.extend(Envelope.from_bytes(v) for _, v in records)

    async def report(name, project, query):
        raise LookupError(name)

    project = Project("shop", "Shop", vendor_config={"stripe": {"signing_secrets": [SECRET]}})
    app = create_app(CollectorConfig(pii_key=b"k" * 32), _Projects(project), publish, report)
    body = fixture_bytes("stripe_checkout.session.completed.json")
    now = int(time.time())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for header, reason in ((_header(body, now, "whsec_wrong_FAKE"), "bad_signature"),
                               (_header(body, now - 301, SECRET), "stale_signature")):
            r = await client.post("/webhooks/stripe/whs_t", content=body, headers={"Stripe-Signature": header})
            assert (r.status_code, r.json()["reason"]) == (400, reason)
        assert published == []
        good = {"Stripe-Signature": _header(body, now, SECRET)}
        r = await client.post("/webhooks/stripe/whs_t", content=body, headers=good)
        assert r.status_code == 200, r.text
    (env,) = published
    assert env.event_id == f"stripe:{SESSION_EVT}" and env.properties["amount"] == "49.90"
    assert env.anonymous_id == ANON
    assert env.ids["crm_contact"] == "stripe:cus_QAbCdEfGhIjKlM" and env.ids["phone"].startswith("h_")
