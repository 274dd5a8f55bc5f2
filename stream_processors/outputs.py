"""What a step result becomes on the bus: the same records in both run modes."""

from __future__ import annotations

import orjson

from schemas import topics

from .steps import DeadLetter, Emitted, StepResult


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
