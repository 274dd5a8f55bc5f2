-- The live channel report: what the processors' live credits say, per channel, read from the live
-- aggregates (live_money, live_visits: migration 0014, kept exact by the sink on every batch, no
-- horizon). The same numbers as the `channels` report computes at query time for the same model,
-- range and data (tests/integration/test_demo_load.py). Leads and sales are sums of credit weights
-- (fractional under linear, time_decay, position_based); revenue = payments + refunds in
-- {currency}, or sales' values when the range has no payment; money in other currencies is left
-- out and its credited share counted in `unconverted` (the query-time report converts it by the
-- day's rate). The range [{from}, {to}) is the project's days as UTC instants (reports.py: whole
-- UTC hours, the aggregates' buckets; in a time zone off by a fraction of an hour, UTC days).
WITH
    money AS (
        SELECT channel, currency, sum(leads) AS lead_weight, sum(sales) AS sale_weight, sum(sales_value) AS sold,
               sum(revenue) AS paid, sum(payments) AS paid_weight
        FROM live_money
        WHERE project = {project:String} AND model = {model:String}
          AND hour >= {from:DateTime64(3, 'UTC')} AND hour < {to:DateTime64(3, 'UTC')}
        GROUP BY channel, currency
    ),
    (SELECT countIf(paid_weight != 0) > 0 FROM money) AS has_payments,
    parts AS (
        SELECT toString(channel) AS ch, sum(visits) AS visited, toDecimal128(0, 18) AS lw, toDecimal128(0, 18) AS sw,
               toDecimal128(0, 6) AS money, toDecimal128(0, 18) AS unconverted_w
        FROM live_visits
        WHERE project = {project:String}
          AND hour >= {from:DateTime64(3, 'UTC')} AND hour < {to:DateTime64(3, 'UTC')}
        GROUP BY channel
        UNION ALL
        SELECT toString(channel), 0, lead_weight, sale_weight,
               if(currency IN ({currency:String}, ''), if(has_payments, paid, sold), toDecimal128(0, 6)),
               if(currency IN ({currency:String}, ''), toDecimal128(0, 18), if(has_payments, paid_weight, sale_weight))
        FROM money
    )
SELECT
    grouping(ch) AS is_total,
    ch AS channel,
    sum(visited) AS visits,
    toDecimal128(round(sum(lw), 4), 4) AS leads,
    toDecimal128(round(sum(sw), 4), 4) AS sales,
    toDecimal128(round(sum(money), 2), 2) AS revenue,
    toFloat64(round(sum(unconverted_w), 4)) AS unconverted
FROM parts
GROUP BY GROUPING SETS ((ch), ())
HAVING is_total = 1 OR visits != 0 OR leads != 0 OR sales != 0 OR revenue != 0 OR unconverted != 0
ORDER BY is_total, revenue DESC, visits DESC, channel
