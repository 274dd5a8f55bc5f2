-- Live per-day numbers for dashboards and BI tools: per project, day, channel, campaign and model,
-- the visits, leads, sales and money the processors' live credits give. A refreshable view
-- recomputes it every 5 seconds from the deduplicated tables (credits_current and touches FINAL), so
-- a credit delivered twice (at-least-once) or a conversion re-credited after an identity merge can
-- never be counted wrong, which an insert-triggered view cannot promise. Each refresh APPENDs one whole
-- snapshot stamped with one refreshed_at (chDB's default database cannot swap tables, so no
-- replace mode): read the latest snapshot, WHERE refreshed_at = (SELECT max(refreshed_at) ...);
-- older snapshots expire after 2 minutes. It covers the last 100 days (conversion time and visit
-- time): the live dashboard's horizon; older ranges are computed at query time (same numbers). Leads and sales are fractional
-- under the fractional models (linear, time_decay, position_based): the sum of credit weights.
-- Money stays in its own currency (one row per currency); reports convert it.
CREATE TABLE IF NOT EXISTS live_channel_daily
(
    project     LowCardinality(String),
    day         Date,
    channel     LowCardinality(String),
    campaign    String,
    model       LowCardinality(String),
    currency    LowCardinality(String),
    visits      UInt64,
    leads       Decimal(38, 18),
    sales       Decimal(38, 18),
    sales_value Decimal(38, 6),
    revenue     Decimal(38, 6),
    refreshed_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (project, model, day, channel, campaign, currency)
TTL toDateTime(refreshed_at) + INTERVAL 2 MINUTE
SETTINGS merge_with_ttl_timeout = 60;

CREATE MATERIALIZED VIEW IF NOT EXISTS live_channel_daily_refresh
REFRESH EVERY 5 SECOND APPEND TO live_channel_daily
AS SELECT project, day, channel, campaign, model, currency,
          sum(visits) AS visits, sum(leads) AS leads, sum(sales) AS sales,
          sum(sales_value) AS sales_value, sum(revenue) AS revenue, now64(3) AS refreshed_at
FROM (
    SELECT project, toDate(conversion_at) AS day, channel, campaign, model,
           if(kind IN ('payment', 'refund', 'sale'), currency, '') AS currency, toUInt64(0) AS visits,
           sumIf(weight, kind = 'lead') AS leads, sumIf(weight, kind = 'sale') AS sales,
           sumIf(amount, kind = 'sale') AS sales_value, sumIf(amount, kind IN ('payment', 'refund')) AS revenue
    FROM credits_current
    WHERE conversion_at >= today() - 100
    GROUP BY project, day, channel, campaign, model, currency
    UNION ALL
    SELECT project, toDate(started_at) AS day, channel, campaign,
           arrayJoin(['first_touch', 'last_touch', 'last_non_direct', 'linear', 'time_decay', 'position_based']) AS model,
           '' AS currency, count() AS visits, toDecimal128(0, 18), toDecimal128(0, 18), toDecimal128(0, 6),
           toDecimal128(0, 6)
    FROM touches FINAL
    WHERE NOT is_bot AND started_at >= today() - 100
    GROUP BY project, day, channel, campaign
)
GROUP BY project, day, channel, campaign, model, currency;
