import httpx
import pytest

from collector.app import create_app
from collector.ports import CollectorConfig

from .test_app import WRITE, FakeProjects, Published, _report


@pytest.fixture
async def client_and_published():
    published = Published()
    app = create_app(CollectorConfig(pii_key=b"k" * 32), FakeProjects(), published, _report)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c, published


async def test_a_csv_from_a_russian_spreadsheet_is_imported(client_and_published):
    c, published = client_and_published
    csv = "Дата;Источник;utm_medium;Кампания;Расход;Валюта\n2026-11-01;Яндекс;cpc;Диваны;1 500,50;kzt\n2026-11-02;google;cpc;sofas;200;KZT\n"
    r = await c.post("/api/spend", content=csv.encode(), headers={"X-Write-Key": WRITE, "Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    assert (r.json()["rows"], r.json()["from"], r.json()["to"]) == (2, "2026-11-01", "2026-11-02")
    first = published[0][1]
    assert first.type == "spend" and first.properties["cost"] == "1500.50" and first.properties["currency"] == "KZT"
    assert first.properties["import_id"] == r.json()["import_id"]


async def test_bad_rows_refuse_the_whole_import_with_row_numbers(client_and_published):
    c, published = client_and_published
    csv = "date,source,cost\n2026-11-01,google,100\n2026-13-01,google,100\n2026-11-03,google,-5\n"
    r = await c.post("/api/spend", content=csv.encode(), headers={"X-Write-Key": WRITE, "Content-Type": "text/csv"})
    assert r.status_code == 400
    assert [e.split(":")[0] for e in r.json()["errors"]] == ["row 3", "row 4"]
    assert "date" in r.json()["errors"][0] and "cost" in r.json()["errors"][1]
    assert published == []


async def test_json_rows_and_a_missing_key(client_and_published):
    c, published = client_and_published
    rows = {"rows": [{"date": "2026-11-01", "source": "tiktok", "cost": 350.5, "currency": "KZT", "clicks": 10}]}
    assert (await c.post("/api/spend", json=rows)).status_code == 401
    r = await c.post("/api/spend", json=rows, headers={"X-Write-Key": WRITE})
    assert r.status_code == 200 and published[0][1].properties["cost"] == "350.5"
    bad = await c.post("/api/spend", json={"rows": [{"date": "x"}]}, headers={"X-Write-Key": WRITE})
    assert bad.json()["errors"][0].startswith("rows[0]:")


async def test_currency_rates_are_imported_and_checked(client_and_published):
    c, published = client_and_published
    csv = "date,currency,rate\n2026-11-01,usd,\"480,50\"\n2026-11-02,EUR,520.1\n"
    r = await c.post("/api/rates", content=csv.encode(), headers={"X-Write-Key": WRITE, "Content-Type": "text/csv"})
    assert r.status_code == 200 and r.json()["currencies"] == ["EUR", "USD"], r.text
    first = published[0][1]
    assert (first.type, first.properties["base"], first.properties["rate"]) == ("rate", "KZT", "480.50")
    bad = await c.post("/api/rates", json={"rates": [{"date": "2026-11-01", "currency": "USD", "rate": 0}]},
                       headers={"X-Write-Key": WRITE})
    assert bad.status_code == 400 and "rate" in bad.json()["detail"]
