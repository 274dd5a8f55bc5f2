"""A touch: one visit of a person through one channel, as the processors emit it."""

from __future__ import annotations

from datetime import datetime

import orjson
from pydantic import BaseModel, ConfigDict

TOUCH = "touch/1-0-0"


class Touch(BaseModel):
    model_config = ConfigDict(frozen=True)
    touch_id: str
    project: str
    anonymous_id: str
    user_id: str | None = None
    started_at: datetime
    source: str  # normalised; "(direct)" when none
    medium: str  # normalised; "(none)" when none
    campaign: str = ""
    content: str = ""
    term: str = ""
    click_id_type: str = ""  # gclid, yclid, fbclid ...
    channel: str  # channel group: Paid Search, Organic Search, Direct ...
    landing_url: str = ""
    referrer_host: str = ""
    events: int = 1
    is_bot: bool = False

    def to_row(self) -> dict:
        return self.model_dump(mode="json")

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_row())

    @classmethod
    def from_bytes(cls, data: bytes) -> "Touch":
        return cls.model_validate_json(data)
