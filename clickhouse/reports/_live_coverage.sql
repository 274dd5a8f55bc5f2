-- Not a report: do the live credits cover the range? The conversions that get credits (leads, sales,
-- payments, refunds) of [{from}, {to}) against the conversions that have live credits there (any
-- version, model {model}: every version holds every model), as (count, sum of id hashes). Equal:
-- the live stage has credited every conversion of the range, and none of its credits there belong
-- to a conversion that has moved out of it (a changed time); and `stale` = 0: no replay has changed
-- the rules since the live credits were written (migration 0011). reports.py then reads the live
-- credits instead of crediting at query time: their sums (_credits_aggregated.sql) unless
-- `foreign_money` = 1: the range's live money has revenue or sales in another currency than
-- {currency} with a rate to it (converted per credit: _credits_live.sql).
SELECT
    (SELECT tuple(count(), sum(cityHash64(conversion_id)))
     FROM conversions FINAL
     WHERE project = {project:String} AND kind IN ('lead', 'sale', 'payment', 'refund')
       AND at >= {from:DateTime64(3, 'UTC')} AND at < {to:DateTime64(3, 'UTC')}) AS wanted,
    (SELECT tuple(count(), sum(cityHash64(conversion_id)))
     FROM (SELECT DISTINCT conversion_id FROM credits
           WHERE project = {project:String} AND model = {model:String}
             AND kind IN ('lead', 'sale', 'payment', 'refund')
             AND conversion_at >= {from:DateTime64(3, 'UTC')} AND conversion_at < {to:DateTime64(3, 'UTC')})) AS credited,
    (SELECT max(emitted_at) FROM credits WHERE project = {project:String}) AS credited_at,
    (SELECT tuple(argMax(stale, at), argMax(why, at)) FROM live_credits_state WHERE project = {project:String}) AS stale,
    (SELECT count() > 0 FROM live_money
     WHERE project = {project:String} AND model = {model:String}
       AND hour >= {from:DateTime64(3, 'UTC')} AND hour < {to:DateTime64(3, 'UTC')}
       AND currency NOT IN ('', {currency:String}) AND (revenue != 0 OR sales_value != 0)
       AND currency IN (SELECT currency FROM currency_rates
                        WHERE project = {project:String} AND base = {currency:String})) AS foreign_money
