"""Sessionization: one visitor's hits become sessions, and each session is one touch.

Pure: the state of ONE visitor (key = project + anonymous_id) and one hit in, the new state and
the touches to emit out. No Faust, FastAPI or ClickHouse here; the state is stored per visitor
(RocksDB in the Faust worker) through `VisitorSessions.to_bytes()` / `from_bytes()`.

Rules, for a hit arriving in time order (hit.at >= the open session's last_seen):

* No open session, or more than `timeout` (30 min, configurable) since the session's last hit:
  a new session opens. A gap of exactly `timeout` still joins.
* A direct hit (`attribution.is_direct`) within the timeout joins the open session and never
  replaces its source: the session keeps the attribution of the hit that opened it.
* A non-direct hit whose fingerprint (source, medium, campaign, click id value) equals the open
  session's joins it: a reload of a tagged landing page, or a second click on the same organic
  result, is not a new visit.
* A non-direct hit with a different fingerprint opens a new session at once (a new campaign, a
  new gclid value, a new referrer), whatever the time since the last hit.

Late hits (hit.at < last_seen: a delayed beacon; one visitor's events are otherwise in order
because they share a Kafka partition):

* within [started_at - timeout, last_seen] and direct or of the same fingerprint: joins the open
  session. The touch_id does not change; started_at is lowered if the hit is earlier than it
  (and the touch is re-emitted then, since its started_at changed); last_seen does not move.
* within that window but non-direct with a different fingerprint: emits its own one-hit touch
  (touch_id = its event_id) and leaves the state unchanged; the open session stays current.
* older than started_at - timeout: emits its own one-hit touch (even if direct) and leaves the
  state unchanged. We keep one session in the state, so we cannot know what it would have joined.

Identity of a touch: its touch_id is the event_id of the hit that opened the session, so replaying
the same hits gives the same ids. A redelivered opening hit (same event_id as the open session's
touch_id, which Kafka's at-least-once delivery can produce) is ignored: no emission, no change.

What is emitted, and why (the warehouse table `touches` is a ReplacingMergeTree on touch_id where
the newest row wins, so re-emitting a touch_id with more events is a safe overwrite):

* the touch when its session opens (events=1);
* the same touch, updated, when a joining hit brings the session's event count to 2, 5, 10, 20,
  50, 100, 200, 500 ... (1-2-5 steps of each power of ten). A session of n hits costs at most
  1 + 3*log10(n) rows instead of n, and the warehouse count is never below 40% of the truth while
  the session is open;
* the exact final touch of a session when the next hit of the visitor closes it (timeout or new
  campaign), if the last emitted count is behind. A stream cannot know a session has ended until
  the visitor comes back, so only the visitor's last session can stay at a 1-2-5 lower bound;
* the updated touch when a joining hit makes a user_id known (or changes it), or a late hit lowers
  started_at: both are rare and the warehouse row should show them.

Bots are sessionized like anyone else, their touches marked `is_bot` (kept, never dropped); the
mark comes from the hit that opened the session. user_id is the latest one known for the visitor,
carried across sessions.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from schemas.envelope import Envelope
from schemas.touch import Touch

from .channels import Attribution

DEFAULT_TIMEOUT = timedelta(minutes=30)
STATE_VERSION = 2  # 2 added `past`; version 1 states are still read
PAST_SESSIONS = 6  # closed sessions remembered (their time ranges) to recognise redelivered old hits

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Hit:
    """One pageview of a visitor, classified. `at` must be timezone-aware; it is kept in UTC."""

    event_id: str
    project: str
    anonymous_id: str
    user_id: str | None
    at: datetime
    attribution: Attribution
    landing_url: str = ""
    is_bot: bool = False

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError(f"hit {self.event_id}: naive datetime {self.at!r}, need aware UTC")
        if self.at.tzinfo is not UTC:  # one tzinfo everywhere: equal instants, equal bytes
            object.__setattr__(self, "at", self.at.astimezone(UTC))


def hit_of(env: Envelope, attribution: Attribution, is_bot: bool) -> Hit:
    """The hit of a pageview envelope, classified by the caller (`channels.classify`)."""
    return Hit(
        event_id=env.event_id,
        project=env.project,
        anonymous_id=env.anonymous_id or env.user_id or "",
        user_id=env.user_id,
        at=env.timestamp,
        attribution=attribution,
        landing_url=env.context.page_url or "",
        is_bot=is_bot,
    )


def click_key(click_id: str) -> str:
    """A 12-character digest of a click id value. A gclid is ~100 characters; the state only needs
    to tell one click from another, and the touch does not carry the value."""
    if not click_id:
        return ""
    return base64.urlsafe_b64encode(hashlib.blake2b(click_id.encode(), digest_size=9).digest()).decode()


@dataclass(frozen=True, slots=True)
class VisitorSessions:
    """The state of one visitor: its open (most recent) session and what was last emitted of it.

    Holds every field of the session's touch except project and anonymous_id (they are the key,
    and every hit carries them), so the touch can be re-emitted without the opening hit.
    """

    session_id: str  # = touch_id = event_id of the opening hit
    started_at: datetime
    last_seen: datetime
    events: int
    reported: int  # the events count of the last touch emitted for this session
    source: str
    medium: str
    campaign: str
    content: str
    term: str
    click_id_type: str
    click_key: str  # click_key(attribution.click_id)
    channel: str
    landing_url: str
    referrer_host: str
    user_id: str | None  # latest known for the visitor, across sessions
    is_bot: bool
    # (start, end) in epoch seconds of the visitor's last closed sessions, newest first. A late hit
    # inside one of them was already counted there: at-least-once delivery and history reloads
    # re-send old hits, which must not become sessions of their own.
    past: tuple[tuple[int, int], ...] = ()

    def touch(self, project: str, anonymous_id: str) -> Touch:
        """The session's touch as it stands now."""
        return Touch(
            touch_id=self.session_id,
            project=project,
            anonymous_id=anonymous_id,
            user_id=self.user_id,
            started_at=self.started_at,
            source=self.source,
            medium=self.medium,
            campaign=self.campaign,
            content=self.content,
            term=self.term,
            click_id_type=self.click_id_type,
            channel=self.channel,
            landing_url=self.landing_url,
            referrer_host=self.referrer_host,
            events=self.events,
            is_bot=self.is_bot,
        )

    def to_bytes(self) -> bytes:
        """Compact: a JSON array led by the schema number; times as epoch microseconds, last_seen
        as microseconds after started_at."""
        return orjson.dumps(
            [
                STATE_VERSION,
                self.session_id,
                (self.started_at - _EPOCH) // _US,
                (self.last_seen - self.started_at) // _US,
                self.events,
                self.reported,
                self.source,
                self.medium,
                self.campaign,
                self.content,
                self.term,
                self.click_id_type,
                self.click_key,
                self.channel,
                self.landing_url,
                self.referrer_host,
                self.user_id,
                1 if self.is_bot else 0,
                [list(p) for p in self.past],
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> VisitorSessions:
        raw = orjson.loads(data)
        if not isinstance(raw, list) or not raw or raw[0] not in (1, STATE_VERSION):
            version = raw[0] if isinstance(raw, list) and raw else None
            raise ValueError(f"unknown visitor-sessions state version {version!r}")
        past: tuple[tuple[int, int], ...] = ()
        if raw[0] == STATE_VERSION:
            kept = raw.pop()
            if kept != []:  # most visitors have no closed session yet: skip the generator
                past = tuple((int(a), int(b)) for a, b in kept)
        (_, session_id, started_us, seen_after_us, events, reported, source, medium, campaign, content, term,
         click_id_type, ckey, channel, landing_url, referrer_host, user_id, is_bot) = raw
        started_at = _EPOCH + timedelta(microseconds=started_us)
        # positional, in the fields' order: read once per event, ~1 us less than by keyword
        return cls(session_id, started_at, started_at + timedelta(microseconds=seen_after_us), events, reported,
                   source, medium, campaign, content, term, click_id_type, ckey, channel, landing_url,
                   referrer_host, user_id, bool(is_bot), past)


def _seconds(at: datetime) -> int:
    return int((at - _EPOCH).total_seconds())


def is_milestone(events: int) -> bool:
    """2, 5, 10, 20, 50, 100, 200, 500, 1000 ...: when a growing session is re-emitted."""
    if events < 2:
        return False
    while events % 10 == 0:
        events //= 10
    return events in (1, 2, 5)


def _opened(hit: Hit, user_id: str | None, past: tuple[tuple[int, int], ...] = ()) -> VisitorSessions:
    a = hit.attribution
    return VisitorSessions(
        session_id=hit.event_id,
        started_at=hit.at,
        last_seen=hit.at,
        events=1,
        reported=1,
        source=a.source,
        medium=a.medium,
        campaign=a.campaign,
        content=a.content,
        term=a.term,
        click_id_type=a.click_id_type,
        click_key=click_key(a.click_id),
        channel=a.channel,
        landing_url=hit.landing_url,
        referrer_host=a.referrer_host,
        user_id=user_id,
        is_bot=hit.is_bot,
        past=past,
    )


def _closing(state: VisitorSessions) -> tuple[tuple[int, int], ...]:
    """The remembered ranges once the open session closes."""
    return ((_seconds(state.started_at), _seconds(state.last_seen)), *state.past)[:PAST_SESSIONS]


def _seen_before(state: VisitorSessions, at: datetime) -> bool:
    t = _seconds(at)
    return any(start <= t <= end for start, end in state.past)


def _same_campaign(state: VisitorSessions, a: Attribution) -> bool:
    return (
        a.source == state.source
        and a.medium == state.medium
        and a.campaign == state.campaign
        and click_key(a.click_id) == state.click_key
    )


def _joined(
    s: VisitorSessions, started_at: datetime, last_seen: datetime, user_id: str | None, reported: int
) -> VisitorSessions:
    return VisitorSessions(
        s.session_id, started_at, last_seen, s.events + 1, reported, s.source, s.medium,
        s.campaign, s.content, s.term, s.click_id_type, s.click_key, s.channel, s.landing_url,
        s.referrer_host, user_id, s.is_bot, s.past,
    )  # fmt: skip


def sessionize(
    state: VisitorSessions | None, hit: Hit, timeout: timedelta = DEFAULT_TIMEOUT
) -> tuple[VisitorSessions, tuple[Touch, ...]]:
    """One hit of one visitor: the visitor's new state and the touches to emit (see module doc)."""
    if state is None:
        new = _opened(hit, hit.user_id)
        return new, (new.touch(hit.project, hit.anonymous_id),)
    if hit.event_id == state.session_id:  # the opening hit redelivered
        return state, ()
    a = hit.attribution
    joins_campaign = a.is_direct or _same_campaign(state, a)

    if hit.at >= state.last_seen:  # in order
        if joins_campaign and hit.at - state.last_seen <= timeout:
            user_id = hit.user_id or state.user_id
            events = state.events + 1
            if is_milestone(events) or user_id != state.user_id:
                new = _joined(state, state.started_at, hit.at, user_id, events)
                return new, (new.touch(hit.project, hit.anonymous_id),)
            return _joined(state, state.started_at, hit.at, user_id, state.reported), ()
        # the open session is over: flush its exact count if behind, then open the new one
        new = _opened(hit, hit.user_id or state.user_id, _closing(state))
        opened = new.touch(hit.project, hit.anonymous_id)
        if state.reported < state.events:
            return new, (state.touch(hit.project, hit.anonymous_id), opened)
        return new, (opened,)

    # late: hit.at < last_seen
    user_id = state.user_id or hit.user_id  # a late hit's user_id is not the latest known one
    if joins_campaign and hit.at >= state.started_at - timeout:
        started_at = min(state.started_at, hit.at)
        events = state.events + 1
        if is_milestone(events) or started_at != state.started_at or user_id != state.user_id:
            new = _joined(state, started_at, state.last_seen, user_id, events)
            return new, (new.touch(hit.project, hit.anonymous_id),)
        return _joined(state, started_at, state.last_seen, user_id, state.reported), ()
    if _seen_before(state, hit.at):  # inside a session already counted: a redelivered or reloaded hit
        return state, ()
    alone = _opened(hit, hit.user_id or state.user_id)
    return state, (alone.touch(hit.project, hit.anonymous_id),)
