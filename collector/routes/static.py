"""GET /tracker.js (the website tag), /dashboard and /static/* (the dashboard's own files, no CDN)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from .context import Context, json_response

STATIC_ROOT = (Path(__file__).parent.parent / "static").resolve()
TYPES = {".html": "text/html; charset=utf-8", ".js": "application/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png", ".map": "application/json"}


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


def routes(router: APIRouter, ctx: Context) -> None:
    tracker_path = STATIC_ROOT / "tracker.js"
    tracker = {"body": b"", "etag": "", "mtime": -1.0}

    async def tracker_js(request: Request) -> Response:
        mtime = tracker_path.stat().st_mtime
        if mtime != tracker["mtime"]:  # read once, again only when the file changes (upgrades)
            body = tracker_path.read_bytes()
            tracker.update(body=body, etag=_etag(body), mtime=mtime)
        headers = {"Cache-Control": "public, max-age=3600", "ETag": tracker["etag"]}
        if request.headers.get("if-none-match") == tracker["etag"]:
            return Response(status_code=304, headers=headers)
        return Response(tracker["body"], media_type="application/javascript; charset=utf-8", headers=headers)

    router.add_route("/tracker.js", tracker_js, methods=["GET"], include_in_schema=False)
    router.add_route("/dashboard", static_file, methods=["GET"], include_in_schema=False)
    router.add_route("/static/{path:path}", static_file, methods=["GET"], include_in_schema=False)


async def static_file(request: Request) -> Response:
    """The dashboard's own files. The read token never travels in these requests: the page takes it
    from the URL fragment and sends it only to the report API."""
    name = request.path_params.get("path") or "dashboard.html"
    path = (STATIC_ROOT / name).resolve()
    if STATIC_ROOT not in path.parents or not path.is_file() or path.suffix not in TYPES:
        return json_response({"ok": False, "reason": "not_found", "detail": name}, 404)
    body = path.read_bytes()
    etag = _etag(body)
    # no-cache + ETag: after an upgrade the page never pairs new HTML with old scripts
    headers = {"Cache-Control": "no-cache", "ETag": etag, "X-Content-Type-Options": "nosniff",
               "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
    if path.suffix == ".html":
        headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=TYPES[path.suffix], headers=headers)
