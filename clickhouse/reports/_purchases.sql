-- Shared by cohorts.sql and ltv.sql (included with `--@include _purchases.sql` inside their WITH):
-- (after _idm.sql) the report currency's rates, has_payments, and `money`: every
-- purchase and refund up to the end of the range (earlier ones decide who is new), with its
-- person and its amount in {currency}; and `first_touch`: each person's earliest non-bot visit
-- (time and channel) before the end of the range.
--@include _rates.sql
    money AS (
        SELECT c.at AS at, c.kind AS kind,
               if(m.person_id != '', m.person_id, concat('p_', substring(lower(hex(SHA256(c.ident))), 1, 16))) AS person,
               multiIf(c.currency IN ({currency:String}, ''), toDecimal128(c.value, 6),
                       r.rate > 0, toDecimal128(c.value * r.rate, 6), toDecimal128(0, 6)) AS amount,
               c.currency IN ({currency:String}, '') OR r.rate > 0 AS converted
        FROM (
            SELECT at, kind, value, currency,
                   multiIf(subject != '', subject, anonymous_id != '', concat('anon:', anonymous_id),
                           concat('conversion:', conversion_id)) AS ident
            FROM conversions FINAL
            WHERE project = {project:String} AND at < {to:DateTime64(3, 'UTC')}
              AND if(has_payments, kind IN ('payment', 'refund'), kind = 'sale')
        ) AS c
        LEFT JOIN idm AS m ON m.identifier = c.ident
        ASOF LEFT JOIN rates AS r ON c.currency = r.currency AND toDate(c.at, {tz:String}) >= r.day
    ),
    first_touch AS (
        SELECT if(m.person_id != '', m.person_id,
                  concat('p_', substring(lower(hex(SHA256(concat('anon:', t.anonymous_id)))), 1, 16))) AS person,
               min(t.started_at) AS first_seen,
               argMin(t.channel, (t.started_at, t.touch_id)) AS channel
        FROM (
            SELECT anonymous_id, touch_id, started_at, channel FROM touches FINAL
            WHERE project = {project:String} AND NOT is_bot AND started_at < {to:DateTime64(3, 'UTC')}
        ) AS t
        LEFT JOIN idm AS m ON m.identifier = concat('anon:', t.anonymous_id)
        GROUP BY person
    ),
