"""bench/reports: the channel report over 10 000 000 touches and 1 000 000 conversions on chDB,
and the sink's insert rate.

    uv run python bench/reports.py [--touches 10000000] [--conversions 1000000]

Data is generated inside ClickHouse (numbers() + hashes), so the bench measures the query, not the
loading. The live credits the processors would have written for these rows are written too: by
the query-time SQL itself (reports/_credited.sql, all six models; a repeat lead a version of weight 0
per model), which tests/clickhouse/test_query_time_models.py proves equal to what the persons stage
writes. Then, for every rule-based model, the channel report as the API serves it by default (read
from the live credits, after the coverage check) and credited at query time through persons
(recompute=true); the models report (all six) both ways; the query-time skeleton (SKELETON: the part
no rewrite of the same plan can avoid). Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import orjson

from clickhouse import reports
from clickhouse.migrate import migrate
from clickhouse.sink import batch_token
from clickhouse.warehouse import ChdbWarehouse

CHANNELS = "['Paid Search','Paid Social','Organic Search','Direct','Email','Marketplace','Referral','Messenger']"


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--touches", type=int, default=10_000_000)
    parser.add_argument("--conversions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not (10_000 <= args.touches <= 50_000_000 and 1_000 <= args.conversions <= 10_000_000 and 1 <= args.runs <= 20):
        parser.error("out of range")
    with tempfile.TemporaryDirectory() as tmp:
        wh = ChdbWarehouse(Path(tmp) / "warehouse")
        migrate(wh)
        loaded = load(wh, args.touches, args.conversions, visitors=args.touches // 4)
        credited_s, credit_rows = write_live_credits(wh)
        persons = wh.rows("SELECT (SELECT count() FROM identity_map) AS mapped, (SELECT count() FROM identity_links) AS links")[0]
        timings: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}  # the engine runs in this process: CPU time of all its threads
        live = reports.LiveRules(90, 30)
        totals: dict[str, dict] = {}
        for recompute in (False, True):
            how = "query time" if recompute else "live credits"
            for name, model in [("channels", m) for m in reports.QUERY_TIME_MODELS] + [("models", "all six")]:
                req = reports.ReportRequest(name, "shop", date(2026, 1, 1), date(2026, 12, 31),
                                            model=model if name == "channels" else "last_non_direct", live=live,
                                            recompute=recompute)
                what = f"{name}, {how}, {model}"
                for _ in range(args.runs if name == "channels" else 1):
                    started, cpu_started = time.perf_counter(), time.process_time()
                    result = reports.run(wh, req)
                    timings.setdefault(what, []).append(time.perf_counter() - started)
                    cpu.setdefault(what, []).append(time.process_time() - cpu_started)
                    assert result["attribution"]["computed"] == how, result["attribution"]
                if name == "channels":
                    totals[what] = result["total"]
        same = all(totals[f"channels, live credits, {m}"] == totals[f"channels, query time, {m}"]
                   for m in reports.QUERY_TIME_MODELS if m != "time_decay")
        out = totals["channels, live credits, last_non_direct"]
        coverage = []
        for _ in range(args.runs):
            started = time.perf_counter()
            wh.rows(reports.live_coverage_sql(), {**reports._bounds(req), "model": "first_touch"})
            coverage.append(time.perf_counter() - started)
        skeleton = reports._with_fragments("WITH\n--@include _credited.sql\n") + SKELETON
        req = reports.ReportRequest("channels", "shop", date(2026, 1, 1), date(2026, 12, 31))
        for _ in range(args.runs):
            started, cpu_started = time.perf_counter(), time.process_time()
            wh.rows(skeleton, reports._bounds(req))
            timings.setdefault("query-time skeleton (persons + grouping)", []).append(time.perf_counter() - started)
            cpu.setdefault("query-time skeleton (persons + grouping)", []).append(time.process_time() - cpu_started)
        # the live view's refresh query (every 5 s), over the credits of its 100-day horizon
        refresh = (Path(__file__).parents[1] / "clickhouse" / "migrations" / "0012_live_view_reads_its_horizon.sql")
        body = "SELECT count() AS n FROM (SELECT " + refresh.read_text().split("AS SELECT", 1)[1].strip().rstrip(";") + ")"
        refreshes = []
        for _ in range(args.runs):
            started, cpu_started = time.perf_counter(), time.process_time()
            wh.rows(body)
            refreshes.append((time.perf_counter() - started, time.process_time() - cpu_started))
        horizon = wh.rows("SELECT count() AS n FROM credits WHERE conversion_at >= today() - 100")[0]["n"]
        rate, per_cpu = sink_rate(wh)
        wh.close()
    print("=" * 92)
    print(f"reports on chDB: {args.touches:,} touches, {args.conversions:,} conversions (generated in {loaded:.1f} s)")
    print(f"  persons: {persons['mapped']:,} identity_map rows, {persons['links']:,} identity links; 30% of the "
          "conversions are calls reaching their visitor only through a person")
    print(f"  live credits: {credit_rows:,} rows for six models (written in {credited_s:.1f} s)")
    print("  channels, live credits = what GET /api/reports/channels serves by default once the live stage has "
          "credited the range (goal <= 1 s); query time = recompute=true, or any other lookback / lead rule")
    for what, t in timings.items():
        print(f"  {what:42s}: median {statistics.median(t):.2f} s, best {min(t):.2f} s over {len(t)} run(s), "
              f"CPU {statistics.median(cpu[what]):.2f} s")
    print(f"  of which the live coverage check: median {statistics.median(coverage):.3f} s")
    print(f"  live view refresh (every 5 s) over the {horizon:,} credit rows in its 100-day horizon: median "
          f"{statistics.median(t for t, _ in refreshes):.2f} s, CPU {statistics.median(c for _, c in refreshes):.2f} s")
    print(f"  total row: {out['visits']:,} visits, {out['leads']:,} leads, revenue {out['revenue']}; "
          f"live credits == query time in every exact model: {same}")
    print(f"  sink: {rate:,.0f} rows/s into touches (the sink's 10 000-row batches, positional JSONCompactEachRow, one thread), "
          f"{per_cpu:,.0f} rows per CPU second = {per_cpu / 2:,.0f} rows/s on half a core (goal >= 100 000)")
    print("  markov / shapley: bench/datadriven.py")
    print("=" * 92)


if __name__ == "__main__":
    main()
