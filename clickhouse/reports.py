"""Report queries: one SQL file per report in clickhouse/reports/, the same on both engines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

from .warehouse import Warehouse

REPORTS = Path(__file__).parent / "reports"
NAMES = ("channels",)
KEYS = {"channels": ("channel",)}  # the grouping columns of each report: blank in its total row


class UnknownReport(ValueError):
    pass


@cache
def _sql(name: str) -> str:
    """A report's query. It returns its rows and its total row together (GROUPING SETS), the
    total flagged is_total = 1, so both come from one snapshot of the data."""
    if name not in NAMES:
        raise UnknownReport(name)
    return (REPORTS / f"{name}.sql").read_text()


QUERY_TIME_MODELS = ("first_touch", "last_touch", "last_non_direct")


@dataclass(frozen=True)
class ReportRequest:
    name: str
    project: str
    date_from: date
    date_to: date  # inclusive
    model: str = "last_non_direct"
    currency: str = "KZT"
    lookback_days: int = 90


def _bounds(req: ReportRequest) -> dict[str, Any]:
    start = datetime.combine(req.date_from, time.min, tzinfo=timezone.utc)
    end = datetime.combine(req.date_to + timedelta(days=1), time.min, tzinfo=timezone.utc)
    fmt = "%Y-%m-%d %H:%M:%S.000"
    return {"project": req.project, "from": start.strftime(fmt), "to": end.strftime(fmt), "model": req.model,
            "currency": req.currency, "lookback": req.lookback_days}


def run(wh: Warehouse, req: ReportRequest) -> dict[str, Any]:
    rows, total = [], {}
    for row in wh.rows(_sql(req.name), _bounds(req)):
        if row.pop("is_total"):
            total = {k: v for k, v in row.items() if k not in KEYS[req.name]}
        else:
            rows.append(row)
    return {
        "report": req.name,
        "model": req.model,
        "currency": req.currency,
        "from": req.date_from.isoformat(),
        "to": req.date_to.isoformat(),
        "lookback_days": req.lookback_days,
        "rows": rows,
        "total": total,
    }
