"""CORS for the browser-facing routes, limited to each project's allowed origins.

An origin that is not allowed is never echoed in Access-Control-Allow-Origin: not on the 403 that
refuses it, not on a preflight. A preflight carries no key, so it is answered for the origins some
project on this server allows (any origin while a project allows every origin); the real request
then checks the project's own list."""

from __future__ import annotations

import asyncio
import logging
import time
from fnmatch import fnmatchcase
from typing import Callable, Iterable

from starlette.responses import Response

log = logging.getLogger(__name__)

ALLOW_HEADERS = "content-type, x-write-key, authorization"


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    """A project without configured origins accepts any; otherwise exact scheme://host[:port], or a
    wildcard subdomain pattern such as https://*.shop.kz."""
    if not allowed:
        return True
    origin = origin.rstrip("/").lower()
    return any(origin == a.rstrip("/").lower() or ("*" in a and fnmatchcase(origin, a.rstrip("/").lower()))
               for a in allowed)


class KnownOrigins:
    """The origins any project allows, for preflights. `list_origins` returns each project's
    origins (it reads the warehouse), so it runs in a thread, at most once per `min_refresh_s` and
    only when an origin is not found: a flood of preflights from foreign origins costs one read
    per interval."""

    def __init__(self, list_origins: Callable[[], Iterable[tuple[str, ...]]], min_refresh_s: float = 5.0) -> None:
        self._list = list_origins
        self._min_refresh_s = min_refresh_s
        self._origins: list[tuple[str, ...]] = []
        self._loaded_at = -float("inf")
        self._lock: asyncio.Lock | None = None

    def _known(self, origin: str) -> bool:
        return any(origin_allowed(origin, allowed) for allowed in self._origins)

    async def allows(self, origin: str) -> bool:
        if self._known(origin):
            return True
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if time.monotonic() - self._loaded_at >= self._min_refresh_s:
                try:
                    self._origins = [tuple(o) for o in await asyncio.to_thread(lambda: list(self._list()))]
                except Exception as exc:  # warehouse unreachable: keep what we knew, try again next interval
                    log.warning("project origins not read: %s", exc)
                self._loaded_at = time.monotonic()
        return self._known(origin)


def preflight(origin: str | None, allowed: bool) -> Response:
    """The answer to OPTIONS: CORS headers only for an allowed origin, so a browser refuses to send
    the real request from any other."""
    headers = {"Vary": "Origin", "Access-Control-Max-Age": "86400"}
    if origin and allowed:
        headers.update({"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": "POST, OPTIONS",
                        "Access-Control-Allow-Headers": ALLOW_HEADERS})
    return Response(status_code=204, headers=headers)


def cors_headers(origin: str | None) -> dict[str, str]:
    """For a response to an origin already checked against the project."""
    if not origin:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
