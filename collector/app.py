"""The HTTP edge. Hot ingest routes are plain Starlette endpoints (FastAPI costs ~4x per
request); reports and admin go through FastAPI for their OpenAPI docs."""

from __future__ import annotations

import asyncio
import base64
import csv
import functools
import gc
import io
import logging
import hashlib
import ipaddress
import threading
import time
from pathlib import Path
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

import orjson
from fastapi import FastAPI, Query
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from schemas import topics
from schemas.project import Project, key_hash
from schemas.reasons import RejectReason

from .bodies import BadEncoding, TooLarge, read_asgi_body, read_body
from .calltracking import Lease, Pool, PoolConfig, lease_envelope, static_numbers, with_static_campaign
from .calltracking import answer as lease_answer
from .cors import KnownOrigins, cors_headers, origin_allowed, preflight
from .spend import parse_rates, parse_spend, rows_of_body
from .ingest import IngestRules, Refusal, decode_body, envelope_of_draft, messages_of, parse
from .privacy import Hasher
from .vendors.base import Refused, VendorRequest
from .vendors.registry import CONFIGURABLE, VENDORS, mapper_of
from .limits import TokenBuckets
from .metrics import CollectorMetrics
from .ports import CollectorConfig, ProjectDirectory, Publish, RunReport, WarehouseUnavailable

log = logging.getLogger("moneytrail.collector")
# text/plain: navigator.sendBeacon; form-urlencoded: what `curl -d` sends by default. The body
# must still be JSON.
_JSON_TYPES = ("application/json", "text/plain", "application/x-www-form-urlencoded", "")


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def _refuse(metrics: CollectorMetrics, route: str, status: int, reason: RejectReason, detail: str,
            headers: dict[str, str] | None = None) -> Response:
    metrics.rejected.labels(route, reason.value).inc()
    return _json({"ok": False, "reason": reason.value, "detail": detail}, status, headers)


class Hot:
    """What the hot ingest path reads of a request: lower-cased headers (the first of repeated
    ones, as Starlette's Headers.get), the peer address, the ASGI receive channel. Built straight
    from the ASGI scope; Starlette's Request costs more than the rest of a small request."""

    __slots__ = ("headers", "peer", "receive")

    def __init__(self, scope: dict, receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self.headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(scope["headers"])}
        client = scope.get("client")
        self.peer: str | None = client[0] if client else None
        self.receive = receive


class Reply:
    """A hot route's answer: JSON bytes, status, extra headers."""

    __slots__ = ("_plain", "body", "echo_origin", "headers", "status")

    def __init__(self, body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self.body = body
        self.status = status
        self.headers = headers or {}
        self.echo_origin = True  # False on the refusal of a disallowed origin: never echo that one
        self._plain: list[tuple[bytes, bytes]] | None = None  # asgi_headers(None), kept for shared replies

    def response(self) -> Response:
        return Response(self.body, status_code=self.status, media_type="application/json", headers=self.headers)

    def asgi_headers(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        if origin is None and self._plain is not None:
            return self._plain  # uvicorn copies the list; nobody changes it
        out = [(b"content-type", b"application/json"), (b"content-length", str(len(self.body)).encode())]
        out.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items())
        if origin and self.echo_origin and all(k != b"access-control-allow-origin" for k, _ in out):
            # let the page read refusals too (the tracker drops a 4xx batch instead of retrying
            # it); what was refused was refused server-side, nothing is stored either way
            out.append((b"access-control-allow-origin", origin.encode("latin-1")))
            out.append((b"vary", b"Origin"))
        elif origin is None:
            self._plain = out
        return out


def _reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(orjson.dumps(data), status, headers)


# {"ok": true, "accepted": n} without CORS headers (server-side senders), one shared Reply per n
_ACCEPTED: dict[int, Reply] = {}


def _accepted(n: int) -> Reply:
    reply = _ACCEPTED.get(n)
    if reply is None:
        reply = _reply({"ok": True, "accepted": n})
        if len(_ACCEPTED) < 1024:
            _ACCEPTED[n] = reply
    return reply


def _header_write_key(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            user = base64.b64decode(auth[6:].strip()).decode().split(":", 1)[0]
        except (ValueError, UnicodeDecodeError):
            user = ""
        if user:
            return user
    return headers.get("x-write-key") or None


def _body_write_key(data: Any) -> str | None:
    """sendBeacon cannot set headers, so the tracker puts the key in the body."""
    if isinstance(data, dict):
        for name in ("write_key", "writeKey"):
            if isinstance(data.get(name), str):
                return data[name]
    return None


def client_ip(request: Request, trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> str | None:
    return client_ip_of(request.client.host if request.client else None, request.headers, trusted)


def client_ip_of(peer: str | None, headers: Mapping[str, str],
                 trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> str | None:
    """The caller's address: the socket peer, or, when the peer is a trusted proxy, the last
    X-Forwarded-For hop that is not a trusted proxy (the first ones can be forged by the client)."""
    if not peer or not trusted or not _in(peer, trusted):
        return peer
    hops = [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _in(ip: str, nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in nets)


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else None


class NewProject(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    origins: list[str] = Field(default_factory=list)


def create_app(
    config: CollectorConfig,
    projects: ProjectDirectory,
    publish: Publish,
    run_report: RunReport,
    on_start: Callable[[], Awaitable[None]] | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
    gauges: dict[str, tuple[str, Callable[[], float]]] | None = None,
    load_leases: Callable[[str], Awaitable[list[Lease]]] | None = None,
    not_ready: Callable[[], str | None] | None = None,  # why this process is not ready (its sink failing), or None
    readiness_notes: Callable[[], dict[str, Any]] | None = None,  # shown in /readyz, not making it 503
) -> FastAPI:
    if len(config.pii_key) < 16:
        raise ValueError("the collector needs a PII key of at least 16 bytes to hash phones and emails")
    metrics = CollectorMetrics(gauges)
    state = {"ready": False}
    rules = IngestRules(Hasher(config.pii_key), config.default_region, config.max_event_bytes,
                        config.clock_skew_tolerance_s)
    trusted = tuple(ipaddress.ip_network(n, strict=False) for n in config.trusted_proxies)
    per_ip = TokenBuckets(config.rate_limit_ip_rps, config.rate_limit_ip_rps * 2)
    per_key = TokenBuckets(config.rate_limit_key_eps, config.rate_limit_key_eps * 2)

    def _limited(route: str, wait: float, who: str) -> Response:
        return _refuse(metrics, route, 429, RejectReason.rate_limited, f"too many requests from this {who}; retry later",
                       {"Retry-After": str(max(1, int(wait + 0.999)))})

    async def _body(request: Request, route: str) -> bytes | Response:
        try:
            return await read_body(request, config.max_request_bytes)
        except TooLarge:
            return _refuse(metrics, route, 413, RejectReason.too_large, f"request body over {config.max_request_bytes} bytes")
        except BadEncoding as exc:
            return _refuse(metrics, route, 400, RejectReason.bad_encoding, str(exc))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if on_start:
            await on_start()
        # What exists now lives as long as the process: freezing it keeps the cyclic collector
        # from re-scanning it on every full collection while requests churn.
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False  # readiness turns 503 first, then we drain
            if on_stop:
                await on_stop()

    app = FastAPI(title="moneytrail", version="1", lifespan=lifespan,
                  description="Self-hosted end-to-end marketing analytics. Ingest with a write key, read with a read token.")
    app.state.metrics = metrics
    draining = app.state.draining = threading.Event()  # set by `serve` on SIGTERM (moneytrail/cli.py)
    known_origins = app.state.known_origins = KnownOrigins(lambda: [p.origins for p in projects.list()])

    async def _preflight(origin: str | None) -> Response:
        return preflight(origin, bool(origin) and await known_origins.allows(origin))

    def _unknown_key(route: str, key: str | None) -> Response:
        detail = "unknown write key" if key else "no write key: send it as HTTP Basic user, X-Write-Key or write_key"
        return _refuse(metrics, route, 401, RejectReason.unknown_key, detail, {"WWW-Authenticate": 'Basic realm="moneytrail"'})

    # The hot path counts with cached label children: labels() costs a lock and a lookup per call.
    rejected_children: dict[tuple[str, str], Any] = {}
    accepted_children: dict[str, Any] = {}

    def _count_refused(route: str, reason: str, n: int = 1) -> None:
        child = rejected_children.get((route, reason))
        if child is None:
            child = rejected_children[(route, reason)] = metrics.rejected.labels(route, reason)
        child.inc(n)

    def _hot_refuse(route: str, status: int, reason: RejectReason, detail: str,
                    headers: dict[str, str] | None = None) -> Reply:
        _count_refused(route, reason.value)
        return _reply({"ok": False, "reason": reason.value, "detail": detail}, status, headers)

    def _hot_unknown_key(route: str, key: str | None) -> Reply:
        detail = "unknown write key" if key else "no write key: send it as HTTP Basic user, X-Write-Key or write_key"
        return _hot_refuse(route, 401, RejectReason.unknown_key, detail, {"WWW-Authenticate": 'Basic realm="moneytrail"'})

    def _hot_limited(route: str, wait: float, who: str) -> Reply:
        return _hot_refuse(route, 429, RejectReason.rate_limited, f"too many requests from this {who}; retry later",
                           {"Retry-After": str(max(1, int(wait + 0.999)))})

    async def ingest(req: Hot, route: str, forced_type: str | None = None) -> Reply:
        headers = req.headers
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in _JSON_TYPES:
            return _hot_refuse(route, 415, RejectReason.unsupported_media_type,
                               f"send application/json or text/plain, not {ctype}")
        ip = client_ip_of(req.peer, headers, trusted)
        if (wait := per_ip.take(ip or "?")) > 0:
            return _hot_limited(route, wait, "address")
        # A key in a header is checked before the body is read: strangers learn nothing more.
        key = _header_write_key(headers)
        project = await projects.by_write_key(key) if key else None
        if key and project is None:
            return _hot_unknown_key(route, key)
        try:
            body = await read_asgi_body(req.receive, headers, config.max_request_bytes)
        except TooLarge:
            return _hot_refuse(route, 413, RejectReason.too_large, f"request body over {config.max_request_bytes} bytes")
        except BadEncoding as exc:
            return _hot_refuse(route, 400, RejectReason.bad_encoding, str(exc))
        data = decode_body(body)
        if type(data) is Refusal:
            return _hot_refuse(route, 400, data.reason, data.detail)
        if project is None:
            key = _body_write_key(data)
            project = await projects.by_write_key(key) if key else None
            if project is None:
                return _hot_unknown_key(route, key)
        origin = headers.get("origin")
        if origin and not origin_allowed(origin, project.origins):
            refused = _hot_refuse(route, 403, RejectReason.origin_not_allowed,
                                  f"origin {origin} is not allowed for this project", {"Vary": "Origin"})
            refused.echo_origin = False
            return refused
        cors = cors_headers(origin)
        messages = messages_of(data, config.max_batch_events)
        if type(messages) is Refusal:
            status = 413 if messages.reason is RejectReason.too_large else 400
            return _hot_refuse(route, status, messages.reason, messages.detail, cors)
        if (wait := per_key.take(project.project_id, len(messages))) > 0:
            return _hot_limited(route, wait, "project")
        parsed = parse(messages, project.project_id, ip, headers.get("user-agent"), rules, len(body), forced_type)
        for refusal in parsed.refused:
            _count_refused(route, refusal.reason.value)
        records = parsed.records
        if not records:
            first = parsed.refused[0] if parsed.refused else Refusal(RejectReason.schema_violation, "empty batch")
            status = 413 if first.reason is RejectReason.too_large else 400
            return _reply({"ok": False, "reason": first.reason.value, "detail": first.detail,
                           "rejected": [r.as_json() for r in parsed.refused]}, status, cors)
        started = time.perf_counter()
        try:
            await publish(topics.RAW, records)
        except Exception as exc:  # not durable: the client must retry, and nothing was acknowledged
            log.warning("publish failed: %s", exc)
            _count_refused(route, "unavailable", len(records))
            # the bus may say why (e.g. its spool is full) and when to come back
            detail = getattr(exc, "detail", "events could not be stored; retry later")
            return _reply({"ok": False, "reason": "unavailable", "detail": detail},
                          503, {"Retry-After": str(getattr(exc, "retry_after_s", 5)), **cors})
        metrics.publish_seconds.observe(time.perf_counter() - started)
        accepted = accepted_children.get(route)
        if accepted is None:
            accepted = accepted_children[route] = metrics.accepted.labels(route)
        accepted.inc(len(records))
        if not parsed.refused and not cors:
            return _accepted(len(records))
        out: dict[str, Any] = {"ok": True, "accepted": len(records)}
        if parsed.refused:
            out["rejected"] = [r.as_json() for r in parsed.refused]
        return _reply(out, 200, cors)

    def hot_route(route: str, forced: str | None = None) -> Callable[[Hot], Awaitable[Reply]]:
        return functools.partial(ingest, route=route, forced_type=forced)  # no wrapper coroutine per request

    async def webhook(request: Request) -> Response:
        vendor = request.path_params["vendor"]
        route = f"webhook_{vendor}" if vendor in VENDORS else "webhook_unknown"
        mapper = mapper_of(vendor)
        if mapper is None:
            return _refuse(metrics, route, 404, RejectReason.unknown_type,
                           f"no webhook for {vendor!r}; vendors: {', '.join(VENDORS)}")
        project = await projects.by_webhook_secret(request.path_params["project_key"])
        if project is None:
            return _refuse(metrics, route, 401, RejectReason.unknown_key, "unknown project key in the webhook URL")
        body = await _body(request, route)
        if isinstance(body, Response):
            return body
        received_at = datetime.now(timezone.utc)
        vreq = VendorRequest(vendor=vendor, project=project, method=request.method,
                             headers={k.lower(): v for k, v in request.headers.items()},
                             query=dict(request.query_params), body=body, client_ip=client_ip(request, trusted),
                             received_at=received_at, config=project.vendor_config.get(vendor, {}))
        try:
            result = mapper(vreq)
        except Exception:  # a mapper bug must answer, not crash; it is counted and logged without the body
            log.exception("vendor mapper %s failed", vendor)
            return _refuse(metrics, route, 400, RejectReason.schema_violation, f"{vendor}: the request could not be read")
        if isinstance(result, Refused):
            return _refuse(metrics, route, result.status, result.reason, result.detail)
        envelopes = []
        static = static_numbers(project.vendor_config.get("calltracking", {}).get("static") or {}, config.default_region)
        for draft in result.drafts:
            env = envelope_of_draft(draft, project.project_id, received_at, rules)
            if isinstance(env, Refusal):
                return _refuse(metrics, route, 400, env.reason, env.detail)
            envelopes.append(with_static_campaign(env, static if isinstance(static, dict) else {}))
        if envelopes:
            try:
                await publish(topics.RAW, [(e.key, e.to_bytes()) for e in envelopes])
            except Exception as exc:  # not durable: the vendor retries (most do; Bitrix24 does not)
                log.warning("publish failed: %s", exc)
                metrics.rejected.labels(route, "unavailable").inc(len(envelopes))
                return _json({"ok": False, "reason": "unavailable", "detail": "could not be stored; retry later"},
                             503, {"Retry-After": "5"})
            metrics.accepted.labels(route).inc(len(envelopes))
        return Response(result.reply.body, status_code=result.reply.status, media_type=result.reply.content_type)

    app.add_route("/webhooks/{vendor}/{project_key}", webhook, methods=["GET", "POST"], include_in_schema=False)

    def table_import(route: str, parse_rows: Callable) -> Callable[[Request], Awaitable[Response]]:
        """POST /api/spend and /api/rates: CSV or JSON rows (write key), all or nothing."""

        async def endpoint(request: Request) -> Response:
            key = _header_write_key(request.headers)
            project = await projects.by_write_key(key) if key else None
            if project is None:
                return _unknown_key(route, key)
            body = await _body(request, route)
            if isinstance(body, Response):
                return body
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            rows = rows_of_body(body, ctype)
            if isinstance(rows, str):
                return _refuse(metrics, route, 400, RejectReason.schema_violation, rows)
            parsed = parse_rows(rows, project.project_id, datetime.now(timezone.utc), config.default_currency,
                                first_line=0 if "json" in ctype else 2)
            if parsed.errors:
                metrics.rejected.labels(route, parsed.reason.value).inc()
                return _json({"ok": False, "reason": parsed.reason.value, "detail": parsed.errors[0],
                              "errors": parsed.errors}, 400)
            try:
                await publish(topics.RAW, [(e.key, e.to_bytes()) for e in parsed.envelopes])
            except Exception as exc:
                log.warning("publish failed: %s", exc)
                return _json({"ok": False, "reason": "unavailable", "detail": "could not be stored; retry later"},
                             503, {"Retry-After": "5"})
            metrics.accepted.labels(route).inc(len(parsed.envelopes))
            days = sorted({e.properties["date"] for e in parsed.envelopes})
            return _json({"ok": True, "import_id": parsed.import_id, "rows": len(parsed.envelopes),
                          "from": days[0], "to": days[-1],
                          "sources" if route == "spend" else "currencies":
                              sorted({e.properties["source" if route == "spend" else "currency"] for e in parsed.envelopes})})

        return endpoint

    spend = table_import("spend", parse_spend)
    app.add_route("/api/rates", table_import("rates", parse_rates), methods=["POST"], include_in_schema=False)
    app.add_route("/api/spend", spend, methods=["POST"], include_in_schema=False)

    tracker_path = Path(__file__).parent / "static" / "tracker.js"
    tracker = {"body": b"", "etag": "", "mtime": -1.0}

    async def tracker_js(request: Request) -> Response:
        mtime = tracker_path.stat().st_mtime
        if mtime != tracker["mtime"]:  # read once, again only when the file changes (upgrades)
            body = tracker_path.read_bytes()
            tracker.update(body=body, etag='"' + hashlib.sha256(body).hexdigest()[:16] + '"', mtime=mtime)
        headers = {"Cache-Control": "public, max-age=3600", "ETag": tracker["etag"]}
        if request.headers.get("if-none-match") == tracker["etag"]:
            return Response(status_code=304, headers=headers)
        return Response(tracker["body"], media_type="application/javascript; charset=utf-8", headers=headers)

    app.add_route("/tracker.js", tracker_js, methods=["GET"], include_in_schema=False)

    static_root = (Path(__file__).parent / "static").resolve()
    _types = {".html": "text/html; charset=utf-8", ".js": "application/javascript; charset=utf-8",
              ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png", ".map": "application/json"}

    async def static_file(request: Request) -> Response:
        """The dashboard's own files (no CDN). The read token never travels in these requests: the
        page takes it from the URL fragment and sends it only to the report API."""
        name = request.path_params.get("path") or "dashboard.html"
        path = (static_root / name).resolve()
        if static_root not in path.parents or not path.is_file() or path.suffix not in _types:
            return _json({"ok": False, "reason": "not_found", "detail": name}, 404)
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        # no-cache + ETag: after an upgrade the page never pairs new HTML with old scripts
        headers = {"Cache-Control": "no-cache", "ETag": etag, "X-Content-Type-Options": "nosniff",
                   "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
        if path.suffix == ".html":
            headers["Content-Security-Policy"] = "frame-ancestors 'none'"
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=_types[path.suffix], headers=headers)

    app.add_route("/dashboard", static_file, methods=["GET"], include_in_schema=False)
    app.add_route("/static/{path:path}", static_file, methods=["GET"], include_in_schema=False)

    pools: dict[str, tuple[Any, Pool]] = {}

    async def pool_of(project: Project) -> Pool | str:
        settings = project.vendor_config.get("calltracking", {})
        known = pools.get(project.project_id)
        if known is not None and known[0] == settings:
            return known[1]
        config_ = PoolConfig.of(settings, config.default_region)
        if isinstance(config_, str):
            return config_
        pool = Pool(config_)
        if known is not None:  # configuration changed: keep the leases of numbers still in the pool
            pool.restore(list(known[1].by_number.values()))
        elif load_leases is not None:  # first use since start: the leases still running
            pool.restore(await load_leases(project.project_id))
        pools[project.project_id] = (dict(settings), pool)
        return pool

    async def lease(request: Request) -> Response:
        """POST /api/calltracking/lease {write_key, anonymous_id}: a tracking number for this visitor."""
        route = "lease"
        if request.method == "OPTIONS":
            return await _preflight(request.headers.get("origin"))
        ip = client_ip(request, trusted)
        if (wait := per_ip.take(ip or "?")) > 0:
            return _limited(route, wait, "address")
        body = await _body(request, route)
        if isinstance(body, Response):
            return body
        data = decode_body(body)
        if isinstance(data, Refusal):
            return _refuse(metrics, route, 400, data.reason, data.detail)
        key = _header_write_key(request.headers) or _body_write_key(data)
        project = await projects.by_write_key(key) if key else None
        if project is None:
            return _unknown_key(route, key)
        origin = request.headers.get("origin")
        if origin and not origin_allowed(origin, project.origins):
            return _refuse(metrics, route, 403, RejectReason.origin_not_allowed, f"origin {origin} is not allowed")
        cors = cors_headers(origin)
        anon = data.get("anonymous_id") if isinstance(data, dict) else None
        if not isinstance(anon, str) or not 0 < len(anon) <= 256:
            return _refuse(metrics, route, 400, RejectReason.schema_violation, "anonymous_id is required", cors)
        pool = await pool_of(project)
        if isinstance(pool, str):
            return _refuse(metrics, route, 404, RejectReason.schema_violation, pool, cors)
        now = datetime.now(timezone.utc)
        got, changed = pool.lease(anon, now)
        if got is None:
            metrics.rejected.labels(route, "pool_exhausted").inc()
        elif changed:
            env = lease_envelope(project.project_id, got, now, pool.config.grace_minutes)
            try:
                await publish(topics.RAW, [(env.key, env.to_bytes())])
            except Exception as exc:  # unrecorded, a call to this number could not be matched: show the default
                log.warning("lease not recorded: %s", exc)
                return Response(lease_answer(None, pool.config), media_type="application/json",
                                headers={**cors, "Retry-After": "5"}, status_code=503)
            metrics.accepted.labels(route).inc()
        return Response(lease_answer(got, pool.config), media_type="application/json", headers=cors)

    app.add_route("/api/calltracking/lease", lease, methods=["POST", "OPTIONS"], include_in_schema=False)
    hot = {"/collect": hot_route("collect"), "/v1/batch": hot_route("v1_batch")}
    hot.update({f"/v1/{kind}": hot_route(f"v1_{kind}", kind) for kind in ("track", "page", "identify", "alias")})

    def through_starlette(handler: Callable[[Hot], Awaitable[Reply]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if request.method == "OPTIONS":
                return await _preflight(request.headers.get("origin"))
            return (await handler(Hot(request.scope, request.receive))).response()
        return endpoint

    for path, handler in hot.items():  # also registered, so they are listed and reachable through the app
        app.add_route(path, through_starlette(handler), methods=["POST", "OPTIONS"], include_in_schema=False)
    app.state.hot_routes = hot
    app.state.preflight = _preflight

    async def reader(request: Request, project_param: str | None) -> Project | Response:
        token = _bearer(request)
        if not token:
            return _json({"ok": False, "reason": "unauthorized", "detail": "send the read token as Authorization: Bearer <token>"},
                         401, {"WWW-Authenticate": "Bearer"})
        if config.admin_token and key_hash(token) == key_hash(config.admin_token):
            found = projects.get(project_param or "") if project_param else None
            if found is None:
                return _json({"ok": False, "reason": "unknown_project", "detail": f"no project {project_param!r}"}, 404)
            return found
        project = await projects.by_read_token(token)
        if project is None:
            if await projects.by_write_key(token) is not None:
                return _json({"ok": False, "reason": "forbidden", "detail": "a write key cannot read reports; use the read token"}, 403)
            return _json({"ok": False, "reason": "unauthorized", "detail": "unknown read token"}, 401, {"WWW-Authenticate": "Bearer"})
        return project

    @app.get("/api/reports/{name}", tags=["reports"], summary="A report as JSON or CSV")
    async def report(
        request: Request,
        name: str,
        date_from: str | None = Query(None, alias="from", description="first day, YYYY-MM-DD (default: 30 days ago)"),
        date_to: str | None = Query(None, alias="to", description="last day, inclusive (default: today)"),
        model: str = Query("last_non_direct", description="first_touch, last_touch, last_non_direct, linear, "
                                                           "time_decay, position_based"),
        currency: str | None = Query(None, description="ISO code; default: the installation's default currency"),
        lookback_days: int | None = Query(None, description="attribution lookback window, days (default 90)"),
        group_by: str | None = Query(None, description="channel, source or campaign (channels, models, campaigns)"),
        margin: str | None = Query(None, description="gross margin 0..1: ROMI in the channels report"),
        format: str = Query("json", pattern="^(json|csv)$"),
        project: str | None = Query(None, description="only with the local admin token"),
    ) -> Response:
        found = await reader(request, project)
        if isinstance(found, Response):
            return found
        # every other parameter (kind, collapse, order, resamples, seed of paths/datadriven) too:
        # report_request validates them all and refuses unknown ones
        query = {k: v for k, v in request.query_params.items() if k not in ("format", "project") and v}
        try:
            result = await run_report(name, found.project_id, query)
        except LookupError as exc:
            return _json({"ok": False, "reason": "unknown_report", "detail": str(exc)}, 404)
        except ValueError as exc:
            return _json({"ok": False, "reason": "bad_parameter", "detail": str(exc)}, 400)
        except WarehouseUnavailable as exc:
            return _json({"ok": False, "reason": "unavailable", "detail": exc.detail}, 503,
                         {"Retry-After": str(exc.retry_after_s)})
        if format == "csv":
            return Response(_csv(result), media_type="text/csv; charset=utf-8")
        return _json(result)

    def _admin(request: Request) -> Response | None:
        token = _bearer(request)
        if not config.admin_token or not token or key_hash(token) != key_hash(config.admin_token):
            return _json({"ok": False, "reason": "unauthorized", "detail": "admin token required"}, 401)
        return None

    @app.post("/api/admin/projects", tags=["admin"], include_in_schema=False)
    async def admin_create(request: Request, body: NewProject) -> Response:
        if (denied := _admin(request)) is not None:
            return denied
        try:
            project, creds = await asyncio.to_thread(projects.create, body.name, tuple(body.origins))
        except ValueError as exc:
            return _json({"ok": False, "reason": "conflict", "detail": str(exc)}, 409)
        return _json({"project": project.project_id, "name": project.name, "origins": list(project.origins),
                      "write_key": creds.write_key, "read_token": creds.read_token, "webhook_secret": creds.webhook_secret})

    @app.post("/api/admin/projects/{project_id}/vendors/{vendor}", tags=["admin"], include_in_schema=False)
    async def admin_configure(request: Request, project_id: str, vendor: str) -> Response:
        if (denied := _admin(request)) is not None:
            return denied
        if vendor not in CONFIGURABLE:
            return _json({"ok": False, "reason": "unknown_vendor", "detail": f"vendors: {', '.join(CONFIGURABLE)}"}, 404)
        values = orjson.loads(await request.body() or b"{}")
        try:
            now = await asyncio.to_thread(projects.configure, project_id, vendor, values)
        except LookupError:
            return _json({"ok": False, "reason": "unknown_project", "detail": project_id}, 404)
        return _json({"project": project_id, "vendor": vendor, "settings": sorted(now)})

    @app.post("/api/admin/projects/{project_id}/timezone", tags=["admin"], include_in_schema=False)
    async def admin_timezone(request: Request, project_id: str) -> Response:
        if (denied := _admin(request)) is not None:
            return denied
        name = str(orjson.loads(await request.body() or b"{}").get("timezone") or "")
        try:
            now = await asyncio.to_thread(projects.set_timezone, project_id, name)
        except LookupError:
            return _json({"ok": False, "reason": "unknown_project", "detail": project_id}, 404)
        except ValueError as exc:
            return _json({"ok": False, "reason": "unknown_timezone", "detail": str(exc)}, 400)
        return _json({"project": project_id, "timezone": now})

    @app.get("/api/admin/projects", tags=["admin"], include_in_schema=False)
    async def admin_list(request: Request) -> Response:
        if (denied := _admin(request)) is not None:
            return denied
        found = await asyncio.to_thread(projects.list)
        return _json([{"project": p.project_id, "name": p.name, "origins": list(p.origins)} for p in found])

    @app.post("/api/admin/projects/{project_id}/rotate", tags=["admin"], include_in_schema=False)
    async def admin_rotate(request: Request, project_id: str) -> Response:
        if (denied := _admin(request)) is not None:
            return denied
        try:
            creds = await asyncio.to_thread(projects.rotate, project_id)
        except LookupError:
            return _json({"ok": False, "reason": "unknown_project", "detail": project_id}, 404)
        return _json({"project": project_id, "write_key": creds.write_key, "read_token": creds.read_token,
                      "webhook_secret": creds.webhook_secret})

    async def healthz(_request: Request) -> Response:
        return _json({"ok": True})

    async def readyz(_request: Request) -> Response:
        if draining.is_set():  # SIGTERM: a load balancer stops sending while we still serve
            return _json({"ready": False, "draining": True}, 503)
        if state["ready"] and not_ready is not None and (why := not_ready()):
            return _json({"ready": False, "reason": why}, 503)
        notes = readiness_notes() if readiness_notes is not None else {}
        return _json({"ready": state["ready"], **notes}, 200 if state["ready"] else 503)

    async def prometheus(_request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    app.add_route("/readyz", readyz, methods=["GET"], include_in_schema=False)
    app.add_route("/metrics", prometheus, methods=["GET"], include_in_schema=False)
    return app


class Edge:
    """The ASGI entry point: ingest routes straight to their handlers, as bare ASGI (no Request or
    Response objects), everything else through FastAPI. The hot path skips FastAPI's middleware
    stack and Starlette's request machinery; its handlers answer every error themselves."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.hot: dict[str, Callable[[Hot], Awaitable[Reply]]] = app.state.hot_routes
        self.state = app.state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            handler = self.hot.get(scope["path"])
            if handler is not None:
                method = scope["method"]
                if method == "POST":
                    req = Hot(scope, receive)
                    try:
                        reply = await handler(req)
                    except ClientDisconnect:  # nobody to answer; nothing was published
                        return
                    await send({"type": "http.response.start", "status": reply.status,
                                "headers": reply.asgi_headers(req.headers.get("origin"))})
                    await send({"type": "http.response.body", "body": reply.body})
                    return
                if method == "OPTIONS":
                    origin = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"), None)
                    await (await self.state.preflight(origin))(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _csv(result: dict[str, Any]) -> str:
    rows = list(result.get("rows", []))
    total = result.get("total") or {}
    columns: list[str] = []
    for row in rows + ([total] if total else []):
        columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    if total:
        first = columns[0] if columns else ""
        writer.writerow({**total, **({first: "Total"} if first and first not in total else {})})
    return buf.getvalue()
