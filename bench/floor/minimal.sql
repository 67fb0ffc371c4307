-- The floor under the floor: only the rows a contact cannot do without (its interaction, its
-- acknowledgement, its audit record, the delivery), no reads and no timeline entry.
\set base random(1, 1000000000)
\set tag random(1, 4000000000000000000)
BEGIN;
INSERT INTO case_interactions (case_id, at, channel, description, requested_outcomes, idempotency_key, request_fingerprint, acknowledgement_id)
  SELECT p.case_id, 1764000000000000 + g, 'sms', 'My flight CA981 was cancelled, I need a new flight tomorrow and a hotel tonight please', '["rebooking","hotel"]', gen_random_uuid()::text, md5(g::text), 'ack-' || :client_id || '-' || :tag || '-' || g
  FROM generate_series(1, :b) g, LATERAL (SELECT case_id, traveler_id FROM floor_pick WHERE n = 1 + ((:base + g * 7919) % :ncases)) p;
INSERT INTO notifications (notification_id, case_id, incident_id, traveler_id, purpose, status, channels, channel_index, attempts_on_channel, language, created_at, next_attempt_at, lease_until)
  SELECT 'ack-' || :client_id || '-' || :tag || '-' || g, p.case_id, NULL, p.traveler_id, 'acknowledgement', 'queued', '["sms","app"]', 0, 0, 'zh-CN', 1764000000000000 + g, 1764000000000000 + g, 1764000060000000
  FROM generate_series(1, :b) g, LATERAL (SELECT case_id, traveler_id FROM floor_pick WHERE n = 1 + ((:base + g * 7919) % :ncases)) p;
INSERT INTO audit_log (audit_id, at, actor_kind, actor_id, actor_roles, on_behalf_of, action, case_id, targets, trace_id, outcome)
  SELECT gen_random_uuid()::text, 1764000000000000 + g, 'user', 'floor-bench', '["agent","supervisor","crisis_manager"]', NULL, 'detour.intake.v1.IntakeService/OpenCase', p.case_id, '[{"kind":"traveler","id":"' || p.traveler_id || '"}]', md5(g::text), 'ok'
  FROM generate_series(1, :b) g, LATERAL (SELECT case_id, traveler_id FROM floor_pick WHERE n = 1 + ((:base + g * 7919) % :ncases)) p;
COMMIT;
BEGIN;
UPDATE notifications SET status = 'delivered', delivered_at = 1764000001000000, next_attempt_at = NULL, lease_until = NULL, attempts_on_channel = 1 WHERE notification_id = ANY(ARRAY(SELECT 'ack-' || :client_id || '-' || :tag || '-' || g FROM generate_series(1, :b) g));
INSERT INTO notification_attempts (notification_id, at, channel, accepted, detail)
  SELECT 'ack-' || :client_id || '-' || :tag || '-' || g, 1764000001000000, 'sms', true, 'sink-1' FROM generate_series(1, :b) g;
COMMIT;
