"""WhatsApp Cloud API (Meta) webhooks: /webhooks/whatsapp/<project webhook secret> is the app's
WhatsApp webhook Callback URL, subscribed to the `messages` field.

GET, the verification handshake: ?hub.mode=subscribe&hub.verify_token=<config verify_token>&
hub.challenge=<n> -> 200 text/plain with the challenge; a wrong mode or token -> 403 bad_signature.

POST, notifications: X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, key = config
app_secret (the Meta app's App Secret)>. Body: {"object": "whatsapp_business_account", "entry": [{"id":
<WABA id>, "changes": [{"field": "messages", "value": {"metadata": {"phone_number_id": ...},
"contacts": [...], "messages": [...], "statuses": [...]}}]}]}. Each entry of value.messages[] (several
entries, changes and messages may come in one POST) is a Message draft (family message, platform
whatsapp, direction in):
  * identity "chat" and "phone" = messages[].from, the sender's wa_id: the phone number in international
    format without '+' (the collector hashes both; a chat is a person's, verified by the platform);
  * the tracker's ref code (`MT-XXXXXXXX` in the text, see messaging.py) -> Message.ref_code and
    identity "ref"; UTM tags written in the text -> Message.text_campaign and the event's
    context.campaign. The text is read from text.body, a button's text or title, or a media caption;
  * a click-to-WhatsApp ad's messages[].referral (only on the first message after the ad click) ->
    Message.ad_referral: source_url, source_id (the ad id), source_type, ctwa_clid (the click id for
    Meta's Conversions API), headline, body, media_type;
  * event id whatsapp:<digest>, Message.message_id <digest>, where digest = the first 32 hex digits of
    sha256(wamid): a wamid is base64 of a structure holding the sender's phone number, so it is
    never stored as sent.
Ignored (acknowledged, no drafts): statuses[] (sent/delivered/read/failed receipts), system messages,
changes of other fields (account_update, template status, message echoes ...), other objects.
Meta retries failed deliveries for days; the event ids make a redelivery a duplicate.

Config keys: app_secret (POST, required), verify_token (GET handshake, required for it),
phone_number_ids (optional list or comma-separated string: only these business numbers'
messages count, when one Meta app serves several projects).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from pydantic import ValidationError

from schemas.families import MESSAGE, Message
from schemas.reasons import RejectReason
from schemas.values import reason_of

from .base import Accepted, Draft, Refused, Reply, VendorRequest, VendorResult, not_configured, same_secret
from .calls import Bad, as_text, moment, secret_of, show, why
from .messaging import context_campaign, ref_code, text_campaign
from .signing import matches_hex

VENDOR = "whatsapp"
HEADER = "x-hub-signature-256"
OBJECT = "whatsapp_business_account"
REFERRAL_KEYS = ("source_url", "source_id", "source_type", "ctwa_clid", "headline", "body", "media_type")
_CHALLENGE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_UTC = ZoneInfo("UTC")


def map_request(req: VendorRequest) -> VendorResult:
    if req.method.upper() == "GET":
        return handshake(req)
    secret = secret_of(req.config.get("app_secret"))
    if secret is None:
        return not_configured(VENDOR, "the app secret (config app_secret)")
    if not matches_hex(secret, req.body, req.header(HEADER), prefix="sha256="):
        return Refused(RejectReason.bad_signature, f"{VENDOR}: X-Hub-Signature-256 does not match "
                       "sha256=HMAC(app_secret, body)", 401)
    try:
        data = orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        return Refused(RejectReason.invalid_json, f"{VENDOR}: body is not JSON: {exc}")
    if not isinstance(data, dict):
        return Refused(RejectReason.schema_violation, f"{VENDOR}: body must be a JSON object")
    if data.get("object") != OBJECT:
        return Accepted((), ignored=f"{VENDOR}: object {show(data.get('object'))} is not {OBJECT}")
    numbers = _numbers(req.config.get("phone_number_ids"))
    try:
        drafts, skipped = _drafts(data, req, numbers)
    except Bad as exc:
        return Refused(RejectReason.schema_violation, f"{VENDOR}: {exc}")
    except ValidationError as exc:
        return Refused(reason_of(exc), f"{VENDOR}: {why(exc)}")
    ignored = ", ".join(f"{n} {what}" for what, n in skipped.items())
    return Accepted(tuple(drafts), ignored=f"{VENDOR}: ignored {ignored}" if ignored else "")


def handshake(req: VendorRequest) -> VendorResult:
    """Meta's GET verification of the Callback URL (PHP-style hub_mode names are read too)."""
    token = secret_of(req.config.get("verify_token"))
    if token is None:
        return not_configured(VENDOR, "the verify token (config verify_token)")
    q = req.query
    mode = q.get("hub.mode") or q.get("hub_mode")
    given = q.get("hub.verify_token") or q.get("hub_verify_token")
    challenge = q.get("hub.challenge") or q.get("hub_challenge")
    if mode != "subscribe":
        return Refused(RejectReason.bad_signature, f"{VENDOR}: hub.mode is {show(mode)}, not 'subscribe'", 403)
    if not same_secret(given, token):
        return Refused(RejectReason.bad_signature, f"{VENDOR}: hub.verify_token does not match config verify_token",
                       403)
    if not challenge or not _CHALLENGE.fullmatch(challenge):
        return Refused(RejectReason.schema_violation, f"{VENDOR}: hub.challenge is missing or not a plain token")
    return Accepted((), Reply(200, challenge.encode(), "text/plain"), ignored=f"{VENDOR}: verification handshake")


def _drafts(data: dict[str, Any], req: VendorRequest, numbers: frozenset[str] | None
            ) -> tuple[list[Draft], Counter[str]]:
    drafts: list[Draft] = []
    skipped: Counter[str] = Counter()
    for i, entry in enumerate(_list(data.get("entry"), "entry")):
        where = f"entry[{i}]"
        if not isinstance(entry, dict):
            raise Bad(f"{where} must be an object")
        for j, change in enumerate(_list(entry.get("changes", []), f"{where}.changes")):
            at = f"{where}.changes[{j}]"
            if not isinstance(change, dict):
                raise Bad(f"{at} must be an object")
            if change.get("field") != "messages":
                skipped[f"change(s) of field {show(change.get('field'))}"] += 1
                continue
            value = change.get("value")
            if not isinstance(value, dict):
                raise Bad(f"{at}.value must be an object")
            metadata = value.get("metadata") if isinstance(value.get("metadata"), dict) else {}
            if numbers is not None and as_text(metadata.get("phone_number_id")) not in numbers:
                skipped["change(s) for a phone_number_id not in phone_number_ids"] += 1
                continue
            skipped["status update(s)"] += len(_list(value.get("statuses", []), f"{at}.value.statuses"))
            for k, msg in enumerate(_list(value.get("messages", []), f"{at}.value.messages")):
                draft = _draft(msg, f"{at}.value.messages[{k}]", req.received_at)
                if draft is None:
                    skipped["system message(s)"] += 1
                else:
                    drafts.append(draft)
    return drafts, +skipped


def _draft(msg: Any, where: str, received_at: datetime) -> Draft | None:
    if not isinstance(msg, dict):
        raise Bad(f"{where} must be an object")
    if msg.get("type") == "system":
        return None
    wamid = msg.get("id")
    if not isinstance(wamid, str) or not wamid.strip():
        raise Bad(f"{where}.id is required (the wamid)")
    digest = hashlib.sha256(wamid.strip().encode()).hexdigest()[:32]
    sender = msg.get("from")
    sender = sender.strip()[:64] if isinstance(sender, str) else str(sender) if type(sender) is int else None
    text = message_text(msg)
    code = ref_code(text)
    tags = text_campaign(text)
    referral = msg.get("referral") if isinstance(msg.get("referral"), dict) else {}
    ad = {key: value for key in REFERRAL_KEYS if (value := as_text(referral.get(key))) is not None}
    message = Message(platform="whatsapp", message_id=digest, direction="in", ref_code=code,
                      text_campaign=tags, ad_referral=ad)
    identity: dict[str, str] = {}
    if sender:
        identity["chat"] = identity["phone"] = sender.lstrip("+")
    if code:
        identity["ref"] = code
    when = moment(msg.get("timestamp"), f"{where}.timestamp", _UTC) or received_at
    return Draft(schema=MESSAGE, event_id=f"{VENDOR}:{digest}", timestamp=when, properties=message,
                 identity=identity, campaign=context_campaign(tags))


def message_text(msg: dict[str, Any]) -> str | None:
    """What the sender wrote: text.body, a quick-reply button's text, an interactive reply's title,
    or a media caption."""
    candidates = [
        (msg.get("text"), "body"),
        (msg.get("button"), "text"),
    ]
    interactive = msg.get("interactive")
    if isinstance(interactive, dict):
        candidates += [(interactive.get("button_reply"), "title"), (interactive.get("list_reply"), "title")]
    candidates += [(msg.get(kind), "caption") for kind in ("image", "video", "document")]
    for holder, key in candidates:
        if isinstance(holder, dict) and isinstance(holder.get(key), str):
            return holder[key]
    return None


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Bad(f"{where} must be a list")
    return value


def _numbers(value: Any) -> frozenset[str] | None:
    if value is None or value == "":
        return None
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        items = [items]
    found = frozenset(t for i in items if (t := as_text(i)) is not None)
    return found or None
