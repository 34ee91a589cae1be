-- Operations: the pause of a show's lane, kept with the show so that it survives a restart and
-- every worker reads the same flag (the store is its truth; nothing else keeps it), and an index
-- for the queue statistics' "decided in the last minute" (decisions per second, mean time to
-- decision), which looks only at recently decided requests.

ALTER TABLE shows ADD COLUMN paused BOOLEAN NOT NULL DEFAULT FALSE;

CREATE INDEX booking_requests_decided_at ON booking_requests (processed_at)
    WHERE processed_at IS NOT NULL;
