-- Synthetic travelers and open cases for the contact floor, in intake's own migrated schema:
-- shaped like a storm's (sealed personal data of a storm's size, one open flight case each), so
-- the floor's rows reference real keys and pay the same foreign-key checks and index updates.
INSERT INTO travelers (traveler_id, tenant, preferred_language, contact_channels, personal_data,
                       data_key_version, email_index, phone_index, updated_at)
SELECT 'floor-t' || g, 'default', 'zh-CN', '["sms","app"]', decode(repeat('ab', 102), 'hex'), 1,
       md5('e' || g), md5('p' || g), 1764000000000000
FROM generate_series(1, :ncases) g;

INSERT INTO cases (case_id, case_number, status, traveler, segment, channel, description,
                   requested_outcomes, opened_at, first_response_due, tenant, traveler_id,
                   personal_data, data_key_version, language, open_segment_key)
SELECT 'floor-c' || g, 'F-' || g, 'open',
       '{"id":"floor-t' || g || '","preferred_language":"zh-CN"}',
       '{"kind":"flight","supplier_code":"CA","service_reference":"CA' || (900 + g % 200) ||
         '","origin":"PEK","destination":"FRA","starts_at":"2026-12-03T22:25:00Z","ends_at":"2026-12-04T09:05:00Z","booking_reference":"FL' || g || '","price":null}',
       'sms', 'Flight cancelled by the storm', '["rebooking"]', 1764000000000000 + g,
       1764000900000000 + g, 'default', 'floor-t' || g, decode(repeat('cd', 102), 'hex'), 1, 'zh',
       'flight|CA|CA' || (900 + g % 200) || '|2026-12-03'
FROM generate_series(1, :ncases) g;

-- The floor's scripts pick the contact's case by number, one index probe each.
CREATE TABLE floor_pick AS SELECT g AS n, 'floor-c' || g AS case_id, 'floor-t' || g AS traveler_id
FROM generate_series(1, :ncases) g;
CREATE UNIQUE INDEX ON floor_pick (n);
ANALYZE;
