from decimal import Decimal

import orjson

from collector.vendors.base import Accepted, Refused
from collector.vendors.payment import map_request
from collector.vendors.signing import hmac_sha256
from schemas.families import PAYMENT

from .conftest import vendor_request

SECRET = "pay-secret"
BODY = orjson.dumps({"payment_id": "ord-1001-pay", "kind": "payment", "amount": "150000.00", "currency": "kzt",
                     "paid_at": "2026-11-20T10:00:00+05:00", "order_id": "1001",
                     "customer": {"phone": "+7 701 123 45 67", "anonymous_id": "anon-1"}})


def _signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-Moneytrail-Signature": "sha256=" + hmac_sha256(secret, body).hex()}


def test_a_signed_payment_maps_to_the_payment_family():
    out = map_request(vendor_request("payment", BODY, _signed(BODY), {"secret": SECRET}))
    assert isinstance(out, Accepted)
    (d,) = out.drafts
    assert d.schema == PAYMENT and d.event_id == "payment:payment:ord-1001-pay"
    assert d.properties.amount == Decimal("150000.00") and d.properties.currency == "KZT"
    assert d.identity == {"payment": "ord-1001-pay", "phone": "+7 701 123 45 67", "order": "1001"}
    assert d.anonymous_id == "anon-1" and d.timestamp.utcoffset().total_seconds() == 5 * 3600


def test_unsigned_wrongly_signed_or_unconfigured_is_refused():
    assert map_request(vendor_request("payment", BODY, {}, {"secret": SECRET})).status == 401
    bad = map_request(vendor_request("payment", BODY, _signed(BODY, "other"), {"secret": SECRET}))
    assert isinstance(bad, Refused) and bad.reason == "bad_signature"
    unconfigured = map_request(vendor_request("payment", BODY, _signed(BODY), {}))
    assert unconfigured.status == 401 and "not configured" in unconfigured.detail


def test_bad_amounts_are_refused_with_the_field():
    body = orjson.dumps({"payments": [{"payment_id": "p1", "amount": "-5", "currency": "KZT"}]})
    out = map_request(vendor_request("payment", body, _signed(body), {"secret": SECRET}))
    assert isinstance(out, Refused) and out.detail.startswith("payments[0]: amount")


def test_a_numeric_secret_and_an_out_of_range_date_do_not_crash():
    from datetime import datetime, timezone

    from collector.ingest import IngestRules, Refusal, envelope_of_draft
    from collector.privacy import Hasher

    body = orjson.dumps({"payment_id": "p", "amount": "1", "currency": "KZT", "paid_at": "0001-01-01T00:00:00+05:00"})
    out = map_request(vendor_request("payment", body, _signed(body, "12345"), {"secret": 12345}))
    assert isinstance(out, Accepted)
    env = envelope_of_draft(out.drafts[0], "shop", datetime.now(timezone.utc), IngestRules(Hasher(b"k" * 32)))
    assert isinstance(env, Refusal) and env.reason == "time_out_of_range"
