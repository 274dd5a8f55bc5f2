"""The HTTP edge, assembled: one shared context (collector/routes/context.py) and the routes of each
area over it (collector/routes/). Hot ingest routes are plain ASGI handlers (FastAPI costs ~4x per
request) that `Edge` serves directly; reports and admin go through FastAPI for their OpenAPI docs."""

from __future__ import annotations

import gc
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable

from fastapi import FastAPI

from .calltracking import Lease
from .ports import CollectorConfig, ProjectDirectory, Publish, RunReport
from .routes import admin, calltracking, health, imports, ingest, reports, static, webhooks
from .routes.context import Context, client_ip, client_ip_of, make_context
from .routes.ingest import Edge, Hot, Reply
from .routes.reports import csv_of

__all__ = ["Edge", "Hot", "Reply", "client_ip", "client_ip_of", "create_app", "csv_of"]


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
    ctx = make_context(config, projects, publish, run_report, gauges, load_leases, not_ready, readiness_notes)
    app = FastAPI(title="moneytrail", version="1", lifespan=_lifespan(ctx, on_start, on_stop),
                  description="Self-hosted end-to-end marketing analytics. Ingest with a write key, read with a read token.")
    app.state.context = ctx
    app.state.metrics = ctx.metrics
    app.state.draining = ctx.draining  # set by `serve` on SIGTERM (moneytrail/cli.py)
    app.state.known_origins = ctx.known_origins
    router = app.router
    webhooks.routes(router, ctx)
    imports.routes(router, ctx)
    static.routes(router, ctx)
    calltracking.routes(router, ctx)
    app.state.hot_routes = ingest.routes(router, ctx)  # path -> bare handler, served by Edge
    app.state.preflight = ctx.preflight
    reports.routes(router, ctx)
    admin.routes(router, ctx)
    health.routes(router, ctx)
    return app


def _lifespan(ctx: Context, on_start: Callable[[], Awaitable[None]] | None,
              on_stop: Callable[[], Awaitable[None]] | None) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if on_start:
            await on_start()
        # What exists now lives as long as the process: freezing it keeps the cyclic collector
        # from re-scanning it on every full collection while requests churn.
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 20)
        ctx.ready = True
        try:
            yield
        finally:
            ctx.ready = False  # readiness turns 503 first, then we drain
            if on_stop:
                await on_stop()

    return lifespan
