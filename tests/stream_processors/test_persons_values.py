"""The persons stage never dies on a value: an amount it cannot credit is a typed refusal (a dead
letter with its reason), and the stage goes on with the next record."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from schemas import topics
from schemas.reasons import RejectReason
from stream_processors.persons import MemoryStore, Persons, PersonsConfig, PersonsOut, Refused

from .test_persons import T0, conversion, touch


@pytest.mark.parametrize("value", ["1e309", "NaN", "Infinity", "-Infinity", "1" + "0" * 40, "lots", "1e-400"])
def test_a_value_that_cannot_be_credited_is_a_dead_letter_and_the_next_conversion_is_credited(value):
    persons = Persons(MemoryStore(), PersonsConfig())
    assert isinstance(persons.step(*_bytes(touch("t1", "a1", T0, "Paid Search", "google"))), PersonsOut)
    bad = persons.step(*_bytes(conversion("sale:order:bad", "sale", T0 + timedelta(hours=1), value, "anon:a1")))
    assert isinstance(bad, Refused) and bad.reason is RejectReason.invalid_amount
    assert "sale:order:bad" in bad.detail
    [(_key, dead)] = bad.records()[topics.DEAD_LETTERS]
    assert orjson.loads(dead)["reason"] == "invalid_amount"
    good = persons.step(*_bytes(conversion("sale:order:ok", "sale", T0 + timedelta(hours=2), "1500.50", "anon:a1")))
    assert isinstance(good, PersonsOut)
    credited = [c for c in good.credits if c["conversion_id"] == "sale:order:ok"]
    assert credited and {c["amount"] for c in credited if c["model"] == "last_touch"} == {"1500.50"}


def test_the_largest_value_the_column_holds_is_credited_exactly():
    persons = Persons(MemoryStore(), PersonsConfig())
    persons.step(*_bytes(touch("t1", "a1", T0, "Paid Search", "google")))
    big = "9" * 32 + ".50"  # Decimal(38, 6) holds 32 digits before the point; decimal's default context 28
    out = persons.step(*_bytes(conversion("sale:order:big", "sale", T0 + timedelta(hours=1), big, "anon:a1")))
    assert isinstance(out, PersonsOut)
    assert {c["amount"] for c in out.credits if c["model"] == "first_touch"} == {big}


def _bytes(record: tuple[str, dict]) -> tuple[str, bytes]:
    return record[0], orjson.dumps(record[1])
