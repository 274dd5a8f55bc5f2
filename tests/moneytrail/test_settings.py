from pathlib import Path

import pytest
from pydantic import ValidationError

from moneytrail.bus import KafkaBus, MemoryBus, bus_from_url
from moneytrail.settings import Settings


def test_defaults_are_embedded_with_a_chdb_folder_in_the_data_dir(monkeypatch):
    monkeypatch.delenv("MONEYTRAIL_BUS", raising=False)
    s = Settings(data_dir=Path("/tmp/x"))
    assert s.embedded and s.warehouse_url == "chdb:///tmp/x/warehouse"


def test_environment_is_read_with_the_prefix(monkeypatch):
    monkeypatch.setenv("MONEYTRAIL_BUS", "kafka://10.0.0.1:9092,10.0.0.2:9092")
    monkeypatch.setenv("MONEYTRAIL_PORT", "9000")
    s = Settings()
    assert (s.embedded, s.kafka_bootstrap, s.port) == (False, "10.0.0.1:9092,10.0.0.2:9092", 9000)


def test_settings_are_frozen_and_bad_urls_refused():
    s = Settings()
    with pytest.raises(ValidationError):
        s.port = 1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="memory:// or kafka://"):
        Settings(bus="redis://x")


def test_bus_is_chosen_by_url():
    assert isinstance(bus_from_url("memory://", "p"), MemoryBus)
    assert isinstance(bus_from_url("kafka://127.0.0.1:9092", "p"), KafkaBus)
    with pytest.raises(ValueError):
        bus_from_url("nats://x", "p")


async def test_memory_bus_fans_out_to_every_subscriber_in_order():
    bus, got_a, got_b = MemoryBus(), [], []

    async def a(topic, records):
        got_a.extend(v for _, v in records)

    async def b(topic, records):
        got_b.extend(v for _, v in records)

    bus.subscribe("raw", a)
    bus.subscribe("raw", b)
    await bus.start()
    for i in range(50):
        await bus.publish("raw", [(b"k", str(i).encode())])
    await bus.stop()
    assert got_a == got_b == [str(i).encode() for i in range(50)]


def test_the_warehouse_password_never_reaches_the_logs():
    s = Settings(warehouse="clickhouse://moneytrail:s3cret@clickhouse:8123/moneytrail")
    assert s.warehouse_display == "clickhouse://moneytrail:***@clickhouse:8123/moneytrail"
    assert Settings(warehouse="chdb:///x").warehouse_display == "chdb:///x"
