"""GET /api/reports/{name} (read token, or the local admin token with ?project=): a report as JSON
or CSV. The reports themselves are the composition root's `run_report`."""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from schemas.project import Project, key_hash

from ..ports import WarehouseUnavailable
from .context import Context, bearer, json_response

MODELS = "first_touch, last_touch, last_non_direct, linear, time_decay, position_based"


def routes(router: APIRouter, ctx: Context) -> None:
    @router.get("/api/reports/{name}", tags=["reports"], summary="A report as JSON or CSV")
    async def report(
        request: Request,
        name: str,
        date_from: str | None = Query(None, alias="from", description="first day, YYYY-MM-DD (default: 30 days ago)"),
        date_to: str | None = Query(None, alias="to", description="last day, inclusive (default: today)"),
        model: str = Query("last_non_direct", description=MODELS),
        currency: str | None = Query(None, description="ISO code; default: the installation's default currency"),
        lookback_days: int | None = Query(None, description="attribution lookback window, days (default 90)"),
        group_by: str | None = Query(None, description="channel, source or campaign (channels, models, campaigns)"),
        margin: str | None = Query(None, description="gross margin 0..1: ROMI in the channels report"),
        format: str = Query("json", pattern="^(json|csv)$"),
        project: str | None = Query(None, description="only with the local admin token"),
    ) -> Response:
        found = await reader(ctx, request, project)
        if isinstance(found, Response):
            return found
        # every other parameter (kind, collapse, order, resamples, seed of paths/datadriven) too:
        # report_request validates them all and refuses unknown ones
        query = {k: v for k, v in request.query_params.items() if k not in ("format", "project") and v}
        try:
            result = await ctx.run_report(name, found.project_id, query)
        except LookupError as exc:
            return json_response({"ok": False, "reason": "unknown_report", "detail": str(exc)}, 404)
        except ValueError as exc:
            return json_response({"ok": False, "reason": "bad_parameter", "detail": str(exc)}, 400)
        except WarehouseUnavailable as exc:
            return json_response({"ok": False, "reason": "unavailable", "detail": exc.detail}, 503,
                                 {"Retry-After": str(exc.retry_after_s)})
        if format == "csv":
            return Response(csv_of(result), media_type="text/csv; charset=utf-8")
        return json_response(result)


async def reader(ctx: Context, request: Request, project_param: str | None) -> Project | Response:
    """The project whose read token the request bears (any project, named by ?project=, for the
    local admin token), or the refusal."""
    token = bearer(request)
    if not token:
        return json_response({"ok": False, "reason": "unauthorized",
                              "detail": "send the read token as Authorization: Bearer <token>"},
                             401, {"WWW-Authenticate": "Bearer"})
    if ctx.config.admin_token and key_hash(token) == key_hash(ctx.config.admin_token):
        found = ctx.projects.get(project_param or "") if project_param else None
        if found is None:
            return json_response({"ok": False, "reason": "unknown_project", "detail": f"no project {project_param!r}"},
                                 404)
        return found
    project = await ctx.projects.by_read_token(token)
    if project is None:
        if await ctx.projects.by_write_key(token) is not None:
            return json_response({"ok": False, "reason": "forbidden",
                                  "detail": "a write key cannot read reports; use the read token"}, 403)
        return json_response({"ok": False, "reason": "unauthorized", "detail": "unknown read token"}, 401,
                             {"WWW-Authenticate": "Bearer"})
    return project


def csv_of(result: dict[str, Any]) -> str:
    """A report as CSV: its rows, then its total row (first column "Total")."""
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
