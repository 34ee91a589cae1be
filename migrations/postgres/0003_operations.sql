-- Operations: the pause of a show's lane, kept with the show so that it survives a restart and
-- every worker reads the same flag (the store is its truth; nothing else keeps it), and an index
-- for the queue statistics' "decided in the last minute" (decisions per second, mean time to
-- decision), which looks only at recently decided requests.

ALTER TABLE shows ADD COLUMN paused BOOLEAN NOT NULL DEFAULT FALSE;

CREATE INDEX booking_requests_decided_at ON booking_requests (processed_at)
    WHERE processed_at IS NOT NULL;

-- Dead letters: a request that could not be decided after MAX_ATTEMPTS tries is set aside (it
-- stays QUEUED, so it still expires at its deadline and its owner is told) until an operator
-- redrives or discards it. Recovery skips it: it never blocks its show again.
ALTER TABLE booking_requests
    ADD COLUMN dead_lettered_at TIMESTAMPTZ NULL,
    ADD COLUMN dead_letter_reason TEXT NULL,
    ADD COLUMN attempts INTEGER NULL;

CREATE INDEX booking_requests_dead_letters ON booking_requests (show_id, seq)
    WHERE dead_lettered_at IS NOT NULL;
