-- Model comparison: per channel (or source or campaign: {group_by}), the leads and the revenue
-- each rule-based model credits it with, side by side, and the total row (the same in every model:
-- money is conserved), from one snapshot. Credits at query time (_credited.sql, all six models in
-- one pass over the journeys); leads are sums of weights, revenue as in the channel report.
WITH
--@include _credited.sql
    ,
--@include _money.sql
SELECT
    grouping(label) AS is_total,
    if(grouping(label) = 1, '', if(label = '', '(none)', label)) AS key,  -- named after {group_by}
    toFloat64(round(sumIf(weight, kind = 'lead' AND model = 'first_touch'), 4)) AS leads_first_touch,
    toDecimal128(round(sumIf(money, model = 'first_touch'), 2), 2) AS revenue_first_touch,
    toFloat64(round(sumIf(weight, kind = 'lead' AND model = 'last_touch'), 4)) AS leads_last_touch,
    toDecimal128(round(sumIf(money, model = 'last_touch'), 2), 2) AS revenue_last_touch,
    toFloat64(round(sumIf(weight, kind = 'lead' AND model = 'last_non_direct'), 4)) AS leads_last_non_direct,
    toDecimal128(round(sumIf(money, model = 'last_non_direct'), 2), 2) AS revenue_last_non_direct,
    toFloat64(round(sumIf(weight, kind = 'lead' AND model = 'linear'), 4)) AS leads_linear,
    toDecimal128(round(sumIf(money, model = 'linear'), 2), 2) AS revenue_linear,
    toFloat64(round(sumIf(weight, kind = 'lead' AND model = 'time_decay'), 4)) AS leads_time_decay,
    toDecimal128(round(sumIf(money, model = 'time_decay'), 2), 2) AS revenue_time_decay,
    toFloat64(round(sumIf(weight, kind = 'lead' AND model = 'position_based'), 4)) AS leads_position_based,
    toDecimal128(round(sumIf(money, model = 'position_based'), 2), 2) AS revenue_position_based,
    -- payments left out for want of a rate (conversions' shares, per model; the same in every model)
    toFloat64(round(sumIf(weight, NOT converted AND model = 'last_non_direct'), 4)) AS unconverted
FROM credited_money
GROUP BY GROUPING SETS ((label), ())
ORDER BY is_total, revenue_last_non_direct DESC, key
