"""Faust adapter: a thin agent around the same pure steps the embedded runner drives.

At-least-once: outputs have deterministic ids (touch_id = event_id), so a message re-processed
after a crash produces identical rows that the warehouse collapses. A poison message becomes a
dead-letter record (the step says so) and the agent goes on.
"""

from __future__ import annotations

import logging
from pathlib import Path

import faust

from schemas import topics

from .outputs import records_of
from .steps import ProcessorConfig, load_visitor, process

log = logging.getLogger("moneytrail.worker")


def build_app(bootstrap: str, prefix: str, data_dir: Path, config: ProcessorConfig,
              app_id: str = "moneytrail-processors", web_port: int = 6066, partitions: int = 4) -> faust.App:
    app = faust.App(
        app_id,
        broker=[f"kafka://{h}" for h in bootstrap.split(",")],
        store="rocksdb://",
        datadir=str(data_dir),
        producer_acks=-1,
        topic_partitions=partitions,
        topic_allow_declare=True,
        web_enabled=True,
        web_host="127.0.0.1",
        web_bind="127.0.0.1",  # web_host only names the URL; web_bind is where it listens
        web_port=web_port,
        key_serializer="raw",
        value_serializer="raw",
        stream_wait_empty=False,
    )
    raw = app.topic(topics.kafka_topic(prefix, topics.RAW), key_type=bytes, value_type=bytes)
    out = {
        name: app.topic(topics.kafka_topic(prefix, name), key_type=bytes, value_type=bytes)
        for name in (topics.TOUCHES, topics.CONVERSIONS, topics.SPEND, topics.LEASES, topics.RATES, topics.DEAD_LETTERS)
    }

    # one visitor's session state, keyed like the raw topic (project:anonymous_id), so the table is
    # co-partitioned with the stream and each worker holds the visitors of its partitions
    visitors = app.Table("visitors", key_type=bytes, value_type=bytes, partitions=partitions)

    @app.agent(raw, name="enrich")
    async def enrich(stream):  # noqa: ANN001 - faust's stream type
        async for event in stream.events():
            visitor = load_visitor(visitors.get(event.key))
            new, result = process(config, visitor, event.value)
            if new is not visitor and new is not None:
                visitors[event.key] = new.to_bytes()
            for name, records in records_of(result).items():
                for key, value in records:
                    await out[name].send(key=key, value=value)
            yield None

    return app
