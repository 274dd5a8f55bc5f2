-- Shared fragment (not a report): query-time attribution, the CTEs ending in `credited`, one row per
-- credit of every conversion in [{from}, {to}) under every model in {models}. It gives what the live
-- processors' stream_processors/attribution.py credit_all gives on the same rows; its rules are
-- copied here, change them in both places:
--   * Persons: the person of an identifier is the person_id of its identity_map row with the
--     highest version; without a row it is its own person 'p_' || first 16 hex digits of SHA-256.
--     A touch belongs to 'anon:' || anonymous_id, a conversion to its subject (or 'anon:' ||
--     anonymous_id when written before subject existed). Bot touches are never credited.
--   * A conversion's touches: its person's, conversion_at - {lookback} days <= started_at <=
--     conversion_at, ordered by (started_at, touch_id).
--   * Integer shares per model (first, last, last non-direct: 1 to one touch; linear: 1 each;
--     position_based: 2(n-2) : 1 ... 1 : 2(n-2), two touches 1:1; time_decay: 2^(-days / half-life)),
--     weights = shares split into 10^18 units by largest remainder (ties to the earlier touch), the
--     amount = |value| in the currency's minor units split over the weights the same way, then
--     signed (a refund mirrors a payment). Touches with weight 0 get no credit row.
--   * No touch in the window: one '(unattributed)' credit, weight 1, the whole value.
-- Time decay is the one inexact model: ClickHouse has exp only in Float64, so its shares are
-- 2^(-days/h) relative to the latest touch as 53-bit floats scaled by 2^190 (Python uses 28-digit
-- decimals). Weights then differ from the live ones by ~1e-16 each (tests allow 1e-15), and an
-- amount can differ by one minor unit only where two remainders are that close to a tie.
-- Everything after the shares is exact integer arithmetic (UInt256), the same as Python's.
--
-- Parameters: project, from, to (DateTime64(3) bounds, to exclusive), lookback (days), lead_repeat (days),
-- models (Array(String)), half_life (days, Float64), label: what a credit carries of its touch
-- (channel | source | campaign | drill = channel (or source when group_by is), campaign, content,
-- term | touch = channel, source, medium, campaign; several fields joined by \x1f): a report
-- carries only what it groups by, which keeps the per-person arrays small; group_by. Included by
-- `--@include _credited.sql`.
--
-- A person is keyed by the 64 bits of its id ('p_' + 16 hex digits = the first 8 bytes of the
-- anchor's SHA-256) as a UInt64: one-to-one with the id, and cheap to group and join by.
    -- identifier -> person, latest version; identifiers without a row are their own person
    id_person AS (
        SELECT identifier, reinterpretAsUInt64(unhex(substring(person_id, 3, 16))) AS person
        FROM identity_map FINAL  -- ReplacingMergeTree(version): the row with the highest version
        WHERE project = {project:String}
    ),
    -- a conversion naming nobody (no subject, no cookie) is person 0, which no touch has. A person's
    -- lead within {lead_repeat} days after their previous lead (in (at, id) order) is a repeat: it
    -- counts nothing (live: credit rows of weight 0), so the leads before the range are read too.
    conv AS (
        SELECT conversion_id, kind, at, value, currency, person
        FROM (
            SELECT c.conversion_id AS conversion_id, c.kind AS kind, c.at AS at, c.value AS value,
                   c.currency AS currency,
                   multiIf(m.identifier != '', m.person, c.subject_id = '', toUInt64(0),
                           reinterpretAsUInt64(substring(SHA256(c.subject_id), 1, 8))) AS person,
                   lagInFrame(toUnixTimestamp64Milli(c.at), 1, -1) OVER (
                       PARTITION BY person, c.kind ORDER BY c.at, c.conversion_id
                       ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS previous_ms
            FROM (
                SELECT conversion_id, kind, at, value, currency,
                       multiIf(subject != '', subject, anonymous_id != '', concat('anon:', anonymous_id), '') AS subject_id
                FROM conversions FINAL
                WHERE project = {project:String}
                  AND at >= {from:DateTime64(3, 'UTC')} - toIntervalDay(if(kind = 'lead', {lead_repeat:UInt32}, 0))
                  AND at < {to:DateTime64(3, 'UTC')}
                  AND kind IN ('lead', 'sale', 'payment', 'refund')
            ) AS c
            LEFT JOIN id_person AS m ON m.identifier = c.subject_id
        )
        WHERE at >= {from:DateTime64(3, 'UTC')}
          AND NOT (kind = 'lead' AND person != 0 AND {lead_repeat:UInt32} > 0 AND previous_ms >= 0
                   AND toUnixTimestamp64Milli(at) - previous_ms <= toInt64({lead_repeat:UInt32}) * 86400000)
    ),
    -- The cookies whose touches can belong to a conversion's person, with that person: every mapped
    -- cookie, and the unmapped ones that are their own person and can share it with a conversion:
    -- a conversion's own subject, or the anchor of a person (the identifier its id is made from,
    -- which has no row of its own) - an anchor joined to anyone is an end of an identity link.
    -- So touches need no SHA-256 each: only these cookies get one.
    cookie_person AS (
        SELECT substring(identifier, 6) AS anonymous_id, person
        FROM id_person
        WHERE startsWith(identifier, 'anon:') AND identifier != 'anon:'
        UNION ALL
        SELECT substring(identifier, 6), reinterpretAsUInt64(substring(SHA256(identifier), 1, 8))
        FROM (
            SELECT DISTINCT identifier FROM (
                SELECT if(subject != '', subject, concat('anon:', anonymous_id)) AS identifier
                FROM conversions FINAL
                WHERE project = {project:String}
                  AND at >= {from:DateTime64(3, 'UTC')} AND at < {to:DateTime64(3, 'UTC')}
                  AND kind IN ('lead', 'sale', 'payment', 'refund')
                UNION ALL
                SELECT arrayJoin([a, b]) FROM identity_links WHERE project = {project:String}
            )
            WHERE startsWith(identifier, 'anon:') AND identifier != 'anon:'
              AND identifier NOT IN (SELECT identifier FROM identity_map WHERE project = {project:String})
        )
    ),
    -- the touches that can be credited in the range, with their person and what the report needs
    tch AS (
        SELECT t.started_at AS started_at, t.touch_id AS touch_id, t.source = '(direct)' AS is_direct,
               multiIf({label:String} = 'channel', toString(t.channel),
                       {label:String} = 'source', toString(t.source),
                       {label:String} = 'campaign', t.campaign,
                       {label:String} = 'drill', concat(if({group_by:String} = 'source', t.source, t.channel), '\x1f',
                                                        t.campaign, '\x1f', t.content, '\x1f', t.term),
                       concat(t.channel, '\x1f', t.source, '\x1f', t.medium, '\x1f', t.campaign)) AS label,
               k.person AS person
        FROM (
            SELECT touch_id, anonymous_id, started_at, channel, source, medium, campaign, content, term
            FROM touches FINAL
            WHERE project = {project:String}
              AND started_at >= {from:DateTime64(3, 'UTC')} - toIntervalDay({lookback:UInt32})
              AND started_at < {to:DateTime64(3, 'UTC')}
              AND NOT is_bot AND anonymous_id != ''
        ) AS t
        INNER JOIN cookie_person AS k ON k.anonymous_id = t.anonymous_id
    ),
    -- per person: its touches (only the persons of conversions); then per conversion those in its
    -- window, in (started_at, touch_id) order (a tuple sorts by its fields; touch_id is unique)
    journeys AS (
        SELECT c.conversion_id AS conversion_id, c.kind AS kind, c.at AS at, c.value AS value, c.currency AS currency,
               arraySort(arrayFilter(t -> t.1 <= c.at AND t.1 >= c.at - toIntervalDay({lookback:UInt32}),
                                     p.touches)) AS path
        FROM conv AS c
        LEFT JOIN (
            SELECT person, groupArray((started_at, touch_id, label, is_direct)) AS touches
            FROM tch
            GROUP BY person
        ) AS p ON p.person = c.person
    ),
    -- The credited touches: `pick` is the one touch that takes everything (first, last, last
    -- non-direct; any model with one touch; 0 = no touch: unattributed), or -1 when the model
    -- splits: integer shares per touch, split into 10^18 weight units by largest remainder
    -- (ties to the earlier touch), and |total| minor units split over those weights the same way.
    -- Single-credit rows skip the arithmetic (`if` evaluates a branch only for its rows).
    shared AS (
        SELECT conversion_id, kind, at, currency, model, path, n,
               arrayEnumerate(path) AS idx,
               toInt64(multiIf(n = 0, 0, n = 1, 1,
                               model = 'first_touch', 1,
                               model = 'last_touch', toInt64(n),
                               -- the last touch that is not a direct visit; all direct: the last touch
                               model = 'last_non_direct', toInt64(if(arrayLastIndex(p -> NOT p.4, path) AS lnd > 0, lnd, n)),
                               -1)) AS pick,
               -- the value in the currency's minor units (ISO 4217; 2 when not listed)
               transform(upper(trim(BOTH ' ' FROM currency)),
                         ['BIF', 'CLP', 'DJF', 'GNF', 'ISK', 'JPY', 'KMF', 'KRW', 'PYG', 'RWF', 'UGX', 'VND', 'VUV',
                          'XAF', 'XOF', 'XPF', 'BHD', 'IQD', 'JOD', 'KWD', 'LYD', 'OMR', 'TND'],
                         [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 3, 3, 3, 3, 3], 2) AS places,
               -- rounded half to even to the minor unit first, as the live stage stores it
               toInt256(roundBankers(value, places) * toDecimal128(intExp10(places), 0)) AS total
        FROM (SELECT *, length(path) AS n FROM journeys)
        ARRAY JOIN {models:Array(String)} AS model
    ),
    weighted AS (
        SELECT conversion_id, kind, at, currency, model, path, n, pick, places, total,
               toUInt256(1000000000000000000) AS units,  -- 10^18: weights have 18 decimals
               if(pick >= 0, [units], arrayMap(
                   (f, r) -> f + (r <= units - arraySum(w_floor)),
                   arrayMap(s -> intDiv(units * s, arraySum(shares)), multiIf(
                       model = 'linear', arrayMap(i -> toUInt256(1), idx),
                       model = 'position_based',  -- 40/20/40: 2(n-2) : 1 ... 1 : 2(n-2); two touches 1 : 1
                           arrayMap(i -> toUInt256(if(n <= 2, 1, if(i = 1 OR i = n, 2 * (n - 2), 1))), idx),
                       model = 'time_decay',
                           -- 2^(-(at - t) / h) / 2^(-(at - latest) / h) as a 53-bit float, times 2^190
                           arrayMap(p -> toUInt256(exp2(toFloat64(toUnixTimestamp64Milli(p.1)
                                                                  - toUnixTimestamp64Milli(path[n].1))
                                                        / (86400000 * {half_life:Float64})) * exp2(190)), path),
                       arrayMap(i -> toUInt256(0), idx)) AS shares) AS w_floor,  -- unknown: refused by reports.py
                   -- each touch's rank by (remainder desc, position): the first ones get one unit more
                   arraySort((k, o) -> o, idx,
                             arraySort((i, r) -> (-toInt256(r), i), idx,
                                       arrayMap(s -> (units * s) % arraySum(shares), shares))))) AS w
        FROM shared
    ),
    credited_all AS (
        SELECT conversion_id, kind, at, currency, model, path, n, pick, places, w,
               toUInt256(abs(total)) AS whole,
               if(pick >= 0, [total], arrayMap(
                   (f, r) -> toInt256(f + (r <= whole - arraySum(a_floor))) * sign(total),
                   arrayMap(u -> intDiv(whole * u, units), w) AS a_floor,
                   arraySort((k, o) -> o, arrayEnumerate(w),
                             arraySort((i, r) -> (-toInt256(r), i), arrayEnumerate(w),
                                       arrayMap(u -> (whole * u) % units, w))))) AS a
        FROM weighted
    ),
    credited AS (
        SELECT conversion_id, kind, at, currency, model,
               if(pick = 0, '', path[x.1].2) AS touch_id,
               if(pick = 0, '(unattributed)', path[x.1].3) AS label,
               -- the integers are the decimals' own representation: 10^-18 units, 10^-6 units
               reinterpret(toInt128(x.2), 'Decimal(38, 18)') AS weight,
               reinterpret(toInt128(x.3) * intExp10(6 - places), 'Decimal(38, 6)') AS amount
        FROM credited_all
        ARRAY JOIN arrayZip(if(pick >= 0, [toUInt32(pick)], arrayEnumerate(w)), w, a) AS x
        WHERE x.2 > 0
    )
