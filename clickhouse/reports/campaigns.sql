-- The campaign drill-down: channel (or source: {group_by}) -> campaign -> content / term rows, each
-- level with its subtotal row, the channel report's metrics (_metrics.sql) and the total row,
-- all from one snapshot (GROUPING SETS). `level` says which: channel (or source), campaign, ad.
-- Conversions are credited by {model} at query time (_credited.sql); spend joins by campaign, ad
-- (= utm_content) and keyword (= utm_term) where the imported rows carry them, else it stays on the
-- campaign or channel row it names. Empty values show as '(none)'.
WITH
--@include _credited.sql
    ,
--@include _money.sql
    ,
    parts AS (
        SELECT if({group_by:String} = 'source', toString(source), toString(channel)) AS g_top, campaign AS g_campaign,
               content AS g_content, term AS g_term,
               count() AS visits, toDecimal128(0, 18) AS lead_w, toDecimal128(0, 18) AS sale_w,
               toDecimal128(0, 6) AS revenue, toDecimal128(0, 6) AS spend, toDecimal128(0, 18) AS unconverted
        FROM touches FINAL
        WHERE project = {project:String}
          AND started_at >= {from:DateTime64(3, 'UTC')} AND started_at < {to:DateTime64(3, 'UTC')}
          AND NOT is_bot
        GROUP BY g_top, g_campaign, g_content, g_term
        UNION ALL
        -- label: top, campaign, content, term of the credited touch (or '(unattributed)')
        SELECT f[1], f[2], f[3], f[4], 0, sumIf(weight, kind = 'lead'), sumIf(weight, kind = 'sale'), sum(money),
               toDecimal128(0, 6), sumIf(weight, NOT converted)
        FROM (SELECT splitByChar('\x1f', label) AS f, kind, weight, money, converted FROM credited_money)
        GROUP BY f
        UNION ALL
        SELECT if({group_by:String} = 'source', source, channel), campaign, ad, keyword, 0, toDecimal128(0, 18),
               toDecimal128(0, 18), toDecimal128(0, 6), sum(money), toDecimal128(countIf(NOT converted), 18)
        FROM spend_rows
        GROUP BY 1, 2, 3, 4
    ),
    toDecimal128OrNull({margin:String}, 6) AS margin,
    drill AS (
        SELECT
            grouping(g_top) AS is_total,
            multiIf(grouping(g_top) = 1, '', grouping(g_campaign) = 1, {group_by:String},
                    grouping(g_content) = 1, 'campaign', 'ad') AS level,
            if(grouping(g_top) = 1, '', if(g_top = '', '(none)', g_top)) AS key,  -- named after {group_by}
            if(grouping(g_campaign) = 1, NULL, if(g_campaign = '', '(none)', g_campaign)) AS campaign,
            if(grouping(g_content) = 1, NULL, if(g_content = '', '(none)', g_content)) AS content,
            if(grouping(g_content) = 1, NULL, if(g_term = '', '(none)', g_term)) AS term,
            -- sort keys: a parent row before its children, bigger revenue first at every level
            grouping(g_campaign) AS top_row, grouping(g_content) AS campaign_row,
--@include _metrics.sql
        FROM parts
        GROUP BY GROUPING SETS ((g_top, g_campaign, g_content, g_term), (g_top, g_campaign), (g_top), ())
    )
SELECT * EXCEPT (top_row, campaign_row, top_revenue, campaign_revenue)
FROM (
    SELECT *,
           max(if(top_row = 1, revenue, NULL)) OVER (PARTITION BY key) AS top_revenue,
           max(if(campaign_row = 1 AND top_row = 0, revenue, NULL)) OVER (PARTITION BY key, campaign) AS campaign_revenue
    FROM drill
)
ORDER BY is_total, top_revenue DESC, key, top_row DESC, campaign_revenue DESC, campaign, campaign_row DESC,
         revenue DESC, content, term
