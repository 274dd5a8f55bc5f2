"""The collector's Kafka spool on a small disk during a Kafka outage (issue 11): events are sent until
the spool is full (some answered 503, the rest 2xx), the collector crashes with a write torn in
half, starts again with room, Kafka comes back, and every event answered 2xx is in the raw topic
exactly once by event id; nothing answered 503 is there; and the sink puts each of them in the
warehouse's raw_events exactly once (physical rows, no FINAL).

The small disk is RLIMIT_FSIZE on the collector process: a file it writes cannot grow past the
limit (a short write, then EFBIG), which is what a filling disk does to a writer. The collector's
output goes through a pipe, so its log is not limited."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from moneytrail.spool import _frame
from schemas.topics import RAW, kafka_topic
from tests.conftest import ROOT, ClickhouseServer, Proc, base_env, free_port, missing_part, show, wait_http

pytestmark = pytest.mark.integration
KAFKA = ROOT / "deploy" / "local" / "kafka.sh"
LIMIT = 192 * 1024  # bytes any file of the first collector may reach: its spool disk


def _kafka(cmd: str, port: int, controller: int, data: Path, clean: bool = False) -> None:
    env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(controller), "KAFKA_DATA_DIR": str(data)}
    if clean:
        env["KAFKA_CLEAN"] = "1"
    out = subprocess.run(["bash", str(KAFKA), cmd], env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        missing_part(f"kafka.sh {cmd} failed: {out.stdout[-1500:]} {out.stderr[-1500:]}")


class Collector(Proc):
    """`moneytrail serve --no-sink` in a process of its own; with `fsize`, no file it writes grows
    past that many bytes. Its output goes through a pipe to the log, so the limit spares the log."""

    def __init__(self, env: dict[str, str], log: Path, fsize: int | None = None) -> None:
        def small_disk() -> None:  # runs in the child before exec
            if fsize is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG for the writer, not death

        self.log = log
        self._fh = open(os.devnull, "wb")  # Proc.stop closes it; the copier below writes the log
        self.p = subprocess.Popen([sys.executable, "-m", "moneytrail", "serve", "--no-sink"], cwd=ROOT,
                                  env={**env, "PYTHONUNBUFFERED": "1"},  # its log survives the SIGKILL below
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                  preexec_fn=small_disk)
        self._copier = threading.Thread(target=self._copy, daemon=True)
        self._copier.start()

    def _copy(self) -> None:
        with open(self.log, "ab") as out:
            for chunk in iter(lambda: self.p.stdout.read1(1 << 16), b""):
                out.write(chunk)
                out.flush()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        code = super().stop(sig, timeout)
        self._copier.join(10)
        return code


def _metric(base: str, name: str) -> float:
    for line in httpx.get(f"{base}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return -1.0


async def _event_ids(bootstrap: str, topic: str, want: int, timeout: float = 90) -> list[str]:
    """Every event id in the topic, read from the start; once `want` are in, 3 s more for late
    duplicates."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                group_id=f"check-{uuid.uuid4().hex[:6]}", enable_auto_commit=False)
    await consumer.start()
    ids: list[str] = []
    try:
        loop = asyncio.get_running_loop()
        deadline, quiet_until = loop.time() + timeout, None
        while loop.time() < deadline and (quiet_until is None or loop.time() < quiet_until):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                ids.extend(orjson.loads(r.value)["event_id"] for r in records)
            if quiet_until is None and len(ids) >= want:
                quiet_until = loop.time() + 3
    finally:
        await consumer.stop()
    return ids


def _stored_ids(warehouse: str, project: str, want: int, timeout: float) -> list[str]:
    """Event ids of raw_events rows (every physical row: no FINAL), once `want` have arrived and a
    further second brought no more."""
    from clickhouse.warehouse import ServerWarehouse, WarehouseError

    wh = ServerWarehouse(warehouse)
    deadline, ids = time.monotonic() + timeout, []
    try:
        while time.monotonic() < deadline:
            try:
                ids = [r["event_id"] for r in wh.rows("SELECT event_id FROM raw_events WHERE project = {p:String}",
                                                      {"p": project})]
            except WarehouseError:  # the sink has not created the tables yet
                ids = []
            if len(ids) >= want:
                time.sleep(1)
                return [r["event_id"] for r in wh.rows(
                    "SELECT event_id FROM raw_events WHERE project = {p:String}", {"p": project})]
            time.sleep(0.5)
        return ids
    finally:
        wh.close()


def test_every_event_acknowledged_while_the_spool_disk_fills_reaches_kafka_exactly_once(
        tmp_path: Path, clickhouse_server: ClickhouseServer) -> None:
    kport, kcontrol = free_port(), free_port()
    kdata = tmp_path / "kafka"
    _kafka("start", kport, kcontrol, kdata, clean=True)
    port, run = free_port(), uuid.uuid4().hex[:8]
    prefix = f"spoolfull-{run}"
    env = base_env(tmp_path / "data", MONEYTRAIL_PORT=str(port), MONEYTRAIL_BUS=f"kafka://127.0.0.1:{kport}",
                   MONEYTRAIL_TOPIC_PREFIX=prefix, MONEYTRAIL_PII_KEY="spool-test-pii-key-0123456789abcdef",
                   MONEYTRAIL_KAFKA_ACK_TIMEOUT_S="1", MONEYTRAIL_RATE_LIMIT_IP_RPS="0",
                   MONEYTRAIL_RATE_LIMIT_KEY_EPS="0",
                   MONEYTRAIL_SPOOL_MIN_FREE_BYTES="0")  # the limit below is the full disk, not this machine's
    creds = json.loads(subprocess.run([sys.executable, "-m", "moneytrail", "projects", "create", "Spool", "--json"],
                                      env=env, cwd=ROOT, capture_output=True, text=True, timeout=120).stdout)
    base = f"http://127.0.0.1:{port}"
    accepted: list[str] = []
    refused: list[str] = []
    acked_after_refusal = 0  # 2xx after the spool first refused: written behind a failed write
    reasons: set[str] = set()
    lock = threading.Lock()
    counter = iter(range(10**9))

    def post(client: httpx.Client, size: int) -> int:
        nonlocal acked_after_refusal
        ids = [f"{run}-{next(counter)}" for _ in range(size)]
        body = {"batch": [{"type": "page", "messageId": i, "anonymousId": f"v-{i}",
                           "context": {"page": {"url": "https://mebel.kz/?utm_source=google&utm_medium=cpc"}}}
                          for i in ids]}
        r = client.post(f"{base}/v1/batch", json=body, auth=(creds["write_key"], ""))
        assert r.status_code in (200, 503), (r.status_code, r.text)
        with lock:
            if r.status_code == 200:
                accepted.extend(ids)
                acked_after_refusal += len(ids) if refused else 0
            else:
                refused.extend(ids)
                assert int(r.headers["Retry-After"]) > 0
                reasons.add(r.json()["detail"])
        return r.status_code

    def fill(seed: int) -> None:
        """Batches of 20 with single events between them (a single event may still fit after a
        batch was cut short), until 8 refusals in a row; bounded in count and time."""
        deadline, in_a_row = time.monotonic() + 120, 0
        with httpx.Client(timeout=30) as client:
            for n in range(300):
                if in_a_row >= 8 or time.monotonic() > deadline:
                    return
                in_a_row = in_a_row + 1 if post(client, 1 if (n + seed) % 3 == 0 else 20) == 503 else 0

    first = Collector(env, tmp_path / "serve-1.log", fsize=LIMIT)
    second = None
    try:
        wait_http(f"{base}/readyz", first)
        with httpx.Client(timeout=30) as client:
            for _ in range(5):
                assert post(client, 20) == 200  # Kafka up: straight through
        _kafka("stop", kport, kcontrol, kdata)
        fillers = [threading.Thread(target=fill, args=(t,)) for t in range(3)]
        for t in fillers:
            t.start()
        for t in fillers:
            t.join(180)
        spooled = _metric(base, "moneytrail_spool_pending")
        assert refused, "the spool disk never filled"
        assert spooled > 0, "nothing went to the spool"
        first.stop(signal.SIGKILL)  # a crash...
        segment = sorted((tmp_path / "data" / "spool").glob("spool-*.log"))[-1]
        assert segment.stat().st_size <= LIMIT
        torn = _frame("raw", b"k", b'{"event_id": "never-acknowledged"}' * 20)
        with open(segment, "ab") as f:  # ...in the middle of a spool write
            f.write(torn[: len(torn) // 2])

        # room again (no limit), Kafka still away: the torn write is cut at start, new events spool
        second = Collector(env, tmp_path / "serve-2.log")
        wait_http(f"{base}/readyz", second)
        assert _metric(base, "moneytrail_spool_pending") == spooled
        with httpx.Client(timeout=30) as client:
            for _ in range(5):
                assert post(client, 20) == 200
        _kafka("start", kport, kcontrol, kdata)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _metric(base, "moneytrail_spool_pending") != 0:
            time.sleep(0.5)
        assert _metric(base, "moneytrail_spool_pending") == 0, second.output()[-3000:]
        with httpx.Client(timeout=30) as client:
            for _ in range(5):
                assert post(client, 20) == 200  # Kafka healthy, spool empty: accepted again
        assert second.stop() == 0, second.output()[-3000:]
        second = None
        ids = asyncio.run(_event_ids(f"127.0.0.1:{kport}", kafka_topic(prefix, RAW), len(accepted)))
        # and on into the warehouse, by the sink as production runs it: each 2xx event one row
        warehouse = clickhouse_server.new_database("spool")
        sink = Proc(["sink"], {**env, "MONEYTRAIL_DATA_DIR": str(tmp_path / "sink"), "MONEYTRAIL_WAREHOUSE": warehouse},
                    tmp_path / "sink.log")
        try:
            stored = _stored_ids(warehouse, creds["project"], len(accepted), timeout=90)
        finally:
            assert sink.stop() == 0, sink.output()[-3000:]
    finally:
        first.stop(signal.SIGKILL)
        if second is not None:
            second.stop()
        _kafka("stop", kport, kcontrol, kdata)

    counts: dict[str, int] = {}
    for i in ids:
        counts[i] = counts.get(i, 0) + 1
    missing = [i for i in accepted if i not in counts]
    twice = {i: n for i, n in counts.items() if n > 1}
    leaked = set(refused) & counts.keys()
    assert not missing, f"{len(missing)} of {len(accepted)} acknowledged events are not in Kafka, e.g. {missing[:5]}"
    assert not twice, f"{len(twice)} events are in Kafka more than once, e.g. {list(twice.items())[:5]}"
    assert not leaked, f"{len(leaked)} events answered 503 are in Kafka, e.g. {sorted(leaked)[:5]}"
    assert set(counts) == set(accepted), set(counts) - set(accepted)
    assert len(stored) == len(set(stored)) == len(accepted) and set(stored) == set(accepted), (
        f"raw_events holds {len(stored)} rows of {len(set(stored))} events for {len(accepted)} acknowledged")
    assert acked_after_refusal > 0, "no event was acknowledged after a failed spool write: the test proved little"
    assert any("spool" in r for r in reasons), reasons
    show(f"spool disk full: {len(accepted)} events got 2xx ({spooled:.0f} via a {LIMIT // 1024} KiB spool, "
         f"{acked_after_refusal} of them after a spool write had failed), {len(refused)} got 503; after a crash "
         f"mid-write, a restart and Kafka's return the raw topic holds each 2xx event exactly once, no 503 event, and raw_events one row each")
