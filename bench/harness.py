"""What the bench scripts share (bench/ingest.py, bench/pipeline.py): the load client, the request
bodies, CPU sampling of processes from /proc, starting and stopping server processes, and the
small printing helpers. Everything listens on and connects to 127.0.0.1 only.

The load client: asyncio + uvloop, raw-socket HTTP/1.1 keep-alive, C connections each looping until
the deadline (a warm-up, then the measured window); bounded in requests and time. Closed loop (the
next request as soon as the answer is in) or open loop (paced at a rate; latency counts from the
scheduled send time when the server made the request late, so there is no coordinated omission).
Each request's bytes come from a function of (connection, n, start), called just before the send.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvloop

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
MAX_REQUESTS = 2_000_000  # hard cap per load phase, whatever the duration
WARMUP_S = 1.0
PLACEHOLDER = b"@@@@@@@@@@@@"  # 12 bytes, replaced per request by a unique fixed-width id

# (connection id, request number on it, its start time as latency counts it: time.perf_counter() of the
# send, or the scheduled time when an open loop is behind schedule) -> the request's bytes
MakeRequest = Callable[[int, int, float], bytes]


# ------------------------------------------------------------------------------------- helpers

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MONEYTRAIL_")}
    env.update(extra)
    return env


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _stat_cpu(path: str) -> float:
    """utime + stime in seconds from a /proc stat file (nan when the process is gone)."""
    try:
        with open(path, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds_of(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    return _stat_cpu(f"/proc/{pid}/stat")


def machine_cpu() -> tuple[float, float, float]:
    """(busy, irq+softirq, steal) CPU seconds of the whole machine so far, all cores, from /proc/stat.
    Loopback TCP work done in softirq context is not charged to any process."""
    with open("/proc/stat", "rb") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    tck = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / tck, (irq + softirq) / tck, steal / tck


def main_thread_cpu_of(pid: int) -> float:
    """CPU seconds of a process's main thread (the event loop thread of a uvicorn server)."""
    return _stat_cpu(f"/proc/{pid}/task/{pid}/stat")


class CpuWindow:
    """CPU used over a window, in cores (CPU seconds per wall second): this process (the client),
    each named process (`<name>_cpu`, and `<name>_loop_cpu` for its main thread), the whole machine
    (`machine_busy`, `irq` = irq+softirq, `steal`) and `other_cpu` = the machine minus all of those.
    mark() at the start, mark() at the end, then shares()."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self.marks: list[tuple[float, ...]] = []

    def mark(self) -> None:
        busy, irq, steal = machine_cpu()
        self.marks.append((time.perf_counter(), time.process_time(), busy, irq, steal,
                           *(cpu_seconds_of(p) for p in self.pids.values()),
                           *(main_thread_cpu_of(p) for p in self.pids.values())))

    def shares(self) -> dict[str, float]:
        if len(self.marks) < 2:
            return {}
        a, b = self.marks[0], self.marks[-1]
        wall = b[0] - a[0]
        d = [(y - x) / wall for x, y in zip(a[1:], b[1:])]
        out = {"wall": wall, "client_cpu": d[0], "machine_busy": d[1], "irq": d[2], "steal": d[3]}
        n = len(self.pids)
        for i, name in enumerate(self.pids):
            out[f"{name}_cpu"] = d[4 + i]
            out[f"{name}_loop_cpu"] = d[4 + n + i]
        out["other_cpu"] = d[1] - d[2] - d[0] - sum(d[4:4 + n])
        return out


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[i]


def fmt(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:,.0f}"


def machine_facts() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import httptools
    import uvicorn
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "uvicorn": uvicorn.__version__,
        "uvloop": uvloop.__version__,
        "httptools": httptools.__version__,
        "orjson": orjson.__version__,
    }


def busy_cores(seconds: float = 0.5) -> float:
    """Cores busy on the whole machine over the next `seconds` (all processes)."""
    b0 = machine_cpu()[0]
    time.sleep(seconds)
    return (machine_cpu()[0] - b0) / seconds


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def wait_quiet(max_wait: float, threshold: float = 0.25) -> float:
    """Wait (at most max_wait s) until the rest of the machine is nearly idle; the machine may be
    shared with other work. Returns the cores busy in the last 0.5 s sample."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = busy_cores(0.5)
        if busy < threshold or time.monotonic() >= deadline:
            if busy >= threshold:
                log(f"machine still {busy:.2f} cores busy after waiting {max_wait:g} s; measuring anyway")
            return busy
        time.sleep(0.5)


# ---------------------------------------------------------------------------------- the bodies

UA_DESKTOP = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def page_event(message_id: str, i: int) -> dict[str, Any]:
    """A realistic tracker pageview (paid search landing), ~400 bytes of JSON."""
    return {
        "type": "page",
        "messageId": message_id,
        "anonymousId": f"visitor-{i:04d}",
        "timestamp": "2026-01-15T10:00:00.000Z",
        "context": {
            "page": {
                "url": "https://shop.kz/sofas?utm_source=google&utm_medium=cpc&utm_campaign=sofas&gclid=abc123",
                "referrer": "https://www.google.com/",
                "path": "/sofas",
                "title": "Sofas | Shop",
            },
            "userAgent": UA_DESKTOP,
            "locale": "ru-KZ",
        },
        "properties": {"path": "/sofas"},
    }


def request_template(port: int, body: bytes, write_key: str, path: str = "/collect",
                     content_type: str = "application/json") -> bytes:
    """The whole request as bytes; PLACEHOLDER (fixed width) keeps Content-Length exact."""
    key = f"X-Write-Key: {write_key}\r\n" if write_key else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: moneytrail-bench/1\r\n"
        f"Content-Type: {content_type}\r\n{key}Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


def templated(template: bytes) -> MakeRequest:
    """Every request the template with PLACEHOLDER replaced by a unique fixed-width id."""
    replace = template.replace

    def make(cid: int, n: int, _start: float) -> bytes:
        return replace(PLACEHOLDER, b"%03d%09d" % (cid, n))
    return make


# Landing pages by channel: (share of new visitors, url, referrer). What the default channel rules
# classify as Paid Search, Paid Social, Organic Search, Direct, Referral, Email.
LANDINGS = (
    (0.30, "https://shop.kz/sofas?utm_source=google&utm_medium=cpc&utm_campaign=sofas&gclid={v}", "https://www.google.com/"),
    (0.15, "https://shop.kz/beds?utm_source=instagram&utm_medium=paid_social&utm_campaign=beds&fbclid={v}",
     "https://l.instagram.com/"),
    (0.20, "https://shop.kz/", "https://yandex.kz/search/?text=sofa"),
    (0.15, "https://shop.kz/", ""),
    (0.10, "https://shop.kz/tables", "https://blog.example.kz/best-tables"),
    (0.10, "https://shop.kz/sale?utm_source=newsletter&utm_medium=email&utm_campaign=sale", ""),
)
PAGES = ("/sofas", "/sofas/lars-3", "/beds", "/beds/nord-160", "/tables", "/delivery", "/contacts", "/cart")
AGENTS = (UA_DESKTOP,
          "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.5 Mobile/15E148 Safari/604.1",
          "Mozilla/5.0 (Linux; Android 14; SM-A546E) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36")
PAGES_PER_VISITOR = ((1, 0.35), (2, 0.25), (3, 0.15), (4, 0.10), (6, 0.10), (9, 0.05))  # ~2.7 pages
FORM_SHARE = 0.08  # of the visitors with 2+ pages: a "Form Submitted" after their last page


@dataclass
class _Visitor:
    vid: int
    pages_left: int
    form: bool
    agent: str
    url: str = ""


class Traffic:
    """Realistic site traffic, one tracker message at a time, as tracker.js sends it (POST /collect,
    text/plain, {"write_key", "batch": [message]}): visitors arrive through several channels and view
    several pages each in one session, interleaved with the other visitors', and some submit a form
    (a lead with a phone and an email). A visitor's next message comes `dwell` seconds (uniform)
    after their previous one, as a browser sends them, so a visitor never has two requests in flight;
    when no visitor is due, a new one arrives. Timestamps are now. Deterministic for a seed (apart
    from the clock).

    Probes: the first pageview of every `probe_every`-th visitor; its messageId is the touch_id of
    the visit it opens, so `touches` shows when it arrived. `on_probe(message_id, start)` is called
    just before such a message is sent (start: as MakeRequest has it)."""

    def __init__(self, run: str, write_key: str, port: int, seed: int = 1, dwell: tuple[float, float] = (0.5, 2.5),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.run, self.write_key, self.port = run, write_key, port
        self.rng = random.Random(seed)
        self.dwell = dwell
        self.clock = clock
        self.waiting: list[tuple[float, int, _Visitor]] = []  # heap of (due, vid, visitor)
        self.visitors = 0  # drawn so far
        self.landed = 0  # visits opened: first pageviews built (each is sent at once)
        self.events = 0
        self.forms = 0
        self.probe_every = 1
        self.on_probe: Callable[[str, float], None] | None = None
        self._weights = [w for w, _, _ in LANDINGS]
        self._counts = [c for c, _ in PAGES_PER_VISITOR]
        self._count_weights = [w for _, w in PAGES_PER_VISITOR]

    def _new_visitor(self) -> _Visitor:
        pages = self.rng.choices(self._counts, self._count_weights)[0]
        v = _Visitor(self.visitors, pages, pages >= 2 and self.rng.random() < FORM_SHARE, self.rng.choice(AGENTS))
        self.visitors += 1
        return v

    def message(self) -> tuple[dict[str, Any], str | None]:
        """The next message, and its id when it is a probe."""
        t = self.clock()
        v = heapq.heappop(self.waiting)[2] if self.waiting and self.waiting[0][0] <= t else self._new_visitor()
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        mid = f"{self.run}-{v.vid}-{self.events}"
        self.events += 1
        anon = f"{self.run}-v{v.vid}"
        probe = None
        if v.pages_left == 0:  # pages done, the form is left
            self.forms += 1
            phone = f"+7701{v.vid % 10_000_000:07d}"
            return ({"type": "track", "event": "Form Submitted", "messageId": mid, "anonymousId": anon,
                     "timestamp": now, "properties": {"form_id": "callback", "phone": phone,
                                                      "email": f"buyer{v.vid}@mail.kz"},
                     "context": {"page": {"url": v.url, "path": urlpath(v.url), "title": "Shop"},
                                 "userAgent": v.agent, "locale": "ru-KZ"}}, None)
        if not v.url:  # landing
            _, url, referrer = self.rng.choices(LANDINGS, self._weights)[0]
            url = url.format(v=f"{self.run}x{v.vid}")
            self.landed += 1
            if v.vid % self.probe_every == 0:
                probe = mid
        else:
            url, referrer = "https://shop.kz" + self.rng.choice(PAGES), v.url
        v.url = url
        v.pages_left -= 1
        if v.pages_left > 0 or v.form:
            heapq.heappush(self.waiting, (t + self.rng.uniform(*self.dwell), v.vid, v))
        return ({"type": "page", "messageId": mid, "anonymousId": anon, "timestamp": now,
                 "context": {"page": {"url": url, "path": urlpath(url), "referrer": referrer, "title": "Shop"},
                             "userAgent": v.agent, "locale": "ru-KZ", "library": {"name": "moneytrail.js", "version": "1"}}},
                probe)

    def request(self, cid: int, n: int, start: float) -> bytes:  # a MakeRequest
        msg, probe = self.message()
        body = orjson.dumps({"write_key": self.write_key, "batch": [msg]})
        if probe is not None and self.on_probe is not None:
            self.on_probe(probe, start)
        return (f"POST /collect HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nUser-Agent: {msg['context']['userAgent']}\r\n"
                f"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def urlpath(url: str) -> str:
    rest = url.split("://", 1)[-1]
    path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return path.split("?", 1)[0]


# ----------------------------------------------------------------------------- the load client

@dataclass
class LoadResult:
    label: str
    events_per_request: int
    seconds: float = 0.0  # measured window, as actually sampled
    requests: int = 0  # completed inside the measured window
    non200: int = 0  # inside the window
    errors: int = 0  # connection / protocol errors, whole run
    total_requests: int = 0  # whole run, warm-up included
    total_non200: int = 0  # whole run
    statuses: dict[int, int] = field(default_factory=dict)
    sample_bad: str = ""
    latencies_ms: list[float] = field(default_factory=list)
    client_cpu: float = float("nan")  # share of one core used by this client during the window
    server_cpu: float = float("nan")  # share of one core used by the server process
    server_loop_cpu: float = float("nan")  # ... by its main (event loop) thread alone
    machine_busy: float = float("nan")  # cores busy on the whole machine (all processes)
    other_cpu: float = float("nan")  # cores used by other processes (not client, server, irq/softirq)
    irq: float = float("nan")  # cores in irq/softirq (loopback TCP), charged to no process
    steal: float = float("nan")  # cores stolen by the hypervisor
    hit_cap: bool = False
    paced_rps: float = 0.0  # the requested rate of an open-loop phase (0: closed loop, as fast as it answers)
    cpu: dict[str, float] = field(default_factory=dict)  # everything CpuWindow measured (all named processes)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def per_cpu(self) -> float:
        """Requests per CPU-second of the server process: robust to other work on the machine."""
        return self.rps / self.server_cpu if self.server_cpu > 0 else float("nan")

    @property
    def eps(self) -> float:
        return self.rps * self.events_per_request

    @property
    def non200_share(self) -> float:
        return (self.non200 + self.errors) / max(1, self.requests + self.errors)


class LoadState:
    __slots__ = ("errors", "lat", "non200_total", "non200_window", "sample_bad", "statuses", "total", "window")

    def __init__(self) -> None:
        self.total = 0
        self.window = 0
        self.non200_window = 0
        self.non200_total = 0
        self.errors = 0
        self.statuses: dict[int, int] = {}
        self.sample_bad = ""
        self.lat = array("d")


async def _connection(cid: int, port: int, make: MakeRequest, st: LoadState, w_start: float, w_end: float,
                      cap: int, pace: tuple[float, float] | None = None) -> None:
    """One keep-alive connection sending until the window ends. Closed loop (pace None): the next
    request goes as soon as the answer is in; a request counts when sent and answered inside the
    window. Open loop (pace = (interval, first)): one request every interval s from first on, and
    a request counts when it was due inside the window; its latency counts from the scheduled time
    when the previous answer came too late to send on time (the server's fault), else from the
    actual send (a late timer wake-up of this client is not the server's fault)."""
    perf = time.perf_counter
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError as exc:
        st.errors += 1
        st.sample_bad = st.sample_bad or f"connect: {exc!r}"
        return
    n = 0
    interval, due = pace if pace else (0.0, 0.0)
    try:
        while st.total < cap:
            t0 = perf()
            if pace is None:
                if t0 >= w_end:
                    break
            elif due >= w_end:
                break
            elif t0 < due:
                await asyncio.sleep(due - t0)
                t0 = perf()
            else:
                t0 = due  # behind schedule because the last answer was late
            writer.write(make(cid, n, t0))
            n += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            lower = head.lower()
            i = lower.find(b"\r\ncontent-length:")
            if i < 0:
                raise RuntimeError(f"response without content-length: {head[:200]!r}")
            j = lower.find(b"\r\n", i + 2)
            length = int(lower[i + 17:j])
            body = await reader.readexactly(length) if length else b""
            t1 = perf()
            st.total += 1
            st.statuses[status] = st.statuses.get(status, 0) + 1
            if status != 200:
                st.non200_total += 1
                if not st.sample_bad:
                    st.sample_bad = f"{status}: {body[:300]!r}"
            if (w_start <= due < w_end) if pace else (w_start <= t0 and t1 <= w_end):
                st.window += 1
                st.lat.append((t1 - t0) * 1000.0)
                if status != 200:
                    st.non200_window += 1
            due += interval
            if b"connection: close" in lower:
                raise RuntimeError("server closed the keep-alive connection")
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, RuntimeError, ValueError) as exc:
        st.errors += 1
        st.sample_bad = st.sample_bad or f"connection {cid}: {exc!r}"
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


async def load(port: int, make: MakeRequest, seconds: float, conns: int, pids: dict[str, int],
               cap: int = MAX_REQUESTS, rate: float | None = None, warmup: float = WARMUP_S,
               start: float | None = None) -> tuple[LoadState, dict[str, float]]:
    """C connections until warm-up + seconds have passed (open loop at `rate` requests/s in all, or
    closed loop); CPU of this process, of `pids` and of the machine over the measured window.
    Returns the counters and CpuWindow.shares() ({"wall": seconds} if the window was not sampled)."""
    perf = time.perf_counter
    start = perf() if start is None else start
    w_start = start + warmup
    w_end = w_start + seconds
    st = LoadState()
    window = CpuWindow(pids)

    async def sampler() -> None:  # CPU at the window's edges
        for at in (w_start, w_end):
            await asyncio.sleep(max(0.0, at - perf()))
            window.mark()

    interval = conns / rate if rate else 0.0  # open loop: connections take turns, together `rate` requests/s
    tasks = [asyncio.create_task(_connection(c, port, make, st, w_start, w_end, cap,
                                             (interval, start + 0.05 + c * interval / conns) if rate else None))
             for c in range(conns)]
    tasks.append(asyncio.create_task(sampler()))
    _done, pending = await asyncio.wait(tasks, timeout=warmup + seconds + 15)  # hard time bound
    for t in pending:
        t.cancel()
    if pending:
        st.errors += len(pending)
        st.sample_bad = st.sample_bad or f"{len(pending)} connection(s) did not finish in time"
        await asyncio.gather(*pending, return_exceptions=True)
    return st, (window.shares() or {"wall": seconds})


def load_result(label: str, events_per_request: int, st: LoadState, cpu: dict[str, float],
                rate: float | None = None) -> LoadResult:
    nan = float("nan")
    return LoadResult(label, events_per_request, seconds=cpu["wall"], requests=st.window, non200=st.non200_window,
                      errors=st.errors, total_requests=st.total, total_non200=st.non200_total,
                      statuses=dict(st.statuses), sample_bad=st.sample_bad, latencies_ms=sorted(st.lat),
                      client_cpu=cpu.get("client_cpu", nan), server_cpu=cpu.get("server_cpu", nan),
                      server_loop_cpu=cpu.get("server_loop_cpu", nan), machine_busy=cpu.get("machine_busy", nan),
                      other_cpu=cpu.get("other_cpu", nan), irq=cpu.get("irq", nan), steal=cpu.get("steal", nan),
                      hit_cap=st.total >= MAX_REQUESTS, paced_rps=rate or 0.0, cpu=dict(cpu))


def run_load(label: str, port: int, make: MakeRequest, events_per_request: int, seconds: float, conns: int,
             server_pid: int | None, rate: float | None = None, request_bytes: int = 0) -> LoadResult:
    pacing = f", paced at {rate:,.0f} req/s" if rate else ""
    log(f"load {label}: {conns} connections, {WARMUP_S:.0f} s warm-up + {seconds:g} s, {request_bytes} bytes/request"
        + pacing)
    st, cpu = uvloop.run(load(port, make, seconds, conns, {"server": server_pid} if server_pid else {}, MAX_REQUESTS,
                              rate))
    res = load_result(label, events_per_request, st, cpu, rate)
    log(f"  {res.rps:,.0f} req/s, {res.eps:,.0f} ev/s, non-200 {res.non200_share:.4%}, "
        f"cpu (cores): client {res.client_cpu:.2f}, server {res.server_cpu:.2f} (loop thread {res.server_loop_cpu:.2f}), "
        f"softirq {res.irq:.2f}, other processes {res.other_cpu:.2f}, machine {res.machine_busy:.2f}/{os.cpu_count()}, "
        f"steal {res.steal:.2f}"
        + (f", first problem: {res.sample_bad}" if res.sample_bad else ""))
    return res


# ------------------------------------------------------------------------------- the servers

class ServerProc:
    """A process of ours (a moneytrail command, a ceiling server), output to a log file, in its own
    session; stopped by its pid only."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.port = 0
        self.log_path = log_path
        self._fh = open(log_path, "wb")
        self.p = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=self._fh, stderr=subprocess.STDOUT,
                                  start_new_session=True)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, url: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.p.returncode}:\n{self.output()[-3000:]}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready at {url} in {timeout}s:\n{self.output()[-3000:]}")

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM to this process only (by pid), wait; SIGKILL only if it will not stop."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop in {timeout}s after SIGTERM; killing pid {self.p.pid}")
                self.p.kill()
                self.p.wait(10)
        if not self._fh.closed:
            self._fh.close()
        return self.p.returncode


def moneytrail_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "moneytrail", *args]


def create_project(env: dict[str, str], name: str = "Bench") -> dict[str, Any]:
    out = subprocess.run(moneytrail_argv("projects", "create", name, "--json"),
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"projects create failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return orjson.loads(out.stdout.strip().splitlines()[-1])


def kafka_reachable(bootstrap: str) -> bool:
    host, _, port = bootstrap.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except (OSError, ValueError):
        return False


async def delete_topics(bootstrap: str, prefix: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix + ".")]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


def table(header: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """Lines of a plain text table: the first `left` columns left-aligned, the rest right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        return " ".join(f"{c:<{w}}" if i < left else f"{c:>{w}}" for i, (c, w) in enumerate(zip(cells, widths)))
    out = [line(header)]
    out.append("-" * len(out[0]))
    out.extend(line([str(c) for c in r]) for r in rows)
    return out
