"""A realistic demo business, "Mebel Almaty" (an online furniture shop in Almaty, tenge), loaded
ONLY through the public HTTP interfaces, reproducible by a seed.

    plan = generate(seed=42, days=90)                # pure: everything built in memory, no I/O
    settings = vendor_settings(plan)                 # apply with `moneytrail projects configure` first
    result = load(plan, "http://127.0.0.1:8080", creds, progress=lambda done, total: ...)
    result.ground_truth_path                         # JSON: who is who, true channels, totals

What is in it (seed 42, scale=1.0, 90 days; `scale` multiplies the daily traffic):
- ~4 600 people (~4 800 anonymous ids: ~200 people switch device), ~7 300 visits, ~23 000
  pageviews, arriving through Google Ads, Yandex Direct, Instagram and TikTok ads, Telegram Ads
  (all tagged with utm + gclid / yclid / fbclid / ttclid), organic search (google.kz, yandex.kz
  referrers), Kaspi (kaspi.kz referrer), 2GIS, Instagram bio links and direct returns; an email
  newsletter every Tuesday to the people who left a contact. Journeys span days; some switch
  device (phone <-> desktop); three in four of those sign in to their shop account on both
  devices (an identify with the account id), the evidence the identity graph joins them by.
- ~400 enquiries: site forms ("Form Submitted" with a phone), phone calls, WhatsApp chats
  (the tracker's "Messenger Link Clicked" with a ref code, then a message carrying MT-XXXXXXXX).
- each enquiry becomes an amoCRM deal (leads[add] + contacts[add], then leads[status] through
  open stages to won 142 / lost 143) with prices; won deals are paid through the generic signed
  `payment` webhook (in full, or 50 % prepayment + the rest at delivery), a few are partly
  refunded, some customers buy again weeks later online; Kaspi buyers order in the Kaspi app or pay
  with Kaspi QR on the site (payments that name no deal: each is a sale). ~120 sales, ~47 M KZT
  revenue, ~7.5 M KZT spend.
- ad spend per day and campaign through POST /api/spend: Google + Yandex as a plain CSV, the
  social networks as a Russian spreadsheet (`;`, `1 500,50`, Russian headers), the SEO
  contractor's monthly invoice split by day and the newsletter's cost as JSON rows.

Every message has a `timestamp` (past times: the server keeps them) and an id derived from the
seed and the parameters (messageId, call_id, wamid, deal ids, payment ids), so loading the same
plan twice adds no lead, sale, payment or spend (spend re-imports replace the same days). Visits
are not yet idempotent server-side: re-sent old pageviews are sessionized again as late hits
(an xfail in tests/integration/test_demo_load.py). The ids include `today`: a run on another
day is another dataset.

How enquiries are joined to visits (what the server does today, and what the demo sends):
- forms: the Form Submitted event carries the visitor's anonymous id: joined directly.
- calls: a call-tracking number is leased to a visitor by POST /api/calltracking/lease, and the
  server credits a call to whoever held the dialled number at that moment. Leases are taken at
  the server's current time, so history cannot be leased: the historical calls are sent through
  the generic `calls` webhook with the caller's phone, the dialled pool number and, when the
  caller was on the site, the tracker's `anonymous_id` (a field calls.py reads; a PBX
  integration that knows the visitor does the same). Calls to the static number on the 2GIS card
  and calls shown the default number (pool exhausted) carry no visitor. A few "live" calls (when
  `today` is the current date) go the real way: load() leases a number for the visitor, then
  sends the call to that number WITHOUT any visitor id, and the server's lease join finds them.
- WhatsApp: the message carries the ref code that the visitor's "Messenger Link Clicked" event
  also carries, and the sender's phone; the server stores both as identifiers but does not yet
  stitch identities, so WhatsApp leads (and the deals and payments that follow) are unattributed
  in reports.
- amoCRM deals carry the visitor's anonymous id in a custom field (id 1119325, mapped by the
  amoCRM `fields` setting) when the enquiry came from a site form or a call with a known visitor:
  the site's form integration / the call tracker writes it, as real integrations do. The shop's
  backend copies it into `customer.anonymous_id` of the deal's payments. Kaspi app orders know
  only the buyer's phone; Kaspi QR and online repeat orders on the site know the visitor.

The ground truth (ground_truth(plan) / the JSON written by load) gives, for every identifier
(anonymous ids, phones in E.164, ref codes, deal ids, payment ids, call ids, chats) the TRUE person;
for every lead, sale, payment and refund its TRUE first-touch and last-non-direct channel over
all of the person's visits on every device (channel rules: the default channels.toml, computed
by stream_processors.channels.classify exactly as the server does) and the channel the server
is expected to report (by the visitor id it can see); totals as the server counts them (leads =
forms + unique inbound calls + chats + CRM deals created; sales = won deals + payments naming no
deal; revenue = payments + refunds) and spend per source and channel.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time as dtime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
import orjson

from stream_processors.channels import ChannelRules, classify

UTC = timezone.utc
ALMATY = ZoneInfo("Asia/Almaty")
BUSINESS = "Mebel Almaty"
SITE = "https://mebel-almaty.kz"
CURRENCY = "KZT"
LOOKBACK_DAYS = 90
LEAD_REPEAT_DAYS = 30  # the server's default MONEYTRAIL_LEAD_REPEAT_DAYS
UNATTRIBUTED = "(unattributed)"
WEBHOOK_SLOT = "{webhook_secret}"  # replaced by the project's webhook secret at load time
BATCH = 100  # Segment messages per /v1/batch request

AMO_ACCOUNT = "29000001"
AMO_SUBDOMAIN = "mebelalmaty"
AMO_PIPELINE = "6254262"
AMO_ANON_FIELD = "1119325"
AMO_UTM_FIELDS = {"source": "1119321", "medium": "1119322", "campaign": "1119323"}
STAGE_NEW, STAGE_CONSULT, STAGE_MEASURE, STAGE_INVOICE, STAGE_WON, STAGE_LOST = (
    "53861254", "53861255", "53861256", "53861257", "142", "143")
WA_PHONE_NUMBER_ID = "106540352242922"
WA_WABA_ID = "102290129340398"
POOL = tuple(f"+7727300{n:04d}" for n in range(101, 111))  # call-tracking pool (Almaty landlines)
DEFAULT_NUMBER = "+77273000100"  # shown when the pool is exhausted
STATIC_2GIS = "+77273000200"  # the number on the 2GIS card (static, not a pool number)
LEASE_MINUTES = 20
PBX = "mebel-pbx"  # Call.vendor of our calls: conversion ids are lead:call:<vendor>:<call_id>

MOBILE_PREFIXES = ("700", "701", "702", "705", "707", "708", "747", "771", "775", "776", "777", "778")

# --- the catalogue ------------------------------------------------------------------------------

# (name, slug, category, price in tenge; None = made to measure)
PRODUCTS = (
    ("Диван «Милан» 3-местный", "divan-milan-3", "divany", 289_990),
    ("Угловой диван «Барселона»", "divan-barselona", "divany", 459_990),
    ("Диван-кровать «Лион»", "divan-krovat-lion", "divany", 219_990),
    ("Шкаф-купе «Вега» 2 м", "shkaf-kupe-vega-2", "shkafy", 349_990),
    ("Шкаф-купе «Вега» 3 м", "shkaf-kupe-vega-3", "shkafy", 529_990),
    ("Кровать «Оскар» 160×200", "krovat-oskar-160", "krovati", 189_990),
    ("Матрас «Ортопед Люкс» 160×200", "matras-ortoped-lux", "krovati", 129_990),
    ("Обеденный стол «Тоскана»", "stol-toskana", "stoly", 149_990),
    ("Стул «Венеция»", "stul-venecia", "stoly", 34_990),
    ("Комод «Нордик»", "komod-nordik", "hranenie", 89_990),
    ("Прихожая «Астана»", "prihozhaya-astana", "hranenie", 179_990),
    ("Детская «Балапан»", "detskaya-balapan", "detskaya", 399_990),
    ("Кухня на заказ", "kuhni-na-zakaz", "kuhni", None),
)
CATEGORIES = {"divany": "Диваны", "shkafy": "Шкафы-купе", "krovati": "Кровати и матрасы", "stoly": "Столы и стулья",
              "hranenie": "Комоды и прихожие", "detskaya": "Детская мебель", "kuhni": "Кухни на заказ"}
INFO_PAGES = (("/dostavka", "Доставка и сборка"), ("/kontakty", "Контакты"), ("/akcii", "Акции"),
              ("/otzyvy", "Отзывы"), ("/rassrochka", "Рассрочка Kaspi Red"))
KASPI_ITEMS = ("stul-venecia", "komod-nordik", "matras-ortoped-lux", "krovat-oskar-160", "prihozhaya-astana",
               "divan-krovat-lion", "stol-toskana")
ONLINE_ITEMS = ("stul-venecia", "komod-nordik", "matras-ortoped-lux", "stol-toskana", "prihozhaya-astana")

# --- channels: how a visit arrives ----------------------------------------------------------------

# paid campaigns: (kind, utm_source, campaign, category of the landing page, terms)
CAMPAIGNS: dict[str, tuple[tuple[str, str, tuple[str, ...]], ...]] = {
    "google_ads": (("poisk_divany", "divany", ("купить диван алматы", "диваны алматы недорого", "угловой диван")),
                   ("poisk_shkafy", "shkafy", ("шкаф купе алматы", "шкаф купе на заказ")),
                   ("brand_mebel_almaty", "", ("mebel almaty", "мебель алматы"))),
    "yandex_direct": (("divany_poisk", "divany", ("диван купить", "диван алматы")),
                      ("kuhni_poisk", "kuhni", ("кухня на заказ алматы", "кухонный гарнитур"))),
    "yandex_retarget": (("rsya_retarget", "", ()),),
    "instagram_ads": (("reels_divany", "divany", ()), ("carousel_spalnya", "krovati", ())),
    "instagram_retarget": (("retarget_catalog", "", ()),),
    "tiktok_ads": (("tt_interior", "divany", ()),),
    "telegram_ads": (("tg_dizain_kanaly", "kuhni", ()),),
}
SPEND_SOURCE = {"google_ads": "google", "yandex_direct": "yandex", "yandex_retarget": "yandex",
                "instagram_ads": "instagram", "instagram_retarget": "instagram", "tiktok_ads": "tiktok",
                "telegram_ads": "telegram"}
COST_PER_VISIT = {"google": 1900, "yandex": 1500, "instagram": 1100, "tiktok": 650, "telegram": 1300}
SEO_MONTHLY = Decimal("450000.00")

# first arrivals: share of new people, chance they ever enquire
FIRST = {
    "google_ads": (0.20, 0.11), "yandex_direct": (0.11, 0.10), "instagram_ads": (0.17, 0.07),
    "tiktok_ads": (0.11, 0.04), "telegram_ads": (0.04, 0.06), "google_organic": (0.11, 0.12),
    "yandex_organic": (0.06, 0.10), "kaspi": (0.07, 0.05), "2gis": (0.04, 0.14), "instagram_bio": (0.05, 0.09),
    "direct": (0.04, 0.12),
}
RETURNS = (("direct", 0.36), ("google_organic", 0.08), ("yandex_organic", 0.03), ("yandex_retarget", 0.10),
           ("instagram_retarget", 0.10), ("instagram_bio", 0.08), ("same", 0.25))
AFTER_LEAD = (("direct", 0.6), ("instagram_bio", 0.1), ("google_organic", 0.1), ("same", 0.2))
NEW_PEOPLE_PER_DAY = 48.0
WEEKDAY = (1.0, 0.95, 0.95, 1.0, 1.05, 1.25, 1.2)  # Monday .. Sunday

UA_MOBILE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-A546E) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile "
    "Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; Redmi Note 12) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Mobile "
    "Safari/537.36",
)
UA_DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
    "Safari/605.1.15",
)
NAMES = ("Айгерим", "Данияр", "Асель", "Ержан", "Мадина", "Нурлан", "Алия", "Тимур", "Жанна", "Арман", "Динара",
         "Санжар", "Камила", "Ильяс", "Гульнара", "Руслан", "Анна", "Сергей", "Ольга", "Бахыт")
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


# --- the plan -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlannedRequest:
    """One HTTP request of the load. path may hold WEBHOOK_SLOT; the write key is added at load."""

    kind: str  # batch | spend | webhook
    path: str
    body: bytes
    headers: tuple[tuple[str, str], ...]
    events: int  # messages / rows / webhook items it carries
    vendor: str = ""


@dataclass
class Visit:
    """One session (one touch): the hits of one visitor within 30 minutes, one attribution."""

    person: str
    anon: str
    start: datetime
    end: datetime
    kind: str  # how it arrived (our label: google_ads, direct ...)
    channel: str  # as classify() gives it with the default rules
    source: str
    medium: str
    campaign: str
    non_direct: bool
    live: bool = False


@dataclass
class Conversion:
    """A conversion as the server counts it (one conversion_id), with the truth behind it."""

    conversion_id: str
    kind: str  # lead | sale | payment | refund
    via: str  # form | call | message | crm | payment
    at: datetime
    person: str
    anon: str  # the visitor id the server sees on it ('' = none)
    value: Decimal = Decimal(0)
    ref: dict[str, str] = field(default_factory=dict)
    live: bool = False


@dataclass
class LiveCall:
    """A call placed while load() runs: a lease for the visitor, a pageview, a call to the number."""

    person: str
    anon: str
    user_agent: str
    caller: str  # E.164
    call_id: str
    page_message_id: str
    page_url: str


@dataclass
class DemoPlan:
    seed: int
    days: int
    today: date
    scale: float
    run_key: str
    start: datetime  # first instant of the demo period (UTC)
    end: datetime  # first instant after it: `today` 00:00 UTC (historical events are all before it)
    requests: list[PlannedRequest]
    messages: list[dict[str, Any]]  # every Segment message, in time order (also inside requests)
    live: list[LiveCall]
    secrets: dict[str, dict[str, Any]]
    visits: list[Visit]
    conversions: list[Conversion]
    spend_rows: list[dict[str, Any]]  # {date, source, medium, campaign, cost (Decimal), ...}
    identifiers: dict[str, dict[str, str]]  # kind -> value -> person
    persons: dict[str, dict[str, Any]]
    counts: dict[str, int]

    def fingerprint(self) -> str:
        """A digest of everything that would be sent: equal plans send equal bytes."""
        h = hashlib.sha256()
        for r in self.requests:
            h.update(r.kind.encode() + b"\0" + r.path.encode() + b"\0" + r.body + b"\0")
            for k, v in r.headers:
                h.update(f"{k}:{v}\0".encode())
        for lc in self.live:
            h.update(orjson.dumps(lc.__dict__))
        return h.hexdigest()


@dataclass
class DemoResult:
    events: int
    requests: int
    ground_truth_path: Path
    summary: dict


class DemoLoadError(RuntimeError):
    def __init__(self, what: str, status: int, body: str) -> None:
        super().__init__(f"{what}: HTTP {status}: {body[:2000]}")
        self.status = status
        self.body = body


# --- helpers --------------------------------------------------------------------------------------

def _iso_z(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _local(dt: datetime) -> datetime:
    return dt.astimezone(ALMATY)


def _money(value: Decimal | int | float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _ru_number(value: Decimal | int) -> str:
    """1500.5 -> '1 500,50' (a Russian spreadsheet); integers without decimals."""
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ")
    whole, _, cents = f"{value:.2f}".partition(".")
    return f"{int(whole):,}".replace(",", " ") + "," + cents


def _sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _weighted(rng: random.Random, pairs: Iterable[tuple[str, float]]) -> str:
    items = list(pairs)
    total = sum(w for _, w in items)
    x = rng.random() * total
    for name, w in items:
        x -= w
        if x < 0:
            return name
    return items[-1][0]


def _geometric(rng: random.Random, p: float) -> int:
    """Failures before the first success (p = chance of success)."""
    return int(math.log(1.0 - rng.random()) / math.log(1.0 - p))


# --- generation -------------------------------------------------------------------------------------

@dataclass
class _Person:
    pid: str
    devices: list[tuple[str, str]]  # (anonymous id, user agent)
    mobile: bool
    phone: str | None = None
    name: str = ""
    visits: list[Visit] = field(default_factory=list)
    subscribed_at: datetime | None = None
    customer_since: datetime | None = None
    first_kind: str = ""

    @property
    def device(self) -> tuple[str, str]:
        return self.devices[-1]


class _Builder:
    def __init__(self, seed: int, days: int, today: date, scale: float, live_calls: bool) -> None:
        self.seed, self.days, self.today, self.scale = seed, days, today, scale
        self.rng = random.Random(seed)
        key = f"moneytrail-demo|{seed}|{days}|{today.isoformat()}|{scale!r}"
        self.run = hashlib.sha256(key.encode()).hexdigest()[:10]
        self.num = int(self.run[:6], 16) % 900 + 100  # a 3-digit run prefix for numeric vendor ids
        self.end = datetime.combine(today, dtime.min, UTC)
        self.start = self.end - timedelta(days=days)
        self.rules = ChannelRules.load()
        self.persons: list[_Person] = []
        self.messages: list[dict[str, Any]] = []
        self.visits: list[Visit] = []
        self.conversions: list[Conversion] = []
        self.calls: list[tuple[datetime, dict[str, Any]]] = []
        self.whatsapp: list[tuple[datetime, dict[str, Any]]] = []
        self.amocrm: list[tuple[datetime, list[tuple[str, str]], int]] = []
        self.payments: list[tuple[datetime, dict[str, Any]]] = []
        self.ids: dict[str, dict[str, str]] = defaultdict(dict)
        self.phones: set[str] = set()
        self.counter = Counter()
        self.paid_visits: Counter[tuple[date, str, str]] = Counter()
        self.live: list[LiveCall] = []
        self.live_wanted = live_calls
        self.secrets = {
            "payment": {"secret": self._secret("payment")},
            "calls": {"secret": self._secret("calls"), "timezone": "Asia/Almaty", "region": "KZ"},
            "whatsapp": {"app_secret": self._secret("whatsapp"), "verify_token": self._secret("wa-verify")[:16],
                         "phone_number_ids": [WA_PHONE_NUMBER_ID]},
            "amocrm": {"account_id": AMO_ACCOUNT, "subdomain": AMO_SUBDOMAIN, "currency": CURRENCY,
                       "stages": {STAGE_NEW: "open", STAGE_CONSULT: "open", STAGE_MEASURE: "open",
                                  STAGE_INVOICE: "open"},
                       "fields": {AMO_ANON_FIELD: "anonymous_id"}},
            "calltracking": {"numbers": list(POOL), "default": DEFAULT_NUMBER, "lease_minutes": str(LEASE_MINUTES),
                             "grace_minutes": "15"},
        }

    # ids -----------------------------------------------------------------------------------------
    def _secret(self, what: str) -> str:
        return hashlib.sha256(f"mebel-almaty-demo|{self.seed}|{what}".encode()).hexdigest()[:32]

    def next(self, what: str) -> int:
        self.counter[what] += 1
        return self.counter[what]

    def message_id(self) -> str:
        return f"demo-{self.run}-{self.next('message'):06d}"

    def anon(self) -> str:
        r = self.rng.getrandbits(128)
        h = f"{r:032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[r % 4]}{h[17:20]}-{h[20:32]}"

    def new_phone(self) -> str:
        while True:
            phone = f"+7{self.rng.choice(MOBILE_PREFIXES)}{self.rng.randrange(10**7):07d}"
            if phone not in self.phones and phone[5] != "0":
                self.phones.add(phone)
                return phone

    def phone_of(self, p: _Person) -> str:
        if p.phone is None:
            p.phone = self.new_phone()
            self.ids["phone"][p.phone] = p.pid
        return p.phone

    def phone_written(self, e164: str) -> str:
        """The same number as people type it."""
        d = e164[2:]
        return self.rng.choice((e164, f"+7 {d[:3]} {d[3:6]} {d[6:8]} {d[8:]}", f"8 ({d[:3]}) {d[3:6]}-{d[6:8]}-{d[8:]}",
                                f"8{d}", f"+7 ({d[:3]}) {d[3:6]} {d[6:]}"))

    def ref_code(self) -> str:
        return "".join(self.rng.choice(CROCKFORD) for _ in range(8))

    # time ------------------------------------------------------------------------------------------
    def daytime(self, at: datetime, first: int = 8, last: int = 24) -> datetime:
        """at, moved forward into local hours [first, last) when it falls at night."""
        local = _local(at)
        if local.hour < first:
            local = local.replace(hour=first, minute=self.rng.randrange(60), second=self.rng.randrange(60))
        elif local.hour >= last:
            local = (local + timedelta(days=1)).replace(hour=first, minute=self.rng.randrange(60),
                                                        second=self.rng.randrange(60))
        return local.astimezone(UTC).replace(microsecond=0)

    def arrival_time(self, day: int) -> datetime:
        d = self.start.date() + timedelta(days=day)
        hour = _weighted(self.rng, [(str(h), w) for h, w in zip(range(8, 24), (
            2, 3, 5, 6, 7, 7, 6, 6, 6, 6, 7, 8, 9, 10, 9, 6))])
        minute, second = self.rng.randrange(60), self.rng.randrange(60)
        local = datetime(d.year, d.month, d.day, int(hour), minute, second, tzinfo=ALMATY)
        return local.astimezone(UTC)

    # visits ----------------------------------------------------------------------------------------
    def landing(self, kind: str, first_kind: str) -> tuple[str, str, str, str]:
        """(landing url, referrer, campaign, category) of a visit arriving by kind."""
        rng = self.rng
        category = rng.choice(list(CATEGORIES))
        if kind in CAMPAIGNS:
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

    def visit(self, p: _Person, at: datetime, kind: str, pages: int | None = None,
              device: tuple[str, str] | None = None, url: str | None = None, referrer: str = "",
              campaign: str = "") -> Visit | None:
        """A session of p from `at`: the landing hit and internal pages. None if past the end."""
        rng = self.rng
        at = at.replace(microsecond=0)
        if at >= self.end - timedelta(minutes=30):
            return None
        anon, ua = device or p.device
        # one visitor's sessions never touch: a hit within 30 minutes of another session would join it
        while any(x.anon == anon and x.start - timedelta(hours=1) < at < x.end + timedelta(hours=1) for x in p.visits):
            at = at + timedelta(hours=2)
        if at >= self.end - timedelta(minutes=30):
            return None
        category = ""
        if url is None:
            url, referrer, campaign, category = self.landing(kind, p.first_kind)
        if pages is None:
            pages = 1 if rng.random() < 0.35 else min(2 + _geometric(rng, 0.3), 9)
        where = classify(self.rules, url, referrer or None, None)
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
            self.messages.append({
                "type": "page", "messageId": self.message_id(), "anonymousId": anon, "timestamp": _iso_z(when),
                "context": {"page": {"url": page_url, "referrer": ref, "path": path, "title": _title(path)},
                            "userAgent": ua, "locale": "ru-KZ"},
                "properties": {},
            })
        v = Visit(person=p.pid, anon=anon, start=at, end=t, kind=kind, channel=where.channel, source=where.source,
                  medium=where.medium, campaign=where.campaign, non_direct=not where.is_direct)
        p.visits.append(v)
        self.visits.append(v)
        if kind in SPEND_SOURCE:
            self.paid_visits[(at.date(), SPEND_SOURCE[kind], campaign)] += 1
        return v

    def track(self, anon: str, ua: str, at: datetime, event: str, properties: dict[str, Any], page: str) -> str:
        mid = self.message_id()
        self.messages.append({
            "type": "track", "event": event, "messageId": mid, "anonymousId": anon, "timestamp": _iso_z(at),
            "properties": properties,
            "context": {"page": {"url": page, "path": page[len(SITE):].split("?")[0] or "/"}, "userAgent": ua,
                        "locale": "ru-KZ"},
        })
        return mid

    def new_person(self, first_kind: str) -> _Person:
        mobile_share = 0.92 if first_kind in ("instagram_ads", "tiktok_ads", "instagram_bio", "kaspi") else 0.72
        mobile = self.rng.random() < mobile_share
        p = _Person(pid=f"P{len(self.persons) + 1:05d}", devices=[], mobile=mobile, first_kind=first_kind,
                    name=self.rng.choice(NAMES))
        self.add_device(p, mobile)
        self.persons.append(p)
        return p

    def add_device(self, p: _Person, mobile: bool) -> None:
        anon = self.anon()
        p.devices.append((anon, self.rng.choice(UA_MOBILE if mobile else UA_DESKTOP)))
        self.ids["anonymous_id"][anon] = p.pid

    def return_kind(self, first_kind: str, table: tuple[tuple[str, float], ...] = RETURNS) -> str:
        kind = _weighted(self.rng, table)
        if kind == "same":
            kind = first_kind
        return kind

    def gap(self, mean_days: float = 2.0) -> timedelta:
        return timedelta(hours=max(3.0, self.rng.expovariate(1.0 / (24 * mean_days))))

    # journeys ------------------------------------------------------------------------------------------
    def journey(self, day: int, first_kind: str) -> None:
        rng = self.rng
        p = self.new_person(first_kind)
        enquires = rng.random() < FIRST[first_kind][1]
        sessions = 1 + min(_geometric(rng, 0.45), 5) if enquires else 1 + min(_geometric(rng, 0.7), 4)
        switch_at = rng.randrange(1, sessions) if sessions >= 2 and rng.random() < 0.14 else None
        at = self.arrival_time(day)
        last: Visit | None = None
        for i in range(sessions):
            before_switch = last if i == switch_at else None
            if i == switch_at:
                self.add_device(p, not p.mobile)
            kind = first_kind if i == 0 else self.return_kind(first_kind)
            pages = min(max(3, 2 + _geometric(rng, 0.35)), 10) if enquires and i == sessions - 1 else None
            v = self.visit(p, self.daytime(at), kind, pages)
            if v is None:
                return
            if before_switch is not None:
                self.login_on_both(p, before_switch, v)
            last = v
            at = v.end + self.gap()
        if rng.random() < 0.03:  # the newsletter pop-up
            p.subscribed_at = last.end
        if enquires:
            self.enquiry(p, last)
        elif first_kind == "kaspi" and rng.random() < 0.09:
            self.kaspi_order(p, last)

    def login_on_both(self, p: _Person, old: Visit, new: Visit, always: bool = False) -> None:
        """Most device switchers have an account on the shop's site and sign in on both devices
        (the site's identify call with its account id): the evidence that joins the two cookies.
        A separate generator per person, so the main sequence (and every other id) is unchanged."""
        if random.Random(f"{self.run}:login:{p.pid}").random() >= 0.75 and not always:
            return
        user_id = f"acc-{p.pid[1:]}"
        self.ids["user_id"][user_id] = p.pid
        for visit in (old, new):
            ua = next(u for a, u in p.devices if a == visit.anon)
            self.messages.append({
                "type": "identify", "messageId": self.message_id(), "anonymousId": visit.anon, "userId": user_id,
                "timestamp": _iso_z(visit.end), "traits": {},
                "context": {"page": {"url": f"{SITE}/account", "path": "/account"}, "userAgent": ua, "locale": "ru-KZ"},
            })

    def enquiry(self, p: _Person, v: Visit) -> None:
        rng = self.rng
        anon, ua = p.device
        desktop = ua in UA_DESKTOP
        if p.first_kind == "2gis":
            method = _weighted(rng, (("call", 0.7), ("whatsapp", 0.2), ("form", 0.1)))
        elif desktop:
            method = _weighted(rng, (("form", 0.6), ("call", 0.25), ("whatsapp", 0.15)))
        else:
            method = _weighted(rng, (("whatsapp", 0.45), ("call", 0.25), ("form", 0.3)))
        at = v.end + timedelta(seconds=rng.randrange(10, 90))
        phone = self.phone_of(p)
        page = f"{SITE}/catalog/{rng.choice(list(CATEGORIES))}"
        deal_anon = ""
        if method == "form":
            form = rng.choice((("callback", "Перезвоните мне"), ("measure", "Вызвать замерщика"),
                               ("quiz", "Подобрать диван за 1 минуту")))
            mid = self.track(anon, ua, at, "Form Submitted",
                             {"form_id": form[0], "form_name": form[1], "phone": self.phone_written(phone)}, page)
            self.conversions.append(Conversion(f"lead:form:{mid}", "lead", "form", at, p.pid, anon,
                                               ref={"message_id": mid}))
            deal_anon = anon
            deal_at = at + timedelta(seconds=rng.randrange(20, 120))
        elif method == "call":
            at = self.daytime(at, 9, 21)
            if at >= self.end - timedelta(hours=1):
                return
            if p.first_kind == "2gis" and rng.random() < 0.5:
                number, known = STATIC_2GIS, False  # dialled from the 2GIS card: no visitor behind it
            elif rng.random() < 0.06:
                number, known = DEFAULT_NUMBER, False  # the pool was exhausted: the default number
            else:
                number, known = rng.choice(POOL), True
            call_anon = anon if known and at - v.end < timedelta(minutes=30) else ""
            call_id = self.call(p, at, number, unique=True, anon=call_anon, page=page)
            self.conversions.append(Conversion(f"lead:call:{PBX}:{call_id}", "lead", "call", at, p.pid, call_anon,
                                               ref={"call_id": call_id}))
            deal_anon = call_anon
            deal_at = at + timedelta(minutes=rng.randrange(3, 25))
            again = self.daytime(at + timedelta(hours=rng.randrange(18, 30)), 9, 21)
            if rng.random() < 0.3 and again < self.end:  # calls again the next day: not a new lead
                self.call(p, again, number, unique=False, anon="", page=None)
        else:
            chat_at = at
            code = None
            if rng.random() < 0.85:  # clicked the site's WhatsApp button: the tracker adds a ref code
                code = self.ref_code()
                self.ids["ref_code"][code] = p.pid
                self.track(anon, ua, at, "Messenger Link Clicked", {"platform": "whatsapp", "ref_code": code,
                                                                    "href": f"https://wa.me/77273000000"}, page)
                chat_at = at + timedelta(seconds=rng.randrange(20, 120))
            else:  # wrote from the Instagram profile, hours later
                chat_at = self.daytime(at + timedelta(hours=rng.uniform(1, 20)))
            if chat_at >= self.end - timedelta(hours=1):
                return
            first = self.whatsapp_message(p, chat_at, code)
            self.conversions.append(Conversion(f"lead:message:whatsapp:{phone[1:]}", "lead", "message", first, p.pid, "",
                                               ref={"chat": phone[1:], "ref_code": code or ""}))
            self.ids["chat"][phone[1:]] = p.pid
            t = first
            for _ in range(rng.randrange(0, 4)):  # the rest of the conversation, the same day
                t = t + timedelta(minutes=rng.randrange(2, 90))
                if _local(t).date() != _local(first).date() or t.date() != first.date() or t >= self.end:
                    break
                self.whatsapp_message(p, t, None)
            deal_at = first + timedelta(seconds=rng.randrange(30, 300))
        if deal_at >= self.end:
            return
        if p.subscribed_at is None:
            p.subscribed_at = deal_at
        self.deal(p, deal_at, method, deal_anon, v)
        # people come back to look again while the deal is open
        at = deal_at
        for _ in range(rng.choice((0, 0, 1, 1, 2))):
            at = at + self.gap(1.5)
            if self.visit(p, self.daytime(at), self.return_kind(p.first_kind, AFTER_LEAD)) is None:
                break

    def call(self, p: _Person, at: datetime, number: str, unique: bool, anon: str, page: str | None) -> str:
        rng = self.rng
        call_id = f"pbx-{self.run}-{self.next('call'):05d}"
        answered = rng.random() < 0.9
        duration = rng.randrange(40, 420) if answered else rng.randrange(5, 30)
        body: dict[str, Any] = {
            "call_id": call_id, "tracking_number": number, "caller": self.phone_written(self.phone_of(p)),
            "started_at": _local(at).strftime("%Y-%m-%d %H:%M:%S"), "duration_s": duration,
            "talk_s": max(duration - rng.randrange(5, 20), 0) if answered else 0, "answered": answered,
            "unique": unique, "direction": "in", "vendor": PBX,
        }
        if answered:
            body["recording_url"] = f"https://pbx.mebel-almaty.kz/rec/{call_id}.mp3"
        if anon:
            body["anonymous_id"] = anon
            body["page_url"] = page
        self.calls.append((at, body))
        self.ids["call_id"][call_id] = p.pid
        return call_id

    def whatsapp_message(self, p: _Person, at: datetime, code: str | None) -> datetime:
        rng = self.rng
        at = at.replace(microsecond=0)
        n = self.next("wamid")
        wamid = "wamid." + base64.b64encode(f"HBgL{self.run}{n:06d}FQIAEhgUM0FF".encode()).decode()
        if code:
            text = rng.choice(("Здравствуйте! Интересует диван, есть в наличии?",
                               "Добрый день! Хочу узнать цену на шкаф-купе",
                               "Здравствуйте, можно заказать замер кухни?", "Сәлеметсіз бе! Кровать бар ма?"))
            text = f"{text} MT-{code}"
        else:
            text = rng.choice(("А доставка по Алматы сколько?", "Можно в рассрочку?", "Спасибо, жду звонка",
                               "Какие цвета есть?", "Здравствуйте! Видела у вас в инстаграме диван, сколько стоит?"))
        digits = self.phone_of(p)[1:]
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "77273000000", "phone_number_id": WA_PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": p.name}, "wa_id": digits}],
            "messages": [{"from": digits, "id": wamid, "timestamp": str(int(at.timestamp())), "text": {"body": text},
                          "type": "text"}]}
        body = {"object": "whatsapp_business_account",
                "entry": [{"id": WA_WABA_ID, "changes": [{"field": "messages", "value": value}]}]}
        self.whatsapp.append((at, body))
        return at

    # CRM, money ------------------------------------------------------------------------------------------
    def deal(self, p: _Person, at: datetime, origin: str, anon: str, v: Visit) -> None:
        rng = self.rng
        at = at.replace(microsecond=0)
        deal_id = str(self.num * 10**6 + 31_000 + self.next("deal"))  # numeric, like amoCRM's
        contact_id = str(self.num * 10**6 + 43_000 + self.counter["deal"])
        amo = f"amocrm:{deal_id}"
        self.ids["deal"][amo] = p.pid
        self.ids["crm_contact"][f"amocrm:{contact_id}"] = p.pid
        items = self.basket(v)
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

        def lead_fields(prefix: str, status: str, updated: datetime, old: str | None,
                        price: Decimal | None) -> list[tuple[str, str]]:
            out = [(f"{prefix}[id]", deal_id), (f"{prefix}[name]", f"{name} #{deal_id[-5:]}"),
                   (f"{prefix}[status_id]", status), (f"{prefix}[pipeline_id]", AMO_PIPELINE),
                   (f"{prefix}[responsible_user_id]", "9040358"), (f"{prefix}[created_at]", str(int(at.timestamp()))),
                   (f"{prefix}[updated_at]", str(int(updated.timestamp()))), (f"{prefix}[account_id]", AMO_ACCOUNT)]
            if old:
                out.append((f"{prefix}[old_status_id]", old))
            if price is not None:  # amoCRM sends whole prices without decimals
                whole = price == price.to_integral_value()
                out.append((f"{prefix}[price]", str(int(price)) if whole else f"{price:.2f}"))
            for n, (fid, fname, value) in enumerate(custom):
                out += [(f"{prefix}[custom_fields][{n}][id]", fid), (f"{prefix}[custom_fields][{n}][name]", fname),
                        (f"{prefix}[custom_fields][{n}][values][0][value]", value)]
            return out

        account = [("account[id]", AMO_ACCOUNT), ("account[subdomain]", AMO_SUBDOMAIN),
                   ("account[_links][self]", f"https://{AMO_SUBDOMAIN}.amocrm.ru")]
        c = "contacts[add][0]"
        shown = self.phone_written(self.phone_of(p))
        contact = [(f"{c}[id]", contact_id), (f"{c}[name]", p.name), (f"{c}[responsible_user_id]", "9040358"),
                   (f"{c}[created_at]", str(int(at.timestamp()))), (f"{c}[updated_at]", str(int(at.timestamp()))),
                   (f"{c}[custom_fields][0][id]", "264911"), (f"{c}[custom_fields][0][name]", "Телефон"),
                   (f"{c}[custom_fields][0][code]", "PHONE"), (f"{c}[custom_fields][0][values][0][value]", shown),
                   (f"{c}[custom_fields][0][values][0][enum]", "WORK"),
                   (f"{c}[linked_leads_id][{deal_id}][ID]", deal_id)]
        estimate = amount if origin == "form" and rng.random() < 0.5 else None
        self.amocrm.append((at, lead_fields("leads[add][0]", STAGE_NEW, at, None, estimate) + contact + account, 2))
        self.conversions.append(Conversion(f"lead:crm:amocrm:{deal_id}", "lead", "crm", at, p.pid, anon,
                                           ref={"deal_id": amo}))

        win = {"form": 0.24, "call": 0.27, "whatsapp": 0.21}[origin]
        won = rng.random() < win
        path = [STAGE_CONSULT]
        if rng.random() < 0.7 or won:
            path.append(STAGE_MEASURE)
        path.append(STAGE_INVOICE)
        if won:
            path.append(STAGE_WON)
        else:
            path = path[:rng.randrange(1, len(path) + 1)] + [STAGE_LOST]
        t, old = at, STAGE_NEW
        for stage in path:
            hours = rng.uniform(0.3, 20) if stage == STAGE_CONSULT else rng.uniform(12, 96)
            t = self.daytime(t + timedelta(hours=hours), 9, 21)
            if t >= self.end:
                return  # still open at the end of the period
            price = amount if stage in (STAGE_INVOICE, STAGE_WON, STAGE_LOST) else estimate
            self.amocrm.append((t, lead_fields("leads[status][0]", stage, t, old, price) + account, 1))
            old = stage
        if not won:
            return
        self.conversions.append(Conversion(f"sale:deal:amocrm:{deal_id}", "sale", "crm", t, p.pid, anon, amount,
                                           ref={"deal_id": amo}))
        p.customer_since = p.customer_since or t
        # payments: in full, or half now and the rest at delivery
        customer = {"phone": self.phone_written(self.phone_of(p))}
        if anon:
            customer["anonymous_id"] = anon
        provider = rng.choice(("halyk_epay", "kaspi_pay", "kaspi_pay", "bank_transfer"))
        pay_at = self.daytime(t + timedelta(hours=rng.uniform(0.2, 20)), 9, 22)
        parts = [amount] if rng.random() < 0.4 else [_money(amount / 2), amount - _money(amount / 2)]
        paid: list[tuple[str, Decimal, datetime]] = []
        for n, part in enumerate(parts):
            if n:
                pay_at = self.daytime(pay_at + timedelta(days=rng.uniform(3, 14)), 9, 22)
            if pay_at >= self.end:
                break
            pid = f"mb-{self.run}-{self.next('payment'):05d}"
            self.payment(p, pay_at, pid, "payment", part, provider, customer, anon, deal=amo, order=f"D{deal_id}")
            paid.append((pid, part, pay_at))
        if paid and rng.random() < 0.06:  # one item came back damaged
            back = _money(amount * Decimal(rng.choice(("0.1", "0.15", "0.2", "0.3"))))
            when = self.daytime(paid[-1][2] + timedelta(days=rng.uniform(3, 15)), 9, 21)
            if when < self.end and back <= paid[-1][1]:
                self.payment(p, when, f"mb-{self.run}-{self.next('payment'):05d}", "refund", back, provider, customer,
                             anon, deal=amo, order=f"D{deal_id}", refund_of=paid[-1][0])
        if paid:
            self.repeat_purchase(p, paid[-1][2])

    def basket(self, v: Visit) -> list[tuple[str, Decimal]]:
        rng = self.rng
        if rng.random() < 0.1:
            return [("Кухня на заказ", _money(rng.randrange(85, 190) * 10_000))]
        chosen = [rng.choice([x for x in PRODUCTS if x[3] is not None and x[2] != "stoly"])]
        if rng.random() < 0.35:
            chosen.append(rng.choice([x for x in PRODUCTS if x[3] is not None]))
        items = [(name, _money(price)) for name, _, _, price in chosen]
        if rng.random() < 0.2:
            items.append(("Стул «Венеция» ×4", _money(4 * 34_990)))
        if rng.random() < 0.25:  # a discount agreed with the manager
            total = sum((x for _, x in items), Decimal(0))
            items.append(("Скидка", -_money(total * Decimal("0.05"))))
        return items

    def payment(self, p: _Person, at: datetime, payment_id: str, kind: str, amount: Decimal, provider: str,
                customer: dict[str, str], anon: str, deal: str | None = None, order: str | None = None,
                refund_of: str | None = None) -> None:
        at = at.replace(microsecond=0)
        item: dict[str, Any] = {"payment_id": payment_id, "provider": provider, "kind": kind, "amount": f"{amount:.2f}",
                                "currency": CURRENCY, "paid_at": _local(at).isoformat(), "status": "succeeded",
                                "customer": dict(customer)}
        if order:
            item["order_id"] = order
        if deal:
            item["deal_id"] = deal
        if refund_of:
            item["refund_of"] = refund_of
        self.payments.append((at, item))
        self.ids["payment"][payment_id] = p.pid
        value = amount if kind == "payment" else -amount
        self.conversions.append(Conversion(f"{'payment' if kind == 'payment' else 'refund'}:{provider}:{payment_id}",
                                           kind, "payment", at, p.pid, anon, value,
                                           ref={"payment_id": payment_id, "deal_id": deal or "", "provider": provider}))
        if kind == "payment" and not deal:  # a payment that names no deal is a sale too
            self.conversions.append(Conversion(f"sale:payment:{provider}:{payment_id}", "sale", "payment", at, p.pid,
                                               anon, amount, ref={"payment_id": payment_id, "provider": provider}))

    def kaspi_order(self, p: _Person, v: Visit) -> None:
        rng = self.rng
        slug = rng.choice(KASPI_ITEMS)
        price = _money(next(x[3] for x in PRODUCTS if x[1] == slug))
        if slug == "stul-venecia":
            price = _money(price * 4)
        phone = self.phone_of(p)
        if rng.random() < 0.4:  # paid with Kaspi QR in the site's checkout: the site knows the visitor
            at = v.end + timedelta(seconds=rng.randrange(30, 200))
            anon, provider, pid = v.anon, "kaspi_qr", f"kqr-{self.run}-{self.next('kaspi'):05d}"
            customer = {"phone": phone, "anonymous_id": anon}
        else:  # ordered in the Kaspi app: Kaspi tells the shop the buyer's phone only
            at = self.daytime(v.end + timedelta(hours=rng.uniform(0.2, 40)))
            anon, provider, pid = "", "kaspi", f"kaspi-{self.run}-{self.next('kaspi'):05d}"
            customer = {"phone": phone}
        if at >= self.end:
            return
        self.payment(p, at, pid, "payment", price, provider, customer, anon, order=f"K{pid[-9:]}")
        p.customer_since = p.customer_since or at
        if rng.random() < 0.05:
            when = self.daytime(at + timedelta(days=rng.uniform(2, 10)))
            if when < self.end:
                self.payment(p, when, f"{pid}-r", "refund", price, provider, customer, anon, order=f"K{pid[-9:]}",
                             refund_of=pid)
        else:
            self.repeat_purchase(p, at)

    def showcase(self) -> None:
        """One scripted cross-device buyer in every plan, so even a small or short demo shows what
        stitching recovers (random device switchers who then pay may be absent from a small sample):
        an Instagram ad click on the phone, two days later a direct visit on a laptop, signed in on
        both, and a web checkout on the laptop (a cookie-only join credits Direct; the person's
        journey says Paid Social), then a Kaspi app order naming only the phone. Runs after
        everything else, so no other id or number changes."""
        day = max(self.days - 8, 0)
        p = self.new_person("instagram_ads")
        if not p.mobile:  # the story starts on the phone: make its first device one
            p.mobile = True
            self.ids["anonymous_id"].pop(p.devices[0][0])
            p.devices.clear()
            self.add_device(p, True)
        phone_visit = self.visit(p, self.daytime(self.arrival_time(day)), "instagram_ads", pages=3)
        if phone_visit is None:
            return
        self.add_device(p, False)
        laptop_visit = self.visit(p, self.daytime(phone_visit.end + timedelta(days=2), 10, 20), "direct", pages=4)
        if laptop_visit is None:
            return
        self.login_on_both(p, phone_visit, laptop_visit, always=True)
        price = _money(next(x[3] for x in PRODUCTS if x[3] is not None))
        pay_at = laptop_visit.end + timedelta(seconds=90)
        if pay_at >= self.end:
            return
        self.track(laptop_visit.anon, p.device[1], pay_at - timedelta(seconds=30), "Checkout Started",
                   {"value": f"{price:.2f}", "currency": CURRENCY}, f"{SITE}/checkout")
        pid = f"web-{self.run}-{self.next('web'):05d}"
        self.payment(p, pay_at, pid, "payment", price, "halyk_epay",
                     {"phone": self.phone_of(p), "anonymous_id": laptop_visit.anon}, laptop_visit.anon,
                     order=f"W{pid[-9:]}")
        p.customer_since = pay_at
        # two days later chairs to match, ordered in the Kaspi app: Kaspi names only the phone, which
        # a cookie-only join cannot place (unattributed); the checkout joined that phone to the person
        kaspi_at = self.daytime(pay_at + timedelta(days=2), 10, 20)
        if kaspi_at >= self.end:
            return
        chairs = _money(4 * next(x[3] for x in PRODUCTS if x[1] == "stul-venecia"))
        kid = f"kaspi-{self.run}-{self.next('kaspi'):05d}"
        self.payment(p, kaspi_at, kid, "payment", chairs, "kaspi", {"phone": self.phone_of(p)}, "", order=f"K{kid[-9:]}")

    def repeat_purchase(self, p: _Person, after: datetime) -> None:
        rng = self.rng
        if rng.random() >= 0.14:
            return
        at = self.daytime(after + timedelta(days=rng.uniform(10, 60)))
        kind = _weighted(rng, (("email", 0.4), ("direct", 0.35), ("instagram_bio", 0.25)))
        if kind == "email":
            v = self.email_visit(p, at, pages=4)
        else:
            v = self.visit(p, at, kind, pages=4)
        if v is None:
            return
        slug = rng.choice(ONLINE_ITEMS)
        price = _money(next(x[3] for x in PRODUCTS if x[1] == slug) * rng.choice((1, 1, 2, 4)))
        pay_at = v.end + timedelta(seconds=rng.randrange(60, 400))
        if pay_at >= self.end:
            return
        self.track(v.anon, p.device[1], pay_at - timedelta(seconds=30), "Checkout Started", {"value": f"{price:.2f}",
                   "currency": CURRENCY}, f"{SITE}/checkout")
        pid = f"web-{self.run}-{self.next('web'):05d}"
        self.payment(p, pay_at, pid, "payment", price, "halyk_epay", {"phone": self.phone_of(p), "anonymous_id": v.anon},
                     v.anon, order=f"W{pid[-9:]}")

    def email_visit(self, p: _Person, at: datetime, pages: int | None = None,
                    campaign: str | None = None) -> Visit | None:
        campaign = campaign or f"newsletter_{_local(at).strftime('%Y_%m_%d')}"
        url = f"{SITE}/akcii?utm_source=newsletter&utm_medium=email&utm_campaign={campaign}"
        return self.visit(p, at, "email", pages, url=url, referrer="https://mail.google.com/", campaign=campaign)

    def newsletters(self) -> list[tuple[date, int]]:
        """Every Tuesday at 11:00 Almaty a newsletter to the subscribers; some click."""
        sends = []
        d = self.start.date()
        while d < self.end.date():
            if d.weekday() == 1:
                send = datetime(d.year, d.month, d.day, 11, 0, tzinfo=ALMATY).astimezone(UTC)
                subscribers = [p for p in self.persons if p.subscribed_at and p.subscribed_at < send]
                sends.append((d, len(subscribers)))
                campaign = f"newsletter_{d.strftime('%Y_%m_%d')}"
                for p in subscribers:
                    if self.rng.random() < 0.07:
                        at = self.daytime(send + timedelta(hours=min(self.rng.expovariate(1 / 6), 48)))
                        if not any(abs((x.start - at).total_seconds()) < 7200 for x in p.visits):
                            self.email_visit(p, at, campaign=campaign)
            d += timedelta(days=1)
        return sends

    def live_calls(self) -> None:
        """A few visitors of the last week come back today and call the number the site shows them."""
        wanted = max(1, round(3 * self.scale)) if self.scale >= 0.1 else 0
        recent = [p for p in self.persons if p.phone is None and p.visits and not any(v.live for v in p.visits)
                  and p.visits[-1].start >= self.end - timedelta(days=7)]
        for p in recent[:wanted] if len(recent) <= wanted else self.rng.sample(recent, wanted):
            anon, ua = p.device
            phone = self.phone_of(p)
            call_id = f"pbx-{self.run}-live-{self.next('live'):03d}"
            mid = self.message_id()
            url = f"{SITE}/kontakty"
            nominal = self.end + timedelta(hours=5)
            v = Visit(person=p.pid, anon=anon, start=nominal, end=nominal, kind="direct", channel="Direct",
                      source="(direct)", medium="(none)", campaign="", non_direct=False, live=True)
            p.visits.append(v)
            self.visits.append(v)
            self.live.append(LiveCall(p.pid, anon, ua, phone, call_id, mid, url))
            self.ids["call_id"][call_id] = p.pid
            self.conversions.append(Conversion(f"lead:call:{PBX}:{call_id}", "lead", "call", nominal + timedelta(minutes=3),
                                               p.pid, anon, ref={"call_id": call_id, "joined_by": "lease"}, live=True))

    # spend -----------------------------------------------------------------------------------------
    def spend(self, sends: list[tuple[date, int]]) -> list[dict[str, Any]]:
        rng = self.rng
        rows = []
        d = self.start.date()
        while d < self.end.date():
            for kind, campaigns in CAMPAIGNS.items():
                source = SPEND_SOURCE[kind]
                for campaign, _, _ in campaigns:
                    visits = self.paid_visits.get((d, source, campaign), 0)
                    base = rng.uniform(600, 1800) * self.scale  # impressions that brought no click
                    cost = _money(visits * COST_PER_VISIT[source] * rng.uniform(0.85, 1.15) + base)
                    clicks = round(visits * rng.uniform(1.15, 1.45)) + rng.randrange(0, 3)
                    rows.append({"date": d, "source": source, "medium": "cpc", "campaign": campaign, "cost": cost,
                                 "clicks": clicks, "impressions": clicks * rng.randrange(30, 90) + rng.randrange(200, 900)})
            d += timedelta(days=1)
        # the SEO contractor: a monthly invoice, split evenly by day (the last day takes the rounding)
        d = self.start.date()
        while d < self.end.date():
            first = d.replace(day=1)
            nxt = (first + timedelta(days=32)).replace(day=1)
            month_days = (nxt - first).days
            per_day = _money(SEO_MONTHLY / month_days)
            cost = SEO_MONTHLY - per_day * (month_days - 1) if d == nxt - timedelta(days=1) else per_day
            rows.append({"date": d, "source": "seo", "medium": "organic", "campaign": "seo_contract", "cost": cost,
                         "clicks": 0, "impressions": 0})
            d += timedelta(days=1)
        for d, subscribers in sends:  # the email service: a fee per send plus per recipient
            rows.append({"date": d, "source": "email", "medium": "email",
                         "campaign": f"newsletter_{d.strftime('%Y_%m_%d')}",
                         "cost": _money(Decimal(3500) + Decimal("2.5") * subscribers), "clicks": 0,
                         "impressions": subscribers})
        return rows


def _title(path: str) -> str:
    if path == "/":
        return "Mebel Almaty — мебель в Алматы с доставкой"
    if path.startswith("/catalog/"):
        return f"{CATEGORIES.get(path.split('/')[2], 'Каталог')} — Mebel Almaty"
    if path.startswith("/product/"):
        slug = path.split("/")[2]
        return next((f"{name} — Mebel Almaty" for name, s, _, _ in PRODUCTS if s == slug), "Mebel Almaty")
    return next((f"{t} — Mebel Almaty" for p, t in INFO_PAGES if p == path), "Mebel Almaty")


# --- requests ---------------------------------------------------------------------------------------

def _spend_requests(rows: list[dict[str, Any]]) -> list[PlannedRequest]:
    """Three imports, each holding whole (day, source) pairs: a plain CSV (Google, Yandex), a
    Russian spreadsheet (Instagram, TikTok, Telegram) and JSON rows (SEO, the newsletter)."""
    out = []
    plain = [r for r in rows if r["source"] in ("google", "yandex")]
    lines = ["date,source,medium,campaign,cost,currency,clicks,impressions"]
    lines += [f"{r['date'].isoformat()},{r['source']},{r['medium']},{r['campaign']},{r['cost']:.2f},{CURRENCY},"
              f"{r['clicks']},{r['impressions']}" for r in plain]
    out.append(PlannedRequest("spend", "/api/spend", ("\n".join(lines) + "\n").encode(),
                              (("Content-Type", "text/csv"),), len(plain)))
    social = [r for r in rows if r["source"] in ("instagram", "tiktok", "telegram")]
    names = {"instagram": "Instagram", "tiktok": "TikTok", "telegram": "Telegram"}
    lines = ["Дата;Источник;utm_medium;Кампания;Расход;Валюта;Клики;Показы"]
    lines += [f"{r['date'].isoformat()};{names[r['source']]};{r['medium']};{r['campaign']};{_ru_number(r['cost'])};"
              f"{CURRENCY.lower()};{_ru_number(r['clicks'])};{_ru_number(r['impressions'])}" for r in social]
    out.append(PlannedRequest("spend", "/api/spend", ("\ufeff" + "\r\n".join(lines) + "\r\n").encode(),
                              (("Content-Type", "text/csv; charset=utf-8"),), len(social)))
    other = [r for r in rows if r["source"] in ("seo", "email")]
    body = orjson.dumps({"rows": [{**r, "date": r["date"].isoformat(), "cost": f"{r['cost']:.2f}", "currency": CURRENCY}
                                  for r in other]})
    out.append(PlannedRequest("spend", "/api/spend", body, (("Content-Type", "application/json"),), len(other)))
    return out


def _webhook(vendor: str, body: bytes, headers: dict[str, str], events: int) -> PlannedRequest:
    return PlannedRequest("webhook", f"/webhooks/{vendor}/{WEBHOOK_SLOT}", body, tuple(headers.items()), events, vendor)


def generate(seed: int = 42, days: int = 90, today: date | None = None, scale: float = 1.0) -> DemoPlan:
    """The whole demo in memory (no I/O): deterministic for (seed, days, today, scale). With
    today=None the period ends yesterday (UTC) and a few calls are placed live during load()."""
    if days < 1 or scale <= 0:
        raise ValueError("days must be >= 1 and scale > 0")
    current = datetime.now(UTC).date()
    live = today is None or today == current
    today = today or current
    b = _Builder(seed, days, today, scale, live)
    for day in range(days):
        d = b.start.date() + timedelta(days=day)
        expected = NEW_PEOPLE_PER_DAY * scale * WEEKDAY[d.weekday()] * (0.9 + 0.2 * day / max(days - 1, 1))
        n = int(expected) + (1 if b.rng.random() < expected - int(expected) else 0)
        for _ in range(n):
            b.journey(day, _weighted(b.rng, ((k, v[0]) for k, v in FIRST.items())))
    sends = b.newsletters()
    if live:
        b.live_calls()
    spend_rows = b.spend(sends)
    b.showcase()

    requests = _spend_requests(spend_rows)
    messages = sorted(b.messages, key=lambda m: (m["timestamp"], m["messageId"]))
    for k in range(0, len(messages), BATCH):
        chunk = messages[k:k + BATCH]
        requests.append(PlannedRequest("batch", "/v1/batch", orjson.dumps({"batch": chunk}),
                                       (("Content-Type", "application/json"),), len(chunk)))
    secret = b.secrets["calls"]["secret"]
    calls = [body for _, body in sorted(b.calls, key=lambda x: (x[0], x[1]["call_id"]))]
    for k in range(0, len(calls), 100):  # the PBX exports calls in batches
        body = orjson.dumps({"calls": calls[k:k + 100]})
        requests.append(_webhook("calls", body, {"Content-Type": "application/json",
                                                 "X-Moneytrail-Signature": _sign(secret, body)}, len(calls[k:k + 100])))
    secret = b.secrets["whatsapp"]["app_secret"]
    for _, wa in sorted(b.whatsapp, key=lambda x: (x[0], x[1]["entry"][0]["changes"][0]["value"]["messages"][0]["id"])):
        body = orjson.dumps(wa)
        requests.append(_webhook("whatsapp", body, {"Content-Type": "application/json",
                                                    "X-Hub-Signature-256": _sign(secret, body)}, 1))
    for _, pairs, n in sorted(b.amocrm, key=lambda x: (x[0], x[1][0][1], len(x[1]))):
        requests.append(_webhook("amocrm", urlencode(pairs).encode(),
                                 {"Content-Type": "application/x-www-form-urlencoded"}, n))
    secret = b.secrets["payment"]["secret"]
    payments = [item for _, item in sorted(b.payments, key=lambda x: (x[0], x[1]["payment_id"]))]
    for k in range(0, len(payments), 50):
        body = orjson.dumps({"payments": payments[k:k + 50]})
        requests.append(_webhook("payment", body, {"Content-Type": "application/json",
                                                   "X-Moneytrail-Signature": _sign(secret, body)}, len(payments[k:k + 50])))

    persons = {p.pid: {"anonymous_ids": [a for a, _ in p.devices], "phone": p.phone, "first_arrival": p.first_kind,
                       "devices": len(p.devices)} for p in b.persons}
    counts = {
        "people": len(b.persons), "visitors": sum(len(p.devices) for p in b.persons),
        "cross_device_people": sum(1 for p in b.persons if len(p.devices) > 1),
        "visits": len(b.visits), "pageviews": sum(1 for m in messages if m["type"] == "page"),
        "segment_messages": len(messages), "calls": len(b.calls) + len(b.live), "whatsapp_messages": len(b.whatsapp),
        "amocrm_hooks": len(b.amocrm), "deals": b.counter["deal"], "payments": len(b.payments),
        "spend_rows": len(spend_rows), "live_calls": len(b.live),
    }
    return DemoPlan(seed=seed, days=days, today=today, scale=scale, run_key=b.run, start=b.start, end=b.end,
                    requests=requests, messages=messages, live=b.live, secrets=b.secrets, visits=b.visits,
                    conversions=b.conversions, spend_rows=spend_rows,
                    identifiers={k: dict(v) for k, v in b.ids.items()}, persons=persons, counts=counts)


def vendor_settings(plan: DemoPlan) -> dict[str, dict[str, Any]]:
    """{vendor: {key: value}} to apply with `moneytrail projects configure <project> <vendor>
    KEY=VALUE ...` before load(). Scalars are text; lists and mappings are sent as JSON."""
    return {vendor: {k: (list(v) if isinstance(v, (list, tuple)) else dict(v) if isinstance(v, dict) else v)
                     for k, v in values.items()} for vendor, values in plan.secrets.items()}


def configure_args(settings: dict[str, dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """The settings as `projects configure` arguments: [(vendor, ["KEY=VALUE", ...]), ...]."""
    out = []
    for vendor, values in settings.items():
        args = []
        for key, value in values.items():
            text = orjson.dumps(value).decode() if isinstance(value, (list, dict)) else str(value)
            args.append(f"{key}={text}")
        out.append((vendor, args))
    return out


# --- ground truth -------------------------------------------------------------------------------------

def _pick(visits: list[Visit], at: datetime, model: str, lookback_days: int) -> str:
    """The channel a model credits among visits that started in [at - lookback, at]."""
    window = [v for v in visits if at - timedelta(days=lookback_days) <= v.start <= at]
    if not window:
        return UNATTRIBUTED
    if model == "first_touch":
        return min(window, key=lambda v: v.start).channel
    if model == "last_touch":
        return max(window, key=lambda v: v.start).channel
    return max(window, key=lambda v: (v.non_direct, v.start)).channel


MODELS = ("first_touch", "last_touch", "last_non_direct")


def repeat_leads(plan: DemoPlan, lead_repeat_days: int = LEAD_REPEAT_DAYS) -> set[str]:
    """The leads the server counts as repeats: a person's lead within lead_repeat_days after their
    previous lead (an enquiry and the CRM deal made from it; the demo's person is the server's:
    every lead names the person's phone)."""
    leads: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for c in plan.conversions:
        if c.kind == "lead":
            leads[c.person].append((c.at, c.conversion_id))
    repeats: set[str] = set()
    for rows in leads.values():
        rows.sort()
        repeats |= {cid for (before, _), (at, cid) in zip(rows, rows[1:])
                    if at - before <= timedelta(days=lead_repeat_days)}
    return repeats


def ground_truth(plan: DemoPlan, lookback_days: int = LOOKBACK_DAYS) -> dict[str, Any]:
    """Who is who, the true and the expected (server-side) channel of every conversion, totals."""
    repeats = repeat_leads(plan)
    by_person: dict[str, list[Visit]] = defaultdict(list)
    by_anon: dict[str, list[Visit]] = defaultdict(list)
    for v in plan.visits:
        by_person[v.person].append(v)
        by_anon[v.anon].append(v)
    rules = ChannelRules.load()
    conversions = []
    for c in sorted(plan.conversions, key=lambda c: (c.at, c.conversion_id)):
        true = {m: _pick(by_person[c.person], c.at, m, lookback_days) for m in MODELS}
        server = {m: _pick(by_anon[c.anon], c.at, m, lookback_days) if c.anon else UNATTRIBUTED for m in MODELS}
        conversions.append({"conversion_id": c.conversion_id, "kind": c.kind, "via": c.via, "at": _iso_z(c.at),
                            "person": c.person, "anonymous_id": c.anon, "value": f"{c.value:.2f}", **c.ref,
                            "live": c.live, "repeat": c.conversion_id in repeats, "true": true, "expected": server})
    spend_by_source: dict[str, Decimal] = defaultdict(Decimal)
    spend_by_channel: dict[str, Decimal] = defaultdict(Decimal)
    for r in plan.spend_rows:
        source, medium = rules.fold_source(r["source"]), rules.fold_medium(r["medium"])
        spend_by_source[source] += r["cost"]
        spend_by_channel[rules.channel_of(source, medium)] += r["cost"]
    visits_by_channel = Counter(v.channel for v in plan.visits)

    def table(which: str, model: str) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = defaultdict(lambda: {"visits": 0, "leads": 0, "sales": 0,
                                                               "revenue": Decimal(0), "spend": Decimal(0)})
        for c in conversions:
            ch = c[which][model]
            if c["kind"] == "lead":
                rows[ch]["leads"] += 0 if c["repeat"] else 1
            elif c["kind"] == "sale":
                rows[ch]["sales"] += 1
            else:
                rows[ch]["revenue"] += Decimal(c["value"])
        for ch, n in visits_by_channel.items():
            rows[ch]["visits"] = n
        for ch, cost in spend_by_channel.items():
            rows[ch]["spend"] = cost
        return {ch: {**r, "revenue": f"{r['revenue']:.2f}", "spend": f"{r['spend']:.2f}"}
                for ch, r in sorted(rows.items())}

    kinds = Counter(c.kind for c in plan.conversions)
    revenue = sum((c.value for c in plan.conversions if c.kind in ("payment", "refund")), Decimal(0))
    unattributed = sum((Decimal(c["value"]) for c in conversions
                        if c["kind"] in ("payment", "refund") and c["expected"]["last_non_direct"] == UNATTRIBUTED),
                       Decimal(0))
    elsewhere = {m: sum((Decimal(c["value"]) for c in conversions if c["kind"] in ("payment", "refund")
                         and c["expected"][m] not in (UNATTRIBUTED, c["true"][m])), Decimal(0)) for m in MODELS}
    leads_by_via = Counter(c.via for c in plan.conversions if c.kind == "lead")
    spend = sum(spend_by_source.values(), Decimal(0))
    customers = {c.person for c in plan.conversions if c.kind == "sale"}
    return {
        "business": BUSINESS, "site": SITE, "currency": CURRENCY, "seed": plan.seed, "days": plan.days,
        "scale": plan.scale, "today": plan.today.isoformat(), "run_key": plan.run_key,
        "from": plan.start.date().isoformat(),
        "to": (plan.today if plan.live else plan.end.date() - timedelta(days=1)).isoformat(),
        "lookback_days": lookback_days,
        "notes": ("totals count as the server counts: leads = forms + unique inbound calls + WhatsApp chats + CRM deals "
                  f"created, a person's lead within {LEAD_REPEAT_DAYS} days after their previous one being a repeat "
                  "that counts nothing (the CRM deal made from an enquiry); sales = won deals + payments that name no deal; revenue = payments + refunds. 'true' = "
                  "over all the person's visits on every device; 'expected' = what a cookie-only join can see (the "
                  "conversion's own visitor id, or the lease for live calls; no identity stitching): the baseline that "
                  "stitching must beat. A WhatsApp chat's "
                  "conversion_id here holds the raw wa_id; the server's holds its keyed hash."),
        "identifiers": plan.identifiers,
        "persons": plan.persons,
        "conversions": conversions,
        "totals": {
            "visits": len(plan.visits), "leads": kinds["lead"] - len(repeats), "repeat_leads": len(repeats),
            "sales": kinds["sale"], "revenue": f"{revenue:.2f}",
            "payments": kinds["payment"], "refunds": kinds["refund"], "spend": f"{spend:.2f}",
            "leads_by_kind": dict(sorted(leads_by_via.items())),
            "enquiries": leads_by_via["form"] + leads_by_via["call"] + leads_by_via["message"],
            "customers": len(customers),
            "unattributed_revenue": f"{unattributed:.2f}",
            "unattributed_revenue_share": float(unattributed / revenue) if revenue else 0.0,
            # revenue the server credits to a channel other than the true one (a device switch)
            "misattributed_revenue": {m: f"{v:.2f}" for m, v in elsewhere.items()},
            "misattributed_revenue_share": {m: float(v / revenue) if revenue else 0.0 for m, v in elsewhere.items()},
        },
        "spend_by_source": {k: f"{v:.2f}" for k, v in sorted(spend_by_source.items())},
        "spend_by_channel": {k: f"{v:.2f}" for k, v in sorted(spend_by_channel.items())},
        "expected_report": {m: table("expected", m) for m in MODELS},
        "true_report": {m: table("true", m) for m in MODELS},
        "counts": plan.counts,
    }


def write_ground_truth(plan: DemoPlan, path: Path | str, extra: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    truth = ground_truth(plan)
    if extra:
        truth.update(extra)
    path.write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2))
    return path


# --- loading ---------------------------------------------------------------------------------------

def _send(client: httpx.Client, method: str, path: str, what: str, retries: Counter[str] | None = None,
          attempts: int = 8, **kw: Any) -> httpx.Response:
    """One request; 429/503 are retried after Retry-After, connection errors a few times; any other
    answer that is not 2xx raises DemoLoadError with its status and body."""
    for attempt in range(attempts):
        if attempt and retries is not None:
            retries[what] += 1
        try:
            resp = client.request(method, path, **kw)
        except httpx.TransportError as exc:
            if attempt == attempts - 1:
                raise DemoLoadError(what, 0, f"{type(exc).__name__}: {exc}") from exc
            time.sleep(0.2 * (attempt + 1))
            continue
        if resp.status_code in (429, 503) and attempt < attempts - 1:
            try:
                wait = float(resp.headers.get("retry-after", "1"))
            except ValueError:
                wait = 1.0
            time.sleep(min(max(wait, 0.2), 10.0))
            continue
        if not 200 <= resp.status_code < 300:
            raise DemoLoadError(what, resp.status_code, resp.text)
        return resp
    raise AssertionError("unreachable")


def _check_accepted(what: str, resp: httpx.Response, expected: int, key: str) -> None:
    try:
        data = resp.json()
    except ValueError:
        raise DemoLoadError(what, resp.status_code, resp.text) from None
    if data.get(key) != expected or data.get("rejected"):
        raise DemoLoadError(f"{what}: expected {key}={expected}", resp.status_code, resp.text)


def load(plan: DemoPlan, base_url: str, creds: dict, progress: Callable[[int, int], None] | None = None,
         ground_truth_path: Path | str | None = None, timeout: float = 30.0,
         transport: httpx.BaseTransport | None = None) -> DemoResult:
    """Send the plan over HTTP (keep-alive; Segment batches of 100), then the live calls, and write
    the ground truth (default: ./mebel-almaty-demo-<seed>.truth.json). Raises DemoLoadError on any
    answer that is not 2xx (after retrying 429/503)."""
    write_key, secret = creds["write_key"], creds["webhook_secret"]
    basic = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    total = len(plan.requests) + 3 * len(plan.live)
    done = events = 0
    started = time.perf_counter()
    timings: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    live_report = []
    with httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport,
                      limits=httpx.Limits(max_keepalive_connections=4, max_connections=4)) as client:
        for req in plan.requests:
            t0 = time.perf_counter()
            headers = dict(req.headers)
            what = f"{req.kind} {req.vendor or req.path}".strip()
            if req.kind == "batch":
                headers["Authorization"] = basic
            elif req.kind == "spend":
                headers["X-Write-Key"] = write_key
            resp = _send(client, "POST", req.path.replace(WEBHOOK_SLOT, secret), what, retries, content=req.body,
                         headers=headers)
            if req.kind == "batch":
                _check_accepted(what, resp, req.events, "accepted")
            elif req.kind == "spend":
                _check_accepted(what, resp, req.events, "rows")
            events += req.events
            done += 1
            timings[req.vendor or req.kind] += time.perf_counter() - t0
            if progress:
                progress(done, total)
        for lc in plan.live:
            resp = _send(client, "POST", "/api/calltracking/lease", "calltracking lease", retries,
                         json={"write_key": write_key, "anonymous_id": lc.anon})
            lease = resp.json()
            done += 1
            if progress:
                progress(done, total)
            if lease.get("expires_at"):  # the server's clock: a lease starts at most lease_minutes before it ends
                server_now = datetime.fromisoformat(lease["expires_at"]) - timedelta(minutes=LEASE_MINUTES)
            else:
                server_now = datetime.now(UTC)
            # the page was opened just before the tracker asked for a number; the call comes right after
            page_at = (server_now - timedelta(seconds=30)).replace(microsecond=0)
            call_at = max(datetime.now(UTC), server_now).replace(microsecond=0) + timedelta(seconds=1)
            context = {"page": {"url": lc.page_url, "referrer": "", "path": "/kontakty", "title": _title("/kontakty")},
                       "userAgent": lc.user_agent, "locale": "ru-KZ"}
            page = {"type": "page", "messageId": lc.page_message_id, "anonymousId": lc.anon,
                    "timestamp": _iso_z(page_at), "context": context, "properties": {}}
            resp = _send(client, "POST", "/v1/batch", "live pageview", retries, content=orjson.dumps({"batch": [page]}),
                         headers={"Authorization": basic, "Content-Type": "application/json"})
            _check_accepted("live pageview", resp, 1, "accepted")
            done += 1
            if progress:
                progress(done, total)
            call = {"call_id": lc.call_id, "tracking_number": lease["number"], "caller": lc.caller,
                    "started_at": call_at.isoformat(), "duration_s": 95, "talk_s": 80, "answered": True, "unique": True,
                    "direction": "in", "vendor": PBX}
            body = orjson.dumps({"calls": [call]})
            _send(client, "POST", f"/webhooks/calls/{secret}", "live call", retries, content=body,
                  headers={"Content-Type": "application/json",
                           "X-Moneytrail-Signature": _sign(plan.secrets["calls"]["secret"], body)})
            done += 1
            events += 2
            if progress:
                progress(done, total)
            live_report.append({"call_id": lc.call_id, "anonymous_id": lc.anon, "number": lease["number"],
                                "leased": bool(lease.get("lease_id")), "page_at": _iso_z(page_at),
                                "call_at": _iso_z(call_at)})
    seconds = time.perf_counter() - started
    path = Path(ground_truth_path) if ground_truth_path else Path.cwd() / f"mebel-almaty-demo-{plan.seed}.truth.json"
    unleased = {x["call_id"] for x in live_report if not x["leased"]}
    if unleased:  # the pool was exhausted: the server cannot join those calls to their visitor
        plan = replace(plan, conversions=[replace(c, anon="") if c.ref.get("call_id") in unleased else c
                                          for c in plan.conversions])
    write_ground_truth(plan, path, {"live_calls": live_report, "loaded_into": base_url})
    truth = orjson.loads(path.read_bytes())
    t = truth["totals"]
    summary = {
        "business": BUSINESS, "seed": plan.seed, "days": plan.days, "scale": plan.scale,
        "from": truth["from"], "to": truth["to"], **plan.counts,
        "leads": t["leads"], "enquiries": t["enquiries"], "sales": t["sales"], "revenue": t["revenue"],
        "spend": t["spend"], "unattributed_revenue_share": t["unattributed_revenue_share"],
        "requests": done, "events": events, "seconds": round(seconds, 2),
        "events_per_second": round(events / seconds) if seconds else None,
        "seconds_by_kind": {k: round(v, 2) for k, v in sorted(timings.items())},
        "retried": dict(retries),  # 429 (rate limits) / 503 answers waited out
        "live_calls_unleased": sum(1 for x in live_report if not x["leased"]),
    }
    return DemoResult(events=events, requests=done, ground_truth_path=path, summary=summary)
