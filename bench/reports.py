"""bench/reports: the channel report over 10 000 000 touches and 1 000 000 conversions on chDB,
and the sink's insert rate.

    uv run python bench/reports.py [--touches 10000000] [--conversions 1000000]

Data is generated inside ClickHouse (numbers() + hashes), so the bench measures the query, not the
loading. Prints numbers; asserts nothing.
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
                                 deal_id, stage, stage_kind, event_id, ids)
        SELECT 'shop', toString(number), ['lead','lead','lead','sale','payment'][1 + number % 5], 'bench',
               toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + toIntervalSecond(cityHash64(number, 3) % (300 * 86400)),
               toDecimal64(cityHash64(number, 4) % 500000, 2), 'KZT', toString(cityHash64(number, 5) % {visitors}),
               '', '', '', '', toString(number), map()
        FROM numbers({conversions})""")
    wh.command("OPTIMIZE TABLE touches FINAL")
    wh.command("OPTIMIZE TABLE conversions FINAL")
    return time.perf_counter() - started


def sink_rate(wh: ChdbWarehouse, rows: int = 100_000) -> float:
    batch = [{"project": "sink", "touch_id": f"s{i}", "anonymous_id": f"v{i % 5000}", "user_id": "",
              "started_at": "2026-11-20T10:00:00Z", "source": "google", "medium": "cpc", "campaign": "sofas",
              "content": "", "term": "", "click_id_type": "gclid", "channel": "Paid Search",
              "landing_url": "https://shop.kz/?utm_source=google", "referrer_host": "", "events": 1, "is_bot": False}
             for i in range(rows)]
    orjson.dumps(batch[0])
    started = time.perf_counter()
    for k in range(0, rows, 10_000):
        part = batch[k:k + 10_000]
        wh.insert("touches", part, batch_token("touches", [r["touch_id"] for r in part]))
    return rows / (time.perf_counter() - started)


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
        timings: dict[str, list[float]] = {}
        for model in reports.QUERY_TIME_MODELS:
            req = reports.ReportRequest("channels", "shop", date(2026, 1, 1), date(2026, 12, 31), model=model)
            for _ in range(args.runs):
                started = time.perf_counter()
                out = reports.run(wh, req)
                timings.setdefault(model, []).append(time.perf_counter() - started)
        rate = sink_rate(wh)
        wh.close()
    print("=" * 92)
    print(f"reports on chDB: {args.touches:,} touches, {args.conversions:,} conversions (generated in {loaded:.1f} s)")
    for model, t in timings.items():
        print(f"  channels report, {model:16s}: median {statistics.median(t):.2f} s, best {min(t):.2f} s "
              f"over {len(t)} runs (goal <= 1 s)")
    print(f"  total row: {out['total']['visits']:,} visits, {out['total']['leads']:,} leads, revenue {out['total']['revenue']}")
    print(f"  sink: {rate:,.0f} rows/s into touches (JSONEachRow, 10 000-row batches, one thread; goal >= 100 000)")
    print("  markov / shapley: not implemented yet")
    print("=" * 92)


if __name__ == "__main__":
    main()
