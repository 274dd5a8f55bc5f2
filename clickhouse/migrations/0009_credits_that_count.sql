-- credits_current: the credits that count. A repeat lead (a person's lead within
-- MONEYTRAIL_LEAD_REPEAT_DAYS after their previous lead) gets a version of one row per model with
-- weight 0 and amount 0 and the channel '(repeat lead)': it supersedes the lead's earlier credits
-- and stays in `credits` for audit, but reports, the live view (0008) and dashboards read nothing
-- of it. The query-time SQL gives such a lead no row at all (reports/_credited.sql).
CREATE OR REPLACE VIEW credits_current AS
SELECT *
FROM credits FINAL
WHERE (project, conversion_id, version) IN (
    SELECT project, conversion_id, max(version) FROM credits GROUP BY project, conversion_id)
  AND (weight != 0 OR amount != 0);
