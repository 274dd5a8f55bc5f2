"""/api/admin/projects... (the local admin token: the CLI talking to a running server): create,
list, configure a vendor, set the time zone, rotate the credentials. Not in the OpenAPI docs."""

from __future__ import annotations

import asyncio

import orjson
from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from schemas.project import key_hash

from ..vendors.registry import CONFIGURABLE
from .context import Context, bearer, json_response


class NewProject(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    origins: list[str] = Field(default_factory=list)


def unknown_project(project_id: str) -> Response:
    return json_response({"ok": False, "reason": "unknown_project", "detail": project_id}, 404)


def routes(router: APIRouter, ctx: Context) -> None:
    projects = ctx.projects

    def denied(request: Request) -> Response | None:
        token = bearer(request)
        if not ctx.config.admin_token or not token or key_hash(token) != key_hash(ctx.config.admin_token):
            return json_response({"ok": False, "reason": "unauthorized", "detail": "admin token required"}, 401)
        return None

    @router.post("/api/admin/projects", tags=["admin"], include_in_schema=False)
    async def admin_create(request: Request, body: NewProject) -> Response:
        if (refused := denied(request)) is not None:
            return refused
        try:
            project, creds = await asyncio.to_thread(projects.create, body.name, tuple(body.origins))
        except ValueError as exc:
            return json_response({"ok": False, "reason": "conflict", "detail": str(exc)}, 409)
        return json_response({"project": project.project_id, "name": project.name, "origins": list(project.origins),
                              "write_key": creds.write_key, "read_token": creds.read_token,
                              "webhook_secret": creds.webhook_secret})

    @router.post("/api/admin/projects/{project_id}/vendors/{vendor}", tags=["admin"], include_in_schema=False)
    async def admin_configure(request: Request, project_id: str, vendor: str) -> Response:
        if (refused := denied(request)) is not None:
            return refused
        if vendor not in CONFIGURABLE:
            return json_response({"ok": False, "reason": "unknown_vendor", "detail": f"vendors: {', '.join(CONFIGURABLE)}"},
                                 404)
        values = orjson.loads(await request.body() or b"{}")
        try:
            now = await asyncio.to_thread(projects.configure, project_id, vendor, values)
        except LookupError:
            return unknown_project(project_id)
        return json_response({"project": project_id, "vendor": vendor, "settings": sorted(now)})

    @router.post("/api/admin/projects/{project_id}/timezone", tags=["admin"], include_in_schema=False)
    async def admin_timezone(request: Request, project_id: str) -> Response:
        if (refused := denied(request)) is not None:
            return refused
        name = str(orjson.loads(await request.body() or b"{}").get("timezone") or "")
        try:
            now = await asyncio.to_thread(projects.set_timezone, project_id, name)
        except LookupError:
            return unknown_project(project_id)
        except ValueError as exc:
            return json_response({"ok": False, "reason": "unknown_timezone", "detail": str(exc)}, 400)
        return json_response({"project": project_id, "timezone": now})

    @router.get("/api/admin/projects", tags=["admin"], include_in_schema=False)
    async def admin_list(request: Request) -> Response:
        if (refused := denied(request)) is not None:
            return refused
        found = await asyncio.to_thread(projects.list)
        return json_response([{"project": p.project_id, "name": p.name, "origins": list(p.origins)} for p in found])

    @router.post("/api/admin/projects/{project_id}/rotate", tags=["admin"], include_in_schema=False)
    async def admin_rotate(request: Request, project_id: str) -> Response:
        if (refused := denied(request)) is not None:
            return refused
        try:
            creds = await asyncio.to_thread(projects.rotate, project_id)
        except LookupError:
            return unknown_project(project_id)
        return json_response({"project": project_id, "write_key": creds.write_key, "read_token": creds.read_token,
                              "webhook_secret": creds.webhook_secret})
