"""What the shop's back office sends, as its vendors' webhooks: the PBX's calls, WhatsApp
messages, amoCRM deals moving through the pipeline, and the payment provider's payments and
refunds; each with the conversions the server is expected to make of it."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from .business import (AMO_ACCOUNT, AMO_ANON_FIELD, AMO_PIPELINE, AMO_SUBDOMAIN, AMO_UTM_FIELDS, CURRENCY, PBX,
                       PRODUCTS, STAGE_CONSULT, STAGE_INVOICE, STAGE_LOST, STAGE_MEASURE, STAGE_NEW, STAGE_WON,
                       WA_PHONE_NUMBER_ID, WA_WABA_ID)
from .helpers import local, money
from .plan import Conversion, Visit
from .world import Person, World

WIN_RATE = {"form": 0.24, "call": 0.27, "whatsapp": 0.21}  # deals won, by how the enquiry came


def call(w: World, p: Person, at: datetime, number: str, unique: bool, anon: str, page: str | None) -> str:
    """An inbound call of p to number, as the PBX exports it; returns its call_id."""
    rng = w.rng
    call_id = f"pbx-{w.run}-{w.next('call'):05d}"
    answered = rng.random() < 0.9
    duration = rng.randrange(40, 420) if answered else rng.randrange(5, 30)
    body: dict[str, Any] = {
        "call_id": call_id, "tracking_number": number, "caller": w.phone_written(w.phone_of(p)),
        "started_at": local(at).strftime("%Y-%m-%d %H:%M:%S"), "duration_s": duration,
        "talk_s": max(duration - rng.randrange(5, 20), 0) if answered else 0, "answered": answered,
        "unique": unique, "direction": "in", "vendor": PBX,
    }
    if answered:
        body["recording_url"] = f"https://pbx.mebel-almaty.kz/rec/{call_id}.mp3"
    if anon:
        body["anonymous_id"] = anon
        body["page_url"] = page
    w.calls.append((at, body))
    w.ids["call_id"][call_id] = p.pid
    return call_id


def whatsapp_message(w: World, p: Person, at: datetime, code: str | None) -> datetime:
    """A message of p to the shop's WhatsApp (the first one carries the ref code); returns its time."""
    rng = w.rng
    at = at.replace(microsecond=0)
    n = w.next("wamid")
    wamid = "wamid." + base64.b64encode(f"HBgL{w.run}{n:06d}FQIAEhgUM0FF".encode()).decode()
    if code:
        text = rng.choice(("Здравствуйте! Интересует диван, есть в наличии?",
                           "Добрый день! Хочу узнать цену на шкаф-купе",
                           "Здравствуйте, можно заказать замер кухни?", "Сәлеметсіз бе! Кровать бар ма?"))
        text = f"{text} MT-{code}"
    else:
        text = rng.choice(("А доставка по Алматы сколько?", "Можно в рассрочку?", "Спасибо, жду звонка",
                           "Какие цвета есть?", "Здравствуйте! Видела у вас в инстаграме диван, сколько стоит?"))
    digits = w.phone_of(p)[1:]
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "77273000000", "phone_number_id": WA_PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": p.name}, "wa_id": digits}],
        "messages": [{"from": digits, "id": wamid, "timestamp": str(int(at.timestamp())), "text": {"body": text},
                      "type": "text"}]}
    body = {"object": "whatsapp_business_account",
            "entry": [{"id": WA_WABA_ID, "changes": [{"field": "messages", "value": value}]}]}
    w.whatsapp.append((at, body))
    return at


# --- amoCRM ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AmoLead:
    """One amoCRM deal as its webhooks describe it (leads[add] and every leads[status])."""

    deal_id: str
    name: str
    created: datetime
    custom: tuple[tuple[str, str, str], ...]  # (field id, field name, value)

    def fields(self, prefix: str, status: str, updated: datetime, old: str | None,
               price: Decimal | None) -> list[tuple[str, str]]:
        deal_id = self.deal_id
        out = [(f"{prefix}[id]", deal_id), (f"{prefix}[name]", f"{self.name} #{deal_id[-5:]}"),
               (f"{prefix}[status_id]", status), (f"{prefix}[pipeline_id]", AMO_PIPELINE),
               (f"{prefix}[responsible_user_id]", "9040358"),
               (f"{prefix}[created_at]", str(int(self.created.timestamp()))),
               (f"{prefix}[updated_at]", str(int(updated.timestamp()))), (f"{prefix}[account_id]", AMO_ACCOUNT)]
        if old:
            out.append((f"{prefix}[old_status_id]", old))
        if price is not None:  # amoCRM sends whole prices without decimals
            whole = price == price.to_integral_value()
            out.append((f"{prefix}[price]", str(int(price)) if whole else f"{price:.2f}"))
        for n, (fid, fname, value) in enumerate(self.custom):
            out += [(f"{prefix}[custom_fields][{n}][id]", fid), (f"{prefix}[custom_fields][{n}][name]", fname),
                    (f"{prefix}[custom_fields][{n}][values][0][value]", value)]
        return out


ACCOUNT = [("account[id]", AMO_ACCOUNT), ("account[subdomain]", AMO_SUBDOMAIN),
           ("account[_links][self]", f"https://{AMO_SUBDOMAIN}.amocrm.ru")]


def deal(w: World, p: Person, at: datetime, origin: str, anon: str, v: Visit) -> datetime | None:
    """The enquiry as an amoCRM deal: created, moved through the pipeline to won or lost, and a won
    deal paid. Returns when it was last paid (None: lost, still open, or not paid yet)."""
    rng = w.rng
    at = at.replace(microsecond=0)
    deal_id = str(w.num * 10**6 + 31_000 + w.next("deal"))  # numeric, like amoCRM's
    contact_id = str(w.num * 10**6 + 43_000 + w.counter["deal"])
    amo = f"amocrm:{deal_id}"
    w.ids["deal"][amo] = p.pid
    w.ids["crm_contact"][f"amocrm:{contact_id}"] = p.pid
    items = basket(w, v)
    amount = sum((price for _, price in items), Decimal(0))
    custom: list[tuple[str, str, str]] = []
    if anon:
        custom.append((AMO_ANON_FIELD, "mt_anonymous_id", anon))
    if origin == "form" and v.source not in ("(direct)",):
        custom += [(AMO_UTM_FIELDS["source"], "utm_source", v.source),
                   (AMO_UTM_FIELDS["medium"], "utm_medium", v.medium)]
        if v.campaign:
            custom.append((AMO_UTM_FIELDS["campaign"], "utm_campaign", v.campaign))
    name = {"form": "Заявка с сайта", "call": "Входящий звонок", "whatsapp": "WhatsApp"}[origin]
    lead = AmoLead(deal_id, name, at, tuple(custom))
    c = "contacts[add][0]"
    shown = w.phone_written(w.phone_of(p))
    contact = [(f"{c}[id]", contact_id), (f"{c}[name]", p.name), (f"{c}[responsible_user_id]", "9040358"),
               (f"{c}[created_at]", str(int(at.timestamp()))), (f"{c}[updated_at]", str(int(at.timestamp()))),
               (f"{c}[custom_fields][0][id]", "264911"), (f"{c}[custom_fields][0][name]", "Телефон"),
               (f"{c}[custom_fields][0][code]", "PHONE"), (f"{c}[custom_fields][0][values][0][value]", shown),
               (f"{c}[custom_fields][0][values][0][enum]", "WORK"),
               (f"{c}[linked_leads_id][{deal_id}][ID]", deal_id)]
    estimate = amount if origin == "form" and rng.random() < 0.5 else None
    w.amocrm.append((at, lead.fields("leads[add][0]", STAGE_NEW, at, None, estimate) + contact + ACCOUNT, 2))
    w.conversions.append(Conversion(f"lead:crm:amocrm:{deal_id}", "lead", "crm", at, p.pid, anon,
                                    ref={"deal_id": amo}))
    won_at = _pipeline(w, lead, origin, amount, estimate)
    if won_at is None:
        return None
    w.conversions.append(Conversion(f"sale:deal:amocrm:{deal_id}", "sale", "crm", won_at, p.pid, anon, amount,
                                    ref={"deal_id": amo}))
    p.customer_since = p.customer_since or won_at
    return _settle(w, p, won_at, deal_id, amount, anon)


def _pipeline(w: World, lead: AmoLead, origin: str, amount: Decimal, estimate: Decimal | None) -> datetime | None:
    """The deal's status changes (consultation, measuring, invoice, then won or lost), one webhook
    each. Returns when it was won (None: lost, or still open at the end of the period)."""
    rng = w.rng
    won = rng.random() < WIN_RATE[origin]
    path = [STAGE_CONSULT]
    if rng.random() < 0.7 or won:
        path.append(STAGE_MEASURE)
    path.append(STAGE_INVOICE)
    if won:
        path.append(STAGE_WON)
    else:
        path = path[:rng.randrange(1, len(path) + 1)] + [STAGE_LOST]
    t, old = lead.created, STAGE_NEW
    for stage in path:
        hours = rng.uniform(0.3, 20) if stage == STAGE_CONSULT else rng.uniform(12, 96)
        t = w.daytime(t + timedelta(hours=hours), 9, 21)
        if t >= w.end:
            return None  # still open at the end of the period
        price = amount if stage in (STAGE_INVOICE, STAGE_WON, STAGE_LOST) else estimate
        w.amocrm.append((t, lead.fields("leads[status][0]", stage, t, old, price) + ACCOUNT, 1))
        old = stage
    return t if won else None


def _settle(w: World, p: Person, won_at: datetime, deal_id: str, amount: Decimal, anon: str) -> datetime | None:
    """A won deal's payments: in full, or half now and the rest at delivery; now and then a partial
    refund. Returns when it was last paid (None: no payment before the end of the period)."""
    rng = w.rng
    amo = f"amocrm:{deal_id}"
    customer = {"phone": w.phone_written(w.phone_of(p))}
    if anon:
        customer["anonymous_id"] = anon
    provider = rng.choice(("halyk_epay", "kaspi_pay", "kaspi_pay", "bank_transfer"))
    pay_at = w.daytime(won_at + timedelta(hours=rng.uniform(0.2, 20)), 9, 22)
    parts = [amount] if rng.random() < 0.4 else [money(amount / 2), amount - money(amount / 2)]
    paid: list[tuple[str, Decimal, datetime]] = []
    for n, part in enumerate(parts):
        if n:
            pay_at = w.daytime(pay_at + timedelta(days=rng.uniform(3, 14)), 9, 22)
        if pay_at >= w.end:
            break
        pid = f"mb-{w.run}-{w.next('payment'):05d}"
        payment(w, p, pay_at, pid, "payment", part, provider, customer, anon, deal=amo, order=f"D{deal_id}")
        paid.append((pid, part, pay_at))
    if paid and rng.random() < 0.06:  # one item came back damaged
        back = money(amount * Decimal(rng.choice(("0.1", "0.15", "0.2", "0.3"))))
        when = w.daytime(paid[-1][2] + timedelta(days=rng.uniform(3, 15)), 9, 21)
        if when < w.end and back <= paid[-1][1]:
            payment(w, p, when, f"mb-{w.run}-{w.next('payment'):05d}", "refund", back, provider, customer,
                    anon, deal=amo, order=f"D{deal_id}", refund_of=paid[-1][0])
    return paid[-1][2] if paid else None


def basket(w: World, v: Visit) -> list[tuple[str, Decimal]]:
    """What a deal sells: (item, price) lines, a discount as a negative line."""
    rng = w.rng
    if rng.random() < 0.1:
        return [("Кухня на заказ", money(rng.randrange(85, 190) * 10_000))]
    chosen = [rng.choice([x for x in PRODUCTS if x[3] is not None and x[2] != "stoly"])]
    if rng.random() < 0.35:
        chosen.append(rng.choice([x for x in PRODUCTS if x[3] is not None]))
    items = [(name, money(price)) for name, _, _, price in chosen]
    if rng.random() < 0.2:
        items.append(("Стул «Венеция» ×4", money(4 * 34_990)))
    if rng.random() < 0.25:  # a discount agreed with the manager
        total = sum((x for _, x in items), Decimal(0))
        items.append(("Скидка", -money(total * Decimal("0.05"))))
    return items


# --- the payment provider -----------------------------------------------------------------------

def payment(w: World, p: Person, at: datetime, payment_id: str, kind: str, amount: Decimal, provider: str,
            customer: dict[str, str], anon: str, deal: str | None = None, order: str | None = None,
            refund_of: str | None = None) -> None:
    """A payment or refund through the generic signed `payment` webhook, and its conversions (a
    payment that names no deal is a sale too)."""
    at = at.replace(microsecond=0)
    item: dict[str, Any] = {"payment_id": payment_id, "provider": provider, "kind": kind, "amount": f"{amount:.2f}",
                            "currency": CURRENCY, "paid_at": local(at).isoformat(), "status": "succeeded",
                            "customer": dict(customer)}
    if order:
        item["order_id"] = order
    if deal:
        item["deal_id"] = deal
    if refund_of:
        item["refund_of"] = refund_of
    w.payments.append((at, item))
    w.ids["payment"][payment_id] = p.pid
    value = amount if kind == "payment" else -amount
    w.conversions.append(Conversion(f"{'payment' if kind == 'payment' else 'refund'}:{provider}:{payment_id}",
                                    kind, "payment", at, p.pid, anon, value,
                                    ref={"payment_id": payment_id, "deal_id": deal or "", "provider": provider}))
    if kind == "payment" and not deal:
        w.conversions.append(Conversion(f"sale:payment:{provider}:{payment_id}", "sale", "payment", at, p.pid,
                                        anon, amount, ref={"payment_id": payment_id, "provider": provider}))
