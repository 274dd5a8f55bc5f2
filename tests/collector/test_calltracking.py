from datetime import datetime, timedelta, timezone

import httpx

from collector.app import create_app
from collector.calltracking import Pool, PoolConfig, display
from collector.ports import CollectorConfig
from schemas.project import Project

from .test_app import WRITE, FakeProjects, Published, _report

T0 = datetime(2026, 11, 25, 10, tzinfo=timezone.utc)
CFG = PoolConfig(("+77270000001", "+77270000002"), "+77270000000", lease_minutes=20, grace_minutes=15)


def test_a_visitor_keeps_its_number_and_extends_it_while_active():
    pool = Pool(CFG)
    a, new = pool.lease("v1", T0)
    assert new and a.number == "+77270000001"
    same, changed = pool.lease("v1", T0 + timedelta(minutes=5))
    assert same == a and not changed  # more than half the lease left: nothing to record
    later, changed = pool.lease("v1", T0 + timedelta(minutes=15))
    assert changed and later.lease_id == a.lease_id and later.expires_at == T0 + timedelta(minutes=35)


def test_numbers_rest_for_the_grace_period_and_the_pool_can_run_out():
    pool = Pool(CFG)
    pool.lease("v1", T0)
    pool.lease("v2", T0)
    none, _ = pool.lease("v3", T0)
    assert none is None and pool.exhausted == 1
    assert pool.lease("v3", T0 + timedelta(minutes=30))[0] is None  # expired at 20, resting until 35
    got, _ = pool.lease("v3", T0 + timedelta(minutes=36))
    assert got.number == "+77270000001" and got.anonymous_id == "v3"


def test_least_recently_used_number_first():
    pool = Pool(CFG)
    pool.lease("v1", T0)
    pool.lease("v2", T0 + timedelta(minutes=1))
    got, _ = pool.lease("v3", T0 + timedelta(hours=2))
    assert got.number == "+77270000001"  # its last visitor left first


def test_configuration_is_checked():
    assert isinstance(PoolConfig.of({"numbers": ["+7 727 000 00 01", "87270000002"], "default": "+77270000000"}, "KZ"),
                      PoolConfig)
    assert "not a phone number" in PoolConfig.of({"numbers": ["call me"]}, "KZ")
    assert "not configured" in PoolConfig.of({}, "KZ")
    assert display("+77270000001") == "+7 727 000 00 01"


class PoolProjects(FakeProjects):
    async def by_write_key(self, key):
        return Project("shop", "Shop", vendor_config={"calltracking": {"numbers": ["+77270000001"],
                                                                       "default": "+77270000000"}}) \
            if key == WRITE else None


async def test_the_lease_endpoint_records_leases_and_falls_back_to_the_default():
    published = Published()
    app = create_app(CollectorConfig(pii_key=b"k" * 32), PoolProjects(), published, _report)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        first = await c.post("/api/calltracking/lease", content=b'{"write_key":"wk_good","anonymous_id":"v1"}',
                             headers={"Content-Type": "text/plain", "Origin": "https://mebel.kz"})
        again = await c.post("/api/calltracking/lease", json={"write_key": WRITE, "anonymous_id": "v1"})
        other = await c.post("/api/calltracking/lease", json={"write_key": WRITE, "anonymous_id": "v2"})
        bad = await c.post("/api/calltracking/lease", json={"write_key": WRITE})
    assert first.status_code == 200 and first.json()["number"] == "+77270000001"
    assert first.json()["display"] == "+7 727 000 00 01" and first.headers["access-control-allow-origin"]
    assert again.json()["lease_id"] == first.json()["lease_id"]
    assert other.json() == {**other.json(), "number": "+77270000000", "pool_exhausted": True}
    assert bad.status_code == 400
    (topic, env), = published  # one lease recorded; the repeat and the exhausted pool record nothing
    assert env.type == "lease" and env.anonymous_id == "v1" and env.ids == {"lease": first.json()["lease_id"]}
    assert env.properties["tracking_number"] == "+77270000001"


async def test_tracker_js_is_served_with_caching():
    app = create_app(CollectorConfig(pii_key=b"k" * 32), FakeProjects(), Published(), _report)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/tracker.js")
        cached = await c.get("/tracker.js", headers={"If-None-Match": r.headers["etag"]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/javascript")
    assert cached.status_code == 304
