"""A real Faust worker killed mid-stream (SIGKILL, twice) and restarted on Apache Kafka ends with the same
persons, sessions and credits as an uninterrupted embedded run of the same events, and the
warehouse holds no duplicate credit (every conversion's credits sum to its value in every model).
The distributed run is a production install's: `serve --no-sink`, `sink` and `worker` processes on a
ClickHouse server."""

from __future__ import annotations

import random
import signal
import subprocess
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncio

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas import topics
from stream_processors.attribution import MODELS
from stream_processors.persons import PERSONS_INPUTS
from tests.conftest import ClickhouseServer, Proc, base_env, free_port, query_folder, show, wait_http
from tests.integration.test_thin_path import _create_project

pytestmark = pytest.mark.integration
PERSONS = 150
CHANNELS = [
    "https://shop.kz/sofas?utm_source=google&utm_medium=cpc&utm_campaign=sofas",
    "https://shop.kz/?utm_source=instagram&utm_medium=paid_social&utm_campaign=stories",
    "https://shop.kz/?utm_source=yandex&utm_medium=cpc&utm_campaign=beds",
    "https://shop.kz/",  # direct
    "https://shop.kz/?utm_source=email&utm_medium=email&utm_campaign=nov",
]
T0 = datetime(2026, 9, 1, tzinfo=UTC)


def journeys(seed: int = 7) -> list[dict]:
    """Persons on 1-3 devices: visits on different days, a form with the person's phone on each
    device they identify on (the link), and sales on some device; ground truth by construction."""
    rnd = random.Random(seed)
    events: list[dict] = []
    for p in range(PERSONS):
        phone = f"+7701{p:07d}"
        devices = [f"dev-{p}-{d}" for d in range(rnd.randint(1, 3))]
        for d, anon in enumerate(devices):
            for v in range(rnd.randint(1, 3)):
                at = T0 + timedelta(days=rnd.randint(0, 40), minutes=rnd.randint(0, 600))
                events.append({"type": "page", "messageId": f"pv-{p}-{d}-{v}", "anonymousId": anon,
                               "timestamp": at.isoformat(),
                               "context": {"page": {"url": rnd.choice(CHANNELS)}, "userAgent": "Mozilla/5.0 (X11)"}})
            if d == 0 or rnd.random() < 0.7:
                at = T0 + timedelta(days=rnd.randint(0, 45))
                events.append({"type": "track", "event": "Form Submitted", "messageId": f"form-{p}-{d}",
                               "anonymousId": anon, "timestamp": at.isoformat(),
                               "properties": {"phone": phone, "form_id": "callback"}})
        for s in range(rnd.choice([0, 0, 1, 2])):
            at = T0 + timedelta(days=rnd.randint(20, 50))
            events.append({"type": "track", "event": "Order Completed", "messageId": f"order-{p}-{s}",
                           "anonymousId": rnd.choice(devices), "timestamp": at.isoformat(),
                           "properties": {"order_id": f"o-{p}-{s}", "revenue": rnd.randint(50, 900) * 1000,
                                          "currency": "KZT"}})
    rnd.shuffle(events)  # arrival order is not event order
    return events


def _post(base: str, key: str, events: list[dict]) -> None:
    for i in range(0, len(events), 20):
        r = httpx.post(f"{base}/v1/batch", json={"batch": events[i:i + 20]}, auth=(key, ""), timeout=30)
        assert r.status_code == 200, r.text


def _progress(base: str, token: str) -> tuple[int, int]:
    rep = httpx.get(f"{base}/api/reports/channels?from=2026-08-01&to=2026-12-31",
                    headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    return rep["total"].get("visits") or 0, rep["total"].get("sales") or 0


def _kafka(bootstrap: str, prefix: str, groups: dict[str, tuple[str, ...]]) -> tuple[dict[str, int], dict[str, int]]:
    """(records per topic, lag per consumer group) from the broker."""
    async def read() -> tuple[dict[str, int], dict[str, int]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await consumer.start()
        await admin.start()
        try:
            cluster = await consumer._client.fetch_all_metadata()  # noqa: SLF001 - every topic's partitions
            names = {t for ts in groups.values() for t in ts}
            parts = {t: [TopicPartition(topics.kafka_topic(prefix, t), p)
                         for p in sorted(cluster.partitions_for_topic(topics.kafka_topic(prefix, t)) or ())]
                     for t in names}
            ends = await consumer.end_offsets([tp for tps in parts.values() for tp in tps])
            records = {t: sum(ends[tp] for tp in tps) for t, tps in parts.items()}
            lag = {}
            for group, ts in groups.items():
                committed = await admin.list_consumer_group_offsets(group)
                lag[group] = sum(ends[tp] - (committed[tp].offset if tp in committed else 0)
                                 for t in ts for tp in parts[t])
            return records, lag
        finally:
            await admin.close()
            await consumer.stop()

    return asyncio.run(read())


def _settle(base: str, token: str, timeout: float, want_visits: int | None) -> None:
    """Until every session is in (any number when None) and nothing has changed for 3 s."""
    started, last, since = time.monotonic(), None, time.monotonic()
    while time.monotonic() - started < timeout:
        now = _progress(base, token)
        if now != last:
            last, since = now, time.monotonic()
        elif (want_visits is None and now[0] > 0 or now[0] == want_visits) and time.monotonic() - since > 3:
            return
        time.sleep(0.3)
    raise AssertionError(f"did not settle within {timeout}s: {last}, want {want_visits} visits")


def _final_state(env: dict[str, str], project: str) -> dict:
    touches = query_folder(env, "SELECT touch_id, anonymous_id, channel, toString(started_at) AS at FROM touches FINAL "
                                "WHERE project = {p:String} ORDER BY touch_id", {"p": project})
    mapping = query_folder(env, "SELECT identifier, argMax(person_id, version) AS person FROM identity_map "
                                "WHERE project = {p:String} GROUP BY identifier", {"p": project})
    credits = query_folder(env, "SELECT conversion_id, model, touch_id, channel, toString(sum(weight)) AS w, "
                                "toString(sum(amount)) AS a, count() AS n, uniqExact(credit_id) AS ids "
                                "FROM credits_current WHERE project = {p:String} "
                                "GROUP BY conversion_id, model, touch_id, channel", {"p": project})
    values = query_folder(env, "SELECT conversion_id, toString(value) AS v FROM conversions FINAL "
                               "WHERE project = {p:String} AND kind IN ('lead', 'sale', 'payment', 'refund')",
                          {"p": project})
    from clickhouse.live import DRIFT_MONEY, DRIFT_VISITS

    # the live aggregates against what the stored credits and touches give: no row differs
    drift = query_folder(env, DRIFT_MONEY, {"p": project}) + query_folder(env, DRIFT_VISITS, {"p": project})
    # persons as groups of anonymous ids (phone hashes differ between two projects' keys)
    person_of = {m["identifier"]: m["person"] for m in mapping}
    groups: dict[str, set[str]] = defaultdict(set)
    for t in touches:
        groups[person_of.get(f"anon:{t['anonymous_id']}", f"anon:{t['anonymous_id']}")].add(t["anonymous_id"])
    return {
        "touches": {(t["touch_id"], t["anonymous_id"], t["channel"], t["at"]) for t in touches},
        "persons": {frozenset(g) for g in groups.values()},
        "credits": {(c["conversion_id"], c["model"], c["touch_id"], c["channel"]): (Decimal(c["w"]), Decimal(c["a"]))
                    for c in credits if Decimal(c["w"]) or Decimal(c["a"])},
        "duplicates": sum(c["n"] - c["ids"] for c in credits),
        "values": {v["conversion_id"]: Decimal(v["v"]) for v in values},
        "aggregates_drift": drift,
    }


def _embedded_reference(tmp_path: Path, events: list[dict]) -> dict:
    port = free_port()
    env = base_env(tmp_path / "embedded", MONEYTRAIL_PORT=str(port))
    creds = _create_project(env)
    server = Proc(["serve"], env, tmp_path / "embedded.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", server)
        _post(base, creds["write_key"], events)
        _settle(base, creds["read_token"], 60, None)
    finally:
        assert server.stop() == 0, server.output()[-3000:]
    return _final_state(env, creds["project"])


def test_worker_killed_mid_stream_and_restarted_ends_like_an_uninterrupted_run(tmp_path: Path, kafka_bootstrap: str,
                                                                              clickhouse_server: ClickhouseServer):
    events = journeys()
    reference = _embedded_reference(tmp_path, events)

    assert reference["credits"], "the reference run credited nothing"

    port, web = free_port(), free_port()
    run = uuid.uuid4().hex[:8]
    env = base_env(tmp_path / "data", MONEYTRAIL_PORT=str(port), MONEYTRAIL_BUS=f"kafka://{kafka_bootstrap}",
                   MONEYTRAIL_TOPIC_PREFIX=f"restart-{run}", MONEYTRAIL_SINK_GROUP=f"sink-{run}",
                   MONEYTRAIL_WORKER_ID=f"processors-{run}", MONEYTRAIL_WORKER_WEB_PORT=str(web),
                   MONEYTRAIL_PII_KEY="integration-test-pii-key-0123456789abcdef",
                   MONEYTRAIL_WAREHOUSE=clickhouse_server.new_database("restart"))
    creds = _create_project(env)
    worker_env = {**env, "MONEYTRAIL_DATA_DIR": str(tmp_path / "worker"), "MONEYTRAIL_WORKER_STALL_SECONDS": "15"}
    server = Proc(["serve", "--no-sink"], env, tmp_path / "serve.log")
    sink = Proc(["sink"], env, tmp_path / "sink.log")
    base = f"http://127.0.0.1:{port}"
    prefix = f"restart-{run}"
    worker_group, sink_group = f"processors-{run}", f"sink-{run}"
    watched = {worker_group: (topics.RAW, *PERSONS_INPUTS), sink_group: (topics.TOUCHES, topics.CREDITS, topics.IDENTITY)}
    workers: list[Proc] = []

    def kill_when_credits_pass(count: int, log: str) -> dict[str, int]:
        """Start a worker, SIGKILL it as soon as more than `count` credit records are out."""
        workers.append(Proc(["worker"], worker_env, tmp_path / log))
        started = time.monotonic()
        while time.monotonic() - started < 90:
            records, _ = _kafka(kafka_bootstrap, prefix, watched)
            if records[topics.CREDITS] > count:
                break
            time.sleep(0.05)
        workers[-1].stop(sig=9)
        return _kafka(kafka_bootstrap, prefix, watched)[0]

    try:
        wait_http(f"{base}/readyz", server)
        _post(base, creds["write_key"], events)  # all of it queued in Kafka before the worker starts
        # killed twice: as soon as the persons stage is under way, then again once the restarted
        # worker has recovered its tables and sent 1 500 more credit records
        at_kill = kill_when_credits_pass(0, "worker.log")
        at_second_kill = kill_when_credits_pass(at_kill[topics.CREDITS] + 1500, "worker2.log")
        workers.append(Proc(["worker"], worker_env, tmp_path / "worker3.log"))
        started, quiet_since, restarts = time.monotonic(), None, 0
        while time.monotonic() - started < 240:  # both consumer groups caught up, and staying so
            if workers[-1].p.poll() is not None:  # what compose's `restart: unless-stopped` does
                assert workers[-1].p.returncode == 70, workers[-1].output()[-3000:]  # only the stall watchdog exits
                restarts += 1
                workers.append(Proc(["worker"], worker_env, tmp_path / f"worker3-restart{restarts}.log"))
            records, lag = _kafka(kafka_bootstrap, prefix, watched)
            if records[topics.RAW] == len(events) and not any(lag.values()):
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 4:
                    break
            else:
                quiet_since = None
            time.sleep(0.5)
        else:
            workers[-1].p.send_signal(signal.SIGUSR1)  # Faust's worker logs every task's stack: where it waits
            time.sleep(3)
            raise AssertionError(f"did not catch up in 240 s: {records} lag {lag}")
    finally:
        for proc in workers:
            proc.stop()
        sink_code = sink.stop()
        assert server.stop() == 0, server.output()[-3000:]
    assert sink_code == 0, sink.output()[-3000:]
    logs = sorted(tmp_path.glob("worker*.log"))
    errors = [line for w in logs for line in w.read_text(errors="replace").splitlines()
              if "[ERROR]" in line and "stalled:" not in line]
    assert not errors, errors[:5]  # a crashed stream stalls the worker: none may crash
    killed_at, killed_again_at = at_kill[topics.CREDITS], at_second_kill[topics.CREDITS]
    final = _final_state(env, creds["project"])
    # mid-stream: credits were flowing at each kill, and the last worker still had work to do
    assert 0 < killed_at < killed_again_at and any(records[t] > n for t, n in at_second_kill.items()), \
        f"the kills were not mid-stream: {at_kill}, {at_second_kill} then {records}"
    assert final["touches"] == reference["touches"]
    assert final["persons"] == reference["persons"]
    differ = sorted(k for k in final["credits"].keys() | reference["credits"].keys()
                    if final["credits"].get(k) != reference["credits"].get(k))
    assert not differ, (f"{len(differ)} credit keys differ, e.g. "
                        + "; ".join(f"{k}: {final['credits'].get(k)} vs {reference['credits'].get(k)}" for k in differ[:8]))
    assert final["duplicates"] == 0 and reference["duplicates"] == 0
    # the live aggregates after the kills: exactly what the stored credits and touches give (and
    # those are the uninterrupted run's, above), although the killed workers re-emitted credits
    assert final["aggregates_drift"] == [] and reference["aggregates_drift"] == [], final["aggregates_drift"][:5]
    for state in (final, reference):
        sums: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        for (cid, model, _t, _c), (_w, amount) in state["credits"].items():
            sums[(cid, model)] += amount
        # money conserved (a lead's value is 0; a repeat lead has no credit that counts)
        assert {k: v for k, v in sums.items() if v} == {(cid, m): v for cid, v in state["values"].items()
                                                      for m in MODELS if v}
    multi = sum(1 for g in final["persons"] if len(g) > 1)
    show(f"faust restart: {len(events)} events, worker SIGKILLed with {killed_at} and again with {killed_again_at} "
         f"of {records[topics.CREDITS]} credit records out, restarted each time"
         f"{f' (+{restarts} restart(s) by the stall watchdog)' if restarts else ''}; "
         f"{len(final['touches'])} touches, {len(final['persons'])} persons ({multi} across devices), "
         f"{len(final['credits'])} credit keys equal to the embedded run, 0 duplicate credits")


def test_an_agent_that_crashes_makes_the_worker_exit_for_a_restart_and_commits_nothing(tmp_path: Path,
                                                                                       kafka_bootstrap: str):
    """Issue 11: after a broker restart both agents crashed with PartitionsMismatch (the changelog's
    metadata not refreshed yet: "0 partitions"), Faust restarted them in place and the worker then
    processed nothing, with no exit. Here the same error comes for sure: the visitors table's
    changelog has 1 partition where the raw topic has 4. The worker exits with 75 at the crash, and
    the crashed batch's offsets are not committed (Faust's own handler commits before restarting)."""
    from aiokafka.admin import NewTopic

    port, web, run = free_port(), free_port(), uuid.uuid4().hex[:8]
    prefix, group = f"crash-{run}", f"processors-{run}"
    env = base_env(tmp_path / "data", MONEYTRAIL_PORT=str(port), MONEYTRAIL_BUS=f"kafka://{kafka_bootstrap}",
                   MONEYTRAIL_TOPIC_PREFIX=prefix, MONEYTRAIL_SINK_GROUP=f"sink-{run}", MONEYTRAIL_WORKER_ID=group,
                   MONEYTRAIL_WORKER_WEB_PORT=str(web), MONEYTRAIL_KAFKA_PARTITIONS="4",
                   MONEYTRAIL_PII_KEY="integration-test-pii-key-0123456789abcdef")

    async def changelog_of_one_partition() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(f"{group}-visitors-changelog", 1, 1)])
        finally:
            await admin.close()

    asyncio.run(changelog_of_one_partition())
    creds = _create_project(env)
    server = Proc(["serve", "--sink"], env, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    worker = None
    try:
        wait_http(f"{base}/readyz", server)
        events = [{"type": "page", "messageId": f"{run}-{i}", "anonymousId": f"v-{i}",
                   "context": {"page": {"url": "https://shop.kz/"}}} for i in range(100)]
        _post(base, creds["write_key"], events)
        started = time.monotonic()
        worker = Proc(["worker"], {**env, "MONEYTRAIL_DATA_DIR": str(tmp_path / "worker")}, tmp_path / "worker.log")
        try:
            code = worker.p.wait(120)
        except subprocess.TimeoutExpired:
            worker.p.send_signal(signal.SIGUSR1)
            time.sleep(3)
            raise AssertionError(f"the worker did not exit in 120 s:\n{worker.output()[-5000:]}") from None
        took = time.monotonic() - started
        records, lag = _kafka(kafka_bootstrap, prefix, {group: (topics.RAW,)})
    finally:
        if worker:
            worker.stop()
        assert server.stop() == 0, server.output()[-3000:]
    out = worker.output()
    assert code == 75, out[-5000:]
    assert "crashed" in out and "PartitionsMismatch" in out, out[-5000:]
    assert records[topics.RAW] == len(events) and lag[group] == len(events), (records, lag)  # nothing committed
    show(f"crashed agent: PartitionsMismatch at the first state write, the worker exited 75 after {took:.0f}s "
         f"with none of its {len(events)} input records committed")
