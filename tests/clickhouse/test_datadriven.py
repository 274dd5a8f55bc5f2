"""The datadriven report's rows (clickhouse/datadriven.py) over the models of
stream_processors/datadriven.py: money conserved in both models, the fixed paths' report."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from clickhouse.datadriven import datadriven_rows
from stream_processors.datadriven import PathAggregate
from tests.stream_processors.test_datadriven import PATHS, PS, _aggs, paths_strategy

D = Decimal


@settings(max_examples=25, deadline=None)
@given(paths_strategy, st.integers(0, 10**7))
def test_report_conserves_money_in_both_models(drawn, lost_units):
    aggs = _aggs(drawn) + [PathAggregate((), 1, D(lost_units).scaleb(-2), 0)]
    rows, total = datadriven_rows(aggs, "KZT", resamples=5)
    for model in ("markov", "shapley"):
        assert sum(D(r[f"{model}_revenue"]) for r in rows) == D(total[f"{model}_revenue"])
    assert D(total["markov_revenue"]) == sum(a.value for a in aggs).quantize(D("0.01"))


def test_report_rows_for_the_fixed_paths():
    rows, total = datadriven_rows(PATHS, "KZT", resamples=50, seed=3)
    assert total["markov_revenue"] == total["shapley_revenue"] == "1785000.00"
    assert sum(D(r["markov_revenue"]) for r in rows) == D("1785000.00")
    assert [r["channel"] for r in rows][0] == PS  # the most revenue under Markov
    assert all(r["markov_ci_low"] <= r["markov_share"] <= r["markov_ci_high"] for r in rows)
    assert "(unattributed)" not in {r["channel"] for r in rows}
