"""Warehouse faults in distributed mode, run as a production install runs (`serve --no-sink`, `sink`
and `worker` as separate processes, on the suite's Kafka broker and a ClickHouse server of the
test's own), with nothing lost and nothing counted twice (issue 11, item 5):

1. the ClickHouse server stopped for 60 s while events flow: every event is still acknowledged (it
   is in Kafka), the sink keeps its offsets and retries, reports answer 503 with a reason (never
   500) and /readyz shows the warehouse unreachable; when the server is back, every acknowledged
   event is in raw_events once and every visit in touches once, and the report counts them all.
2. the sink killed with SIGKILL in the middle of a large batch (some of the batch's inserts done,
   its offsets not committed), then restarted: the re-read records are not stored twice.

Set MONEYTRAIL_TEST_CPU_HOG=1 to run both beside a CPU hog spinning on every core."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, ClickhouseServer, Proc, base_env, free_port, show, wait_http
from tests.integration.helpers import Supervised, cpu_hog

pytestmark = pytest.mark.integration
HOG = os.environ.get("MONEYTRAIL_TEST_CPU_HOG", "") == "1"
PAGE = "https://mebel.kz/?utm_source=google&utm_medium=cpc"


def _busy(seconds: float):  # noqa: ANN202
    return cpu_hog(seconds) if HOG else nullcontext()


class Stack:
    """A ClickHouse server of the test's own, a database on it, topics and groups of the test's own
    on the shared broker, one project; `serve --no-sink`, `sink` and `worker` started on demand."""

    def __init__(self, tmp_path: Path, kafka_bootstrap: str, name: str) -> None:
        self.tmp = tmp_path
        self.ch = ClickhouseServer(free_port(), tmp_path / "ch")
        self.ch.start(clean=True)
        self.warehouse = self.ch.new_database(name)
        self.port, run = free_port(), uuid.uuid4().hex[:8]
        self.run = run
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = base_env(tmp_path / "data", MONEYTRAIL_PORT=str(self.port), MONEYTRAIL_BUS=f"kafka://{kafka_bootstrap}",
                            MONEYTRAIL_WAREHOUSE=self.warehouse, MONEYTRAIL_TOPIC_PREFIX=f"{name}-{run}",
                            MONEYTRAIL_SINK_GROUP=f"sink-{run}", MONEYTRAIL_WORKER_ID=f"processors-{run}",
                            MONEYTRAIL_WORKER_WEB_PORT=str(free_port()),
                            MONEYTRAIL_PII_KEY="warehouse-faults-pii-key-0123456789abcdef",
                            MONEYTRAIL_RATE_LIMIT_IP_RPS="0", MONEYTRAIL_RATE_LIMIT_KEY_EPS="0")
        out = subprocess.run([sys.executable, "-m", "moneytrail", "projects", "create", name.title(), "--json"],
                             env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        self.creds = json.loads(out.stdout)
        self.server: Proc | None = None
        self.worker: Supervised | None = None
        self.stop_merges()

    def start_serve_and_worker(self) -> None:
        self.server = Proc(["serve", "--no-sink"], self.env, self.tmp / "serve.log")
        self.worker = Supervised(["worker"], {**self.env, "MONEYTRAIL_DATA_DIR": str(self.tmp / "worker")},
                                 self.tmp, "worker")
        wait_http(f"{self.base}/readyz", self.server, timeout=120)

    def stop_merges(self) -> None:
        """No background merge from here on (until the server restarts): a duplicate row stays a
        row, so the counts without FINAL show every physical duplicate."""
        from clickhouse.warehouse import ServerWarehouse

        wh = ServerWarehouse(self.warehouse)
        try:
            for table in ("raw_events", "touches"):
                wh.command(f"SYSTEM STOP MERGES {table}")
        finally:
            wh.close()

    def report(self, client: httpx.Client | None = None) -> httpx.Response:
        get = client.get if client else httpx.get
        return get(f"{self.base}/api/reports/channels", headers={"Authorization": f"Bearer {self.creds['read_token']}"},
                   timeout=30)

    def counts(self) -> dict[str, int]:
        """Rows as stored (no FINAL: physical duplicates count), distinct ids, and rows under FINAL."""
        from clickhouse.warehouse import ServerWarehouse

        wh = ServerWarehouse(self.warehouse)
        p = {"p": self.creds["project"]}
        try:
            raw = wh.rows("SELECT count() AS n, uniqExact(event_id) AS u FROM raw_events WHERE project = {p:String}", p)[0]
            raw_final = wh.rows("SELECT count() AS n FROM raw_events FINAL WHERE project = {p:String}", p)[0]
            touch = wh.rows("SELECT count() AS n, uniqExact(touch_id) AS u FROM touches WHERE project = {p:String}", p)[0]
            touch_final = wh.rows("SELECT count() AS n FROM touches FINAL WHERE project = {p:String}", p)[0]
        finally:
            wh.close()
        return {"raw": int(raw["n"]), "raw_ids": int(raw["u"]), "raw_final": int(raw_final["n"]),
                "touches": int(touch["n"]), "touch_ids": int(touch["u"]), "touches_final": int(touch_final["n"])}

    def aggregates_drift(self) -> list[dict[str, Any]]:
        """Where the live aggregates differ from the stored touches and credits (clickhouse/live.py)."""
        from clickhouse.live import DRIFT_MONEY, DRIFT_VISITS
        from clickhouse.warehouse import ServerWarehouse

        wh = ServerWarehouse(self.warehouse)
        try:
            return [r for sql in (DRIFT_MONEY, DRIFT_VISITS) for r in wh.rows(sql, {"p": self.creds["project"]})]
        finally:
            wh.close()

    def ids(self) -> tuple[list[str], list[str]]:
        from clickhouse.warehouse import ServerWarehouse

        wh = ServerWarehouse(self.warehouse)
        p = {"p": self.creds["project"]}
        try:
            raw = [r["event_id"] for r in wh.rows("SELECT event_id FROM raw_events WHERE project = {p:String}", p)]
            touch = [r["touch_id"] for r in wh.rows("SELECT touch_id FROM touches WHERE project = {p:String}", p)]
        finally:
            wh.close()
        return raw, touch

    def stop(self) -> dict[str, Any]:
        codes: dict[str, Any] = {}
        if self.worker:
            codes["worker"] = self.worker.stop()
        if self.server:
            codes["serve"] = self.server.stop()
        self.ch.stop()
        return codes


class Senders:
    """Threads posting page views with distinct message ids; every id is filed under the status
    the collector answered."""

    def __init__(self, stack: Stack, senders: int, batch: int, pause: float, tag: str, batches: int = 10**9) -> None:
        self.stack, self.batch, self.pause, self.tag, self.batches = stack, batch, pause, tag, batches
        self.answers: dict[int, list[str]] = {}
        self.lock, self.sending = threading.Lock(), threading.Event()
        self.sending.set()
        self.threads = [threading.Thread(target=self._send, args=(s,), daemon=True) for s in range(senders)]
        for t in self.threads:
            t.start()

    def _send(self, sender: int) -> None:
        with httpx.Client(timeout=30) as client:
            b = 0
            while self.sending.is_set() and b < self.batches:
                ids = [f"{self.stack.run}-{self.tag}-{sender}-{b}-{j}" for j in range(self.batch)]
                body = {"batch": [{"type": "page", "messageId": i, "anonymousId": f"v-{i}", "context": {"page": {"url": PAGE}}}
                                  for i in ids]}
                try:
                    status = client.post(f"{self.stack.base}/v1/batch", json=body,
                                         auth=(self.stack.creds["write_key"], "")).status_code
                except httpx.HTTPError:
                    status = -1  # no answer: not acknowledged
                with self.lock:
                    self.answers.setdefault(status, []).extend(ids)
                b += 1
                if self.pause:
                    time.sleep(self.pause)

    def stop(self) -> None:
        self.sending.clear()
        for t in self.threads:
            t.join(60)

    def accepted(self) -> list[str]:
        with self.lock:
            return list(self.answers.get(200, []))

    def others(self) -> dict[int, int]:
        with self.lock:
            return {s: len(ids) for s, ids in self.answers.items() if s != 200}


def _wait_for_visits(stack: Stack, want: int, timeout: float) -> dict[str, Any]:
    deadline, report = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        r = stack.report()
        if r.status_code == 200:
            report = r.json()
            if report["total"]["visits"] == want:
                return report
        time.sleep(1)
    return report


def _stored(stack: Stack) -> tuple[dict[str, int], list[str], list[str]]:
    """What the warehouse holds, read while its server runs."""
    return (stack.counts(), *stack.ids())


def _assert_exactly_once(stored: tuple[dict[str, int], list[str], list[str]], accepted: list[str]) -> dict[str, int]:
    counts, raw, touch = stored
    assert set(raw) == set(accepted), \
        f"{len(set(accepted) - set(raw))} acknowledged events missing from raw_events, {len(set(raw) - set(accepted))} unknown"
    assert set(touch) == set(accepted), \
        f"{len(set(accepted) - set(touch))} acknowledged visits missing from touches, {len(set(touch) - set(accepted))} unknown"
    n = len(accepted)
    assert counts["raw_final"] == counts["raw_ids"] == n and counts["touches_final"] == counts["touch_ids"] == n, counts
    assert counts["raw"] == n, f"{counts['raw'] - n} physical duplicate rows in raw_events: {counts}"
    assert counts["touches"] == n, f"{counts['touches'] - n} physical duplicate rows in touches: {counts}"
    return counts


def _channel_row(report: dict[str, Any]) -> dict[str, Any]:
    rows = [r for r in report["rows"] if r.get("visits")]
    assert len(rows) == 1, rows
    return rows[0]


OUTAGE_S = 60


def test_clickhouse_down_60s_while_events_flow_reports_503_then_every_event_once(
        tmp_path: Path, kafka_bootstrap: str) -> None:
    stack = Stack(tmp_path, kafka_bootstrap, "chdown")
    sink: Supervised | None = None
    senders: Senders | None = None
    during: dict[str, list] = {"report": [], "readyz": []}
    started = time.monotonic()
    codes: dict[str, Any] = {}
    try:
        with _busy(170):
            stack.start_serve_and_worker()
            sink = Supervised(["sink"], stack.env, tmp_path, "sink")
            senders = Senders(stack, senders=2, batch=10, pause=0.2, tag="o")  # <= 100 events/s
            warm = time.monotonic() + 60
            while time.monotonic() < warm:  # the whole path works before the fault
                r = stack.report()
                if r.status_code == 200 and r.json()["total"]["visits"] > 0:
                    break
                time.sleep(0.5)
            else:
                raise AssertionError(f"no visit reached the report in 60s: {r.status_code} {r.text[:500]}")
            assert httpx.get(f"{stack.base}/readyz", timeout=5).json().get("warehouse", {}).get("ok") is True
            stack.ch.stop()
            down_at = time.monotonic()
            acked_before_outage = len(senders.accepted())
            with httpx.Client(timeout=30) as client:
                while time.monotonic() - down_at < OUTAGE_S:
                    r = stack.report(client)
                    during["report"].append((r.status_code, r.headers.get("retry-after"), r.text[:400]))
                    z = client.get(f"{stack.base}/readyz", timeout=5)
                    during["readyz"].append((time.monotonic() - down_at, z.status_code, z.text[:400]))
                    time.sleep(2)
            acked_during_outage = len(senders.accepted()) - acked_before_outage
            sink_log_during = sink.logs()
            stack.ch.start()
            stack.stop_merges()
            outage = time.monotonic() - down_at
            time.sleep(5)  # events keep flowing after the server is back
            senders.stop()
            accepted = senders.accepted()
            report = _wait_for_visits(stack, len(accepted), 90)
            back = time.monotonic() + 20
            while time.monotonic() < back:  # the collector's warehouse probe runs every 5 s
                readyz_after = httpx.get(f"{stack.base}/readyz", timeout=5).json()
                if readyz_after.get("warehouse", {}).get("ok"):
                    break
                time.sleep(1)
            stored = _stored(stack)
    finally:
        if senders:
            senders.stop()
        if sink:
            codes["sink"] = sink.stop()
        codes.update(stack.stop())
    took = time.monotonic() - started
    assert senders.others() == {}, f"events not acknowledged while only the warehouse was down: {senders.others()}"
    assert acked_during_outage > 0
    statuses = [s for s, _, _ in during["report"]]
    assert statuses and set(statuses) == {503}, f"reports while the warehouse was down: {during['report'][:5]}"
    for _status, retry_after, text in during["report"]:
        body = json.loads(text)
        assert body["reason"] == "unavailable" and body["detail"] == "warehouse unavailable: connection refused", body
        assert retry_after, "a 503 without Retry-After"
    # serve --no-sink collects without the warehouse: /readyz stays 200 (a 503 would take the collector
    # out of the load balancer), and says the warehouse is unreachable once its probe (every 5 s) saw it
    assert all(s == 200 for _, s, _ in during["readyz"]), f"readyz must keep the collector in rotation: {during['readyz'][:3]}"
    ready = [json.loads(t) for at, _, t in during["readyz"] if at > 7]
    assert ready and all(r["warehouse"]["ok"] is False and "unreachable" in r["warehouse"]["detail"] for r in ready), ready[:3]
    assert readyz_after["warehouse"]["ok"] is True, readyz_after
    assert "failed, retrying" in sink_log_during, sink_log_during[-3000:]
    assert sink.exits == [], f"the sink exited {sink.exits} instead of retrying:\n{sink.logs()[-3000:]}"
    assert report and report["total"]["visits"] == len(accepted), (report.get("total"), len(accepted))
    row = _channel_row(report)
    assert (row["channel"], row["visits"]) == ("Paid Search", len(accepted)), row
    counts = _assert_exactly_once(stored, accepted)
    assert codes == {"sink": 0, "worker": 0, "serve": 0}, codes
    show(f"ClickHouse down {outage:.0f}s while events flowed{' (CPU hog on every core)' if HOG else ''}: "
         f"{len(accepted)} events acknowledged ({acked_during_outage} during the outage), reports answered 503 "
         f"{len(statuses)} times, never 500; after the restart raw_events/touches hold exactly {counts['raw']}/"
         f"{counts['touches']} rows (no FINAL), report visits {report['total']['visits']}; {took:.0f}s")


BURST, BURST_SENDERS, BURST_BATCH = 6000, 4, 250


def test_sink_killed_mid_insert_and_restarted_stores_nothing_twice(tmp_path: Path, kafka_bootstrap: str) -> None:
    from clickhouse.warehouse import ServerWarehouse

    stack = Stack(tmp_path, kafka_bootstrap, "sinkkill")
    sinks: list[Proc] = []
    trickle: Senders | None = None
    started = time.monotonic()
    seen: dict[str, Any] = {}
    codes: dict[str, Any] = {}
    try:
        with _busy(170):
            stack.start_serve_and_worker()
            sinks.append(Proc(["sink"], stack.env, tmp_path / "sink.log"))
            trickle = Senders(stack, senders=1, batch=10, pause=0.2, tag="t")  # events keep flowing throughout
            wait_deadline = time.monotonic() + 60
            while time.monotonic() < wait_deadline and stack.counts()["raw"] == 0:
                time.sleep(0.5)
            assert stack.counts()["raw"] > 0, sinks[0].output()[-3000:]
            before = stack.counts()["raw"]
            burst = Senders(stack, senders=BURST_SENDERS, batch=BURST_BATCH, pause=0, tag="b",
                            batches=BURST // (BURST_SENDERS * BURST_BATCH))
            watch = ServerWarehouse(stack.warehouse)
            p = {"p": stack.creds["project"]}
            try:
                # Prefer killing while an INSERT runs; a quiet machine inserts a batch faster than this
                # loop polls (and keeps pace with the burst), so after a few seconds any moment while
                # the burst is landing will do: batches are then between plan, insert and commit.
                deadline, prefer_until = time.monotonic() + 60, time.monotonic() + 5
                while time.monotonic() < deadline:
                    n = int(watch.rows("SELECT count() AS n FROM raw_events WHERE project = {p:String}", p)[0]["n"])
                    inserting = int(watch.rows("SELECT count() AS n FROM system.processes WHERE query_kind = 'Insert'"
                                               " AND user != 'default'")[0]["n"])
                    in_flight = 500 < n - before < BURST * 0.9
                    if in_flight and (inserting or time.monotonic() > prefer_until):
                        sinks[0].p.send_signal(signal.SIGKILL)
                        seen = {"raw_rows_at_kill": n - before, "acked_at_kill": len(burst.accepted()),
                                "inserts_running": inserting}
                        break
            finally:
                watch.close()
            assert seen, "never caught the sink with part of the burst stored"
            sinks[0].p.wait(10)
            codes["killed_sink"] = sinks[0].stop()
            burst_done = time.monotonic() + 60
            while time.monotonic() < burst_done and sum(len(v) for v in burst.answers.values()) < BURST:
                time.sleep(0.2)
            burst.stop()
            time.sleep(2)
            sinks.append(Proc(["sink"], stack.env, tmp_path / "sink-2.log"))
            time.sleep(3)
            trickle.stop()
            accepted = trickle.accepted() + burst.accepted()
            report = _wait_for_visits(stack, len(accepted), 90)
            stored = _stored(stack)
            drift = stack.aggregates_drift()
            replanned = [line for line in sinks[1].output().splitlines() if "re-inserting the unfinished batch" in line]
    finally:
        if trickle:
            trickle.stop()
        for s in sinks:
            codes["sink"] = s.stop()
        codes.update(stack.stop())
    took = time.monotonic() - started
    counts = stored[0]
    assert codes["killed_sink"] == -signal.SIGKILL, codes
    assert trickle.others() == {} and burst.others() == {}, (trickle.others(), burst.others())
    assert report and report["total"]["visits"] == len(accepted), (report.get("total"), len(accepted))
    show(f"sink SIGKILLed mid-insert{' (CPU hog on every core)' if HOG else ''}: {seen}; {len(accepted)} events "
         f"acknowledged; the restarted sink re-inserted {len(replanned)} unfinished batch(es) under their tokens; before any merge raw_events held {counts['raw'] - counts['raw_ids']} and touches "
         f"{counts['touches'] - counts['touch_ids']} physical duplicate rows; {took:.0f}s")
    _assert_exactly_once(stored, accepted)
    # the live visits after the kill: one per stored touch (the re-inserted batch's deltas dropped by
    # their token, like its rows), so the live report counts what the query-time one counts
    assert drift == [], drift[:5]
