"""What the collector needs from the rest of the system. The composition root plugs these in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol

from schemas.project import Credentials, Project

Records = list[tuple[bytes, bytes]]


class ProjectDirectory(Protocol):
    async def by_write_key(self, key: str) -> Project | None: ...
    async def by_read_token(self, token: str) -> Project | None: ...
    async def by_webhook_secret(self, secret: str) -> Project | None: ...
    def get(self, project_id: str) -> Project | None: ...
    def list(self) -> list[Project]: ...
    def create(self, name: str, origins: tuple[str, ...] = ()) -> tuple[Project, Credentials]: ...
    def rotate(self, project_id: str) -> Credentials: ...
    def configure(self, project_id: str, vendor: str, values: dict[str, Any]) -> dict[str, Any]: ...
    def set_timezone(self, project_id: str, name: str) -> str: ...


class Publish(Protocol):
    async def __call__(self, topic: str, records: Records) -> None: ...


RunReport = Callable[[str, str, dict[str, str]], Awaitable[dict[str, Any]]]  # name, project, query


class WarehouseUnavailable(Exception):
    """A RunReport could not reach the warehouse (down, timing out): answered 503 with the reason and
    Retry-After, not 500. Raised by the composition root, which knows the warehouse's errors."""

    def __init__(self, detail: str, retry_after_s: int = 5) -> None:
        super().__init__(detail)
        self.detail, self.retry_after_s = detail, retry_after_s


@dataclass(frozen=True)
class CollectorConfig:
    max_event_bytes: int = 32 * 1024
    max_request_bytes: int = 500 * 1024
    max_batch_events: int = 500
    clock_skew_tolerance_s: int = 3600
    admin_token: str = ""  # local admin (CLI talking to a running server); empty disables
    pii_key: bytes = b""  # HMAC key for phone/email/chat identifiers; required
    default_region: str = "KZ"  # phones without a country code are read as this country's
    default_currency: str = "KZT"  # spend rows without a currency
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose X-Forwarded-For is believed
    rate_limit_ip_rps: float = 200.0  # requests per second per client address (burst 2x); 0 = off
    rate_limit_key_eps: float = 5000.0  # events per second per project (burst 2x); 0 = off
