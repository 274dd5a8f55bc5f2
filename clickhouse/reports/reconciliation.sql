-- Reconciliation: leads in the range per channel as three systems count them, side by side.
--   ad_platforms: offline lead conversions (source 'offline': conversions the ad platforms or a
--     spreadsheet report back; spend rows carry no conversion counts);
--   collector: the leads moneytrail saw itself (site forms, tracked calls, first chat messages);
--   crm: CRM leads (a deal created).
-- Every lead is credited to a channel by last_non_direct (whatever {model} says: this report
-- compares counts, not credit) over the touches of its PERSON (identity_map, as in cohorts.sql) in
-- the {lookback} days before it; nothing there -> "(unattributed)". The differences are
-- ad_platforms - collector and crm - collector; collector_not_in_crm counts collector leads whose
-- person has no CRM lead in the range (lost by the sales team, or not stitched), and
-- crm_not_in_collector CRM leads whose person left no collector lead (walk-ins, untracked calls).
WITH
--@include _idm.sql
    leads AS (
        SELECT l.conversion_id AS conversion_id, l.at AS at, l.side AS side,
               if(m.person_id != '', m.person_id, concat('p_', substring(lower(hex(SHA256(l.ident))), 1, 16))) AS person
        FROM (
            SELECT conversion_id, at,
                   multiIf(source = 'offline', 'ad_platforms', source = 'crm', 'crm', 'collector') AS side,
                   multiIf(subject != '', subject, anonymous_id != '', concat('anon:', anonymous_id),
                           concat('conversion:', conversion_id)) AS ident
            FROM conversions FINAL
            WHERE project = {project:String} AND kind = 'lead'
              AND at >= {from:DateTime64(3, 'UTC')} AND at < {to:DateTime64(3, 'UTC')}
              AND source IN ('offline', 'crm', 'form', 'call', 'message')
        ) AS l
        LEFT JOIN idm AS m ON m.identifier = l.ident
    ),
--@include _person_touches.sql
    credited AS (
        SELECT
            l.conversion_id AS conversion_id,
            any(l.side) AS side,
            any(l.person) AS person,
            if(countIf((t.person != '' AND t.started_at <= l.at
                        AND t.started_at >= l.at - toIntervalDay({lookback:UInt32})) AS in_window) = 0, '(unattributed)',
               toString(argMaxIf(t.channel, (t.non_direct, t.started_at, t.touch_id), in_window))) AS channel
        FROM leads AS l
        LEFT JOIN (SELECT * FROM tch WHERE person IN (SELECT person FROM leads)) AS t ON t.person = l.person
        GROUP BY l.conversion_id
    ),
    -- whether the lead's person also has a lead on the other side (collector <-> CRM)
    matched AS (
        SELECT channel, side,
               max(side = 'crm') OVER (PARTITION BY person) AS person_in_crm,
               max(side = 'collector') OVER (PARTITION BY person) AS person_in_collector
        FROM credited
    )
SELECT
    grouping(channel) AS is_total,
    channel,
    countIf(side = 'ad_platforms') AS ad_platforms,
    countIf(side = 'collector') AS collector,
    countIf(side = 'crm') AS crm,
    toInt64(ad_platforms) - toInt64(collector) AS ad_platforms_minus_collector,
    toInt64(crm) - toInt64(collector) AS crm_minus_collector,
    countIf(side = 'collector' AND NOT person_in_crm) AS collector_not_in_crm,
    countIf(side = 'crm' AND NOT person_in_collector) AS crm_not_in_collector
FROM matched
GROUP BY GROUPING SETS ((channel), ())
ORDER BY is_total, collector + crm + ad_platforms DESC, channel
