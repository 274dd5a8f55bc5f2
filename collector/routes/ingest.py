"""The hot ingest routes: POST /collect, /v1/batch, /v1/track|page|identify|alias (write key).

They are plain ASGI handlers over `Hot` and `Reply` (Starlette's Request and Response cost more
than the rest of a small request); `Edge` routes them straight from the server, and they are also
registered on the app (through Starlette) so they are listed and reachable there too."""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, Awaitable, Callable

import orjson
from fastapi import APIRouter, FastAPI
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from schemas import topics
from schemas.project import Project
from schemas.reasons import RejectReason

from ..bodies import BadEncoding, TooLarge, read_asgi_body
from ..cors import cors_headers, origin_allowed
from ..ingest import Refusal, decode_body, messages_of, parse
from .context import NO_KEY, Context, body_write_key, client_ip_of, header_write_key

log = logging.getLogger("moneytrail.collector")
# text/plain: navigator.sendBeacon; form-urlencoded: what `curl -d` sends by default. The body
# must still be JSON.
JSON_TYPES = ("application/json", "text/plain", "application/x-www-form-urlencoded", "")
KINDS = ("track", "page", "identify", "alias")  # /v1/<kind>: every message is of that type


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


def reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(orjson.dumps(data), status, headers)


# {"ok": true, "accepted": n} without CORS headers (server-side senders), one shared Reply per n
_ACCEPTED: dict[int, Reply] = {}


def accepted_reply(n: int) -> Reply:
    answer = _ACCEPTED.get(n)
    if answer is None:
        answer = reply({"ok": True, "accepted": n})
        if len(_ACCEPTED) < 1024:
            _ACCEPTED[n] = answer
    return answer


Handler = Callable[[Hot], Awaitable[Reply]]
# what a request that passed every check up to its messages brings: project, body, data, CORS, address
Admitted = tuple[Project, bytes, Any, dict[str, str], "str | None"]


class HotIngest:
    """The ingest handlers of one app. Counts with cached label children: labels() costs a lock
    and a lookup per call."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # the context's parts read per request, one attribute away
        self.config, self.projects, self.trusted, self.rules = ctx.config, ctx.projects, ctx.trusted, ctx.rules
        self.per_ip, self.per_key, self.metrics = ctx.per_ip, ctx.per_key, ctx.metrics
        self._rejected: dict[tuple[str, str], Any] = {}
        self._accepted: dict[str, Any] = {}

    def handlers(self) -> dict[str, Handler]:
        """Path -> handler; functools.partial: no wrapper coroutine per request."""
        hot: dict[str, Handler] = {"/collect": functools.partial(self.ingest, route="collect"),
                                   "/v1/batch": functools.partial(self.ingest, route="v1_batch")}
        hot.update({f"/v1/{kind}": functools.partial(self.ingest, route=f"v1_{kind}", forced_type=kind)
                    for kind in KINDS})
        return hot

    def count_refused(self, route: str, reason: str, n: int = 1) -> None:
        child = self._rejected.get((route, reason))
        if child is None:
            child = self._rejected[(route, reason)] = self.metrics.rejected.labels(route, reason)
        child.inc(n)

    def refuse(self, route: str, status: int, reason: RejectReason, detail: str,
               headers: dict[str, str] | None = None) -> Reply:
        self.count_refused(route, reason.value)
        return reply({"ok": False, "reason": reason.value, "detail": detail}, status, headers)

    def unknown_key(self, route: str, key: str | None) -> Reply:
        return self.refuse(route, 401, RejectReason.unknown_key, "unknown write key" if key else NO_KEY,
                           {"WWW-Authenticate": 'Basic realm="moneytrail"'})

    def limited(self, route: str, wait: float, who: str) -> Reply:
        return self.refuse(route, 429, RejectReason.rate_limited, f"too many requests from this {who}; retry later",
                           {"Retry-After": str(max(1, int(wait + 0.999)))})

    async def admit(self, req: Hot, route: str) -> Reply | Admitted:
        """Media type, address limit, write key, body, origin: a refusal, or what the batch needs."""
        headers, projects = req.headers, self.projects
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in JSON_TYPES:
            return self.refuse(route, 415, RejectReason.unsupported_media_type,
                               f"send application/json or text/plain, not {ctype}")
        ip = client_ip_of(req.peer, headers, self.trusted)
        if (wait := self.per_ip.take(ip or "?")) > 0:
            return self.limited(route, wait, "address")
        # A key in a header is checked before the body is read: strangers learn nothing more.
        key = header_write_key(headers)
        project = await projects.by_write_key(key) if key else None
        if key and project is None:
            return self.unknown_key(route, key)
        limit = self.config.max_request_bytes
        try:
            body = await read_asgi_body(req.receive, headers, limit)
        except TooLarge:
            return self.refuse(route, 413, RejectReason.too_large, f"request body over {limit} bytes")
        except BadEncoding as exc:
            return self.refuse(route, 400, RejectReason.bad_encoding, str(exc))
        data = decode_body(body)
        if type(data) is Refusal:
            return self.refuse(route, 400, data.reason, data.detail)
        if project is None:
            key = body_write_key(data)
            project = await projects.by_write_key(key) if key else None
            if project is None:
                return self.unknown_key(route, key)
        origin = headers.get("origin")
        if origin and not origin_allowed(origin, project.origins):
            refused = self.refuse(route, 403, RejectReason.origin_not_allowed,
                                  f"origin {origin} is not allowed for this project", {"Vary": "Origin"})
            refused.echo_origin = False
            return refused
        return project, body, data, cors_headers(origin), ip

    async def ingest(self, req: Hot, route: str, forced_type: str | None = None) -> Reply:
        admitted = await self.admit(req, route)
        if type(admitted) is Reply:
            return admitted
        project, body, data, cors, ip = admitted  # type: ignore[misc]
        messages = messages_of(data, self.config.max_batch_events)
        if type(messages) is Refusal:
            status = 413 if messages.reason is RejectReason.too_large else 400
            return self.refuse(route, status, messages.reason, messages.detail, cors)
        if (wait := self.per_key.take(project.project_id, len(messages))) > 0:
            return self.limited(route, wait, "project")
        parsed = parse(messages, project.project_id, ip, req.headers.get("user-agent"), self.rules, len(body),
                       forced_type)
        for refusal in parsed.refused:
            self.count_refused(route, refusal.reason.value)
        records = parsed.records
        if not records:
            first = parsed.refused[0] if parsed.refused else Refusal(RejectReason.schema_violation, "empty batch")
            status = 413 if first.reason is RejectReason.too_large else 400
            return reply({"ok": False, "reason": first.reason.value, "detail": first.detail,
                          "rejected": [r.as_json() for r in parsed.refused]}, status, cors)
        if (failed := await self.publish(route, records, cors)) is not None:
            return failed
        if not parsed.refused and not cors:
            return accepted_reply(len(records))
        out: dict[str, Any] = {"ok": True, "accepted": len(records)}
        if parsed.refused:
            out["rejected"] = [r.as_json() for r in parsed.refused]
        return reply(out, 200, cors)

    async def publish(self, route: str, records: list[tuple[bytes, bytes]], cors: dict[str, str]) -> Reply | None:
        """Makes the records durable on the bus and counts them; a 503 reply when it could not."""
        started = time.perf_counter()
        try:
            await self.ctx.publish(topics.RAW, records)
        except Exception as exc:  # not durable: the client must retry, and nothing was acknowledged
            log.warning("publish failed: %s", exc)
            self.count_refused(route, "unavailable", len(records))
            # the bus may say why (e.g. its spool is full) and when to come back
            detail = getattr(exc, "detail", "events could not be stored; retry later")
            return reply({"ok": False, "reason": "unavailable", "detail": detail},
                         503, {"Retry-After": str(getattr(exc, "retry_after_s", 5)), **cors})
        self.metrics.publish_seconds.observe(time.perf_counter() - started)
        accepted = self._accepted.get(route)
        if accepted is None:
            accepted = self._accepted[route] = self.metrics.accepted.labels(route)
        accepted.inc(len(records))
        return None


def routes(router: APIRouter, ctx: Context) -> dict[str, Handler]:
    """Registers the ingest routes (through Starlette, for listing and for callers of the app
    itself) and returns path -> bare handler, for `Edge`."""
    hot = HotIngest(ctx).handlers()

    def through_starlette(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            if request.method == "OPTIONS":
                return await ctx.preflight(request.headers.get("origin"))
            return (await handler(Hot(request.scope, request.receive))).response()
        return endpoint

    for path, handler in hot.items():
        router.add_route(path, through_starlette(handler), methods=["POST", "OPTIONS"], include_in_schema=False)
    return hot


class Edge:
    """The ASGI entry point: ingest routes straight to their handlers, as bare ASGI (no Request or
    Response objects), everything else through FastAPI. The hot path skips FastAPI's middleware
    stack and Starlette's request machinery; its handlers answer every error themselves."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.hot: dict[str, Handler] = app.state.hot_routes
        self.state = app.state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            handler = self.hot.get(scope["path"])
            if handler is not None:
                method = scope["method"]
                if method == "POST":
                    req = Hot(scope, receive)
                    try:
                        answer = await handler(req)
                    except ClientDisconnect:  # nobody to answer; nothing was published
                        return
                    await send({"type": "http.response.start", "status": answer.status,
                                "headers": answer.asgi_headers(req.headers.get("origin"))})
                    await send({"type": "http.response.body", "body": answer.body})
                    return
                if method == "OPTIONS":
                    origin = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"), None)
                    await (await self.state.preflight(origin))(scope, receive, send)
                    return
        await self.app(scope, receive, send)
