"""Report queries: one SQL file per report in clickhouse/reports/, the same on both engines."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from functools import cache
from pathlib import Path
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from stream_processors.attribution import DEFAULT_HALF_LIFE_DAYS, MODELS as ATTRIBUTION_MODELS

from .projects import timezone_of
from .warehouse import Warehouse

REPORTS = Path(__file__).parent / "reports"
NAMES = ("channels", "quality", "cohorts", "ltv", "funnel", "reconciliation")
NAMES += ("paths", "datadriven")  # path aggregates (reports/paths.sql), then Python: path_report
KEYS = {"channels": ("channel",), "quality": ("metric",), "cohorts": ("cohort", "channel", "month"),
        "ltv": ("channel",), "funnel": ("channel",), "reconciliation": ("channel",)}  # grouping columns: blank in a total row
KEYS.update({"paths": ("section", "path", "channel"), "datadriven": ("channel",)})
NAMES += ("campaigns", "models")  # query-time attribution (reports/_credited.sql); grouped by group_by
KEYS.update({"campaigns": ("level", "campaign", "content", "term"), "models": ()})
NAMES += ("live", "identity", "calltracking")  # live credits; the identity graph; pool sizing
KEYS.update({"live": ("channel",), "identity": ("identifier",), "calltracking": ("day",)})


class UnknownReport(ValueError):
    pass


_INCLUDE = "--@include "


def _with_fragments(text: str, depth: int = 0, instead: dict[str, str] | None = None) -> str:
    """A line `--@include _x.sql` is replaced by that shared fragment of reports/ (e.g. the
    query-time attribution CTEs of _credited.sql), so one rule lives in one file. A fragment may
    include another (_money.sql includes _spend.sql). `instead` swaps a fragment for another with
    the same CTEs (_credited.sql -> _credits_live.sql)."""
    if depth > 4:
        raise ValueError("--@include nested too deep (a fragment includes itself?)")
    out = []
    for line in text.splitlines(keepends=True):
        if line.startswith(_INCLUDE):
            name = line.strip()[len(_INCLUDE):]
            line = _with_fragments((REPORTS / (instead or {}).get(name, name)).read_text(), depth + 1, instead)
        out.append(line)
    return "".join(out)


@cache
def _sql(name: str, live: bool = False, aggregates: bool = False) -> str:
    """A report's query. It returns its rows and its total row together (GROUPING SETS), the
    total flagged is_total = 1, so both come from one snapshot of the data. live: its credits are
    the live ones (_credits_live.sql), not credited at query time (_credited.sql); aggregates:
    their sums from the live aggregates (_credits_aggregated.sql)."""
    if name not in NAMES:
        raise UnknownReport(name)
    fragment = "_credits_aggregated.sql" if live and aggregates else "_credits_live.sql" if live else None
    return _with_fragments((REPORTS / f"{name}.sql").read_text(),
                           instead={"_credited.sql": fragment} if fragment else None)


# The rule-based models, recomputed in SQL exactly as the live processors credit them.
QUERY_TIME_MODELS = ATTRIBUTION_MODELS
GROUP_BY = ("channel", "source", "campaign")  # what channels / models rows may be grouped by
HALF_LIFE_DAYS = DEFAULT_HALF_LIFE_DAYS  # time_decay, as the live processors use it
LIVE_REPORTS = ("channels", "models")  # may read the live credits (their labels: channel, source, campaign)


@dataclass(frozen=True)
class LiveRules:
    """What the live processors credit with (the installation's settings): a report asking the
    same reads their credits instead of crediting again, when they cover its range."""
    lookback_days: int
    lead_repeat_days: int
    half_life_days: float = HALF_LIFE_DAYS


@dataclass(frozen=True)
class ReportRequest:
    name: str
    project: str
    date_from: date
    date_to: date  # inclusive
    model: str = "last_non_direct"
    currency: str = "KZT"
    lookback_days: int = 90
    # a person's lead within this many days after their previous lead is a repeat and counts nothing
    # (MONEYTRAIL_LEAD_REPEAT_DAYS: the live credits use the same setting)
    lead_repeat_days: int = 30
    group_by: str = "channel"  # channel | source | campaign (channels, campaigns' top level, models)
    margin: Decimal | None = None  # gross margin 0..1: the channel report's ROMI
    # paths / datadriven: which conversions end a path, repeats folded, Markov order, bootstrap
    kind: str = "sale"
    collapse: bool = False
    order: int = 1
    resamples: int = 100
    seed: int = 0
    # IANA zone of the report's days (from/to, spend and rate days, cohort months, call-tracking
    # days); None: the project's own (ProjectStore.set_timezone), UTC until set
    timezone: str | None = None
    # the live credits' rules (None: no live stage, every report credits at query time), and
    # recompute: credit at query time even when the live credits could answer
    live: LiveRules | None = None
    recompute: bool = False


def _in_project_zone(wh: Warehouse, req: ReportRequest) -> ReportRequest:
    return req if req.timezone else replace(req, timezone=timezone_of(wh, req.project))


def _bounds(req: ReportRequest) -> dict[str, Any]:
    """Query parameters; from / to are the local midnights of the range's days as UTC instants."""
    zone = ZoneInfo(req.timezone or "UTC")
    start = datetime.combine(req.date_from, time.min, tzinfo=zone).astimezone(timezone.utc)
    end = datetime.combine(req.date_to + timedelta(days=1), time.min, tzinfo=zone).astimezone(timezone.utc)
    fmt = "%Y-%m-%d %H:%M:%S.000"
    return {"project": req.project, "from": start.strftime(fmt), "to": end.strftime(fmt), "tz": zone.key,
            "day_from": req.date_from.isoformat(), "day_to": req.date_to.isoformat(), "model": req.model,
            "currency": req.currency, "lookback": req.lookback_days, "lead_repeat": req.lead_repeat_days,
            "group_by": req.group_by,
            "margin": "" if req.margin is None else str(req.margin), "half_life": HALF_LIFE_DAYS,
            "models": _models_param(QUERY_TIME_MODELS if req.name == "models" else (req.model,)),
            "label": "drill" if req.name == "campaigns" else req.group_by}


def _models_param(models: tuple[str, ...]) -> list[str]:
    """An Array(String) parameter: a list through the port; each adapter renders it its way."""
    return [m for m in models if m in QUERY_TIME_MODELS]


def credits(wh: Warehouse, req: ReportRequest, models: tuple[str, ...] = QUERY_TIME_MODELS) -> list[dict[str, Any]]:
    """The query-time credits themselves (what reports sum): one row per conversion, model and
    credited touch, weight and amount as exact decimal strings, in the live credits' shape."""
    params = {**_bounds(_in_project_zone(wh, req)), "models": _models_param(models), "label": "touch"}
    return wh.rows(_with_fragments((REPORTS / "_credits.sql").read_text()), params)


def run(wh: Warehouse, req: ReportRequest) -> dict[str, Any]:
    req = _in_project_zone(wh, req)
    if req.name in ("paths", "datadriven"):
        return path_report(wh, req, kind=req.kind, collapse=req.collapse, order=req.order, resamples=req.resamples,
                           seed=req.seed)
    rows, total = [], {}
    params = _bounds(req)
    if req.name == "live":  # the live aggregates' hours; UTC days where the zone's days are not whole hours
        attribution: dict[str, Any] | None = {"computed": "live credits", "read": "live aggregates"}
        if not _whole_hours(params):
            attribution["why"] = f"the days of {params['tz']} are not whole UTC hours (the aggregates' buckets): UTC days"
            req = replace(req, timezone="UTC")
            params = _bounds(req)
    else:
        attribution = _attribution(wh, req, params)
    live = attribution is not None and attribution["computed"] == "live credits"
    aggregates = live and attribution.get("read") == "live aggregates"
    for row in wh.rows(_sql(req.name, live=live, aggregates=aggregates), params):
        if "key" in row:  # the grouping column, named after what it groups by
            row = {(req.group_by if k == "key" else k): v for k, v in row.items()}
        if row.pop("is_total", 0):
            total = {k: v for k, v in row.items() if k not in KEYS[req.name] + GROUP_BY}
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
        "timezone": req.timezone,
        "lookback_days": req.lookback_days,
        "group_by": req.group_by,
        "margin": None if req.margin is None else str(req.margin),
        # how conversions were credited: the live processors' credits (as of credited_at) or at
        # query time; both give the same numbers on the same data
        "attribution": attribution,
        "rows": rows,
        "total": total,
    }


@cache
def live_coverage_sql() -> str:
    """The coverage check's query (read once: it runs before every live-credits report)."""
    return (REPORTS / "_live_coverage.sql").read_text()


@cache
def _credits_at_query_time(name: str) -> bool:
    return any(line.strip() == _INCLUDE + "_credited.sql" for line in (REPORTS / f"{name}.sql").read_text().splitlines())


def _attribution(wh: Warehouse, req: ReportRequest, params: dict[str, Any]) -> dict[str, Any] | None:
    """How a report that credits conversions gets its credits (None: it credits none). From the
    live credits when it asks what they hold (the live stage's lookback, repeat-lead rule and
    half-life; labels they carry) and they cover every conversion of its range
    (_live_coverage.sql); else at query time, saying why. Reading them is what makes the channel
    report well under a second on 1M conversions; the coverage check scans the range's credits."""
    if not _credits_at_query_time(req.name):
        return None
    live = req.live
    why = ""
    if live is None:
        why = "no live stage in this installation"
    elif req.recompute:
        why = "recompute requested"
    elif req.name not in LIVE_REPORTS:
        why = f"the {req.name} report needs touch fields the live credits do not carry"
    elif (req.lookback_days, req.lead_repeat_days, HALF_LIFE_DAYS) != (live.lookback_days, live.lead_repeat_days,
                                                                      live.half_life_days):
        why = (f"the report's rules (lookback {req.lookback_days} days, repeat leads {req.lead_repeat_days} days) "
               f"are not the live credits' ({live.lookback_days}, {live.lead_repeat_days})")
    else:
        cover = wh.rows(live_coverage_sql(), {**params, "model": QUERY_TIME_MODELS[0]})[0]
        wanted, credited, (stale, stale_why) = tuple(cover["wanted"]), tuple(cover["credited"]), cover["stale"]
        if wanted == credited and wanted[0] and not stale:
            out = {"computed": "live credits", "credited_at": str(cover["credited_at"])}
            # their sums (the live aggregates' hours) when they are the same numbers; else the credits
            if not _whole_hours(params):
                return {**out, "read": "credits", "why": f"the days of {params['tz']} are not whole UTC hours "
                                                         "(the live aggregates' buckets)"}
            if cover["foreign_money"]:
                return {**out, "read": "credits", "why": f"money in another currency with a rate to {req.currency} "
                                                         "is converted credit by credit"}
            return {**out, "read": "live aggregates"}
        why = (stale_why if stale else
               f"live credits cover {credited[0]} of the range's {wanted[0]} conversions" if wanted != credited
               else "no conversion in the range")
    return {"computed": "query time", "why": why}


def _whole_hours(params: dict[str, Any]) -> bool:
    """Whether the range's bounds (_bounds: UTC instants) are whole hours: the live aggregates'
    buckets are UTC hours, which serve any time zone a whole number of hours off UTC exactly."""
    return all(params[k].endswith(":00:00.000") for k in ("from", "to"))


def _money_quality(wh: Warehouse, req: ReportRequest) -> list[dict[str, Any]]:
    """Share of revenue and of leads credited to a visit, by the channel report's own rules."""
    channels = run(wh, replace(req, name="channels", group_by="channel", margin=None))
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


def path_report(wh: Warehouse, req: ReportRequest, *, kind: str = "sale", collapse: bool = False, order: int = 1,
                resamples: int = 100, seed: int = 0, confidence: float = 0.95, top: int = 20) -> dict[str, Any]:
    """The paths and datadriven reports: path aggregates from reports/paths.sql (one query, so the
    rows and the total come from one snapshot), then top paths and assists, or Markov and Shapley
    with bootstrap intervals, in clickhouse/datadriven.py. kind: 'sale' or 'lead' conversions."""
    from . import datadriven

    req = _in_project_zone(wh, req)
    if kind not in ("sale", "lead"):
        raise ValueError("kind must be 'sale' or 'lead'")
    if not 1 <= order <= 4:
        raise ValueError("order must be between 1 and 4")
    if not 0 <= resamples <= 2000:
        raise ValueError("resamples must be between 0 and 2000")
    params = {**_bounds(req), "kind": kind, "collapse": int(collapse)}
    aggs = datadriven.from_rows(wh.rows((REPORTS / "paths.sql").read_text(), params))
    if req.name == "paths":
        rows, total = datadriven.paths_rows(aggs, req.currency, top)
        model, options = "paths", {"kind": kind, "collapse_repeats": collapse}
    else:
        rows, total = datadriven.datadriven_rows(aggs, req.currency, order, resamples, seed, confidence)
        model, options = "markov+shapley", {"kind": kind, "collapse_repeats": collapse, "order": order,
                                            "resamples": resamples, "seed": seed, "confidence": confidence}
    total["unconverted"] = sum(a.unconverted for a in aggs)  # conversions with no rate to the report currency
    return {"report": req.name, "model": model, "currency": req.currency, "from": req.date_from.isoformat(),
            "to": req.date_to.isoformat(), "timezone": req.timezone, "lookback_days": req.lookback_days, **options, "rows": rows, "total": total}
