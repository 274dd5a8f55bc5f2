"""Pipeline benchmark: sustained events/s through the whole path, POST to a row in `touches`, a
sale's POST to the live report, on this machine, distributed mode beside the embedded mode, all
numbers from ONE run.

- distributed: every part its own process, as a production install runs them, co-located here:
  `moneytrail serve --no-sink` (the collector) -> Apache Kafka (deploy/local/kafka.sh, a broker of
  this run on free ports, data in a temp dir) -> `moneytrail worker` (Faust) -> `moneytrail sink`
  -> a ClickHouse server (deploy/local/clickhouse.sh, likewise its own).
- embedded: `moneytrail serve` with chDB, one process (bench/serve_probe.py: the same command
  with one extra route through which the bench reads `touches`; the chDB folder is the server's).

The load is tracker-shaped (harness.Traffic): one message per POST /collect, text/plain,
visitors from six channels viewing ~2.7 pages each in one session, interleaved, 8% of the visitors
with 2+ pages submitting a form with a phone and an email. Open loop at a fixed offered rate per
step (C keep-alive connections), rates rising by --factor until a step is not sustained, then one
step between the last sustained rate and the first that was not.

A step is sustained when >= 95% of the offered requests were answered 200 inside the window,
every probe sent in the step is in `touches` within --drain s after the step ends, the lag p99 is
<= --max-lag s, and the lag does not grow inside the step (median of the last third of the probes
<= 2x the first third's + 1 s).

Lag: the first pageview of every Nth visitor is a probe (about --probes-per-s a second); its
messageId is the touch_id of the visit it opens. The time from its POST (from when it was due: a
collector that answers late delays the next request on its connection, and that wait counts) until
a poll (every --poll s) finds that touch_id in `touches` (distributed: a query to the ClickHouse
server; embedded: the same query inside the server process) is its lag. The same
poll finds the probe's event_id in `raw_events` ("raw p50": written by the sink straight from the
raw topic, so the difference to the touch lag is the processors' share); "poll ms" is how long a
poll took (the warehouse under load).

Sale -> live aggregates (before the steps, on a quiet pipeline): --sales visitors land (a paid
search pageview each, waited for in `touches`); then, one at a time, a payment for one of them goes
through the generic payment webhook, signed as a payment system signs it, and /api/reports/live
(the live aggregates: live_money, live_visits) and /api/reports/channels (as served by default) are
polled every --sale-poll s until the payment's amount is in their total revenue: p50 / p99 per mode,
bounded by --sale-timeout per sale and --sale-budget per mode.

CPU: utime+stime from /proc of every process over each step's measured window, in cores (CPU
seconds per second): collector, worker, sink, Kafka broker JVM, ClickHouse server (embedded: the one
process), the bench client, and the rest of the machine ("others": other people's work; this
machine is shared). "ev/cpu-s" = events per CPU second of the pipeline's processes: the figure that
moves least when others load the machine.

    uv run python bench/pipeline.py [--modes distributed,embedded] [--start-rate 250] [--step-seconds 8]
                                    [--max-lag 5] [--budget 100] [--sales 40] [--json-out out.json]

Bounded: at most --budget s of steps per mode, every wait has a deadline; everything started is
stopped at the end (also on Ctrl-C or an error); every server listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import uvloop

from harness import (HOST, ROOT, UA_DESKTOP, CpuWindow, LoadResult, ServerProc, Traffic, busy_cores, clean_env,
                     create_project, fmt,
                     free_port, load, load_average, load_result, log, machine_facts, moneytrail_argv, percentile, table)

PASS_SHARE = 0.95  # of the offered requests answered 200 inside the window
PII_KEY = "bench-pipeline-pii-key-0123456789abcdef"
PAYMENT_SECRET = "bench-pipeline-payment-secret"
DISTRIBUTED_PROCS = ("collector", "worker", "sink", "kafka", "clickhouse")


# ------------------------------------------------------------------------------------- the modes

@dataclass
class Mode:
    """One way of running the product, up and ready: where to send, how to look into `touches`."""

    name: str
    port: int  # the collector
    project: str
    write_key: str
    pids: dict[str, int]  # name -> pid of each pipeline process
    # which of these ids are touch_ids in `touches`, and which are event_ids in `raw_events`
    seen: Callable[[httpx.AsyncClient, list[str]], Awaitable[tuple[set[str], set[str]]]]
    touches: Callable[[httpx.AsyncClient], Awaitable[int]]  # count() of the project's touches, FINAL
    procs: dict[str, ServerProc] = field(default_factory=dict)
    about: str = ""
    read_token: str = ""
    webhook_secret: str = ""  # the payment webhook's path key (its signing secret is PAYMENT_SECRET)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.p.poll() is not None:
                raise RuntimeError(f"{name} exited {proc.p.returncode}:\n{proc.output()[-3000:]}")


def _script(script: str, command: str, env: dict[str, str], timeout: float = 300) -> str:
    out = subprocess.run(["bash", str(ROOT / "deploy" / "local" / script), command], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{script} {command} failed ({out.returncode}): {out.stdout[-2000:]} {out.stderr[-2000:]}")
    return out.stdout


def _pid_file(path: Path) -> int:
    return int("".join(ch for ch in path.read_text() if ch.isdigit()))


def _quote(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def start_distributed(tmp: Path, stack: ExitStack, args: argparse.Namespace) -> Mode:
    kafka_env = {"KAFKA_PORT": str(free_port()), "KAFKA_CONTROLLER_PORT": str(free_port()),
                 "KAFKA_DATA_DIR": str(tmp / "kafka"), "KAFKA_CLEAN": "1"}
    ch_env = {"CLICKHOUSE_PORT": str(free_port()), "CLICKHOUSE_DATA_DIR": str(tmp / "clickhouse"),
              "CLICKHOUSE_PYTHON": sys.executable, "CLICKHOUSE_CLEAN": "1"}
    # stopped last (ExitStack: last in, first out), after the moneytrail processes
    stack.callback(lambda: _stop_script("kafka.sh", kafka_env))
    stack.callback(lambda: _stop_script("clickhouse.sh", ch_env))
    t = time.perf_counter()
    errors: list[BaseException] = []

    def start(script: str, env: dict[str, str]) -> None:
        try:
            _script(script, "start", env)
        except BaseException as exc:  # noqa: BLE001 - raised below, in the main thread
            errors.append(exc)
    threads = [threading.Thread(target=start, args=a) for a in (("kafka.sh", kafka_env), ("clickhouse.sh", ch_env))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(330)
    if errors or any(th.is_alive() for th in threads):
        raise RuntimeError(f"Kafka / ClickHouse server did not start: {errors}")
    kafka_pid, ch_pid = _pid_file(tmp / "kafka" / "kafka.pid"), _pid_file(tmp / "clickhouse" / "clickhouse.pid")
    warehouse = _script("clickhouse.sh", "url", ch_env).strip()
    bootstrap = f"{HOST}:{kafka_env['KAFKA_PORT']}"
    log(f"Kafka at {bootstrap} (pid {kafka_pid}) and the ClickHouse server at 127.0.0.1:{ch_env['CLICKHOUSE_PORT']} "
        f"(pid {ch_pid}) up in {time.perf_counter() - t:.1f} s")

    run = uuid.uuid4().hex[:8]
    port = free_port()
    env = clean_env(MONEYTRAIL_DATA_DIR=str(tmp / "collector"), MONEYTRAIL_PORT=str(port), MONEYTRAIL_HOST=HOST,
                    MONEYTRAIL_BUS=f"kafka://{bootstrap}", MONEYTRAIL_WAREHOUSE=warehouse,
                    MONEYTRAIL_TOPIC_PREFIX=f"bench-{run}", MONEYTRAIL_SINK_GROUP=f"bench-sink-{run}",
                    MONEYTRAIL_WORKER_ID=f"bench-processors-{run}", MONEYTRAIL_WORKER_WEB_PORT=str(free_port()),
                    MONEYTRAIL_PII_KEY=PII_KEY, MONEYTRAIL_KAFKA_PARTITIONS=str(args.partitions),
                    MONEYTRAIL_RATE_LIMIT_IP_RPS="0", MONEYTRAIL_RATE_LIMIT_KEY_EPS="0")  # one client address
    creds = create_project(env, "Pipeline")
    configure_payment(env, "Pipeline")
    procs = {
        "collector": ServerProc("serve --no-sink", moneytrail_argv("serve", "--no-sink"), env, tmp / "collector.log"),
        "sink": ServerProc("sink", moneytrail_argv("sink"), {**env, "MONEYTRAIL_DATA_DIR": str(tmp / "sink")},
                           tmp / "sink.log"),
        "worker": ServerProc("worker", moneytrail_argv("worker"), {**env, "MONEYTRAIL_DATA_DIR": str(tmp / "worker")},
                             tmp / "worker.log"),
    }
    for proc in procs.values():
        stack.callback(_stop_proc, proc)
    procs["collector"].wait_ready(f"http://{HOST}:{port}/readyz", timeout=120)

    u = urlsplit(warehouse)
    db_url = f"http://{HOST}:{u.port}/?database={u.path.lstrip('/')}"
    auth = (u.username or "default", u.password or "")
    project = creds["project"]

    async def query(client: httpx.AsyncClient, sql: str) -> str:
        r = await client.post(db_url, content=sql.encode(), auth=auth)
        if r.status_code != 200:
            raise RuntimeError(f"ClickHouse server answered {r.status_code}: {r.text[:300]}")
        return r.text

    async def seen(client: httpx.AsyncClient, ids: list[str]) -> tuple[set[str], set[str]]:
        p, in_ids = _quote(project), ",".join(map(_quote, ids))
        text = await query(client, f"SELECT DISTINCT 't', touch_id FROM touches WHERE project = {p} AND touch_id IN "
                                   f"({in_ids}) UNION ALL SELECT DISTINCT 'r', event_id FROM raw_events WHERE "
                                   f"project = {p} AND event_id IN ({in_ids}) FORMAT TabSeparated")
        found: dict[str, set[str]] = {"t": set(), "r": set()}
        for line in text.splitlines():
            kind, _, mid = line.partition("\t")
            found[kind].add(mid)
        return found["t"], found["r"]

    async def touches(client: httpx.AsyncClient) -> int:
        return int(await query(client, f"SELECT count() FROM touches FINAL WHERE project = {_quote(project)}"))

    pids = {name: procs[name].p.pid for name in ("collector", "worker", "sink")}
    pids.update(kafka=kafka_pid, clickhouse=ch_pid)
    return Mode("distributed", port, project, creds["write_key"], pids, seen, touches, procs,
                f"serve --no-sink -> Kafka ({args.partitions} partitions) -> worker -> sink -> ClickHouse server",
                creds["read_token"], creds["webhook_secret"])


def start_embedded(tmp: Path, stack: ExitStack, args: argparse.Namespace) -> Mode:
    port = free_port()
    env = clean_env(MONEYTRAIL_DATA_DIR=str(tmp / "embedded"), MONEYTRAIL_PORT=str(port), MONEYTRAIL_HOST=HOST,
                    MONEYTRAIL_RATE_LIMIT_IP_RPS="0", MONEYTRAIL_RATE_LIMIT_KEY_EPS="0")
    creds = create_project(env, "Pipeline")
    configure_payment(env, "Pipeline")
    proc = ServerProc("serve (embedded)", [sys.executable, str(ROOT / "bench" / "serve_probe.py")], env,
                      tmp / "embedded.log")
    stack.callback(_stop_proc, proc)
    proc.wait_ready(f"http://{HOST}:{port}/readyz", timeout=120)
    url = f"http://{HOST}:{port}/__bench/seen"
    project = creds["project"]

    async def ask(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
        r = await client.post(url, content=orjson.dumps(body))
        if r.status_code != 200:
            raise RuntimeError(f"probe route answered {r.status_code}: {r.text[:300]}")
        return orjson.loads(r.content)

    async def seen(client: httpx.AsyncClient, ids: list[str]) -> tuple[set[str], set[str]]:
        out = await ask(client, {"project": project, "ids": ids})
        return set(out["seen"]), set(out["raw"])

    async def touches(client: httpx.AsyncClient) -> int:
        return int((await ask(client, {"project": project, "count": True}))["touches"])

    return Mode("embedded", port, project, creds["write_key"], {"serve": proc.p.pid}, seen, touches,
                {"serve": proc}, "serve (collector + processors + sink + chDB in one process)",
                creds["read_token"], creds["webhook_secret"])


def configure_payment(env: dict[str, str], name: str) -> None:
    """The generic payment webhook's signing secret (PAYMENT_SECRET), as an operator sets it."""
    out = subprocess.run(moneytrail_argv("projects", "configure", name, "payment", f"secret={PAYMENT_SECRET}"),
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"projects configure failed ({out.returncode}):\n{out.stderr[-3000:]}")


def _stop_proc(proc: ServerProc) -> None:
    t = time.perf_counter()
    code = proc.stop(40)
    log(f"{proc.name} stopped (exit {code}) in {time.perf_counter() - t:.1f} s")
    if code not in (0, None):
        log(f"{proc.name} log tail:\n{proc.output()[-1500:]}")


def _stop_script(script: str, env: dict[str, str]) -> None:
    try:
        _script(script, "stop", env, timeout=120)
        log(f"{script} stopped")
    except Exception as exc:  # noqa: BLE001 - reported; the rest is still stopped
        log(f"{script} stop failed: {exc!r}")


# ------------------------------------------------------------------------------------ one step

@dataclass
class Step:
    offered: float  # events/s asked for
    load: LoadResult
    probes: int  # sent inside the measured window
    lags_ms: list[float]  # of those that arrived, sorted
    unseen: int  # sent inside the window, not in `touches` by the deadline
    growth: float  # median lag of the last third of the window's probes / the first third's
    first_third_ms: float
    last_third_ms: float
    poll_errors: int
    poll_error: str
    drained_s: float  # after the window's end, until every probe of the step was seen (or the deadline)
    poll_ms: list[float]  # how long each poll of `touches` took, sorted
    raw_lags_ms: list[float]  # POST -> the probe's event_id in `raw_events` (the worker not involved), sorted
    sustained: bool = False
    why: str = ""

    def judge(self, max_lag_s: float) -> None:
        res = self.load
        reasons = []
        if res.requests < PASS_SHARE * self.offered * res.seconds or res.non200 or res.errors:
            reasons.append(f"answered {res.rps:,.0f}/s of {self.offered:,.0f}/s ({res.non200} non-200, {res.errors} errors)")
        if self.unseen:
            reasons.append(f"{self.unseen} of {self.probes} probes not in touches {self.drained_s:.0f} s after the step")
        p99 = percentile(self.lags_ms, 0.99)
        if not self.lags_ms or p99 > max_lag_s * 1000:
            reasons.append(f"lag p99 {p99 / 1000:.2f} s > {max_lag_s:g} s")
        if self.last_third_ms > 2 * self.first_third_ms + 1000:
            reasons.append(f"lag growing ({self.first_third_ms / 1000:.1f} s -> {self.last_third_ms / 1000:.1f} s)")
        self.sustained = not reasons
        self.why = "; ".join(reasons)

    @property
    def pipeline_cpu(self) -> float:
        return sum(v for k, v in self.load.cpu.items()
                   if k.endswith("_cpu") and not k.endswith("_loop_cpu") and k not in ("client_cpu", "other_cpu"))

    @property
    def per_cpu(self) -> float:
        return self.load.rps / self.pipeline_cpu if self.pipeline_cpu > 0 else float("nan")


async def run_step(mode: Mode, traffic: Traffic, client: httpx.AsyncClient, outstanding: dict[str, float],
                   rate: float, seconds: float, warmup: float, drain: float, args: argparse.Namespace) -> Step:
    """Load at `rate` for warmup + seconds while polling `touches` for this step's probes; then keep
    polling until they are all there or `drain` s have passed since the window's end."""
    perf = time.perf_counter
    probes: dict[str, float] = {}

    def on_probe(mid: str, sent: float) -> None:  # sent: the scheduled time when the collector made us late
        probes[mid] = outstanding[mid] = sent
    traffic.on_probe = on_probe
    traffic.probe_every = max(1, round(rate / 2.8 / args.probes_per_s))
    start = perf()
    w_start, w_end = start + warmup, start + warmup + seconds
    task = asyncio.create_task(load(mode.port, traffic.request, seconds, args.connections, mode.pids, rate=rate,
                                    warmup=warmup, start=start))
    seen_at: dict[str, float] = {}
    raw_at: dict[str, float] = {}
    poll_ms: list[float] = []
    errors, first_error = 0, ""
    while True:
        tick = perf()
        pending = [m for m in probes if m not in seen_at]
        if task.done() and (not pending or tick > w_end + drain):
            break
        if pending:
            try:
                found, raw = await mode.seen(client, pending[:1000])
            except (httpx.HTTPError, RuntimeError, ValueError) as exc:
                errors, first_error = errors + 1, first_error or repr(exc)
                found, raw = set(), set()
            now = perf()
            poll_ms.append((now - tick) * 1000)
            for m in found:
                seen_at[m] = now
                outstanding.pop(m, None)
            for m in raw:
                raw_at.setdefault(m, now)
        await asyncio.sleep(max(0.0, tick + args.poll - perf()))
    st, cpu = await task
    traffic.on_probe = None
    in_window = [(sent, m) for m, sent in probes.items() if w_start <= sent < w_end]
    lags = [(seen_at[m] - sent) * 1000 for sent, m in sorted(in_window) if m in seen_at]
    raw_lags = sorted((min(raw_at.get(m, seen_at[m]), seen_at[m]) - sent) * 1000 for sent, m in in_window
                      if m in seen_at)
    third = max(1, len(lags) // 3)
    first = statistics.median(lags[:third]) if lags else float("nan")
    last = statistics.median(lags[-third:]) if lags else float("nan")
    step = Step(rate, load_result(f"{mode.name} {rate:,.0f}/s", 1, st, cpu, rate), len(in_window), sorted(lags),
                sum(1 for _, m in in_window if m not in seen_at), last / first if first > 0 else float("nan"),
                first, last, errors, first_error, max(0.0, perf() - w_end), sorted(poll_ms), raw_lags)
    step.judge(args.max_lag)
    return step


async def drain(mode: Mode, client: httpx.AsyncClient, outstanding: dict[str, float], timeout: float,
                poll: float) -> bool:
    """Poll until every probe sent so far is in `touches` (at most `timeout` s): whether they all are."""
    t0 = time.perf_counter()
    while outstanding and time.perf_counter() - t0 < timeout:
        try:
            for m in (await mode.seen(client, list(outstanding)[:1000]))[0]:
                outstanding.pop(m, None)
        except (httpx.HTTPError, RuntimeError, ValueError):
            pass
        await asyncio.sleep(poll)
    return not outstanding


# ------------------------------------------------------------------- sale -> live aggregates

@dataclass
class Sales:
    """POST of a payment -> the sale in /api/reports/live (the live aggregates) and in the channels
    report, ms, sorted; what was tried; why it ended early."""

    live_ms: list[float] = field(default_factory=list)
    channels_ms: list[float] = field(default_factory=list)
    tried: int = 0
    landed: int = 0  # the sale visitors' visits (counted with the steps' in the end check)
    missed: int = 0  # not in the live report within the sample's timeout
    poll_ms: list[float] = field(default_factory=list)  # one poll of both reports
    note: str = ""


def _revenue(report: dict[str, Any]) -> Decimal:
    return Decimal(str((report.get("total") or {}).get("revenue") or 0))


async def sale_latency(mode: Mode, client: httpx.AsyncClient, args: argparse.Namespace) -> Sales:
    """--sales samples, one at a time, on a quiet pipeline: visitors land (a paid search pageview
    each) and are waited for in `touches`; then, per sample, one visitor's payment goes through the
    generic payment webhook (signed, as a payment system sends it) and both reports are polled every
    --sale-poll s until its amount is in their total revenue (the live report from the aggregates;
    the channels report as served by default). At most --sale-timeout s per sample and --sale-budget
    s in all."""
    out = Sales()
    began = time.perf_counter()
    run = uuid.uuid4().hex[:8]
    anons = [f"sale-{run}-{i}" for i in range(args.sales)]
    now = datetime.now(timezone.utc)
    pages = [{"type": "page", "messageId": f"sale-{run}-{i}", "anonymousId": a,
              "timestamp": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
              "context": {"page": {"url": "https://shop.kz/sofas?utm_source=google&utm_medium=cpc&utm_campaign=bench-sale",
                                   "referrer": "https://www.google.com/"}, "userAgent": UA_DESKTOP}}
             for i, a in enumerate(anons)]
    base_url = f"http://{HOST}:{mode.port}"
    for k in range(0, len(pages), 100):
        r = await client.post(f"{base_url}/v1/batch", json={"batch": pages[k:k + 100]}, auth=(mode.write_key, ""))
        if r.status_code != 200:
            out.note = f"pageviews refused: {r.status_code} {r.text[:200]}"
            return out
        out.landed += len(pages[k:k + 100])
    waiting = {p["messageId"] for p in pages}
    while waiting and time.perf_counter() - began < args.sale_budget / 2:
        try:
            waiting -= (await mode.seen(client, list(waiting)))[0]
        except (httpx.HTTPError, RuntimeError, ValueError):
            pass
        await asyncio.sleep(0.2)
    if waiting:
        out.note = f"{len(waiting)} of the sale visitors' touches not in `touches` after {args.sale_budget / 2:g} s"
        return out
    days = {"from": (now - timedelta(days=1)).date().isoformat(), "to": (now + timedelta(days=1)).date().isoformat()}
    auth = {"Authorization": f"Bearer {mode.read_token}"}

    async def report(name: str) -> dict[str, Any]:
        r = await client.get(f"{base_url}/api/reports/{name}", params=days, headers=auth)
        if r.status_code != 200:
            raise RuntimeError(f"/api/reports/{name} answered {r.status_code}: {r.text[:200]}")
        return orjson.loads(r.content)

    try:
        first = await report("live")
        base_live, base_channels, currency = _revenue(first), _revenue(await report("channels")), first["currency"]
    except (httpx.HTTPError, RuntimeError) as exc:
        out.note = f"reports unreadable: {exc!r}"
        return out
    for i, anon in enumerate(anons):
        if time.perf_counter() - began > args.sale_budget:
            out.note = f"sale budget of {args.sale_budget:g} s used up after {out.tried} samples"
            break
        amount = Decimal(10_000 + i)
        body = orjson.dumps({"payments": [{
            "payment_id": f"bench-{run}-{i}", "amount": str(amount), "currency": currency,
            "paid_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "customer": {"anonymous_id": anon}}]})
        signature = "sha256=" + hmac.new(PAYMENT_SECRET.encode(), body, hashlib.sha256).hexdigest()
        sent = time.perf_counter()
        r = await client.post(f"{base_url}/webhooks/payment/{mode.webhook_secret}", content=body,
                              headers={"X-Moneytrail-Signature": signature, "Content-Type": "application/json"})
        out.tried += 1
        if r.status_code != 200:
            out.note = f"payment webhook answered {r.status_code}: {r.text[:200]}"
            break
        got: dict[str, float] = {}
        while len(got) < 2 and time.perf_counter() - sent < args.sale_timeout:
            tick = time.perf_counter()
            try:
                live_r, channels_r = await asyncio.gather(report("live"), report("channels"))
            except (httpx.HTTPError, RuntimeError, ValueError):
                await asyncio.sleep(args.sale_poll)
                continue
            now_t = time.perf_counter()
            out.poll_ms.append((now_t - tick) * 1000)
            if "live" not in got and _revenue(live_r) >= base_live + amount:
                got["live"] = now_t
                base_live = _revenue(live_r)
            if "channels" not in got and _revenue(channels_r) >= base_channels + amount:
                got["channels"] = now_t
                base_channels = _revenue(channels_r)
            await asyncio.sleep(max(0.0, tick + args.sale_poll - time.perf_counter()))
        if "live" in got:
            out.live_ms.append((got["live"] - sent) * 1000)
        else:
            out.missed += 1
            base_live += amount  # it may still come; the next sample waits for both
        if "channels" in got:
            out.channels_ms.append((got["channels"] - sent) * 1000)
        else:
            base_channels += amount
    out.live_ms.sort()
    out.channels_ms.sort()
    out.poll_ms.sort()
    return out


@dataclass
class ModeResult:
    name: str
    about: str
    pids: dict[str, int]
    busy_before: float
    load_before: str
    ready_s: float
    warm_s: float
    steps: list[Step]
    visitors: int = 0  # visits opened (first pageviews answered)
    touches: int = -1  # rows in `touches` at the end (FINAL)
    drained: bool = False
    notes: list[str] = field(default_factory=list)
    idle_cpu: dict[str, float] = field(default_factory=dict)  # CpuWindow.shares() with no load
    sales: Sales = field(default_factory=Sales)
    sales_load: str = ""  # load average when the sale samples began

    @property
    def best(self) -> Step | None:
        ok = [s for s in self.steps if s.sustained]
        return max(ok, key=lambda s: s.offered) if ok else None


async def ladder(mode: Mode, args: argparse.Namespace, result: ModeResult) -> None:
    traffic = Traffic(uuid.uuid4().hex[:8], mode.write_key, mode.port, seed=7)
    outstanding: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=15) as client:
        # ready: a trickle until its probes come out the other end (Faust assigns partitions, etc.)
        t = time.perf_counter()
        warm = await run_step(mode, traffic, client, outstanding, 20.0, 2.0, 0.0, 120.0, argparse.Namespace(
            **{**vars(args), "probes_per_s": 100.0}))
        result.warm_s = time.perf_counter() - t
        if warm.unseen or not warm.lags_ms:
            raise RuntimeError(f"{mode.name}: the first events never reached `touches` in 120 s")
        log(f"{mode.name}: pipeline answers end to end (first probes in {percentile(warm.lags_ms, 1.0) / 1000:.1f} s)")
        await drain(mode, client, outstanding, args.drain, args.poll)
        idle = CpuWindow(mode.pids)  # what each process costs with no events coming in
        idle.mark()
        await asyncio.sleep(args.idle_seconds)
        idle.mark()
        result.idle_cpu = idle.shares()
        if args.sales:
            result.sales_load = load_average()
            result.sales = await sale_latency(mode, client, args)
            sl = result.sales
            log(f"{mode.name}: sale -> live report p50 {percentile(sl.live_ms, 0.5):,.0f} ms p99 "
                f"{percentile(sl.live_ms, 0.99):,.0f} ms ({len(sl.live_ms)}/{sl.tried}), channels report p50 "
                f"{percentile(sl.channels_ms, 0.5):,.0f} ms" + (f"; {sl.note}" if sl.note else ""))
        began = time.perf_counter()
        rate, passed, failed = args.start_rate, None, None
        plan: list[float] = []
        while True:
            mode.check_alive()
            if time.perf_counter() - began > args.budget:
                result.notes.append(f"{mode.name}: step budget of {args.budget:g} s used up at {rate:,.0f} ev/s")
                break
            if outstanding:  # what the last step left behind first, so each step starts from an empty pipeline
                await drain(mode, client, outstanding, args.drain, args.poll)
            step = await run_step(mode, traffic, client, outstanding, rate, args.step_seconds, args.warmup, args.drain,
                                  args)
            result.steps.append(step)
            lag = step.lags_ms
            log(f"{mode.name} {rate:,.0f} ev/s offered: {step.load.rps:,.0f}/s answered, lag p50 "
                f"{percentile(lag, 0.5):,.0f} ms p99 {percentile(lag, 0.99):,.0f} ms ({len(lag)}/{step.probes} probes), "
                f"pipeline {step.pipeline_cpu:.2f} cores, machine {step.load.machine_busy:.2f}: "
                + ("sustained" if step.sustained else f"NOT sustained: {step.why}"))
            if plan:  # the one step between the last sustained rate and the first that was not
                break
            if step.sustained:
                passed = rate
                if rate * args.factor > args.max_rate:
                    result.notes.append(f"{mode.name}: sustained up to --max-rate {args.max_rate:,.0f} (not searched higher)")
                    break
                rate *= args.factor
            else:
                failed = rate
                if passed is None:
                    break
                rate = math.sqrt(passed * failed)
                plan.append(rate)
        result.drained = await drain(mode, client, outstanding, 60, args.poll)
        if not result.drained:
            result.notes.append(f"{mode.name}: {len(outstanding)} probes still not in touches 60 s after the last step")
        result.visitors = traffic.landed + result.sales.landed
        deadline = time.perf_counter() + 15  # the visits after the last probe are a moment behind it
        while True:
            try:
                result.touches = await mode.touches(client)
            except (httpx.HTTPError, RuntimeError, ValueError) as exc:
                result.notes.append(f"{mode.name}: could not count touches: {exc!r}")
                break
            if result.touches >= result.visitors or time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.5)


def run_mode(name: str, tmp: Path, args: argparse.Namespace) -> ModeResult:
    load_before = load_average()
    busy = busy_cores(1.0)
    log(f"{name}: machine {busy:.2f} cores busy before start, load average {load_before}")
    with ExitStack() as stack:
        t = time.perf_counter()
        mode = (start_distributed if name == "distributed" else start_embedded)(tmp / name, stack, args)
        result = ModeResult(name, mode.about, dict(mode.pids), busy, load_before, time.perf_counter() - t, 0.0, [])
        log(f"{name}: up in {result.ready_s:.1f} s ({', '.join(f'{k} pid {v}' for k, v in mode.pids.items())})")
        uvloop.run(ladder(mode, args, result))
        mode.check_alive()
    return result


# ----------------------------------------------------------------------------------- the report

def _ms(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:,.0f}"


def summary(facts: dict[str, Any], args: argparse.Namespace, results: list[ModeResult], elapsed: float,
            load_end: str) -> str:
    out = ["", "=" * 118,
           f"machine: nproc={facts['nproc']} (usable {facts['usable_cpus']}), {facts['cpu_model']}, Python {facts['python']}, "
           f"kernel {facts['kernel']}; shared: other people's work shows as 'others'",
           f"load: tracker-shaped POST /collect, 1 message each (6 channels, ~2.7 pages per visitor, forms), open loop, "
           f"C={args.connections}; steps of {args.warmup:g} s warm-up + {args.step_seconds:g} s measured, x{args.factor:g} "
           "then one step between",
           f"lag: POST -> touch_id in `touches`, probes = first pageview of every Nth visitor (~{args.probes_per_s:g}/s), "
           f"polled every {args.poll * 1000:.0f} ms",
           f"sustained: >= {PASS_SHARE:.0%} answered 200, every probe in `touches` <= {args.drain:g} s after the step, "
           f"lag p99 <= {args.max_lag:g} s and not growing within the step"]
    for r in results:
        out.append("")
        out.append(f"{r.name}: {r.about}")
        out.append(f"  before: {r.busy_before:.2f} cores busy, load average {r.load_before}; up in {r.ready_s:.0f} s, "
                   f"first events through in {r.warm_s:.0f} s")
        procs = list(r.pids)
        header = (["offered ev/s", "got ev/s", "non-200", "ack p99 ms", "probes", "lag p50 ms", "p90", "p99", "max",
                   "raw p50", "poll ms"]
                  + procs + ["bench", "others", "machine", "ev/cpu-s", "sustained"])
        rows = []
        if r.idle_cpu:
            c = r.idle_cpu
            rows.append(["idle", "0", "-", "-", "-", "-", "-", "-", "-", "-", "-"]
                        + [f"{c.get(f'{p}_cpu', float('nan')):.2f}" for p in procs]
                        + [f"{c.get('client_cpu', float('nan')):.2f}", f"{max(0.0, c.get('other_cpu', float('nan'))):.2f}",
                           f"{c.get('machine_busy', float('nan')):.2f}", "-", "-"])
        for s in r.steps:
            c, lag = s.load.cpu, s.lags_ms
            rows.append([fmt(s.offered), fmt(s.load.rps), str(s.load.non200 + s.load.errors),
                         f"{percentile(s.load.latencies_ms, 0.99):.1f}", f"{len(lag)}/{s.probes}",
                         _ms(percentile(lag, 0.5)), _ms(percentile(lag, 0.9)), _ms(percentile(lag, 0.99)),
                         _ms(lag[-1] if lag else float("nan")), _ms(percentile(s.raw_lags_ms, 0.5)),
                         f"{percentile(s.poll_ms, 0.5):.0f}"]
                        + [f"{c.get(f'{p}_cpu', float('nan')):.2f}" for p in procs]
                        + [f"{c.get('client_cpu', float('nan')):.2f}", f"{max(0.0, c.get('other_cpu', float('nan'))):.2f}",
                           f"{c.get('machine_busy', float('nan')):.2f}", fmt(s.per_cpu), "yes" if s.sustained else "no"])
        out.extend("  " + line for line in table(header, rows, left=0))
        out.append(f"  (CPU columns in cores over the measured window; idle = {args.idle_seconds:g} s with no events "
                   f"before the steps; ev/cpu-s = events per CPU second of {' + '.join(procs)})")
        for s in r.steps:
            if not s.sustained:
                out.append(f"  not sustained at {s.offered:,.0f}: {s.why}")
            if s.poll_errors:
                out.append(f"  {s.poll_errors} poll errors at {s.offered:,.0f}, first: {s.poll_error}")
            if s.load.sample_bad:
                out.append(f"  first problem at {s.offered:,.0f}: {s.load.sample_bad}")
        out.append(f"  end: {r.touches:,} touches in the warehouse for {r.visitors:,} visits opened"
                   + ("" if r.touches == r.visitors else "  (!! not equal)"))
        out.extend(f"  !! {n}" for n in r.notes)

    out.append("")
    out.append("sustained rate, at the highest sustained step:")
    rows = []
    for r in results:
        b = r.best
        if b is None:
            rows.append([r.name, f"< {fmt(r.steps[0].offered) if r.steps else '-'}"] + ["-"] * 6)
            continue
        rows.append([r.name, fmt(b.load.rps), _ms(percentile(b.lags_ms, 0.5)), _ms(percentile(b.lags_ms, 0.99)),
                     f"{b.pipeline_cpu:.2f}", fmt(b.per_cpu), f"{max(0.0, b.load.cpu.get('other_cpu', 0)):.2f}",
                     f"{b.load.machine_busy:.2f}"])
    out.extend(table(["mode", "ev/s", "lag p50 ms", "lag p99 ms", "pipeline cores", "ev/cpu-s", "others", "machine"],
                     rows))
    bests = {r.name: r.best for r in results}
    d, e = bests.get("distributed"), bests.get("embedded")
    if d is not None and e is not None:
        out.append(f"distributed / embedded: {d.load.rps / e.load.rps:.2f}x the sustained ev/s, "
                   f"{d.per_cpu / e.per_cpu:.2f}x the events per CPU second")
    for r in results:
        b = r.best
        if b is not None and len(r.pids) > 1:
            total = b.pipeline_cpu
            shares = ", ".join(f"{p} {b.load.cpu.get(f'{p}_cpu', 0) / total:.0%}" for p in r.pids)
            out.append(f"CPU share of the {r.name} pipeline at {b.offered:,.0f} ev/s ({total:.2f} cores): {shares}")
    if any(r.sales.tried for r in results):
        out.append("")
        out.append(f"sale -> report: a payment POSTed to the signed payment webhook for a visitor with a touch, until its "
                   f"amount is in the total (polled every {args.sale_poll * 1000:.0f} ms, one sale at a time, before the "
                   "steps); live = /api/reports/live (the live aggregates), channels = /api/reports/channels as served")
        rows = []
        for r in results:
            sl = r.sales
            rows.append([r.name, f"{len(sl.live_ms)}/{sl.tried}", _ms(percentile(sl.live_ms, 0.5)),
                         _ms(percentile(sl.live_ms, 0.99)), _ms(sl.live_ms[-1] if sl.live_ms else float("nan")),
                         _ms(percentile(sl.channels_ms, 0.5)), _ms(percentile(sl.channels_ms, 0.99)),
                         _ms(percentile(sl.poll_ms, 0.5)), r.sales_load])
        out.extend(table(["mode", "samples", "live p50 ms", "p99", "max", "channels p50 ms", "p99", "poll ms",
                          "load average before"], rows))
        out.append("(goal: <= 1 000 ms p50 and 2 000 ms p99 embedded, 3 000 ms p99 distributed, on a quiet machine)")
        out.extend(f"  !! {r.name}: {r.sales.note}" for r in results if r.sales.note)
        out.extend(f"  !! {r.name}: {r.sales.missed} sales not in the live report within {args.sale_timeout:g} s"
                   for r in results if r.sales.missed)
    out.append(f"load average at the end: {load_end}; total bench time {elapsed:.0f} s")
    out.append("=" * 118)
    return "\n".join(out)


def to_json(results: list[ModeResult]) -> dict[str, Any]:
    def step(s: Step) -> dict[str, Any]:
        return {"offered": s.offered, "eps": s.load.rps, "non200": s.load.non200, "errors": s.load.errors,
                "ack_p99_ms": percentile(s.load.latencies_ms, 0.99), "probes": s.probes, "seen": len(s.lags_ms),
                "lag_ms": {q: percentile(s.lags_ms, p) for q, p in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))},
                "cpu": s.load.cpu, "pipeline_cpu": s.pipeline_cpu, "ev_per_cpu_s": s.per_cpu,
                "sustained": s.sustained, "why": s.why}
    return {r.name: {"about": r.about, "busy_before": r.busy_before, "load_before": r.load_before, "idle_cpu": r.idle_cpu,
                     "steps": [step(s) for s in r.steps], "best": step(r.best) if r.best else None,
                     "visitors": r.visitors, "touches": r.touches, "notes": r.notes,
                     "sales": {"live_ms": r.sales.live_ms, "channels_ms": r.sales.channels_ms, "tried": r.sales.tried,
                               "missed": r.sales.missed, "note": r.sales.note, "load_average": r.sales_load}}
            for r in results}


def main() -> int:
    parser = argparse.ArgumentParser(description="moneytrail pipeline benchmark: sustained events/s and POST->touches "
                                                 "lag, distributed (Kafka, worker, sink, ClickHouse server) and embedded")
    parser.add_argument("--modes", default="distributed,embedded", help="comma list of distributed, embedded")
    parser.add_argument("--start-rate", type=float, default=250.0, help="events/s of the first step")
    parser.add_argument("--factor", type=float, default=2.0, help="each next step offers this many times more")
    parser.add_argument("--max-rate", type=float, default=20_000.0, help="never offer more than this")
    parser.add_argument("--step-seconds", type=float, default=8.0, help="measured seconds per step")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of each step before the measured window")
    parser.add_argument("--max-lag", type=float, default=5.0, help="sustained: lag p99 at most this many seconds")
    parser.add_argument("--drain", type=float, default=10.0,
                        help="sustained: every probe in touches at most this many seconds after the step")
    parser.add_argument("--budget", type=float, default=100.0, help="seconds of steps per mode at most")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--probes-per-s", type=float, default=40.0)
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between polls of touches")
    parser.add_argument("--idle-seconds", type=float, default=3.0, help="CPU of each process with no load, measured this long")
    parser.add_argument("--partitions", type=int, default=4, help="MONEYTRAIL_KAFKA_PARTITIONS of the distributed run")
    parser.add_argument("--sales", type=int, default=40, help="sale -> live report samples per mode (0: none)")
    parser.add_argument("--sale-poll", type=float, default=0.05, help="seconds between polls of the reports")
    parser.add_argument("--sale-timeout", type=float, default=15.0, help="seconds a sale may take to show")
    parser.add_argument("--sale-budget", type=float, default=120.0, help="seconds of sale samples per mode at most")
    parser.add_argument("--json-out", default=None, metavar="PATH")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - {"distributed", "embedded"}:
        parser.error("--modes: distributed and/or embedded")
    if not (1 <= args.start_rate <= args.max_rate <= 100_000 and 1.2 <= args.factor <= 10
            and 1 <= args.step_seconds <= 120 and 0 <= args.warmup <= 30 and 0.1 <= args.max_lag <= 120
            and 1 <= args.drain <= 120 and 10 <= args.budget <= 1200 and 1 <= args.connections <= 512
            and 1 <= args.probes_per_s <= 1000 and 0.01 <= args.poll <= 5 and 1 <= args.partitions <= 64
            and 0.5 <= args.idle_seconds <= 30 and 0 <= args.sales <= 500 and 0.01 <= args.sale_poll <= 2
            and 1 <= args.sale_timeout <= 60 and 10 <= args.sale_budget <= 600):
        parser.error("an option is out of range")
    def on_term(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")  # unwinds through every stop in the ExitStacks
    signal.signal(signal.SIGTERM, on_term)
    for k in [k for k in os.environ if k.startswith("MONEYTRAIL_")]:
        del os.environ[k]
    started = time.perf_counter()
    facts = machine_facts()
    tmp = Path(tempfile.mkdtemp(prefix="moneytrail-pipeline-"))
    results: list[ModeResult] = []
    try:
        for name in modes:
            results.append(run_mode(name, tmp, args))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(summary(facts, args, results, time.perf_counter() - started, load_average()), flush=True)
    if args.json_out:
        Path(args.json_out).write_bytes(orjson.dumps({"machine": facts, "args": vars(args), "modes": to_json(results)},
                                                     option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
