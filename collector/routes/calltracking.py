"""POST /api/calltracking/lease {write_key, anonymous_id}: a tracking number leased to a visitor
(the tracker shows it in elements with data-mt-phone); the lease is published so a call to that
number joins the visit."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from schemas import topics
from schemas.project import Project
from schemas.reasons import RejectReason

from ..calltracking import Lease, Pool, PoolConfig, lease_envelope
from ..calltracking import answer as lease_answer
from ..cors import cors_headers, origin_allowed
from ..ingest import Refusal, decode_body
from .context import Context, body_write_key, header_write_key

log = logging.getLogger("moneytrail.collector")


class Pools:
    """Each project's number pool, rebuilt when its call-tracking settings change."""

    def __init__(self, default_region: str, load_leases: Callable[[str], Awaitable[list[Lease]]] | None) -> None:
        self.default_region, self.load_leases = default_region, load_leases
        self.pools: dict[str, tuple[Any, Pool]] = {}

    async def of(self, project: Project) -> Pool | str:
        """The project's pool, or why it has none."""
        settings = project.vendor_config.get("calltracking", {})
        known = self.pools.get(project.project_id)
        if known is not None and known[0] == settings:
            return known[1]
        config = PoolConfig.of(settings, self.default_region)
        if isinstance(config, str):
            return config
        pool = Pool(config)
        if known is not None:  # configuration changed: keep the leases of numbers still in the pool
            pool.restore(list(known[1].by_number.values()))
        elif self.load_leases is not None:  # first use since start: the leases still running
            pool.restore(await self.load_leases(project.project_id))
        self.pools[project.project_id] = (dict(settings), pool)
        return pool


def routes(router: APIRouter, ctx: Context) -> None:
    pools = Pools(ctx.config.default_region, ctx.load_leases)

    async def lease(request: Request) -> Response:
        """POST /api/calltracking/lease {write_key, anonymous_id}: a tracking number for this visitor."""
        route = "lease"
        if request.method == "OPTIONS":
            return await ctx.preflight(request.headers.get("origin"))
        ip = ctx.client_ip(request)
        if (wait := ctx.per_ip.take(ip or "?")) > 0:
            return ctx.limited(route, wait, "address")
        body = await ctx.body(request, route)
        if isinstance(body, Response):
            return body
        data = decode_body(body)
        if isinstance(data, Refusal):
            return ctx.refuse(route, 400, data.reason, data.detail)
        key = header_write_key(request.headers) or body_write_key(data)
        project = await ctx.projects.by_write_key(key) if key else None
        if project is None:
            return ctx.unknown_key(route, key)
        origin = request.headers.get("origin")
        if origin and not origin_allowed(origin, project.origins):
            return ctx.refuse(route, 403, RejectReason.origin_not_allowed, f"origin {origin} is not allowed")
        cors = cors_headers(origin)
        anon = data.get("anonymous_id") if isinstance(data, dict) else None
        if not isinstance(anon, str) or not 0 < len(anon) <= 256:
            return ctx.refuse(route, 400, RejectReason.schema_violation, "anonymous_id is required", cors)
        pool = await pools.of(project)
        if isinstance(pool, str):
            return ctx.refuse(route, 404, RejectReason.schema_violation, pool, cors)
        return await lease_from(ctx, pool, project, anon, cors)

    router.add_route("/api/calltracking/lease", lease, methods=["POST", "OPTIONS"], include_in_schema=False)


async def lease_from(ctx: Context, pool: Pool, project: Project, anon: str, cors: dict[str, str]) -> Response:
    """The visitor's number (a new lease is published first), or the page's own number when the
    pool is empty or the lease could not be recorded."""
    route = "lease"
    now = datetime.now(timezone.utc)
    got, changed = pool.lease(anon, now)
    if got is None:
        ctx.metrics.rejected.labels(route, "pool_exhausted").inc()
    elif changed:
        env = lease_envelope(project.project_id, got, now, pool.config.grace_minutes)
        try:
            await ctx.publish(topics.RAW, [(env.key, env.to_bytes())])
        except Exception as exc:  # unrecorded, a call to this number could not be matched: show the default
            log.warning("lease not recorded: %s", exc)
            return Response(lease_answer(None, pool.config), media_type="application/json",
                            headers={**cors, "Retry-After": "5"}, status_code=503)
        ctx.metrics.accepted.labels(route).inc()
    return Response(lease_answer(got, pool.config), media_type="application/json", headers=cors)
