-- Shared fragment (not a report): the live credits summed, from the live aggregates (live_money,
-- migration 0014), as the CTE `credited` in the shape _credited.sql gives (conversion_id, kind, at,
-- currency, model, touch_id, label, weight, amount): one row per hour, currency, model, label and
-- kind (lead: the leads' weights; sale: the sales' weights and values; payment: the weights and
-- amounts of payments and refunds). reports.py puts it in place of the query-time attribution when
-- the live credits would answer (_credits_live.sql, the same rules and coverage) and the range is
-- made of whole UTC hours; the channels and models reports only sum what `credited` holds, so they
-- give the same numbers from a few rows per hour instead of one per credit. Not when money in
-- another currency has a rate to {currency}: a conversion truncates each credit's amount, which a
-- sum cannot (reports.py reads the credits then). The unattributed credit is the channel
-- '(unattributed)' (the live stage's only credit without a touch that counts).
    credited AS (
        SELECT '' AS conversion_id, k.1 AS kind, hour AS at, currency, model, '' AS touch_id, label,
               k.2 AS weight, k.3 AS amount
        FROM (
            SELECT hour, currency, model,
                   multiIf(channel = '(unattributed)', '(unattributed)',
                           {label:String} = 'channel', toString(channel),
                           {label:String} = 'source', toString(source),
                           campaign) AS label,
                   sum(leads) AS lw, sum(sales) AS sw, sum(sales_value) AS sv, sum(payments) AS pw, sum(revenue) AS pv
            FROM live_money
            WHERE project = {project:String} AND model IN {models:Array(String)}
              AND hour >= {from:DateTime64(3, 'UTC')} AND hour < {to:DateTime64(3, 'UTC')}
            GROUP BY hour, currency, model, label
        )
        ARRAY JOIN [tuple('lead', lw, toDecimal128(0, 6)), tuple('sale', sw, sv), tuple('payment', pw, pv)] AS k
        WHERE k.2 != 0 OR k.3 != 0
    )
