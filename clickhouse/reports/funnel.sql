-- Funnel by channel: visits -> leads -> deals -> sales in the range, with each step's conversion.
-- visits: non-bot sessions of the channel (as in the channel report); leads: lead conversions
-- (repeat leads excluded);
-- deals: distinct CRM deals whose first open (or won) stage falls in the range; sales: sale
-- conversions (won deals and sales without a CRM deal, so deal_to_sale can exceed 1 where sales
-- bypass the CRM). Each lead, deal and sale is credited to one channel by {model} over the touches
-- of its PERSON (identity_map, as in cohorts.sql) in the {lookback} days before it: first_touch,
-- last_touch, else last_non_direct (the default: the last touch that was not a direct visit, else
-- the last touch); a count is not split, so fractional models count by last_non_direct. Nothing in
-- the window -> "(unattributed)". Rates are fractions rounded to 4 places.
WITH
--@include _idm.sql
    steps AS (
        SELECT conversion_id AS step_id, kind AS step, at,
               multiIf(subject != '', subject, anonymous_id != '', concat('anon:', anonymous_id),
                       concat('conversion:', conversion_id)) AS ident
        FROM conversions FINAL
        WHERE project = {project:String}
          AND at >= {from:DateTime64(3, 'UTC')} - toIntervalDay(if(kind = 'lead', {lead_repeat:UInt32}, 0))
          AND at < {to:DateTime64(3, 'UTC')}
          AND kind IN ('lead', 'sale')
        UNION ALL
        -- a deal moves through several stages: it counts once, at the first stage that made it a deal
        SELECT deal_key AS step_id, 'deal' AS step, min(stage_at) AS at, argMin(deal_ident, stage_at) AS ident
        FROM (
            SELECT if(startsWith(subject, 'deal:'), subject, concat('deal:', deal_id)) AS deal_key, at AS stage_at,
                   multiIf(subject != '', subject, anonymous_id != '', concat('anon:', anonymous_id),
                           concat('conversion:', conversion_id)) AS deal_ident
            FROM conversions FINAL
            WHERE project = {project:String} AND at < {to:DateTime64(3, 'UTC')}
              AND ((kind = 'deal' AND stage_kind = 'open') OR (kind = 'sale' AND deal_id != ''))
        )
        GROUP BY deal_key
        HAVING at >= {from:DateTime64(3, 'UTC')}
    ),
    -- a person's lead within {lead_repeat} days after their previous lead is a repeat and counts
    -- nothing (as in _credited.sql and the live credits)
    step_people AS (
        SELECT step_id, step, at, person
        FROM (
            SELECT s.step_id AS step_id, s.step AS step, s.at AS at,
                   if(m.person_id != '', m.person_id, concat('p_', substring(lower(hex(SHA256(s.ident))), 1, 16))) AS person,
                   lagInFrame(toUnixTimestamp64Milli(s.at), 1, -1) OVER (
                       PARTITION BY person, s.step ORDER BY s.at, s.step_id
                       ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS previous_ms
            FROM steps AS s
            LEFT JOIN idm AS m ON m.identifier = s.ident
        )
        WHERE at >= {from:DateTime64(3, 'UTC')}
          AND NOT (step = 'lead' AND {lead_repeat:UInt32} > 0 AND previous_ms >= 0
                   AND toUnixTimestamp64Milli(at) - previous_ms <= toInt64({lead_repeat:UInt32}) * 86400000)
    ),
--@include _person_touches.sql
    credited AS (
        SELECT
            s.step_id AS step_id,
            any(s.step) AS step,
            multiIf(
                countIf((t.person != '' AND t.started_at <= s.at
                         AND t.started_at >= s.at - toIntervalDay({lookback:UInt32})) AS in_window) = 0, '(unattributed)',
                {model:String} = 'first_touch', toString(argMinIf(t.channel, (t.started_at, t.touch_id), in_window)),
                {model:String} = 'last_touch', toString(argMaxIf(t.channel, (t.started_at, t.touch_id), in_window)),
                toString(argMaxIf(t.channel, (t.non_direct, t.started_at, t.touch_id), in_window))) AS channel
        FROM step_people AS s
        LEFT JOIN (SELECT * FROM tch WHERE person IN (SELECT person FROM step_people)) AS t ON t.person = s.person
        GROUP BY s.step_id
    ),
    parts AS (
        SELECT toString(channel) AS channel, count() AS visits, 0 AS leads, 0 AS deals, 0 AS sales
        FROM touches FINAL
        WHERE project = {project:String}
          AND started_at >= {from:DateTime64(3, 'UTC')} AND started_at < {to:DateTime64(3, 'UTC')}
          AND NOT is_bot
        GROUP BY channel
        UNION ALL
        SELECT channel, 0, countIf(step = 'lead'), countIf(step = 'deal'), countIf(step = 'sale')
        FROM credited
        GROUP BY channel
    )
SELECT
    grouping(channel) AS is_total,
    channel,
    sum(visits) AS visits,
    sum(leads) AS leads,
    sum(deals) AS deals,
    sum(sales) AS sales,
    if(visits > 0, round(leads / visits, 4), NULL) AS visit_to_lead,
    if(leads > 0, round(deals / leads, 4), NULL) AS lead_to_deal,
    if(deals > 0, round(sales / deals, 4), NULL) AS deal_to_sale,
    if(leads > 0, round(sales / leads, 4), NULL) AS lead_to_sale
FROM parts
GROUP BY GROUPING SETS ((channel), ())
ORDER BY is_total, visits DESC, leads DESC, channel
