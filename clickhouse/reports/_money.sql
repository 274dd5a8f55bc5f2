-- Shared fragment (not a report), after _credited.sql: the credits and the spend in the report's
-- {currency}. Money in another currency is converted by the latest {currency}/X rate on or before
-- its day (the project's day, time zone {tz}; POST /api/rates); without one it is left out and
-- counted as `converted` = 0. Revenue is payments + refunds; a project with no payment in the period
-- takes it from its sales' values.
-- Spend: `spend_rows` of _spend.sql.
--@include _rates.sql
    -- one row per credit: its label (see _credited.sql), model, kind, weight, and its amount as money
    -- when it counts as revenue (0 otherwise)
    credited_money AS (
        SELECT c.label AS label, c.model AS model, c.kind AS kind, c.weight AS weight,
               if(has_payments, c.kind IN ('payment', 'refund'), c.kind = 'sale') AS is_revenue,
               multiIf(NOT is_revenue, toDecimal128(0, 6),
                       c.currency IN ({currency:String}, ''), toDecimal128(c.amount, 6),
                       r.rate > 0, toDecimal128(c.amount * r.rate, 6), toDecimal128(0, 6)) AS money,
               NOT is_revenue OR c.currency IN ({currency:String}, '') OR r.rate > 0 AS converted
        FROM credited AS c
        ASOF LEFT JOIN rates AS r ON c.currency = r.currency AND toDate(c.at, {tz:String}) >= r.day
    ),
--@include _spend.sql
