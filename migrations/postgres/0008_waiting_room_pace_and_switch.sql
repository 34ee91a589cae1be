-- Waiting rooms that estimate from what they do, and that switch themselves on.
--
-- The measured admission pace (booking_core::waiting_room::AdmissionPace): the current
-- window's start and count, and the last full window's figure in thousandths per second.
ALTER TABLE waiting_rooms
    ADD COLUMN pace_since    TIMESTAMPTZ NULL,
    ADD COLUMN pace_admitted BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN pace_milli    BIGINT NULL;

-- A room set to switch itself on above a rate of hold requests (requests per second): it is
-- armed (holds need no admission) until the demand its processes report goes over the rate
-- (booking_core::waiting_room::DemandMeter), then on, opening at that instant.
ALTER TABLE waiting_rooms
    ADD COLUMN switch_on_above INTEGER NULL CHECK (switch_on_above >= 1),
    ADD COLUMN armed           BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN demand_since    TIMESTAMPTZ NULL,
    ADD COLUMN demand_count    BIGINT NOT NULL DEFAULT 0;
