"""Replay: re-process the kept raw events with the current rules (channel rules, session timeout),
through the same pure steps the live runners use, and replace what they produced.

Outputs with deterministic ids (conversions, spend rows, leases) are rewritten in place; touches
(sessions) can change shape with new rules, so every touch of the replayed projects that the
replay did not rewrite is deleted at the end. Running it again with the same rules changes nothing.
The live visitor state is not touched: sessions open at the moment of the replay continue as they
were under the old rules.

With `persons` (a fresh persons stage on an empty store, embedded mode), the replayed touches,
conversions, leases and links also go through the persons stage: every conversion is credited anew
(a newer version than any live one, so the live credits and the live view follow the new rules)
and the identity graph is rebuilt, its mapping rows written above the existing versions. The caller
then puts the rebuilt store in place of the live one (cli.py), so live crediting goes on from it.

Last, the replayed projects' live aggregates (live_money, live_visits) are summed afresh from
credits_current and touches FINAL (clickhouse/live.py rebuild): touches deleted or rewritten and
credits re-versioned leave nothing stale there. Hours are UTC, so a project's time zone change
(`moneytrail projects timezone`) needs no rebuild.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from clickhouse import live
from clickhouse.sink import TABLE_OF_TOPIC, SinkHealth, convert, insert_with_retry
from clickhouse.warehouse import Warehouse
from stream_processors.outputs import records_of
from stream_processors.persons import PERSONS_INPUTS, Persons, PersonsConfig
from stream_processors.sessions import VisitorSessions
from stream_processors.steps import ProcessorConfig, process

PAGE = 20_000

_READ = (
    "SELECT project, event_id, if(anonymous_id != '', anonymous_id, user_id) AS who, timestamp, payload"
    " FROM raw_events FINAL WHERE {only} (project, who, timestamp, event_id) > ({p:String}, {w:String},"
    " {t:DateTime64(3, 'UTC')}, {e:String}) ORDER BY project, who, timestamp, event_id LIMIT {n:UInt32}"
)


@dataclass
class ReplayResult:
    events: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    projects: set[str] = field(default_factory=set)
    seconds: float = 0.0
    # rows the warehouse refused (dead_letters, with its reason): split out, the replay went on
    health: SinkHealth = field(default_factory=SinkHealth)

    @property
    def dead_lettered(self) -> int:
        return self.health.dead_lettered


def _insert(wh: Warehouse, topic: str, values: list[bytes], token: str, out: ReplayResult) -> None:
    table_rows, dead = convert(topic, values)
    for name, part in ((TABLE_OF_TOPIC[topic], table_rows), ("dead_letters", dead)):
        if part:
            before = out.health.dead_lettered
            insert_with_retry(wh, name, part, f"{token}-{name}".replace(" ", "T"), health=out.health)
            refused = out.health.dead_lettered - before
            out.rows[name] = out.rows.get(name, 0) + len(part) - refused
            if refused:
                out.rows["dead_letters"] = out.rows.get("dead_letters", 0) + refused


def replay(wh: Warehouse, config: ProcessorConfig, project: str | None = None,
           progress: Callable[[int], None] | None = None, persons: Persons | None = None) -> ReplayResult:
    started = time.monotonic()
    started_at = wh.rows("SELECT toString(now64(3)) AS t")[0]["t"]
    out = ReplayResult()
    visitors: dict[str, VisitorSessions | None] = {}
    cursor: dict[str, Any] = {"p": "", "w": "", "t": "1970-01-01 00:00:00.000", "e": ""}
    only = "project = {only:String} AND" if project else ""
    batch_no = 0
    while True:
        params = {**cursor, "n": PAGE, **({"only": project} if project else {})}
        rows = wh.rows(_READ.replace("{only}", only), params)
        if not rows:
            break
        pending: dict[str, list[bytes]] = defaultdict(list)
        for r in rows:
            key = f"{r['project']}:{r['who']}"
            new, result = process(config, visitors.get(key), r["payload"].encode())
            if new is not None:
                visitors[key] = new
            for topic, recs in records_of(result).items():
                pending[topic].extend(v for _, v in recs)
            out.projects.add(r["project"])
        for topic, values in pending.items():
            _insert(wh, topic, values, f"replay-{started_at}-{batch_no}", out)
        if persons is not None:
            persons.begin_batch()
            made: dict[str, list[bytes]] = defaultdict(list)
            for topic in PERSONS_INPUTS:
                for value in pending.get(topic, ()):  # a refusal is a dead letter here too
                    for name, recs in persons.step(topic, value).records().items():
                        made[name].extend(v for _, v in recs)
            for name, recs in persons.end_batch().records().items():
                made[name].extend(v for _, v in recs)
            for topic, values in made.items():
                _insert(wh, topic, values, f"replay-{started_at}-{batch_no}-persons", out)
            persons.overlay.flush()
        batch_no += 1
        out.events += len(rows)
        last = rows[-1]
        cursor = {"p": last["project"], "w": last["who"], "t": last["timestamp"], "e": last["event_id"]}
        if progress:
            progress(out.events)
    for p in sorted(out.projects):  # sessions the new rules no longer make
        wh.command("DELETE FROM touches WHERE project = {p:String} AND processed_at < {t:DateTime64(3, 'UTC')}",
                   {"p": p, "t": started_at})
    _mark_live_credits(wh, out.projects, rebuilt=persons is not None and project is None)
    for p in sorted(out.projects | ({project} if project else set())):  # after every write of the replay
        live.rebuild(wh, p)
    out.seconds = time.monotonic() - started
    return out


def _mark_live_credits(wh: Warehouse, projects: set[str], rebuilt: bool) -> None:
    """Touches now follow the current rules. Without a persons rebuild the live credits keep the
    old ones: reports must credit at query time (migration 0011); a rebuild of every project makes
    them current again, also for projects a one-project replay marked before."""
    if rebuilt:
        projects = projects | {r["project"] for r in wh.rows("SELECT DISTINCT project FROM live_credits_state")}
    why = "" if rebuilt else ("a replay rewrote the touches with the current rules after the live credits were "
                              "written; a replay of every project in embedded mode rebuilds them")
    if projects:
        wh.insert("live_credits_state", [{"project": p, "stale": int(not rebuilt), "why": why} for p in sorted(projects)])


def replay_rebuilding_persons(wh: Warehouse, config: ProcessorConfig, persons_config: PersonsConfig,
                              state_dir: Path, progress: Callable[[int], None] | None = None) -> ReplayResult:
    """A replay of every project (embedded mode, the server stopped) that also rebuilds the persons
    stage beside the live one (state_dir/persons.replay) and then puts it in its place: live
    crediting goes on from the state the new rules made. Identity rows are written above the
    existing versions. A failed replay leaves the live state as it was."""
    from stream_processors.embedded import RocksState

    rebuilt, live = state_dir / "persons.replay", state_dir / "persons"
    shutil.rmtree(rebuilt, ignore_errors=True)
    floor = int(wh.rows("SELECT max(version) AS v FROM identity_map")[0]["v"] or 0) + 1
    store = RocksState(rebuilt)
    try:
        result = replay(wh, config, None, progress,
                        Persons(store, dataclasses.replace(persons_config, first_identity_version=floor)))
    finally:
        store.close()
    old = live.with_name("persons.before-replay")
    shutil.rmtree(old, ignore_errors=True)
    if live.exists():
        live.rename(old)
    rebuilt.rename(live)
    shutil.rmtree(old, ignore_errors=True)
    return result
