"""Report queries: one SQL file per report in clickhouse/reports/, the same on both engines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import cache
from pathlib import Path
from decimal import Decimal
from typing import Any

from .warehouse import Warehouse

REPORTS = Path(__file__).parent / "reports"
NAMES = ("channels", "quality")
KEYS = {"channels": ("channel",), "quality": ("metric",)}  # grouping columns: blank in a total row


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
        if row.pop("is_total", 0):
            total = {k: v for k, v in row.items() if k not in KEYS[req.name]}
        else:
            rows.append(row)
    if req.name == "quality":
        rows = _money_quality(wh, req) + rows
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


def _money_quality(wh: Warehouse, req: ReportRequest) -> list[dict[str, Any]]:
    """Share of revenue and of leads credited to a visit, by the channel report's own rules."""
    channels = run(wh, ReportRequest("channels", req.project, req.date_from, req.date_to, req.model, req.currency,
                                     req.lookback_days))
    lost = next((r for r in channels["rows"] if r["channel"] == "(unattributed)"), None)
    total = channels["total"]
    out = []
    for metric, field, what in (("revenue_attributed", "revenue", "revenue credited to a visit"),
                                ("leads_attributed", "leads", "leads credited to a visit")):
        all_ = Decimal(str(total.get(field) or 0))
        missing = Decimal(str(lost.get(field) or 0)) if lost else Decimal(0)
        share = float(((all_ - missing) / all_).quantize(Decimal("0.0001"))) if all_ else None
        out.append({"metric": metric, "value": str(all_ - missing), "share": share,
                    "detail": f"{what} ({req.model}, {req.lookback_days} days); the rest is the (unattributed) row"})
    out.append({"metric": "money_unconverted", "value": str(total.get("unconverted", 0)), "share": None,
                "detail": f"payments and spend rows with no rate to {req.currency} (POST /api/rates)"})
    return out
