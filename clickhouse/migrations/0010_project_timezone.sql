-- The project's time zone (IANA name such as Asia/Almaty): a report's days (its from/to dates, the
-- days of spend and of currency rates, cohort months, call-tracking days) are the project's local
-- days. UTC until set (clickhouse/projects.py ProjectStore.set_timezone).
ALTER TABLE projects ADD COLUMN IF NOT EXISTS timezone LowCardinality(String) DEFAULT 'UTC';
