-- Projects: keys and secrets are stored only as SHA-256 hashes (they are long random strings, so a
-- fast hash is enough); the raw values are printed once at creation.
CREATE TABLE IF NOT EXISTS projects
(
    project_id          String,
    name                String,
    write_key_hash      String,
    read_token_hash     String,
    webhook_secret_hash String,
    origins             Array(String),
    created_at          DateTime64(3, 'UTC'),
    updated_at          DateTime64(3, 'UTC'),
    deleted             UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY project_id;

-- Every accepted envelope, for replay and audit. event_id is the dedupe identity within a project.
CREATE TABLE IF NOT EXISTS raw_events
(
    project      LowCardinality(String),
    event_id     String,
    type         LowCardinality(String),
    schema       LowCardinality(String),
    anonymous_id String,
    user_id      String,
    timestamp    DateTime64(3, 'UTC'),
    received_at  DateTime64(3, 'UTC'),
    payload      String CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree(received_at)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (project, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Touches: one visit of a person through one channel. A replay with new channel rules writes the
-- same touch_id with a newer processed_at, which replaces the old row.
CREATE TABLE IF NOT EXISTS touches
(
    project       LowCardinality(String),
    touch_id      String,
    anonymous_id  String,
    user_id       String,
    started_at    DateTime64(3, 'UTC'),
    source        LowCardinality(String),
    medium        LowCardinality(String),
    campaign      String,
    content       String,
    term          String,
    click_id_type LowCardinality(String),
    channel       LowCardinality(String),
    landing_url   String CODEC(ZSTD(3)),
    referrer_host LowCardinality(String),
    events        UInt32,
    is_bot        UInt8,
    processed_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(processed_at)
PARTITION BY toYYYYMM(started_at)
ORDER BY (project, toDate(started_at), touch_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Envelopes the processors could not use, with the reason from the closed set.
CREATE TABLE IF NOT EXISTS dead_letters
(
    project     LowCardinality(String),
    reason      LowCardinality(String),
    detail      String,
    payload     String CODEC(ZSTD(3)),
    failed_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(failed_at)
ORDER BY (project, failed_at)
TTL toDateTime(failed_at) + INTERVAL 180 DAY;
