-- Whether a project's live credits still follow its current rules. A replay that rewrites touches
-- with new channel rules but does not rebuild the persons stage (one project, or distributed mode)
-- leaves the live credits labelled by the old rules: it writes stale = 1 here, and reports credit at
-- query time (reports.py, _live_coverage.sql) until a replay of every project rebuilds the persons
-- stage and writes stale = 0. The latest row per project counts.
CREATE TABLE IF NOT EXISTS live_credits_state
(
    project LowCardinality(String),
    stale   UInt8,
    why     String,
    at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(at)
ORDER BY project;
