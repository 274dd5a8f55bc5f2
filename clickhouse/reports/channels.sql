-- The channel report: visits, leads, sales, revenue and spend per channel, with the metrics a
-- business reads, and the total row from the same snapshot (GROUPING SETS). Conversions are
-- credited at query time by {model}: first_touch, last_touch or last_non_direct (the Yandex
-- Metrica / GA default: the last touch that was not a direct visit, else the last touch) over the
-- visitor's touches in the {lookback} days before the conversion; conversions with no touch go to
-- the "(unattributed)" row. Revenue = payments + refunds in {currency} (other currencies converted
-- by the day's rate from /api/rates; without one they are counted in `unconverted`); a project with no payment
-- in the period takes revenue from its sales' values instead. Spend: the latest import of each
-- (day, source). Ratios are fractions (roi 7.0 = 700%); money is exact decimal.
WITH
    conv_found AS (
        SELECT conversion_id, kind, at, value, currency, anonymous_id, tracking_number
        FROM conversions FINAL
        WHERE project = {project:String}
          AND at >= {from:DateTime64(3, 'UTC')} AND at < {to:DateTime64(3, 'UTC')}
          AND kind IN ('lead', 'sale', 'payment', 'refund')
    ),
    -- a call carries no visitor: the visitor is whoever was shown the dialled number at that moment
    -- (only those conversions go through the lease join; CTEs are inlined, so `conv` stays cheap)
    conv AS (
        SELECT conversion_id, kind, at, value, currency, anonymous_id
        FROM conv_found
        WHERE anonymous_id != '' OR tracking_number = ''
        UNION ALL
        SELECT c.conversion_id AS conversion_id, any(c.kind) AS kind, any(c.at) AS at, any(c.value) AS value,
               any(c.currency) AS currency,
               argMaxIf(l.anonymous_id, l.started_at, l.lease_id != '' AND c.at >= l.started_at
                                                      AND c.at <= l.matches_until) AS anonymous_id
        FROM (SELECT * FROM conv_found WHERE anonymous_id = '' AND tracking_number != '') AS c
        LEFT JOIN (SELECT lease_id, tracking_number, anonymous_id, started_at, matches_until
                   FROM leases FINAL
                   WHERE project = {project:String}
                     AND started_at < {to:DateTime64(3, 'UTC')}
                     AND matches_until >= {from:DateTime64(3, 'UTC')}) AS l
            ON l.tracking_number = c.tracking_number
        GROUP BY c.conversion_id
    ),
    tch AS (
        SELECT anonymous_id, started_at, channel, source != '(direct)' AS non_direct
        FROM touches FINAL
        WHERE project = {project:String}
          AND started_at >= {from:DateTime64(3, 'UTC')} - toIntervalDay({lookback:UInt32})
          AND started_at < {to:DateTime64(3, 'UTC')}
          AND NOT is_bot
          AND anonymous_id IN (SELECT anonymous_id FROM conv_found WHERE anonymous_id != ''
                               UNION ALL
                               SELECT anonymous_id FROM leases WHERE project = {project:String})
    ),
    credited AS (
        SELECT
            c.conversion_id AS conversion_id,
            any(c.kind) AS kind,
            any(c.at) AS at,
            any(c.value) AS value,
            any(c.currency) AS currency,
            multiIf(
                countIf((t.anonymous_id != '' AND t.started_at <= c.at
                         AND t.started_at >= c.at - toIntervalDay({lookback:UInt32})) AS in_window) = 0, '(unattributed)',
                {model:String} = 'first_touch', argMinIf(t.channel, t.started_at, in_window),
                {model:String} = 'last_touch', argMaxIf(t.channel, t.started_at, in_window),
                argMaxIf(t.channel, (t.non_direct, t.started_at), in_window)) AS channel
        FROM conv AS c
        LEFT JOIN tch AS t ON t.anonymous_id = c.anonymous_id
        GROUP BY c.conversion_id
    ),
    -- money in another currency: the latest {currency}/X rate on or before its day; none -> unconverted
    rates AS (
        SELECT currency, day, rate FROM currency_rates FINAL
        WHERE project = {project:String} AND base = {currency:String}
    ),
    credited_money AS (
        SELECT c.channel AS channel, c.kind AS kind,
               multiIf(c.currency IN ({currency:String}, ''), toDecimal128(c.value, 6),
                       r.rate > 0, toDecimal128(c.value * r.rate, 6), toDecimal128(0, 6)) AS money,
               c.currency IN ({currency:String}, '') OR r.rate > 0 AS converted
        FROM credited AS c
        ASOF LEFT JOIN rates AS r ON c.currency = r.currency AND toDate(c.at) >= r.day
    ),
    spend_rows AS (
        SELECT s.channel AS channel,
               multiIf(s.currency = {currency:String}, toDecimal128(s.cost, 6),
                       r.rate > 0, toDecimal128(s.cost * r.rate, 6), toDecimal128(0, 6)) AS money,
               s.currency = {currency:String} OR r.rate > 0 AS converted
        FROM (
            SELECT channel, day, cost, currency FROM ad_spend FINAL
            WHERE project = {project:String}
              AND day >= toDate({from:DateTime64(3, 'UTC')}) AND day < toDate({to:DateTime64(3, 'UTC')})
              AND (day, source, import_id) IN (
                  SELECT day, source, argMax(import_id, imported_at)
                  FROM ad_spend FINAL
                  WHERE project = {project:String}
                    AND day >= toDate({from:DateTime64(3, 'UTC')}) AND day < toDate({to:DateTime64(3, 'UTC')})
                  GROUP BY day, source)
        ) AS s
        ASOF LEFT JOIN rates AS r ON s.currency = r.currency AND s.day >= r.day
    ),
    (SELECT count() > 0 FROM conv_found WHERE kind IN ('payment', 'refund')) AS has_payments,
    parts AS (
        SELECT channel, count() AS visits, 0 AS leads, 0 AS sales,
               toDecimal128(0, 6) AS revenue, toDecimal128(0, 6) AS spend, 0 AS unconverted
        FROM touches FINAL
        WHERE project = {project:String}
          AND started_at >= {from:DateTime64(3, 'UTC')} AND started_at < {to:DateTime64(3, 'UTC')}
          AND NOT is_bot
        GROUP BY channel
        UNION ALL
        SELECT channel, 0, countIf(kind = 'lead'), countIf(kind = 'sale'),
               sumIf(money, if(has_payments, kind IN ('payment', 'refund'), kind = 'sale')),
               toDecimal128(0, 6),
               countIf(NOT converted AND if(has_payments, kind IN ('payment', 'refund'), kind = 'sale'))
        FROM credited_money
        GROUP BY channel
        UNION ALL
        SELECT channel, 0, 0, 0, toDecimal128(0, 6), sum(money), countIf(NOT converted)
        FROM spend_rows
        GROUP BY channel
    )
SELECT
    grouping(channel) AS is_total,
    channel,
    sum(visits) AS visits,
    sum(leads) AS leads,
    sum(sales) AS sales,
    if(leads > 0, round(sales / leads, 4), NULL) AS conversion,
    toDecimal128(round(sum(revenue), 2), 2) AS revenue,
    toDecimal128(round(sum(spend), 2), 2) AS spend,
    -- divisions at 6 decimals, then rounded half away from zero: Decimal division truncates
    if(leads > 0, toDecimal128(round(toDecimal128(spend, 6) / leads, 2), 2), NULL) AS cpl,
    if(sales > 0, toDecimal128(round(toDecimal128(spend, 6) / sales, 2), 2), NULL) AS cpo,
    if(spend > 0, toFloat64(round((toDecimal128(revenue, 6) - spend) / spend, 4)), NULL) AS roi,
    if(sales > 0, toDecimal128(round(toDecimal128(revenue, 6) / sales, 2), 2), NULL) AS average_check,
    sum(unconverted) AS unconverted  -- money rows left out: no rate to the report currency
FROM parts
GROUP BY GROUPING SETS ((channel), ())
ORDER BY is_total, revenue DESC, visits DESC, channel
