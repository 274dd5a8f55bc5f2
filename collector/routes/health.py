"""GET /healthz (the process answers), /readyz (it should get traffic), /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from .context import Context, json_response


def routes(router: APIRouter, ctx: Context) -> None:
    async def healthz(_request: Request) -> Response:
        return json_response({"ok": True})

    async def readyz(_request: Request) -> Response:
        if ctx.draining.is_set():  # SIGTERM: a load balancer stops sending while we still serve
            return json_response({"ready": False, "draining": True}, 503)
        if ctx.ready and ctx.not_ready is not None and (why := ctx.not_ready()):
            return json_response({"ready": False, "reason": why}, 503)
        notes = ctx.readiness_notes() if ctx.readiness_notes is not None else {}
        return json_response({"ready": ctx.ready, **notes}, 200 if ctx.ready else 503)

    async def prometheus(_request: Request) -> Response:
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    router.add_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    router.add_route("/readyz", readyz, methods=["GET"], include_in_schema=False)
    router.add_route("/metrics", prometheus, methods=["GET"], include_in_schema=False)
