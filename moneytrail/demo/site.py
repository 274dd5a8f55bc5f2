"""What the shop's site sends (the tracker's Segment messages): a visit's landing from its channel
and its pageviews, track events, the newsletter's visits, and the sign-in that joins two devices."""

from __future__ import annotations

import base64
import random
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from stream_processors.channels import classify

from .business import (CAMPAIGNS, CATEGORIES, INFO_PAGES, KASPI_ITEMS, PRODUCTS, SITE, SPEND_SOURCE, title)
from .helpers import geometric, iso_z, local
from .plan import Visit
from .world import Person, World


def landing(w: World, kind: str) -> tuple[str, str, str, str]:
    """(landing url, referrer, campaign, category) of a visit arriving by kind."""
    rng = w.rng
    category = rng.choice(list(CATEGORIES))
    if kind in CAMPAIGNS:
        return _ad_click(rng, kind, category)
    if kind == "google_organic":
        referrer = rng.choice(("https://www.google.kz/", "https://www.google.com/"))
        return f"{SITE}/catalog/{category}", referrer, "", category
    if kind == "yandex_organic":
        return f"{SITE}/catalog/{category}", "https://yandex.kz/", "", category
    if kind == "kaspi":
        slug = rng.choice(KASPI_ITEMS)
        return (f"{SITE}/product/{slug}", f"https://kaspi.kz/shop/p/{slug}-{rng.randrange(10**8, 10**9)}/",
                "", "")
    if kind == "2gis":
        return f"{SITE}/", "https://2gis.kz/almaty/firm/70000001018425377", "", category
    if kind == "instagram_bio":
        if rng.random() < 0.5:
            url = f"{SITE}/?utm_source=instagram&utm_medium=social&utm_campaign=bio"
            return url, "https://l.instagram.com/", "bio", category
        return f"{SITE}/", "https://l.instagram.com/", "", category
    if kind == "email":
        raise AssertionError("email visits are built by email_visit")
    return f"{SITE}/", "", "", category  # direct


def _ad_click(rng: random.Random, kind: str, category: str) -> tuple[str, str, str, str]:
    """The landing of a paid click: utm tags and the network's click id, as each network adds them."""
    campaign, cat, terms = rng.choice(CAMPAIGNS[kind])
    category = cat or category
    path = f"/catalog/{category}" if cat else "/"
    source = SPEND_SOURCE[kind]
    tags = {"utm_source": source, "utm_medium": "cpc", "utm_campaign": campaign}
    if terms:
        tags["utm_term"] = rng.choice(terms)
    referrer = ""
    if source == "google":
        tags["gclid"] = "Cj0KCQiA" + base64.urlsafe_b64encode(rng.randbytes(30)).decode().rstrip("=")
        referrer = "https://www.google.kz/"
        if rng.random() < 0.2:  # auto-tagging only: the gclid alone says google / cpc
            tags = {"gclid": tags["gclid"]}
    elif source == "yandex":
        tags["yclid"] = str(rng.randrange(10**17, 10**18))
        referrer = "https://yandex.kz/" if kind == "yandex_direct" else "https://zen.yandex.ru/"
    elif source == "instagram":
        tags["utm_content"] = rng.choice(("video_1", "video_2", "carousel_a"))
        tags["fbclid"] = "IwAR" + base64.urlsafe_b64encode(rng.randbytes(24)).decode().rstrip("=")
        referrer = "https://l.instagram.com/"
    elif source == "tiktok":
        tags["ttclid"] = "E.C.P." + base64.urlsafe_b64encode(rng.randbytes(24)).decode().rstrip("=")
    return f"{SITE}{path}?{urlencode(tags)}", referrer, campaign, category


def visit(w: World, p: Person, at: datetime, kind: str, pages: int | None = None,
          device: tuple[str, str] | None = None, url: str | None = None, referrer: str = "",
          campaign: str = "") -> Visit | None:
    """A session of p from `at`: the landing hit and internal pages. None if past the end."""
    rng = w.rng
    at = at.replace(microsecond=0)
    if at >= w.end - timedelta(minutes=30):
        return None
    anon, ua = device or p.device
    # one visitor's sessions never touch: a hit within 30 minutes of another session would join it
    while any(x.anon == anon and x.start - timedelta(hours=1) < at < x.end + timedelta(hours=1) for x in p.visits):
        at = at + timedelta(hours=2)
    if at >= w.end - timedelta(minutes=30):
        return None
    category = ""
    if url is None:
        url, referrer, campaign, category = landing(w, kind)
    if pages is None:
        pages = 1 if rng.random() < 0.35 else min(2 + geometric(rng, 0.3), 9)
    where = classify(w.rules, url, referrer or None, None)
    hits = [(url, referrer, at)]
    t = at
    previous = url
    category = category or rng.choice(list(CATEGORIES))
    for _ in range(pages - 1):
        t = t + timedelta(seconds=rng.randrange(15, 150))
        roll = rng.random()
        if roll < 0.35:
            page = f"{SITE}/catalog/{category}"
        elif roll < 0.75:
            slug = rng.choice([s for _, s, c, _ in PRODUCTS if c == category] or [PRODUCTS[0][1]])
            page = f"{SITE}/product/{slug}"
        else:
            page = SITE + rng.choice(INFO_PAGES)[0]
        hits.append((page, previous, t))
        previous = page
    for page_url, ref, when in hits:
        path = page_url[len(SITE):].split("?")[0] or "/"
        w.messages.append({
            "type": "page", "messageId": w.message_id(), "anonymousId": anon, "timestamp": iso_z(when),
            "context": {"page": {"url": page_url, "referrer": ref, "path": path, "title": title(path)},
                        "userAgent": ua, "locale": "ru-KZ"},
            "properties": {},
        })
    v = Visit(person=p.pid, anon=anon, start=at, end=t, kind=kind, channel=where.channel, source=where.source,
              medium=where.medium, campaign=where.campaign, non_direct=not where.is_direct)
    p.visits.append(v)
    w.visits.append(v)
    if kind in SPEND_SOURCE:
        w.paid_visits[(at.date(), SPEND_SOURCE[kind], campaign)] += 1
    return v


def email_visit(w: World, p: Person, at: datetime, pages: int | None = None,
                campaign: str | None = None) -> Visit | None:
    """A click in the newsletter."""
    campaign = campaign or f"newsletter_{local(at).strftime('%Y_%m_%d')}"
    url = f"{SITE}/akcii?utm_source=newsletter&utm_medium=email&utm_campaign={campaign}"
    return visit(w, p, at, "email", pages, url=url, referrer="https://mail.google.com/", campaign=campaign)


def track(w: World, anon: str, ua: str, at: datetime, event: str, properties: dict[str, Any], page: str) -> str:
    """A track event of the tracker; returns its messageId."""
    mid = w.message_id()
    w.messages.append({
        "type": "track", "event": event, "messageId": mid, "anonymousId": anon, "timestamp": iso_z(at),
        "properties": properties,
        "context": {"page": {"url": page, "path": page[len(SITE):].split("?")[0] or "/"}, "userAgent": ua,
                    "locale": "ru-KZ"},
    })
    return mid


def login_on_both(w: World, p: Person, old: Visit, new: Visit, always: bool = False) -> None:
    """Most device switchers have an account on the shop's site and sign in on both devices
    (the site's identify call with its account id): the evidence that joins the two cookies.
    A separate generator per person, so the main sequence (and every other id) is unchanged."""
    if random.Random(f"{w.run}:login:{p.pid}").random() >= 0.75 and not always:
        return
    user_id = f"acc-{p.pid[1:]}"
    w.ids["user_id"][user_id] = p.pid
    for v in (old, new):
        ua = next(u for a, u in p.devices if a == v.anon)
        w.messages.append({
            "type": "identify", "messageId": w.message_id(), "anonymousId": v.anon, "userId": user_id,
            "timestamp": iso_z(v.end), "traits": {},
            "context": {"page": {"url": f"{SITE}/account", "path": "/account"}, "userAgent": ua, "locale": "ru-KZ"},
        })
