-- The embedded store's schema (booking-sqlite). Timestamps are INTEGER unix milliseconds (UTC);
-- lists (seat ids, genres) and the seat layout are JSON text, because they are always read and
-- written whole and never queried into.

CREATE TABLE movies (
    movie_id         TEXT PRIMARY KEY NOT NULL,
    title            TEXT NOT NULL,
    description      TEXT NOT NULL,
    duration_minutes INTEGER NOT NULL CHECK (duration_minutes >= 0),
    rating           TEXT NOT NULL,
    genres           TEXT NOT NULL,            -- JSON array of strings
    language         TEXT NOT NULL
);

CREATE INDEX movies_title ON movies (title);

CREATE TABLE shows (
    show_id    TEXT PRIMARY KEY NOT NULL,
    movie_id   TEXT NOT NULL REFERENCES movies (movie_id),
    starts_at  INTEGER NOT NULL,
    auditorium TEXT NOT NULL,
    layout     TEXT NOT NULL                    -- JSON of booking_core::layout::LayoutSpec
);

CREATE INDEX shows_movie_starts ON shows (movie_id, starts_at);

-- One row per accepted hold request. `seq` is the global arrival order: AUTOINCREMENT (not just
-- ROWID) so a number is never reused, even after the newest rows are deleted.
CREATE TABLE booking_requests (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id      TEXT UNIQUE NOT NULL,
    user_id         TEXT NOT NULL,
    show_id         TEXT NOT NULL REFERENCES shows (show_id),
    seat_ids        TEXT NOT NULL,              -- JSON array of seat ids
    status          TEXT NOT NULL
        CHECK (status IN ('QUEUED', 'PROCESSING', 'SUCCESS', 'FAILED', 'EXPIRED')),
    idempotency_key TEXT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    processed_at    INTEGER NULL,
    hold_id         TEXT NULL,
    hold_expires_at INTEGER NULL,
    result_message  TEXT NULL,
    unavailable     TEXT NULL,                  -- JSON array of seat ids (FAILED)
    alternatives    TEXT NULL,                  -- JSON array of seat ids (FAILED)
    -- NULL keys are distinct in SQLite, so requests without a key never collide.
    UNIQUE (user_id, idempotency_key)
);

CREATE INDEX booking_requests_status_seq ON booking_requests (status, seq);
CREATE INDEX booking_requests_show_status ON booking_requests (show_id, status);

CREATE TABLE holds (
    hold_id    TEXT PRIMARY KEY NOT NULL,
    request_id TEXT UNIQUE NOT NULL REFERENCES booking_requests (request_id),
    user_id    TEXT NOT NULL,
    show_id    TEXT NOT NULL REFERENCES shows (show_id),
    seat_ids   TEXT NOT NULL,                   -- JSON array of seat ids
    status     TEXT NOT NULL CHECK (status IN ('HELD', 'RELEASED', 'EXPIRED', 'CONVERTED')),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ended_at   INTEGER NULL
);

CREATE INDEX holds_show_status ON holds (show_id, status);
CREATE INDEX holds_status_expires ON holds (status, expires_at);

-- Who owns each seat right now. The primary key is the database's own guard against double
-- allocation: a seat has one row, and a writer may take it over only once `expires_at` has
-- passed (see commit_batch). Rows of expired holds may linger; expiry is decided by time.
CREATE TABLE seat_claims (
    show_id    TEXT NOT NULL REFERENCES shows (show_id),
    seat_id    TEXT NOT NULL,
    hold_id    TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('HOLD', 'ORDER')),
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (show_id, seat_id)
);

CREATE INDEX seat_claims_hold ON seat_claims (hold_id);
