-- Conversions: leads, deal stages, sales, payments, refunds (refunds negative). One row per
-- deterministic conversion_id; redelivery and replay keep one.
CREATE TABLE IF NOT EXISTS conversions
(
    project       LowCardinality(String),
    conversion_id String,
    kind          LowCardinality(String),
    source        LowCardinality(String),
    at            DateTime64(3, 'UTC'),
    value         Decimal(38, 6),
    currency      LowCardinality(String),
    anonymous_id  String,
    user_id       String,
    deal_id       String,
    stage         String,
    stage_kind    LowCardinality(String),
    event_id      String,
    ids           Map(String, String),
    processed_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(processed_at)
PARTITION BY toYYYYMM(at)
ORDER BY (project, kind, conversion_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Ad (and other channel) spend per day. An import of (day, source) replaces every earlier import of
-- that day and source: reports read only the rows of the latest import_id per (project, day, source).
CREATE TABLE IF NOT EXISTS ad_spend
(
    project     LowCardinality(String),
    day         Date,
    source      LowCardinality(String),
    medium      LowCardinality(String),
    campaign    String,
    ad          String,
    keyword     String,
    channel     LowCardinality(String),
    cost        Decimal(38, 6),
    currency    LowCardinality(String),
    clicks      UInt64,
    impressions UInt64,
    import_id   String,
    imported_at DateTime64(3, 'UTC'),
    row_id      String
)
ENGINE = ReplacingMergeTree(imported_at)
PARTITION BY toYYYYMM(day)
ORDER BY (project, day, source, import_id, row_id)
SETTINGS non_replicated_deduplication_window = 1000;
