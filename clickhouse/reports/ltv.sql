-- LTV by first-touch channel: the customers whose first purchase ever falls in the range (new
-- customers), grouped by the channel of their earliest non-bot visit before that purchase (no visit
-- -> "(unattributed)"), with everything they paid from then to the end of the range:
--   ltv = revenue / customers; repeat_share = customers with 2+ purchases / customers;
--   cac = the channel's spend in the range / its new customers; payback = ltv / cac (= revenue /
--   spend: how many times the acquisition cost came back; 2.6 = 260%).
-- People, purchases, revenue and currencies follow cohorts.sql (identity_map persons; payments +
-- refunds, or sales' values when the project has no payment in the range). Spend: _spend.sql (the
-- latest import of each day and source), as in the channel report.
WITH
--@include _idm.sql
--@include _purchases.sql
    -- per person over everything up to the end of the range; new customers are filtered below
    buyers AS (
        SELECT person, minIf(at, kind != 'refund') AS first_at, countIf(kind != 'refund') AS purchases,
               sum(amount) AS revenue, countIf(NOT converted) AS unconverted
        FROM money
        GROUP BY person
        HAVING purchases > 0 AND first_at >= {from:DateTime64(3, 'UTC')}
    ),
--@include _spend.sql
    ,
    parts AS (
        SELECT if(f.person != '' AND f.first_seen <= b.first_at, toString(f.channel), '(unattributed)') AS channel,
               1 AS customers, b.purchases AS purchases, b.purchases >= 2 AS repeat,
               toDecimal128(b.revenue, 6) AS revenue, toDecimal128(0, 6) AS spend, b.unconverted AS unconverted
        FROM buyers AS b
        LEFT JOIN first_touch AS f ON f.person = b.person
        UNION ALL
        SELECT toString(channel), 0, 0, 0, toDecimal128(0, 6), money, toUInt64(NOT converted)
        FROM spend_rows
    )
SELECT
    grouping(channel) AS is_total,
    channel,
    sum(customers) AS customers,
    sum(purchases) AS purchases,
    toDecimal128(round(sum(revenue), 2), 2) AS revenue,
    -- divisions at 6 decimals, then rounded half away from zero: Decimal division truncates
    if(customers > 0, toDecimal128(round(toDecimal128(revenue, 6) / customers, 2), 2), NULL) AS ltv,
    sum(repeat) AS repeat_customers,
    if(customers > 0, round(repeat_customers / customers, 4), NULL) AS repeat_share,
    toDecimal128(round(sum(spend), 2), 2) AS spend,
    if(customers > 0, toDecimal128(round(toDecimal128(spend, 6) / customers, 2), 2), NULL) AS cac,
    if(customers > 0 AND spend > 0, toFloat64(round(toDecimal128(revenue, 6) / spend, 4)), NULL) AS payback,
    sum(unconverted) AS unconverted  -- money rows left out: no rate to the report currency
FROM parts
GROUP BY GROUPING SETS ((channel), ())
ORDER BY is_total, revenue DESC, spend DESC, channel
