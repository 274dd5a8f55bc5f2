-- Credits are versions (migration 0007): each re-credit of a conversion writes its whole
-- attribution again with a higher version, and readers keep only each conversion's highest version
-- (credits_current). The older rows count nothing, but they would grow with every visit of a
-- converting person and slow every read of credits_current (the live view refreshes from it every
-- few seconds). Deleted here (a lightweight DELETE: masked at once, dropped by merges); a row of a
-- conversion's newest version is never touched.
DELETE FROM credits
WHERE (project, conversion_id, version) NOT IN (
    SELECT project, conversion_id, max(version) FROM credits GROUP BY project, conversion_id)
