-- The live channel report: what the processors' live credits say, per channel, read from the
-- latest snapshot of live_channel_daily (refreshed every 5 s; the last 100 days). The same
-- numbers as the `channels` report computes at query time for the same model, range and data
-- (tests/integration/test_live_equals_query_time.py). Leads and sales are sums of credit weights
-- (fractional under linear, time_decay, position_based); revenue = payments + refunds in
-- {currency}, or sales' values when the range has no payment; money in other currencies is
-- counted in `unconverted` (the query-time report converts it by the day's rate). Days are the
-- view's UTC days ({day_from} to {day_to}), also for a project in another time zone.
WITH
    (SELECT max(refreshed_at) FROM live_channel_daily) AS snapshot,
    live AS (
        SELECT channel, visits AS visited, leads AS lead_weight, sales AS sale_weight, sales_value AS sold,
               revenue AS paid, currency
        FROM live_channel_daily
        WHERE refreshed_at = snapshot AND project = {project:String} AND model = {model:String}
          AND day >= {day_from:Date} AND day <= {day_to:Date}
    ),
    (SELECT countIf(paid != 0) > 0 FROM live) AS has_payments
SELECT
    grouping(channel) AS is_total,
    channel,
    sum(visited) AS visits,
    toDecimal128(round(sum(lead_weight), 4), 4) AS leads,
    toDecimal128(round(sum(sale_weight), 4), 4) AS sales,
    toDecimal128(round(sumIf(if(has_payments, paid, sold), currency IN ({currency:String}, '')), 2), 2) AS revenue,
    countIf(currency NOT IN ({currency:String}, '') AND (paid != 0 OR sold != 0)) AS unconverted,
    max(snapshot) AS refreshed_at
FROM live
GROUP BY GROUPING SETS ((channel), ())
ORDER BY is_total, revenue DESC, visits DESC, channel
