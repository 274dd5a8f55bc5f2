"""Shared SQL fragments (`--@include`): a rule written once gives the same numbers in every report
that includes it."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from clickhouse import reports


def _spend(p, source, channel, cost, import_id, imported_at, campaign=""):
    return {"project": p, "day": "2026-02-10", "source": source, "medium": "cpc", "campaign": campaign, "ad": "",
            "keyword": "", "channel": channel, "cost": cost, "currency": "KZT", "clicks": 0, "impressions": 0,
            "import_id": import_id, "imported_at": imported_at, "row_id": f"{import_id}-{source}-{campaign}"}


def test_every_report_is_expanded_to_plain_sql():
    """Fragments include fragments (_money.sql includes _spend.sql): nothing is left unexpanded."""
    for name in reports.NAMES:
        if name not in ("paths", "datadriven"):
            assert not [line for line in reports._sql(name).splitlines() if line.startswith("--@include")], name
    assert "spend_rows AS (" in reports._sql("channels") and "spend_rows AS (" in reports._sql("ltv")


def test_an_include_loop_is_refused(tmp_path, monkeypatch):
    (tmp_path / "_a.sql").write_text("--@include _b.sql\n")
    (tmp_path / "_b.sql").write_text("--@include _a.sql\n")
    monkeypatch.setattr(reports, "REPORTS", tmp_path)
    with pytest.raises(ValueError, match="nested too deep"):
        reports._with_fragments("--@include _a.sql\n")


def test_a_reimported_day_counts_once_in_the_channel_report_and_in_ltv(wh):
    """Google's spend of Feb 10 imported twice (the second import replaces the first), Instagram's
    once: both reports take their spend from _spend.sql, so both see 700 + 300."""
    p = f"frag{uuid.uuid4().hex[:8]}"
    wh.insert("ad_spend", [
        _spend(p, "google", "Paid Search", "400.00", "first", "2026-02-11T00:00:00Z", campaign="a"),
        _spend(p, "google", "Paid Search", "100.00", "first", "2026-02-11T00:00:00Z", campaign="b"),
        _spend(p, "google", "Paid Search", "700.00", "second", "2026-02-12T00:00:00Z", campaign="a"),
        _spend(p, "instagram", "Paid Social", "300.00", "ig", "2026-02-11T00:00:00Z"),
    ])
    spend = {}
    for name in ("channels", "campaigns", "ltv"):
        out = reports.run(wh, reports.ReportRequest(name, p, date(2026, 2, 1), date(2026, 2, 28)))
        spend[name] = ({r["channel"]: r["spend"] for r in out["rows"] if r.get("level", "channel") == "channel"},
                       out["total"]["spend"])
    assert spend["channels"] == ({"Paid Search": "700.00", "Paid Social": "300.00"}, "1000.00")
    assert spend["ltv"] == spend["channels"]
    assert spend["campaigns"] == spend["channels"]
