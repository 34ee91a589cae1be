-- The PostgreSQL store's schema (booking-postgres). The same tables and guards as the embedded
-- store (migrations/sqlite), in PostgreSQL's own types: UUID ids, TIMESTAMPTZ instants
-- (microsecond precision), TEXT[] seat lists and a JSONB seat layout. Seat ids are TEXT in their
-- canonical form ("A12"), validated by the application before they are ever written.
--
-- Applied only by an explicit `PgStore::migrate()` (a deploy step), never at connect time.

CREATE TABLE movies (
    movie_id         UUID PRIMARY KEY,
    -- "C" collation: titles list in byte order, exactly as the embedded store lists them,
    -- whatever the database's locale.
    title            TEXT COLLATE "C" NOT NULL,
    description      TEXT NOT NULL,
    duration_minutes BIGINT NOT NULL CHECK (duration_minutes BETWEEN 0 AND 4294967295),
    rating           TEXT NOT NULL,
    genres           TEXT[] NOT NULL,
    language         TEXT NOT NULL
);

CREATE INDEX movies_title ON movies (title, movie_id);

CREATE TABLE shows (
    show_id    UUID PRIMARY KEY,
    movie_id   UUID NOT NULL REFERENCES movies (movie_id),
    starts_at  TIMESTAMPTZ NOT NULL,
    auditorium TEXT NOT NULL,
    layout     JSONB NOT NULL               -- booking_core::layout::LayoutSpec
);

CREATE INDEX shows_movie_starts ON shows (movie_id, starts_at);

-- One row per accepted hold request (the `booking_requests` table of the system this replaces), extended
-- with what the domain records: the arrival sequence, the idempotency key and the outcome.
CREATE TABLE booking_requests (
    request_id      UUID PRIMARY KEY,
    -- Global arrival order. An identity column never hands out a number twice (a rolled-back
    -- insert leaves a gap, nothing else).
    seq             BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    user_id         VARCHAR(255) NOT NULL,
    show_id         UUID NOT NULL REFERENCES shows (show_id),
    seat_ids        TEXT[] NOT NULL,
    status          VARCHAR(20) NOT NULL DEFAULT 'QUEUED'
        CHECK (status IN ('QUEUED', 'PROCESSING', 'SUCCESS', 'FAILED', 'EXPIRED')),
    -- From the source design; unused: a request's place in its queue is the queue's to tell.
    queue_position  INTEGER NULL,
    result_message  TEXT NULL,
    hold_id         UUID NULL,              -- SUCCESS
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    processed_at    TIMESTAMPTZ NULL,
    expires_at      TIMESTAMPTZ NOT NULL,   -- undecided by then: EXPIRED
    idempotency_key VARCHAR(128) NULL,
    hold_expires_at TIMESTAMPTZ NULL,       -- SUCCESS
    unavailable     TEXT[] NULL,            -- FAILED: the seats that were taken
    alternatives    TEXT[] NULL,            -- FAILED: what was offered instead
    -- NULLs are distinct in a UNIQUE constraint, so requests without a key never collide.
    UNIQUE (user_id, idempotency_key)
);

CREATE INDEX idx_booking_requests_user ON booking_requests (user_id, created_at DESC);
CREATE INDEX idx_booking_requests_status ON booking_requests (show_id, status);
CREATE INDEX idx_booking_requests_status_seq ON booking_requests (status, seq);
-- The sweep of requests never decided in time looks only at QUEUED ones by deadline.
CREATE INDEX idx_booking_requests_queued_expiry ON booking_requests (expires_at)
    WHERE status = 'QUEUED';

CREATE TABLE holds (
    hold_id    UUID PRIMARY KEY,
    request_id UUID UNIQUE NOT NULL REFERENCES booking_requests (request_id),
    user_id    VARCHAR(255) NOT NULL,
    show_id    UUID NOT NULL REFERENCES shows (show_id),
    seat_ids   TEXT[] NOT NULL,
    status     VARCHAR(20) NOT NULL CHECK (status IN ('HELD', 'RELEASED', 'EXPIRED', 'CONVERTED')),
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    ended_at   TIMESTAMPTZ NULL
);

-- Only live holds are ever searched by show or by expiry (load_show_state, expire_holds), so
-- partial indexes stay as small as the number of live holds, however long the history grows.
CREATE INDEX holds_live_by_show ON holds (show_id, expires_at) WHERE status = 'HELD';
CREATE INDEX holds_live_by_expiry ON holds (expires_at) WHERE status = 'HELD';

-- Who owns each seat right now. The primary key is the database's own guard against double
-- allocation: a seat has one row, and a writer may take it over only once `expires_at` has
-- passed (commit_batch's `ON CONFLICT ... DO UPDATE ... WHERE seat_claims.expires_at <= $now`).
-- Rows of expired holds may linger; expiry is decided by time.
CREATE TABLE seat_claims (
    show_id    UUID NOT NULL REFERENCES shows (show_id),
    seat_id    TEXT NOT NULL,
    hold_id    UUID NOT NULL,
    kind       VARCHAR(10) NOT NULL CHECK (kind IN ('HOLD', 'ORDER')),
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (show_id, seat_id)
);

CREATE INDEX seat_claims_hold ON seat_claims (hold_id);
