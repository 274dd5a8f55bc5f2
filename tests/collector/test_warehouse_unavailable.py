"""While the warehouse is away, reports answer 503 with the reason and Retry-After (never 500), and
/readyz says the sink is failing; /metrics counts the sink's failures and dead letters."""

from __future__ import annotations

import time

import httpx
import pytest

from clickhouse.sink import SinkHealth, warehouse_unavailable
from clickhouse.warehouse import WarehouseError
from collector.app import create_app
from collector.ports import CollectorConfig, WarehouseUnavailable
from moneytrail.root import SINK_UNREADY_AFTER_S, sink_gauges, sink_unready

from .test_app import FakeProjects, Published

READ = "rt_test"


class Readers(FakeProjects):
    async def by_read_token(self, token):
        from schemas.project import Project
        return Project("shop", "Shop") if token == READ else None


async def _down(name, project, query):
    raise WarehouseUnavailable("warehouse unavailable: Connection refused")


@pytest.fixture
def health():
    return SinkHealth()


@pytest.fixture
async def client(health):
    app = create_app(CollectorConfig(pii_key=b"k" * 32), Readers(), Published(), _down,
                     gauges=sink_gauges(health), not_ready=lambda: sink_unready(health))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            yield c


async def test_a_report_while_the_warehouse_is_down_is_503_with_reason_and_retry_after(client):
    r = await client.get("/api/reports/channels", headers={"Authorization": f"Bearer {READ}"})
    assert r.status_code == 503, r.text
    assert r.json() == {"ok": False, "reason": "unavailable", "detail": "warehouse unavailable: Connection refused"}
    assert int(r.headers["retry-after"]) > 0


async def test_readyz_turns_503_when_the_sink_has_failed_too_long_and_metrics_show_it(client, health):
    assert (await client.get("/readyz")).status_code == 200
    health.failed(WarehouseError("Connection refused"))
    assert (await client.get("/readyz")).status_code == 200  # a blip is retried unseen
    health.failing_since = time.monotonic() - SINK_UNREADY_AFTER_S - 1
    health.dead_lettered = 3
    r = await client.get("/readyz")
    assert r.status_code == 503 and r.json()["reason"].startswith("warehouse unavailable: ")
    assert "Connection refused" in r.json()["reason"]
    metrics = (await client.get("/metrics")).text
    assert "moneytrail_sink_dead_lettered 3.0" in metrics and "moneytrail_sink_insert_failures 1.0" in metrics
    health.succeeded()
    assert (await client.get("/readyz")).status_code == 200


def test_which_warehouse_errors_mean_unavailable():
    assert warehouse_unavailable(WarehouseError("Error HTTPConnectionPool(host='127.0.0.1', port=8123): Connection refused"))
    assert warehouse_unavailable(WarehouseError("Code: 159. DB::Exception: Timeout exceeded"))
    assert not warehouse_unavailable(WarehouseError("Code: 47. DB::Exception: Unknown identifier"))  # a bug: 500
    assert not warehouse_unavailable(ValueError("x"))
