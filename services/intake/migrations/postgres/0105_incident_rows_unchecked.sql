-- An incident's targets and case links are written 500 to a transaction by the fan-out, which
-- holds the incident (it claimed it, by id, moments before); incidents are never deleted. A
-- foreign key here re-read and share-locked the one incident row for every one of 100,000
-- rows of a storm and bought nothing the fan-out's own claim does not already guarantee.
ALTER TABLE incident_targets DROP CONSTRAINT IF EXISTS incident_targets_incident_id_fkey;
ALTER TABLE incident_cases DROP CONSTRAINT IF EXISTS incident_cases_incident_id_fkey;
