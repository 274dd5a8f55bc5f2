-- A WITH fragment (`--@include _person_touches.sql`, after _idm.sql): the non-bot visits that can be
-- credited in the range and lookback, each with its person (its visitor's 'anon:' identifier).
    tch AS (
        SELECT if(m.person_id != '', m.person_id,
                  concat('p_', substring(lower(hex(SHA256(concat('anon:', t.anonymous_id)))), 1, 16))) AS person,
               t.touch_id AS touch_id, t.started_at AS started_at, t.channel AS channel, t.non_direct AS non_direct
        FROM (
            SELECT anonymous_id, touch_id, started_at, channel, source != '(direct)' AS non_direct FROM touches FINAL
            WHERE project = {project:String} AND NOT is_bot
              AND started_at >= {from:DateTime64(3, 'UTC')} - toIntervalDay({lookback:UInt32})
              AND started_at < {to:DateTime64(3, 'UTC')}
        ) AS t
        LEFT JOIN idm AS m ON m.identifier = concat('anon:', t.anonymous_id)
    ),
