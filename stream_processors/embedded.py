"""Embedded runner: drives the pure steps from the in-process bus (no Kafka, no Faust)."""

from __future__ import annotations

from typing import Awaitable, Callable

from .channels import ChannelRules
from .outputs import records_of
from .steps import process

Publish = Callable[[str, list[tuple[bytes, bytes]]], Awaitable[None]]


class EmbeddedRunner:
    def __init__(self, rules: ChannelRules, publish: Publish) -> None:
        self._rules = rules
        self._publish = publish
        self.processed = 0

    async def handle_raw(self, topic: str, records: list[tuple[bytes, bytes]]) -> None:
        merged: dict[str, list[tuple[bytes, bytes]]] = {}
        for _key, value in records:
            for out_topic, recs in records_of(process(self._rules, value)).items():
                merged.setdefault(out_topic, []).extend(recs)
            self.processed += 1
        for out_topic, recs in merged.items():
            await self._publish(out_topic, recs)
