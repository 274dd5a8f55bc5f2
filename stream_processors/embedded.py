"""Embedded runner: drives the pure steps from the in-process bus (no Kafka, no Faust). Visitor
state lives in a RocksDB folder (rocksdict) beside the warehouse, so a restart resumes sessions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Awaitable, Callable, Protocol


from .outputs import process_batch
from .persons import Persons
from .steps import ProcessorConfig

Publish = Callable[[str, list[tuple[bytes, bytes]]], Awaitable[None]]


class StateStore(Protocol):
    def get(self, key: bytes) -> bytes | None: ...
    def __setitem__(self, key: bytes, value: bytes) -> None: ...
    def close(self) -> None: ...


def write_many(store: "StateStore", items: dict[bytes, bytes]) -> None:
    """Several writes at once: one RocksDB write batch when the store has one."""
    many = getattr(store, "write_many", None)
    if many is not None:
        many(items)
    else:
        for key, value in items.items():
            store[key] = value


class RocksState:
    def __init__(self, path: Path) -> None:
        from rocksdict import Rdict

        path.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path))

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._db[key] = value

    def write_many(self, items: dict[bytes, bytes]) -> None:
        from rocksdict import WriteBatch

        batch = WriteBatch()
        for key, value in items.items():
            batch.put(key, value)
        self._db.write(batch)

    def items_with_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.items(from_key=prefix):
            if not key.startswith(prefix):
                break
            yield key, value

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
        """Outputs are published before the visitors' new states are written (see outputs.Batch)."""
        batch = process_batch(self._config, records, lambda _i, key: self._visitors.get(key))
        self.processed += len(records)
        for out_topic, recs in batch.published.items():
            await self._publish(out_topic, recs)
        write_many(self._visitors, {key: state.to_bytes() for key, (_i, state) in batch.states.items()})

    def close(self) -> None:
        self._visitors.close()


class PersonsRunner:
    """The persons stage (persons.py) on the in-process bus: one handler for its four input topics,
    one at a time (the state is shared), outputs published before the state writes are applied."""

    def __init__(self, persons: Persons, publish: Publish, store: StateStore) -> None:
        self._persons = persons
        self._publish = publish
        self._store = store
        self._lock = asyncio.Lock()
        self.processed = 0

    async def handle(self, topic: str, records: list[tuple[bytes, bytes]]) -> None:
        async with self._lock:
            merged: dict[str, list[tuple[bytes, bytes]]] = {}
            self._persons.begin_batch()
            for _key, value in records:
                for out_topic, recs in self._persons.step(topic, value).records().items():
                    merged.setdefault(out_topic, []).extend(recs)
                self.processed += 1
            for out_topic, recs in self._persons.end_batch().records().items():
                merged.setdefault(out_topic, []).extend(recs)
            try:
                for out_topic, recs in merged.items():
                    await self._publish(out_topic, recs)
            except BaseException:
                self._persons.forget()  # the graph is ahead of the store: reload it
                raise
            self._persons.overlay.flush()

    def close(self) -> None:
        self._store.close()
