"""bench/reports: the channel report over 10 000 000 touches and 1 000 000 conversions on chDB, the
live aggregates' upkeep at 1 000 000 and 10 000 000 conversions, and the sink's insert rate.

    uv run python bench/reports.py [--touches 10000000] [--conversions 1000000] [--grow-to 10000000]
                                   [--grow-budget 600] [--runs 5] [--upkeep-rounds 3]

Data is generated inside ClickHouse (numbers() + hashes), so the bench measures the query, not the
loading. The live credits the processors would have written for these rows are written too: by
the query-time SQL itself (reports/_credited.sql, all six models; a repeat lead a version of weight 0
per model), which tests/clickhouse/test_query_time_models.py proves equal to what the persons stage
writes; then the live aggregates are built from them (clickhouse.live.rebuild, as a replay does).
Then, for every rule-based model, the channel report as the API serves it by default (read from the
live aggregates, after the coverage check) and credited at query time through persons
(recompute=true), and whether they are equal; the models report (all six) both ways; the query-time
skeleton (SKELETON: the part no rewrite of the same plan can avoid).

The aggregates' upkeep: 10 000 new conversions' credits (nine rows each: six models, the multi-touch
ones over two touches, as the persons stage emits them) written through clickhouse.sink.write_batch
exactly as the sink writes them (its 10 000-row batches; and a trickle of 100 conversions a batch),
wall time and CPU seconds of this process (chDB's threads included), of which the aggregates' part
(the deltas read, computed and inserted); after each size the aggregates are checked against their
definition (live.DRIFT_MONEY: no row differs). Measured with --conversions stored, then again after
growing the store to --grow-to conversions (synthetic credits in the same shape, written by SQL in
1 000 000-conversion chunks, the aggregates rebuilt; it stops at the size reached when --grow-budget
seconds run out, and says so). At each size: the channels report (last_non_direct, as served: the
coverage check, then the aggregates) and the live report over a 30-day and a one-year range.
Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import orjson

from clickhouse import live, reports
from clickhouse.migrate import migrate
from clickhouse.sink import batch_token, row_id, write_batch
from clickhouse.warehouse import ChdbWarehouse
from harness import load_average, log

CHANNEL_NAMES = ("Paid Search", "Paid Social", "Organic Search", "Direct", "Email", "Marketplace", "Referral", "Messenger")
CHANNELS = "[" + ",".join(f"'{c}'" for c in CHANNEL_NAMES) + "]"


def load(wh: ChdbWarehouse, touches: int, conversions: int, visitors: int) -> float:
    """Touches of `visitors` cookies; conversions: 70% on a cookie (subject anon:...), 30% calls
    (subject call:...) that identity_map gives to the person of the visitor who held the number
    (that cookie is the person's anchor: no row of its own, as the processors write it, but an end of
    the lease link); two cookies in ten are merged in pairs into logged-in persons (user:...)."""
    started = time.perf_counter()
    wh.command(f"""
        INSERT INTO touches (project, touch_id, anonymous_id, user_id, started_at, source, medium, campaign, content,
                             term, click_id_type, channel, landing_url, referrer_host, events, is_bot)
        SELECT 'shop', toString(number), toString(cityHash64(number) % {visitors}), '',
               toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + toIntervalSecond(cityHash64(number, 1) % (300 * 86400)),
               'google', 'cpc', concat('c', toString(number % 50)), '', '', '',
               {CHANNELS}[1 + cityHash64(number, 2) % 8], 'https://shop.kz/', '', 1, 0
        FROM numbers({touches})""")
    wh.command(f"""
        INSERT INTO conversions (project, conversion_id, kind, source, at, value, currency, anonymous_id, user_id,
                                 deal_id, stage, stage_kind, event_id, ids, subject)
        SELECT 'shop', toString(number), ['lead','lead','lead','sale','payment'][1 + number % 5], 'bench',
               toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + toIntervalSecond(cityHash64(number, 3) % (300 * 86400)),
               toDecimal64(cityHash64(number, 4) % 500000, 2), 'KZT', toString(cityHash64(number, 5) % {visitors}),
               '', '', '', '', toString(number), map(),
               if(number % 10 < 3, concat('call:bench:', toString(number)), '')
        FROM numbers({conversions})""")
    person = "concat('p_', substring(lower(hex(SHA256({}))), 1, 16))"
    wh.command(f"""
        INSERT INTO identity_map (project, identifier, person_id, version)
        SELECT 'shop', concat('call:bench:', toString(number)),
               {person.format("concat('anon:', toString(cityHash64(number, 5) % " + str(visitors) + "))")}, 1
        FROM numbers({conversions}) WHERE number % 10 < 3
        UNION ALL
        SELECT 'shop', concat('anon:', toString(number)), {person.format("concat('user:', toString(intDiv(number, 2)))")}, 2
        FROM numbers({visitors}) WHERE number % 10 < 2""")
    wh.command(f"""
        INSERT INTO identity_links (project, a, b, evidence, event_id, at)
        SELECT 'shop', concat('anon:', toString(cityHash64(number, 5) % {visitors})), concat('lease:', toString(number)),
               'observed', toString(number), toDateTime64('2026-01-01 00:00:00', 3, 'UTC')
        FROM numbers({conversions}) WHERE number % 10 < 3
        UNION ALL
        SELECT 'shop', concat('anon:', toString(number)), concat('user:', toString(intDiv(number, 2))), 'login',
               toString(number), toDateTime64('2026-01-01 00:00:00', 3, 'UTC')
        FROM numbers({visitors}) WHERE number % 10 < 2""")
    wh.command("OPTIMIZE TABLE touches FINAL")
    wh.command("OPTIMIZE TABLE conversions FINAL")
    wh.command("OPTIMIZE TABLE identity_map FINAL")
    return time.perf_counter() - started


# The skeleton of the channel report, for scale: the same persons (conv and cookie_person of
# reports/_credited.sql), the join of every touch in range to its person and the per-person grouping,
# but only numbers (each conversion's latest touch time in its window): no labels, touch ids, credit
# arithmetic, money or visits. What the whole report cannot go below with this plan.
SKELETON = """
    SELECT count() AS conversions, countIf(latest > 0) AS touched FROM (
        SELECT arrayMax(arrayFilter(ms -> ms <= c.at_ms AND ms >= c.at_ms - 86400000 * {lookback:UInt32}, p.ms)) AS latest
        FROM (SELECT person, toUnixTimestamp64Milli(at) AS at_ms FROM conv) AS c
        LEFT JOIN (
            SELECT k.person AS person, groupArray(toUnixTimestamp64Milli(t.started_at)) AS ms
            FROM touches AS t FINAL
            INNER JOIN cookie_person AS k ON k.anonymous_id = t.anonymous_id
            WHERE t.project = {project:String} AND NOT t.is_bot
              AND t.started_at >= {from:DateTime64(3, 'UTC')} - toIntervalDay({lookback:UInt32})
              AND t.started_at < {to:DateTime64(3, 'UTC')}
            GROUP BY k.person
        ) AS p ON p.person = c.person
    )"""


def write_live_credits(wh: ChdbWarehouse) -> tuple[float, int]:
    """The credits the live persons stage writes for the loaded rows (see the module docstring)."""
    started = time.perf_counter()
    req = reports.ReportRequest("channels", "shop", date(2026, 1, 1), date(2026, 12, 31))
    params = {**reports._bounds(req), "models": reports._models_param(reports.QUERY_TIME_MODELS), "label": "touch"}
    columns = ("project, credit_id, conversion_id, kind, conversion_at, person_id, model, touch_id, channel, source, "
               "medium, campaign, weight, amount, currency, revision, version")
    wh.command(reports._with_fragments(f"""INSERT INTO credits ({columns})
        WITH
--@include _credited.sql
        SELECT 'shop', concat(conversion_id, ':', model, ':', touch_id), conversion_id, kind, at, '', model, touch_id,
               if(touch_id = '', '(unattributed)', (splitByChar('\\x1f', label) AS f)[1]), if(touch_id = '', '', f[2]),
               if(touch_id = '', '', f[3]), if(touch_id = '', '', f[4]), weight, amount, currency, 0, 1
        FROM credited"""), params)
    wh.command(f"""INSERT INTO credits ({columns})
        SELECT 'shop', concat(conversion_id, ':', model), conversion_id, kind, at, '', arrayJoin({reports._models_param(reports.QUERY_TIME_MODELS)}) AS model,
               '', '(repeat lead)', '', '', '', 0, 0, currency, 0, 1
        FROM conversions FINAL
        WHERE project = 'shop' AND kind IN ('lead', 'sale', 'payment', 'refund')
          AND conversion_id NOT IN (SELECT conversion_id FROM credits)""")
    wh.command("OPTIMIZE TABLE credits FINAL")
    return time.perf_counter() - started, wh.rows("SELECT count() AS n FROM credits")[0]["n"]


def sink_rate(wh: ChdbWarehouse, rows: int = 100_000) -> tuple[float, float]:
    """Rows per wall second and per CPU second (all threads of this process: the engine's parsing,
    part writing and background merges too): half a core gives half the latter. The batches are
    the sink's shape (one set of keys), so the warehouse sends them positionally."""
    batch = [{"project": "sink", "touch_id": f"s{i}", "anonymous_id": f"v{i % 5000}", "user_id": "",
              "started_at": "2026-11-20T10:00:00Z", "source": "google", "medium": "cpc", "campaign": "sofas",
              "content": "", "term": "", "click_id_type": "gclid", "channel": "Paid Search",
              "landing_url": "https://shop.kz/?utm_source=google", "referrer_host": "", "events": 1, "is_bot": False}
             for i in range(rows)]
    orjson.dumps(batch[0])
    started, cpu_started = time.perf_counter(), time.process_time()
    for k in range(0, rows, 10_000):
        part = batch[k:k + 10_000]
        wh.insert("touches", part, batch_token("touches", [r["touch_id"] for r in part]))
    return rows / (time.perf_counter() - started), rows / (time.process_time() - cpu_started)


# ------------------------------------------------------------------ the live aggregates' upkeep

# The credit rows of one conversion as the persons stage emits them: (model, which of its two
# touches, weight). Nine rows; the weights of a model sum to 1.
SHAPE = (("first_touch", 0, "1"), ("last_touch", 1, "1"), ("last_non_direct", 1, "1"), ("linear", 0, "0.5"),
         ("linear", 1, "0.5"), ("time_decay", 0, "0.25"), ("time_decay", 1, "0.75"), ("position_based", 0, "0.5"),
         ("position_based", 1, "0.5"))
KINDS = ("lead", "lead", "lead", "sale", "payment")  # as load() and grow() have them
SINK_ROWS = 10_000  # the sink's batch (MONEYTRAIL_SINK_BATCH_ROWS)
NEW = 10_000  # conversions per upkeep measurement
TRICKLE = 100  # conversions per batch of the trickle shape
CHUNK = 1_000_000  # conversions per grow() statement

_SHAPE_SQL = "[" + ",".join(f"('{m}', {i}, '{w}')" for m, i, w in SHAPE) + "]"


def grow(wh: ChdbWarehouse, start: int, count: int, touches: int) -> None:
    """Conversions [start, start + count) and their credits (SHAPE, version 1), by SQL: what the
    sink would have stored for them. Their aggregates are not written (rebuild afterwards)."""
    conv = f"""
        SELECT number, toString(number) AS cid, ['lead','lead','lead','sale','payment'][1 + number % 5] AS kind,
               toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + toIntervalSecond(cityHash64(number, 3) % (300 * 86400)) AS at,
               toDecimal64(cityHash64(number, 4) % 500000, 2) AS value
        FROM numbers({start}, {count})"""
    wh.command(f"""
        INSERT INTO conversions (project, conversion_id, kind, source, at, value, currency, anonymous_id, user_id,
                                 deal_id, stage, stage_kind, event_id, ids, subject)
        SELECT 'shop', cid, kind, 'bench', at, value, 'KZT', toString(cityHash64(number, 5) % {touches}), '', '', '', '',
               cid, map(), ''
        FROM ({conv})""")
    wh.command(f"""
        INSERT INTO credits (project, credit_id, conversion_id, kind, conversion_at, person_id, model, touch_id, channel,
                             source, medium, campaign, weight, amount, currency, revision, version)
        SELECT 'shop', lower(hex(cityHash64(cid, m.1, m.2))), cid, kind, at, '', m.1,
               toString(cityHash64(number, 10 + m.2) % {touches}), {CHANNELS}[1 + cityHash64(number, 20 + m.2) % 8],
               'google', 'cpc', concat('c', toString(cityHash64(number, 30 + m.2) % 50)), toDecimal128(m.3, 18),
               toDecimal128(if(kind = 'lead', 0, toDecimal128(value, 2) * toDecimal128(m.3, 2)), 6), 'KZT', 1, 1
        FROM ({conv}) ARRAY JOIN {_SHAPE_SQL} AS m""")


def new_conversions(rng: random.Random, n: int, touches: int) -> tuple[list[dict], list[dict]]:
    """n conversions the warehouse has not seen (ids spread over the whole key range, as real ones
    are) and their credit rows as the credits topic carries them."""
    convs, credits = [], []
    version = time.time_ns()
    for _ in range(n):
        cid = str(rng.randrange(10**11, 10**12))
        kind = rng.choice(KINDS)
        at = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=rng.randrange(300 * 86400))
        value = Decimal(rng.randrange(500_000)) / 100
        convs.append({"project": "shop", "conversion_id": cid, "kind": kind, "source": "bench",
                      "at": at.isoformat(), "value": str(value), "currency": "KZT", "anonymous_id": "",
                      "user_id": "", "deal_id": "", "stage": "", "stage_kind": "", "event_id": cid, "ids": {},
                      "subject": ""})
        touch = [str(rng.randrange(touches)) for _ in range(2)]
        channel = [rng.choice(CHANNEL_NAMES) for _ in range(2)]
        campaign = [f"c{rng.randrange(50)}" for _ in range(2)]
        for model, i, w in SHAPE:
            weight = Decimal(w)
            credits.append({
                "project": "shop", "conversion_id": cid, "kind": kind,
                "credit_id": hashlib.sha256(f"{cid}\x1f{model}\x1f{touch[i]}".encode()).hexdigest()[:32] + f"{version:x}",
                "conversion_at": at.isoformat(), "person_id": f"p_{cid}", "model": model, "touch_id": touch[i],
                "channel": channel[i], "source": "google", "medium": "cpc", "campaign": campaign[i],
                "weight": format(weight, "f"), "amount": format(Decimal(0) if kind == "lead" else value * weight, "f"),
                "currency": "KZT", "revision": 1, "version": version})
    return convs, credits


class Clock:
    """Wall and CPU seconds (time.process_time: every thread of this process, chDB's included)."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> "Clock":
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c


class Timed:
    """The warehouse, timing the sink's inserts by table (the rest passes through)."""

    def __init__(self, wh: ChdbWarehouse) -> None:
        self.wh = wh
        self.clocks: dict[str, Clock] = {}

    def rows(self, sql: str, params: dict | None = None) -> list[dict]:
        with self.clocks.setdefault("read", Clock()):
            return self.wh.rows(sql, params)

    def command(self, sql: str, params: dict | None = None) -> None:
        self.wh.command(sql, params)

    def insert(self, table: str, rows: list[dict], token: str | None = None) -> None:
        with self.clocks.setdefault(table, Clock()):
            self.wh.insert(table, rows, token)


@dataclass
class Upkeep:
    """One write of NEW conversions' credits through write_batch."""

    shape: str
    batches: int
    rows: int
    total: Clock
    deltas: Clock  # live.deltas: the indexed read of the stored versions and the arithmetic
    read: Clock  # of which the read
    delta_insert: Clock  # the deltas into live_money
    rows_insert: Clock  # the credit rows themselves

    @property
    def aggregates_wall(self) -> float:
        return self.deltas.wall + self.delta_insert.wall

    @property
    def aggregates_cpu(self) -> float:
        return self.deltas.cpu + self.delta_insert.cpu


def upkeep(wh: ChdbWarehouse, rng: random.Random, touches: int, per_batch: int | None) -> Upkeep:
    """NEW new conversions: their conversions rows (not timed: no aggregate reads them), then their
    credits through write_batch in the sink's batches (per_batch None: SINK_ROWS rows each, as a
    backlog or a busy minute fills them) or per_batch conversions a batch (a trickle)."""
    convs, credits = new_conversions(rng, NEW, touches)
    wh.insert("conversions", convs, batch_token("conversions", [c["conversion_id"] for c in convs]))
    size = SINK_ROWS if per_batch is None else per_batch * len(SHAPE)
    batches = [credits[k:k + size] for k in range(0, len(credits), size)]
    timed, deltas = Timed(wh), Clock()
    original = live.deltas

    def timed_deltas(*args: object, **kwargs: object) -> list[dict]:
        with deltas:
            return original(*args, **kwargs)
    live.deltas = timed_deltas  # write_batch calls live.deltas
    try:
        with Clock() as total:
            for batch in batches:
                token = batch_token("credits", [row_id(r) for r in batch])
                if not write_batch(timed, "credits", batch, token):  # type: ignore[arg-type]
                    raise RuntimeError("write_batch gave up")
    finally:
        live.deltas = original
    return Upkeep("sink batches" if per_batch is None else f"{per_batch} conversions a batch", len(batches),
                  len(credits), total, deltas, timed.clocks.get("read", Clock()), timed.clocks.get(live.MONEY, Clock()), timed.clocks.get("credits", Clock()))


def settle(wh: ChdbWarehouse, limit_s: float = 180) -> float:
    """Wait (bounded) until the engine has no merge running, so one size's merges do not bill the
    next measurement; the seconds waited."""
    t = time.perf_counter()
    while time.perf_counter() - t < limit_s:
        if not wh.rows("SELECT count() AS n FROM system.merges")[0]["n"]:
            break
        time.sleep(0.5)
    return time.perf_counter() - t


def drift(wh: ChdbWarehouse) -> int:
    """Rows where live_money differs from what credits_current gives (0: exact)."""
    return len(wh.rows(live.DRIFT_MONEY, {"p": "shop"}))


RANGES = (("30 days", date(2026, 6, 1), date(2026, 6, 30)), ("one year", date(2026, 1, 1), date(2026, 12, 31)))


def served(wh: ChdbWarehouse, runs: int) -> dict[str, dict[str, list[float]]]:
    """The channels report as served by default (coverage check, then the aggregates), its coverage
    check alone, and the live report, over each of RANGES: seconds per run."""
    rules = reports.LiveRules(90, 30)
    out: dict[str, dict[str, list[float]]] = {}
    for label, d0, d1 in RANGES:
        times = out.setdefault(label, {"channels": [], "coverage": [], "live": []})
        for name in ("channels", "live"):
            req = reports.ReportRequest(name, "shop", d0, d1, live=rules)
            for _ in range(runs):
                started = time.perf_counter()
                result = reports.run(wh, req)
                times[name].append(time.perf_counter() - started)
                if result["attribution"].get("read") != "live aggregates":
                    raise RuntimeError(f"{name} over {label} did not read the aggregates: {result['attribution']}")
        req = reports.ReportRequest("channels", "shop", d0, d1)
        for _ in range(runs):
            started = time.perf_counter()
            wh.rows(reports.live_coverage_sql(), {**reports._bounds(req), "model": "first_touch"})
            times["coverage"].append(time.perf_counter() - started)
    return out


@dataclass
class Size:
    conversions: int
    credit_rows: int
    upkeep: list[Upkeep] = field(default_factory=list)
    served: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    drift: int = -1
    settle_s: float = 0.0
    aggregate_rows: tuple[int, int] = (0, 0)  # rows in live_money, live_visits (parts not merged yet included)


def measure(wh: ChdbWarehouse, rng: random.Random, touches: int, rounds: int, runs: int) -> Size:
    n = wh.rows("SELECT (SELECT count() FROM conversions) AS c, (SELECT count() FROM credits) AS r")[0]
    size = Size(int(n["c"]), int(n["r"]))
    log(f"measuring at {size.conversions:,} conversions")
    size.settle_s = settle(wh)
    a = wh.rows("SELECT (SELECT count() FROM live_money) AS m, (SELECT count() FROM live_visits) AS v")[0]
    size.aggregate_rows = (int(a["m"]), int(a["v"]))
    size.served = served(wh, runs)
    for _ in range(rounds):
        size.upkeep.append(upkeep(wh, rng, touches, None))
    size.upkeep.append(upkeep(wh, rng, touches, TRICKLE))
    size.drift = drift(wh)
    return size


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--touches", type=int, default=10_000_000)
    parser.add_argument("--conversions", type=int, default=1_000_000)
    parser.add_argument("--grow-to", type=int, default=10_000_000, help="conversions of the second size")
    parser.add_argument("--grow-budget", type=float, default=600.0, help="seconds for growing; stops at the size reached")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--upkeep-rounds", type=int, default=3, help="writes of 10 000 conversions in sink batches per size")
    args = parser.parse_args()
    if not (10_000 <= args.touches <= 50_000_000 and 1_000 <= args.conversions <= 10_000_000
            and args.conversions <= args.grow_to <= 20_000_000 and 1 <= args.runs <= 20
            and 1 <= args.upkeep_rounds <= 10 and 10 <= args.grow_budget <= 3600):
        parser.error("out of range")
    began = time.perf_counter()
    load_start = load_average()
    rng = random.Random(13)
    with tempfile.TemporaryDirectory() as tmp:
        wh = ChdbWarehouse(Path(tmp) / "warehouse")
        migrate(wh)
        loaded = load(wh, args.touches, args.conversions, visitors=args.touches // 4)
        log(f"loaded in {loaded:.0f} s")
        credited_s, credit_rows = write_live_credits(wh)
        with Clock() as rebuilt:
            live.rebuild(wh, "shop")
        persons = wh.rows("SELECT (SELECT count() FROM identity_map) AS mapped, (SELECT count() FROM identity_links) AS links")[0]
        timings: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}  # the engine runs in this process: CPU time of all its threads
        rules = reports.LiveRules(90, 30)
        totals: dict[str, dict] = {}
        log("live credits and aggregates written; the reports at query time and from the aggregates")
        for recompute in (False, True):
            how = "query time" if recompute else "live aggregates"
            for name, model in [("channels", m) for m in reports.QUERY_TIME_MODELS] + [("models", "all six")]:
                req = reports.ReportRequest(name, "shop", date(2026, 1, 1), date(2026, 12, 31),
                                            model=model if name == "channels" else "last_non_direct", live=rules,
                                            recompute=recompute)
                what = f"{name}, {how}, {model}"
                for _ in range(args.runs if name == "channels" else 1):
                    started, cpu_started = time.perf_counter(), time.process_time()
                    result = reports.run(wh, req)
                    timings.setdefault(what, []).append(time.perf_counter() - started)
                    cpu.setdefault(what, []).append(time.process_time() - cpu_started)
                    got = result["attribution"]
                    assert got["computed"] == ("query time" if recompute else "live credits"), got
                    assert recompute or got.get("read") == "live aggregates", got
                if name == "channels":
                    totals[what] = result["total"]
        same = all(totals[f"channels, live aggregates, {m}"] == totals[f"channels, query time, {m}"]
                   for m in reports.QUERY_TIME_MODELS if m != "time_decay")
        out = totals["channels, live aggregates, last_non_direct"]
        skeleton = reports._with_fragments("WITH\n--@include _credited.sql\n") + SKELETON
        req = reports.ReportRequest("channels", "shop", date(2026, 1, 1), date(2026, 12, 31))
        for _ in range(args.runs):
            started, cpu_started = time.perf_counter(), time.process_time()
            wh.rows(skeleton, reports._bounds(req))
            timings.setdefault("query-time skeleton (persons + grouping)", []).append(time.perf_counter() - started)
            cpu.setdefault("query-time skeleton (persons + grouping)", []).append(time.process_time() - cpu_started)
        rate, per_cpu = sink_rate(wh)
        wh.command("DELETE FROM touches WHERE project = 'sink'")
        load_mid = load_average()
        sizes = [measure(wh, rng, args.touches, args.upkeep_rounds, args.runs)]
        stored, grew, stopped = args.conversions, Clock(), ""  # conversions 0 .. stored-1 (the upkeep's ids are apart)
        while stored < args.grow_to:
            done = (stored - args.conversions) / CHUNK
            if done and grew.wall + grew.wall / done > args.grow_budget:
                stopped = f"stopped: one more chunk would pass the {args.grow_budget:.0f} s budget"
                break
            chunk = min(CHUNK, args.grow_to - stored)
            with grew:
                grow(wh, stored, chunk, args.touches)
            stored += chunk
            log(f"grown to {stored:,} conversions in {grew.wall:.0f} s")
        with Clock() as rebuilt_big:
            live.rebuild(wh, "shop")
        if stored > args.conversions:
            sizes.append(measure(wh, rng, args.touches, args.upkeep_rounds, args.runs))
        load_end = load_average()
        wh.close()
    elapsed = time.perf_counter() - began
    print("=" * 100)
    print(f"reports on chDB: {args.touches:,} touches, {args.conversions:,} conversions (generated in {loaded:.1f} s)")
    print(f"  persons: {persons['mapped']:,} identity_map rows, {persons['links']:,} identity links; 30% of the "
          "conversions are calls reaching their visitor only through a person")
    print(f"  live credits: {credit_rows:,} rows for six models (written in {credited_s:.1f} s); live aggregates "
          f"built from them (live.rebuild) in {rebuilt.wall:.1f} s")
    print("  channels, live aggregates = what GET /api/reports/channels serves by default once the live stage has "
          "credited the range (the coverage check, then live_money / live_visits); query time = recompute=true, "
          "or any other lookback / lead rule")
    for what, t in timings.items():
        print(f"  {what:45s}: median {statistics.median(t):.2f} s, best {min(t):.2f} s over {len(t)} run(s), "
              f"CPU {statistics.median(cpu[what]):.2f} s")
    print(f"  total row: {out['visits']:,} visits, {out['leads']:,} leads, revenue {out['revenue']}; "
          f"live aggregates == query time in every exact model: {same}")
    print(f"  sink: {rate:,.0f} rows/s into touches (the sink's 10 000-row batches, positional JSONCompactEachRow, one thread), "
          f"{per_cpu:,.0f} rows per CPU second = {per_cpu / 2:,.0f} rows/s on half a core (goal >= 100 000)")
    print()
    print(f"live aggregates' upkeep per {NEW:,} new conversions ({len(SHAPE)} credit rows each) written through "
          "sink.write_batch; CPU = this process, chDB's threads included; aggr. = the aggregates' part: the deltas read "
          "(read s: the indexed read of the stored versions), computed and inserted; rows ins. = the credit rows' insert")
    if len(sizes) > 1:
        print(f"  grown from {args.conversions:,} to {sizes[1].conversions:,} conversions by SQL in {grew.wall:.0f} s "
              f"(CPU {grew.cpu:.0f} s); aggregates rebuilt in {rebuilt_big.wall:.1f} s"
              + (f"; {stopped} (asked {args.grow_to:,})" if stopped else ""))
    header = f"  {'stored conversions':>18s} {'credit rows':>12s} {'shape':24s} {'batches':>7s} " \
             f"{'write s':>8s} {'CPU s':>7s} {'aggr. s':>8s} {'aggr. CPU':>9s} {'read s':>7s} {'rows ins. s':>11s}"
    print(header)
    for s in sizes:
        for shape in sorted({u.shape for u in s.upkeep}, key=lambda x: x != "sink batches"):
            us = [u for u in s.upkeep if u.shape == shape]
            print(f"  {s.conversions:>18,} {s.credit_rows:>12,} {shape:24s} {us[0].batches:>7d} "
                  f"{_med([u.total.wall for u in us]):>8.2f} {_med([u.total.cpu for u in us]):>7.2f} "
                  f"{_med([u.aggregates_wall for u in us]):>8.2f} {_med([u.aggregates_cpu for u in us]):>9.2f} "
                  f"{_med([u.read.wall for u in us]):>7.2f} "
                  f"{_med([u.rows_insert.wall for u in us]):>11.2f}"
                  + (f"   (median of {len(us)})" if len(us) > 1 else ""))
        print(f"  {'':>18s} aggregates == credits_current after the writes: {s.drift == 0} ({s.drift} rows differ); "
              f"waited {s.settle_s:.0f} s for merges before measuring; {s.aggregate_rows[0]:,} live_money rows, "
              f"{s.aggregate_rows[1]:,} live_visits rows")
    if len(sizes) > 1:
        for shape in ("sink batches", f"{TRICKLE} conversions a batch"):
            a = [u for u in sizes[0].upkeep if u.shape == shape]
            b = [u for u in sizes[1].upkeep if u.shape == shape]
            print(f"  {shape}: {sizes[1].conversions:,} vs {sizes[0].conversions:,} stored: write "
                  f"{_med([u.total.wall for u in b]) / _med([u.total.wall for u in a]):.2f}x wall, "
                  f"{_med([u.total.cpu for u in b]) / _med([u.total.cpu for u in a]):.2f}x CPU; aggregates' part "
                  f"{_med([u.aggregates_wall for u in b]) / _med([u.aggregates_wall for u in a]):.2f}x wall, "
                  f"{_med([u.aggregates_cpu for u in b]) / _med([u.aggregates_cpu for u in a]):.2f}x CPU (goal <= 1.2x)")
    print()
    print(f"reports from the aggregates (last_non_direct, as served: coverage check, then live_money / live_visits), "
          f"median of {args.runs} (goal <= 0.2 s)")
    print(f"  {'stored conversions':>18s} {'range':10s} {'channels s':>10s} {'of which coverage s':>19s} {'live s':>7s}")
    for s in sizes:
        for label, _d0, _d1 in RANGES:
            t = s.served[label]
            print(f"  {s.conversions:>18,} {label:10s} {_med(t['channels']):>10.3f} {_med(t['coverage']):>19.3f} "
                  f"{_med(t['live']):>7.3f}")
    print(f"  markov / shapley: bench/datadriven.py. Load average: {load_start} at the start, {load_mid} after the "
          f"query-time reports, {load_end} at the end; {elapsed:.0f} s in all")
    print("=" * 100)


if __name__ == "__main__":
    main()
