"""Cohorts, LTV, funnel and reconciliation on the real engine (chDB), over hand-made touches,
conversions (with their subject) and identity_map rows; every expected number is worked out by hand
in the comments next to the data."""

from __future__ import annotations

import hashlib
import uuid
from datetime import date

import pytest

from clickhouse import reports


def _own_person(identifier: str) -> str:
    """The person of an identifier that has no identity_map row (the contract's rule)."""
    return "p_" + hashlib.sha256(identifier.encode()).hexdigest()[:16]


def _touch(p, tid, anon, at, channel, source="x", bot=False):
    return {"project": p, "touch_id": tid, "anonymous_id": anon, "user_id": "", "started_at": at, "source": source,
            "medium": "", "campaign": "", "content": "", "term": "", "click_id_type": "", "channel": channel,
            "landing_url": "", "referrer_host": "", "events": 1, "is_bot": bot}


def _conv(p, cid, kind, at, subject="", value="0", currency="KZT", source="test", anon="", deal_id="",
          stage_kind=""):
    return {"project": p, "conversion_id": cid, "kind": kind, "source": source, "at": at, "value": value,
            "currency": currency if value != "0" else "", "anonymous_id": anon, "user_id": "", "deal_id": deal_id,
            "stage": stage_kind, "stage_kind": stage_kind, "event_id": cid, "ids": {}, "subject": subject}


def _same_person(p, person, *identifiers, version=1):
    return [{"project": p, "identifier": i, "person_id": person, "version": version} for i in identifiers]


def _spend(p, day, source, channel, cost, currency="KZT"):
    return {"project": p, "day": day, "source": source, "medium": "cpc", "campaign": "", "ad": "", "keyword": "",
            "channel": channel, "cost": cost, "currency": currency, "clicks": 0, "impressions": 0,
            "import_id": f"i-{day}-{source}", "imported_at": "2026-04-01T00:00:00Z", "row_id": f"{day}-{source}"}


@pytest.fixture(scope="module")
def shop(wh):
    """A shop that takes payments, Jan-Mar 2026. New customers in the range:
    - Alice (P_A): visits from Google (cookie a1, 2025-12-20) and Instagram (cookie a2, 2026-01-05);
      pays 100 000 on Jan 10, 50 000 on Feb 15, is refunded 20 000 on Mar 2; 99 999 on Apr 2 is after
      the range. The cookie a1 was first mapped to another person (version 1), then to P_A (version 2):
      only the latest version counts, so her first touch is Google's (Paid Search).
    - Bob: cookie b1 has no identity_map row (his person is its own hash); a bot visit (Paid Social, Nov)
      is ignored, so his first touch is Organic Search (Jan 20). Pays 30 000 on Jan 25 (an old row: no
      subject, only the cookie) and 60 USD on Mar 10 (30 000 at the Mar 1 rate of 500), whose payment
      identifier maps to Bob's own person.
    - Dan: pays 40 000 on Feb 10; no visit at all: (unattributed).
    - Eve: a direct visit Feb 1, Instagram Feb 20; pays 60 000 on Feb 18: first touch Direct.
    - Frank: pays 25 000 on Mar 5, visits by email only afterwards (Mar 6): (unattributed).
    Carol bought first in Dec 2025 (10 000) and again in Feb (20 000): not a new customer.
    Sales mirror some payments and must not count: the shop has payments."""
    p = f"shop{uuid.uuid4().hex[:8]}"
    bob = _own_person("anon:b1")
    wh.insert("touches", [
        _touch(p, "ta1", "a1", "2025-12-20T10:00:00Z", "Paid Search", "google"),
        _touch(p, "ta2", "a2", "2026-01-05T10:00:00Z", "Paid Social", "instagram"),
        _touch(p, "ta3", "a2", "2026-01-10T09:00:00Z", "Direct", "(direct)"),
        _touch(p, "tb0", "b1", "2025-11-01T10:00:00Z", "Paid Social", "instagram", bot=True),
        _touch(p, "tb1", "b1", "2026-01-20T10:00:00Z", "Organic Search", "google"),
        _touch(p, "tc1", "c1", "2025-12-01T10:00:00Z", "Paid Search", "google"),
        _touch(p, "te1", "e1", "2026-02-01T10:00:00Z", "Direct", "(direct)"),
        _touch(p, "te2", "e1", "2026-02-20T10:00:00Z", "Paid Social", "instagram"),
        _touch(p, "tf1", "f1", "2026-03-06T10:00:00Z", "Email", "newsletter"),
    ])
    wh.insert("identity_map",
                   _same_person(p, "P_OLD", "anon:a1", version=1)
                   + _same_person(p, "P_A", "anon:a1", "anon:a2", "payment:stripe:pa1", "payment:stripe:pa2",
                                  "payment:stripe:ra", "payment:stripe:pa3", version=2)
                   + _same_person(p, bob, "payment:stripe:pb2")
                   + _same_person(p, "P_C", "anon:c1", "payment:stripe:pc0", "payment:stripe:pc1"))
    wh.insert("conversions", [
        _conv(p, "payment:stripe:pa1", "payment", "2026-01-10T10:00:00Z", "payment:stripe:pa1", "100000.00"),
        _conv(p, "sale:payment:stripe:pa1", "sale", "2026-01-10T10:00:00Z", "payment:stripe:pa1", "100000.00"),
        _conv(p, "payment:stripe:pa2", "payment", "2026-02-15T10:00:00Z", "payment:stripe:pa2", "50000.00"),
        _conv(p, "refund:stripe:ra", "refund", "2026-03-02T10:00:00Z", "payment:stripe:ra", "-20000.00"),
        _conv(p, "payment:stripe:pa3", "payment", "2026-04-02T10:00:00Z", "payment:stripe:pa3", "99999.00"),
        _conv(p, "payment:stripe:pb1", "payment", "2026-01-25T10:00:00Z", "", "30000.00", anon="b1"),
        _conv(p, "payment:stripe:pb2", "payment", "2026-03-10T10:00:00Z", "payment:stripe:pb2", "60.00", "USD"),
        _conv(p, "payment:stripe:pc0", "payment", "2025-12-15T10:00:00Z", "payment:stripe:pc0", "10000.00"),
        _conv(p, "payment:stripe:pc1", "payment", "2026-02-01T10:00:00Z", "payment:stripe:pc1", "20000.00"),
        _conv(p, "payment:stripe:pd1", "payment", "2026-02-10T10:00:00Z", "payment:stripe:pd1", "40000.00"),
        _conv(p, "payment:stripe:pe1", "payment", "2026-02-18T10:00:00Z", "anon:e1", "60000.00"),
        _conv(p, "sale:payment:stripe:pe1", "sale", "2026-02-18T10:00:00Z", "anon:e1", "60000.00"),
        _conv(p, "payment:stripe:pf1", "payment", "2026-03-05T10:00:00Z", "anon:f1", "25000.00"),
    ])
    wh.insert("currency_rates", [{"project": p, "day": "2026-03-01", "currency": "USD", "base": "KZT",
                                       "rate": "500", "imported_at": "2026-03-01T00:00:00Z"}])
    wh.insert("ad_spend", [
        _spend(p, "2026-01-15", "google", "Paid Search", "30000.00"),
        _spend(p, "2026-02-15", "google", "Paid Search", "20000.00"),
        _spend(p, "2026-02-15", "instagram", "Paid Social", "15000.00"),
        _spend(p, "2026-03-15", "newsletter", "Email", "5000.00"),
        _spend(p, "2026-04-15", "google", "Paid Search", "999.00"),  # after the range
    ])
    return p


def _run(wh, name, p, d1, d2, **kw):
    return reports.run(wh, reports.ReportRequest(name, p, d1, d2, **kw))


Q1 = (date(2026, 1, 1), date(2026, 3, 31))


def test_cohorts_by_first_purchase_month_and_first_touch_channel(wh, shop):
    out = _run(wh, "cohorts", shop, *Q1)
    got = [(r["cohort"], r["channel"], r["month"], r["customers"], r["buyers"], r["revenue"]) for r in out["rows"]]
    assert got == [
        ("2026-01", "Organic Search", 0, 1, 1, "30000.00"),   # Bob
        ("2026-01", "Organic Search", 2, 1, 1, "30000.00"),   # 60 USD x 500
        ("2026-01", "Paid Search", 0, 1, 1, "100000.00"),     # Alice
        ("2026-01", "Paid Search", 1, 1, 1, "50000.00"),
        ("2026-01", "Paid Search", 2, 1, 0, "-20000.00"),     # the refund only: no buyer
        ("2026-02", "(unattributed)", 0, 1, 1, "40000.00"),   # Dan
        ("2026-02", "Direct", 0, 1, 1, "60000.00"),           # Eve
        ("2026-03", "(unattributed)", 0, 1, 1, "25000.00"),   # Frank: his visit came after
    ]
    assert out["rows"][2]["revenue_per_customer"] == "100000.00"
    # 30 000 + 30 000 + 100 000 + 50 000 - 20 000 + 40 000 + 60 000 + 25 000 over 5 customers
    assert out["total"] == {"customers": 5, "buyers": 5, "revenue": "315000.00", "revenue_per_customer": "63000.00",
                            "unconverted": 0}


def test_cohorts_of_a_later_range_leave_out_customers_who_bought_before(wh, shop):
    out = _run(wh, "cohorts", shop, date(2026, 2, 1), date(2026, 2, 28))
    assert {(r["cohort"], r["channel"]) for r in out["rows"]} == {("2026-02", "(unattributed)"), ("2026-02", "Direct")}
    assert out["total"]["customers"] == 2 and out["total"]["revenue"] == "100000.00"  # Carol is not new


def test_without_a_rate_foreign_money_is_counted_as_unconverted(wh, shop):
    out = _run(wh, "cohorts", shop, *Q1, currency="EUR")
    assert out["total"]["unconverted"] == 8 and out["total"]["revenue"] == "0.00"  # every payment is in KZT/USD


def test_ltv_cac_and_payback_by_first_touch_channel(wh, shop):
    out = _run(wh, "ltv", shop, *Q1)
    rows = {r["channel"]: r for r in out["rows"]}
    assert set(rows) == {"Paid Search", "Organic Search", "Direct", "(unattributed)", "Paid Social", "Email"}
    ps = rows["Paid Search"]  # Alice: 100 000 + 50 000 - 20 000; spend 30 000 + 20 000
    assert (ps["customers"], ps["purchases"], ps["revenue"], ps["ltv"], ps["repeat_share"]) == \
        (1, 2, "130000.00", "130000.00", 1.0)
    assert (ps["spend"], ps["cac"], ps["payback"]) == ("50000.00", "50000.00", 2.6)
    org = rows["Organic Search"]  # Bob, no spend: CAC 0, payback undefined
    assert (org["customers"], org["revenue"], org["repeat_customers"], org["cac"], org["payback"]) == \
        (1, "60000.00", 1, "0.00", None)
    un = rows["(unattributed)"]  # Dan and Frank
    assert (un["customers"], un["revenue"], un["ltv"], un["repeat_share"]) == (2, "65000.00", "32500.00", 0.0)
    social = rows["Paid Social"]  # spend without a new customer
    assert (social["customers"], social["spend"], social["ltv"], social["cac"], social["payback"]) == \
        (0, "15000.00", None, None, None)
    assert out["total"] == {"customers": 5, "purchases": 7, "revenue": "315000.00", "ltv": "63000.00",
                            "repeat_customers": 2, "repeat_share": 0.4, "spend": "70000.00", "cac": "14000.00",
                            "payback": 4.5, "unconverted": 0}


def test_ltv_takes_sales_values_when_the_project_has_no_payments(wh):
    p = f"sales{uuid.uuid4().hex[:8]}"
    wh.insert("touches", [_touch(p, "t1", "s1", "2026-01-02T10:00:00Z", "Paid Search", "google")])
    wh.insert("conversions", [_conv(p, "sale:1", "sale", "2026-01-03T10:00:00Z", "anon:s1", "50000.00"),
                                   _conv(p, "sale:2", "sale", "2026-02-03T10:00:00Z", "anon:s1", "70000.00")])
    out = _run(wh, "ltv", p, *Q1)
    assert [(r["channel"], r["customers"], r["purchases"], r["revenue"], r["repeat_share"]) for r in out["rows"]] == \
        [("Paid Search", 1, 2, "120000.00", 1.0)]
    cohorts = _run(wh, "cohorts", p, *Q1)
    assert [(r["month"], r["revenue"]) for r in cohorts["rows"]] == [(0, "50000.00"), (1, "70000.00")]


@pytest.fixture(scope="module")
def crm_shop(wh):
    """May 2026, a business with a CRM. Visitors and their people:
    - P1: cookie v1, Google ad May 1 10:00, direct May 3 10:00; form lead L1 (May 3 10:05); CRM lead L4
      for deal 10 (May 3 11:00), deal 10 open twice (May 4, May 5) and won (May 7).
    - P2: cookie v2, Instagram May 2 09:00; form lead L2 (May 2 10:00) and an offline lead L6 reported
      back by the ad platform (May 2 12:00).
    - P3: cookie v3, Instagram May 2 09:30; a tracked call L3 (May 2 11:00) and deal 12, won at once
      (lead -> won, May 8).
    - v4: Organic Search May 4, no conversion. A bot on Instagram (ignored).
    - P5: cookie v6, email May 5; WhatsApp chat lead L7 (May 6).
    - Deal 11 (unknown person): CRM lead L5 (May 9), then lost. A payment with no CRM deal (a sale) from
      someone never seen (May 10). A form lead of April 20 is outside the range."""
    p = f"crm{uuid.uuid4().hex[:8]}"
    wh.insert("touches", [
        _touch(p, "t1", "v1", "2026-05-01T10:00:00Z", "Paid Search", "google"),
        _touch(p, "t1d", "v1", "2026-05-03T10:00:00Z", "Direct", "(direct)"),
        _touch(p, "t2", "v2", "2026-05-02T09:00:00Z", "Paid Social", "instagram"),
        _touch(p, "t3", "v3", "2026-05-02T09:30:00Z", "Paid Social", "instagram"),
        _touch(p, "t4", "v4", "2026-05-04T09:00:00Z", "Organic Search", "google"),
        _touch(p, "t9", "v9", "2026-05-04T09:00:00Z", "Paid Social", "instagram", bot=True),
        _touch(p, "t6", "v6", "2026-05-05T09:00:00Z", "Email", "newsletter"),
    ])
    wh.insert("identity_map",
                   _same_person(p, "P1", "anon:v1", "deal:amocrm:10")
                   + _same_person(p, "P3", "anon:v3", "call:ct:1", "deal:amocrm:12")
                   + _same_person(p, "P5", "anon:v6", "chat:h1"))
    wh.insert("conversions", [
        _conv(p, "lead:form:1", "lead", "2026-05-03T10:05:00Z", "anon:v1", source="form"),
        _conv(p, "lead:form:2", "lead", "2026-05-02T10:00:00Z", "anon:v2", source="form"),
        _conv(p, "lead:call:ct:1", "lead", "2026-05-02T11:00:00Z", "call:ct:1", source="call"),
        _conv(p, "lead:crm:amocrm:10", "lead", "2026-05-03T11:00:00Z", "deal:amocrm:10", source="crm", deal_id="10",
              stage_kind="lead"),
        _conv(p, "lead:crm:amocrm:11", "lead", "2026-05-09T11:00:00Z", "deal:amocrm:11", source="crm", deal_id="11",
              stage_kind="lead"),
        _conv(p, "lead:offline:ig-1", "lead", "2026-05-02T12:00:00Z", "anon:v2", source="offline"),
        _conv(p, "lead:message:whatsapp:h1", "lead", "2026-05-06T10:00:00Z", "chat:h1", source="message"),
        _conv(p, "lead:form:old", "lead", "2026-04-20T10:00:00Z", "anon:v1", source="form"),
        _conv(p, "deal:amocrm:10:Talks", "deal", "2026-05-04T10:00:00Z", "deal:amocrm:10", source="crm",
              deal_id="10", stage_kind="open"),
        _conv(p, "deal:amocrm:10:Invoice", "deal", "2026-05-05T10:00:00Z", "deal:amocrm:10", source="crm",
              deal_id="10", stage_kind="open"),
        _conv(p, "deal:amocrm:11:Lost", "deal", "2026-05-09T12:00:00Z", "deal:amocrm:11", source="crm",
              deal_id="11", stage_kind="lost"),
        _conv(p, "sale:deal:amocrm:10", "sale", "2026-05-07T10:00:00Z", "deal:amocrm:10", "100000.00", source="crm",
              deal_id="10", stage_kind="won"),
        _conv(p, "sale:deal:amocrm:12", "sale", "2026-05-08T10:00:00Z", "deal:amocrm:12", "80000.00", source="crm",
              deal_id="12", stage_kind="won"),
        _conv(p, "sale:payment:stripe:x", "sale", "2026-05-10T10:00:00Z", "payment:stripe:x", "5000.00",
              source="payment"),
    ])
    return p


MAY = (date(2026, 5, 1), date(2026, 5, 31))


def _steps(out):
    return {r["channel"]: (r["visits"], r["leads"], r["deals"], r["sales"]) for r in out["rows"]}


def test_funnel_by_channel_credits_every_step_to_the_persons_last_non_direct_visit(wh, crm_shop):
    out = _run(wh, "funnel", crm_shop, *MAY)
    # repeat leads (a person's lead within 30 days after their previous one) count nothing: P1's May 3
    # form L1 repeats the April 20 form, and L4 (the CRM deal made from it) repeats L1; P2's offline L6
    # repeats the form L2 of two hours before
    assert _steps(out) == {
        "Paid Search": (1, 0, 1, 1),     # no lead of P1's counts in May (the direct visit between is skipped); deal 10, its sale
        "Paid Social": (2, 2, 1, 1),     # L2, L3 (the call's person); deal 12 won at once; its sale
        "Direct": (1, 0, 0, 0),
        "Organic Search": (1, 0, 0, 0),
        "Email": (1, 1, 0, 0),           # L7: the chat's person visited from the newsletter
        "(unattributed)": (0, 1, 0, 1),  # L5 (deal 11 was lost: not a deal), the walk-in payment's sale
    }
    rows = {r["channel"]: r for r in out["rows"]}
    assert (rows["Paid Search"]["visit_to_lead"], rows["Paid Search"]["lead_to_deal"],
            rows["Paid Search"]["deal_to_sale"], rows["Paid Search"]["lead_to_sale"]) == (0.0, None, 1.0, None)
    assert rows["Paid Social"]["lead_to_deal"] == 0.5 and rows["Direct"]["lead_to_deal"] is None
    assert out["total"] == {"visits": 6, "leads": 4, "deals": 2, "sales": 3, "visit_to_lead": 0.6667,
                            "lead_to_deal": 0.5, "deal_to_sale": 1.5, "lead_to_sale": 0.75}
    # with the rule off every lead counts
    assert _steps(_run(wh, "funnel", crm_shop, *MAY, lead_repeat_days=0))["Paid Search"] == (1, 2, 1, 1)


def test_funnel_follows_the_model_and_the_lookback(wh, crm_shop):
    last = _steps(_run(wh, "funnel", crm_shop, *MAY, model="last_touch"))
    assert last["Direct"] == (1, 0, 1, 1) and last["Paid Search"] == (1, 0, 0, 0)  # P1's direct visit is the last
    short = _steps(_run(wh, "funnel", crm_shop, *MAY, lookback_days=1))
    # a day back: L4 (May 3 11:00) still sees May 3's direct visit only; deal 10 (May 4 10:00) sees it too,
    # and its sale (May 7) sees nothing; P3's deal and sale (May 8) and L7's chat (May 6, email May 5 09:00) neither
    assert short["Direct"] == (1, 0, 1, 0) and short["Email"] == (1, 0, 0, 0)
    assert short["(unattributed)"] == (0, 2, 1, 3)


def test_reconciliation_puts_ad_platform_collector_and_crm_counts_side_by_side(wh, crm_shop):
    out = _run(wh, "reconciliation", crm_shop, *MAY)
    got = {r["channel"]: (r["ad_platforms"], r["collector"], r["crm"], r["ad_platforms_minus_collector"],
                          r["crm_minus_collector"], r["collector_not_in_crm"], r["crm_not_in_collector"])
           for r in out["rows"]}
    assert got == {
        "Paid Search": (0, 1, 1, -1, 0, 0, 0),      # L1 and L4 are one person: matched
        "Paid Social": (1, 2, 0, -1, -2, 2, 0),     # L6 reported by Instagram; L2, L3 never reached the CRM
        "Email": (0, 1, 0, -1, -1, 1, 0),
        "(unattributed)": (0, 0, 1, 0, 1, 0, 1),    # L5: a CRM lead the site never saw
    }
    assert out["total"] == {"ad_platforms": 1, "collector": 4, "crm": 2, "ad_platforms_minus_collector": -3,
                            "crm_minus_collector": -2, "collector_not_in_crm": 3, "crm_not_in_collector": 1}
    # counts, not credit: the model does not change it
    assert _run(wh, "reconciliation", crm_shop, *MAY, model="first_touch")["rows"] == out["rows"]


@pytest.mark.parametrize("name, total", [
    ("cohorts", {"customers": 0, "buyers": 0, "revenue": "0.00", "revenue_per_customer": None, "unconverted": 0}),
    ("ltv", {"customers": 0, "purchases": 0, "revenue": "0.00", "ltv": None, "repeat_customers": 0,
             "repeat_share": None, "spend": "0.00", "cac": None, "payback": None, "unconverted": 0}),
    ("funnel", {"visits": 0, "leads": 0, "deals": 0, "sales": 0, "visit_to_lead": None, "lead_to_deal": None,
                "deal_to_sale": None, "lead_to_sale": None}),
    ("reconciliation", {"ad_platforms": 0, "collector": 0, "crm": 0, "ad_platforms_minus_collector": 0,
                        "crm_minus_collector": 0, "collector_not_in_crm": 0, "crm_not_in_collector": 0}),
])
def test_an_empty_project_has_no_rows_and_a_zero_total(wh, name, total):
    out = _run(wh, name, "nobody", *Q1)
    assert out["rows"] == [] and out["total"] == total
