-- Nothing changes here: PostgreSQL's step drops the foreign keys from incident_targets and
-- incident_cases to incidents for the storm's sake. SQLite can only drop a key by rebuilding
-- both tables, and the embedded store, one process's, never fans out a storm of that size.
SELECT 1;
