//! `OrderStore`: orders, their payments, and the seat claims they take over from holds.
//!
//! The rules are `booking_core::order`'s and the checks, errors and writes those of the embedded
//! store (`booking-sqlite`'s `orders.rs`); the contract suite checks both. What differs is how a
//! check is kept from being overtaken before the writes that depend on it land. SQLite has one
//! writer, so a transaction that has read something still finds it so when it writes. Here many
//! writers run at once, each method in one READ COMMITTED transaction, so:
//!
//! - **Orders and holds are locked, then read.** Each method that works on one order first takes
//!   its row with `SELECT ... FOR UPDATE` (`create_order`, the hold's), and only then reads its
//!   payments. Every change to an order or its payments is made under that lock, so two confirms,
//!   a confirm and a cancel, a charge's outcome and the expiry sweep (whose guarded `UPDATE`
//!   waits for the lock, then re-checks) take turns: the second one reads what the first
//!   committed, exactly as if they had run one after the other on a single writer. A charge in
//!   flight is found, and the one-pending-charge index is never what refuses a second one.
//! - **Seat claims are guarded writes, or locked before they are counted.** Workers never touch
//!   orders, but they do take over claims that have run out (`INSERT ... ON CONFLICT ... DO
//!   UPDATE ... WHERE seat_claims.expires_at <= $now`, `batch.rs`). So `create_order` moves the
//!   hold's claims with an `UPDATE` guarded by `kind = 'HOLD' AND expires_at > $now` and checks
//!   that it moved every seat; and `finish_charge` locks the order's claims (`FOR UPDATE`) before
//!   counting them, so none can be taken over between the count and their move to SOLD. A
//!   concurrent take-over is waited for and re-checked against the committed row either way, so
//!   exactly one of the two wins the seat.
//! - **One lock order.** A hold's or order's row first, then its claims, as `release_hold` and
//!   `expire_holds` do; claims locked for a count are locked in seat order, as the batch writer
//!   takes them. A deadlock PostgreSQL still finds (a create racing a worker for a claim at the
//!   very instant it runs out) is an unavailable error: the transaction wrote nothing, and the
//!   call may be repeated.
//!
//! Instants are written as `TIMESTAMPTZ` (microseconds), and what a method returns is truncated
//! the same way ([`PgStore::stored_instant`]), so it equals what a later read returns.

mod statements;

use crate::PgStore;
use crate::codec::{self, HoldRow, OrderRow, PaymentRow};
use async_trait::async_trait;
use booking_core::ports::{
    CancelStart, ChargeFinish, ChargeResult, ChargeStart, OrderError, OrderPage, OrderStore,
    StoreError,
};
use booking_core::{
    Hold, HoldId, HoldStatus, NewOrder, Order, OrderId, OrderStatus, Payment, PaymentId,
    PaymentKind, PaymentStatus, PaymentToken, ShowId, UserId, refunded_reason, sold_until,
};
use booking_sql::claim_kind;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, Transaction};
use statements::{
    NewPayment, extend_claims, free_claims, insert_payment, load_payment, lock_claims,
    lock_order_of_payment, lock_owned_order, payments_where, refund_for, set_order_reason,
    set_order_status, settle_payment, touch_payment,
};

type Tx = Transaction<'static, Postgres>;

impl PgStore {
    /// The transaction of one order operation. Explicitly READ COMMITTED, whatever the server's
    /// default: the row locks and guarded writes described in the module docs are what keep the
    /// checks true, and a stricter level would only add serialization failures.
    async fn begin_order_tx(&self) -> Result<Tx, StoreError> {
        self.pool()
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(codec::store_error)
    }
}

/// Ends an order operation's transaction: commits if it succeeded, otherwise rolls back at once
/// (a refused operation writes nothing, and the rows it locked are free again before the caller
/// hears why, not when the connection is next used).
async fn finish<T>(tx: Tx, done: Result<T, OrderError>) -> Result<T, OrderError> {
    match done {
        Ok(done) => {
            tx.commit().await.map_err(codec::store_error)?;
            Ok(done)
        }
        Err(e) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "rollback of a refused order operation failed");
            }
            Err(e)
        }
    }
}

/// The body of `create_order`, inside its transaction.
async fn create_order_in(conn: &mut PgConnection, new: &NewOrder) -> Result<Order, OrderError> {
    // Locked: a second create for the same hold waits here and then finds it CONVERTED, and a
    // release or expiry of the hold waits for this transaction and then finds it no longer HELD.
    let hold = sqlx::query_as!(
        HoldRow,
        "SELECT hold_id, request_id, user_id, show_id, seat_ids, status, created_at, \
                expires_at, ended_at \
         FROM holds WHERE hold_id = $1 FOR UPDATE",
        new.hold_id.as_uuid()
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(codec::store_error)?
    .map(Hold::try_from)
    .transpose()?
    .filter(|h| h.user_id == new.user_id)
    .ok_or(OrderError::NotFound)?;
    let status = hold.status_at(new.created_at);
    if status != HoldStatus::Held {
        return Err(OrderError::HoldNotActive(status));
    }
    let now = codec::truncate_micros(new.created_at);
    let expires_at = codec::truncate_micros(new.expires_at);
    sqlx::query!(
        "UPDATE holds SET status = 'CONVERTED', ended_at = $2 \
         WHERE hold_id = $1 AND status = 'HELD'",
        hold.hold_id.as_uuid(),
        now
    )
    .execute(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    // The hold's live claims pass to the order. All of them or none: a claim that is gone or ran
    // out means the seats are not the hold's to pass on. Guarded, because the hold's lock does not
    // keep workers off its claims: one taking over a claim that ran out is waited for, and the
    // claim, now another hold's, no longer matches.
    let moved = sqlx::query!(
        "UPDATE seat_claims SET kind = 'ORDER', expires_at = $3 \
         WHERE hold_id = $1 AND kind = 'HOLD' AND expires_at > $2",
        hold.hold_id.as_uuid(),
        now,
        expires_at
    )
    .execute(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    if moved.rows_affected() != hold.seat_ids.len() as u64 {
        return Err(OrderError::HoldNotActive(HoldStatus::Expired));
    }
    let order = Order {
        order_id: new.order_id,
        hold_id: hold.hold_id,
        user_id: hold.user_id,
        show_id: hold.show_id,
        seat_ids: hold.seat_ids,
        status: OrderStatus::PaymentPending,
        amount_cents: new.amount_cents,
        currency: new.currency.clone(),
        created_at: now,
        expires_at,
        seats_until: expires_at,
        updated_at: now,
        ticket_code: None,
        reason: None,
    };
    let seat_ids: Vec<String> = order.seat_ids.iter().map(ToString::to_string).collect();
    sqlx::query!(
        "INSERT INTO orders \
             (order_id, hold_id, user_id, show_id, seat_ids, status, amount_cents, currency, \
              created_at, expires_at, seats_until, updated_at, ticket_code, reason) \
         VALUES ($1, $2, $3, $4, $5, 'PAYMENT_PENDING', $6, $7, $8, $9, $9, $8, NULL, NULL)",
        order.order_id.as_uuid(),
        order.hold_id.as_uuid(),
        order.user_id.as_str(),
        order.show_id.as_uuid(),
        &seat_ids,
        order.amount_cents,
        order.currency,
        now,
        expires_at
    )
    .execute(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    Ok(order)
}

/// The body of `begin_charge`, inside its transaction.
async fn begin_charge_in(
    conn: &mut PgConnection,
    order: OrderId,
    user: &UserId,
    payment: PaymentId,
    token: &PaymentToken,
    now: DateTime<Utc>,
    hold_seats_until: DateTime<Utc>,
) -> Result<ChargeStart, OrderError> {
    let mut order = lock_owned_order(conn, order, user).await?;
    match order.status_at(now) {
        OrderStatus::PaymentPending if now < order.expires_at => {}
        OrderStatus::PaymentPending | OrderStatus::Expired => return Err(OrderError::Expired),
        other => return Err(OrderError::NotPending(other)),
    }
    // The seats must still be the order's: a worker whose clock ran ahead may have taken over a
    // claim that ran out, and nobody is charged for seats that are gone. Locked, so that no
    // worker takes one over while the charge is being recorded.
    if lock_claims(conn, order.hold_id, claim_kind::ORDER).await? != order.seat_ids.len() {
        return Err(OrderError::Expired);
    }
    let in_doubt = payments_where(
        conn,
        order.order_id,
        PaymentKind::Charge,
        PaymentStatus::Pending,
    )
    .await?
    .pop();
    let start = match in_doubt {
        // Sent again now: recovery must not settle it while this attempt is on its way.
        Some(charge) => ChargeStart::InDoubt(touch_payment(conn, charge, now).await?),
        None => ChargeStart::New(
            insert_payment(
                conn,
                NewPayment {
                    payment_id: payment,
                    order: &order,
                    kind: PaymentKind::Charge,
                    token: Some(token),
                    refund_of: None,
                    now,
                },
            )
            .await?,
        ),
    };
    extend_claims(conn, &mut order, hold_seats_until).await?;
    Ok(start)
}

/// The body of `finish_charge`, inside its transaction.
async fn finish_charge_in(
    conn: &mut PgConnection,
    payment: PaymentId,
    result: &ChargeResult,
    ticket_code: &str,
    refund: PaymentId,
    now: DateTime<Utc>,
) -> Result<ChargeFinish, OrderError> {
    let order = lock_order_of_payment(conn, payment).await?;
    let charge = load_payment(conn, payment)
        .await?
        .filter(|p| p.kind == PaymentKind::Charge)
        .ok_or(OrderError::NotFound)?;
    let mut order = order.ok_or_else(|| StoreError::corrupt("payments.order_id: no such order"))?;
    if charge.status.is_final() {
        return Ok(ChargeFinish::Settled(order));
    }
    let finish = match result {
        ChargeResult::Charged { provider_ref } => {
            settle_payment(
                conn,
                payment,
                PaymentStatus::Succeeded,
                Some(provider_ref),
                None,
                now,
            )
            .await?;
            let seats_still_its_own = order.status == OrderStatus::PaymentPending
                && lock_claims(conn, order.hold_id, claim_kind::ORDER).await?
                    == order.seat_ids.len();
            if seats_still_its_own {
                sqlx::query!(
                    "UPDATE seat_claims SET kind = 'SOLD', expires_at = $2 \
                     WHERE hold_id = $1 AND kind = 'ORDER'",
                    order.hold_id.as_uuid(),
                    sold_until()
                )
                .execute(&mut *conn)
                .await
                .map_err(codec::store_error)?;
                order.ticket_code = Some(ticket_code.to_owned());
                set_order_status(
                    conn,
                    &mut order,
                    OrderStatus::Confirmed,
                    None,
                    sold_until(),
                    now,
                )
                .await?;
                ChargeFinish::Settled(order)
            } else {
                if order.status == OrderStatus::PaymentPending {
                    // Its seats went to someone else after its claims ran out.
                    free_claims(conn, order.hold_id, claim_kind::ORDER).await?;
                    set_order_status(
                        conn,
                        &mut order,
                        OrderStatus::Expired,
                        Some("payment arrived after the seats were released"),
                        now,
                        now,
                    )
                    .await?;
                }
                let refund = refund_for(conn, &order, payment, refund, now).await?;
                ChargeFinish::MustRefund { order, refund }
            }
        }
        ChargeResult::Declined { reason } => {
            settle_payment(
                conn,
                payment,
                PaymentStatus::Declined,
                None,
                Some(reason),
                now,
            )
            .await?;
            if order.status == OrderStatus::PaymentPending {
                free_claims(conn, order.hold_id, claim_kind::ORDER).await?;
                set_order_status(
                    conn,
                    &mut order,
                    OrderStatus::Failed,
                    Some(reason),
                    now,
                    now,
                )
                .await?;
            }
            ChargeFinish::Settled(order)
        }
        // Sent again since recovery listed it: it may be on its way; leave it PENDING.
        ChargeResult::NotCharged { last_sent, .. } if charge.updated_at != *last_sent => {
            ChargeFinish::Settled(order)
        }
        ChargeResult::NotCharged { reason, .. } => {
            settle_payment(
                conn,
                payment,
                PaymentStatus::Failed,
                None,
                Some(reason),
                now,
            )
            .await?;
            ChargeFinish::Settled(order)
        }
    };
    Ok(finish)
}

/// The body of `cancel_order`, inside its transaction.
async fn cancel_order_in(
    conn: &mut PgConnection,
    order: OrderId,
    user: &UserId,
    refund: PaymentId,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<CancelStart, OrderError> {
    let mut order = lock_owned_order(conn, order, user).await?;
    match order.status_at(now) {
        OrderStatus::PaymentPending => {
            let in_flight = payments_where(
                conn,
                order.order_id,
                PaymentKind::Charge,
                PaymentStatus::Pending,
            )
            .await?;
            if !in_flight.is_empty() {
                return Err(OrderError::PaymentInProgress);
            }
            free_claims(conn, order.hold_id, claim_kind::ORDER).await?;
            set_order_status(
                conn,
                &mut order,
                OrderStatus::Cancelled,
                Some(reason),
                now,
                now,
            )
            .await?;
            Ok(CancelStart::Cancelled(order))
        }
        OrderStatus::Confirmed => {
            let charge = payments_where(
                conn,
                order.order_id,
                PaymentKind::Charge,
                PaymentStatus::Succeeded,
            )
            .await?
            .pop()
            .ok_or_else(|| StoreError::corrupt("a CONFIRMED order without its charge"))?;
            let refund = refund_for(conn, &order, charge.payment_id, refund, now).await?;
            // Why it is being cancelled, kept while the ticket stays valid until the refund.
            set_order_reason(conn, &mut order, reason).await?;
            Ok(CancelStart::Refund { order, refund })
        }
        other => Err(OrderError::NotPending(other)),
    }
}

/// The body of `finish_refund`, inside its transaction.
async fn finish_refund_in(
    conn: &mut PgConnection,
    payment: PaymentId,
    provider_ref: &str,
    now: DateTime<Utc>,
) -> Result<Order, OrderError> {
    let order = lock_order_of_payment(conn, payment).await?;
    let refund = load_payment(conn, payment)
        .await?
        .filter(|p| p.kind == PaymentKind::Refund)
        .ok_or(OrderError::NotFound)?;
    let mut order = order.ok_or_else(|| StoreError::corrupt("payments.order_id: no such order"))?;
    if refund.status == PaymentStatus::Pending {
        settle_payment(
            conn,
            payment,
            PaymentStatus::Succeeded,
            Some(provider_ref),
            None,
            now,
        )
        .await?;
        // A confirmed order is cancelled once no charge of it holds money any more (the refund
        // of a second, stray charge leaves the ticket paid by the first).
        let unrefunded = sqlx::query_scalar!(
            r#"SELECT COUNT(*) AS "count!" FROM payments c
               WHERE c.order_id = $1 AND c.kind = 'CHARGE' AND c.status = 'SUCCEEDED'
                 AND NOT EXISTS (SELECT 1 FROM payments r
                                 WHERE r.refund_of = c.payment_id AND r.status = 'SUCCEEDED')"#,
            order.order_id.as_uuid()
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(codec::store_error)?;
        if order.status == OrderStatus::Confirmed && unrefunded == 0 {
            free_claims(conn, order.hold_id, claim_kind::SOLD).await?;
            let reason = refunded_reason(order.reason.as_deref());
            set_order_status(
                conn,
                &mut order,
                OrderStatus::Cancelled,
                Some(&reason),
                now,
                now,
            )
            .await?;
        }
    }
    Ok(order)
}

#[async_trait]
impl OrderStore for PgStore {
    #[tracing::instrument(skip_all, fields(hold_id = %new.hold_id))]
    async fn create_order(&self, new: &NewOrder) -> Result<Order, OrderError> {
        let mut tx = self.begin_order_tx().await?;
        let done = create_order_in(&mut tx, new).await;
        finish(tx, done).await
    }

    #[tracing::instrument(skip_all, fields(order_id = %order))]
    async fn get_order(&self, order: OrderId) -> Result<Option<Order>, StoreError> {
        sqlx::query_as!(
            OrderRow,
            "SELECT order_id, hold_id, user_id, show_id, seat_ids, status, amount_cents, \
                    currency, created_at, expires_at, seats_until, updated_at, ticket_code, reason \
             FROM orders WHERE order_id = $1",
            order.as_uuid()
        )
        .fetch_optional(self.pool())
        .await
        .map_err(codec::store_error)?
        .map(Order::try_from)
        .transpose()
    }

    #[tracing::instrument(skip_all, fields(hold_id = %hold))]
    async fn order_of_hold(&self, hold: HoldId) -> Result<Option<Order>, StoreError> {
        sqlx::query_as!(
            OrderRow,
            "SELECT order_id, hold_id, user_id, show_id, seat_ids, status, amount_cents, \
                    currency, created_at, expires_at, seats_until, updated_at, ticket_code, reason \
             FROM orders WHERE hold_id = $1",
            hold.as_uuid()
        )
        .fetch_optional(self.pool())
        .await
        .map_err(codec::store_error)?
        .map(Order::try_from)
        .transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn orders_of(&self, user: &UserId, page: OrderPage) -> Result<Vec<Order>, StoreError> {
        let (after_at, after_id) = match page.after {
            Some((at, id)) => (Some(at), Some(id.as_uuid())),
            None => (None, None),
        };
        // The row comparison is the embedded store's `created_at < $2 OR (created_at = $2 AND
        // order_id < $3)`, in the order of the (user_id, created_at DESC, order_id DESC) index.
        // UUIDs compare as their bytes, which is how their text and `OrderId` compare too.
        let rows = sqlx::query_as!(
            OrderRow,
            "SELECT order_id, hold_id, user_id, show_id, seat_ids, status, amount_cents, \
                    currency, created_at, expires_at, seats_until, updated_at, ticket_code, reason \
             FROM orders \
             WHERE user_id = $1 \
               AND ($2::timestamptz IS NULL OR (created_at, order_id) < ($2, $3::uuid)) \
             ORDER BY created_at DESC, order_id DESC LIMIT $4",
            user.as_str(),
            after_at,
            after_id,
            i64::try_from(page.limit).unwrap_or(i64::MAX)
        )
        .fetch_all(self.pool())
        .await
        .map_err(codec::store_error)?;
        codec::decode_all(rows)
    }

    #[tracing::instrument(skip_all, fields(order_id = %order))]
    async fn payments_of(&self, order: OrderId) -> Result<Vec<Payment>, StoreError> {
        let rows = sqlx::query_as!(
            PaymentRow,
            "SELECT payment_id, order_id, kind, status, amount_cents, currency, token, \
                    provider_ref, refund_of, message, created_at, updated_at \
             FROM payments WHERE order_id = $1 ORDER BY created_at, payment_id",
            order.as_uuid()
        )
        .fetch_all(self.pool())
        .await
        .map_err(codec::store_error)?;
        codec::decode_all(rows)
    }

    #[tracing::instrument(skip_all, fields(order_id = %order))]
    async fn begin_charge(
        &self,
        order: OrderId,
        user: &UserId,
        payment: PaymentId,
        token: &PaymentToken,
        now: DateTime<Utc>,
        hold_seats_until: DateTime<Utc>,
    ) -> Result<ChargeStart, OrderError> {
        let mut tx = self.begin_order_tx().await?;
        let done =
            begin_charge_in(&mut tx, order, user, payment, token, now, hold_seats_until).await;
        finish(tx, done).await
    }

    #[tracing::instrument(skip_all, fields(payment_id = %payment))]
    async fn finish_charge(
        &self,
        payment: PaymentId,
        result: &ChargeResult,
        ticket_code: &str,
        refund: PaymentId,
        now: DateTime<Utc>,
    ) -> Result<ChargeFinish, OrderError> {
        let mut tx = self.begin_order_tx().await?;
        let done = finish_charge_in(&mut tx, payment, result, ticket_code, refund, now).await;
        finish(tx, done).await
    }

    #[tracing::instrument(skip_all, fields(order_id = %order))]
    async fn cancel_order(
        &self,
        order: OrderId,
        user: &UserId,
        refund: PaymentId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<CancelStart, OrderError> {
        let mut tx = self.begin_order_tx().await?;
        let done = cancel_order_in(&mut tx, order, user, refund, reason, now).await;
        finish(tx, done).await
    }

    #[tracing::instrument(skip_all, fields(show_id = %show))]
    async fn open_orders_of_show(&self, show: ShowId) -> Result<Vec<Order>, StoreError> {
        let rows = sqlx::query_as!(
            OrderRow,
            "SELECT order_id, hold_id, user_id, show_id, seat_ids, status, amount_cents, \
                    currency, created_at, expires_at, seats_until, updated_at, ticket_code, reason \
             FROM orders \
             WHERE show_id = $1 AND status IN ('PAYMENT_PENDING', 'CONFIRMED') \
             ORDER BY created_at, order_id",
            show.as_uuid()
        )
        .fetch_all(self.pool())
        .await
        .map_err(codec::store_error)?;
        codec::decode_all(rows)
    }

    #[tracing::instrument(skip_all, fields(payment_id = %payment))]
    async fn finish_refund(
        &self,
        payment: PaymentId,
        provider_ref: &str,
        now: DateTime<Utc>,
    ) -> Result<Order, OrderError> {
        let mut tx = self.begin_order_tx().await?;
        let done = finish_refund_in(&mut tx, payment, provider_ref, now).await;
        finish(tx, done).await
    }

    #[tracing::instrument(skip_all, fields(now = %now))]
    async fn expire_orders(&self, now: DateTime<Utc>) -> Result<Vec<Order>, StoreError> {
        // One statement, so one transaction: the orders and the claims they free commit together.
        // An order locked by a charge's outcome or a cancel is waited for and re-checked (it is
        // skipped if it is no longer pending, or its claims were extended meanwhile). Only claims
        // still naming the order's hold and still ORDER go: one taken over after it ran out is
        // its new hold's.
        let rows = sqlx::query_as!(
            OrderRow,
            r#"WITH expired AS (
                   UPDATE orders SET status = 'EXPIRED', updated_at = seats_until,
                       reason = 'payment not received in time'
                   WHERE status = 'PAYMENT_PENDING' AND seats_until <= $1
                   RETURNING order_id, hold_id, user_id, show_id, seat_ids, status, amount_cents,
                             currency, created_at, expires_at, seats_until, updated_at,
                             ticket_code, reason
               ),
               freed AS (
                   DELETE FROM seat_claims c USING expired e
                   WHERE c.hold_id = e.hold_id AND c.kind = 'ORDER'
               )
               SELECT order_id AS "order_id!", hold_id AS "hold_id!", user_id AS "user_id!",
                      show_id AS "show_id!", seat_ids AS "seat_ids!", status AS "status!",
                      amount_cents AS "amount_cents!", currency AS "currency!",
                      created_at AS "created_at!", expires_at AS "expires_at!",
                      seats_until AS "seats_until!", updated_at AS "updated_at!",
                      ticket_code, reason
               FROM expired"#,
            now
        )
        .fetch_all(self.pool())
        .await
        .map_err(codec::store_error)?;
        let mut expired: Vec<Order> = codec::decode_all(rows)?;
        // RETURNING gives no order; the embedded store's is by when the claims ran out.
        expired.sort_by_key(|o| (o.seats_until, o.order_id));
        Ok(expired)
    }

    #[tracing::instrument(skip_all, fields(before = %before))]
    async fn unsettled_payments(&self, before: DateTime<Utc>) -> Result<Vec<Payment>, StoreError> {
        let rows = sqlx::query_as!(
            PaymentRow,
            "SELECT payment_id, order_id, kind, status, amount_cents, currency, token, \
                    provider_ref, refund_of, message, created_at, updated_at \
             FROM payments WHERE status = 'PENDING' AND updated_at < $1 \
             ORDER BY updated_at, payment_id",
            before
        )
        .fetch_all(self.pool())
        .await
        .map_err(codec::store_error)?;
        codec::decode_all(rows)
    }
}
