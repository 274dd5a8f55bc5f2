-- Not a report: the query-time credits themselves, in the live credits' shape (reports.credits, with
-- label = 'touch'; the tests compare them with stream_processors/attribution.py credit by credit).
WITH
--@include _credited.sql
SELECT conversion_id, kind, model, touch_id,
       (splitByChar('\x1f', label) AS fields)[1] AS channel, fields[2] AS source, fields[3] AS medium,
       fields[4] AS campaign,
       weight, amount, currency
FROM credited
ORDER BY conversion_id, model, touch_id
