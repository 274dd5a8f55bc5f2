"""Telegram Bot API webhooks: /webhooks/telegram/<project webhook secret> is the bot's webhook URL,
set with setWebhook(url=..., secret_token=<config secret_token>); Telegram then sends the header
X-Telegram-Bot-Api-Secret-Token with it on every update (missing config -> 401 not configured,
mismatch -> 401 bad_signature).

Body: one Update, {"update_id": 123, "message": {...}} or another kind. A `message` update (a
person writing to the bot) is a Message draft (family message, platform telegram, direction in):
  * identity "chat" = "telegram:<message.from.id>": the sender's user id, the same for every bot and
    chat, namespaced so it can never equal a WhatsApp wa_id (both are digit strings). The sender
    rather than message.chat.id, because a "chat" identifier is one person's, and in a group the chat
    is the group (in a private chat the two ids are equal). Hashed by the collector.
  * the tracker's ref code: a deep link https://t.me/<bot>?start=mt_7K3QX9AB makes the bot receive
    "/start mt_7K3QX9AB"; that code (or an `MT-XXXXXXXX` written in any text or caption, see
    messaging.py) -> Message.ref_code and identity "ref". UTM tags written in the text ->
    Message.text_campaign and the event's context.campaign.
  * a contact the sender shares of THEMSELVES (message.contact.user_id == from.id, the "share my
    phone" button) -> identity "phone" (hashed by the collector).
  * event id telegram:<config bot_id>:<update_id> (update ids are per bot), or telegram:<update_id>
    when bot_id is not set; Message.message_id = message.message_id (unique within its chat).
Ignored (acknowledged, no drafts): every other update kind (edited_message, channel_post,
callback_query, my_chat_member, business_message, ...), messages without a person as sender
(anonymous group admins, other bots).

Config keys: secret_token (required; 1-256 characters A-Z a-z 0-9 _ -), bot_id (optional; the
number before ':' in the bot token; set it when a project has several bots).
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import orjson
from pydantic import ValidationError

from schemas.families import MESSAGE, Message
from schemas.reasons import RejectReason
from schemas.values import reason_of

from .base import Accepted, Draft, Refused, VendorRequest, VendorResult, not_configured, same_secret
from .calls import CONFIG_ERROR, Bad, as_text, moment, secret_of, show, why
from .messaging import context_campaign, ref_code, text_campaign

VENDOR = "telegram"
HEADER = "x-telegram-bot-api-secret-token"
_UTC = ZoneInfo("UTC")


def map_request(req: VendorRequest) -> VendorResult:
    token = secret_of(req.config.get("secret_token"))
    if token is None:
        return not_configured(VENDOR, "the webhook secret token (config secret_token)")
    if not same_secret(req.header(HEADER), token):
        return Refused(RejectReason.bad_signature, f"{VENDOR}: X-Telegram-Bot-Api-Secret-Token does not match "
                       "config secret_token", 401)
    bot = req.config.get("bot_id")
    bot_id = as_text(bot, 64) if isinstance(bot, (str, int)) and not isinstance(bot, bool) else None
    if bot is not None and bot != "" and (bot_id is None or not bot_id.isdigit()):
        return Refused(RejectReason.schema_violation, f"{VENDOR}: config bot_id must be the bot's numeric id "
                       "(the digits before ':' in its token)", CONFIG_ERROR)
    try:
        update = orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        return Refused(RejectReason.invalid_json, f"{VENDOR}: body is not JSON: {exc}")
    if not isinstance(update, dict):
        return Refused(RejectReason.schema_violation, f"{VENDOR}: body must be an Update object")
    update_id = update.get("update_id")
    if isinstance(update_id, bool) or not isinstance(update_id, int) or update_id < 0:
        return Refused(RejectReason.schema_violation, f"{VENDOR}: update_id is required (a non-negative integer), "
                       f"got {show(update_id)}")
    if "message" not in update:
        kinds = ", ".join(sorted(str(k) for k in update if k != "update_id")[:3]) or "empty"
        return Accepted((), ignored=f"{VENDOR}: {kinds[:120]} update not counted (only message updates are)")
    event_id = f"{VENDOR}:{bot_id}:{update_id}" if bot_id else f"{VENDOR}:{update_id}"
    try:
        return _message(update.get("message"), event_id, req)
    except Bad as exc:
        return Refused(RejectReason.schema_violation, f"{VENDOR}: {exc}")
    except ValidationError as exc:
        return Refused(reason_of(exc), f"{VENDOR}: {why(exc)}")


def _message(message: Any, event_id: str, req: VendorRequest) -> VendorResult:
    if not isinstance(message, dict):
        raise Bad("message must be an object")
    message_id = message.get("message_id")
    if isinstance(message_id, bool) or not isinstance(message_id, int):
        raise Bad(f"message.message_id is required (an integer), got {show(message_id)}")
    sender = message.get("from")
    sender_id = sender.get("id") if isinstance(sender, dict) else None
    if isinstance(sender_id, bool) or not isinstance(sender_id, int):
        return Accepted((), ignored=f"{VENDOR}: message without a person as sender (channel or anonymous admin)")
    if sender.get("is_bot") is True:
        return Accepted((), ignored=f"{VENDOR}: message from a bot")
    text = message.get("text") if isinstance(message.get("text"), str) else message.get("caption")
    text = text if isinstance(text, str) else None
    code = ref_code(text)
    tags = text_campaign(text)
    identity = {"chat": f"{VENDOR}:{sender_id}"}
    contact = message.get("contact")
    owner = contact.get("user_id") if isinstance(contact, dict) else None
    if type(owner) is int and owner == sender_id:
        phone = as_text(contact.get("phone_number"), 64)
        if phone:
            identity["phone"] = phone
    if code:
        identity["ref"] = code
    when = moment(message.get("date"), "message.date", _UTC) or req.received_at
    props = Message(platform="telegram", message_id=str(message_id), direction="in", ref_code=code,
                    text_campaign=tags)
    return Accepted((Draft(schema=MESSAGE, event_id=event_id, timestamp=when, properties=props,
                           identity=identity, campaign=context_campaign(tags)),))
