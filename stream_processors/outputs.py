"""What a step result becomes on the bus: the same records in both run modes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import orjson

from schemas import topics
from schemas.reasons import RejectReason

from .sessions import VisitorSessions
from .steps import DeadLetter, Emitted, ProcessorConfig, StepResult, load_visitor, process


log = logging.getLogger("moneytrail.processors")


def dead_letter_record(dl: DeadLetter) -> tuple[bytes, bytes]:
    try:
        project = str(orjson.loads(dl.payload).get("project", ""))
    except (orjson.JSONDecodeError, AttributeError):
        project = ""
    value = {"project": project, "reason": dl.reason.value, "detail": dl.detail,
             "payload": dl.payload.decode("utf-8", "replace")}
    return project.encode(), orjson.dumps(value)


def records_of(result: StepResult) -> dict[str, list[tuple[bytes, bytes]]]:
    """Topic -> (key, value) records a step result emits."""
    if isinstance(result, DeadLetter):
        return {topics.DEAD_LETTERS: [dead_letter_record(result)]}
    assert isinstance(result, Emitted)
    out: dict[str, list[tuple[bytes, bytes]]] = {}
    if result.touches:
        out[topics.TOUCHES] = [(t.project.encode(), t.to_bytes()) for t in result.touches]
    if result.conversions:
        out[topics.CONVERSIONS] = [(c.project.encode(), c.to_bytes()) for c in result.conversions]
    if result.spend:
        out[topics.SPEND] = [(s.row["project"].encode(), s.to_bytes()) for s in result.spend]
    if result.rates:
        out[topics.RATES] = [(r.row["project"].encode(), r.to_bytes()) for r in result.rates]
    if result.links:
        out[topics.LINKS] = [(r.project.encode(), r.to_bytes()) for r in result.links]
    if result.leases:
        out[topics.LEASES] = [(r.row["project"].encode(), r.to_bytes()) for r in result.leases]
    return out


@dataclass
class Batch:
    """A batch of raw records through `process`: what to publish (topic -> records, in order) and
    each changed visitor's new state with the position of its last record in the batch (Faust
    writes a state to that record's partition). The runners publish first and write the states
    after, so a crash in between re-processes the batch against the old states."""

    published: dict[str, list[tuple[bytes, bytes]]]
    states: dict[bytes, tuple[int, VisitorSessions]]


def process_batch(config: ProcessorConfig, records: list[tuple[bytes, bytes]],
                  stored: Callable[[int, bytes], bytes | None]) -> Batch:
    """Several raw records of any visitors; `stored(i, key)` reads the state of record i's visitor
    from the store. A visitor met again in the batch continues from the batch's own state."""
    batch = Batch({}, {})
    for i, (key, value) in enumerate(records):
        visitor = batch.states[key][1] if key in batch.states else load_visitor(stored(i, key))
        try:
            new, result = process(config, visitor, value)
        except Exception as exc:  # noqa: BLE001 - one record a step cannot handle (a bug it meets) must
            # not stop the stream: a crashed agent restarts the worker, which meets the same record
            # again. The step is pure, so the visitor keeps its state; the record is dead-lettered.
            log.exception("stage 1 could not process a record; dead-lettered")
            new, result = visitor, DeadLetter(RejectReason.processing_error, f"stage 1: {exc!r}"[:500], value)
        if new is not visitor and new is not None:
            batch.states[key] = (i, new)
        for topic, recs in records_of(result).items():
            batch.published.setdefault(topic, []).extend(recs)
    return batch
