-- Not a report: do the live credits cover the range? The conversions that get credits (leads, sales,
-- payments, refunds) of [{from}, {to}) against the conversions that have live credits there (any
-- version, model {model}: every version holds every model), as (count, sum of id hashes). Equal:
-- the live stage has credited every conversion of the range, and none of its credits there belong
-- to a conversion that has moved out of it (a changed time); and `stale` = 0: no replay has changed
-- the rules since the live credits were written (migration 0011). reports.py then reads the live
-- credits (_credits_live.sql) instead of crediting at query time.
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
    (SELECT tuple(argMax(stale, at), argMax(why, at)) FROM live_credits_state WHERE project = {project:String}) AS stale
