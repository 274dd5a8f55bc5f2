from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import parse_qsl, urlencode

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.ingest import IngestRules, Refusal, envelope_of_draft
from collector.privacy import Hasher
from collector.vendors.base import Accepted, Refused
from collector.vendors.bitrix24 import deal_change_of, deal_draft_of, map_request, stage_kind_of
from schemas.envelope import TRACK
from schemas.families import DEAL
from schemas.reasons import RejectReason

from .conftest import NOW, fixture_bytes, vendor_request, check_result

APP_TOKEN = "51856fefc120afa4b628cc82d3935cce"  # the token in the shared ONCRMDEAL* examples
ROBOT_TOKEN = "rb_9f2c4e1a7d"  # the token in our robot fixture
CONFIG = {"application_token": APP_TOKEN, "robot_token": ROBOT_TOKEN}
RULES = IngestRules(Hasher(b"k" * 32))


def _event(body: bytes, config: dict | None = None) -> Accepted | Refused:
    return map_request(vendor_request("bitrix24", body, {"Content-Type": "application/x-www-form-urlencoded"},
                                      CONFIG if config is None else config))


def _robot(query: dict[str, str], body: bytes = b"", config: dict | None = None) -> Accepted | Refused:
    return map_request(vendor_request("bitrix24", body, {"Content-Type": "application/x-www-form-urlencoded"},
                                      CONFIG if config is None else config, query=query))


def _robot_query(**changes: str | None) -> dict[str, str]:
    query = dict(parse_qsl(fixture_bytes("bitrix24_robot_query.txt").decode(), keep_blank_values=True))
    query.update({k: v for k, v in changes.items() if v is not None})
    return {k: v for k, v in query.items() if changes.get(k, "") is not None}


# --- (a) event handlers -----------------------------------------------------------------------


@pytest.mark.parametrize("name, change, ts", [("bitrix24_ONCRMDEALADD.txt", "add", 1736405700),
                                              ("bitrix24_ONCRMDEALUPDATE.txt", "update", 1736405807)])
def test_deal_events_become_change_notices(name, change, ts):
    out = _event(fixture_bytes(name))
    assert isinstance(out, Accepted) and out.ignored == ""
    (d,) = out.drafts
    event = name.removeprefix("bitrix24_").removesuffix(".txt").lower()
    assert d.schema == TRACK and d.event == "crm_deal_changed"
    assert d.event_id == f"bitrix24:a223c6b3710f85df22e9377d6c4f7553:deal:759:{event}:{ts}"
    assert d.identity == {"deal": "b24:759"} and d.timestamp == datetime.fromtimestamp(ts, UTC)
    assert d.properties.model_dump() == {"crm": "bitrix24", "deal_id": "759", "change": change,
                                         "domain": "example.bitrix24.kz"}
    env = envelope_of_draft(d, "shop", NOW, RULES)
    assert not isinstance(env, Refusal) and env.type == "track" and env.event == "crm_deal_changed"
    assert env.ids == {"deal": "b24:759"} and APP_TOKEN not in env.to_bytes().decode()


def test_other_events_are_accepted_and_ignored():
    out = _event(fixture_bytes("bitrix24_ONCRMCONTACTADD.txt"))
    assert isinstance(out, Accepted) and out.drafts == ()
    assert "'ONCRMCONTACTADD' is not mapped" in out.ignored


@pytest.mark.parametrize("config, detail, reason", [
    ({"application_token": "another-token"}, "auth[application_token] does not match", RejectReason.bad_signature),
    ({"robot_token": ROBOT_TOKEN}, "application_token is not configured", RejectReason.bad_signature),
])
def test_event_with_a_wrong_or_unconfigured_token_is_refused(config, detail, reason):
    out = _event(fixture_bytes("bitrix24_ONCRMDEALUPDATE.txt"), config)
    assert isinstance(out, Refused) and out.reason == reason and out.status == 401 and detail in out.detail
    assert APP_TOKEN not in out.detail


def test_event_without_a_token_or_with_a_bad_deal_id_is_refused():
    no_token = _event(b"event=ONCRMDEALUPDATE&data[FIELDS][ID]=759")
    assert isinstance(no_token, Refused) and no_token.status == 401 and "is missing" in no_token.detail
    base = f"event=ONCRMDEALUPDATE&auth[application_token]={APP_TOKEN}"
    for body, detail in ((base, "data[FIELDS][ID] is missing"),
                         (base + "&data[FIELDS][ID]=DEAL_7", "data[FIELDS][ID] 'DEAL_7' is not a numeric id"),
                         (base + "&data[FIELDS][ID]=7&ts=soon", "ts 'soon' is not unix seconds")):
        out = _event(body.encode())
        assert isinstance(out, Refused) and out.reason == RejectReason.schema_violation and detail in out.detail
    (d,) = _event((base + "&data[FIELDS][ID]=7").encode()).drafts  # no ts, no auth[member_id]: still a notice
    assert d.timestamp == NOW and d.event_id == "bitrix24:-:deal:7:oncrmdealupdate"


# --- (b) robots -------------------------------------------------------------------------------


def test_robot_call_maps_to_a_full_deal_change():
    out = _robot(_robot_query())
    assert isinstance(out, Accepted)
    (d,) = out.drafts
    assert d.schema == DEAL and d.event_id == f"bitrix24:deal:759:stage:WON:{int(NOW.timestamp())}"
    p = d.properties
    assert (p.crm, p.deal_id, p.stage, p.stage_kind, p.pipeline) == ("bitrix24", "759", "WON", "won", "0")
    assert p.amount == Decimal("15000.00") and p.currency == "KZT" and p.previous_stage is None
    assert d.identity == {"deal": "b24:759", "crm_contact": "b24:84", "phone": "+77011234567",
                          "email": "buyer@example.com"}
    assert d.campaign == {"source": "google", "medium": "cpc", "campaign": "spring_sale"}
    assert d.timestamp == NOW
    env = envelope_of_draft(d, "shop", NOW, RULES)
    assert not isinstance(env, Refusal) and env.ids["phone"].startswith("h_") and "+77011234567" not in env.to_bytes().decode()


def test_business_process_body_carries_the_deal_id():
    query = _robot_query(deal_id=None)
    out = _robot(query, fixture_bytes("bitrix24_robot_bizproc.txt"))
    assert isinstance(out, Accepted) and out.drafts[0].properties.deal_id == "760"
    assert out.drafts[0].identity["deal"] == "b24:760"
    both = _robot(_robot_query(), fixture_bytes("bitrix24_robot_bizproc.txt"))  # an explicit deal_id wins
    assert both.drafts[0].properties.deal_id == "759"
    form_only = _robot({}, urlencode(_robot_query(deal_id=None)).encode() + b"&" +
                       fixture_bytes("bitrix24_robot_bizproc.txt"))  # everything in a POST form
    assert form_only.drafts[0].properties.deal_id == "760" and form_only.drafts[0].properties.stage == "WON"


@pytest.mark.parametrize("changes, kind, pipeline", [
    ({"stage": "C3:PREPARATION", "semantic": "P", "pipeline": ""}, "open", "3"),
    ({"stage": "C3:UC_8Z1K2Q", "semantic": "F"}, "lost", "0"),
    ({"stage": "C3:WON", "semantic": "{{STAGE_SEMANTIC_ID}}", "pipeline": "{{CATEGORY_ID}}"}, "won", "3"),
    ({"stage": "APOLOGY", "semantic": ""}, "lost", "0"),
    ({"stage": "NEW", "semantic": ""}, "open", "0"),
    ({"stage": "NEW", "semantic": "P", "stage_kind": "lead"}, "lead", "0"),
])
def test_robot_stage_kinds(changes, kind, pipeline):
    (d,) = _robot(_robot_query(**changes)).drafts
    assert d.properties.stage == changes["stage"] and d.properties.stage_kind == kind and d.properties.pipeline == pipeline


def test_config_stages_come_before_the_semantic_id():
    config = {**CONFIG, "stages": {"NEW": "lead", "C1:UC_PAID": "won"}}
    (d,) = _robot(_robot_query(stage="NEW", semantic="P"), config=config).drafts
    assert d.properties.stage_kind == "lead"
    (d,) = _robot(_robot_query(stage="C1:UC_PAID", semantic="P", pipeline="1"), config=config).drafts
    assert d.properties.stage_kind == "won" and d.properties.pipeline == "1"


@pytest.mark.parametrize("amount, currency, expected, expected_currency", [
    ("15 000,50", "KZT", Decimal("15000.50"), "KZT"),
    ("1,500.25", "usd", Decimal("1500.25"), "USD"),
    ("15000.00|RUB", "", Decimal("15000.00"), "RUB"),
    ("15000", "{{CURRENCY_ID}}", Decimal(15000), "KZT"),
    ("", "KZT", None, None),
    ("{{OPPORTUNITY}}", "KZT", None, None),
])
def test_robot_amounts(amount, currency, expected, expected_currency):
    (d,) = _robot(_robot_query(amount=amount, currency=currency)).drafts
    assert d.properties.amount == expected and d.properties.currency == expected_currency


def test_robot_contact_fields_as_bitrix_prints_them():
    (d,) = _robot(_robot_query(phone="+7 701 123 45 67 (Рабочий), +7 702 000 00 00", email="{{CONTACT.EMAIL}}",
                               contact_id="0")).drafts
    assert d.identity == {"deal": "b24:759", "phone": "+7 701 123 45 67"}
    (d,) = _robot(_robot_query(anonymous_id="anon-5f1c2e", user_id="u-42")).drafts
    assert (d.anonymous_id, d.user_id) == ("anon-5f1c2e", "u-42")


@pytest.mark.parametrize("changes, detail", [
    ({"deal_id": ""}, "deal_id is required"),
    ({"deal_id": "{{ID}}"}, "deal_id is required"),
    ({"deal_id": "D759"}, "deal_id 'D759' is not a numeric id"),
    ({"stage": ""}, "stage is required"),
    ({"amount": "15k"}, "amount '15k' is not a non-negative amount"),
    ({"amount": "-5"}, "amount '-5' is not a non-negative amount"),
    ({"currency": "тенге"}, "currency 'ТЕНГЕ' is not a 3-letter ISO code"),
    ({"semantic": "X", "stage": "UC_1"}, "semantic 'X' is not a STAGE_SEMANTIC_ID"),
    ({"stage_kind": "paid"}, "stage_kind 'paid' is not one of lead, open, won, lost"),
    ({"contact_id": "abc"}, "contact_id 'abc' is not a numeric id"),
])
def test_malformed_robot_calls_are_refused_with_the_field(changes, detail):
    out = _robot(_robot_query(**changes))
    assert isinstance(out, Refused) and out.reason == RejectReason.schema_violation and out.status == 400
    assert out.detail.startswith("bitrix24 robot: ") and detail in out.detail


def test_robot_token_is_required_and_checked():
    wrong = _robot(_robot_query(token="guess"))
    assert isinstance(wrong, Refused) and wrong.reason == RejectReason.bad_signature and wrong.status == 401
    assert "does not match the configured robot_token" in wrong.detail and ROBOT_TOKEN not in wrong.detail
    unconfigured = _robot(_robot_query(), config={"application_token": APP_TOKEN})
    assert isinstance(unconfigured, Refused) and "robot_token is not configured" in unconfigured.detail
    missing = _robot({k: v for k, v in _robot_query().items() if k != "token"})
    assert isinstance(missing, Refused) and missing.status == 401 and "neither an event handler call" in missing.detail


def test_bad_stage_settings_are_refused():
    out = _robot(_robot_query(), config={**CONFIG, "stages": {"WON": "paid"}})
    assert isinstance(out, Refused) and "config stages must be an object" in out.detail


# --- crm.deal.get results (for the follow-up fetch) ---------------------------------------------


def test_deal_change_of_the_shared_crm_deal_get_example():
    response = orjson.loads(fixture_bytes("bitrix24_crm.deal.get.json"))
    change = deal_change_of(response["result"])
    assert change.model_dump() == {"crm": "bitrix24", "deal_id": "759", "stage": "WON", "stage_kind": "won",
                                   "pipeline": "0", "amount": Decimal("15000.00"), "currency": "KZT",
                                   "previous_stage": None}
    assert deal_change_of(response) == change  # the whole response works too


def test_deal_change_of_semantics_stages_and_defaults():
    deal = orjson.loads(fixture_bytes("bitrix24_crm.deal.get.json"))["result"]
    lost = deal_change_of({**deal, "STAGE_ID": "C2:UC_REFUSED", "STAGE_SEMANTIC_ID": "F", "CATEGORY_ID": "2"})
    assert (lost.stage_kind, lost.pipeline) == ("lost", "2")
    open_ = deal_change_of({**deal, "STAGE_ID": "NEW", "STAGE_SEMANTIC_ID": "P", "CURRENCY_ID": None,
                            "OPPORTUNITY": 2500.5}, currency_default="RUB")
    assert (open_.stage_kind, open_.amount, open_.currency) == ("open", Decimal("2500.5"), "RUB")
    lead = deal_change_of({**deal, "STAGE_ID": "NEW", "STAGE_SEMANTIC_ID": "P"}, stages={"NEW": "lead"})
    assert lead.stage_kind == "lead"
    empty = deal_change_of({**deal, "OPPORTUNITY": None})
    assert empty.amount is None and empty.currency is None
    for broken, message in (({**deal, "ID": None}, "not a numeric deal id"), ({**deal, "STAGE_ID": ""}, "STAGE_ID"),
                            ({**deal, "OPPORTUNITY": "lots"}, "amount 'lots'"),
                            ({**deal, "STAGE_SEMANTIC_ID": "Q"}, "STAGE_SEMANTIC_ID")):
        with pytest.raises(ValueError, match=message):
            deal_change_of(broken)
    with pytest.raises(ValueError, match="config stages"):
        deal_change_of(deal, stages={"WON": "paid"})


def test_deal_draft_of_the_shared_example():
    deal = orjson.loads(fixture_bytes("bitrix24_crm.deal.get.json"))
    d = deal_draft_of(deal, {"fields": {"UF_CRM_1721244482250": "anonymous_id"}}, NOW)
    moved = datetime(2024, 5, 29, 16, 5, tzinfo=timezone(timedelta(hours=6)))
    assert d.schema == DEAL and d.timestamp == moved
    assert d.event_id == f"bitrix24:deal:759:stage:WON:{int(moved.timestamp())}"
    assert d.identity == {"deal": "b24:759", "crm_contact": "b24:84"}
    assert d.campaign == {"source": "google", "medium": "cpc", "campaign": "spring_sale"}
    assert d.anonymous_id == "GA1.2.1234567890.1717000000" and d.properties.stage_kind == "won"
    with pytest.raises(ValueError, match="MOVED_TIME"):
        deal_draft_of({**deal["result"], "MOVED_TIME": "0001-01-01T00:00:00+05:00"}, {}, NOW)


def test_stage_kind_of_order():
    assert stage_kind_of("WON", "F", {}, None) == "lost"  # the semantic id beats the stage name
    assert stage_kind_of("C7:LOSE", None, {}, None) == "lost"
    assert stage_kind_of("C7:LOSE", None, {"C7:LOSE": "open"}, None) == "open"
    assert stage_kind_of("C7:LOSE", "F", {"C7:LOSE": "open"}, "WON") == "won"


# --- never raises -----------------------------------------------------------------------------


_check = check_result


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(body):
    _check(_event(body))


_PARAM = st.one_of(st.text(max_size=20), st.integers(-5, 10**12).map(str),
                   st.sampled_from(["", "WON", "C1:LOSE", "S", "F", "P", "15 000,00", "1|KZT", "{{ID}}", "0", "kzt"]))


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(["deal_id", "stage", "semantic", "stage_kind", "pipeline", "amount", "currency",
                                        "contact_id", "phone", "email", "utm_source", "anonymous_id", "user_id",
                                        "previous_stage", "document_id[2]", "event"]), _PARAM),
       st.booleans())
def test_random_robot_params_never_raise(params, in_body):
    params = {**params, "token": ROBOT_TOKEN}
    if in_body:
        _check(_robot({}, urlencode(params).encode()))
    else:
        _check(_robot(params))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["event", "data[FIELDS][ID]", "ts", "auth[domain]", "auth[member_id]",
                                        "data[FIELDS]", "auth"]), _PARAM))
def test_random_event_forms_never_raise(fields):
    body = urlencode({**fields, "auth[application_token]": APP_TOKEN}).encode()
    _check(_event(body))


# --- through the webhook route ------------------------------------------------------------------


async def test_robot_and_event_through_the_webhook_route():
    import httpx

    from collector.app import create_app
    from collector.ports import CollectorConfig
    from schemas.project import Project

    from ..test_app import FakeProjects, Published, _report

    project = Project("shop", "Shop", vendor_config={"bitrix24": CONFIG})

    class Projects(FakeProjects):
        async def by_webhook_secret(self, secret):
            return project if secret == "whs_b24" else None

    published = Published()
    app = create_app(CollectorConfig(pii_key=b"k" * 32), Projects(), published, _report)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        query = fixture_bytes("bitrix24_robot_query.txt").decode()
        robot = await client.post(f"/webhooks/bitrix24/whs_b24?{query}",
                                  content=fixture_bytes("bitrix24_robot_bizproc.txt"), headers=form)
        assert robot.status_code == 200, robot.text
        event = await client.post("/webhooks/bitrix24/whs_b24", content=fixture_bytes("bitrix24_ONCRMDEALADD.txt"),
                                  headers=form)
        assert event.status_code == 200, event.text
        forged = await client.post("/webhooks/bitrix24/whs_b24?" + query.replace(ROBOT_TOKEN, "guess"), headers=form)
        assert forged.status_code == 401 and forged.json()["reason"] == "bad_signature"
    (_, deal), (_, notice) = published
    assert (deal.type, deal.properties["deal_id"], deal.properties["stage_kind"], deal.properties["amount"]) == \
        ("deal", "759", "won", "15000.00")
    assert deal.ids["deal"] == "b24:759" and deal.ids["crm_contact"] == "b24:84" and deal.ids["phone"].startswith("h_")
    assert (notice.type, notice.event, notice.ids) == ("track", "crm_deal_changed", {"deal": "b24:759"})
    assert b"buyer@example.com" not in deal.to_bytes() and ROBOT_TOKEN.encode() not in deal.to_bytes()
