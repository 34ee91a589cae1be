-- Show cancellation: a show an operator cancelled keeps when and why, for good (it is never
-- un-cancelled). Cancelling marks the show first; winding up what it had (its undecided requests,
-- live holds and open orders) follows, and the sweep repeats that wind-up for recently cancelled
-- shows until nothing of them is left open, so a crash or a race in between cannot leave a seat
-- held or a ticket paid for a show that will not happen.

ALTER TABLE shows
    ADD COLUMN cancelled_at TIMESTAMPTZ NULL,
    ADD COLUMN cancel_reason TEXT NULL;

CREATE INDEX shows_cancelled ON shows (cancelled_at) WHERE cancelled_at IS NOT NULL;

-- The wind-up cancels or refunds every order of the show that is not over.
CREATE INDEX orders_open_by_show ON orders (show_id, created_at)
    WHERE status IN ('PAYMENT_PENDING', 'CONFIRMED');
