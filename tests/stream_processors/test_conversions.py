from datetime import datetime, timezone
from decimal import Decimal

import orjson

from schemas.envelope import Envelope
from stream_processors.channels import ChannelRules
from stream_processors.conversions import conversions_of
from stream_processors.steps import Emitted, ProcessorConfig, process

AT = datetime(2026, 11, 20, 10, tzinfo=timezone.utc)


def env(type_, schema, properties=None, event=None, **kw):
    return Envelope(schema=schema, event_id=kw.pop("event_id", "e1"), type=type_, project="shop", anonymous_id="a1",
                    timestamp=AT, received_at=AT, event=event, properties=properties or {}, **kw)


def kinds(e):
    return [(c.kind, c.conversion_id, c.value, c.currency) for c in conversions_of(e)]


def test_a_form_is_a_lead():
    assert kinds(env("track", "track/1-0-0", event="Form Submitted")) == [("lead", "lead:form:e1", Decimal(0), "")]
    assert kinds(env("form", "form/1-0-0", {"form_id": "callback"})) == [("lead", "lead:form:e1", Decimal(0), "")]
    assert kinds(env("track", "track/1-0-0", event="Button Clicked")) == []


def test_calls_are_leads_unless_repeat_or_outgoing():
    call = {"vendor": "calltouch", "call_id": "c1", "tracking_number": "+77270000001", "started_at": AT.isoformat()}
    assert kinds(env("call", "call/1-0-0", call))[0][:2] == ("lead", "lead:call:calltouch:c1")
    assert kinds(env("call", "call/1-0-0", {**call, "unique": False})) == []
    assert kinds(env("call", "call/1-0-0", {**call, "direction": "out"})) == []


def test_one_lead_per_chat():
    msg = {"platform": "whatsapp", "message_id": "m", "direction": "in"}
    a = conversions_of(env("message", "message/1-0-0", msg, ids={"chat": "h_1"}, event_id="x"))
    b = conversions_of(env("message", "message/1-0-0", msg, ids={"chat": "h_1"}, event_id="y"))
    assert a[0].conversion_id == b[0].conversion_id == "lead:message:whatsapp:h_1"


def test_deal_stages_make_the_funnel_and_a_won_deal_is_a_sale():
    deal = {"crm": "amocrm", "deal_id": "77", "stage": "142", "amount": "150000.00", "currency": "KZT"}
    assert kinds(env("deal", "deal/1-0-0", {**deal, "stage_kind": "lead"}))[0][:2] == ("lead", "lead:crm:amocrm:77")
    assert kinds(env("deal", "deal/1-0-0", {**deal, "stage_kind": "open"}))[0][:2] == ("deal", "deal:amocrm:77:142")
    assert kinds(env("deal", "deal/1-0-0", {**deal, "stage_kind": "won"})) == [
        ("sale", "sale:deal:amocrm:77", Decimal("150000.00"), "KZT")]


def test_payments_and_refunds_carry_exact_signed_money():
    pay = {"provider": "stripe", "payment_id": "pi_1", "kind": "payment", "amount": "1500.50", "currency": "KZT"}
    assert kinds(env("payment", "payment/1-0-0", {**pay, "deal_id": "77"})) == [
        ("payment", "payment:stripe:pi_1", Decimal("1500.50"), "KZT")]
    assert kinds(env("payment", "payment/1-0-0", pay)) == [  # no CRM deal: the payment is the sale
        ("payment", "payment:stripe:pi_1", Decimal("1500.50"), "KZT"), ("sale", "sale:payment:stripe:pi_1", Decimal("1500.50"), "KZT")]
    assert kinds(env("payment", "payment/1-0-0", {**pay, "kind": "refund"})) == [
        ("refund", "refund:stripe:pi_1", Decimal("-1500.50"), "KZT")]


def test_segment_order_completed_is_a_sale_and_a_payment():
    out = kinds(env("track", "track/1-0-0", {"order_id": "1001", "revenue": 25000.5, "currency": "rub"},
                    event="Order Completed"))
    assert out == [("sale", "sale:order:1001", Decimal("25000.5"), "RUB"), ("payment", "payment:order:1001", Decimal("25000.5"), "RUB")]


def test_the_step_chain_emits_conversions_and_spend_with_its_channel():
    config = ProcessorConfig(ChannelRules.load())
    form = env("track", "track/1-0-0", event="Form Submitted")
    _, out = process(config, None, form.to_bytes())
    assert isinstance(out, Emitted) and [c.kind for c in out.conversions] == ["lead"]
    spend = Envelope(schema="spend/1-0-0", event_id="spend:i:0", type="spend", project="shop", timestamp=AT, received_at=AT,
                     properties={"date": "2026-11-20", "source": "Яндекс", "medium": "cpc", "campaign": "Sofas",
                                 "cost": "15000.00", "currency": "KZT", "import_id": "i"})
    _, out = process(config, None, spend.to_bytes())
    row = out.spend[0].row
    assert (row["source"], row["channel"], row["campaign"], row["cost"]) == ("yandex", "Paid Search", "sofas", "15000.00")
    assert orjson.loads(out.spend[0].to_bytes())["import_id"] == "i"
