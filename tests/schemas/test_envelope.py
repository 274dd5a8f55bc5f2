import re
from datetime import datetime, timezone

from schemas.envelope import PAGEVIEW, Envelope, EventContext, new_event_id
from schemas.project import key_hash, new_credentials, project_id_of


def test_event_ids_are_uuid7_and_time_ordered():
    a, b = new_event_id(1_700_000_000_000), new_event_id(1_700_000_000_001)
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", a)
    assert a < b
    assert len({new_event_id() for _ in range(1000)}) == 1000


def test_envelope_roundtrip_keeps_every_field():
    now = datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc)
    env = Envelope(schema=PAGEVIEW, event_id="e1", type="pageview", project="p", anonymous_id="a",
                   timestamp=now, received_at=now, context=EventContext(page_url="https://x.kz/", campaign={"source": "g"}),
                   properties={"price": "1500.50"}, flags=("clock_skew",))
    back = Envelope.from_bytes(env.to_bytes())
    assert back == env
    assert back.key == b"p:a"


def test_credentials_are_distinct_and_hashed():
    c = new_credentials()
    assert c.write_key.startswith("wk_") and c.read_token.startswith("rt_")
    assert len({c.write_key, c.read_token, c.webhook_secret}) == 3
    assert key_hash(c.write_key) != c.write_key and len(key_hash(c.write_key)) == 64


def test_project_id_is_a_slug():
    assert project_id_of("  Almaty Furniture! ") == "almaty-furniture"
