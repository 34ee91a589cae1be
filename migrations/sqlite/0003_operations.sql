-- Operations: the pause of a show's lane, kept with the show so that it survives a restart, and
-- an index for the queue statistics' "decided in the last minute" (decisions per second, mean time
-- to decision), which looks only at recently decided requests.

ALTER TABLE shows ADD COLUMN paused INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1));

CREATE INDEX booking_requests_decided_at ON booking_requests (processed_at)
    WHERE processed_at IS NOT NULL;
