"""Data-driven attribution (stream_processors/datadriven.py): the Markov chain model against the
`ChannelAttribution` package (a dev dependency, built from its sdist) and against an exact
absorbing-chain computation done here independently with fractions; Shapley's axioms and a
hand-computed example; money conserved; bootstrap intervals reproducible."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_processors.datadriven import (PathAggregate, aggregate, allocate, bootstrap, coalition_worth,
                                          collapse_repeats, markov, shapley, shapley_exact, states_of)

D = Decimal
PS, EM, IG, SEO, TT = "Paid Search", "Email", "Instagram", "SEO", "TikTok"

# A fixed set of paths: repeats, a cycle (Email > Instagram > Email), values that differ by last channel.
PATHS = [
    PathAggregate((PS, EM, PS), 40, D("400000.00"), 60),
    PathAggregate((IG, PS), 25, D("125000.00"), 80),
    PathAggregate((IG,), 10, D("30000.00"), 300),
    PathAggregate((SEO, SEO, EM), 30, D("450000.00"), 45),
    PathAggregate((EM, IG, EM), 12, D("96000.00"), 20),
    PathAggregate((TT, IG, TT, PS), 5, D("20000.00"), 70),
    PathAggregate((TT,), 2, D("4000.00"), 400),
    PathAggregate((SEO, PS), 20, D("310000.00"), 35),
    PathAggregate((PS,), 35, D("350000.00"), 250),
    PathAggregate((EM, SEO, TT), 0, D("0"), 15),
]


def _channelattribution():
    with redirect_stdout(io.StringIO()):  # it prints a banner on import
        import ChannelAttribution
    import pandas as pd

    frame = pd.DataFrame({"path": [" > ".join(a.path) for a in PATHS], "conv": [a.conversions for a in PATHS],
                          "value": [float(a.value) for a in PATHS], "null": [a.nulls for a in PATHS]})
    return ChannelAttribution, frame


# ---------------------------------------------------------------------------------------------
# Markov against ChannelAttribution


@pytest.mark.parametrize("order", [1, 2])
def test_markov_agrees_with_channelattribution_within_1_percent(order):
    """ChannelAttribution estimates by simulation: 3e7 journeys (it keeps the best of 10 folds of
    3e6), a fixed seed (so the test is reproducible), and max_step high enough that no simulated
    journey is cut short (its default, the longest path in the data, biases chains with cycles)."""
    ca, frame = _channelattribution()
    out = ca.markov_model(frame, "path", "conv", var_value="value", var_null="null", order=order, out_more=True,
                          verbose=False, flg_pro=False, max_step=1000, nsim_start=3e7, seed=1)
    theirs = out["removal_effects"].set_index("channel_name")
    credited = out["result"].set_index("channel_name")
    ours = markov(PATHS, order)
    assert set(ours.channels) == set(theirs.index) == {PS, EM, IG, SEO, TT}
    for c in ours.channels:
        assert theirs.loc[c, "removal_effects_conversion"] == pytest.approx(ours.removal_effects[c], rel=0.01)
        assert theirs.loc[c, "removal_effects_conversion_value"] == pytest.approx(ours.value_removal_effects[c],
                                                                                  rel=0.01)
        assert credited.loc[c, "total_conversions"] == pytest.approx(ours.conversions[c], rel=0.01)


def test_transition_probabilities_equal_channelattribution_exactly():
    ca, frame = _channelattribution()
    out = ca.transition_matrix(frame, "path", "conv", var_null="null", order=1, flg_equal=True)
    names = dict(zip(out["channels"]["id_channel"].astype(str), out["channels"]["channel_name"]))
    theirs = {(names.get(str(r.channel_from), r.channel_from), names.get(str(r.channel_to), r.channel_to)):
              r.transition_probability for r in out["transition_matrix"].itertuples()}
    ours = markov(PATHS).transitions
    assert set(ours) == set(theirs)
    for k, p in ours.items():
        assert p == pytest.approx(theirs[k], rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Markov against the fundamental matrix, by hand


def _solve(a: list[list[Fraction]], b: list[Fraction]) -> list[Fraction]:
    """Gauss-Jordan elimination in exact fractions (independent of numpy)."""
    n = len(a)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if m[r][col] != 0)
        m[col], m[pivot] = m[pivot], m[col]
        m[col] = [x / m[col][col] for x in m[col]]
        for r in range(n):
            if r != col and m[r][col] != 0:
                m[r] = [x - m[r][col] * y for x, y in zip(m[r], m[col])]
    return [m[i][n] for i in range(n)]


def _absorbed(q, rhs, start, keep) -> Fraction:
    """start . (I - Q)^-1 rhs over the kept states: the fundamental matrix answer."""
    n = len(keep)
    a = [[(1 if i == j else 0) - q[keep[i]][keep[j]] for j in range(n)] for i in range(n)]
    x = _solve(a, [rhs[k] for k in keep])
    return sum(start[k] * x[i] for i, k in enumerate(keep))


F = Fraction
# (conversions, nulls): A>B>C (2, 1), A>C (1, 3), B (1, 1), C>A>B (0, 2), B>A (1, 0). Counted by hand:
#   start: A 3+4 = 7, B 2+1 = 3, C 2                                   of 12
#   A: ->B 3 (A>B>C) + 2 (C>A>B) = 5, ->C 4, ->conv 1 (B>A)            of 10
#   B: ->C 3, ->A 1, ->conv 1 (B), ->null 1 (B) + 2 (C>A>B) = 3       of 8
#   C: ->A 2, ->conv 2 + 1 = 3, ->null 1 + 3 = 4                       of 9
SMALL = [PathAggregate(("A", "B", "C"), 2, D("200"), 1), PathAggregate(("A", "C"), 1, D("50"), 3),
         PathAggregate(("B",), 1, D("30"), 1), PathAggregate(("C", "A", "B"), 0, D("0"), 2),
         PathAggregate(("B", "A"), 1, D("100"), 0)]
Q = [[F(0), F(5, 10), F(4, 10)], [F(1, 8), F(0), F(3, 8)], [F(2, 9), F(0), F(0)]]
R = [F(1, 10), F(1, 8), F(3, 9)]
START = [F(7, 12), F(3, 12), F(2, 12)]
# a conversion from a state is worth the average value of the conversions whose path ends there:
# A: 100 / 1, B: 30 / 1, C: (200 + 50) / 3
RV = [R[0] * 100, R[1] * 30, R[2] * F(250, 3)]


def test_markov_equals_the_fundamental_matrix_computation():
    got = markov(SMALL)
    assert got.transitions[("A", "B")] == pytest.approx(0.5, rel=1e-15)
    assert got.transitions[("B", "(null)")] == pytest.approx(3 / 8, rel=1e-15)
    p = _absorbed(Q, R, START, [0, 1, 2])
    ev = _absorbed(Q, RV, START, [0, 1, 2])
    assert got.conversion_probability == pytest.approx(float(p), rel=1e-9, abs=0)
    effects, value_effects = {}, {}
    for i, c in enumerate("ABC"):
        keep = [k for k in range(3) if k != i]
        effects[c] = 1 - _absorbed(Q, R, START, keep) / p
        value_effects[c] = 1 - _absorbed(Q, RV, START, keep) / ev
        assert got.removal_effects[c] == pytest.approx(float(effects[c]), rel=1e-9, abs=0)
        assert got.value_removal_effects[c] == pytest.approx(float(value_effects[c]), rel=1e-9, abs=0)
    total = sum(effects.values())
    for c in "ABC":
        assert got.conversions[c] == pytest.approx(float(5 * effects[c] / total), rel=1e-9, abs=0)


def test_order_2_removal_effects_by_hand():
    """A>A>B (3 conv, 2 null), A (1, 5), B>B>C (2, 1), C>A (0, 4); states are pairs. From the start:
    'A A' 5/18 -> 'A B' -> conv 3/5; 'A' 6/18 -> conv 1/6; 'B B' 3/18 -> 'B C' -> conv 2/3; 'C A' -> null.
    P = 5/18*3/5 + 6/18*1/6 + 3/18*2/3 = 1/3. Without A only 'B B' converts: 1/9, effect 1 - 1/3 = 2/3;
    without B: 1/18, effect 5/6; without C: 2/9, effect 1/3."""
    paths = [PathAggregate(("A", "A", "B"), 3, D(30), 2), PathAggregate(("A",), 1, D(10), 5),
             PathAggregate(("B", "B", "C"), 2, D(20), 1), PathAggregate(("C", "A"), 0, D(0), 4)]
    got = markov(paths, order=2)
    assert got.conversion_probability == pytest.approx(1 / 3, rel=1e-12)
    assert got.removal_effects == pytest.approx({"A": 2 / 3, "B": 5 / 6, "C": 1 / 3}, rel=1e-12)
    assert states_of(("A", "A", "B"), 2) == [("A", "A"), ("A", "B")] and states_of(("A",), 2) == [("A",)]


def test_order_1_ignores_repeats_higher_orders_do_not():
    collapsed = [PathAggregate(collapse_repeats(a.path), a.conversions, a.value, a.nulls) for a in PATHS]
    assert markov(collapsed).removal_effects == pytest.approx(markov(PATHS).removal_effects, rel=1e-12)
    assert ("SEO,SEO", "SEO,Email") in markov(PATHS, 2).transitions  # a repeat is a state of its own
    assert not any("SEO,SEO" in k for k in markov(collapsed, 2).transitions)


def test_no_conversion_and_no_path_give_empty_results():
    assert markov([PathAggregate(("A",), 0, D(0), 3)]).shares == {"A": 0.0}
    assert markov([PathAggregate((), 2, D(10), 0)]).channels == ()


# ---------------------------------------------------------------------------------------------
# Shapley


def test_shapley_hand_computed_three_channels():
    """Paths (conversions): A (10), B (4), A>B (6), A>B>C>B (3), and C with no conversion.
    Zhao's worth v(S): conversions of journeys using only channels in S. v(A) = 10, v(B) = 4, v(C) = 0,
    v(AB) = 20, v(AC) = 10, v(BC) = 4, v(ABC) = 23. Shapley of A over the orders of (A, B, C):
    1/3 v(A) + 1/6 [v(AB) - v(B)] + 1/6 [v(AC) - v(C)] + 1/3 [v(ABC) - v(BC)]
      = 10/3 + 16/6 + 10/6 + 19/3 = 14; B: 4/3 + 10/6 + 4/6 + 13/3 = 8; C: 0 + 0 + 0 + 3/3 = 1."""
    paths = [PathAggregate(("A",), 10, D(100), 5), PathAggregate(("B",), 4, D(40), 1),
             PathAggregate(("A", "B"), 6, D(60), 0), PathAggregate(("A", "B", "C", "B"), 3, D(30), 0),
             PathAggregate(("C",), 0, D(0), 9)]
    expected = {"A": F(14), "B": F(8), "C": F(1)}
    assert shapley(paths).conversions == expected
    assert shapley_exact(["A", "B", "C"], coalition_worth(paths)) == expected


def test_shapley_efficiency_symmetry_and_null_player():
    paths = [PathAggregate(("A", "B"), 7, D(70), 1), PathAggregate(("B", "A"), 3, D(30), 2),
             PathAggregate(("C",), 5, D(50), 4), PathAggregate(("N", "C"), 0, D(0), 6)]
    got = shapley(paths)
    assert sum(got.conversions.values()) == 15  # efficiency: everything credited
    assert got.conversions["A"] == got.conversions["B"] == 5  # symmetry: A and B are interchangeable
    assert got.conversions["N"] == 0  # null player: N never changes a coalition's worth
    assert sum(got.shares.values()) == pytest.approx(1.0)


paths_strategy = st.lists(
    st.tuples(st.lists(st.sampled_from("ABCDE"), min_size=1, max_size=5), st.integers(0, 50),
              st.integers(0, 10**8), st.integers(0, 50)),
    min_size=1, max_size=12)


def _aggs(drawn):
    return [PathAggregate(tuple(p), c, D(v).scaleb(-2) if c else D(0), n) for p, c, v, n in drawn]


@settings(max_examples=40, deadline=None)
@given(paths_strategy)
def test_simplified_shapley_equals_the_definition(drawn):
    aggs = _aggs(drawn)
    got = shapley(aggs)
    exact = shapley_exact(list(got.channels), coalition_worth(aggs))
    assert got.conversions == exact
    assert sum(exact.values()) == sum(a.conversions for a in aggs)


# ---------------------------------------------------------------------------------------------
# Money, bootstrap


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**12), st.lists(st.integers(0, 10**15), min_size=1, max_size=8),
       st.sampled_from(["KZT", "JPY", "KWD"]))
def test_allocate_conserves_money(units, weights, currency):
    from stream_processors.attribution import minor_units_of

    total = D(units).scaleb(-minor_units_of(currency))
    parts = allocate(total, {f"c{i}": w for i, w in enumerate(weights)}, currency)
    assert sum(parts.values()) == (total if any(weights) else 0)
    assert all(p.as_tuple().exponent == -minor_units_of(currency) for p in parts.values())



def test_bootstrap_is_seeded_and_narrows_with_more_data():
    a = bootstrap(PATHS, resamples=80, seed=11)
    assert a == bootstrap(PATHS, resamples=80, seed=11)
    assert a != bootstrap(PATHS, resamples=80, seed=12)
    big = [PathAggregate(p.path, p.conversions * 100, p.value * 100, p.nulls * 100) for p in PATHS]
    b = bootstrap(big, resamples=80, seed=11)
    for c in (PS, EM, IG, SEO, TT):
        for model in ("markov", "shapley"):
            lo, hi = getattr(a, model)[c]
            blo, bhi = getattr(b, model)[c]
            assert bhi - blo < (hi - lo) / 3  # 100x the journeys: intervals ~10x narrower
    point = markov(PATHS).shares
    assert all(b.markov[c][0] <= point[c] <= b.markov[c][1] for c in point)


def test_aggregate_from_single_journeys():
    journeys = [((PS, PS, EM), True, D("10.00")), ((PS, EM), True, D("5.00")), ((PS, PS, EM), False, 0)]
    assert sorted(aggregate(journeys), key=lambda a: a.path) == [
        PathAggregate((PS, EM), 1, D("5.00"), 0, 2), PathAggregate((PS, PS, EM), 1, D("10.00"), 1, 3)]
    assert aggregate(journeys, collapse=True) == [PathAggregate((PS, EM), 2, D("15.00"), 1, 5)]


def test_an_order_too_high_for_the_data_is_refused():
    # 6 000 distinct three-channel paths: 6 000 states of order 3
    many = [PathAggregate((f"c{i}", f"c{j}", f"c{k}"), 1, D(1), 0)
            for i in range(20) for j in range(20) for k in range(15)]
    with pytest.raises(ValueError, match="use a lower order"):
        markov(many, order=3)
