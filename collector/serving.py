"""The one way the collector's app is put behind uvicorn (`moneytrail serve`, `moneytrail demo`, the
benches and their raw-ASGI ceiling), so every entry point runs the same server settings.

proxy_headers=False: uvicorn's own proxy support believes X-Forwarded-For from forwarded_allow_ips
(default 127.0.0.1) and overwrites the socket peer with it before the app sees the request, so a
local client (or a sidecar) could pick any address for the per-IP rate limits and the YooKassa IP
allow-list. The collector resolves the client address itself from the peer and the project's
configured trusted proxies (collector/routes/context.py client_ip_of, setting trusted_proxies); that setting
is the only authority.

http=EdgeHttpProtocol: httptools has no limit on the request head and uvicorn none on the time to
send it (h11_max_incomplete_event_size applies to h11 only; timeout_keep_alive starts after a
response), so 10 MB of headers were read and a client that never finished its headers held its
socket forever. The subclass counts the head's bytes (431 and close past max_header_bytes) and
closes a connection whose request head is not complete header_timeout_s after it began.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADER_BYTES = 16 * 1024
HEADER_TIMEOUT_S = 10.0


class _HeadTooLarge(Exception):
    pass


class EdgeHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a request-head size limit and a head read timeout."""

    max_header_bytes = MAX_HEADER_BYTES
    header_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0  # bytes received since the current request head began
        self._in_head = True
        self._too_large = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()  # a client that connects and sends nothing is timed out too

    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # a head still incomplete after more than the limit (a chunk that also completed it may
        # carry body bytes, so that case is measured exactly in on_headers_complete)
        if self._in_head and self._head_bytes > self.max_header_bytes and not self.transport.is_closing():
            self._refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # the next request on a kept-alive connection: its own head time
            self._in_head = True
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self.max_header_bytes:
            self._too_large = True
            raise _HeadTooLarge  # stops the parser; uvicorn then calls send_400_response, answered 431
        self._in_head = False
        self._head_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse_head()
        else:
            super().send_400_response(msg)

    def _refuse_head(self) -> None:
        body = f"request headers over {self.max_header_bytes} bytes".encode()
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
        self.transport.close()


def edge_protocol(max_header_bytes: int = MAX_HEADER_BYTES, header_timeout_s: float = HEADER_TIMEOUT_S) -> type:
    """EdgeHttpProtocol with these limits (uvicorn instantiates the class itself)."""
    return type("EdgeHttpProtocol", (EdgeHttpProtocol,),
                {"max_header_bytes": max_header_bytes, "header_timeout_s": header_timeout_s})


def uvicorn_config(app: Any, host: str, port: int, max_header_bytes: int = MAX_HEADER_BYTES,
                   header_timeout_s: float = HEADER_TIMEOUT_S, **overrides: Any) -> Any:
    import uvicorn

    options: dict[str, Any] = {
        "log_level": "warning",
        "timeout_graceful_shutdown": 10,
        "loop": "uvloop",
        "http": edge_protocol(max_header_bytes, header_timeout_s),
        # no access log: uvicorn formats each line's fields before the logger drops it (~2 us a request)
        "access_log": False,
        "proxy_headers": False,
    }
    options.update(overrides)
    return uvicorn.Config(app, host=host, port=port, **options)
