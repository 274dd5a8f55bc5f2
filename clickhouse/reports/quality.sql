-- Data quality: how much of the traffic is tagged, how much is bots, which sources fall into
-- "Other" (values the channel rules do not know: add them as aliases), and how much money arrives
-- without any visit. The revenue attribution share itself comes from the channel report (the same
-- credit rules), added by the report runner.
SELECT 0 AS is_total, metric, value, share, detail
FROM
(
SELECT metric, value, share, detail
FROM
(
    SELECT
        count() AS sessions,
        countIf(NOT is_bot) AS human,
        countIf(is_bot) AS bots,
        countIf(NOT is_bot AND source = '(direct)') AS direct,
        countIf(NOT is_bot AND source != '(direct)' AND campaign = '' AND click_id_type = '') AS untagged_referrals,
        countIf(NOT is_bot AND channel = 'Other') AS other
    FROM touches FINAL
    WHERE project = {project:String}
      AND started_at >= {from:DateTime64(3, 'UTC')} AND started_at < {to:DateTime64(3, 'UTC')}
) AS s
ARRAY JOIN
    ['sessions', 'bot_sessions', 'direct_sessions', 'untagged_referral_sessions', 'other_channel_sessions'] AS metric,
    [toString(sessions), toString(bots), toString(direct), toString(untagged_referrals), toString(other)] AS value,
    [1, if(sessions > 0, round(bots / sessions, 4), 0), if(human > 0, round(direct / human, 4), 0),
     if(human > 0, round(untagged_referrals / human, 4), 0), if(human > 0, round(other / human, 4), 0)] AS share,
    ['all sessions, bots included', 'kept and marked, excluded from reports',
     'no campaign, no click id, no referrer', 'came from a site or search without UTM tags or a click id',
     'source/medium the channel rules do not place: see unknown_source rows'] AS detail
UNION ALL
SELECT concat('unknown_source:', source, '/', medium) AS metric, toString(count()) AS value,
       round(count() / (SELECT countIf(NOT is_bot) FROM touches FINAL WHERE project = {project:String}
                        AND started_at >= {from:DateTime64(3, 'UTC')} AND started_at < {to:DateTime64(3, 'UTC')}), 4) AS share,
       'sessions whose source/medium fell into "Other": add the value to the rules as an alias' AS detail
FROM touches FINAL
WHERE project = {project:String}
  AND started_at >= {from:DateTime64(3, 'UTC')} AND started_at < {to:DateTime64(3, 'UTC')}
  AND NOT is_bot AND channel = 'Other'
GROUP BY source, medium
)
ORDER BY startsWith(metric, 'unknown_source:'), metric
LIMIT 100
