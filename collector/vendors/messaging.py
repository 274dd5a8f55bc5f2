"""What the WhatsApp and Telegram mappers read in a message text. Pure functions.

Ref code. The website tracker decorates messenger links with a code that ties the first message to
the browser session that clicked: the token `MT-XXXXXXXX` (8 characters of Crockford base32:
0-9 A-Z without I, L, O, U) appended to the prefilled WhatsApp text ("Здравствуйте! Хочу заказать
диван MT-7K3QX9AB"), or the Telegram start payload `mt_7K3QX9AB` (the bot receives
"/start mt_7K3QX9AB"). Matched case-insensitively, with `-` or `_` after the prefix, as a whole
token (not inside a longer word); a trailing `_...` / `-...` extension is allowed. When a text
carries several codes the last one counts (the tracker appends its code at the end). The result is
the 8 characters upper-cased, without the prefix: "7K3QX9AB".

UTM tags written in a text ("(utm_source=google)", "utm_source=google&utm_medium=cpc", or a pasted
URL with them) become a dict keyed without the `utm_` prefix: {"source": "google", "medium": "cpc"}.
Values are URL-decoded ("buy+shoes" -> "buy shoes"); the first occurrence of a key wins.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CODE = "[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{8}"
# no re.IGNORECASE: with it, the Kelvin sign and other non-ASCII letters would match Latin ones
_REF = re.compile(rf"(?<![0-9A-Za-z])[Mm][Tt][-_]({_CODE})(?![0-9A-Za-z])")
_UTM = re.compile(
    r"(?<![0-9A-Za-z_])[Uu][Tt][Mm]_([A-Za-z0-9_]{1,32})[ \t]*=[ \t]*"
    r"([^\s&()\[\]{}<>,;\"'|#«»“”„]+)"
)
MAX_TEXT = 65536  # longer texts are read up to here (a messenger message is far shorter)
MAX_TAGS = 16
MAX_VALUE = 512


def ref_code(text: str | None) -> str | None:
    """The tracker's ref code in a message text or a start payload, upper-cased without its
    prefix; None when there is none."""
    if not isinstance(text, str) or not text:
        return None
    found = _REF.findall(text[:MAX_TEXT])
    return found[-1].upper() if found else None


def text_campaign(text: str | None) -> dict[str, str]:
    """UTM tags written in a message text, keyed without the utm_ prefix (lower-case keys)."""
    if not isinstance(text, str) or not text:
        return {}
    tags: dict[str, str] = {}
    for key, raw in _UTM.findall(text[:MAX_TEXT]):
        key = key.lower()
        if key in tags:
            continue
        value = unquote_plus(raw, errors="replace").strip().rstrip(".!?:").strip()
        if not value:
            continue
        tags[key] = value[:MAX_VALUE]
        if len(tags) >= MAX_TAGS:
            break
    return tags


def context_campaign(tags: dict[str, str]) -> dict[str, str]:
    """UTM tags (keys without the prefix) as an envelope's context.campaign, which follows the
    Segment spec: utm_campaign is "name" there (the channel classifier reads it so)."""
    out = {key: value for key, value in tags.items() if key not in ("campaign", "name")}
    if "campaign" in tags:
        out["name"] = tags["campaign"]
    return out
