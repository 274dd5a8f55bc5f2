"""collector/static/tracker.js: small enough, valid JavaScript, its behaviour (node unit tests with a
fake browser, tracker_helpers.test.js), and its wire messages as the collector reads them."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from collector.ingest import IngestRules, Refusal, envelope_of, messages_of
from collector.privacy import Hasher
from collector.vendors.messaging import ref_code
from tests.conftest import ROOT, missing_part

TRACKER = ROOT / "collector" / "static" / "tracker.js"
HERE = Path(__file__).parent
MAX_GZIPPED = 6144


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        missing_part("node is not installed (apt-get install nodejs)")
    return node


def _run_node(*args: str, timeout: int = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_node(), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_the_tracker_is_small() -> None:
    raw = TRACKER.read_bytes()
    zipped = len(gzip.compress(raw))
    print(f"tracker.js: {len(raw)} bytes, {zipped} bytes gzipped")
    assert raw.strip() and b"placeholder" not in raw[:200]
    assert zipped < MAX_GZIPPED, f"tracker.js is {zipped} bytes gzipped; the budget is {MAX_GZIPPED}"


def test_the_tracker_parses() -> None:
    out = _run_node("--check", str(TRACKER))
    assert out.returncode == 0, out.stderr


def test_the_tracker_defines_no_global_but_moneytrail() -> None:
    script = (
        "const {load, profile} = require('./tests/collector/tracker_helpers.test.js');"
        "const p = load(profile()); console.log(JSON.stringify(Object.keys(p.win).filter(k => !p.globals.includes(k))));"
    )
    out = _run_node("-e", script)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == ["moneytrail"]


def test_node_unit_tests_pass() -> None:
    out = _run_node("--test", str(HERE / "tracker_helpers.test.js"), timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "# fail 0" in out.stdout and "# pass " in out.stdout
    passed = int(out.stdout.split("# pass ")[1].split()[0])
    assert passed >= 10, out.stdout[-2000:]


# A visit played in the fake browser: arrival from an ad, an SPA route, a form with a name, a phone
# and an email, a WhatsApp and a Telegram link, identify and a custom event. Prints what the tracker
# sent (the /collect bodies) and the decorated hrefs.
_VISIT = r"""
const {load, profile, h} = require('./tests/collector/tracker_helpers.test.js');
(async () => {
  const form = h('form', {id: 'order'}, h('input', {name: 'name', value: 'Aigerim'}),
    h('input', {type: 'tel', name: 'phone', value: '8 (701) 123-45-67'}), h('input', {type: 'email', name: 'mail', value: 'Buyer.One@gmail.com'}));
  const wa = h('a', {href: 'https://wa.me/77011234567?text=Хочу диван'}, 'WhatsApp');
  const tg = h('a', {href: 'https://t.me/mebel_kz_bot'}, 'Telegram');
  const p = load(profile(), {url: 'https://mebel.kz/sofas?utm_source=google&utm_medium=cpc&utm_campaign=sofas&gclid=abc',
    referrer: 'https://www.google.com/', body: [form, wa, tg]});
  await p.settle(0);
  p.pushState('/catalog');
  p.fire(p.doc, 'submit', {target: form});
  p.fire(p.doc, 'click', {target: wa});
  p.fire(p.doc, 'click', {target: tg});
  p.api('identify', 'crm-77', {phone: '+77011234567', plan: 'vip'});
  p.api('track', 'Order Completed', {revenue: 250000, currency: 'KZT'});
  await p.settle(1000);
  const bodies = [...p.sent.beacons, ...p.sent.fetches].filter(s => s.url.endsWith('/collect')).map(s => s.body);
  console.log(JSON.stringify({bodies, wa: wa.getAttribute('href'), tg: tg.getAttribute('href')}));
})();
"""


@pytest.fixture(scope="module")
def visit() -> dict:
    out = _run_node("-e", _VISIT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_ref_code_is_the_one_the_messenger_mappers_read(visit: dict) -> None:
    wa_text = parse_qs(urlsplit(visit["wa"]).query)["text"][0]
    code = ref_code(wa_text)
    assert code and wa_text == f"Хочу диван MT-{code}"
    start = parse_qs(urlsplit(visit["tg"]).query)["start"][0]
    assert ref_code(f"/start {start}") == code
    clicks = [m for b in visit["bodies"] for m in b["batch"] if m.get("event") == "Messenger Link Clicked"]
    assert [c["properties"] for c in clicks] == [{"platform": "whatsapp", "ref_code": code},
                                                 {"platform": "telegram", "ref_code": code}]


def test_every_message_is_accepted_by_the_collector(visit: dict) -> None:
    rules = IngestRules(Hasher(b"k" * 32))
    now = datetime.now(timezone.utc)
    envelopes = []
    for body in visit["bodies"]:
        assert body["write_key"] == "wk_test"
        batch = messages_of(body, 500)
        assert not isinstance(batch, Refusal)
        for message in batch:
            env = envelope_of(message, "shop", now, "10.1.2.3", "Mozilla/5.0", rules)
            assert not isinstance(env, Refusal), (env, message)
            envelopes.append(env)
    assert len({e.event_id for e in envelopes}) == len(envelopes)  # messageId kept as the event id
    assert len({e.anonymous_id for e in envelopes}) == 1
    by_name = {e.event or e.type: e for e in envelopes}
    assert [e.type for e in envelopes].count("pageview") == 2

    landing, spa = [e for e in envelopes if e.type == "pageview"]
    assert landing.context.campaign == {"source": "google", "medium": "cpc", "name": "sofas"}
    assert landing.context.page_url.endswith("gclid=abc") and landing.context.referrer == "https://www.google.com/"
    assert spa.context.page_path == "/catalog" and spa.context.campaign == {}
    assert spa.context.referrer == landing.context.page_url

    form = by_name["Form Submitted"]
    assert form.properties == {"form_id": "order"}  # phone and email became hashed identifiers
    assert set(form.ids) == {"phone", "email"} and form.masked["phone"] == "+7701***4567"
    assert "Aigerim" not in json.dumps(visit["bodies"])

    assert by_name["Messenger Link Clicked"].ids["ref"]
    identify = by_name["identify"]
    assert identify.user_id == "crm-77" and "phone" in identify.ids and identify.traits == {"plan": "vip"}
    assert by_name["Order Completed"].user_id == "crm-77"
    assert by_name["Order Completed"].properties == {"revenue": 250000, "currency": "KZT"}
