"""GET|POST /webhooks/{vendor}/{project_key}: a vendor's request (CRM, payments, calls, chats),
read by its mapper in collector/vendors/, answered as the vendor expects."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from schemas import topics
from schemas.envelope import Envelope
from schemas.project import Project
from schemas.reasons import RejectReason

from ..calltracking import static_numbers, with_static_campaign
from ..ingest import Refusal, envelope_of_draft
from ..vendors.base import Draft, Refused, VendorRequest
from ..vendors.registry import VENDORS, mapper_of
from .context import Context, unavailable

log = logging.getLogger("moneytrail.collector")


def routes(router: APIRouter, ctx: Context) -> None:
    async def webhook(request: Request) -> Response:
        vendor = request.path_params["vendor"]
        route = f"webhook_{vendor}" if vendor in VENDORS else "webhook_unknown"
        mapper = mapper_of(vendor)
        if mapper is None:
            return ctx.refuse(route, 404, RejectReason.unknown_type,
                              f"no webhook for {vendor!r}; vendors: {', '.join(VENDORS)}")
        project = await ctx.projects.by_webhook_secret(request.path_params["project_key"])
        if project is None:
            return ctx.refuse(route, 401, RejectReason.unknown_key, "unknown project key in the webhook URL")
        body = await ctx.body(request, route)
        if isinstance(body, Response):
            return body
        received_at = datetime.now(timezone.utc)
        vreq = VendorRequest(vendor=vendor, project=project, method=request.method,
                             headers={k.lower(): v for k, v in request.headers.items()},
                             query=dict(request.query_params), body=body, client_ip=ctx.client_ip(request),
                             received_at=received_at, config=project.vendor_config.get(vendor, {}))
        try:
            result = mapper(vreq)
        except Exception:  # a mapper bug must answer, not crash; it is counted and logged without the body
            log.exception("vendor mapper %s failed", vendor)
            return ctx.refuse(route, 400, RejectReason.schema_violation, f"{vendor}: the request could not be read")
        if isinstance(result, Refused):
            return ctx.refuse(route, result.status, result.reason, result.detail)
        envelopes = envelopes_of(ctx, project, result.drafts, received_at)
        if isinstance(envelopes, Refusal):
            return ctx.refuse(route, 400, envelopes.reason, envelopes.detail)
        if envelopes:
            try:
                await ctx.publish(topics.RAW, [(e.key, e.to_bytes()) for e in envelopes])
            except Exception as exc:  # not durable: the vendor retries (most do; Bitrix24 does not)
                log.warning("publish failed: %s", exc)
                ctx.metrics.rejected.labels(route, "unavailable").inc(len(envelopes))
                return unavailable()
            ctx.metrics.accepted.labels(route).inc(len(envelopes))
        return Response(result.reply.body, status_code=result.reply.status, media_type=result.reply.content_type)

    router.add_route("/webhooks/{vendor}/{project_key}", webhook, methods=["GET", "POST"], include_in_schema=False)


def envelopes_of(ctx: Context, project: Project, drafts: tuple[Draft, ...],
                 received_at: datetime) -> list[Envelope] | Refusal:
    """The mapper's drafts as envelopes, calls to a static tracking number tagged with its campaign;
    the first draft that does not make an envelope refuses them all."""
    static = static_numbers(project.vendor_config.get("calltracking", {}).get("static") or {},
                            ctx.config.default_region)
    envelopes = []
    for draft in drafts:
        env = envelope_of_draft(draft, project.project_id, received_at, ctx.rules)
        if isinstance(env, Refusal):
            return env
        envelopes.append(with_static_campaign(env, static if isinstance(static, dict) else {}))
    return envelopes
