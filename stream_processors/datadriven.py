"""Data-driven attribution over path aggregates: the Markov chain model (removal effect) and the
Shapley value, with bootstrap confidence intervals, and the split of their revenue in exact money.
Pure: the standard library and numpy, no ClickHouse here; clickhouse/datadriven.py feeds it the
rows of clickhouse/reports/paths.sql and turns its results into the paths and datadriven reports.

A path aggregate is (path, conversions, value, nulls): the ordered channels of the non-bot touches
in the lookback window before a conversion, how many conversions had exactly that path and their
value, and how many persons who did not convert had that path. Conversions with an empty path (no
touch in the window) are not modelled: they go to the "(unattributed)" row, as in every model.

Markov (Anderl et al. 2016; the `ChannelAttribution` package's conventions):
- States of order k are the last k channels; a path starts in the state of its first k channels
  (all of them when it is shorter), then slides one channel at a time; its last state moves to
  "conversion" (weight: its conversions) or "null" (weight: its nulls). Transition probabilities
  are the observed counts, normalised per state.
- Computed exactly from the absorbing chain: with Q the transient part and r the one-step
  conversion probabilities, P(conversion) = s . (I - Q)^-1 r (one linear solve, no simulation).
  Removing a channel sends every state that contains it to "null"; its removal effect is
  1 - P(conversion without it) / P(conversion) (= the share of converting journeys that pass
  through it, which is what ChannelAttribution estimates by simulation).
- Conversions credited to a channel = total conversions * its removal effect / sum of removal
  effects. Revenue follows ChannelAttribution too: a conversion from state s is worth the average
  value of the conversions whose path ended in s, the value removal effects come from the same
  solve with that value vector, and total revenue is split by them.
- A self-transition (A > A) changes no absorption probability, so for order 1 the results are the
  same whether repeats are collapsed or not; for higher orders a repeat is a different state
  (A A is not A B), as in ChannelAttribution, which keeps the paths as given.

Shapley (Zhao, Mahboobi, Bagheri 2018, "Shapley value methods for attribution modeling in online
advertising"): the worth of a coalition S of channels is the conversions (or value) of the
journeys that touched only channels in S. For that worth the Shapley value has a closed form, the
"simplified Shapley": each conversion is split equally among the distinct channels of its path.
It is exact (shapley_exact over all subsets gives the same numbers; a test checks), and linear
in the number of paths, so it serves any number of channels.

Money: revenue per channel is allocated in the currency's minor units by the largest-remainder
method (``allocate``, over attribution.py's money primitives, as the rule-based models split theirs),
so the channels' revenue plus the unattributed row sum to exactly the total. Shares are fractions
of the conversions that have a path.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from itertools import combinations
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from .attribution import decimal_of, largest_remainder, minor_units_of

DEFAULT_RESAMPLES = 100
DEFAULT_CONFIDENCE = 0.95
# Float shares become integer weights at this resolution before money is split exactly.
_SHARE_UNITS = 10**15
# The chain is solved densely: n states cost n^2 memory and n^3 time per removed channel.
MAX_STATES = 5000


@dataclass(frozen=True, slots=True)
class PathAggregate:
    path: tuple[str, ...]
    conversions: int = 0
    value: Decimal = Decimal(0)  # of the conversions, in the report currency
    nulls: int = 0  # persons with this path and no conversion
    touches: int = 0  # touches of the converting journeys, before any collapse of repeats
    days: float = 0.0  # days from first touch to conversion, summed over the conversions
    unconverted: int = 0  # conversions whose value had no rate to the report currency (counted as 0)


def collapse_repeats(path: Sequence[str]) -> tuple[str, ...]:
    """A > A > B > A becomes A > B > A."""
    return tuple(c for i, c in enumerate(path) if i == 0 or c != path[i - 1])


def aggregate(journeys: Iterable[tuple[Sequence[str], bool, Decimal | int]],
              collapse: bool = False) -> list[PathAggregate]:
    """Path aggregates from single journeys (path, converted, value), as paths.sql builds them."""
    conv: Counter = Counter()
    nulls: Counter = Counter()
    value: dict[tuple[str, ...], Decimal] = {}
    touches: Counter = Counter()
    for path, converted, val in journeys:
        key = collapse_repeats(path) if collapse else tuple(path)
        if converted:
            conv[key] += 1
            value[key] = value.get(key, Decimal(0)) + Decimal(val)
            touches[key] += len(path)
        else:
            nulls[key] += 1
    return [PathAggregate(k, conv[k], value.get(k, Decimal(0)), nulls[k], touches[k]) for k in conv | nulls]


def modelled(aggs: Iterable[PathAggregate]) -> list[PathAggregate]:
    """The aggregates the models see: a path, and a conversion or a non-converting person on it."""
    return [a for a in aggs if a.path and (a.conversions or a.nulls)]


def _channels(aggs: Sequence[PathAggregate]) -> tuple[str, ...]:
    return tuple(sorted({c for a in aggs for c in a.path}))


# ---------------------------------------------------------------------------------------------
# Markov chain


def states_of(path: Sequence[str], order: int) -> list[tuple[str, ...]]:
    """The chain states a path visits: its first `order` channels, then a sliding window."""
    if order < 1:
        raise ValueError(f"Markov order must be 1 or more, got {order}")
    first = tuple(path[:order])
    return [first] + [tuple(path[i - order + 1:i + 1]) for i in range(order, len(path))]


@dataclass
class _Chain:
    """The paths compiled to state indices once, so a resample only re-weights them."""

    channels: tuple[str, ...]
    states: list[tuple[str, ...]]
    first: np.ndarray  # per path: its first state
    last: np.ndarray  # per path: its last state
    step_path: np.ndarray  # per transition between states: its path
    step_from: np.ndarray
    step_to: np.ndarray
    keep: list[np.ndarray]  # per channel: the states that do not contain it
    conversions: np.ndarray
    nulls: np.ndarray
    values: np.ndarray  # float, for the value removal effects only; money is split in Decimal


def _compile(aggs: Sequence[PathAggregate], order: int) -> _Chain:
    index: dict[tuple[str, ...], int] = {}
    first, last, step_path, step_from, step_to = [], [], [], [], []
    for i, a in enumerate(aggs):
        seq = [index.setdefault(s, len(index)) for s in states_of(a.path, order)]
        first.append(seq[0])
        last.append(seq[-1])
        for x, y in zip(seq, seq[1:]):
            step_path.append(i)
            step_from.append(x)
            step_to.append(y)
    states = list(index)
    if len(states) > MAX_STATES:
        raise ValueError(f"a Markov chain of order {order} has {len(states)} states on these paths (at most "
                         f"{MAX_STATES}); use a lower order")
    channels = _channels(aggs)
    keep = [np.array([j for j, s in enumerate(states) if c not in s], dtype=np.intp) for c in channels]
    ints = lambda xs: np.asarray(xs, dtype=np.intp)  # noqa: E731
    return _Chain(channels, states, ints(first), ints(last), ints(step_path), ints(step_from), ints(step_to), keep,
                  np.array([a.conversions for a in aggs], dtype=float), np.array([a.nulls for a in aggs], dtype=float),
                  np.array([float(a.value) for a in aggs], dtype=float))


def _absorption(chain: _Chain, conversions: np.ndarray, nulls: np.ndarray, values: np.ndarray
                ) -> tuple[float, float, np.ndarray, np.ndarray]:
    """P(conversion) and expected value from the start, then per channel the same with it removed."""
    n = len(chain.states)
    weight = conversions + nulls
    flows = np.bincount(chain.step_from * n + chain.step_to, weights=weight[chain.step_path], minlength=n * n)
    counts = flows.reshape(n, n)
    to_conv = np.bincount(chain.last, weights=conversions, minlength=n)
    to_value = np.bincount(chain.last, weights=values, minlength=n)
    out = counts.sum(axis=1) + np.bincount(chain.last, weights=weight, minlength=n)
    safe = np.where(out > 0, out, 1.0)  # a state no resampled journey passes through: no way out, never reached
    q = counts / safe[:, None]
    rhs = np.column_stack((to_conv / safe, to_value / safe))
    start = np.bincount(chain.first, weights=weight, minlength=n) / weight.sum()
    a = np.eye(n) - q
    base = start @ np.linalg.solve(a, rhs)
    removed = np.empty((len(chain.channels), 2))
    for c, k in enumerate(chain.keep):
        removed[c] = start[k] @ np.linalg.solve(a[np.ix_(k, k)], rhs[k]) if len(k) else 0.0
    return float(base[0]), float(base[1]), removed[:, 0], removed[:, 1]


def _effects(p: float, removed: np.ndarray) -> np.ndarray:
    if p <= 0:
        return np.zeros_like(removed)
    return np.clip(1.0 - removed / p, 0.0, 1.0)


def _normalised(effects: np.ndarray) -> np.ndarray:
    total = effects.sum()
    return effects / total if total > 0 else np.zeros_like(effects)


@dataclass(frozen=True)
class MarkovResult:
    order: int
    channels: tuple[str, ...]
    conversion_probability: float  # of a journey, from the chain
    removal_effects: dict[str, float]
    value_removal_effects: dict[str, float]
    shares: dict[str, float]  # removal effects normalised to sum to 1
    value_shares: dict[str, float]
    conversions: dict[str, float]  # total conversions x share (ChannelAttribution's total_conversions)
    transitions: dict[tuple[str, str], float] = field(repr=False)  # "(start)", "(conversion)", "(null)"


def markov(aggs: Iterable[PathAggregate], order: int = 1) -> MarkovResult:
    """Markov chain attribution of order `order`, exact (see the module docstring)."""
    paths = modelled(aggs)
    if not paths:
        return MarkovResult(order, (), 0.0, {}, {}, {}, {}, {}, {})
    chain = _compile(paths, order)
    p, ev, removed, removed_value = _absorption(chain, chain.conversions, chain.nulls, chain.values)
    re, rev = _effects(p, removed), _effects(ev, removed_value)
    share, vshare = _normalised(re), _normalised(rev)
    total = float(chain.conversions.sum())
    ch = chain.channels
    return MarkovResult(order, ch, p, dict(zip(ch, re.tolist())), dict(zip(ch, rev.tolist())),
                        dict(zip(ch, share.tolist())), dict(zip(ch, vshare.tolist())),
                        {c: total * s for c, s in zip(ch, share.tolist())}, _transitions(chain))


def _transitions(chain: _Chain) -> dict[tuple[str, str], float]:
    """Transition probabilities, for display and for comparison with other tools."""
    name = lambda j: ",".join(chain.states[j])  # noqa: E731
    counts: Counter = Counter()
    weight = chain.conversions + chain.nulls
    for i, x, y in zip(chain.step_path.tolist(), chain.step_from.tolist(), chain.step_to.tolist()):
        counts[name(x), name(y)] += weight[i]
    for i, s in enumerate(chain.first.tolist()):
        counts["(start)", name(s)] += weight[i]
    for i, s in enumerate(chain.last.tolist()):
        counts[name(s), "(conversion)"] += chain.conversions[i]
        counts[name(s), "(null)"] += chain.nulls[i]
    out: Counter = Counter()
    for (a, _), v in counts.items():
        out[a] += v
    return {k: v / out[k[0]] for k, v in counts.items() if v}


# ---------------------------------------------------------------------------------------------
# Shapley value


@dataclass(frozen=True)
class ShapleyResult:
    channels: tuple[str, ...]
    conversions: dict[str, Fraction]  # the Shapley value of each channel, in conversions (exact)
    shares: dict[str, float]
    value_weights: dict[str, int]  # integers proportional to each channel's Shapley value in money


def shapley(aggs: Iterable[PathAggregate]) -> ShapleyResult:
    """Shapley value of each channel for the worth "conversions of the journeys that touched only
    channels of the coalition", by the closed form: each conversion split equally among its path's
    distinct channels. Exact rationals; money weights exact integers."""
    kept = modelled(aggs)
    paths = [a for a in kept if a.conversions]
    by_set: dict[frozenset[str], list] = {}
    for a in paths:
        if a.value < 0:
            raise ValueError(f"path {a.path}: negative value {a.value}; refunds are not modelled here")
        acc = by_set.setdefault(frozenset(a.path), [0, Decimal(0)])
        acc[0] += a.conversions
        acc[1] += a.value
    channels = _channels(kept)  # a channel only on non-converting paths is a null player: 0
    lcm = math.lcm(*range(1, max((len(s) for s in by_set), default=1) + 1))
    phi = {c: Fraction(0) for c in channels}
    weights = {c: 0 for c in channels}
    for members, (conv, value) in by_set.items():
        part = Fraction(conv, len(members))
        micros = int(value.scaleb(6).to_integral_value(rounding=ROUND_HALF_UP))  # proportional weights only
        for c in members:
            phi[c] += part
            weights[c] += micros * (lcm // len(members))
    total = sum(phi.values())
    shares = {c: float(v / total) if total else 0.0 for c, v in phi.items()}
    return ShapleyResult(channels, phi, shares, weights)


def shapley_exact(players: Sequence[str], worth: Callable[[frozenset[str]], Fraction | int]) -> dict[str, Fraction]:
    """The Shapley value by its definition: every player's marginal worth over all coalitions of
    the others, weighted |S|! (n - |S| - 1)! / n!. Exponential: for checks and <= ~15 players."""
    n = len(players)
    cache: dict[frozenset[str], Fraction] = {}

    def v(s: frozenset[str]) -> Fraction:
        if s not in cache:
            cache[s] = Fraction(worth(s))
        return cache[s]

    out = {}
    for p in players:
        others = [q for q in players if q != p]
        total = Fraction(0)
        for size in range(n):
            w = Fraction(math.factorial(size) * math.factorial(n - size - 1), math.factorial(n))
            for s in combinations(others, size):
                coalition = frozenset(s)
                total += w * (v(coalition | {p}) - v(coalition))
        out[p] = total
    return out


def coalition_worth(aggs: Iterable[PathAggregate]) -> Callable[[frozenset[str]], int]:
    """Zhao et al.'s worth: conversions of the journeys whose channels all belong to the coalition."""
    sets = [(frozenset(a.path), a.conversions) for a in modelled(aggs) if a.conversions]
    return lambda coalition: sum(c for s, c in sets if s <= coalition)


# ---------------------------------------------------------------------------------------------
# Bootstrap


@dataclass(frozen=True)
class Intervals:
    confidence: float
    resamples: int
    markov: dict[str, tuple[float, float]]  # share (low, high)
    shapley: dict[str, tuple[float, float]]


def bootstrap(aggs: Iterable[PathAggregate], order: int = 1, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
              confidence: float = DEFAULT_CONFIDENCE) -> Intervals:
    """Percentile intervals of the Markov and Shapley shares: the journeys (each conversion and each
    non-converting person is one) are drawn with replacement `resamples` times with a seeded RNG,
    and both models are recomputed on each draw."""
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    paths = modelled(aggs)
    if not paths or resamples < 1:
        return Intervals(confidence, 0, {}, {})
    chain = _compile(paths, order)
    m = len(paths)
    journeys = np.concatenate((chain.conversions, chain.nulls))
    n_journeys = int(journeys.sum())
    pvals = journeys / journeys.sum()
    mean_value = np.divide(chain.values, chain.conversions, out=np.zeros(m), where=chain.conversions > 0)
    # Shapley shares are linear in the conversions: one incidence (path, channel, 1/|set|).
    col = {c: j for j, c in enumerate(chain.channels)}
    inc_path, inc_channel, inc_part = [], [], []
    for i, a in enumerate(paths):
        members = set(a.path)
        for c in members:
            inc_path.append(i)
            inc_channel.append(col[c])
            inc_part.append(1.0 / len(members))
    inc_path_a, inc_channel_a, inc_part_a = np.array(inc_path), np.array(inc_channel), np.array(inc_part)
    rng = np.random.default_rng(seed)
    k = len(chain.channels)
    markov_shares = np.empty((resamples, k))
    shapley_shares = np.empty((resamples, k))
    for b in range(resamples):
        draw = rng.multinomial(n_journeys, pvals).astype(float)
        conv, nulls = draw[:m], draw[m:]
        p, _, removed, _ = _absorption(chain, conv, nulls, conv * mean_value)
        markov_shares[b] = _normalised(_effects(p, removed))
        phi = np.bincount(inc_channel_a, weights=conv[inc_path_a] * inc_part_a, minlength=k)
        shapley_shares[b] = phi / phi.sum() if phi.sum() > 0 else 0.0
    tail = (1 - confidence) / 2 * 100
    lo_hi = lambda s: np.percentile(s, [tail, 100 - tail], axis=0)  # noqa: E731
    (mlo, mhi), (slo, shi) = lo_hi(markov_shares), lo_hi(shapley_shares)
    ch = chain.channels
    return Intervals(confidence, resamples,
                     {c: (float(mlo[j]), float(mhi[j])) for j, c in enumerate(ch)},
                     {c: (float(slo[j]), float(shi[j])) for j, c in enumerate(ch)})


# ---------------------------------------------------------------------------------------------
# Money


def round_money(value: Decimal, currency: str) -> Decimal:
    """`value` rounded to the currency's minor unit, half away from zero."""
    return value.quantize(Decimal(1).scaleb(-minor_units_of(currency)), rounding=ROUND_HALF_UP)


def allocate(total: Decimal, weights: Mapping[str, int], currency: str) -> dict[str, Decimal]:
    """`total` (already in minor units) split in proportion to non-negative integer weights, by the
    largest remainder: the parts sum to exactly `total`. All zero weights: nothing to split by,
    so everything stays unallocated (the caller's unattributed row)."""
    places = minor_units_of(currency)
    units = int(total.scaleb(places))
    keys = list(weights)
    if not keys or not any(weights.values()):
        return {k: decimal_of(0, places) for k in keys}
    sign = -1 if units < 0 else 1
    parts = largest_remainder(abs(units), [weights[k] for k in keys])
    return {k: decimal_of(sign * p, places) for k, p in zip(keys, parts)}


def share_weights(shares: Mapping[str, float]) -> dict[str, int]:
    """Float shares (Markov's) as integer weights at a resolution of 10**-15, for ``allocate``."""
    return {c: int(round(s * _SHARE_UNITS)) for c, s in shares.items()}
