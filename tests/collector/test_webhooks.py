"""The webhook route: project by the key in the URL, vendor mapper, envelopes published."""

import httpx
import orjson
import pytest

from collector.app import create_app
from collector.ports import CollectorConfig
from collector.vendors.signing import hmac_sha256
from schemas.project import Project

from .test_app import FakeProjects, Published, _report

HOOK = "whs_good"
PROJECT = Project("shop", "Shop", vendor_config={"payment": {"secret": "s3"}})


class HookProjects(FakeProjects):
    async def by_webhook_secret(self, secret):
        return PROJECT if secret == HOOK else None


@pytest.fixture
def published():
    return Published()


@pytest.fixture
async def client(published):
    app = create_app(CollectorConfig(pii_key=b"k" * 32), HookProjects(), published, _report)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


BODY = orjson.dumps({"payment_id": "p-1", "amount": "1500.50", "currency": "KZT",
                     "customer": {"phone": "87011234567", "email": "a@b.kz"}})
SIG = {"X-Moneytrail-Signature": "sha256=" + hmac_sha256("s3", BODY).hex()}


async def test_a_signed_webhook_is_published_with_hashed_identity(client, published):
    r = await client.post(f"/webhooks/payment/{HOOK}", content=BODY, headers=SIG)
    assert r.status_code == 200, r.text
    (topic, env), = published
    assert (topic, env.type, env.schema_, env.project) == ("raw", "payment", "payment/1-0-0", "shop")
    assert env.properties["amount"] == "1500.50"
    assert env.ids["phone"].startswith("h_") and env.ids["payment"] == "p-1"
    assert b"7011234567" not in env.to_bytes() and b"a@b.kz" not in env.to_bytes()


async def test_unknown_vendor_key_or_signature(client, published):
    assert (await client.post(f"/webhooks/nosuch/{HOOK}", content=BODY)).status_code == 404
    assert (await client.post("/webhooks/payment/whs_bad", content=BODY, headers=SIG)).json()["reason"] == "unknown_key"
    bad = await client.post(f"/webhooks/payment/{HOOK}", content=BODY + b" ", headers=SIG)
    assert (bad.status_code, bad.json()["reason"]) == (401, "bad_signature")
    assert published == []


async def test_bus_down_is_503_so_the_vendor_retries(client, published):
    published.fail = True
    r = await client.post(f"/webhooks/payment/{HOOK}", content=BODY, headers=SIG)
    assert r.status_code == 503 and r.headers["retry-after"]
