-- Path aggregates, the input of the paths and datadriven reports (post-processed in Python by
-- clickhouse/datadriven.py). One row per distinct path (an array of channels):
--   conversions, value: conversions of {kind} ('sale', or 'lead') in [from, to) whose person's
--     non-bot touches in [at - {lookback} days, at], ordered by (time, touch_id), are that path; an
--     empty path = no touch in the window (the "(unattributed)" row). value in {currency} (other
--     currencies by the day's rate; without one it counts 0 and in `unconverted`).
--   nulls: persons with a touch in the range and no such conversion in it, whose touches in the
--     last {lookback} days of the range (the window a converting path gets) are that path.
--   touches, days: of the converting journeys, summed: touches before any collapse, and days from
--     the first touch to the conversion.
-- {collapse} = 1 folds consecutive repeats (A > A > B is A > B); 0 keeps paths as touched.
-- Persons follow the identity contract (migration 0007): an identifier's person is its identity_map
-- row with the highest version, else 'p_' + the first 16 hex digits of its SHA-256. A touch's
-- identifier is anon:<anonymous_id>; a conversion's is its subject (anon:<anonymous_id> when empty).
WITH
    ids AS (
        SELECT identifier, argMax(person_id, version) AS person_id
        FROM identity_map
        WHERE project = {project:String}
        GROUP BY identifier
    ),
    rates AS (
        SELECT currency, day, rate FROM currency_rates FINAL
        WHERE project = {project:String} AND base = {currency:String}
    ),
    conv AS (
        SELECT c.conversion_id AS conversion_id, c.at AS at, c.person AS person,
               multiIf(c.currency IN ({currency:String}, ''), toDecimal128(c.value, 6),
                       r.rate > 0, toDecimal128(c.value * r.rate, 6), toDecimal128(0, 6)) AS money,
               c.currency IN ({currency:String}, '') OR r.rate > 0 AS converted
        FROM (
            SELECT cv.conversion_id AS conversion_id, cv.at AS at, cv.value AS value, cv.currency AS currency,
                   -- a conversion that names no one (no subject, no visitor) has no path
                   multiIf(cv.ident = 'anon:', '', i.person_id != '', i.person_id,
                           'p_' || substring(lower(hex(SHA256(cv.ident))), 1, 16)) AS person
            FROM (
                SELECT conversion_id, at, value, currency, if(subject != '', subject, 'anon:' || anonymous_id) AS ident
                FROM conversions FINAL
                WHERE project = {project:String} AND kind = {kind:String}
                  AND at >= {from:DateTime64(3, 'UTC')} AND at < {to:DateTime64(3, 'UTC')}
            ) AS cv
            LEFT JOIN ids AS i ON i.identifier = cv.ident
        ) AS c
        ASOF LEFT JOIN rates AS r ON c.currency = r.currency AND toDate(c.at, {tz:String}) >= r.day
    ),
    tch AS (
        SELECT if(i.person_id != '', i.person_id, 'p_' || substring(lower(hex(SHA256(t.ident))), 1, 16)) AS person,
               t.started_at AS started_at, t.touch_id AS touch_id, t.channel AS channel
        FROM (
            SELECT 'anon:' || anonymous_id AS ident, started_at, touch_id, toString(channel) AS channel
            FROM touches FINAL
            WHERE project = {project:String} AND NOT is_bot AND anonymous_id != ''
              AND started_at >= {from:DateTime64(3, 'UTC')} - toIntervalDay({lookback:UInt32})
              AND started_at < {to:DateTime64(3, 'UTC')}
        ) AS t
        LEFT JOIN ids AS i ON i.identifier = t.ident
    ),
    conv_paths AS (
        SELECT c.conversion_id AS conversion_id, any(c.at) AS at, any(c.money) AS money, any(c.converted) AS converted,
               arraySort(groupArrayIf((t.started_at, t.touch_id, t.channel),
                                      t.started_at <= c.at
                                      AND t.started_at >= c.at - toIntervalDay({lookback:UInt32}))) AS ts
        FROM conv AS c
        LEFT JOIN tch AS t ON t.person = c.person
        GROUP BY c.conversion_id
    ),
    null_paths AS (
        SELECT arraySort(groupArrayIf((started_at, touch_id, channel),
                                      started_at >= {to:DateTime64(3, 'UTC')} - toIntervalDay({lookback:UInt32}))) AS ts
        FROM tch
        WHERE person NOT IN (SELECT person FROM conv)
        GROUP BY person
        HAVING max(started_at) >= {from:DateTime64(3, 'UTC')} AND notEmpty(ts)
    ),
    journeys AS (
        SELECT arrayMap(x -> tupleElement(x, 3), ts) AS touched, 1 AS conversions, money, NOT converted AS unconverted,
               0 AS nulls, length(ts) AS touches,
               if(empty(ts), 0., (toUnixTimestamp64Milli(at) - toUnixTimestamp64Milli(tupleElement(ts[1], 1))) / 86400000.) AS days
        FROM conv_paths
        UNION ALL
        SELECT arrayMap(x -> tupleElement(x, 3), ts), 0, toDecimal128(0, 6), 0, 1, 0, 0.
        FROM null_paths
    )
SELECT
    if({collapse:UInt8}, arrayFilter((c, i) -> i = 1 OR c != touched[i - 1], touched, arrayEnumerate(touched)), touched) AS path,
    sum(conversions) AS conversions,
    sum(money) AS value,
    sum(nulls) AS nulls,
    sum(touches) AS touches,
    sum(days) AS days,
    sum(unconverted) AS unconverted
FROM journeys
GROUP BY path
ORDER BY conversions DESC, nulls DESC, path
