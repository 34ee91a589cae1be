-- Retention: the sweep removes booking history older than REQUEST_RETENTION_DAYS, oldest first,
-- in small batches. Holds that ended without an order are found by when they ended (decided
-- requests already have booking_requests_decided_at); the live holds never enter this index.

CREATE INDEX holds_ended ON holds (ended_at) WHERE status IN ('RELEASED', 'EXPIRED');
