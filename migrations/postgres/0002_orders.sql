-- Orders and payments (booking_core::order), and the seat-claim kinds that go with them; the
-- same tables and guards as the embedded store (migrations/sqlite/0002_orders.sql).
--
-- A claim's kind says who owns the seat: 'HOLD' (a live hold; the seat map shows HELD), 'ORDER'
-- (an order waiting for payment; HELD) or 'SOLD' (a confirmed order; BOOKED). An order takes
-- over its hold's claims (same hold_id), so the seat_claims primary key that keeps two holds off
-- one seat keeps a hold off an order's seat too, until the order's claim runs out.

ALTER TABLE seat_claims DROP CONSTRAINT seat_claims_kind_check;
ALTER TABLE seat_claims ADD CONSTRAINT seat_claims_kind_check
    CHECK (kind IN ('HOLD', 'ORDER', 'SOLD'));

CREATE TABLE orders (
    order_id     UUID PRIMARY KEY,
    -- One order per hold: a hold converts once.
    hold_id      UUID UNIQUE NOT NULL REFERENCES holds (hold_id),
    user_id      VARCHAR(255) NOT NULL,
    show_id      UUID NOT NULL REFERENCES shows (show_id),
    seat_ids     TEXT[] NOT NULL,
    status       VARCHAR(20) NOT NULL
        CHECK (status IN ('PAYMENT_PENDING', 'CONFIRMED', 'FAILED', 'EXPIRED', 'CANCELLED')),
    amount_cents BIGINT NOT NULL CHECK (amount_cents >= 0),
    currency     TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,          -- the payment deadline
    seats_until  TIMESTAMPTZ NOT NULL,          -- until when its claims last
    updated_at   TIMESTAMPTZ NOT NULL,
    ticket_code  TEXT UNIQUE NULL,              -- CONFIRMED
    reason       TEXT NULL
);

CREATE INDEX orders_by_user ON orders (user_id, created_at DESC, order_id DESC);
CREATE INDEX orders_pending_by_claim_end ON orders (seats_until) WHERE status = 'PAYMENT_PENDING';

-- Every call to the payment provider, recorded before it is made and settled after: what an
-- operator reads to see what was charged and refunded, and what recovery settles after a crash.
CREATE TABLE payments (
    payment_id   UUID PRIMARY KEY,              -- also the provider's idempotency key
    order_id     UUID NOT NULL REFERENCES orders (order_id),
    kind         VARCHAR(10) NOT NULL CHECK (kind IN ('CHARGE', 'REFUND')),
    status       VARCHAR(10) NOT NULL
        CHECK (status IN ('PENDING', 'SUCCEEDED', 'DECLINED', 'FAILED')),
    amount_cents BIGINT NOT NULL CHECK (amount_cents >= 0),
    currency     TEXT NOT NULL,
    token        TEXT NULL,                     -- CHARGE: re-sent as it was if in doubt
    provider_ref TEXT NULL,
    refund_of    UUID UNIQUE NULL REFERENCES payments (payment_id),
    message      TEXT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);

CREATE INDEX payments_by_order ON payments (order_id, created_at);
-- Recovery looks for PENDING payments last sent before a given instant.
CREATE INDEX payments_pending ON payments (updated_at) WHERE status = 'PENDING';
-- At most one charge of an order in flight: a second confirm re-sends the first charge instead
-- of starting another, so nobody is charged twice. A charge is refunded at most once (in full):
-- refund_of is UNIQUE.
CREATE UNIQUE INDEX payments_one_pending_charge ON payments (order_id)
    WHERE status = 'PENDING' AND kind = 'CHARGE';

-- Idempotency keys of every POST that takes one (holds, orders, payments, cancels), per user:
-- the request they were first used for (its digest) and, once handled, the answer to replay.
-- Kept until expires_at (IDEMPOTENCY_TTL_SECONDS); a use whose handler died is leased out again
-- after lease_until, under the same use_id, so a write made under it is found, not repeated.
CREATE TABLE idempotency_keys (
    user_id           VARCHAR(255) NOT NULL,
    idempotency_key   VARCHAR(128) NOT NULL,
    fingerprint       TEXT NOT NULL,            -- SHA-256 of method, path and canonical body
    use_id            TEXT NOT NULL,
    state             VARCHAR(10) NOT NULL CHECK (state IN ('IN_FLIGHT', 'DONE')),
    response_status   INTEGER NULL,
    response_body     BYTEA NULL,
    response_location TEXT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    lease_until       TIMESTAMPTZ NOT NULL,
    expires_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
);

CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
