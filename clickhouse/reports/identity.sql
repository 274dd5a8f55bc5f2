-- The identity graph as it stands: every identifier the processors have linked ("kind:value";
-- phones, emails and chats as keyed hashes) and its person (the mapping row with the highest
-- version). An identifier not listed is a person of its own. For exports to a CRM or BI tool and
-- for "why is this one person?" (see identity_links for the evidence). Not limited by date.
SELECT 0 AS is_total, identifier, argMax(person_id, version) AS person, max(version) AS latest_version
FROM identity_map
WHERE project = {project:String}
GROUP BY identifier
ORDER BY person, identifier
LIMIT 1000000
