-- Live aggregates kept exact on insert (issue 13), in place of the refreshable live_channel_daily
-- (0008, 0012) that recomputed the last 100 days every 5 seconds. The sink writes, before each batch
-- of credits or touches, the exact difference that batch makes to what the warehouse holds
-- (clickhouse/live.py): a conversion's new version minus its stored one, a touch's new bucket minus
-- its stored one. A redelivered record (same version, same touch row) changes nothing; the deltas go
-- in under the batch's token + '-live' BEFORE the batch's rows, so a batch re-inserted after a crash
-- recomputes the same deltas and the token drops them. Sums, so a reader always sums (GROUP BY),
-- never reads a row as it is. All history, no horizon; hours in UTC (a report in any whole-hour time
-- zone reads them exactly).
--
-- live_money: per project, model, hour of the conversion, channel, source, campaign and currency
-- ('' for leads), what the credits that count (credits_current) give: leads = weights of leads,
-- sales = weights of sales, sales_value = amounts of sales, revenue = amounts of payments + refunds,
-- payments = weights of payments + refunds (a range's revenue credits and their share left
-- unconverted), conversions = the credited conversions (first_touch rows only: one per conversion).
CREATE TABLE IF NOT EXISTS live_money
(
    project     LowCardinality(String),
    model       LowCardinality(String),
    hour        DateTime('UTC'),
    channel     LowCardinality(String),
    source      LowCardinality(String),
    campaign    String,
    currency    LowCardinality(String),
    conversions Int64,
    leads       Decimal(38, 18),
    sales       Decimal(38, 18),
    sales_value Decimal(38, 6),
    revenue     Decimal(38, 6),
    payments    Decimal(38, 18)
)
ENGINE = SummingMergeTree
ORDER BY (project, model, hour, channel, source, campaign, currency)
SETTINGS non_replicated_deduplication_window = 1000;

-- live_visits: per project, hour of the visit's start, channel, source and campaign, the non-bot
-- touches (touches FINAL), the same under every model.
CREATE TABLE IF NOT EXISTS live_visits
(
    project  LowCardinality(String),
    hour     DateTime('UTC'),
    channel  LowCardinality(String),
    source   LowCardinality(String),
    campaign String,
    visits   Int64
)
ENGINE = SummingMergeTree
ORDER BY (project, hour, channel, source, campaign)
SETTINGS non_replicated_deduplication_window = 1000;

-- Nothing on a timer any more.
DROP VIEW IF EXISTS live_channel_daily_refresh;
DROP TABLE IF EXISTS live_channel_daily;

-- An install that upgrades keeps its history: the aggregates of what is stored now. (Deduplication
-- off: a block equal to an earlier one is no repeat here.)
INSERT INTO live_money
SELECT project, model, toStartOfHour(toDateTime(conversion_at, 'UTC')) AS hour, channel, source, campaign,
       if(kind IN ('payment', 'refund', 'sale'), toString(currency), '') AS cur,
       toInt64(countIf(model = 'first_touch')), sumIf(weight, kind = 'lead'), sumIf(weight, kind = 'sale'),
       sumIf(amount, kind = 'sale'), sumIf(amount, kind IN ('payment', 'refund')),
       sumIf(weight, kind IN ('payment', 'refund'))
FROM credits_current
WHERE kind IN ('lead', 'sale', 'payment', 'refund')
GROUP BY project, model, hour, channel, source, campaign, cur
SETTINGS insert_deduplicate = 0;

INSERT INTO live_visits
SELECT project, toStartOfHour(toDateTime(started_at, 'UTC')) AS hour, channel, source, campaign, toInt64(count())
FROM touches FINAL
WHERE NOT is_bot
GROUP BY project, hour, channel, source, campaign
SETTINGS insert_deduplicate = 0
