"""Reading request bodies within limits: declared, chunked and compressed sizes are all capped."""

from __future__ import annotations

import zlib

from starlette.requests import Request


class TooLarge(Exception):
    pass


class BadEncoding(Exception):
    pass


_WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


async def read_body(request: Request, limit: int) -> bytes:
    """The body, decompressed when Content-Encoding says so. Raises TooLarge past `limit` bytes
    (of the body as sent or as decompressed: a zip bomb stops at the limit, not at the bottom),
    BadEncoding for an encoding we do not speak or a corrupt stream."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "") and encoding not in _WBITS:
        raise BadEncoding(f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge
    inflater = zlib.decompressobj(_WBITS[encoding]) if encoding in _WBITS else None
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            if inflater is not None:
                chunk = inflater.decompress(chunk, limit + 1 - size)
                if inflater.unconsumed_tail:  # more output than the limit allows
                    raise TooLarge
            size += len(chunk)
            if size > limit:
                raise TooLarge
            chunks.append(chunk)
        if inflater is not None:
            tail = inflater.flush()
            size += len(tail)
            if size > limit:
                raise TooLarge
            chunks.append(tail)
            if not inflater.eof:
                raise BadEncoding(f"the {encoding} stream is truncated")
    except zlib.error as exc:
        raise BadEncoding(f"the {encoding} body is corrupt: {exc}") from None
    return b"".join(chunks)
