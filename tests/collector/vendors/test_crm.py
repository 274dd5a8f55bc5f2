import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.ingest import IngestRules, Refusal, envelope_of_draft
from collector.privacy import Hasher
from collector.vendors.base import Accepted, Refused
from collector.vendors.crm import map_request
from collector.vendors.signing import hmac_sha256
from schemas.families import DEAL
from schemas.reasons import RejectReason

from .conftest import NOW, fixture_bytes, vendor_request, check_result

SECRET = "crm-secret"
RULES = IngestRules(Hasher(b"k" * 32))


def _signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-Moneytrail-Signature": "sha256=" + hmac_sha256(secret, body).hex()}


def _map(body: bytes, config: dict | None = None) -> Accepted | Refused:
    return map_request(vendor_request("crm", body, _signed(body), {"secret": SECRET} if config is None else config))


def _one(item: dict) -> Accepted | Refused:
    return _map(orjson.dumps(item))


MINIMAL = {"deal_id": "D-1", "stage": "won", "stage_kind": "won"}


def test_a_won_deal_from_1c():
    out = _map(fixture_bytes("crm_deal_won.json"))
    assert isinstance(out, Accepted)
    (d,) = out.drafts
    changed = datetime(2026, 11, 20, 10, 0, tzinfo=timezone(timedelta(hours=5)))
    assert d.schema == DEAL and d.event_id == f"crm:1c:deal:D-1001:stage:Оплачен:{int(changed.timestamp())}"
    assert d.properties.model_dump() == {"crm": "1c", "deal_id": "D-1001", "stage": "Оплачен", "stage_kind": "won",
                                         "pipeline": "retail", "amount": Decimal("150000.00"), "currency": "KZT",
                                         "previous_stage": "Счёт выставлен"}
    assert d.timestamp == changed
    assert d.identity == {"deal": "D-1001", "crm_contact": "C-77", "phone": "+7 701 123 45 67",
                          "email": "buyer@example.com"}
    assert (d.anonymous_id, d.user_id) == ("anon-5f1c2e", "u-42")
    assert d.campaign == {"source": "google", "medium": "cpc", "campaign": "spring_sale"}
    env = envelope_of_draft(d, "shop", NOW, RULES)
    assert not isinstance(env, Refusal) and env.ids["phone"].startswith("h_") and env.ids["user"] == "u-42"
    assert "buyer@example.com" not in env.to_bytes().decode()


def test_a_batch_of_deal_changes():
    out = _map(fixture_bytes("crm_deals_batch.json"))
    assert isinstance(out, Accepted)
    lead, lost = out.drafts
    assert lead.event_id == "crm:generic:deal:2001:stage:new:1763625600"
    assert lead.properties.stage_kind == "lead" and lead.properties.amount is None
    assert lead.timestamp == datetime.fromtimestamp(1763625600, UTC)
    assert lead.identity == {"deal": "2001", "phone": "87011234567"}
    assert lost.event_id == "crm:generic:deal:2002:stage:lost" and lost.timestamp == NOW
    assert lost.properties.amount == Decimal("7500.5") and lost.properties.currency == "RUB"
    assert lost.properties.previous_stage == "negotiation" and lost.identity == {"deal": "2002"}


def test_unsigned_wrongly_signed_or_unconfigured_is_refused():
    body = orjson.dumps(MINIMAL)
    unsigned = map_request(vendor_request("crm", body, {}, {"secret": SECRET}))
    assert isinstance(unsigned, Refused) and unsigned.status == 401 and unsigned.reason == RejectReason.bad_signature
    wrong = map_request(vendor_request("crm", body, _signed(body, "other"), {"secret": SECRET}))
    assert isinstance(wrong, Refused) and wrong.reason == RejectReason.bad_signature
    tampered = map_request(vendor_request("crm", body + b" ", _signed(body), {"secret": SECRET}))
    assert isinstance(tampered, Refused) and tampered.reason == RejectReason.bad_signature
    unconfigured = _map(body, {})
    assert isinstance(unconfigured, Refused) and unconfigured.status == 401 and "not configured" in unconfigured.detail
    numeric = map_request(vendor_request("crm", body, _signed(body, "12345"), {"secret": 12345}))  # CLI stores JSON
    assert isinstance(numeric, Accepted)


@pytest.mark.parametrize("item, detail", [
    ({**MINIMAL, "deal_id": ""}, "deal_id is required"),
    ({**MINIMAL, "deal_id": True}, "deal_id is required"),
    ({**MINIMAL, "stage": None}, "stage is required"),
    ({"deal_id": "D-1", "stage": "won"}, "stage_kind is required"),
    ({**MINIMAL, "stage_kind": "paid"}, "stage_kind: Input should be 'lead', 'open', 'won' or 'lost'"),
    ({**MINIMAL, "amount": "100"}, "currency is required when amount is given"),
    ({**MINIMAL, "amount": "-5", "currency": "KZT"}, "amount: value must not be negative"),
    ({**MINIMAL, "amount": "lots", "currency": "KZT"}, "amount: "),
    ({**MINIMAL, "amount": True, "currency": "KZT"}, "amount must be a number"),
    ({**MINIMAL, "amount": "1", "currency": "tenge"}, "currency: String should match pattern"),
    ({**MINIMAL, "changed_at": "2026-11-20T10:00:00"}, "needs a UTC offset"),
    ({**MINIMAL, "changed_at": "yesterday"}, "changed_at 'yesterday' is not ISO 8601"),
    ({**MINIMAL, "changed_at": "0001-01-01T00:00:00+05:00"}, "is out of range"),
    ({**MINIMAL, "changed_at": -1}, "changed_at -1 is not unix seconds"),
    ({**MINIMAL, "changed_at": [2026]}, "changed_at must be an ISO 8601 string or unix seconds"),
    ({**MINIMAL, "contact": "C-77"}, "contact must be an object"),
    ({**MINIMAL, "campaign": ["google"]}, "campaign must be an object"),
])
def test_invalid_changes_are_refused_with_the_field(item, detail):
    out = _one(item)
    money = detail.startswith("amount: ")  # schemas.values' money rules have their own reason
    assert isinstance(out, Refused) and out.status == 400
    assert out.reason == (RejectReason.invalid_amount if money else RejectReason.schema_violation)
    assert detail in out.detail


def test_one_bad_change_refuses_the_batch_and_names_it():
    out = _one({"deals": [MINIMAL, {**MINIMAL, "stage_kind": "paid"}]})
    assert isinstance(out, Refused) and out.detail.startswith("deals[1]: stage_kind")


def test_body_shape_errors():
    for body, reason, detail in ((b"{nope", RejectReason.invalid_json, "body is not JSON"),
                                 (b"[1, 2]", RejectReason.schema_violation, "body must be a deal change object"),
                                 (b'{"deals": {"deal_id": 1}}', RejectReason.schema_violation, "body must be"),
                                 (orjson.dumps({"deals": [MINIMAL] * 1001}), RejectReason.too_large, "1001 deal changes")):
        out = _map(body)
        assert isinstance(out, Refused) and out.reason == reason and detail in out.detail


def test_optional_fields_and_defaults():
    (d,) = _one({**MINIMAL, "deal_id": 42, "amount": 1500.1, "currency": " usd ", "contact": None,
                 "campaign": {"source": "ig", "medium": "", "bogus": "x"}, "changed_at": "2026-11-20T05:00:00Z"}).drafts
    assert d.properties.deal_id == "42" and d.properties.amount == Decimal("1500.1") and d.properties.currency == "USD"
    assert d.properties.crm == "generic" and d.properties.pipeline is None and d.campaign == {"source": "ig"}
    assert d.timestamp == datetime(2026, 11, 20, 5, tzinfo=UTC) and d.identity == {"deal": "42"}


# --- never raises -----------------------------------------------------------------------------


_check = check_result


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_signed_bytes_never_raise(body):
    _check(_map(body))


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-(10**25), 10**25) |
                     st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=20)
_VALUE = st.one_of(_JSON, st.sampled_from(["won", "lead", "KZT", "2026-11-20T10:00:00+05:00", "150000.00", "1e3"]))
_MOSTLY = lambda good: st.one_of(good, good, good, _VALUE)
_CHANGE = st.fixed_dictionaries(
    {"deal_id": _MOSTLY(st.one_of(st.integers(0, 10**30), st.text(min_size=1, max_size=20))),
     "stage": _MOSTLY(st.text(min_size=1, max_size=20)),
     "stage_kind": _MOSTLY(st.sampled_from(["lead", "open", "won", "lost"]))},
    optional={"amount": _MOSTLY(st.one_of(st.decimals(allow_nan=False, allow_infinity=False).map(str),
                                          st.floats(allow_nan=False, allow_infinity=False), st.integers())),
              "currency": _MOSTLY(st.sampled_from(["KZT", "rub", " usd ", "XX"])),
              "changed_at": _MOSTLY(st.one_of(st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
                                              st.integers(-10, 10**12), st.floats(allow_nan=False))),
              "contact": _MOSTLY(st.dictionaries(st.sampled_from(["crm_contact_id", "phone", "email", "anonymous_id",
                                                                  "user_id"]), _VALUE)),
              "campaign": _MOSTLY(st.dictionaries(st.sampled_from(["source", "medium", "campaign", "x"]), _VALUE)),
              **{k: _VALUE for k in ("pipeline", "previous_stage", "crm")}})


@settings(max_examples=500, deadline=None)
@given(st.one_of(_JSON, _CHANGE, st.builds(lambda d: {"deals": d}, st.lists(_CHANGE, max_size=3))))
def test_random_signed_json_never_raises(data):
    _check(_map(json.dumps(data).encode()))  # stdlib json: integers beyond 64 bits too


async def test_through_the_webhook_route():
    import httpx

    from collector.app import create_app
    from collector.ports import CollectorConfig
    from schemas.project import Project

    from ..test_app import FakeProjects, Published, _report

    project = Project("shop", "Shop", vendor_config={"crm": {"secret": SECRET}})

    class Projects(FakeProjects):
        async def by_webhook_secret(self, secret):
            return project if secret == "whs_crm" else None

    published = Published()
    app = create_app(CollectorConfig(pii_key=b"k" * 32), Projects(), published, _report)
    body = fixture_bytes("crm_deals_batch.json")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.post("/webhooks/crm/whs_crm", content=body, headers=_signed(body))
        assert r.status_code == 200, r.text
    assert [(e.type, e.properties["stage_kind"], e.ids["deal"]) for _, e in published] == \
        [("deal", "lead", "2001"), ("deal", "lost", "2002")]
    assert published[0][1].ids["phone"].startswith("h_") and b"7011234567" not in published[0][1].to_bytes()
