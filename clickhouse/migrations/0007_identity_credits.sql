-- Identity and live attribution (the processors' second stage, keyed by project).
--
-- identity_map: the versioned mapping identifier -> person. The person of an identifier is the
-- person_id of its row with the highest version; an identifier without a row is its own person:
--   'p_' || substring(lower(hex(SHA256(identifier))), 1, 16)
-- Identifiers are written "kind:value" (anon:<anonymous id>, phone:<hash>, deal:amocrm:123, ...).
CREATE TABLE IF NOT EXISTS identity_map
(
    project    LowCardinality(String),
    identifier String,
    person_id  String,
    version    UInt64,
    mapped_at  DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (project, identifier)
SETTINGS non_replicated_deduplication_window = 1000;

-- Every identity link the processors derived, with its evidence (login, crm, call, messenger,
-- observed), for audit: "why are these two one person?".
CREATE TABLE IF NOT EXISTS identity_links
(
    project    LowCardinality(String),
    a          String,
    b          String,
    evidence   LowCardinality(String),
    event_id   String,
    at         DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (project, a, b, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Links the shared-device guard refused: one cookie or device would have joined people with
-- different verified phones.
CREATE TABLE IF NOT EXISTS identity_guard
(
    project         LowCardinality(String),
    a               String,
    b               String,
    link_at         DateTime64(3, 'UTC'),
    person_a        String,
    person_b        String,
    verified_groups UInt32,
    max_groups      UInt32,
    event_id        String,
    version         UInt64,
    reason          LowCardinality(String)
)
ENGINE = ReplacingMergeTree
ORDER BY (project, a, b, version)
SETTINGS non_replicated_deduplication_window = 1000;

-- Live credits: what the processors credited each conversion with, per model and touch. Each time
-- a conversion's attribution changes (a later identity merge, a late touch) the processors write
-- its whole attribution again under a higher `version`; a conversion's credits are its rows of its
-- highest version (the credits_current view below). A redelivered row collapses by credit_id.
-- Weights have 18 decimals and sum to 1 per conversion and model; amounts sum to its value.
CREATE TABLE IF NOT EXISTS credits
(
    project       LowCardinality(String),
    credit_id     String,
    conversion_id String,
    kind          LowCardinality(String),
    conversion_at DateTime64(3, 'UTC'),
    person_id     String,
    model         LowCardinality(String),
    touch_id      String,
    channel       LowCardinality(String),
    source        LowCardinality(String),
    medium        LowCardinality(String),
    campaign      String,
    weight        Decimal(38, 18),
    amount        Decimal(38, 6),
    currency      LowCardinality(String),
    revision      UInt32,
    version       UInt64,
    emitted_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (project, conversion_id, version, model, credit_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Each conversion's current credits: the rows of its highest version.
CREATE VIEW IF NOT EXISTS credits_current AS
SELECT *
FROM credits FINAL
WHERE (project, conversion_id, version) IN (
    SELECT project, conversion_id, max(version) FROM credits GROUP BY project, conversion_id);

-- The identifier that carries a conversion to its person ("kind:value", e.g. anon:..., call:...,
-- chat:..., deal:amocrm:123): its person is the conversion's person.
ALTER TABLE conversions ADD COLUMN IF NOT EXISTS subject String DEFAULT '';
