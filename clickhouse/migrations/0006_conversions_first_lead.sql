-- Conversions were partitioned by month, so two rows of one conversion_id in different months (a chat
-- whose messages span a month end) were never collapsed, and the latest row won, so a chat lead took
-- its LAST message's time. Rebuilt without a time partition and with a version that keeps a lead's
-- EARLIEST row and any other conversion's latest one.
CREATE TABLE IF NOT EXISTS conversions_v6
(
    project         LowCardinality(String),
    conversion_id   String,
    kind            LowCardinality(String),
    source          LowCardinality(String),
    at              DateTime64(3, 'UTC'),
    value           Decimal(38, 6),
    currency        LowCardinality(String),
    anonymous_id    String,
    user_id         String,
    deal_id         String,
    stage           String,
    stage_kind      LowCardinality(String),
    event_id        String,
    ids             Map(String, String),
    processed_at    DateTime64(3, 'UTC') DEFAULT now64(3),
    tracking_number LowCardinality(String) DEFAULT '',
    version         UInt64 DEFAULT if(kind = 'lead', 4611686018427387904 - toUInt64(toUnixTimestamp64Milli(at)),
                                      toUInt64(toUnixTimestamp64Milli(processed_at)))
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (project, kind, conversion_id)
SETTINGS non_replicated_deduplication_window = 1000;

INSERT INTO conversions_v6 (project, conversion_id, kind, source, at, value, currency, anonymous_id, user_id, deal_id,
                            stage, stage_kind, event_id, ids, processed_at, tracking_number)
SELECT project, conversion_id, kind, source, at, value, currency, anonymous_id, user_id, deal_id, stage, stage_kind,
       event_id, ids, processed_at, tracking_number
FROM conversions;

EXCHANGE TABLES conversions AND conversions_v6;

DROP TABLE IF EXISTS conversions_v6;
