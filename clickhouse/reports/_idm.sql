-- A WITH fragment (`--@include _idm.sql`): each linked identifier's person, the identity_map row
-- with the highest version. An identifier without a row is its own person:
-- 'p_' || substring(lower(hex(SHA256(identifier))), 1, 16).
    idm AS (
        SELECT identifier, argMax(person_id, version) AS person_id
        FROM identity_map
        WHERE project = {project:String}
        GROUP BY identifier
    ),
