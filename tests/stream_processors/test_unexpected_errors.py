"""A record that meets a bug in a step is dead-lettered with reason processing_error and the stream
goes on: an exception escaping an agent makes the worker exit for a restart (faust_app), which would
meet the same record again and again. Both stages; the fault is injected into the pure step."""

from __future__ import annotations

from datetime import timedelta

import orjson

from schemas import topics
from schemas.reasons import RejectReason
from stream_processors import outputs, persons as persons_module
from stream_processors.channels import ChannelRules
from stream_processors.persons import MemoryStore, Persons, PersonsConfig, PersonsOut, Refused
from stream_processors.steps import ProcessorConfig

from .test_embedded import pageview
from .test_persons import T0, conversion, touch


def test_stage_one_dead_letters_the_record_a_step_fails_on_and_processes_the_rest(monkeypatch):
    real = outputs.process

    def buggy(config, visitor, payload):  # noqa: ANN001
        if b"boom" in payload:
            raise KeyError("a bug the record meets")
        return real(config, visitor, payload)

    monkeypatch.setattr(outputs, "process", buggy)
    records = [pageview("e1", "a1", "https://shop.kz/?utm_source=google&utm_medium=cpc"),
               pageview("e2", "boom", "https://shop.kz/"),
               pageview("e3", "a3", "https://shop.kz/?utm_source=ig&utm_medium=paid_social")]
    batch = outputs.process_batch(ProcessorConfig(ChannelRules.load()), records, lambda i, key: None)
    [(_key, dead)] = batch.published[topics.DEAD_LETTERS]
    dead = orjson.loads(dead)
    assert dead["reason"] == RejectReason.processing_error.value and "a bug the record meets" in dead["detail"]
    assert orjson.loads(dead["payload"])["event_id"] == "e2"
    assert sorted(orjson.loads(v)["anonymous_id"] for _k, v in batch.published[topics.TOUCHES]) == ["a1", "a3"]
    assert set(batch.states) == {b"shop:a1", b"shop:a3"}  # the failing visitor's state is not touched


def test_the_persons_stage_dead_letters_a_record_it_fails_on_and_credits_the_next(monkeypatch):
    stage = Persons(MemoryStore(), PersonsConfig())
    assert isinstance(stage.step(topics.TOUCHES, orjson.dumps(touch("t1", "a1", T0, "Paid Search", "google")[1])),
                      PersonsOut)
    real = persons_module.credit_all

    def buggy(conv, *args, **kwargs):  # noqa: ANN001
        if conv.conversion_id == "sale:bad":
            raise LookupError("a bug the record meets")
        return real(conv, *args, **kwargs)

    monkeypatch.setattr(persons_module, "credit_all", buggy)
    topic, bad = conversion("sale:bad", "sale", T0 + timedelta(hours=1), "100.00", "anon:a1")
    out = stage.step(topic, orjson.dumps(bad))
    assert isinstance(out, Refused) and out.reason is RejectReason.processing_error
    assert "a bug the record meets" in out.detail
    topic, good = conversion("sale:ok", "sale", T0 + timedelta(hours=2), "250.00", "anon:a1")
    out = stage.step(topic, orjson.dumps(good))
    assert isinstance(out, PersonsOut)
    assert {c["amount"] for c in out.credits if c["conversion_id"] == "sale:ok" and c["model"] == "last_touch"} \
        == {"250.00"}
