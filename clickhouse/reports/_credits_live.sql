-- Shared fragment (not a report): the live credits as the CTE `credited`, in the shape _credited.sql
-- gives (conversion_id, kind, at, currency, model, touch_id, label, weight, amount). reports.py puts it
-- in place of the query-time attribution when the request asks what the live processors credit
-- (their lookback, repeat-lead rule and half-life, a label the credits carry) and the credits cover
-- every conversion of the range (_live_coverage.sql): then both give the same rows
-- (tests/clickhouse/test_live_credits_path.py), and this one reads ~1 row per conversion and model
-- instead of crediting every conversion over every touch again.
-- A conversion's credits are its rows of its highest version (as the view credits_current says):
-- every version holds rows of every model (a repeat lead's version one row per model, weight 0 and
-- amount 0: it counts nothing, so it gives no row here, like the query-time SQL).
    credited AS (
        SELECT conversion_id, kind, conversion_at AS at, currency, model, touch_id,
               multiIf(touch_id = '', '(unattributed)',  -- whatever the label, as the query-time SQL names it
                       {label:String} = 'channel', toString(channel),
                       {label:String} = 'source', toString(source),
                       {label:String} = 'campaign', campaign,
                       concat(channel, '\x1f', source, '\x1f', medium, '\x1f', campaign)) AS label,
               weight, amount
        FROM (
            SELECT conversion_id, kind, conversion_at, currency, model, touch_id, channel, source, medium, campaign,
                   weight, amount, version, max(version) OVER (PARTITION BY conversion_id) AS latest
            FROM credits FINAL
            WHERE project = {project:String} AND model IN {models:Array(String)}
              AND conversion_at >= {from:DateTime64(3, 'UTC')} AND conversion_at < {to:DateTime64(3, 'UTC')}
              AND kind IN ('lead', 'sale', 'payment', 'refund')
        )
        WHERE version = latest AND (weight != 0 OR amount != 0)
    )
