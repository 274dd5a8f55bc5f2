-- The channel report: visits, leads, sales, revenue and spend per channel (or per source or campaign:
-- {group_by}), with the metrics a business reads, and the total row from the same snapshot
-- (GROUPING SETS). Conversions are credited at query time by {model} (any of the six rule-based
-- models, see _credited.sql) over the person's touches in the {lookback} days before the
-- conversion; conversions with no touch go to the "(unattributed)" row. Leads and sales are sums of
-- credited weights (fractional under linear, time_decay, position_based). Revenue and spend in
-- {currency} as _money.sql defines them; money with no rate is counted in `unconverted`. Ratios
-- are fractions (roi 7.0 = 700%); money is exact decimal. ROMI = (revenue * {margin} - spend) /
-- spend, only when a margin is given.
WITH
--@include _credited.sql
    ,
--@include _money.sql
    ,
    parts AS (
        -- visits: one branch per grouping (a constant-false branch reads nothing; grouping by the
        -- column itself keeps LowCardinality's fast path)
        SELECT toString(channel) AS group_key,
               count() AS visits, toDecimal128(0, 18) AS lead_w, toDecimal128(0, 18) AS sale_w,
               toDecimal128(0, 6) AS revenue, toDecimal128(0, 6) AS spend, toDecimal128(0, 18) AS unconverted
        FROM touches FINAL
        WHERE project = {project:String} AND {group_by:String} = 'channel'
          AND started_at >= {from:DateTime64(3, 'UTC')} AND started_at < {to:DateTime64(3, 'UTC')}
          AND NOT is_bot
        GROUP BY channel
        UNION ALL
        SELECT toString(source), count(), toDecimal128(0, 18), toDecimal128(0, 18), toDecimal128(0, 6),
               toDecimal128(0, 6), toDecimal128(0, 18)
        FROM touches FINAL
        WHERE project = {project:String} AND {group_by:String} = 'source'
          AND started_at >= {from:DateTime64(3, 'UTC')} AND started_at < {to:DateTime64(3, 'UTC')}
          AND NOT is_bot
        GROUP BY source
        UNION ALL
        SELECT campaign, count(), toDecimal128(0, 18), toDecimal128(0, 18), toDecimal128(0, 6), toDecimal128(0, 6),
               toDecimal128(0, 18)
        FROM touches FINAL
        WHERE project = {project:String} AND {group_by:String} = 'campaign'
          AND started_at >= {from:DateTime64(3, 'UTC')} AND started_at < {to:DateTime64(3, 'UTC')}
          AND NOT is_bot
        GROUP BY campaign
        UNION ALL
        SELECT label, 0, sumIf(weight, kind = 'lead'), sumIf(weight, kind = 'sale'), sum(money), toDecimal128(0, 6),
               sumIf(weight, NOT converted)  -- a conversion's weights sum to 1: conversions left out
        FROM credited_money  -- label: the touch's {group_by}, or '(unattributed)'
        GROUP BY label
        UNION ALL
        SELECT multiIf({group_by:String} = 'source', source, {group_by:String} = 'campaign', campaign, channel)
                   AS group_key,
               0, toDecimal128(0, 18), toDecimal128(0, 18), toDecimal128(0, 6), sum(money),
               toDecimal128(countIf(NOT converted), 18)
        FROM spend_rows
        GROUP BY group_key
    ),
    -- a margin 0..1 for ROMI (checked by reports.py); '' = none
    toDecimal128OrNull({margin:String}, 6) AS margin
SELECT
    grouping(group_key) AS is_total,
    if(group_key = '', '(none)', group_key) AS key,  -- reports.py names it after {group_by}
--@include _metrics.sql
FROM parts
GROUP BY GROUPING SETS ((group_key), ())
ORDER BY is_total, revenue DESC, visits DESC, group_key
