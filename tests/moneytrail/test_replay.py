"""Replay re-processes kept raw events: the same rules three times change no report; new rules
change the channels."""

import json
import subprocess
import sys
import time

import httpx

from tests.conftest import ROOT, Proc, base_env, free_port, query_folder, wait_http

RULES_SOURCE = """
[sources]
google = ["google"]
[source_kinds]
search = ["google"]
[mediums]
cpc = ["cpc"]
[[channels]]
name = "Direct"
source = ["(direct)"]
[[channels]]
name = "Google Ads"
source = ["google"]
[[channels]]
name = "Other"
"""


def _run(env, *args):
    out = subprocess.run([sys.executable, "-m", "moneytrail", *args], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _report(env, computed: str = "live credits"):
    """The channel report's numbers, and how it credited (a replay writes the live credits again:
    their time changes)."""
    out = json.loads(_run(env, "report", "channels", "--from", "2026-11-01", "--to", "2026-11-30", "--format", "json"))
    assert out.pop("attribution")["computed"] == computed
    return out


def test_replay_is_idempotent_and_applies_new_rules(tmp_path):
    port = free_port()
    env = base_env(tmp_path / "data", MONEYTRAIL_PORT=str(port))
    creds = json.loads(_run(env, "projects", "create", "Shop", "--json"))
    server = Proc(["serve"], env, tmp_path / "serve.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", server)
        batch = []
        for i in range(40):
            batch.append({"type": "page", "messageId": f"pv{i}", "anonymousId": f"v{i}",
                          "timestamp": f"2026-11-{10 + i % 5:02d}T10:00:00Z",
                          "context": {"page": {"url": "https://shop.kz/?utm_source=google&utm_medium=cpc"}}})
            if i % 4 == 0:
                batch.append({"type": "track", "event": "Form Submitted", "messageId": f"lead{i}", "anonymousId": f"v{i}",
                              "timestamp": f"2026-11-{10 + i % 5:02d}T10:05:00Z"})
        r = httpx.post(f"http://127.0.0.1:{port}/v1/batch", json={"batch": batch}, auth=(creds["write_key"], ""))
        assert r.status_code == 200
        time.sleep(1.5)
    finally:
        assert server.stop() == 0
    before = _report(env)
    assert {row["channel"]: row["leads"] for row in before["rows"]} == {"Paid Search": 10}
    for _ in range(3):
        assert "replayed 50 events" in _run(env, "replay")
        assert _report(env) == before
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES_SOURCE)
    _run({**env, "MONEYTRAIL_CHANNEL_RULES": str(rules)}, "replay", "--project", "shop")
    # that replay named one project: the live credits keep the old rules, so reports credit at query time
    after = _report(env, computed="query time")
    assert {row["channel"]: (row["visits"], row["leads"]) for row in after["rows"]} == {"Google Ads": (40, 10)}
    assert _live_channels(env) == {"Paid Search": 10 * 6}
    # the live aggregates rebuilt from what is stored: visits on the new rules, credits still the old
    assert _live_aggregates(env) == ({"Google Ads": 40}, {"Paid Search": 10})
    # ...until a replay of everything rebuilds the persons stage and puts it in place of the live one
    _run({**env, "MONEYTRAIL_CHANNEL_RULES": str(rules)}, "replay")
    assert _live_channels(env) == {"Google Ads": 10 * 6}  # ten leads, six models, one credit each
    assert _live_aggregates(env) == ({"Google Ads": 40}, {"Google Ads": 10})  # nothing stale left
    state = tmp_path / "data" / "state"
    assert (state / "persons").is_dir() and not (state / "persons.replay").exists()
    assert _report(env) == after


def _live_channels(env) -> dict[str, int]:
    rows = query_folder(env, "SELECT channel, count() AS n FROM credits_current WHERE project = 'shop' GROUP BY channel", {})
    return {r["channel"]: r["n"] for r in rows}


def _live_aggregates(env) -> tuple[dict[str, int], dict[str, int]]:
    """live_visits per channel, and live_money's first_touch leads per channel (zero sums left out)."""
    visits = query_folder(env, "SELECT channel, sum(visits) AS n FROM live_visits WHERE project = 'shop'"
                               " GROUP BY channel HAVING n != 0", {})
    leads = query_folder(env, "SELECT channel, toInt64(sum(leads)) AS n FROM live_money WHERE project = 'shop'"
                              " AND model = 'first_touch' GROUP BY channel HAVING sum(leads) != 0", {})
    return {r["channel"]: r["n"] for r in visits}, {r["channel"]: r["n"] for r in leads}
