"""What Mebel Almaty is: the shop, its site and catalogue, the vendor accounts it is wired to, the
ad campaigns and their budgets, and the shape of its traffic (where new people come from, how
they come back, how many a day). Data only, no randomness: the generator draws from it."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

ALMATY = ZoneInfo("Asia/Almaty")
BUSINESS = "Mebel Almaty"
SITE = "https://mebel-almaty.kz"
CURRENCY = "KZT"

# --- the vendor accounts ------------------------------------------------------------------------

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


def secret(seed: int, what: str) -> str:
    """A vendor secret of the demo: derived from the seed, so a re-run signs with the same keys."""
    return hashlib.sha256(f"mebel-almaty-demo|{seed}|{what}".encode()).hexdigest()[:32]


def vendor_accounts(seed: int) -> dict[str, dict[str, Any]]:
    """{vendor: settings} of the shop's integrations (what `projects configure` stores)."""
    return {
        "payment": {"secret": secret(seed, "payment")},
        "calls": {"secret": secret(seed, "calls"), "timezone": "Asia/Almaty", "region": "KZ"},
        "whatsapp": {"app_secret": secret(seed, "whatsapp"), "verify_token": secret(seed, "wa-verify")[:16],
                     "phone_number_ids": [WA_PHONE_NUMBER_ID]},
        "amocrm": {"account_id": AMO_ACCOUNT, "subdomain": AMO_SUBDOMAIN, "currency": CURRENCY,
                   "stages": {STAGE_NEW: "open", STAGE_CONSULT: "open", STAGE_MEASURE: "open",
                              STAGE_INVOICE: "open"},
                   "fields": {AMO_ANON_FIELD: "anonymous_id"}},
        "calltracking": {"numbers": list(POOL), "default": DEFAULT_NUMBER, "lease_minutes": str(LEASE_MINUTES),
                         "grace_minutes": "15"},
    }


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


def price_of(slug: str) -> int:
    """The catalogue price of a product with a fixed price."""
    return next(x[3] for x in PRODUCTS if x[1] == slug)


def title(path: str) -> str:
    """The <title> of a page of the site."""
    if path == "/":
        return "Mebel Almaty — мебель в Алматы с доставкой"
    if path.startswith("/catalog/"):
        return f"{CATEGORIES.get(path.split('/')[2], 'Каталог')} — Mebel Almaty"
    if path.startswith("/product/"):
        slug = path.split("/")[2]
        return next((f"{name} — Mebel Almaty" for name, s, _, _ in PRODUCTS if s == slug), "Mebel Almaty")
    return next((f"{t} — Mebel Almaty" for p, t in INFO_PAGES if p == path), "Mebel Almaty")


# --- channels: how a visit arrives, and what the ads cost ------------------------------------------

# paid campaigns by kind (our label): (utm_campaign, category of the landing page, search terms)
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
ARRIVAL_HOURS = tuple(zip(range(8, 24), (2, 3, 5, 6, 7, 7, 6, 6, 6, 6, 7, 8, 9, 10, 9, 6)))  # local hour, weight

# --- the people ---------------------------------------------------------------------------------

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
