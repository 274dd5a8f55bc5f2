-- Call-tracking pool sizing: per day (the project's days: time zone {tz}), how many visitors were
-- shown a tracking number, how many numbers were in use at the busiest moment (leases overlapping,
-- grace included), how many numbers were used at all, and how many calls were matched to a lease.
-- When the peak reaches the pool's size, visitors got the default number (counted live in /metrics as
-- moneytrail_events_rejected_total{reason="pool_exhausted"}): add numbers until the peak stays below.
WITH
    lease_rows AS (
        SELECT lease_id, tracking_number, anonymous_id, started_at, matches_until
        FROM leases FINAL
        WHERE project = {project:String}
          AND started_at >= {from:DateTime64(3, 'UTC')} AND started_at < {to:DateTime64(3, 'UTC')}
    ),
    -- +1 when a lease starts, -1 when its number is free again: the running sum is numbers in use
    steps AS (
        SELECT toDate(at, {tz:String}) AS day, at, delta
        FROM (SELECT started_at AS at, 1 AS delta FROM lease_rows
              UNION ALL
              SELECT matches_until AS at, -1 AS delta FROM lease_rows)
    ),
    in_use AS (
        SELECT day, max(running) AS peak
        FROM (SELECT day, sum(delta) OVER (ORDER BY at, delta ROWS UNBOUNDED PRECEDING) AS running FROM steps)
        GROUP BY day
    ),
    matched AS (
        SELECT toDate(l.started_at, {tz:String}) AS day, count() AS calls
        FROM identity_links AS m
        INNER JOIN lease_rows AS l ON m.b = concat('lease:', l.lease_id)
        WHERE m.project = {project:String} AND startsWith(m.event_id, 'match:')
        GROUP BY day
    ),
    per_day AS (
        SELECT toDate(started_at, {tz:String}) AS day, count() AS leases, uniqExact(anonymous_id) AS visitors,
               uniqExact(tracking_number) AS numbers_used
        FROM lease_rows
        GROUP BY day
    )
SELECT grouping(d.day) AS is_total, d.day AS day, sum(d.leases) AS leases, sum(d.visitors) AS visitors,
       max(d.numbers_used) AS numbers_used, max(u.peak) AS peak_numbers_in_use, sum(m.calls) AS calls_matched
FROM per_day AS d
LEFT JOIN in_use AS u ON u.day = d.day
LEFT JOIN matched AS m ON m.day = d.day
GROUP BY GROUPING SETS ((d.day), ())
ORDER BY is_total, day
