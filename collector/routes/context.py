"""What every route of one collector app shares: the configuration, the ports the composition root
plugged in, the metrics, the rate limiters and the readiness state; and the answers the routes
have in common (refusals, a missing key, a body too large, a preflight)."""

from __future__ import annotations

import base64
import ipaddress
import threading
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

import orjson
from starlette.requests import Request
from starlette.responses import Response

from schemas.reasons import RejectReason

from ..bodies import BadEncoding, TooLarge, read_body
from ..calltracking import Lease
from ..cors import KnownOrigins, preflight
from ..ingest import IngestRules
from ..limits import TokenBuckets
from ..metrics import CollectorMetrics
from ..ports import CollectorConfig, ProjectDirectory, Publish, RunReport
from ..privacy import Hasher

Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
NO_KEY = "no write key: send it as HTTP Basic user, X-Write-Key or write_key"


@dataclass(eq=False)
class Context:
    config: CollectorConfig
    projects: ProjectDirectory
    publish: Publish
    run_report: RunReport
    load_leases: Callable[[str], Awaitable[list[Lease]]] | None  # call tracking: the leases still running
    metrics: CollectorMetrics
    rules: IngestRules
    trusted: Networks  # proxies whose X-Forwarded-For is believed
    per_ip: TokenBuckets
    per_key: TokenBuckets
    known_origins: KnownOrigins
    not_ready: Callable[[], str | None] | None  # why this process is not ready (its sink failing), or None
    readiness_notes: Callable[[], dict[str, Any]] | None  # shown in /readyz, not making it 503
    draining: threading.Event = field(default_factory=threading.Event)  # set by `serve` on SIGTERM
    ready: bool = False  # between the app's start and the beginning of its stop

    def refuse(self, route: str, status: int, reason: RejectReason, detail: str,
               headers: dict[str, str] | None = None) -> Response:
        return refuse(self.metrics, route, status, reason, detail, headers)

    def limited(self, route: str, wait: float, who: str) -> Response:
        return self.refuse(route, 429, RejectReason.rate_limited, f"too many requests from this {who}; retry later",
                           {"Retry-After": str(max(1, int(wait + 0.999)))})

    def unknown_key(self, route: str, key: str | None) -> Response:
        detail = "unknown write key" if key else NO_KEY
        return self.refuse(route, 401, RejectReason.unknown_key, detail, {"WWW-Authenticate": 'Basic realm="moneytrail"'})

    async def body(self, request: Request, route: str) -> bytes | Response:
        try:
            return await read_body(request, self.config.max_request_bytes)
        except TooLarge:
            return self.refuse(route, 413, RejectReason.too_large, f"request body over {self.config.max_request_bytes} bytes")
        except BadEncoding as exc:
            return self.refuse(route, 400, RejectReason.bad_encoding, str(exc))

    async def preflight(self, origin: str | None) -> Response:
        return preflight(origin, bool(origin) and await self.known_origins.allows(origin))

    def client_ip(self, request: Request) -> str | None:
        return client_ip(request, self.trusted)


def make_context(config: CollectorConfig, projects: ProjectDirectory, publish: Publish, run_report: RunReport,
                 gauges: dict[str, tuple[str, Callable[[], float]]] | None = None,
                 load_leases: Callable[[str], Awaitable[list[Lease]]] | None = None,
                 not_ready: Callable[[], str | None] | None = None,
                 readiness_notes: Callable[[], dict[str, Any]] | None = None) -> Context:
    if len(config.pii_key) < 16:
        raise ValueError("the collector needs a PII key of at least 16 bytes to hash phones and emails")
    return Context(
        config=config, projects=projects, publish=publish, run_report=run_report, load_leases=load_leases,
        metrics=CollectorMetrics(gauges),
        rules=IngestRules(Hasher(config.pii_key), config.default_region, config.max_event_bytes,
                          config.clock_skew_tolerance_s),
        trusted=tuple(ipaddress.ip_network(n, strict=False) for n in config.trusted_proxies),
        per_ip=TokenBuckets(config.rate_limit_ip_rps, config.rate_limit_ip_rps * 2),
        per_key=TokenBuckets(config.rate_limit_key_eps, config.rate_limit_key_eps * 2),
        known_origins=KnownOrigins(lambda: [p.origins for p in projects.list()]),
        not_ready=not_ready, readiness_notes=readiness_notes)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def refuse(metrics: CollectorMetrics, route: str, status: int, reason: RejectReason, detail: str,
           headers: dict[str, str] | None = None) -> Response:
    metrics.rejected.labels(route, reason.value).inc()
    return json_response({"ok": False, "reason": reason.value, "detail": detail}, status, headers)


def unavailable(detail: str = "could not be stored; retry later") -> Response:
    return json_response({"ok": False, "reason": "unavailable", "detail": detail}, 503, {"Retry-After": "5"})


def header_write_key(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            user = base64.b64decode(auth[6:].strip()).decode().split(":", 1)[0]
        except (ValueError, UnicodeDecodeError):
            user = ""
        if user:
            return user
    return headers.get("x-write-key") or None


def body_write_key(data: Any) -> str | None:
    """sendBeacon cannot set headers, so the tracker puts the key in the body."""
    if isinstance(data, dict):
        for name in ("write_key", "writeKey"):
            if isinstance(data.get(name), str):
                return data[name]
    return None


def bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else None


def client_ip(request: Request, trusted: Networks) -> str | None:
    return client_ip_of(request.client.host if request.client else None, request.headers, trusted)


def client_ip_of(peer: str | None, headers: Mapping[str, str], trusted: Networks) -> str | None:
    """The caller's address: the socket peer, or, when the peer is a trusted proxy, the last
    X-Forwarded-For hop that is not a trusted proxy (the first ones can be forged by the client)."""
    if not peer or not trusted or not _in(peer, trusted):
        return peer
    hops = [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _in(ip: str, nets: Networks) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in nets)
