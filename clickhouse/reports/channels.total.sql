-- The total row of the channel report: visitors are counted once, not summed over channels.
SELECT
    count() AS visits,
    uniqExact(anonymous_id) AS visitors
FROM touches FINAL
WHERE project = {project:String}
  AND started_at >= {from:DateTime64(3, 'UTC')}
  AND started_at < {to:DateTime64(3, 'UTC')}
  AND NOT is_bot
