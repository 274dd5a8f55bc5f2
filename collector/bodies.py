"""Reading request bodies within limits: declared, chunked and compressed sizes are all capped."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request


class TooLarge(Exception):
    pass


class BadEncoding(Exception):
    pass


_WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


def _check_headers(encoding: str, declared: str | None, limit: int) -> None:
    if encoding not in ("identity", "") and encoding not in _WBITS:
        raise BadEncoding(f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge


async def _read(chunks: AsyncIterator[bytes], encoding: str, limit: int) -> bytes:
    inflater = zlib.decompressobj(_WBITS[encoding]) if encoding in _WBITS else None
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in chunks:
            if inflater is not None:
                chunk = inflater.decompress(chunk, limit + 1 - size)
                if inflater.unconsumed_tail:  # more output than the limit allows
                    raise TooLarge
            size += len(chunk)
            if size > limit:
                raise TooLarge
            parts.append(chunk)
        if inflater is not None:
            tail = inflater.flush()
            size += len(tail)
            if size > limit:
                raise TooLarge
            parts.append(tail)
            if not inflater.eof:
                raise BadEncoding(f"the {encoding} stream is truncated")
    except zlib.error as exc:
        raise BadEncoding(f"the {encoding} body is corrupt: {exc}") from None
    return b"".join(parts)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, decompressed when Content-Encoding says so. Raises TooLarge past `limit` bytes
    (of the body as sent or as decompressed: a zip bomb stops at the limit, not at the bottom),
    BadEncoding for an encoding we do not speak or a corrupt stream."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    _check_headers(encoding, request.headers.get("content-length"), limit)
    return await _read(request.stream(), encoding, limit)


async def read_asgi_body(receive: Callable[[], Awaitable[dict[str, Any]]], headers: dict[str, str], limit: int) -> bytes:
    """read_body for a bare ASGI request (the hot ingest path): the same limits and errors, and
    ClientDisconnect when the client goes away. A plain body in one message (what a keep-alive
    client sends) is returned without the streaming machinery."""
    encoding = headers.get("content-encoding", "identity").strip().lower()
    _check_headers(encoding, headers.get("content-length"), limit)
    message = await receive()
    if message["type"] != "http.request":
        raise ClientDisconnect
    first = message.get("body", b"")
    if not message.get("more_body", False) and encoding in ("identity", ""):
        if len(first) > limit:
            raise TooLarge
        return first

    async def chunks() -> AsyncIterator[bytes]:
        yield first
        more = message.get("more_body", False)
        while more:
            nxt = await receive()
            if nxt["type"] != "http.request":
                raise ClientDisconnect
            yield nxt.get("body", b"")
            more = nxt.get("more_body", False)

    return await _read(chunks(), encoding, limit)
