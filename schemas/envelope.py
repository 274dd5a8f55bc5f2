"""The envelope: every accepted input, whatever its wire format, becomes one of these.

Versioned by `schema` (family/MAJOR-MINOR-PATCH). Times are UTC. `timestamp` is the event's true
time (the client's, corrected for its clock skew and clamped), `received_at` is ours.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

PAGEVIEW = "pageview/1-0-0"
TRACK = "track/1-0-0"
IDENTIFY = "identify/1-0-0"
ALIAS = "alias/1-0-0"

SCHEMA_OF_WIRE_TYPE = {"page": PAGEVIEW, "track": TRACK, "identify": IDENTIFY, "alias": ALIAS}


class EventContext(BaseModel):
    model_config = ConfigDict(frozen=True)
    page_url: str | None = None
    page_path: str | None = None
    page_title: str | None = None
    referrer: str | None = None
    # context.campaign as the client sent it (utm_* without the prefix); the processors also read
    # UTM tags and click ids from page_url, so nothing is lost if a client only sends the URL.
    campaign: dict[str, str] = Field(default_factory=dict)
    user_agent: str | None = None
    ip: str | None = None  # already anonymised
    locale: str | None = None


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)
    schema_: str = Field(alias="schema")
    event_id: str
    type: str  # pageview | track | identify | alias
    project: str
    anonymous_id: str | None = None
    user_id: str | None = None
    timestamp: datetime
    received_at: datetime
    sent_at: datetime | None = None
    event: str | None = None  # track event name
    previous_id: str | None = None  # alias
    context: EventContext = Field(default_factory=EventContext)
    properties: dict[str, Any] = Field(default_factory=dict)  # free of personal data
    traits: dict[str, Any] = Field(default_factory=dict)  # free of personal data
    # identifiers the event carries, kind -> value (families.ID_KINDS); phone, email and chat are
    # keyed hashes, never raw. masked: display forms ("+7701***4567") for people reading reports.
    ids: dict[str, str] = Field(default_factory=dict)
    masked: dict[str, str] = Field(default_factory=dict)
    flags: tuple[str, ...] = ()  # e.g. clock_skew

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", by_alias=True))

    @classmethod
    def from_bytes(cls, data: bytes) -> "Envelope":
        return cls.model_validate_json(data)

    @property
    def key(self) -> bytes:
        """Partition key: one visitor's events stay in order on one partition."""
        return f"{self.project}:{self.anonymous_id or self.user_id}".encode()


def new_event_id(now_ms: int | None = None) -> str:
    """A time-ordered id (UUIDv7 layout, hex) for events the client gave no id."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | (0x7 << 76) | (rand & ((1 << 76) - 1))
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 9562 variant bits
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
