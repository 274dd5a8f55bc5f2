"""Ingest benchmark, all numbers from ONE run:

1. Throughput of POST /collect on the real server (`python -m moneytrail serve` as a subprocess),
   for single page events and for 20-event batches: requests/s, events/s, share of non-200
   answers, client-side latency, requests per CPU-second of the server process. Two servers:
   - embedded: collector + processors + chDB warehouse in one process (the processors and the
     sink share the collector's core, so this is the whole product on one process);
   - kafka: the collector alone in distributed mode (`serve --no-sink`, MONEYTRAIL_BUS=kafka://):
     per request only parse + validate + produce to Apache Kafka, answered once acknowledged
     (acks=all, idempotent producer). The issue's targets are about this collector.
2. The ceiling: bench/raw_asgi.py (bare ASGI: read body, orjson.loads, 200 {"ok":true}) under the
   same uvicorn options, same request bytes, same client. Ratio moneytrail/ceiling.
3. p99 at 70% of capacity: each moneytrail server again, now paced (open loop) at 70% of the
   requests/s it reached in step 1; latency counts from each request's scheduled send time, so
   a slow answer that delays the next request is charged to the server (no coordinated omission).
4. Load generator: asyncio + uvloop, raw-socket HTTP/1.1 keep-alive client, C connections each
   looping until the deadline (1 s warm-up, then S s measured); bounded in requests and time.
   It runs in this process; the servers are subprocesses, so they never share a core's GIL.
5. Latency from POST to row visible in the warehouse (embedded mode, in this process, own chDB
   folder): N events at a steady rate, one poller reading `touches` every 5 ms.

    uv run python bench/ingest.py [--seconds 5] [--connections 32] [--kafka 127.0.0.1:19092]

Kafka phases need a broker (`KAFKA_PORT=19092 bash deploy/local/kafka.sh start`); without one they
are skipped and the summary says so. Topics get a fresh prefix per run and are deleted after it.
Optional: --profile-server out.txt|out.html (pyinstrument; `uv run --with pyinstrument ...`) or
out.prof (cProfile) profiles the moneytrail server subprocesses (one file per server);
--phases picks a subset. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from harness import (HOST, MAX_REQUESTS, PLACEHOLDER, ROOT, WARMUP_S, LoadResult, ServerProc, clean_env,
                     create_project, delete_topics, free_port, kafka_reachable, log, machine_cpu, machine_facts,
                     page_event, percentile, request_template, run_load, templated, wait_quiet)
from harness import fmt as _fmt

BATCH_SIZE = 20
ALL_PHASES = ("mt-single", "mt-batch", "kafka-single", "kafka-batch", "raw-single", "raw-batch", "p99", "latency")
PACED_SHARE = 0.7  # the p99 phase paces at this share of the capacity measured in the same run
KIND_NAME = {"single": "single", "batch": f"batch{BATCH_SIZE}"}


# ---------------------------------------------------------------------------------- the bodies

def single_body() -> bytes:
    return orjson.dumps(page_event("bench-" + PLACEHOLDER.decode(), 1))


def batch_body(n: int = BATCH_SIZE) -> bytes:
    return orjson.dumps({"batch": [page_event(f"bench-{PLACEHOLDER.decode()}-{j:02d}", j) for j in range(n)]})



# ------------------------------------------------------------------------------- the servers

def serve_argv(profile: str | None, extra: list[str]) -> list[str]:
    cmd = ["-m", "moneytrail", "serve", *extra]
    if not profile:
        return [sys.executable, *cmd]
    if profile.endswith(".prof"):
        return [sys.executable, "-m", "cProfile", "-o", profile, *cmd]
    renderer = "html" if profile.endswith(".html") else "text"
    return [sys.executable, "-m", "pyinstrument", "-r", renderer, "-o", profile, *cmd]


def sanity_post(port: int, template: bytes) -> None:
    """One request through httpx before timing anything: a refusal here means the benchmark is wrong."""
    head, body = template.split(b"\r\n\r\n", 1)
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    headers.pop("Content-Length", None)
    headers.pop("Host", None)
    r = httpx.post(f"http://{HOST}:{port}/collect", content=body.replace(PLACEHOLDER, b"sanity000000"),
                   headers=headers, timeout=10)
    if r.status_code != 200:
        raise RuntimeError(f"sanity POST answered {r.status_code}: {r.text[:500]}")


@dataclass
class Target:
    """A server under load and the request bytes to send it."""

    who: str  # "embedded" | "kafka" | "ceiling"
    proc: ServerProc
    templates: dict[str, bytes]  # "single" | "batch" -> request bytes


def _profile_path(profile: str | None, who: str) -> str | None:
    if not profile:
        return None
    path = Path(profile)
    return str(path.with_name(f"{path.stem}-{who}{path.suffix}"))


def start_moneytrail(tmp: Path, args: argparse.Namespace, who: str, prefix: str = "") -> Target:
    """who: "embedded" (memory bus, processors and chDB in the process) or "kafka" (the collector
    alone, producing to Kafka; no sink in the process)."""
    port = free_port()
    extra_env = {"MONEYTRAIL_DATA_DIR": str(tmp / f"serve-{who}"), "MONEYTRAIL_PORT": str(port),
                 "MONEYTRAIL_HOST": HOST, "MONEYTRAIL_RATE_LIMIT_IP_RPS": "0",  # measure the pipeline, not the abuse guard
                 "MONEYTRAIL_RATE_LIMIT_KEY_EPS": "0"}
    extra_args: list[str] = []
    if who == "kafka":
        extra_env.update(MONEYTRAIL_BUS=f"kafka://{args.kafka}", MONEYTRAIL_TOPIC_PREFIX=prefix,
                         MONEYTRAIL_PII_KEY="bench-ingest-pii-key-0123456789abcdef")
        extra_args = ["--no-sink"]
    env = clean_env(**extra_env)
    t = time.perf_counter()
    creds = create_project(env)
    log(f"{who}: project {creds['project']} created in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    proc = ServerProc(f"moneytrail serve ({who})", serve_argv(_profile_path(args.profile_server, who), extra_args),
                      env, tmp / f"serve-{who}.log")
    target = Target(who, proc, {"single": request_template(port, single_body(), creds["write_key"]),
                                "batch": request_template(port, batch_body(), creds["write_key"])})
    proc.wait_ready(f"http://{HOST}:{port}/readyz")
    log(f"moneytrail serve ({who}) ready in {time.perf_counter() - t:.1f} s (pid {proc.p.pid}, port {port})")
    for template in target.templates.values():
        sanity_post(port, template)
    proc.port = port
    return target


def start_ceiling(tmp: Path) -> Target:
    port = free_port()
    proc = ServerProc("raw ASGI", [sys.executable, str(ROOT / "bench" / "raw_asgi.py"), "--port", str(port)],
                      clean_env(), tmp / "raw.log")
    target = Target("ceiling", proc, {"single": request_template(port, single_body(), "wk_unused"),
                                      "batch": request_template(port, batch_body(), "wk_unused")})
    proc.wait_ready(f"http://{HOST}:{port}/")
    log(f"raw ASGI ready (pid {proc.p.pid}, port {port})")
    proc.port = port
    return target


PHASE_OF = {"embedded": "mt", "kafka": "kafka", "ceiling": "raw"}
Results = dict[str, dict[str, LoadResult]]  # target -> kind ("single" | "batch") -> result


def throughput(tmp: Path, args: argparse.Namespace, phases: set[str]) -> tuple[Results, Results]:
    """All servers up side by side (an idle one costs ~nothing); for each kind, each server's phase
    follows the other's at once, so a pair sees the same machine. Then the paced p99 phases."""
    closed: Results = {}
    paced: Results = {}
    targets: list[Target] = []
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        if phases & {"mt-single", "mt-batch"}:
            targets.append(start_moneytrail(tmp, args, "embedded"))
        if phases & {"kafka-single", "kafka-batch"}:
            targets.append(start_moneytrail(tmp, args, "kafka", prefix))
        if phases & {"raw-single", "raw-batch"}:
            targets.append(start_ceiling(tmp))
        def phase(target: Target, kind: str, rate: float | None = None) -> LoadResult:
            if args.wait_quiet > 0:
                wait_quiet(args.wait_quiet)
            label = f"{target.who} {KIND_NAME[kind]}{' paced' if rate else ''}"
            template = target.templates[kind]
            return run_load(label, target.proc.port, templated(template), 1 if kind == "single" else BATCH_SIZE,
                            args.seconds, args.connections, target.proc.p.pid, rate=rate, request_bytes=len(template))

        for kind in ("single", "batch"):
            for target in targets:
                if f"{PHASE_OF[target.who]}-{kind}" in phases:
                    closed.setdefault(target.who, {})[kind] = phase(target, kind)
        for kind in ("single", "batch") if "p99" in phases else ():
            for target in targets:
                capacity = closed.get(target.who, {}).get(kind)
                if target.who != "ceiling" and capacity is not None and capacity.rps > 0:
                    paced.setdefault(target.who, {})[kind] = phase(target, kind, capacity.rps * PACED_SHARE)
    finally:
        for target in targets:
            t = time.perf_counter()
            code = target.proc.stop()
            log(f"{target.proc.name} stopped (exit {code}) in {time.perf_counter() - t:.1f} s")
            if target.who != "ceiling" and code not in (0, None):
                log(f"serve log tail:\n{target.proc.output()[-2000:]}")
        if any(t.who == "kafka" for t in targets):
            try:
                asyncio.run(asyncio.wait_for(delete_topics(args.kafka, prefix), 30))
            except Exception as exc:  # noqa: BLE001 - leftovers in a test broker are harmless
                log(f"could not delete the bench topics {prefix}.*: {exc!r}")
    return closed, paced


# ------------------------------------------------------------------------------- latency phase

@dataclass
class LatencyResult:
    sent: int
    visible_ms: list[float]
    ack_ms: list[float]
    timeouts: int
    non200: int
    sink_batch_seconds: float
    sink_batch_rows: int
    polls: int
    poll_query_ms: list[float]


def latency_phase(tmp: Path, n: int, rate: float, poll_s: float = 0.005, per_event_timeout: float = 10.0) -> LatencyResult:
    import uvicorn

    from collector.serving import uvicorn_config
    from moneytrail import root

    port = free_port()
    settings = root.load_settings(data_dir=tmp / "latency-data", port=port, host=HOST)
    if not settings.embedded or not settings.warehouse_url.startswith("chdb://"):
        raise RuntimeError(f"latency phase needs embedded mode with chDB; settings say bus={settings.bus} "
                           f"warehouse={settings.warehouse_url} (a .env in {Path.cwd()}?)")
    t = time.perf_counter()
    server = root.build_server(settings)
    _project, creds = server.projects.create("Latency")
    userver = uvicorn.Server(uvicorn_config(server.app, HOST, port))
    thread = threading.Thread(target=userver.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not userver.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("in-process server did not start")
        time.sleep(0.02)
    log(f"in-process server ready in {time.perf_counter() - t:.1f} s; {n} events at {rate:g}/s, "
        f"sink batch {settings.sink_batch_seconds} s / {settings.sink_batch_rows} rows")

    run = uuid.uuid4().hex[:10]
    lock = threading.Lock()
    pending: dict[str, float] = {}  # id -> perf_counter just before its POST
    visible: list[float] = []
    acks: list[float] = []
    state = {"timeouts": 0, "non200": 0, "sender_done": False, "error": ""}

    def sender() -> None:
        try:
            with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=10,
                              headers={"X-Write-Key": creds.write_key, "Content-Type": "application/json"}) as client:
                t0 = time.perf_counter() + 0.1
                for i in range(n):
                    time.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
                    mid = f"lat-{run}-{i:05d}"
                    body = orjson.dumps(page_event(mid, i))
                    started = time.perf_counter()
                    with lock:
                        pending[mid] = started
                    r = client.post("/collect", content=body)
                    acks.append((time.perf_counter() - started) * 1000)
                    if r.status_code != 200:
                        state["non200"] += 1
                        with lock:
                            pending.pop(mid, None)
        except Exception as exc:  # reported, and the poller stops
            state["error"] = repr(exc)
        finally:
            state["sender_done"] = True

    send_thread = threading.Thread(target=sender, name="latency-sender", daemon=True)
    send_thread.start()
    wh = server.warehouse
    polls = 0
    query_ms: list[float] = []
    hard_stop = time.perf_counter() + n / rate + per_event_timeout + 15
    try:
        while time.perf_counter() < hard_stop:
            tick = time.perf_counter()
            with lock:
                ids = list(pending)
            if not ids and state["sender_done"]:
                break
            if ids:
                q0 = time.perf_counter()
                rows = wh.rows("SELECT DISTINCT touch_id FROM touches WHERE touch_id IN {ids:Array(String)}", {"ids": ids})
                seen_at = time.perf_counter()
                query_ms.append((seen_at - q0) * 1000)
                polls += 1
                with lock:
                    for row in rows:
                        started = pending.pop(row["touch_id"], None)
                        if started is not None:
                            visible.append((seen_at - started) * 1000)
                    for mid, started in list(pending.items()):
                        if seen_at - started > per_event_timeout:
                            pending.pop(mid)
                            state["timeouts"] += 1
            time.sleep(max(0.0, tick + poll_s - time.perf_counter()))
    finally:
        send_thread.join(15)
        userver.should_exit = True
        thread.join(30)
        if thread.is_alive():
            log("in-process uvicorn did not stop in 30 s")
    if state["error"]:
        raise RuntimeError(f"latency sender failed: {state['error']}")
    with lock:
        state["timeouts"] += len(pending)
    return LatencyResult(n, sorted(visible), sorted(acks), state["timeouts"], state["non200"],
                         settings.sink_batch_seconds, settings.sink_batch_rows, polls, sorted(query_ms))


# ----------------------------------------------------------------------------------- summary

SINGLE_RATIO_TARGET = 0.6  # issue 3: single events >= 0.6x the ceiling measured in the same run
BATCH_EPS_TARGET = 50_000  # 20-event batches >= 50 000 events/s on one core
P99_TARGET_MS = 20.0  # p99 <= 20 ms at 70% of capacity with the durable acknowledgement on


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def summary(facts: dict[str, Any], args: argparse.Namespace, closed: Results, paced: Results,
            lat: LatencyResult | None, elapsed: float, background: float, notes: list[str]) -> str:
    out = ["", "=" * 110,
           f"machine: nproc={facts['nproc']} (usable {facts['usable_cpus']}), {facts['cpu_model']}, "
           f"Python {facts['python']} ({facts['implementation']}), kernel {facts['kernel']}; "
           f"busy before start: {background:.2f} cores",
           f"stack: uvicorn {facts['uvicorn']}, uvloop {facts['uvloop']}, httptools {facts['httptools']}, "
           f"orjson {facts['orjson']}; client: asyncio+uvloop raw sockets in the bench process",
           "servers: embedded = collector + processors + chDB sink in one process (memory bus); kafka = the collector "
           f"alone, acks=all idempotent producer to Kafka at {args.kafka}; ceiling = bench/raw_asgi.py",
           "",
           f"ingest, closed loop (C={args.connections} connections, {WARMUP_S:.0f} s warm-up + {args.seconds:g} s measured)"]
    header = (f"{'':8} {'server':9} {'req/s':>9} {'ev/s':>9} {'non-200':>8} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'req/cpu-s':>9} {'ev/cpu-s':>9} | {'ratio':>5} | {'cpu-ratio':>9}")
    out.append(header)
    out.append("-" * len(header))
    ceiling = closed.get("ceiling", {})
    for kind in ("single", "batch"):
        for who in ("embedded", "kafka", "ceiling"):
            res = closed.get(who, {}).get(kind)
            if res is None:
                continue
            r = ceiling.get(kind)
            pair = who != "ceiling" and r is not None and r.rps > 0
            ratio = f"{res.rps / r.rps:.2f}" if pair else ""
            cpu_ratio = f"{res.per_cpu / r.per_cpu:.2f}" if pair and r.per_cpu > 0 else ""
            out.append(f"{KIND_NAME[kind]:8} {who:9} {_fmt(res.rps):>9} {_fmt(res.eps):>9} {res.non200_share:>8.2%} "
                       f"{percentile(res.latencies_ms, 0.5):>7.2f} {percentile(res.latencies_ms, 0.99):>7.2f} "
                       f"{_fmt(res.per_cpu):>9} {_fmt(res.per_cpu * res.events_per_request):>9} | {ratio:>5} | "
                       f"{cpu_ratio:>9}")
    out.append("ratio: moneytrail req/s / ceiling req/s. req/cpu-s: requests per CPU-second of the server process; it "
               "barely moves when other")
    out.append("  work shares the machine, so cpu-ratio (moneytrail/ceiling on req/cpu-s) is the steadier ratio. "
               "ev/cpu-s = events per server core.")
    if paced:
        out.append("")
        out.append(f"open loop at {PACED_SHARE:.0%} of the capacity measured above (latency from the scheduled send "
                   f"time, C={args.connections})")
        ph = (f"{'':8} {'server':9} {'asked req/s':>11} {'got req/s':>9} {'ev/s':>9} {'non-200':>8} {'p50 ms':>7} "
              f"{'p99 ms':>7} {'p99.9 ms':>8} {'max ms':>7} {'server cpu':>10}")
        out.append(ph)
        out.append("-" * len(ph))
        for kind in ("single", "batch"):
            for who in ("embedded", "kafka"):
                res = paced.get(who, {}).get(kind)
                if res is None:
                    continue
                v = res.latencies_ms
                out.append(f"{KIND_NAME[kind]:8} {who:9} {_fmt(res.paced_rps):>11} {_fmt(res.rps):>9} {_fmt(res.eps):>9} "
                           f"{res.non200_share:>8.2%} {percentile(v, 0.5):>7.2f} {percentile(v, 0.99):>7.2f} "
                           f"{percentile(v, 0.999):>8.2f} {(max(v) if v else float('nan')):>7.2f} {res.server_cpu:>10.2f}")
    out.append("")
    cpu_header = (f"{'CPU in cores during the window':34} {'server':>6} {'(loop)':>6} {'client':>6} {'softirq':>7} "
                  f"{'others':>6} {'machine':>7}")
    out.append(cpu_header)
    everything = [(f"{KIND_NAME[k]} {who}{' paced' if p else ''}", res) for p, group in ((False, closed), (True, paced))
                  for who, by_kind in group.items() for k, res in by_kind.items()]
    for name, res in everything:
        out.append(f"{name:34} {res.server_cpu:>6.2f} {res.server_loop_cpu:>6.2f} {res.client_cpu:>6.2f} {res.irq:>7.2f} "
                   f"{max(0.0, res.other_cpu):>6.2f} {res.machine_busy:>7.2f}")
    out.append(f"(loop = the server's event-loop thread; others = other processes on this {facts['nproc']}-core machine, "
               "the Kafka broker among them)")

    # the three targets, for the collector alone (kafka) and, for reference, embedded
    out.append("")
    out.append("issue 3 targets (bench/ingest, extended):")
    for who in ("kafka", "embedded"):
        c = closed.get(who, {})
        p = paced.get(who, {})
        parts = []
        if "single" in c and "single" in ceiling and ceiling["single"].rps > 0:
            ratio = c["single"].rps / ceiling["single"].rps
            cpu_ratio = c["single"].per_cpu / ceiling["single"].per_cpu if ceiling["single"].per_cpu > 0 else float("nan")
            parts.append(f"single {ratio:.2f}x ceiling (cpu-ratio {cpu_ratio:.2f}; target {SINGLE_RATIO_TARGET}x: "
                         f"{_verdict(ratio >= SINGLE_RATIO_TARGET)})")
        if "batch" in c:
            per_core = c["batch"].per_cpu * BATCH_SIZE
            parts.append(f"batch20 {_fmt(c['batch'].eps)} ev/s, {_fmt(per_core)} ev per server cpu-s (target "
                         f"{BATCH_EPS_TARGET:,}: {_verdict(min(c['batch'].eps, per_core) >= BATCH_EPS_TARGET)})")
        for kind in ("single", "batch"):
            if kind in p:
                p99 = percentile(p[kind].latencies_ms, 0.99)
                ok = p99 <= P99_TARGET_MS and p[kind].non200_share == 0
                parts.append(f"p99 {KIND_NAME[kind]} at {PACED_SHARE:.0%} {p99:.1f} ms ({_verdict(ok)})")
        if parts:
            label = "kafka (the collector, durable ack)" if who == "kafka" else "embedded (whole product, 1 process)"
            out.append(f"  {label}: " + "; ".join(parts))

    results = [res for group in (closed, paced) for by_kind in group.values() for res in by_kind.values()]
    problems = [f"{res.label}: {res.total_non200} non-200 and {res.errors} errors over the whole run "
                f"(statuses {res.statuses}; first: {res.sample_bad})"
                for res in results if res.total_non200 or res.errors]
    capped = [res.label for res in results if res.hit_cap]
    noisy = [f"{res.label} ({res.other_cpu:.2f})" for res in results if res.other_cpu > 0.15]
    if noisy:
        out.append(f"!! other processes used > 0.15 core during: {', '.join(noisy)} -- those req/s are low "
                   "(the Kafka broker counts here in kafka phases)")
    if background > 0.15:
        out.append(f"!! the machine was already {background:.2f} cores busy before the bench started")
    out.extend(f"!! {p}" for p in problems)
    out.extend(f"!! {n}" for n in notes)
    if capped:
        out.append(f"!! hit the hard cap of {MAX_REQUESTS:,} requests: {', '.join(capped)}")
    if lat is not None:
        v = lat.visible_ms
        out.append("")
        out.append(f"POST->row visible in `touches` (embedded, in-process chDB, {lat.sent} events at "
                   f"{args.latency_rate:g}/s, polled every 5 ms):")
        out.append(f"  p50 {percentile(v, 0.5):.0f} ms, p90 {percentile(v, 0.9):.0f} ms, "
                   f"p99 {percentile(v, 0.99):.0f} ms, max {max(v) if v else float('nan'):.0f} ms, "
                   f"min {min(v) if v else float('nan'):.0f} ms; seen {len(v)}/{lat.sent}, timeouts {lat.timeouts}, "
                   f"non-200 {lat.non200}")
        out.append(f"  sink batch in force: {lat.sink_batch_seconds:g} s / {lat.sink_batch_rows} rows "
                   f"(flusher checks every {lat.sink_batch_seconds / 4:g} s)")
        out.append(f"  POST ack p50 {percentile(lat.ack_ms, 0.5):.2f} ms, p99 {percentile(lat.ack_ms, 0.99):.2f} ms; "
                   f"{lat.polls} polls, poll query p50 {percentile(lat.poll_query_ms, 0.5):.2f} ms")
    out.append("")
    out.append(f"total bench time {elapsed:.1f} s")
    out.append("=" * 110)
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description="moneytrail ingest benchmark (throughput, ceiling, p99, POST->row latency)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per load phase (after 1 s warm-up)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections")
    parser.add_argument("--kafka", default=f"{HOST}:{os.environ.get('MONEYTRAIL_TEST_KAFKA_PORT', '19092')}",
                        help="Kafka bootstrap for the kafka phases (127.0.0.1 only)")
    parser.add_argument("--latency-events", type=int, default=200)
    parser.add_argument("--latency-rate", type=float, default=20.0, help="events per second in the latency phase")
    parser.add_argument("--phases", default=",".join(ALL_PHASES), help=f"comma list of {', '.join(ALL_PHASES)}")
    parser.add_argument("--profile-server", default=None, metavar="OUT",
                        help="profile the moneytrail servers: OUT.prof (cProfile) or OUT.txt/.html (pyinstrument); "
                             "one file per server, OUT-embedded.prof, OUT-kafka.prof")
    parser.add_argument("--wait-quiet", type=float, default=8.0, metavar="S",
                        help="before each load phase wait up to S s for the machine to be idle (0: never wait)")
    parser.add_argument("--json-out", default=None, metavar="PATH", help="also write the numbers as JSON")
    args = parser.parse_args()
    if not (0 < args.seconds <= 120 and 1 <= args.connections <= 1024 and 1 <= args.latency_events <= 10_000
            and 0 < args.latency_rate <= 1000 and 0 <= args.wait_quiet <= 60):
        parser.error("out of range: 0<seconds<=120, 1<=connections<=1024, 1<=latency-events<=10000, 0<rate<=1000, "
                     "0<=wait-quiet<=60")
    if not args.kafka.startswith(f"{HOST}:"):
        parser.error(f"--kafka must be on {HOST}")
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    if phases - set(ALL_PHASES):
        parser.error(f"unknown phases {phases - set(ALL_PHASES)}")
    notes: list[str] = []
    if phases & {"kafka-single", "kafka-batch"} and not kafka_reachable(args.kafka):
        phases -= {"kafka-single", "kafka-batch"}
        notes.append(f"no Kafka at {args.kafka}: kafka phases skipped (start one: KAFKA_PORT={args.kafka.split(':')[1]} "
                     "bash deploy/local/kafka.sh start)")
        log(notes[-1])
    if args.profile_server:
        args.profile_server = str(Path(args.profile_server).resolve())

    for k in [k for k in os.environ if k.startswith("MONEYTRAIL_")]:
        del os.environ[k]  # the in-process latency server must see only what we pass
    started = time.perf_counter()
    facts = machine_facts()
    busy0 = machine_cpu()[0]
    time.sleep(0.5)
    background = (machine_cpu()[0] - busy0) / 0.5  # other work on the machine before we start
    log(f"machine busy before start: {background:.2f} of {os.cpu_count()} cores")
    tmp = Path(tempfile.mkdtemp(prefix="moneytrail-bench-"))
    closed: Results = {}
    paced: Results = {}
    lat: LatencyResult | None = None
    try:
        if phases - {"latency", "p99"}:
            closed, paced = throughput(tmp, args, phases)
        if "latency" in phases:
            lat = latency_phase(tmp, args.latency_events, args.latency_rate)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(summary(facts, args, closed, paced, lat, time.perf_counter() - started, background, notes), flush=True)
    if args.json_out:
        def res_json(r: LoadResult) -> dict[str, Any]:
            return {"rps": r.rps, "eps": r.eps, "non200_share": r.non200_share, "requests": r.requests,
                    "seconds": r.seconds, "errors": r.errors, "total_non200": r.total_non200, "paced_rps": r.paced_rps,
                    "p50_ms": percentile(r.latencies_ms, 0.5), "p99_ms": percentile(r.latencies_ms, 0.99),
                    "p999_ms": percentile(r.latencies_ms, 0.999), "req_per_cpu_s": r.per_cpu,
                    "server_cpu": r.server_cpu, "server_loop_cpu": r.server_loop_cpu, "client_cpu": r.client_cpu,
                    "irq": r.irq, "other_cpu": r.other_cpu, "steal": r.steal}
        data: dict[str, Any] = {"machine": facts, "background_cores": background, "connections": args.connections,
                                "seconds": args.seconds, "notes": notes,
                                "closed": {w: {k: res_json(v) for k, v in by.items()} for w, by in closed.items()},
                                "paced": {w: {k: res_json(v) for k, v in by.items()} for w, by in paced.items()}}
        if lat is not None:
            data["latency_ms"] = {q: percentile(lat.visible_ms, p) for q, p in
                                  (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))}
            data["latency_ms"].update(timeouts=lat.timeouts, sink_batch_seconds=lat.sink_batch_seconds,
                                      sink_batch_rows=lat.sink_batch_rows)
        Path(args.json_out).write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    results = [r for group in (closed, paced) for by in group.values() for r in by.values()]
    bad = any(r.total_non200 or r.errors for r in results) or (lat is not None and lat.timeouts)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
