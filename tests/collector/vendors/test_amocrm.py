from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.ingest import IngestRules, Refusal, envelope_of_draft
from collector.privacy import Hasher
from collector.vendors.amocrm import map_request
from collector.vendors.forms import parse_form
from collector.vendors.base import Accepted, Refused
from schemas.envelope import IDENTIFY
from schemas.families import DEAL
from schemas.reasons import RejectReason

from .conftest import NOW, fixture_bytes, vendor_request, check_result

CONFIG = {"account_id": 30000001, "subdomain": "exampleshop"}  # account_id as the CLI stores it (JSON number)
RULES = IngestRules(Hasher(b"k" * 32))


def _map(body: bytes, config: dict | None = None) -> Accepted | Refused:
    return map_request(vendor_request("amocrm", body, {"Content-Type": "application/x-www-form-urlencoded"},
                                      {"account_id": "30000001"} if config is None else config))


def _accepted(body: bytes, config: dict | None = None) -> Accepted:
    out = _map(body, config)
    assert isinstance(out, Accepted), out
    return out


def _at(secs: int) -> datetime:
    return datetime.fromtimestamp(secs, UTC)


# --- parse_form -------------------------------------------------------------------------------


def test_parse_form_nests_php_keys_in_the_order_sent():
    body = b"a%5Bb%5D%5B0%5D%5Bc%5D=1&a[b][1][c]=2&a[b][0][d]=x&top=t"
    assert parse_form(body) == {"a": {"b": {"0": {"c": "1", "d": "x"}, "1": {"c": "2"}}}, "top": "t"}
    assert list(parse_form(b"z[9]=a&z[3]=b")["z"]) == ["9", "3"]


def test_parse_form_appends_at_the_next_integer_index_like_php():
    assert parse_form(b"a[]=x&a[]=y&a[7]=z&a[]=w&a[k]=v&a[]=u") == \
        {"a": {"0": "x", "1": "y", "7": "z", "8": "w", "k": "v", "9": "u"}}
    assert parse_form(b"a[][n]=1&a[][n]=2") == {"a": {"0": {"n": "1"}, "1": {"n": "2"}}}


def test_parse_form_decodes_plus_percent_and_utf8_cyrillic():
    body = "name=%D0%A2%D0%B5%D0%BB%D0%B5%D1%84%D0%BE%D0%BD&sp=a+b%2Bc&raw=Сделка".encode()
    assert parse_form(body) == {"name": "Телефон", "sp": "a b+c", "raw": "Сделка"}


def test_parse_form_keeps_malformed_keys_flat_and_later_values_win():
    assert parse_form(b"a[b=1&c[d]e=2&[x]=3&=4&flag") == {"a[b": "1", "c[d]e": "2", "[x]": "3", "flag": ""}
    assert parse_form(b"a=1&a[b]=2") == {"a": {"b": "2"}}
    assert parse_form(b"a[b]=2&a=1") == {"a": "1"}
    assert parse_form(b"") == {} and parse_form(b"&&") == {}


def test_parse_form_is_bounded():
    deep = parse_form(b"a" + b"[x]" * 11 + b"=1")
    assert isinstance(deep, Refused) and deep.reason == RejectReason.too_deep
    assert isinstance(parse_form(b"a" + b"[x]" * 10 + b"=1"), dict)  # ten levels still parse
    many = parse_form(b"&".join(b"k%d=1" % i for i in range(30)), max_pairs=20)
    assert isinstance(many, Refused) and many.reason == RejectReason.too_large and many.status == 413
    big = parse_form(b"k=" + b"v" * 100, max_bytes=50)
    assert isinstance(big, Refused) and big.reason == RejectReason.too_large
    bad = parse_form(b"ok=1&name=%D0")
    assert isinstance(bad, Refused) and bad.reason == RejectReason.invalid_utf8 and "#1 value" in bad.detail


# --- the shared fixtures ----------------------------------------------------------------------


def test_leads_add_fixture_is_a_new_lead():
    (d,) = _accepted(fixture_bytes("amocrm_leads_add.txt"), CONFIG).drafts
    assert d.schema == DEAL and d.event_id == "amocrm:30000001:lead:31926520:add"
    p = d.properties
    assert (p.crm, p.deal_id, p.stage, p.stage_kind, p.pipeline) == ("amocrm", "31926520", "53861254", "lead", "6254262")
    assert p.amount == Decimal(15000) and p.currency == "KZT" and p.previous_stage is None
    assert d.identity == {"deal": "amocrm:31926520"} and d.timestamp == _at(1716990000)
    assert d.campaign == {} and d.anonymous_id is None


def test_leads_status_fixture_is_a_won_deal_with_its_previous_stage_and_utm():
    out = _accepted(fixture_bytes("amocrm_leads_status.txt"), CONFIG)
    (d,) = out.drafts
    assert out.ignored == ""
    assert d.schema == DEAL and d.event_id == "amocrm:30000001:lead:31926520:status:142:1717000500"
    p = d.properties
    assert (p.stage, p.stage_kind, p.previous_stage, p.pipeline) == ("142", "won", "53861254", "6254262")
    assert p.amount == Decimal(15000) and p.currency == "KZT"
    assert d.timestamp == _at(1717000500) and d.timestamp.tzinfo is not None
    assert d.identity == {"deal": "amocrm:31926520"} and d.campaign == {"source": "google"}


def test_contacts_add_fixture_links_contact_phone_email_and_deal():
    (d,) = _accepted(fixture_bytes("amocrm_contacts_add.txt"), CONFIG).drafts
    assert d.schema == IDENTIFY and d.properties is None
    assert d.event_id == "amocrm:30000001:contact:43684612:add:1716990000:lead:31926520"
    assert d.identity == {"crm_contact": "amocrm:43684612", "deal": "amocrm:31926520",
                          "phone": "+77011234567", "email": "buyer@example.com"}
    assert d.timestamp == _at(1716990000)


def test_shared_fixtures_become_envelopes_with_hashed_identity_and_no_names():
    for name in ("amocrm_leads_add.txt", "amocrm_leads_status.txt", "amocrm_contacts_add.txt"):
        for draft in _accepted(fixture_bytes(name)).drafts:
            env = envelope_of_draft(draft, "shop", NOW, RULES)
            assert not isinstance(env, Refusal), env
            assert env.ids["deal"] == "amocrm:31926520"
            assert "Test Buyer" not in env.to_bytes().decode() and "Deal #10492" not in env.to_bytes().decode()
            if draft.schema == IDENTIFY:
                assert env.type == "identify" and env.ids["phone"].startswith("h_") and env.ids["email"].startswith("h_")
                assert env.masked["phone"] == "+7701***4567"


# --- our saved payloads -----------------------------------------------------------------------


def test_one_request_with_several_entities_and_actions():
    out = _accepted(fixture_bytes("amocrm_leads_status_contacts_update.txt"),
                    {**CONFIG, "stages": {"53861257": "open"}, "fields": {"1119325": "anonymous_id"}})
    assert [d.event_id for d in out.drafts] == [
        "amocrm:30000001:lead:31926521:status:143:1717003600",
        "amocrm:30000001:lead:31926522:status:53861257:1717003700",
        "amocrm:30000001:contact:43684613:update:1717003650:lead:31926521",
        "amocrm:30000001:contact:43684613:update:1717003650:lead:31926522",
    ]
    lost, moved, c1, c2 = out.drafts
    assert (lost.properties.stage_kind, lost.properties.previous_stage, lost.properties.amount) == \
        ("lost", "53861257", Decimal(98000))
    assert moved.properties.stage_kind == "open" and moved.properties.amount is None and moved.properties.currency is None
    assert moved.campaign == {"source": "yandex", "campaign": "весна_2024"} and moved.anonymous_id == "anon-5f1c2e"
    assert c1.identity == {"crm_contact": "amocrm:43684613", "deal": "amocrm:31926521",
                           "phone": "+7 701 123 45 67", "email": "aigerim@example.com"}
    assert c2.identity == {"crm_contact": "amocrm:43684613", "deal": "amocrm:31926522", "phone": "87021234567"}
    assert "leads[update]" in out.ignored and "tasks[add]" in out.ignored and "contacts" not in out.ignored


def test_a_lead_created_already_won_also_counts_as_won():
    lead, won = _accepted(fixture_bytes("amocrm_leads_add_won.txt")).drafts
    assert lead.event_id == "amocrm:30000001:lead:31926530:add" and lead.properties.stage_kind == "lead"
    assert won.event_id == "amocrm:30000001:lead:31926530:status:142:1717010000"
    assert won.properties.stage_kind == "won" and won.properties.amount == Decimal(45500)


# --- stage mapping, money, contacts -------------------------------------------------------------


def _status_body(status: str = "142", price: str = "15000", **extra: str) -> bytes:
    fields = {"id": "7", "status_id": status, "old_status_id": "100", "price": price, "updated_at": "1717000500",
              "pipeline_id": "55", **extra}
    return urlencode({**{f"leads[status][0][{k}]": v for k, v in fields.items()}, "account[id]": "30000001",
                      "account[subdomain]": "exampleshop"}).encode()


@pytest.mark.parametrize("status, stages, kind", [
    ("142", None, "won"), ("143", None, "lost"), ("53861254", None, "open"),
    ("53861254", {"53861254": "won"}, "won"), ("142", {"142": "open"}, "open"), ("777", {"777": "lead"}, "lead"),
])
def test_stage_kind_comes_from_config_then_system_statuses(status, stages, kind):
    config = {**CONFIG, **({"stages": stages} if stages else {})}
    (d,) = _accepted(_status_body(status), config).drafts
    assert d.properties.stage == status and d.properties.stage_kind == kind


def test_price_and_currency():
    (d,) = _accepted(_status_body(price="15 000,50"), {**CONFIG, "currency": "rub"}).drafts
    assert d.properties.amount == Decimal("15000.50") and d.properties.currency == "RUB"
    (d,) = _accepted(_status_body(price="")).drafts
    assert d.properties.amount is None and d.properties.currency is None


@pytest.mark.parametrize("body, detail", [
    (_status_body(price="-5"), "leads[status][0]: price '-5' is not a non-negative amount"),
    (_status_body(price="12abc"), "leads[status][0]: price '12abc'"),
    (_status_body(status=""), "leads[status][0]: status_id is required"),
    (_status_body(status="won"), "leads[status][0]: status_id 'won' is not a numeric id"),
    (_status_body(updated_at="yesterday"), "leads[status][0]: updated_at 'yesterday' is not unix seconds"),
    (b"leads[status][0]=x&account[id]=30000001", "leads[status][0] must hold fields"),
    (b"leads[status]=x&account[id]=30000001", "leads[status] must hold entities"),
])
def test_malformed_leads_are_refused_with_the_field(body, detail):
    out = _map(body)
    assert isinstance(out, Refused) and out.reason == RejectReason.schema_violation and out.status == 400
    assert out.detail.startswith("amocrm: ") and detail in out.detail


def test_contact_with_more_phones_than_leads_gets_extra_drafts():
    c = "contacts[add][0]"
    body = urlencode({f"{c}[id]": "9", f"{c}[updated_at]": "1717000000",
                      f"{c}[custom_fields][0][code]": "PHONE", f"{c}[custom_fields][0][values][0][value]": "+77011234567",
                      f"{c}[custom_fields][0][values][1][value]": "+77021234567",
                      f"{c}[custom_fields][0][values][2][value]": "+77011234567",  # duplicates collapse
                      f"{c}[custom_fields][1][code]": "EMAIL", f"{c}[custom_fields][1][values][0]": "old@example.com",
                      "account[id]": "30000001"}).encode()
    drafts = _accepted(body, {"account_id": "30000001"}).drafts
    assert [d.event_id for d in drafts] == ["amocrm:30000001:contact:9:add:1717000000",
                                            "amocrm:30000001:contact:9:add:1717000000:ids:1"]
    assert drafts[0].identity == {"crm_contact": "amocrm:9", "phone": "+77011234567", "email": "old@example.com"}
    assert drafts[1].identity == {"crm_contact": "amocrm:9", "phone": "+77021234567"}


def test_contact_without_identifiers_is_ignored_not_refused():
    out = _accepted(b"contacts[update][0][id]=9&contacts[update][0][name]=X&account[id]=30000001")
    assert out.drafts == () and "contacts[update][0] (no phone, email or linked lead)" in out.ignored


# --- authentication and shape -----------------------------------------------------------------


@pytest.mark.parametrize("config, detail", [
    ({"account_id": "30000002"}, "account[id] '30000001' is not this project's configured account_id"),
    ({"subdomain": "othershop"}, "account[subdomain] 'exampleshop' is not this project's configured subdomain"),
])
def test_another_account_is_refused(config, detail):
    out = _map(fixture_bytes("amocrm_leads_status.txt"), config)
    assert isinstance(out, Refused) and out.reason == RejectReason.unknown_key and out.status == 401
    assert detail in out.detail


def test_account_checks_pass_when_matching_and_unconfigured_or_missing_account_is_refused():
    assert _accepted(fixture_bytes("amocrm_leads_status.txt"), {"subdomain": "ExampleShop"}).drafts
    out = _map(fixture_bytes("amocrm_leads_status.txt"), {"currency": "KZT"})
    assert isinstance(out, Refused) and out.status == 401 and "account_id or subdomain" in out.detail  # never open
    out = _map(b"leads[status][0][id]=1&leads[status][0][status_id]=142", {"account_id": "30000001"})
    assert isinstance(out, Refused) and out.status == 401 and "account[id] is missing" in out.detail


@pytest.mark.parametrize("config, detail", [
    ({"stages": {"142": "paid"}}, "stages must be an object"),
    ({"stages": "142=won"}, "stages must be an object"),
    ({"currency": "tenge"}, "currency 'TENGE' is not a 3-letter ISO code"),
    ({"fields": {"1": "phone"}}, "fields must be an object"),
])
def test_bad_project_settings_are_refused_with_the_setting(config, detail):
    out = _map(fixture_bytes("amocrm_leads_status.txt"), {**CONFIG, **config})
    assert isinstance(out, Refused) and out.reason == RejectReason.schema_violation and detail in out.detail


def test_bodies_that_are_not_amocrm_hooks():
    out = _map(b'{"leads": []}')
    assert isinstance(out, Refused) and out.reason == RejectReason.schema_violation and "no amoCRM entity" in out.detail
    assert _accepted(b"").ignored == "empty body"
    only_tasks = _accepted(b"tasks[add][0][id]=1&account[id]=30000001")
    assert only_tasks.drafts == () and only_tasks.ignored == "ignored: tasks[add]"
    bad = _map(b"leads[add][0][name]=%FF")
    assert isinstance(bad, Refused) and bad.reason == RejectReason.invalid_utf8


# --- never raises -----------------------------------------------------------------------------


_check = check_result


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(body):
    _check(_map(body, CONFIG))


_SEGMENT = st.sampled_from(["leads", "contacts", "tasks", "account", "add", "status", "update", "0", "1", "", "id",
                            "status_id", "old_status_id", "price", "updated_at", "last_modified", "created_at",
                            "pipeline_id", "custom_fields", "values", "value", "code", "name", "linked_leads_id",
                            "ID", "PHONE", "EMAIL", "subdomain"])
_KEY = st.builds(lambda head, rest: head + "".join(f"[{s}]" for s in rest),
                 st.sampled_from(["leads", "contacts", "account", "tasks", "x"]), st.lists(_SEGMENT, max_size=8))
_VALUE = st.one_of(st.text(max_size=30), st.integers(-10, 10**12).map(str), st.sampled_from(["142", "143", "PHONE",
                                                                                              "EMAIL", "+77011234567"]))


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(_KEY, _VALUE), max_size=40), st.sampled_from([{}, {"stages": {"1": "won"}}]))
def test_random_amocrm_shaped_forms_never_raise(pairs, config):
    _check(_map(urlencode(pairs).encode(), config))


_FIELD_VALUE = st.one_of(st.integers(0, 10**11).map(str), st.sampled_from(["", "142", "143", " 15 000 ", "1,5", "-1"]),
                         st.text(max_size=12))
_ENTITY = st.fixed_dictionaries({k: _FIELD_VALUE for k in ("id", "status_id")},
                                optional={k: _FIELD_VALUE for k in ("old_status_id", "price", "pipeline_id", "updated_at",
                                                                    "last_modified", "created_at")})
_CONTACT = st.fixed_dictionaries({"id": _FIELD_VALUE}, optional={
    "updated_at": _FIELD_VALUE,
    "custom_fields][0][code": st.sampled_from(["PHONE", "EMAIL", "utm_source", ""]),
    "custom_fields][0][values][0][value": st.text(max_size=20),
    "custom_fields][0][values][1][value": _FIELD_VALUE,
    "linked_leads_id][5][ID": _FIELD_VALUE,
})


def _entities_body(action: str, entities: list[dict[str, str]], entity: str = "leads") -> list[tuple[str, str]]:
    return [(f"{entity}[{action}][{n}][{k}]", v) for n, e in enumerate(entities) for k, v in e.items()]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["add", "status"]), st.lists(_ENTITY, min_size=1, max_size=3),
       st.sampled_from(["add", "update"]), st.lists(_CONTACT, max_size=2))
def test_random_lead_and_contact_fields_never_raise(lead_action, leads, contact_action, contacts):
    pairs = _entities_body(lead_action, leads) + _entities_body(contact_action, contacts, "contacts")
    out = _map(urlencode(pairs + [("account[id]", "30000001")]).encode())
    _check(out)
    if isinstance(out, Accepted):  # whatever was accepted is exactly what was sent
        sent_ids = {e["id"].strip() for e in leads}
        assert {d.properties.deal_id for d in out.drafts if d.schema == DEAL} <= sent_ids


# --- through the webhook route ------------------------------------------------------------------


async def test_amocrm_through_the_webhook_route_publishes_hashed_envelopes():
    import httpx

    from collector.app import create_app
    from collector.ports import CollectorConfig
    from schemas.project import Project

    from ..test_app import FakeProjects, Published, _report

    project = Project("shop", "Shop", vendor_config={"amocrm": {"account_id": 30000001}})

    class Projects(FakeProjects):
        async def by_webhook_secret(self, secret):
            return project if secret == "whs_amo" else None

    published = Published()
    app = create_app(CollectorConfig(pii_key=b"k" * 32), Projects(), published, _report)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        body = fixture_bytes("amocrm_contacts_add.txt") + b"&" + fixture_bytes("amocrm_leads_status.txt")
        r = await client.post("/webhooks/amocrm/whs_amo", content=body,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 200, r.text
        other = await client.post("/webhooks/amocrm/whs_amo", content=body.replace(b"30000001", b"30000002"))
        assert other.status_code == 401 and other.json()["reason"] == "unknown_key"
    assert [(t, e.type, e.event_id) for t, e in published] == [
        ("raw", "identify", "amocrm:30000001:contact:43684612:add:1716990000:lead:31926520"),
        ("raw", "deal", "amocrm:30000001:lead:31926520:status:142:1717000500"),
    ]
    identify, deal = (e for _, e in published)
    assert identify.ids["crm_contact"] == "amocrm:43684612" and identify.ids["phone"].startswith("h_")
    assert deal.properties["amount"] == "15000" and deal.properties["stage_kind"] == "won"
    assert deal.context.campaign == {"source": "google"}
    raw = b"".join(e.to_bytes() for _, e in published)
    assert b"7011234567" not in raw and b"buyer@example.com" not in raw and b"Test Buyer" not in raw
