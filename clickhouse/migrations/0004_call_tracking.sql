-- Call-tracking number leases: which visitor was shown which number, when. A call to a number at
-- time t belongs to the lease of that number with started_at <= t <= matches_until (the lease's end
-- plus the pool's grace). Extensions rewrite the same lease_id with a later expires_at.
CREATE TABLE IF NOT EXISTS leases
(
    project         LowCardinality(String),
    lease_id        String,
    tracking_number LowCardinality(String),
    anonymous_id    String,
    started_at      DateTime64(3, 'UTC'),
    expires_at      DateTime64(3, 'UTC'),
    matches_until   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(expires_at)
PARTITION BY toYYYYMM(started_at)
ORDER BY (project, lease_id)
SETTINGS non_replicated_deduplication_window = 1000;

ALTER TABLE conversions ADD COLUMN IF NOT EXISTS tracking_number LowCardinality(String) DEFAULT '';
