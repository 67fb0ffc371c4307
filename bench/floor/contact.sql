-- The least PostgreSQL work of one merged contact (nine in ten of a storm's contacts), written
-- as intake's group commit writes a batch but with every statement carrying :b contacts.
-- With -D full=1: identification, the open-case and idempotency lookups, the interaction, its
-- timeline entry, the acknowledgement, the audit record, the case row for the answer, one
-- commit; then the dispatcher recording the acknowledgements delivered, one commit.
-- With -D full=0: only the rows a contact cannot do without (interaction, acknowledgement,
-- audit record, delivery), no reads and no timeline entry. No gRPC, no Rust, no Redis.
\set base random(1, 1000000000)
\set tag random(1, 4000000000000000000)
BEGIN;
\if :full
SELECT t.traveler_id FROM travelers t WHERE t.traveler_id = ANY(ARRAY(SELECT traveler_id FROM floor_pick WHERE n = ANY(ARRAY(SELECT 1 + ((:base + g * 7919) % :ncases) FROM generate_series(1, :b) g))));
SELECT case_id, traveler_id, open_segment_key FROM cases WHERE open_segment_key IS NOT NULL AND traveler_id = ANY(ARRAY(SELECT traveler_id FROM floor_pick WHERE n = ANY(ARRAY(SELECT 1 + ((:base + g * 7919) % :ncases) FROM generate_series(1, :b) g))));
SELECT idempotency_key FROM cases WHERE idempotency_key = ANY(ARRAY(SELECT 'k' || :client_id || '-' || :tag || '-' || g FROM generate_series(1, :b) g)) UNION ALL SELECT idempotency_key FROM case_interactions WHERE idempotency_key = ANY(ARRAY(SELECT 'k' || :client_id || '-' || :tag || '-' || g FROM generate_series(1, :b) g));
\endif
INSERT INTO case_interactions (case_id, at, channel, description, requested_outcomes, idempotency_key, request_fingerprint, acknowledgement_id)
  SELECT p.case_id, 1764000000000000 + g, 'sms', 'My flight CA981 was cancelled, I need a new flight tomorrow and a hotel tonight please', '["rebooking","hotel"]', gen_random_uuid()::text, md5(g::text), 'ack-' || :client_id || '-' || :tag || '-' || g
  FROM generate_series(1, :b) g, LATERAL (SELECT case_id, traveler_id FROM floor_pick WHERE n = 1 + ((:base + g * 7919) % :ncases)) p;
\if :full
INSERT INTO case_timeline (case_id, at, kind, actor, summary)
  SELECT p.case_id, 1764000000000000 + g, 'case.contact', 'intake', 'Contact on SMS: My flight CA981 was cancelled'
  FROM generate_series(1, :b) g, LATERAL (SELECT case_id, traveler_id FROM floor_pick WHERE n = 1 + ((:base + g * 7919) % :ncases)) p;
\endif
INSERT INTO notifications (notification_id, case_id, incident_id, traveler_id, purpose, status, channels, channel_index, attempts_on_channel, language, created_at, next_attempt_at, lease_until)
  SELECT 'ack-' || :client_id || '-' || :tag || '-' || g, p.case_id, NULL, p.traveler_id, 'acknowledgement', 'queued', '["sms","app"]', 0, 0, 'zh-CN', 1764000000000000 + g, 1764000000000000 + g, 1764000060000000
  FROM generate_series(1, :b) g, LATERAL (SELECT case_id, traveler_id FROM floor_pick WHERE n = 1 + ((:base + g * 7919) % :ncases)) p;
INSERT INTO audit_log (audit_id, at, actor_kind, actor_id, actor_roles, on_behalf_of, action, case_id, targets, trace_id, outcome)
  SELECT gen_random_uuid()::text, 1764000000000000 + g, 'user', 'floor-bench', '["agent","supervisor","crisis_manager"]', NULL, 'detour.intake.v1.IntakeService/OpenCase', p.case_id, '[{"kind":"traveler","id":"' || p.traveler_id || '"}]', md5(g::text), 'ok'
  FROM generate_series(1, :b) g, LATERAL (SELECT case_id, traveler_id FROM floor_pick WHERE n = 1 + ((:base + g * 7919) % :ncases)) p;
\if :full
SELECT * FROM cases WHERE case_id = ANY(ARRAY(SELECT case_id FROM floor_pick WHERE n = ANY(ARRAY(SELECT 1 + ((:base + g * 7919) % :ncases) FROM generate_series(1, :b) g))));
\endif
COMMIT;
BEGIN;
UPDATE notifications SET status = 'delivered', delivered_at = 1764000001000000, next_attempt_at = NULL, lease_until = NULL, attempts_on_channel = 1 WHERE notification_id = ANY(ARRAY(SELECT 'ack-' || :client_id || '-' || :tag || '-' || g FROM generate_series(1, :b) g));
INSERT INTO notification_attempts (notification_id, at, channel, accepted, detail)
  SELECT 'ack-' || :client_id || '-' || :tag || '-' || g, 1764000001000000, 'sms', true, 'sink-1' FROM generate_series(1, :b) g;
COMMIT;
