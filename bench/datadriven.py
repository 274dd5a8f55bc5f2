"""bench/datadriven: Markov (orders 1-3) and Shapley over 100 000 journeys, from path arrays.

    uv run python bench/datadriven.py [--journeys 100000] [--channels 10] [--resamples 100]

Prints numbers; asserts nothing. The journeys are generated (path arrays of 1-12 channels, about a
quarter converting, values by channel), then timed: aggregation into path aggregates (what
reports/paths.sql returns) + the exact Markov chain (goal <= 2 s for 100 000 paths), Shapley, and
the bootstrap intervals, as clickhouse/reports.py runs them for the datadriven report.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from decimal import Decimal

from clickhouse.datadriven import datadriven_rows
from stream_processors.datadriven import aggregate, bootstrap, markov, shapley

CHANNELS = ["Paid Search", "Organic Search", "Instagram", "TikTok", "Email", "Direct", "Referral", "Telegram",
            "Yandex Direct", "Kaspi", "2GIS", "WhatsApp", "Offline", "Display", "YouTube"]


def journeys(n: int, channels: int, seed: int = 7) -> list[tuple[list[str], bool, Decimal]]:
    rng = random.Random(seed)
    names = CHANNELS[:channels]
    weights = [1 / (i + 1) for i in range(channels)]  # a few big channels, a long tail
    lift = {c: 0.05 + 0.3 * rng.random() for c in names}
    out = []
    for _ in range(n):
        length = min(12, 1 + int(rng.expovariate(0.6)))
        path = rng.choices(names, weights, k=length)
        if rng.random() < 0.3 and length > 1:  # repeats: people come back through the same channel
            path[1] = path[0]
        p = 1 - 1 / (1 + sum(lift[c] for c in set(path)))
        converted = rng.random() < p * 0.5
        value = Decimal(rng.randrange(5_000, 500_000)).scaleb(0) if converted else Decimal(0)
        out.append((path, converted, value))
    return out


def timed(fn, repeat: int = 3):
    runs, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs), result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--journeys", type=int, default=100_000)
    ap.add_argument("--channels", type=int, default=10)
    ap.add_argument("--resamples", type=int, default=100)
    args = ap.parse_args()
    data = journeys(args.journeys, args.channels)
    t_agg, aggs = timed(lambda: aggregate(data))
    conversions = sum(a.conversions for a in aggs)
    print("=" * 92)
    print(f"data-driven attribution: {args.journeys:,} journeys ({conversions:,} converting), "
          f"{args.channels} channels, {len(aggs):,} distinct paths")
    print(f"  aggregate path arrays -> path aggregates:  {t_agg:.3f} s")
    for order in (1, 2, 3):
        t, m = timed(lambda: markov(aggs, order))
        t_all, _ = timed(lambda: markov(aggregate(data), order))
        states = len({k[0] for k in m.transitions}) - 1
        print(f"  markov order {order} ({states:,} states): {t:.3f} s; with aggregation {t_all:.3f} s"
              + ("  (goal <= 2 s)" if order == 1 else ""))
    t, s = timed(lambda: shapley(aggs))
    print(f"  shapley (closed form, exact rationals): {t:.3f} s")
    t, _ = timed(lambda: bootstrap(aggs, 1, args.resamples, seed=1), repeat=1)
    print(f"  bootstrap, {args.resamples} resamples, markov order 1 + shapley: {t:.3f} s")
    t, (rows, total) = timed(lambda: datadriven_rows(aggs, "KZT", 1, args.resamples), repeat=1)
    print(f"  datadriven report rows (models + intervals + money): {t:.3f} s; revenue {total['markov_revenue']} "
          f"conserved: {sum(Decimal(r['markov_revenue']) for r in rows) == Decimal(total['markov_revenue'])}")
    top = rows[0]
    print(f"  top channel {top['channel']}: markov share {top['markov_share']:.4f} "
          f"[{top['markov_ci_low']:.4f}, {top['markov_ci_high']:.4f}], shapley share {top['shapley_share']:.4f}")
    print("=" * 92)


if __name__ == "__main__":
    main()
