"""The one way the collector's app is put behind uvicorn (`moneytrail serve`, `moneytrail demo`, the
benches and their raw-ASGI ceiling), so every entry point runs the same server settings.

proxy_headers=False: uvicorn's own proxy support believes X-Forwarded-For from forwarded_allow_ips
(default 127.0.0.1) and overwrites the socket peer with it before the app sees the request, so a
local client (or a sidecar) could pick any address for the per-IP rate limits and the YooKassa IP
allow-list. The collector resolves the client address itself from the peer and the project's
configured trusted proxies (collector/app.py client_ip_of, setting trusted_proxies); that setting
is the only authority.
"""

from __future__ import annotations

from typing import Any


def uvicorn_config(app: Any, host: str, port: int, **overrides: Any) -> Any:
    import uvicorn

    options: dict[str, Any] = {
        "log_level": "warning",
        "timeout_graceful_shutdown": 10,
        "loop": "uvloop",
        "http": "httptools",
        # no access log: uvicorn formats each line's fields before the logger drops it (~2 us a request)
        "access_log": False,
        "proxy_headers": False,
    }
    options.update(overrides)
    return uvicorn.Config(app, host=host, port=port, **options)
