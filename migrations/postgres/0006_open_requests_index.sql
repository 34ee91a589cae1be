-- A user's undecided requests on a show, counted on every POST /holds against
-- MAX_OPEN_REQUESTS_PER_USER: without this index the count walks every waiting request of the
-- show (the (show_id, status) index), so intake slowed down as a backlog grew.
CREATE INDEX booking_requests_open_by_user ON booking_requests (user_id, show_id)
    WHERE status IN ('QUEUED', 'PROCESSING');
