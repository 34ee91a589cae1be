//! The statements the order operations (`orders.rs`) are made of: reading and locking orders,
//! recording and settling payments, moving and freeing the seat claims an order owns. Each runs
//! inside its caller's transaction, and most rely on the lock its caller already holds on the
//! order's row (see the module docs of `orders.rs`).

use crate::codec::{self, OrderRow, PaymentRow};
use booking_core::ports::{OrderError, StoreError};
use booking_core::{
    HoldId, Order, OrderId, OrderStatus, Payment, PaymentId, PaymentKind, PaymentStatus,
    PaymentToken, UserId,
};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// The order, its row locked until the transaction ends (see the module docs).
async fn lock_order(conn: &mut PgConnection, order: OrderId) -> Result<Option<Order>, StoreError> {
    sqlx::query_as!(
        OrderRow,
        "SELECT order_id, hold_id, user_id, show_id, seat_ids, status, amount_cents, currency, \
                created_at, expires_at, seats_until, updated_at, ticket_code, reason \
         FROM orders WHERE order_id = $1 FOR UPDATE",
        order.as_uuid()
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(codec::store_error)?
    .map(Order::try_from)
    .transpose()
}

/// The order, locked, if it is `user`'s; someone else's reads as not found.
pub(super) async fn lock_owned_order(
    conn: &mut PgConnection,
    order: OrderId,
    user: &UserId,
) -> Result<Order, OrderError> {
    lock_order(conn, order)
        .await?
        .filter(|o| &o.user_id == user)
        .ok_or(OrderError::NotFound)
}

/// The order `payment` belongs to, locked; `None` if there is no such payment. A payment never
/// changes orders, so finding the order through it and locking it is one statement, and the
/// payment is read afterwards, under the lock, as every writer of it leaves it.
pub(super) async fn lock_order_of_payment(
    conn: &mut PgConnection,
    payment: PaymentId,
) -> Result<Option<Order>, StoreError> {
    sqlx::query_as!(
        OrderRow,
        "SELECT order_id, hold_id, user_id, show_id, seat_ids, status, amount_cents, currency, \
                created_at, expires_at, seats_until, updated_at, ticket_code, reason \
         FROM orders \
         WHERE order_id = (SELECT order_id FROM payments WHERE payment_id = $1) \
         FOR UPDATE",
        payment.as_uuid()
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(codec::store_error)?
    .map(Order::try_from)
    .transpose()
}

pub(super) async fn load_payment(
    conn: &mut PgConnection,
    payment: PaymentId,
) -> Result<Option<Payment>, StoreError> {
    sqlx::query_as!(
        PaymentRow,
        "SELECT payment_id, order_id, kind, status, amount_cents, currency, token, provider_ref, \
                refund_of, message, created_at, updated_at \
         FROM payments WHERE payment_id = $1",
        payment.as_uuid()
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(codec::store_error)?
    .map(Payment::try_from)
    .transpose()
}

/// The payments of `order` matching `kind` and `status`, oldest first. Read under the order's
/// lock, so no payment of the order is being added or settled meanwhile.
pub(super) async fn payments_where(
    conn: &mut PgConnection,
    order: OrderId,
    kind: PaymentKind,
    status: PaymentStatus,
) -> Result<Vec<Payment>, StoreError> {
    let rows = sqlx::query_as!(
        PaymentRow,
        "SELECT payment_id, order_id, kind, status, amount_cents, currency, token, provider_ref, \
                refund_of, message, created_at, updated_at \
         FROM payments WHERE order_id = $1 AND kind = $2 AND status = $3 \
         ORDER BY created_at, payment_id",
        order.as_uuid(),
        kind.as_str(),
        status.as_str()
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    codec::decode_all(rows)
}

pub(super) struct NewPayment<'a> {
    pub(super) payment_id: PaymentId,
    pub(super) order: &'a Order,
    pub(super) kind: PaymentKind,
    pub(super) token: Option<&'a PaymentToken>,
    pub(super) refund_of: Option<PaymentId>,
    pub(super) now: DateTime<Utc>,
}

pub(super) async fn insert_payment(
    conn: &mut PgConnection,
    new: NewPayment<'_>,
) -> Result<Payment, StoreError> {
    let now = codec::truncate_micros(new.now);
    sqlx::query!(
        "INSERT INTO payments \
             (payment_id, order_id, kind, status, amount_cents, currency, token, provider_ref, \
              refund_of, message, created_at, updated_at) \
         VALUES ($1, $2, $3, 'PENDING', $4, $5, $6, NULL, $7, NULL, $8, $8)",
        new.payment_id.as_uuid(),
        new.order.order_id.as_uuid(),
        new.kind.as_str(),
        new.order.amount_cents,
        new.order.currency,
        new.token.map(PaymentToken::as_str),
        new.refund_of.map(|p| p.as_uuid()),
        now
    )
    .execute(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    Ok(Payment {
        payment_id: new.payment_id,
        order_id: new.order.order_id,
        kind: new.kind,
        status: PaymentStatus::Pending,
        amount_cents: new.order.amount_cents,
        currency: new.order.currency.clone(),
        token: new.token.cloned(),
        provider_ref: None,
        refund_of: new.refund_of,
        message: None,
        created_at: now,
        updated_at: now,
    })
}

/// Marks a PENDING payment as sent (again) at `now`.
pub(super) async fn touch_payment(
    conn: &mut PgConnection,
    mut payment: Payment,
    now: DateTime<Utc>,
) -> Result<Payment, StoreError> {
    let now = codec::truncate_micros(now);
    sqlx::query!(
        "UPDATE payments SET updated_at = $2 WHERE payment_id = $1",
        payment.payment_id.as_uuid(),
        now
    )
    .execute(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    payment.updated_at = now;
    Ok(payment)
}

pub(super) async fn settle_payment(
    conn: &mut PgConnection,
    payment: PaymentId,
    status: PaymentStatus,
    provider_ref: Option<&str>,
    message: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE payments SET status = $2, provider_ref = COALESCE($3, provider_ref), \
             message = $4, updated_at = $5 \
         WHERE payment_id = $1 AND status = 'PENDING'",
        payment.as_uuid(),
        status.as_str(),
        provider_ref,
        message,
        now
    )
    .execute(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    Ok(())
}

/// Moves an order to `status` (from one it may leave that way), with its claims' end.
pub(super) async fn set_order_status(
    conn: &mut PgConnection,
    order: &mut Order,
    status: OrderStatus,
    reason: Option<&str>,
    seats_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    debug_assert!(order.status.can_become(status));
    let now = codec::truncate_micros(now);
    let seats_until = codec::truncate_micros(seats_until);
    sqlx::query!(
        "UPDATE orders SET status = $2, reason = COALESCE($3, reason), seats_until = $4, \
             updated_at = $5, ticket_code = COALESCE($6, ticket_code) \
         WHERE order_id = $1",
        order.order_id.as_uuid(),
        status.as_str(),
        reason,
        seats_until,
        now,
        order.ticket_code.as_deref()
    )
    .execute(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    order.status = status;
    if let Some(reason) = reason {
        order.reason = Some(reason.to_owned());
    }
    order.seats_until = seats_until;
    order.updated_at = now;
    Ok(())
}

/// Records why an order is being cancelled while it keeps its status (a confirmed order waiting
/// for its refund), unless it already says why: the first cancel's reason stands (the show's
/// cancellation, or its buyer's), as its refund does.
pub(super) async fn set_order_reason(
    conn: &mut PgConnection,
    order: &mut Order,
    reason: &str,
) -> Result<(), StoreError> {
    sqlx::query!(
        "UPDATE orders SET reason = COALESCE(reason, $2) WHERE order_id = $1",
        order.order_id.as_uuid(),
        reason
    )
    .execute(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    order.reason.get_or_insert_with(|| reason.to_owned());
    Ok(())
}

/// Frees the order's seats: deletes the claims of `kind` that still name its hold (one a worker
/// took over after it ran out names the new hold, and is left alone).
pub(super) async fn free_claims(
    conn: &mut PgConnection,
    hold: HoldId,
    kind: &str,
) -> Result<(), StoreError> {
    sqlx::query!(
        "DELETE FROM seat_claims WHERE hold_id = $1 AND kind = $2",
        hold.as_uuid(),
        kind
    )
    .execute(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    Ok(())
}

/// Locks the seat claims of `kind` that still name `hold` and says how many there are. Locked,
/// not merely counted: a count is a snapshot that a worker's take-over of a run-out claim could
/// overtake before the caller acts on it, while a locked claim stays the hold's until the
/// transaction ends. Seat order, as the batch writer locks claims, so the two never deadlock.
pub(super) async fn lock_claims(
    conn: &mut PgConnection,
    hold: HoldId,
    kind: &str,
) -> Result<usize, StoreError> {
    let seats = sqlx::query_scalar!(
        "SELECT seat_id FROM seat_claims WHERE hold_id = $1 AND kind = $2 \
         ORDER BY seat_id FOR UPDATE",
        hold.as_uuid(),
        kind
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    Ok(seats.len())
}

/// Sets when the order's waiting claims end (never earlier than they did).
pub(super) async fn extend_claims(
    conn: &mut PgConnection,
    order: &mut Order,
    until: DateTime<Utc>,
) -> Result<(), StoreError> {
    let until = codec::truncate_micros(until);
    if until <= order.seats_until {
        return Ok(());
    }
    sqlx::query!(
        "UPDATE seat_claims SET expires_at = $2 WHERE hold_id = $1 AND kind = 'ORDER'",
        order.hold_id.as_uuid(),
        until
    )
    .execute(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    sqlx::query!(
        "UPDATE orders SET seats_until = $2 WHERE order_id = $1",
        order.order_id.as_uuid(),
        until
    )
    .execute(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    order.seats_until = until;
    Ok(())
}

/// A refund of `charge` (an order's successful charge): the one already recorded, or a new one.
/// Under the order's lock, so two callers cannot both find none and both record one.
pub(super) async fn refund_for(
    conn: &mut PgConnection,
    order: &Order,
    charge: PaymentId,
    refund: PaymentId,
    now: DateTime<Utc>,
) -> Result<Payment, StoreError> {
    let existing = sqlx::query_as!(
        PaymentRow,
        "SELECT payment_id, order_id, kind, status, amount_cents, currency, token, provider_ref, \
                refund_of, message, created_at, updated_at \
         FROM payments WHERE refund_of = $1",
        charge.as_uuid()
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    if let Some(row) = existing {
        return Payment::try_from(row);
    }
    insert_payment(
        conn,
        NewPayment {
            payment_id: refund,
            order,
            kind: PaymentKind::Refund,
            token: None,
            refund_of: Some(charge),
            now,
        },
    )
    .await
}
