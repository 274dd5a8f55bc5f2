-- Shared fragment (not a report): the channel report's metric columns, the end of a SELECT list over
-- rows of visits, lead_w and sale_w (credited weights), revenue, spend and unconverted, with `margin`
-- (toDecimal128OrNull({margin:String}, 6)) in the WITH: channels.sql, and campaigns.sql on every
-- drill-down level. The README's "Metrics" section gives the same formulas.
    sum(visits) AS visits,
    -- credited weights: exact decimals (18 places) summed, the exact sum rounded once to the 4 places
    -- shown, half away from zero, as live.sql, models.sql and the Grafana panels round it (whole
    -- numbers under single-touch models). Never via 6 places first: a sum like 1.85814951 would
    -- show 1.8582 here and 1.8581 there. The ratios divide the sums at 6 places.
    toFloat64(round(sum(lead_w) AS lead_sum, 4)) AS leads,
    toFloat64(round(sum(sale_w) AS sale_sum, 4)) AS sales,
    if((toDecimal128(round(lead_sum, 6), 6) AS lead_count) > 0,
       toFloat64(round((toDecimal128(round(sale_sum, 6), 6) AS sale_count) / lead_count, 4)), NULL) AS conversion,
    toDecimal128(round(sum(revenue), 2), 2) AS revenue,
    toDecimal128(round(sum(spend), 2), 2) AS spend,
    -- divisions at 6 decimals, then rounded half away from zero: Decimal division truncates
    if(lead_count > 0, toDecimal128(round(toDecimal128(spend, 6) / lead_count, 2), 2), NULL) AS cpl,
    if(sale_count > 0, toDecimal128(round(toDecimal128(spend, 6) / sale_count, 2), 2), NULL) AS cpo,
    if(spend > 0, toFloat64(round((toDecimal128(revenue, 6) - spend) / spend, 4)), NULL) AS roi,
    if(spend > 0 AND margin IS NOT NULL,
       toFloat64(round((toDecimal128(revenue, 6) * margin - spend) / spend, 4)), NULL) AS romi,
    if(sale_count > 0, toDecimal128(round(toDecimal128(revenue, 6) / sale_count, 2), 2), NULL) AS average_check,
    -- payments (credited shares of them) and spend rows left out: no rate to the report currency
    toFloat64(round(sum(unconverted), 4)) AS unconverted
