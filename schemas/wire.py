"""The wire vocabulary: Segment spec messages (page / track / identify / alias).

The tracker, Segment and RudderStack SDKs all speak it, so one parser serves `/collect` and
`/v1/*`. Unknown fields are kept (extra="allow"): SDKs add context we do not model yet.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

_open = ConfigDict(extra="allow", populate_by_name=True)
Text = Annotated[str, Field(max_length=8192)]
Id = Annotated[str, Field(min_length=1, max_length=256)]


class Campaign(BaseModel):
    model_config = _open
    source: Text | None = None
    medium: Text | None = None
    name: Text | None = None
    term: Text | None = None
    content: Text | None = None


class Page(BaseModel):
    model_config = _open
    url: Text | None = None
    referrer: Text | None = None
    path: Text | None = None
    title: Text | None = None
    search: Text | None = None


class Context(BaseModel):
    model_config = _open
    page: Page | None = None
    campaign: Campaign | None = None
    userAgent: Text | None = None
    ip: Annotated[str, Field(max_length=64)] | None = None
    locale: Annotated[str, Field(max_length=64)] | None = None


class _Message(BaseModel):
    model_config = _open
    messageId: Id | None = None
    anonymousId: Id | None = None
    userId: Id | None = None
    timestamp: datetime | None = None
    sentAt: datetime | None = None
    context: Context = Field(default_factory=Context)
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _someone(self) -> "_Message":
        if not self.anonymousId and not self.userId:
            raise ValueError("anonymousId or userId is required")
        return self


class PageMessage(_Message):
    type: Literal["page"]
    name: Text | None = None


class TrackMessage(_Message):
    type: Literal["track"]
    event: Annotated[str, Field(min_length=1, max_length=256)]


class IdentifyMessage(_Message):
    type: Literal["identify"]


class AliasMessage(_Message):
    type: Literal["alias"]
    previousId: Id


WireMessage = Annotated[
    Union[PageMessage, TrackMessage, IdentifyMessage, AliasMessage], Field(discriminator="type")
]
MESSAGE = TypeAdapter(WireMessage)
MESSAGE_TYPES = ("page", "track", "identify", "alias")
