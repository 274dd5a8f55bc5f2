"""Which vendors the webhook route knows. Each name is a module in this package exposing
`map_request(req: VendorRequest) -> VendorResult`."""

from __future__ import annotations

import importlib
from functools import cache

from .base import Mapper

VENDORS = (
    "stripe", "yookassa", "cloudpayments", "payment",  # payments (payment = generic JSON + HMAC)
    "amocrm", "bitrix24", "crm",  # CRMs (crm = generic JSON + HMAC)
    "calls", "calltouch", "ringostat",  # call tracking (calls = generic JSON)
    "whatsapp", "telegram",  # messengers
)
CONFIGURABLE = VENDORS + ("calltracking",)  # project settings: the webhooks, and the call-tracking number pool


@cache
def mapper_of(vendor: str) -> Mapper | None:
    if vendor not in VENDORS:
        return None
    try:
        module = importlib.import_module(f"{__package__}.{vendor}")
    except ModuleNotFoundError:
        return None
    return module.map_request
