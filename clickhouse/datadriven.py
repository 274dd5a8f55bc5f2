"""The paths and datadriven reports: the rows of reports/paths.sql become path aggregates, the
models of stream_processors/datadriven.py (Markov, Shapley, bootstrap intervals, the money split)
run on them, and their results become the reports' rows and total. The mathematics and the money
rules are there (pure, tested in tests/stream_processors/test_datadriven.py); this module is the
reports' shape: columns, rounding for display, the "(unattributed)" row, the top paths and assists.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Iterable, Mapping, Sequence

from stream_processors.attribution import UNATTRIBUTED, decimal_of, minor_units_of
from stream_processors.datadriven import (DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, PathAggregate, allocate, bootstrap,
                                          markov, modelled, round_money, shapley, share_weights)

SEPARATOR = " > "


def from_rows(rows: Iterable[Mapping]) -> list[PathAggregate]:
    """Path aggregates from the rows of clickhouse/reports/paths.sql."""
    return [PathAggregate(tuple(r["path"]), int(r["conversions"]), Decimal(str(r["value"])), int(r["nulls"]),
                          int(r.get("touches") or 0), float(r.get("days") or 0.0), int(r.get("unconverted") or 0))
            for r in rows]


# ---------------------------------------------------------------------------------------------
# Reports


def datadriven_rows(aggs: Sequence[PathAggregate], currency: str, order: int = 1, resamples: int = DEFAULT_RESAMPLES,
                    seed: int = 0, confidence: float = DEFAULT_CONFIDENCE) -> tuple[list[dict], dict]:
    """The datadriven report: per channel Markov and Shapley conversions, shares, revenue and the
    shares' bootstrap intervals; conversions with no touch in an "(unattributed)" row; the total."""
    total_value = round_money(sum((a.value for a in aggs), Decimal(0)), currency)
    lost = [a for a in aggs if not a.path]
    lost_value = round_money(sum((a.value for a in lost), Decimal(0)), currency)
    lost_conversions = sum(a.conversions for a in lost)
    modelled_value = total_value - lost_value
    mk = markov(aggs, order)
    sh = shapley(aggs)
    ci = bootstrap(aggs, order, resamples, seed, confidence)
    mk_money = allocate(modelled_value, share_weights(mk.value_shares), currency)
    sh_money = allocate(modelled_value, sh.value_weights, currency)
    places = minor_units_of(currency)
    zero = decimal_of(0, places)
    rows = []
    for c in sorted(set(mk.channels) | set(sh.channels)):
        m_ci, s_ci = ci.markov.get(c, (None, None)), ci.shapley.get(c, (None, None))
        rows.append({
            "channel": c,
            "markov_conversions": round(mk.conversions.get(c, 0.0), 4),
            "markov_share": round(mk.shares.get(c, 0.0), 6),
            "markov_ci_low": _round(m_ci[0]), "markov_ci_high": _round(m_ci[1]),
            "markov_revenue": str(mk_money.get(c, zero)),
            "removal_effect": round(mk.removal_effects.get(c, 0.0), 6),
            "shapley_conversions": round(float(sh.conversions.get(c, 0)), 4),
            "shapley_share": round(sh.shares.get(c, 0.0), 6),
            "shapley_ci_low": _round(s_ci[0]), "shapley_ci_high": _round(s_ci[1]),
            "shapley_revenue": str(sh_money.get(c, zero)),
        })
    rows.sort(key=lambda r: (-Decimal(r["markov_revenue"]), -r["markov_conversions"], r["channel"]))
    # No channel to credit (no path with a conversion): the modelled money stays unattributed too.
    unplaced_mk = modelled_value - sum(mk_money.values(), Decimal(0))
    unplaced_sh = modelled_value - sum(sh_money.values(), Decimal(0))
    if lost_conversions or lost_value or unplaced_mk or unplaced_sh:
        rows.append({"channel": UNATTRIBUTED, "markov_conversions": lost_conversions, "markov_share": None,
                     "markov_ci_low": None, "markov_ci_high": None, "markov_revenue": str(lost_value + unplaced_mk),
                     "removal_effect": None, "shapley_conversions": lost_conversions, "shapley_share": None,
                     "shapley_ci_low": None, "shapley_ci_high": None, "shapley_revenue": str(lost_value + unplaced_sh)})
    conversions = sum(a.conversions for a in aggs)
    whole = 1.0 if conversions > lost_conversions else None  # the shares of the modelled conversions
    total = {"markov_conversions": conversions, "markov_share": whole, "markov_revenue": str(total_value),
             "shapley_conversions": conversions, "shapley_share": whole, "shapley_revenue": str(total_value),
             "journeys": sum(a.conversions + a.nulls for a in aggs if a.path), "paths": len(modelled(aggs)),
             "conversion_probability": round(mk.conversion_probability, 6), "order": order, "resamples": ci.resamples,
             "confidence": confidence}
    return rows, total


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def paths_rows(aggs: Sequence[PathAggregate], currency: str, top: int = 20) -> tuple[list[dict], dict]:
    """The paths report: the `top` converting paths (conversions, revenue, average touches and days
    to convert, share of conversions), then per channel its last-touch and assisted conversions (an
    assist: the channel is on the path but is not its last touch) with their value."""
    converting = [a for a in aggs if a.conversions and a.path]
    all_conversions = sum(a.conversions for a in aggs)
    total_value = sum((a.value for a in aggs), Decimal(0))
    converting.sort(key=lambda a: (-a.conversions, -a.value, a.path))
    rows: list[dict] = []
    for a in converting[:top]:
        rows.append({
            "section": "path", "path": SEPARATOR.join(a.path), "channel": None, "channels": len(set(a.path)),
            "conversions": a.conversions, "revenue": str(round_money(a.value, currency)),
            "share": round(a.conversions / all_conversions, 6),
            "average_touches": round(a.touches / a.conversions, 2), "average_days": round(a.days / a.conversions, 2),
            "last_touch_conversions": None, "last_touch_revenue": None, "assisted_conversions": None,
            "assisted_revenue": None,
            "assist_ratio": None,
        })
    last: Counter = Counter()
    assisted: Counter = Counter()
    last_value: dict[str, Decimal] = {}
    assisted_value: dict[str, Decimal] = {}
    for a in converting:
        final = a.path[-1]
        last[final] += a.conversions
        last_value[final] = last_value.get(final, Decimal(0)) + a.value
        for c in set(a.path[:-1]) - {final}:
            assisted[c] += a.conversions
            assisted_value[c] = assisted_value.get(c, Decimal(0)) + a.value
    for c in sorted(set(last) | set(assisted), key=lambda c: (-assisted[c], -last[c], c)):
        rows.append({
            "section": "channel", "path": None, "channel": c, "channels": None, "conversions": None,
            "revenue": None, "share": None, "average_touches": None, "average_days": None,
            "last_touch_conversions": last[c],
            "last_touch_revenue": str(round_money(last_value.get(c, Decimal(0)), currency)),
            "assisted_conversions": assisted[c],
            "assisted_revenue": str(round_money(assisted_value.get(c, Decimal(0)), currency)),
            # GA's assisted / last click ratio: above 1, the channel mostly prepares conversions
            "assist_ratio": round(assisted[c] / last[c], 4) if last[c] else None,
        })
    with_path = sum(a.conversions for a in converting)
    total = {
        "conversions": all_conversions, "revenue": str(round_money(total_value, currency)),
        "paths": len(converting),
        "multi_channel_conversions": sum(a.conversions for a in converting if len(set(a.path)) > 1),
        "unattributed_conversions": all_conversions - with_path,
        "average_touches": round(sum(a.touches for a in converting) / with_path, 2) if with_path else None,
        "average_days": round(sum(a.days for a in converting) / with_path, 2) if with_path else None,
        "non_converting_journeys": sum(a.nulls for a in aggs if a.path),
    }
    return rows, total
