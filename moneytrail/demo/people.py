"""The people of the demo and what they do: a random journey for every new visitor (sessions over
days, sometimes on a second device, maybe an enquiry by form, call or WhatsApp that becomes a deal),
Kaspi buyers, repeat purchases, newsletter readers, the few who call while the demo loads, and one
scripted cross-device buyer (the showcase) in every plan."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from .backoffice import call, deal, payment, whatsapp_message
from .business import (AFTER_LEAD, ALMATY, CATEGORIES, CURRENCY, DEFAULT_NUMBER, FIRST, KASPI_ITEMS, ONLINE_ITEMS,
                       PBX, POOL, PRODUCTS, SITE, STATIC_2GIS, UA_DESKTOP, price_of)
from .helpers import UTC, geometric, local, money, weighted
from .plan import Conversion, LiveCall, Visit
from .site import email_visit, login_on_both, track, visit
from .world import Person, World


def journey(w: World, day: int, first_kind: str) -> None:
    """A new person arriving on `day` by first_kind: a few sessions days apart, the last one maybe
    ending in an enquiry (or, for Kaspi shoppers, an order)."""
    rng = w.rng
    p = w.new_person(first_kind)
    enquires = rng.random() < FIRST[first_kind][1]
    sessions = 1 + min(geometric(rng, 0.45), 5) if enquires else 1 + min(geometric(rng, 0.7), 4)
    switch_at = rng.randrange(1, sessions) if sessions >= 2 and rng.random() < 0.14 else None
    at = w.arrival_time(day)
    last: Visit | None = None
    for i in range(sessions):
        before_switch = last if i == switch_at else None
        if i == switch_at:
            w.add_device(p, not p.mobile)
        kind = first_kind if i == 0 else w.return_kind(first_kind)
        pages = min(max(3, 2 + geometric(rng, 0.35)), 10) if enquires and i == sessions - 1 else None
        v = visit(w, p, w.daytime(at), kind, pages)
        if v is None:
            return
        if before_switch is not None:
            login_on_both(w, p, before_switch, v)
        last = v
        at = v.end + w.gap()
    if rng.random() < 0.03:  # the newsletter pop-up
        p.subscribed_at = last.end
    if enquires:
        enquiry(w, p, last)
    elif first_kind == "kaspi" and rng.random() < 0.09:
        kaspi_order(w, p, last)


# --- enquiries -------------------------------------------------------------------------------------

def enquiry(w: World, p: Person, v: Visit) -> None:
    """After visit v, p enquires (a form, a call or a WhatsApp chat); the shop makes a deal of it,
    and p comes back to look again while the deal is open."""
    rng = w.rng
    anon, ua = p.device
    desktop = ua in UA_DESKTOP
    if p.first_kind == "2gis":
        method = weighted(rng, (("call", 0.7), ("whatsapp", 0.2), ("form", 0.1)))
    elif desktop:
        method = weighted(rng, (("form", 0.6), ("call", 0.25), ("whatsapp", 0.15)))
    else:
        method = weighted(rng, (("whatsapp", 0.45), ("call", 0.25), ("form", 0.3)))
    at = v.end + timedelta(seconds=rng.randrange(10, 90))
    phone = w.phone_of(p)
    page = f"{SITE}/catalog/{rng.choice(list(CATEGORIES))}"
    if method == "form":
        made = _by_form(w, p, at, phone, page)
    elif method == "call":
        made = _by_call(w, p, v, at, page)
    else:
        made = _by_chat(w, p, at, phone, page)
    if made is None:
        return
    deal_anon, deal_at = made
    if deal_at >= w.end:
        return
    if p.subscribed_at is None:
        p.subscribed_at = deal_at
    last_paid = deal(w, p, deal_at, method, deal_anon, v)
    if last_paid is not None:
        repeat_purchase(w, p, last_paid)
    # people come back to look again while the deal is open
    at = deal_at
    for _ in range(rng.choice((0, 0, 1, 1, 2))):
        at = at + w.gap(1.5)
        if visit(w, p, w.daytime(at), w.return_kind(p.first_kind, AFTER_LEAD)) is None:
            break


def _by_form(w: World, p: Person, at: datetime, phone: str, page: str) -> tuple[str, datetime]:
    """A site form with the phone: the lead carries the visitor. Returns (the deal's visitor, its time)."""
    rng = w.rng
    anon, ua = p.device
    form = rng.choice((("callback", "Перезвоните мне"), ("measure", "Вызвать замерщика"),
                       ("quiz", "Подобрать диван за 1 минуту")))
    mid = track(w, anon, ua, at, "Form Submitted",
                {"form_id": form[0], "form_name": form[1], "phone": w.phone_written(phone)}, page)
    w.conversions.append(Conversion(f"lead:form:{mid}", "lead", "form", at, p.pid, anon, ref={"message_id": mid}))
    return anon, at + timedelta(seconds=rng.randrange(20, 120))


def _by_call(w: World, p: Person, v: Visit, at: datetime, page: str) -> tuple[str, datetime] | None:
    """A call to the number the site showed (a pool number: the PBX knows the visitor), the 2GIS
    card's or the default number (no visitor); sometimes again the next day."""
    rng = w.rng
    anon = p.device[0]
    at = w.daytime(at, 9, 21)
    if at >= w.end - timedelta(hours=1):
        return None
    if p.first_kind == "2gis" and rng.random() < 0.5:
        number, known = STATIC_2GIS, False  # dialled from the 2GIS card: no visitor behind it
    elif rng.random() < 0.06:
        number, known = DEFAULT_NUMBER, False  # the pool was exhausted: the default number
    else:
        number, known = rng.choice(POOL), True
    call_anon = anon if known and at - v.end < timedelta(minutes=30) else ""
    call_id = call(w, p, at, number, unique=True, anon=call_anon, page=page)
    w.conversions.append(Conversion(f"lead:call:{PBX}:{call_id}", "lead", "call", at, p.pid, call_anon,
                                    ref={"call_id": call_id}))
    deal_at = at + timedelta(minutes=rng.randrange(3, 25))
    again = w.daytime(at + timedelta(hours=rng.randrange(18, 30)), 9, 21)
    if rng.random() < 0.3 and again < w.end:  # calls again the next day: not a new lead
        call(w, p, again, number, unique=False, anon="", page=None)
    return call_anon, deal_at


def _by_chat(w: World, p: Person, at: datetime, phone: str, page: str) -> tuple[str, datetime] | None:
    """A WhatsApp chat, from the site's button (a ref code joins it to the visit) or from the
    Instagram profile hours later; a few more messages the same day."""
    rng = w.rng
    anon, ua = p.device
    chat_at = at
    code = None
    if rng.random() < 0.85:  # clicked the site's WhatsApp button: the tracker adds a ref code
        code = w.ref_code()
        w.ids["ref_code"][code] = p.pid
        track(w, anon, ua, at, "Messenger Link Clicked", {"platform": "whatsapp", "ref_code": code,
                                                          "href": "https://wa.me/77273000000"}, page)
        chat_at = at + timedelta(seconds=rng.randrange(20, 120))
    else:  # wrote from the Instagram profile, hours later
        chat_at = w.daytime(at + timedelta(hours=rng.uniform(1, 20)))
    if chat_at >= w.end - timedelta(hours=1):
        return None
    first = whatsapp_message(w, p, chat_at, code)
    w.conversions.append(Conversion(f"lead:message:whatsapp:{phone[1:]}", "lead", "message", first, p.pid, "",
                                    ref={"chat": phone[1:], "ref_code": code or ""}))
    w.ids["chat"][phone[1:]] = p.pid
    t = first
    for _ in range(rng.randrange(0, 4)):  # the rest of the conversation, the same day
        t = t + timedelta(minutes=rng.randrange(2, 90))
        if local(t).date() != local(first).date() or t.date() != first.date() or t >= w.end:
            break
        whatsapp_message(w, p, t, None)
    return "", first + timedelta(seconds=rng.randrange(30, 300))


# --- buying without a deal ----------------------------------------------------------------------------

def kaspi_order(w: World, p: Person, v: Visit) -> None:
    """A Kaspi shopper buys: with Kaspi QR on the site (the site knows the visitor) or in the Kaspi
    app (Kaspi tells the shop the phone only); now and then it goes back."""
    rng = w.rng
    slug = rng.choice(KASPI_ITEMS)
    price = money(price_of(slug))
    if slug == "stul-venecia":
        price = money(price * 4)
    phone = w.phone_of(p)
    if rng.random() < 0.4:  # paid with Kaspi QR in the site's checkout: the site knows the visitor
        at = v.end + timedelta(seconds=rng.randrange(30, 200))
        anon, provider, pid = v.anon, "kaspi_qr", f"kqr-{w.run}-{w.next('kaspi'):05d}"
        customer = {"phone": phone, "anonymous_id": anon}
    else:  # ordered in the Kaspi app: Kaspi tells the shop the buyer's phone only
        at = w.daytime(v.end + timedelta(hours=rng.uniform(0.2, 40)))
        anon, provider, pid = "", "kaspi", f"kaspi-{w.run}-{w.next('kaspi'):05d}"
        customer = {"phone": phone}
    if at >= w.end:
        return
    payment(w, p, at, pid, "payment", price, provider, customer, anon, order=f"K{pid[-9:]}")
    p.customer_since = p.customer_since or at
    if rng.random() < 0.05:
        when = w.daytime(at + timedelta(days=rng.uniform(2, 10)))
        if when < w.end:
            payment(w, p, when, f"{pid}-r", "refund", price, provider, customer, anon, order=f"K{pid[-9:]}",
                    refund_of=pid)
    else:
        repeat_purchase(w, p, at)


def repeat_purchase(w: World, p: Person, after: datetime) -> None:
    """Some customers come back weeks later (from the newsletter, directly, from Instagram) and
    buy something small online."""
    rng = w.rng
    if rng.random() >= 0.14:
        return
    at = w.daytime(after + timedelta(days=rng.uniform(10, 60)))
    kind = weighted(rng, (("email", 0.4), ("direct", 0.35), ("instagram_bio", 0.25)))
    if kind == "email":
        v = email_visit(w, p, at, pages=4)
    else:
        v = visit(w, p, at, kind, pages=4)
    if v is None:
        return
    slug = rng.choice(ONLINE_ITEMS)
    price = money(price_of(slug) * rng.choice((1, 1, 2, 4)))
    pay_at = v.end + timedelta(seconds=rng.randrange(60, 400))
    if pay_at >= w.end:
        return
    track(w, v.anon, p.device[1], pay_at - timedelta(seconds=30), "Checkout Started",
          {"value": f"{price:.2f}", "currency": CURRENCY}, f"{SITE}/checkout")
    pid = f"web-{w.run}-{w.next('web'):05d}"
    payment(w, p, pay_at, pid, "payment", price, "halyk_epay", {"phone": w.phone_of(p), "anonymous_id": v.anon},
            v.anon, order=f"W{pid[-9:]}")


# --- the newsletter, the live calls, the showcase -----------------------------------------------------

def newsletters(w: World) -> list[tuple[date, int]]:
    """Every Tuesday at 11:00 Almaty a newsletter to the subscribers; some click.
    Returns (day, subscribers) of every send."""
    sends = []
    d = w.start.date()
    while d < w.end.date():
        if d.weekday() == 1:
            send = datetime(d.year, d.month, d.day, 11, 0, tzinfo=ALMATY).astimezone(UTC)
            subscribers = [p for p in w.persons if p.subscribed_at and p.subscribed_at < send]
            sends.append((d, len(subscribers)))
            campaign = f"newsletter_{d.strftime('%Y_%m_%d')}"
            for p in subscribers:
                if w.rng.random() < 0.07:
                    at = w.daytime(send + timedelta(hours=min(w.rng.expovariate(1 / 6), 48)))
                    if not any(abs((x.start - at).total_seconds()) < 7200 for x in p.visits):
                        email_visit(w, p, at, campaign=campaign)
        d += timedelta(days=1)
    return sends


def live_calls(w: World) -> None:
    """A few visitors of the last week come back today and call the number the site shows them."""
    wanted = max(1, round(3 * w.scale)) if w.scale >= 0.1 else 0
    recent = [p for p in w.persons if p.phone is None and p.visits and not any(v.live for v in p.visits)
              and p.visits[-1].start >= w.end - timedelta(days=7)]
    for p in recent[:wanted] if len(recent) <= wanted else w.rng.sample(recent, wanted):
        anon, ua = p.device
        phone = w.phone_of(p)
        call_id = f"pbx-{w.run}-live-{w.next('live'):03d}"
        mid = w.message_id()
        url = f"{SITE}/kontakty"
        nominal = w.end + timedelta(hours=5)
        v = Visit(person=p.pid, anon=anon, start=nominal, end=nominal, kind="direct", channel="Direct",
                  source="(direct)", medium="(none)", campaign="", non_direct=False, live=True)
        p.visits.append(v)
        w.visits.append(v)
        w.live.append(LiveCall(p.pid, anon, ua, phone, call_id, mid, url))
        w.ids["call_id"][call_id] = p.pid
        w.conversions.append(Conversion(f"lead:call:{PBX}:{call_id}", "lead", "call", nominal + timedelta(minutes=3),
                                        p.pid, anon, ref={"call_id": call_id, "joined_by": "lease"}, live=True))


def showcase(w: World) -> None:
    """One scripted cross-device buyer in every plan, so even a small or short demo shows what
    stitching recovers (random device switchers who then pay may be absent from a small sample):
    an Instagram ad click on the phone, two days later a direct visit on a laptop, signed in on
    both, and a web checkout on the laptop (a cookie-only join credits Direct; the person's
    journey says Paid Social), then a Kaspi app order naming only the phone. Runs after
    everything else, so no other id or number changes."""
    day = max(w.days - 8, 0)
    p = w.new_person("instagram_ads")
    if not p.mobile:  # the story starts on the phone: make its first device one
        p.mobile = True
        w.ids["anonymous_id"].pop(p.devices[0][0])
        p.devices.clear()
        w.add_device(p, True)
    phone_visit = visit(w, p, w.daytime(w.arrival_time(day)), "instagram_ads", pages=3)
    if phone_visit is None:
        return
    w.add_device(p, False)
    laptop_visit = visit(w, p, w.daytime(phone_visit.end + timedelta(days=2), 10, 20), "direct", pages=4)
    if laptop_visit is None:
        return
    login_on_both(w, p, phone_visit, laptop_visit, always=True)
    price = money(next(x[3] for x in PRODUCTS if x[3] is not None))
    pay_at = laptop_visit.end + timedelta(seconds=90)
    if pay_at >= w.end:
        return
    track(w, laptop_visit.anon, p.device[1], pay_at - timedelta(seconds=30), "Checkout Started",
          {"value": f"{price:.2f}", "currency": CURRENCY}, f"{SITE}/checkout")
    pid = f"web-{w.run}-{w.next('web'):05d}"
    payment(w, p, pay_at, pid, "payment", price, "halyk_epay",
            {"phone": w.phone_of(p), "anonymous_id": laptop_visit.anon}, laptop_visit.anon, order=f"W{pid[-9:]}")
    p.customer_since = pay_at
    # two days later chairs to match, ordered in the Kaspi app: Kaspi names only the phone, which
    # a cookie-only join cannot place (unattributed); the checkout joined that phone to the person
    kaspi_at = w.daytime(pay_at + timedelta(days=2), 10, 20)
    if kaspi_at >= w.end:
        return
    chairs = money(4 * price_of("stul-venecia"))
    kid = f"kaspi-{w.run}-{w.next('kaspi'):05d}"
    payment(w, p, kaspi_at, kid, "payment", chairs, "kaspi", {"phone": w.phone_of(p)}, "", order=f"K{kid[-9:]}")
