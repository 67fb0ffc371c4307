-- Identification by phone or e-mail asks for the first travelers with a handle in id order.
-- With the handle alone indexed, a planner unsure how many travelers share a handle walked the
-- primary key in order and filtered (16 ms a contact on 20,000 travelers); with the id in the
-- index the wanted rows come out of it already in order, whatever the statistics say.
DROP INDEX travelers_email;
DROP INDEX travelers_phone;
CREATE INDEX travelers_email ON travelers (email_index, traveler_id);
CREATE INDEX travelers_phone ON travelers (phone_index, traveler_id);
