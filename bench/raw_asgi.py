"""The ceiling for bench/ingest.py: a bare ASGI callable that reads the request body, parses it
with orjson.loads and answers 200 {"ok":true}. No framework, no routing, no validation, no bus.

Run it the way `moneytrail serve` runs its app (one process, collector.serving.uvicorn_config: uvloop,
httptools, no access log, no proxy headers):
    uv run python bench/raw_asgi.py --port 8099
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_OK = b'{"ok":true}'
_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(_OK)).encode())],
}
_BODY = {"type": "http.response.body", "body": _OK, "more_body": False}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":  # answer lifespan properly, so uvicorn does not log about it
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    if body:
        orjson.loads(body)  # the one piece of real work every ingest endpoint must do
    await send(_START)
    await send(_BODY)


def main() -> None:
    import uvicorn

    from collector.serving import uvicorn_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # The same uvicorn settings as `moneytrail serve`: one function builds both (collector/serving.py).
    uvicorn.Server(uvicorn_config(app, args.host, args.port)).run()


if __name__ == "__main__":
    main()
