"""The embedded runners publish a batch's outputs before they write its state: a publish that fails
leaves the state as it was, so the batch delivered again emits the same records (never fewer)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import orjson
import pytest

from schemas import topics
from schemas.envelope import Envelope, EventContext
from stream_processors.channels import ChannelRules
from stream_processors.embedded import EmbeddedRunner, MemoryState, PersonsRunner
from stream_processors.persons import MemoryStore, Persons, PersonsConfig
from stream_processors.steps import ProcessorConfig

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=timezone.utc)


def pageview(event_id: str, anon: str, url: str) -> tuple[bytes, bytes]:
    env = Envelope(schema="pageview/1-0-0", type="pageview", event_id=event_id, project="shop", anonymous_id=anon,
                   timestamp=T0, received_at=T0, context=EventContext(page_url=url, user_agent="Mozilla/5.0"))
    return env.key, env.to_bytes()


class FlakyBus:
    """Records what is published; the first `failures` publishes raise (Kafka gone)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.published: dict[str, list[bytes]] = {}

    async def __call__(self, topic: str, records: list[tuple[bytes, bytes]]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the bus is down")
        self.published.setdefault(topic, []).extend(v for _, v in records)


def test_a_failed_publish_leaves_the_visitor_state_and_the_retry_emits_the_touch():
    bus, visitors = FlakyBus(failures=1), MemoryState()
    runner = EmbeddedRunner(ProcessorConfig(ChannelRules.load()), bus, visitors)
    batch = [pageview("e1", "v1", "https://shop.kz/?utm_source=google&utm_medium=cpc"),
             pageview("e2", "v2", "https://shop.kz/")]
    with pytest.raises(ConnectionError):
        asyncio.run(runner.handle_raw(topics.RAW, batch))
    assert dict(visitors) == {}  # nothing written: the outputs never got out
    asyncio.run(runner.handle_raw(topics.RAW, batch))  # delivered again
    touches = [orjson.loads(v) for v in bus.published[topics.TOUCHES]]
    assert sorted(t["touch_id"] for t in touches) == ["e1", "e2"]
    assert set(visitors) == {k for k, _ in batch}
    asyncio.run(runner.handle_raw(topics.RAW, batch))  # and once more: a redelivery emits nothing new
    assert len(bus.published[topics.TOUCHES]) == 2


def test_a_failed_publish_of_the_persons_stage_keeps_its_store_and_the_retry_credits_again():
    bus, store = FlakyBus(failures=1), MemoryStore()
    runner = PersonsRunner(Persons(store, PersonsConfig()), bus, store)
    touch = {"project": "shop", "touch_id": "t1", "anonymous_id": "v1", "started_at": T0.isoformat(),
             "channel": "Paid Search", "source": "google", "medium": "cpc", "campaign": "", "is_bot": False}
    sale = {"project": "shop", "conversion_id": "sale:1", "kind": "sale", "at": T0.replace(hour=12).isoformat(),
            "value": "1000", "currency": "KZT", "subject": "anon:v1", "anonymous_id": "v1"}
    asyncio.run(runner.handle(topics.TOUCHES, [(b"shop", orjson.dumps(touch))]))
    with pytest.raises(ConnectionError):
        asyncio.run(runner.handle(topics.CONVERSIONS, [(b"shop", orjson.dumps(sale))]))
    assert not any(k.startswith(b"shop\x1fv\x1f") for k in store)  # the sale's record was not kept
    asyncio.run(runner.handle(topics.CONVERSIONS, [(b"shop", orjson.dumps(sale))]))
    credits = [orjson.loads(v) for v in bus.published[topics.CREDITS]]
    assert {(c["model"], c["channel"], c["amount"]) for c in credits} == {
        (m, "Paid Search", "1000.00") for m in PersonsConfig().models}
