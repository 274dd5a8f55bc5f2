-- Visits per channel, and the total row in the same read (one snapshot: the total always equals
-- the rows, even while events stream in). A visit is a touch; bots are excluded. Visitors are
-- counted once in the total, not summed over channels.
SELECT
    grouping(channel) AS is_total,
    channel,
    count() AS visits,
    uniqExact(anonymous_id) AS visitors
FROM touches FINAL
WHERE project = {project:String}
  AND started_at >= {from:DateTime64(3, 'UTC')}
  AND started_at < {to:DateTime64(3, 'UTC')}
  AND NOT is_bot
GROUP BY GROUPING SETS ((channel), ())
ORDER BY is_total, visits DESC, channel
