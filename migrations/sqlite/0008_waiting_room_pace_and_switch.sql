-- Waiting rooms that estimate from what they do, and that switch themselves on.
--
-- The measured admission pace (booking_core::waiting_room::AdmissionPace): the current
-- window's start and count, and the last full window's figure in thousandths per second.
ALTER TABLE waiting_rooms ADD COLUMN pace_since INTEGER NULL;
ALTER TABLE waiting_rooms ADD COLUMN pace_admitted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE waiting_rooms ADD COLUMN pace_milli INTEGER NULL;

-- A room set to switch itself on above a rate of hold requests (requests per second): it is
-- armed (holds need no admission) until the demand its processes report goes over the rate
-- (booking_core::waiting_room::DemandMeter), then on, opening at that instant.
ALTER TABLE waiting_rooms ADD COLUMN switch_on_above INTEGER NULL CHECK (switch_on_above >= 1);
ALTER TABLE waiting_rooms ADD COLUMN armed INTEGER NOT NULL DEFAULT 0 CHECK (armed IN (0, 1));
ALTER TABLE waiting_rooms ADD COLUMN demand_since INTEGER NULL;
ALTER TABLE waiting_rooms ADD COLUMN demand_count INTEGER NOT NULL DEFAULT 0;
