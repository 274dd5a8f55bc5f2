"""Real Segment and RudderStack SDKs (from PyPI), pointed at a running collector, deliver events
that land with their messageId; a repeated messageId is stored once."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, Proc, base_env, free_port, query_folder, show, wait_http

pytestmark = pytest.mark.integration


def test_segment_and_rudderstack_sdks_deliver_with_their_message_ids(tmp_path: Path) -> None:
    import rudderstack.analytics.client as rudder
    import segment.analytics as segment

    port = free_port()
    env = base_env(tmp_path / "data", MONEYTRAIL_PORT=str(port))
    created = subprocess.run([sys.executable, "-m", "moneytrail", "projects", "create", "SDK Shop", "--json"],
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    creds = json.loads(created.stdout)
    server = Proc(["serve"], env, tmp_path / "serve.log")
    base = f"http://127.0.0.1:{port}"
    run = uuid.uuid4().hex[:8]
    errors: list = []
    try:
        wait_http(f"{base}/readyz", server)
        seg = segment.Client(creds["write_key"], host=base, sync_mode=True, on_error=lambda e, b: errors.append(e))
        seg.page("visitor-seg", category=None, name="Sofas", properties={"url": "https://mebel.kz/sofas"},
                 context={"page": {"url": "https://mebel.kz/sofas?utm_source=google&utm_medium=cpc"}},
                 message_id=f"seg-page-{run}", anonymous_id="anon-seg")
        seg.track("user-1", "Order Completed", {"revenue": "150000.00"}, message_id=f"seg-track-{run}")
        seg.identify("user-1", {"email": "Buyer@Example.com", "plan": "pro"}, message_id=f"seg-identify-{run}")
        seg.track("user-1", "Order Completed", {"revenue": "150000.00"}, message_id=f"seg-track-{run}")  # again
        seg.flush()

        rud = rudder.Client(creds["write_key"], host=base, sync_mode=True, on_error=lambda e, b: errors.append(e))
        rud.page("user-2", category=None, name="Home", properties={}, context={"page": {"url": "https://mebel.kz/"}},
                 message_id=f"rud-page-{run}")
        rud.track("user-2", "Form Submitted", {"form_id": "callback", "phone": "+7 701 123 45 67"},
                  message_id=f"rud-track-{run}")
        rud.identify("user-2", {"phone": "87011234567"}, message_id=f"rud-identify-{run}")
        rud.flush()
        assert errors == []
        metrics = httpx.get(f"{base}/metrics").text
        assert 'moneytrail_events_accepted_total{route="v1_batch"} 7.0' in metrics, metrics[:2000]
    finally:
        assert server.stop() == 0, server.output()[-3000:]
    rows = query_folder(env, "SELECT event_id, type, anonymous_id, user_id, payload FROM raw_events FINAL"
                             " WHERE project = {p:String} ORDER BY event_id", {"p": creds["project"]})
    ids = [r["event_id"] for r in rows]
    assert ids == sorted([f"seg-page-{run}", f"seg-track-{run}", f"seg-identify-{run}",
                          f"rud-page-{run}", f"rud-track-{run}", f"rud-identify-{run}"])
    by_id = {r["event_id"]: r for r in rows}
    assert by_id[f"seg-page-{run}"]["type"] == "pageview" and by_id[f"seg-page-{run}"]["anonymous_id"] == "anon-seg"
    phones = {json.loads(by_id[f"rud-{k}-{run}"]["payload"])["ids"]["phone"] for k in ("track", "identify")}
    assert len(phones) == 1  # the same phone typed two ways is one identifier
    everything = json.dumps(rows)
    for raw in ("7011234567", "701 123", "Buyer@", "buyer@example.com"):
        assert raw not in everything
    show(f"SDKs: segment-analytics-python and rudder-sdk-python delivered {len(rows)} events with their messageIds "
         "(a repeated messageId stored once; phones/emails only as hashes)")
