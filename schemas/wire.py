"""The wire vocabulary: Segment spec messages (page / track / identify / alias).

The tracker, Segment and RudderStack SDKs all speak it, so one parser serves `/collect` and
`/v1/*`. Unknown fields are kept (extra="allow"): SDKs add context we do not model yet.

TypedDicts, not models: MESSAGE validates a message into a plain dict (the validated values,
datetimes parsed), which costs about a third less than building nested models per event on the
collector's hot path; the validation rules and error locations are the same.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import NotRequired, TypedDict

from .values import MAX_CAMPAIGN_VALUE, MAX_ID, MAX_TEXT, MAX_URL, WarehouseTime

_open = ConfigDict(extra="allow")
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Url = Annotated[str, Field(max_length=MAX_URL)]
Utm = Annotated[str, Field(max_length=MAX_CAMPAIGN_VALUE)]
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID)]


@with_config(_open)
class Campaign(TypedDict, total=False):
    source: Utm | None
    medium: Utm | None
    name: Utm | None
    term: Utm | None
    content: Utm | None


@with_config(_open)
class Page(TypedDict, total=False):
    url: Url | None
    referrer: Url | None
    path: Text | None
    title: Text | None
    search: Text | None


@with_config(_open)
class Context(TypedDict, total=False):
    page: Page | None
    campaign: Campaign | None
    userAgent: Text | None
    ip: Annotated[str, Field(max_length=64)] | None
    locale: Annotated[str, Field(max_length=64)] | None


@with_config(_open)
class _Message(TypedDict, total=False):
    messageId: Id | None
    anonymousId: Id | None
    userId: Id | None
    timestamp: WarehouseTime | None
    sentAt: WarehouseTime | None
    context: Context
    properties: dict[str, Any]
    traits: dict[str, Any]


def _someone(message: dict[str, Any]) -> dict[str, Any]:
    if not message.get("anonymousId") and not message.get("userId"):
        raise ValueError("anonymousId or userId is required")
    return message


class PageMessage(_Message):  # the keys declared here are required, _Message's are not
    type: Literal["page"]
    name: NotRequired[Text | None]


class TrackMessage(_Message):
    type: Literal["track"]
    event: Annotated[str, Field(min_length=1, max_length=256)]


class IdentifyMessage(_Message):
    type: Literal["identify"]


class AliasMessage(_Message):
    type: Literal["alias"]
    previousId: Id


WireMessage = Annotated[
    Union[
        Annotated[PageMessage, AfterValidator(_someone)],
        Annotated[TrackMessage, AfterValidator(_someone)],
        Annotated[IdentifyMessage, AfterValidator(_someone)],
        Annotated[AliasMessage, AfterValidator(_someone)],
    ],
    Field(discriminator="type"),
]
MESSAGE = TypeAdapter(WireMessage)
MESSAGE_TYPES = ("page", "track", "identify", "alias")
