-- Currency rates per project and day: one unit of `currency` is worth `rate` units of `base`. A report
-- in currency B converts money in currency C on day d with the latest B/C rate on or before d; money
-- with no such rate is left out of that report and counted in its `unconverted` field.
CREATE TABLE IF NOT EXISTS currency_rates
(
    project     LowCardinality(String),
    day         Date,
    currency    LowCardinality(String),
    base        LowCardinality(String),
    rate        Decimal(38, 10),
    imported_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(imported_at)
ORDER BY (project, base, currency, day);
