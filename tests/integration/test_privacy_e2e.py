"""Planted phones and emails, sent every way a business sends them, are found 0 times in Kafka
topics, in the warehouse and in the logs (distributed mode: collector, Apache Kafka, Faust worker)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from collector.vendors.signing import hmac_sha256
from tests.conftest import ROOT, Proc, base_env, free_port, query_folder, show, wait_http

pytestmark = pytest.mark.integration
PHONE_FORMS = ("+7 701 555 12 34", "87015551234", "7015551234", "+77015551234", "77015551234", "701 555 12 34")
EMAIL = "Planted.Person@Example.com"
NEEDLES = ("7015551234", "701 555", "planted.person", "plantedperson", "Planted.Person", "77015559876")


async def _all_topic_bytes(bootstrap: str, prefix: str) -> bytes:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        topics = [t for t in await consumer.topics() if t.startswith(prefix)]
        consumer.subscribe(topics)
        chunks, idle = [], 0
        while idle < 3:
            got = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            idle = 0 if got else idle + 1
            for msgs in got.values():
                chunks.extend((m.key or b"") + b"\n" + (m.value or b"") for m in msgs)
        return b"\n".join(chunks), topics
    finally:
        await consumer.stop()


def test_planted_personal_data_is_nowhere(tmp_path: Path, kafka_bootstrap: str) -> None:
    port, web, run = free_port(), free_port(), uuid.uuid4().hex[:8]
    prefix = f"pii-{run}"
    env = base_env(tmp_path / "data", MONEYTRAIL_PORT=str(port), MONEYTRAIL_BUS=f"kafka://{kafka_bootstrap}",
                   MONEYTRAIL_TOPIC_PREFIX=prefix, MONEYTRAIL_SINK_GROUP=f"sink-{run}", MONEYTRAIL_LOG_LEVEL="debug",
                   MONEYTRAIL_WORKER_ID=f"processors-{run}", MONEYTRAIL_WORKER_WEB_PORT=str(web),
                   MONEYTRAIL_PII_KEY="pii-test-key-0123456789abcdef-0123456789")
    creds = json.loads(subprocess.run([sys.executable, "-m", "moneytrail", "projects", "create", "PII", "--json"],
                                      env=env, cwd=ROOT, capture_output=True, text=True, timeout=120).stdout)
    for vendor, setting in (("payment", "secret=s3cret"), ("whatsapp", "app_secret=wa-secret")):
        subprocess.run([sys.executable, "-m", "moneytrail", "projects", "configure", "PII", vendor, setting],
                       env=env, cwd=ROOT, check=True, capture_output=True, timeout=120)
    server = Proc(["serve", "--sink"], env, tmp_path / "serve.log")
    worker = Proc(["worker"], {**env, "MONEYTRAIL_DATA_DIR": str(tmp_path / "worker")}, tmp_path / "worker.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", server)
        batch = []
        for i, phone in enumerate(PHONE_FORMS):
            batch += [
                {"type": "identify", "messageId": f"id-{i}", "anonymousId": "a1", "userId": "u1",
                 "traits": {"phone": phone, "email": EMAIL, "name": "Planted Person", "address": "Abay 1"}},
                {"type": "track", "event": "Form Submitted", "messageId": f"form-{i}", "anonymousId": "a1",
                 "properties": {"phone": phone, "email": EMAIL, "form_id": "callback",
                                "comment": f"перезвоните на {phone} или пишите {EMAIL}"},
                 "context": {"traits": {"phone": phone}}},
            ]
        assert httpx.post(f"{base}/v1/batch", json={"batch": batch}, auth=(creds["write_key"], "")).status_code == 200
        pay = orjson.dumps({"payment_id": "p1", "amount": "100.00", "currency": "KZT",
                            "customer": {"phone": PHONE_FORMS[0], "email": EMAIL}})
        r = httpx.post(f"{base}/webhooks/payment/{creds['webhook_secret']}", content=pay,
                       headers={"X-Moneytrail-Signature": "sha256=" + hmac_sha256("s3cret", pay).hex()})
        assert r.status_code == 200, r.text
        wa = (ROOT / "tests" / "collector" / "vendors" / "payloads" / "whatsapp_text_message.json").read_bytes()
        wa = wa.replace(b"77011234567", b"77015559876")  # the sender's number, planted
        r = httpx.post(f"{base}/webhooks/whatsapp/{creds['webhook_secret']}", content=wa,
                       headers={"X-Hub-Signature-256": "sha256=" + hmac_sha256("wa-secret", wa).hex(),
                                "Content-Type": "application/json"})
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{base}/metrics").text
            if "moneytrail_events_accepted_total" in metrics:
                break
        time.sleep(5)  # let the worker and the sink move everything
        topic_bytes, topics = asyncio.run(_all_topic_bytes(kafka_bootstrap, prefix))
    finally:
        worker.stop()
        server.stop()
    assert len(topics) >= 4 and len(topic_bytes) > 1000
    stored = ""
    for table in ("raw_events", "touches", "conversions", "dead_letters", "projects"):
        stored += json.dumps(query_folder(env, f"SELECT * FROM {table}"))
    logs = server.output() + worker.output()
    blobs = {"kafka": topic_bytes.decode("utf-8", "replace"), "warehouse": stored, "logs": logs}
    found = {where: [n for n in NEEDLES if n in blob] for where, blob in blobs.items()}
    assert found == {"kafka": [], "warehouse": [], "logs": []}
    assert '"phone":"h_' in stored.replace(" ", "") or "h_" in stored  # the identifiers are there, hashed
    show(f"privacy: planted phone/email in {len(PHONE_FORMS)} spellings via SDK traits, forms, a payment webhook and "
         f"WhatsApp: found 0 times in {len(topics)} Kafka topics ({len(topic_bytes)} bytes), the warehouse and the logs")
