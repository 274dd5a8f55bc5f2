"""POST /api/spend and /api/rates (write key): ad spend and exchange-rate tables, CSV or JSON rows,
imported all or nothing."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Awaitable, Callable

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from schemas import topics
from schemas.reasons import RejectReason

from ..spend import parse_rates, parse_spend, rows_of_body
from .context import Context, header_write_key, json_response, unavailable

log = logging.getLogger("moneytrail.collector")


def routes(router: APIRouter, ctx: Context) -> None:
    router.add_route("/api/rates", table_import(ctx, "rates", parse_rates), methods=["POST"], include_in_schema=False)
    router.add_route("/api/spend", table_import(ctx, "spend", parse_spend), methods=["POST"], include_in_schema=False)


def table_import(ctx: Context, route: str, parse_rows: Callable) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint of one table: `route` is "spend" or "rates", `parse_rows` its parser."""

    async def endpoint(request: Request) -> Response:
        key = header_write_key(request.headers)
        project = await ctx.projects.by_write_key(key) if key else None
        if project is None:
            return ctx.unknown_key(route, key)
        body = await ctx.body(request, route)
        if isinstance(body, Response):
            return body
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        rows = rows_of_body(body, ctype)
        if isinstance(rows, str):
            return ctx.refuse(route, 400, RejectReason.schema_violation, rows)
        parsed = parse_rows(rows, project.project_id, datetime.now(timezone.utc), ctx.config.default_currency,
                            first_line=0 if "json" in ctype else 2)
        if parsed.errors:
            ctx.metrics.rejected.labels(route, parsed.reason.value).inc()
            return json_response({"ok": False, "reason": parsed.reason.value, "detail": parsed.errors[0],
                                  "errors": parsed.errors}, 400)
        try:
            await ctx.publish(topics.RAW, [(e.key, e.to_bytes()) for e in parsed.envelopes])
        except Exception as exc:
            log.warning("publish failed: %s", exc)
            return unavailable()
        ctx.metrics.accepted.labels(route).inc(len(parsed.envelopes))
        days = sorted({e.properties["date"] for e in parsed.envelopes})
        what = "source" if route == "spend" else "currency"
        return json_response({"ok": True, "import_id": parsed.import_id, "rows": len(parsed.envelopes),
                              "from": days[0], "to": days[-1],
                              "sources" if route == "spend" else "currencies":
                                  sorted({e.properties[what] for e in parsed.envelopes})})

    return endpoint
