-- Cohorts: the customers whose FIRST purchase ever falls in the range, grouped by the month of that
-- purchase and by their first-touch channel (the person's earliest non-bot visit before it, however
-- long ago; no visit -> "(unattributed)"), with their revenue in each month since: month 0 is the
-- month of the first purchase, 1 the next calendar month, and so on up to the end of the range.
-- Months are the project's (time zone {tz}).
-- People are identity_map persons: the latest version of an identifier's row, else the identifier
-- is its own person ('p_' + 16 hex of its SHA-256); a conversion's identifier is its subject (rows
-- written before subject existed: its visitor's anon id; with no visitor either, the conversion
-- itself, so such rows never share one blank person), a visit's is 'anon:' + its visitor.
-- A purchase is a payment (a sale when the project has no payment in the range); revenue is
-- payments + refunds, or sales' values, in {currency} (rates from /api/rates; money without a rate
-- is left out and counted in `unconverted`). customers is the cohort's size on every row of the
-- cohort; buyers the customers who purchased in that month.
WITH
--@include _idm.sql
--@include _purchases.sql
    customers AS (
        SELECT person, min(at) AS first_at
        FROM money
        WHERE kind != 'refund'
        GROUP BY person
        HAVING first_at >= {from:DateTime64(3, 'UTC')}
    ),
    members AS (
        SELECT c.person AS person, c.first_at AS first_at,
               if(f.person != '' AND f.first_seen <= c.first_at, toString(f.channel), '(unattributed)') AS channel
        FROM customers AS c
        LEFT JOIN first_touch AS f ON f.person = c.person
    ),
    cells AS (
        SELECT formatDateTime(m.first_at, '%Y-%m', {tz:String}) AS cohort, m.channel AS channel,
               toUInt32(dateDiff('month', toStartOfMonth(m.first_at, {tz:String}),
                                 toStartOfMonth(x.at, {tz:String}))) AS month,
               m.person AS person, x.kind AS kind, x.amount AS amount, x.converted AS converted,
               uniqExact(m.person) OVER (PARTITION BY cohort, channel) AS cohort_size
        FROM members AS m
        INNER JOIN money AS x ON x.person = m.person
        WHERE x.at >= m.first_at
    )
SELECT
    toUInt8(grouping(cohort, channel, month) != 0) AS is_total,
    cohort,
    channel,
    month,
    if(is_total, uniqExact(person), any(cohort_size)) AS customers,
    uniqExactIf(person, kind != 'refund') AS buyers,
    toDecimal128(round(sum(amount), 2), 2) AS revenue,
    -- divided at 6 decimals, then rounded half away from zero: Decimal division truncates
    if(customers > 0, toDecimal128(round(toDecimal128(revenue, 6) / customers, 2), 2), NULL) AS revenue_per_customer,
    countIf(NOT converted) AS unconverted
FROM cells
GROUP BY GROUPING SETS ((cohort, channel, month), ())
ORDER BY is_total, cohort, channel, month
