"""Pure processing steps. A step takes its state and an event and returns the new state and what
it emits. No Faust, FastAPI or ClickHouse here: both run modes call these same functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from pydantic import ValidationError

from schemas.envelope import Envelope
from schemas.reasons import RejectReason
from schemas.touch import Touch

from .channels import ChannelRules, classify

# Crawlers and headless browsers. Command-line and server clients (curl, SDKs) are not bots:
# server-side events legitimately come from them.
_BOT_MARKERS = ("bot", "crawler", "spider", "slurp", "headlesschrome", "lighthouse", "pingdom", "phantomjs", "prerender")


@dataclass(frozen=True)
class Emitted:
    """A step accepted its input and emits these records (possibly none)."""

    touches: tuple[Touch, ...] = ()


@dataclass(frozen=True)
class DeadLetter:
    """Input found invalid after acceptance; goes to the dead-letter topic with its reason."""

    reason: RejectReason
    detail: str
    payload: bytes


StepResult = Union[Emitted, DeadLetter]


def is_bot(user_agent: str | None) -> bool:
    ua = (user_agent or "").lower()
    return any(marker in ua for marker in _BOT_MARKERS)


def decode(payload: bytes) -> Envelope | DeadLetter:
    try:
        return Envelope.from_bytes(payload)
    except ValidationError as exc:
        return DeadLetter(RejectReason.undecodable, str(exc)[:500], payload)


def touch_of_pageview(rules: ChannelRules, env: Envelope) -> Touch:
    ctx = env.context
    where = classify(rules, ctx.page_url, ctx.referrer, ctx.campaign)
    return Touch(
        touch_id=env.event_id,
        project=env.project,
        anonymous_id=env.anonymous_id or "",
        user_id=env.user_id,
        started_at=env.timestamp,
        source=where.source,
        medium=where.medium,
        campaign=where.campaign,
        content=where.content,
        term=where.term,
        click_id_type=where.click_id_type,
        channel=where.channel,
        landing_url=ctx.page_url or "",
        referrer_host=where.referrer_host,
        is_bot=is_bot(ctx.user_agent),
    )


def process(rules: ChannelRules, payload: bytes) -> StepResult:
    """The step chain for one raw envelope. Sessions, identity and attribution join here later."""
    env = decode(payload)
    if isinstance(env, DeadLetter):
        return env
    if env.type == "pageview":
        return Emitted(touches=(touch_of_pageview(rules, env),))
    return Emitted()
