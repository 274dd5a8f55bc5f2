"""CORS for the browser-facing routes, limited to each project's allowed origins."""

from __future__ import annotations

from fnmatch import fnmatchcase

from starlette.responses import Response

ALLOW_HEADERS = "content-type, x-write-key, authorization"


def origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    """A project without configured origins accepts any; otherwise exact scheme://host[:port], or a
    wildcard subdomain pattern such as https://*.shop.kz."""
    if not allowed:
        return True
    origin = origin.rstrip("/").lower()
    return any(origin == a.rstrip("/").lower() or ("*" in a and fnmatchcase(origin, a.rstrip("/").lower()))
               for a in allowed)


def preflight(origin: str | None) -> Response:
    """The answer to OPTIONS. The project is not known yet (preflights carry no key), so the
    origin check happens on the real request, whose response only carries CORS headers when the
    origin is allowed: a browser then refuses to hand the answer to a foreign page."""
    headers = {"Vary": "Origin", "Access-Control-Max-Age": "86400"}
    if origin:
        headers.update({"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": "POST, OPTIONS",
                        "Access-Control-Allow-Headers": ALLOW_HEADERS})
    return Response(status_code=204, headers=headers)


def cors_headers(origin: str | None) -> dict[str, str]:
    if not origin:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
