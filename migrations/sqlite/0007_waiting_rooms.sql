-- Waiting rooms (booking_core::waiting_room): a show's room and its places. The room's row is
-- also its lock: every change to its places happens in a transaction on the single writer.
-- Durations are INTEGER milliseconds.

CREATE TABLE waiting_rooms (
    show_id          TEXT PRIMARY KEY NOT NULL REFERENCES shows (show_id),
    opens_at         INTEGER NOT NULL,
    admit_per_second INTEGER NOT NULL CHECK (admit_per_second >= 1),
    max_active       INTEGER NULL CHECK (max_active >= 1),
    admission_ttl_ms INTEGER NOT NULL CHECK (admission_ttl_ms > 0),
    shopping_ttl_ms  INTEGER NOT NULL CHECK (shopping_ttl_ms > 0),
    grace_ms         INTEGER NOT NULL CHECK (grace_ms > 0),
    -- Set once, when the pre-queue's order is drawn.
    opened_at        INTEGER NULL,
    -- The admission credit (booking_core::waiting_room::AdmissionCredit).
    credit_milli     INTEGER NOT NULL DEFAULT 0,
    credited_at      INTEGER NULL,
    next_ticket      INTEGER NOT NULL DEFAULT 1
);

-- One row per place. `queue_rank` is the admission order: NULL in the pre-queue until the
-- opening draws it, the ticket itself for those who join later (they all queue behind).
CREATE TABLE waiting_room_places (
    show_id        TEXT NOT NULL REFERENCES waiting_rooms (show_id) ON DELETE CASCADE,
    ticket         INTEGER NOT NULL,
    user_id        TEXT NOT NULL,
    joined_at      INTEGER NOT NULL,
    last_seen      INTEGER NOT NULL,
    queue_rank     INTEGER NULL,
    state          TEXT NOT NULL
        CHECK (state IN ('WAITING', 'ADMITTED', 'SHOPPING', 'DONE', 'ABANDONED', 'EXPIRED')),
    admitted_until INTEGER NULL,
    shopping_since INTEGER NULL,
    PRIMARY KEY (show_id, ticket)
);

-- One live place per user and room, whatever the callers race.
CREATE UNIQUE INDEX waiting_room_live_place ON waiting_room_places (show_id, user_id)
    WHERE state IN ('WAITING', 'ADMITTED', 'SHOPPING');
-- A user's latest place.
CREATE INDEX waiting_room_places_of_user ON waiting_room_places (show_id, user_id, ticket);
-- The queue: who is next, and how many are ahead of a place.
CREATE INDEX waiting_room_queue ON waiting_room_places (show_id, queue_rank)
    WHERE state = 'WAITING';
-- Who has not been seen within the grace period.
CREATE INDEX waiting_room_last_seen ON waiting_room_places (show_id, last_seen)
    WHERE state = 'WAITING';
-- What max_active counts, and what expires.
CREATE INDEX waiting_room_active ON waiting_room_places (show_id, state)
    WHERE state IN ('ADMITTED', 'SHOPPING');
