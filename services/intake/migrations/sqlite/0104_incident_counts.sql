-- An incident's progress, kept as the fan-out and the dispatcher move it rather than counted
-- on every GetIncident: with 100,000 travelers each read counted three tables of 100,000 rows,
-- and a storm dashboard polling a few times a second took a fifth of PostgreSQL's time.
ALTER TABLE incidents ADD COLUMN affected_travelers INTEGER NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN cases_opened INTEGER NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN notifications_queued INTEGER NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN notifications_delivered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN notifications_acknowledged INTEGER NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN notifications_undeliverable INTEGER NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN last_delivered_at INTEGER;

UPDATE incidents SET
    affected_travelers = (SELECT COUNT(*) FROM incident_targets t WHERE t.incident_id = incidents.incident_id),
    cases_opened = (SELECT COUNT(*) FROM incident_cases c WHERE c.incident_id = incidents.incident_id),
    notifications_queued = (SELECT COUNT(*) FROM notifications n
                            WHERE n.incident_id = incidents.incident_id AND n.status = 'pending'),
    notifications_delivered = (SELECT COUNT(*) FROM notifications n
                               WHERE n.incident_id = incidents.incident_id AND n.status = 'delivered'),
    notifications_acknowledged = (SELECT COUNT(*) FROM notifications n
                                  WHERE n.incident_id = incidents.incident_id AND n.status = 'acknowledged'),
    notifications_undeliverable = (SELECT COUNT(*) FROM notifications n
                                   WHERE n.incident_id = incidents.incident_id AND n.status = 'undeliverable'),
    last_delivered_at = (SELECT MAX(delivered_at) FROM notifications n WHERE n.incident_id = incidents.incident_id);
