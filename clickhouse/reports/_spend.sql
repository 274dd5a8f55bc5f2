-- Shared fragment (not a report), inside a WITH after a `rates` CTE ({currency}'s rates, see
-- _rates.sql): `spend_rows`, the ad spend of the range's days ({day_from} to {day_to}, the project's
-- days as the ad platforms report them) in {currency}. A re-import of a (day, source) replaces it, so
-- only the latest import of each (day, source) counts. Spend in another currency is converted by
-- the latest rate on or before its day; without one it counts 0 and `converted` = 0.
    spend_rows AS (
        SELECT s.channel AS channel, s.source AS source, s.campaign AS campaign, s.ad AS ad, s.keyword AS keyword,
               multiIf(s.currency = {currency:String}, toDecimal128(s.cost, 6),
                       r.rate > 0, toDecimal128(s.cost * r.rate, 6), toDecimal128(0, 6)) AS money,
               s.currency = {currency:String} OR r.rate > 0 AS converted
        FROM (
            SELECT channel, source, campaign, ad, keyword, day, cost, currency FROM ad_spend FINAL
            WHERE project = {project:String}
              AND day >= {day_from:Date} AND day <= {day_to:Date}
              AND (day, source, import_id) IN (
                  SELECT day, source, argMax(import_id, imported_at)
                  FROM ad_spend FINAL
                  WHERE project = {project:String}
                    AND day >= {day_from:Date} AND day <= {day_to:Date}
                  GROUP BY day, source)
        ) AS s
        ASOF LEFT JOIN rates AS r ON s.currency = r.currency AND s.day >= r.day
    )
