"""load(): a plan sent to a running server ONLY through its public HTTP interfaces (Segment
batches, spend imports, signed webhooks, call-tracking leases), then the ground truth written
beside it. Any answer that is not 2xx stops the load (429/503 are waited out first)."""

from __future__ import annotations

import base64
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import httpx
import orjson

from .business import BUSINESS, LEASE_MINUTES, PBX, title
from .helpers import UTC, iso_z, sign
from .plan import WEBHOOK_SLOT, DemoPlan, LiveCall
from .truth import write_ground_truth


@dataclass
class DemoResult:
    events: int
    requests: int
    ground_truth_path: Path
    summary: dict


class DemoLoadError(RuntimeError):
    def __init__(self, what: str, status: int, body: str) -> None:
        super().__init__(f"{what}: HTTP {status}: {body[:2000]}")
        self.status = status
        self.body = body


@dataclass
class _Run:
    """One load under way: the client, the keys, and what it has done so far."""

    client: httpx.Client
    plan: DemoPlan
    write_key: str
    secret: str
    total: int
    progress: Callable[[int, int], None] | None
    done: int = 0
    events: int = 0
    timings: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)

    @property
    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.write_key}:".encode()).decode()

    def step(self, events: int = 0) -> None:
        self.done += 1
        self.events += events
        if self.progress:
            self.progress(self.done, self.total)

    def post(self, path: str, what: str, **kw: Any) -> httpx.Response:
        return _send(self.client, "POST", path, what, self.retries, **kw)


def load(plan: DemoPlan, base_url: str, creds: dict, progress: Callable[[int, int], None] | None = None,
         ground_truth_path: Path | str | None = None, timeout: float = 30.0,
         transport: httpx.BaseTransport | None = None) -> DemoResult:
    """Send the plan over HTTP (keep-alive; Segment batches of 100), then the live calls, and write
    the ground truth (default: ./mebel-almaty-demo-<seed>.truth.json). Raises DemoLoadError on any
    answer that is not 2xx (after retrying 429/503)."""
    started = time.perf_counter()
    live_report = []
    with httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport,
                      limits=httpx.Limits(max_keepalive_connections=4, max_connections=4)) as client:
        run = _Run(client, plan, creds["write_key"], creds["webhook_secret"], len(plan.requests) + 3 * len(plan.live),
                   progress)
        _send_planned(run)
        for lc in plan.live:
            live_report.append(_place_live_call(run, lc))
    seconds = time.perf_counter() - started
    path = Path(ground_truth_path) if ground_truth_path else Path.cwd() / f"mebel-almaty-demo-{plan.seed}.truth.json"
    unleased = {x["call_id"] for x in live_report if not x["leased"]}
    if unleased:  # the pool was exhausted: the server cannot join those calls to their visitor
        plan = replace(plan, conversions=[replace(c, anon="") if c.ref.get("call_id") in unleased else c
                                          for c in plan.conversions])
    write_ground_truth(plan, path, {"live_calls": live_report, "loaded_into": base_url})
    truth = orjson.loads(path.read_bytes())
    t = truth["totals"]
    summary = {
        "business": BUSINESS, "seed": plan.seed, "days": plan.days, "scale": plan.scale,
        "from": truth["from"], "to": truth["to"], **plan.counts,
        "leads": t["leads"], "enquiries": t["enquiries"], "sales": t["sales"], "revenue": t["revenue"],
        "spend": t["spend"], "unattributed_revenue_share": t["unattributed_revenue_share"],
        "requests": run.done, "events": run.events, "seconds": round(seconds, 2),
        "events_per_second": round(run.events / seconds) if seconds else None,
        "seconds_by_kind": {k: round(v, 2) for k, v in sorted(run.timings.items())},
        "retried": dict(run.retries),  # 429 (rate limits) / 503 answers waited out
        "live_calls_unleased": sum(1 for x in live_report if not x["leased"]),
    }
    return DemoResult(events=run.events, requests=run.done, ground_truth_path=path, summary=summary)


def _send_planned(run: _Run) -> None:
    """The plan's requests in order, each checked for what the server accepted."""
    for req in run.plan.requests:
        t0 = time.perf_counter()
        headers = dict(req.headers)
        what = f"{req.kind} {req.vendor or req.path}".strip()
        if req.kind == "batch":
            headers["Authorization"] = run.basic
        elif req.kind == "spend":
            headers["X-Write-Key"] = run.write_key
        resp = run.post(req.path.replace(WEBHOOK_SLOT, run.secret), what, content=req.body, headers=headers)
        if req.kind == "batch":
            _check_accepted(what, resp, req.events, "accepted")
        elif req.kind == "spend":
            _check_accepted(what, resp, req.events, "rows")
        run.timings[req.vendor or req.kind] += time.perf_counter() - t0
        run.step(req.events)


def _place_live_call(run: _Run, lc: LiveCall) -> dict[str, Any]:
    """A call placed now the real way: a number leased to the visitor, the page that showed it, and
    the call to that number WITHOUT any visitor id (the server's lease join finds them)."""
    resp = run.post("/api/calltracking/lease", "calltracking lease",
                    json={"write_key": run.write_key, "anonymous_id": lc.anon})
    lease = resp.json()
    run.step()
    if lease.get("expires_at"):  # the server's clock: a lease starts at most lease_minutes before it ends
        server_now = datetime.fromisoformat(lease["expires_at"]) - timedelta(minutes=LEASE_MINUTES)
    else:
        server_now = datetime.now(UTC)
    # the page was opened just before the tracker asked for a number; the call comes right after
    page_at = (server_now - timedelta(seconds=30)).replace(microsecond=0)
    call_at = max(datetime.now(UTC), server_now).replace(microsecond=0) + timedelta(seconds=1)
    context = {"page": {"url": lc.page_url, "referrer": "", "path": "/kontakty", "title": title("/kontakty")},
               "userAgent": lc.user_agent, "locale": "ru-KZ"}
    page = {"type": "page", "messageId": lc.page_message_id, "anonymousId": lc.anon,
            "timestamp": iso_z(page_at), "context": context, "properties": {}}
    resp = run.post("/v1/batch", "live pageview", content=orjson.dumps({"batch": [page]}),
                    headers={"Authorization": run.basic, "Content-Type": "application/json"})
    _check_accepted("live pageview", resp, 1, "accepted")
    run.step()
    call = {"call_id": lc.call_id, "tracking_number": lease["number"], "caller": lc.caller,
            "started_at": call_at.isoformat(), "duration_s": 95, "talk_s": 80, "answered": True, "unique": True,
            "direction": "in", "vendor": PBX}
    body = orjson.dumps({"calls": [call]})
    run.post(f"/webhooks/calls/{run.secret}", "live call", content=body,
             headers={"Content-Type": "application/json",
                      "X-Moneytrail-Signature": sign(run.plan.secrets["calls"]["secret"], body)})
    run.step(2)
    return {"call_id": lc.call_id, "anonymous_id": lc.anon, "number": lease["number"],
            "leased": bool(lease.get("lease_id")), "page_at": iso_z(page_at), "call_at": iso_z(call_at)}


def _send(client: httpx.Client, method: str, path: str, what: str, retries: Counter[str] | None = None,
          attempts: int = 8, **kw: Any) -> httpx.Response:
    """One request; 429/503 are retried after Retry-After, connection errors a few times; any other
    answer that is not 2xx raises DemoLoadError with its status and body."""
    for attempt in range(attempts):
        if attempt and retries is not None:
            retries[what] += 1
        try:
            resp = client.request(method, path, **kw)
        except httpx.TransportError as exc:
            if attempt == attempts - 1:
                raise DemoLoadError(what, 0, f"{type(exc).__name__}: {exc}") from exc
            time.sleep(0.2 * (attempt + 1))
            continue
        if resp.status_code in (429, 503) and attempt < attempts - 1:
            try:
                wait = float(resp.headers.get("retry-after", "1"))
            except ValueError:
                wait = 1.0
            time.sleep(min(max(wait, 0.2), 10.0))
            continue
        if not 200 <= resp.status_code < 300:
            raise DemoLoadError(what, resp.status_code, resp.text)
        return resp
    raise AssertionError("unreachable")


def _check_accepted(what: str, resp: httpx.Response, expected: int, key: str) -> None:
    try:
        data = resp.json()
    except ValueError:
        raise DemoLoadError(what, resp.status_code, resp.text) from None
    if data.get(key) != expected or data.get("rejected"):
        raise DemoLoadError(f"{what}: expected {key}={expected}", resp.status_code, resp.text)
