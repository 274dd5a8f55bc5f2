"""Embedded runner: drives the pure steps from the in-process bus (no Kafka, no Faust). Visitor
state lives in a RocksDB folder (rocksdict) beside the warehouse, so a restart resumes sessions."""

from __future__ import annotations

from pathlib import Path
from typing import Awaitable, Callable, Protocol

from .outputs import records_of
from .steps import ProcessorConfig, load_visitor, process

Publish = Callable[[str, list[tuple[bytes, bytes]]], Awaitable[None]]


class StateStore(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def __setitem__(self, key: bytes, value: bytes) -> None: ...
    def close(self) -> None: ...


class RocksState:
    def __init__(self, path: Path) -> None:
        from rocksdict import Rdict

        path.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path))

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._db[key] = value

    def close(self) -> None:
        self._db.close()


class MemoryState(dict):
    def close(self) -> None:
        pass


class EmbeddedRunner:
    def __init__(self, config: ProcessorConfig, publish: Publish, visitors: StateStore) -> None:
        self._config = config
        self._publish = publish
        self._visitors = visitors
        self.processed = 0

    async def handle_raw(self, topic: str, records: list[tuple[bytes, bytes]]) -> None:
        merged: dict[str, list[tuple[bytes, bytes]]] = {}
        for key, value in records:
            visitor = load_visitor(self._visitors.get(key))
            new, result = process(self._config, visitor, value)
            if new is not visitor and new is not None:
                self._visitors[key] = new.to_bytes()
            for out_topic, recs in records_of(result).items():
                merged.setdefault(out_topic, []).extend(recs)
            self.processed += 1
        for out_topic, recs in merged.items():
            await self._publish(out_topic, recs)

    def close(self) -> None:
        self._visitors.close()
