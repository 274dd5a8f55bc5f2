"""Stage 1 is a straight pipeline of named steps: one envelope calls each step once, in order, and
each of the pure functions behind them (channel rules, sessions, conversions, links) at most once."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from schemas.envelope import Envelope, EventContext
from schemas.reasons import RejectReason
from stream_processors import steps
from stream_processors.channels import ChannelRules
from stream_processors.steps import DeadLetter, Emitted, ProcessorConfig, process

T0 = datetime(2026, 9, 1, 9, 0, tzinfo=timezone.utc)
CONFIG = ProcessorConfig(ChannelRules.load())
ORDER = ["decode", "classify", "sessionize", "conversions", "links", "outputs"]


def pageview(event_id: str = "e1", user_id: str | None = None) -> bytes:
    return Envelope(schema="pageview/1-0-0", type="pageview", event_id=event_id, project="shop", anonymous_id="v1",
                    user_id=user_id, timestamp=T0, received_at=T0,
                    context=EventContext(page_url="https://mebel.kz/?utm_source=google&utm_medium=cpc&gclid=x",
                                         user_agent="Mozilla/5.0")).to_bytes()


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the steps as they run, and of the pure functions behind them as they are entered."""
    seen: list[str] = []

    def recording(name, fn):  # noqa: ANN001, ANN202
        def run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            seen.append(name)
            return fn(*args, **kwargs)
        return run

    monkeypatch.setattr(steps, "PIPELINE", tuple((name, recording(name, step)) for name, step in steps.PIPELINE))
    for fn in ("classify", "sessionize", "conversions_of", "links_of", "subject_of"):
        monkeypatch.setattr(steps, fn, recording(f"{fn}()", getattr(steps, fn)))
    return seen


def test_the_pipeline_is_its_named_steps_in_order():
    assert [name for name, _step in steps.PIPELINE] == ORDER


def test_a_pageview_calls_each_step_once_in_order(ran: list[str]):
    state, out = process(CONFIG, None, pageview(user_id="u-1"))  # links the cookie to the user
    assert isinstance(out, Emitted) and len(out.touches) == 1 and len(out.links) == 1 and state is not None
    assert [name for name in ran if not name.endswith("()")] == ORDER
    assert ran == ["decode", "subject_of()", "classify", "classify()", "sessionize", "sessionize()", "conversions",
                   "links", "links_of()", "outputs"]


def test_a_logged_in_visitors_next_pageview_in_the_session_is_not_linked_again(ran: list[str]):
    state, _ = process(CONFIG, None, pageview("e1", "u-1"))
    state, _ = process(CONFIG, state, pageview("e2", "u-1"))  # the second re-emits the touch (events 2)
    ran.clear()
    same, out = process(CONFIG, state, pageview("e3", "u-1"))
    assert isinstance(out, Emitted) and out.touches == () and out.links == () and same.events == 3
    assert "links_of()" not in ran and [name for name in ran if not name.endswith("()")] == ORDER


def test_a_static_number_call_and_a_payment_call_each_step_once(ran: list[str]):
    call = Envelope(schema="call/1-0-0", type="call", event_id="c", project="shop", timestamp=T0, received_at=T0,
                    properties={"vendor": "calltouch", "call_id": "1", "tracking_number": "+77270000009"},
                    ids={"phone": "h_caller"}, flags=("static_number",),
                    context=EventContext(campaign={"source": "billboard", "medium": "offline"}))
    _, out = process(CONFIG, None, call.to_bytes())
    assert isinstance(out, Emitted) and len(out.touches) == len(out.conversions) == 1 and len(out.links) == 2
    assert ran == ["decode", "subject_of()", "classify", "classify()", "sessionize", "sessionize()", "conversions",
                   "conversions_of()", "links", "links_of()", "outputs"]
    ran.clear()
    pay = Envelope(schema="payment/1-0-0", type="payment", event_id="p", project="shop", anonymous_id="v1",
                   timestamp=T0, received_at=T0,
                   properties={"provider": "stripe", "payment_id": "pi_1", "kind": "payment", "amount": "10"})
    _, out = process(CONFIG, None, pay.to_bytes())
    assert isinstance(out, Emitted) and [c.kind for c in out.conversions] == ["payment", "sale"]
    assert ran == ["decode", "subject_of()", "classify", "sessionize", "conversions", "conversions_of()", "links",
                   "links_of()", "outputs"]


def test_an_undecodable_payload_stops_at_decode_with_a_dead_letter(ran: list[str]):
    state, out = process(CONFIG, None, b"not json")
    assert state is None and isinstance(out, DeadLetter) and out.reason is RejectReason.undecodable
    assert ran == ["decode"]
