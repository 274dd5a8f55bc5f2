"""The call-tracking pool sizing report: leases per day, the peak of numbers in use at once (grace
included), numbers used, calls matched to a lease."""

from __future__ import annotations

import uuid
from datetime import date

from clickhouse import reports


def test_peak_numbers_in_use_and_matched_calls(wh):
    p = f"ct-{uuid.uuid4().hex[:8]}"

    def lease(lid: str, number: str, anon: str, start: str, until: str) -> dict:
        return {"project": p, "lease_id": lid, "tracking_number": number, "anonymous_id": anon,
                "started_at": start, "expires_at": until, "matches_until": until}

    wh.insert("leases", [
        # day 1: three visitors, at most two numbers at once (L3 starts after L1's grace ends)
        lease("L1", "+77270000001", "v1", "2026-06-01 10:00:00", "2026-06-01 10:35:00"),
        lease("L2", "+77270000002", "v2", "2026-06-01 10:20:00", "2026-06-01 10:55:00"),
        lease("L3", "+77270000001", "v3", "2026-06-01 10:40:00", "2026-06-01 11:15:00"),
        # an extension of L3 (same lease id, later end) counts once
        lease("L3", "+77270000001", "v3", "2026-06-01 10:40:00", "2026-06-01 11:30:00"),
        # day 2: one visitor
        lease("L4", "+77270000002", "v4", "2026-06-02 09:00:00", "2026-06-02 09:35:00"),
    ], f"leases-{p}")
    wh.insert("identity_links", [
        {"project": p, "a": "call:pbx:1", "b": "lease:L2", "evidence": "observed", "event_id": "match:call:pbx:1:L2",
         "at": "2026-06-01 10:30:00"},
        {"project": p, "a": "anon:v1", "b": "lease:L1", "evidence": "observed", "event_id": "e1",
         "at": "2026-06-01 10:00:00"},  # a visitor's own lease link is not a call
    ], f"links-{p}")
    out = reports.run(wh, reports.ReportRequest("calltracking", p, date(2026, 6, 1), date(2026, 6, 30)))
    rows = {str(r["day"]): r for r in out["rows"]}
    assert (rows["2026-06-01"]["leases"], rows["2026-06-01"]["visitors"], rows["2026-06-01"]["numbers_used"],
            rows["2026-06-01"]["peak_numbers_in_use"], rows["2026-06-01"]["calls_matched"]) == (3, 3, 2, 2, 1)
    assert (rows["2026-06-02"]["leases"], rows["2026-06-02"]["peak_numbers_in_use"],
            rows["2026-06-02"]["calls_matched"]) == (1, 1, 0)
    assert (out["total"]["leases"], out["total"]["peak_numbers_in_use"], out["total"]["calls_matched"]) == (4, 2, 1)
