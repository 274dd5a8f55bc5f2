-- Visits per channel. A visit is a touch (one session once sessions land); bots are excluded.
SELECT
    channel,
    count() AS visits,
    uniqExact(anonymous_id) AS visitors
FROM touches FINAL
WHERE project = {project:String}
  AND started_at >= {from:DateTime64(3, 'UTC')}
  AND started_at < {to:DateTime64(3, 'UTC')}
  AND NOT is_bot
GROUP BY channel
ORDER BY visits DESC, channel
