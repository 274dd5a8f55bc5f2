"""Personal data never leaves the collector raw: phones (E.164) and emails are normalised, then
kept only as keyed HMAC hashes (identifiers for stitching) beside a masked display form."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import phonenumbers

# keys whose values are personal data: removed from traits/properties before anything is stored
PII_KEYS = frozenset({
    "phone", "phone_number", "phonenumber", "tel", "mobile", "email", "e-mail", "mail", "name", "first_name",
    "firstname", "last_name", "lastname", "full_name", "fullname", "middle_name", "address", "street",
    "birthday", "iin", "passport", "card", "card_number", "pan",
})
PHONE_KEYS = ("phone", "phone_number", "phonenumber", "tel", "mobile")
EMAIL_KEYS = ("email", "e-mail", "mail")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,63}$")


def normalise_phone(raw: str, default_region: str = "KZ", strict: bool = True) -> str | None:
    """E.164, or None when it is not a valid phone number (strict) or not even a possible one (not
    strict: for the business's own numbers, which may be new ranges libphonenumber does not know).
    Vendors often drop the '+' ('77011234567'); a leading 8 is the old Russian/Kazakh trunk prefix."""
    text = str(raw).strip()
    if not text or len(text) > 40:
        return None
    digits = re.sub(r"\D", "", text)
    candidates = [text]
    if not text.startswith("+") and len(digits) >= 10:
        candidates.append("+" + digits)
        if len(digits) == 11 and digits[0] == "8":
            candidates.append("+7" + digits[1:])
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, default_region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number) or (not strict and phonenumbers.is_possible_number(number)):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def normalise_email(raw: str) -> str | None:
    text = str(raw).strip().lower()
    if not _EMAIL.match(text):
        return None
    local, domain = text.rsplit("@", 1)
    if domain in ("gmail.com", "googlemail.com"):  # Gmail ignores dots and +tags
        local = local.split("+", 1)[0].replace(".", "")
        domain = "gmail.com"
    return f"{local}@{domain}"


def mask_phone(e164: str) -> str:
    return e164[:5] + "*" * max(len(e164) - 9, 0) + e164[-4:] if len(e164) > 9 else "***"


def mask_email(email: str) -> str:
    local, domain = email.split("@", 1)
    return (local[0] + "***" + (local[-1] if len(local) > 1 else "") + "@" + domain) if local else "***@" + domain


@lru_cache(maxsize=4096)  # the same visitor posts many events; ipaddress parsing is not free
def anonymise_ip(ip: str | None) -> str | None:
    """Last octet of IPv4, last 80 bits of IPv6 zeroed."""
    if not ip:
        return None
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)


@dataclass(frozen=True)
class Hasher:
    """Keyed hashes of identifiers, per project (the same phone in two projects hashes differently)."""

    key: bytes

    def __call__(self, project: str, kind: str, normalised: str) -> str:
        mac = hmac.new(self.key, f"{project}\x1f{kind}\x1f{normalised}".encode(), hashlib.sha256)
        return "h_" + mac.hexdigest()[:32]


@dataclass(frozen=True)
class Identity:
    ids: dict[str, str]
    masked: dict[str, str]


def extract_identity(hasher: Hasher, project: str, default_region: str, *sources: dict[str, Any]) -> Identity:
    """Phone and email found in the given dicts (traits, properties), hashed and masked."""
    ids: dict[str, str] = {}
    masked: dict[str, str] = {}
    for source in sources:
        lowered = {str(k).lower(): v for k, v in source.items() if isinstance(v, (str, int))}
        if "phone" not in ids:
            for key in PHONE_KEYS:
                if key in lowered and (phone := normalise_phone(str(lowered[key]), default_region)):
                    ids["phone"], masked["phone"] = hasher(project, "phone", phone), mask_phone(phone)
                    break
        if "email" not in ids:
            for key in EMAIL_KEYS:
                if key in lowered and (email := normalise_email(str(lowered[key]))):
                    ids["email"], masked["email"] = hasher(project, "email", email), mask_email(email)
                    break
    return Identity(ids, masked)


# Keys whose values are free text a person typed (a form's comment, a question): phones and emails
# written inside are masked, the rest of the text kept. Other string values (ids, URLs, codes) are
# left alone: a phone matcher would mangle order numbers and UUIDs.
FREE_TEXT_KEYS = frozenset({"comment", "comments", "message", "text", "note", "notes", "description", "question",
                            "body", "wishes", "details"})
_EMAIL_IN_TEXT = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DIGITS = re.compile(r"\d")


def scrub_text(text: str, region: str = "KZ") -> str:
    """Free text with the phone numbers and emails written in it replaced by [phone] / [email]."""
    if "@" in text:
        text = _EMAIL_IN_TEXT.sub("[email]", text)
    if len(_DIGITS.findall(text)) >= 7:  # no phone number has fewer digits
        found = [(m.start, m.end) for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE)]
        for start, end in reversed(found):
            text = text[:start] + "[phone]" + text[end:]
    return text


def without_pii(values: dict[str, Any], region: str = "KZ") -> dict[str, Any]:
    """The dict without personal-data keys (top level; nested dicts are cleaned too), and free-text
    values with the phones and emails in them masked."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        key = str(k).lower()
        if key in PII_KEYS:
            continue
        if isinstance(v, dict):
            out[k] = without_pii(v, region)
        elif key in FREE_TEXT_KEYS and isinstance(v, str):
            out[k] = scrub_text(v, region)
        else:
            out[k] = v
    return out
