"""`moneytrail serve` (the real command: settings, data-dir lock, graceful server) with one extra
route for bench/pipeline.py, so the embedded mode can be measured from outside like the distributed
one: its chDB folder belongs to this process, nobody else can read it while it runs.

    POST /__bench/seen {"project": p, "ids": [...]}  -> {"seen": [the ids that are touch_ids in `touches`],
                                                          "raw": [those that are event_ids in `raw_events`]}
    POST /__bench/seen {"project": p, "count": true} -> {"touches": count() of the project's touches, FINAL}

The query runs in a worker thread of the server process, as a report would. 127.0.0.1 only (the
bench sets MONEYTRAIL_HOST); never part of the product.

    python bench/serve_probe.py [serve options]
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson

from moneytrail import root
from moneytrail.cli import app as cli_app

PATH = "/__bench/seen"


class ProbeRoute:
    def __init__(self, app: Any, warehouse: Any) -> None:
        self.app = app
        self.wh = warehouse

    def _answer(self, req: dict[str, Any]) -> dict[str, Any]:
        if req.get("count"):
            rows = self.wh.rows("SELECT count() AS c FROM touches FINAL WHERE project = {p:String}", {"p": req["project"]})
            return {"touches": int(rows[0]["c"])}
        params = {"p": req["project"], "ids": list(req["ids"])}
        rows = self.wh.rows("SELECT 't' AS k, touch_id AS id FROM (SELECT DISTINCT touch_id FROM touches "
                            "WHERE project = {p:String} AND touch_id IN {ids:Array(String)}) "
                            "UNION ALL SELECT 'r' AS k, event_id AS id FROM (SELECT DISTINCT event_id FROM raw_events "
                            "WHERE project = {p:String} AND event_id IN {ids:Array(String)})", params)
        return {"seen": [r["id"] for r in rows if r["k"] == "t"], "raw": [r["id"] for r in rows if r["k"] == "r"]}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            msg = await receive()
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
        try:
            status, out = 200, await asyncio.to_thread(self._answer, orjson.loads(body))
        except Exception as exc:  # noqa: BLE001 - told to the bench, which reports it
            status, out = 500, {"error": repr(exc)}
        data = orjson.dumps(out)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})


def main() -> None:
    build = root.build_server

    def build_with_probe(*args: Any, **kwargs: Any) -> Any:
        server = build(*args, **kwargs)
        server.app = ProbeRoute(server.app, server.warehouse)
        return server

    root.build_server = build_with_probe  # cli.serve calls root.build_server
    cli_app(["serve", *sys.argv[1:]], prog_name="moneytrail")


if __name__ == "__main__":
    main()
