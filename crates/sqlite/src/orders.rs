//! `OrderStore`: orders, their payments, and the seat claims they take over from holds.
//!
//! Each method is one `BEGIN IMMEDIATE` transaction on the single writer, so it reads and writes
//! with no other writer in between: the checks it makes (the hold is live, the order is still
//! pending, the claims still name the order's hold) cannot be overtaken before its writes land.
//! The rules themselves are `booking_core::order`'s; the contract suite checks them here and on
//! PostgreSQL alike.

use crate::SqliteStore;
use crate::codec::{self, hold_columns};
use async_trait::async_trait;
use booking_core::ports::{
    CancelStart, ChargeFinish, ChargeResult, ChargeStart, OrderError, OrderPage, OrderStore,
    SeatLock, StoreError,
};
use booking_core::{
    HoldId, HoldStatus, NewOrder, Order, OrderId, OrderStatus, Payment, PaymentId, PaymentKind,
    PaymentStatus, PaymentToken, SeatStatus, ShowId, UserId, refunded_reason, sold_until,
};
use booking_sql::claim_kind;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Sqlite, SqliteConnection, Transaction};

macro_rules! order_columns {
    () => {
        "order_id, hold_id, user_id, show_id, seat_ids, status, amount_cents, currency, \
         created_at, expires_at, seats_until, updated_at, ticket_code, reason"
    };
}

macro_rules! payment_columns {
    () => {
        "payment_id, order_id, kind, status, amount_cents, currency, token, provider_ref, \
         refund_of, message, created_at, updated_at"
    };
}

fn decode_order(row: &SqliteRow) -> Result<Order, StoreError> {
    Ok(Order {
        order_id: codec::get_parsed(row, "order_id")?,
        hold_id: codec::get_parsed(row, "hold_id")?,
        user_id: codec::get_parsed(row, "user_id")?,
        show_id: codec::get_parsed(row, "show_id")?,
        seat_ids: codec::get_seats(row, "seat_ids")?,
        status: codec::get_parsed(row, "status")?,
        amount_cents: codec::get(row, "amount_cents")?,
        currency: codec::get(row, "currency")?,
        created_at: codec::get_time(row, "created_at")?,
        expires_at: codec::get_time(row, "expires_at")?,
        seats_until: codec::get_time(row, "seats_until")?,
        updated_at: codec::get_time(row, "updated_at")?,
        ticket_code: codec::get(row, "ticket_code")?,
        reason: codec::get(row, "reason")?,
    })
}

fn decode_payment(row: &SqliteRow) -> Result<Payment, StoreError> {
    let opt_parsed =
        |column: &str| -> Result<Option<String>, StoreError> { codec::get(row, column) };
    Ok(Payment {
        payment_id: codec::get_parsed(row, "payment_id")?,
        order_id: codec::get_parsed(row, "order_id")?,
        kind: codec::get_parsed(row, "kind")?,
        status: codec::get_parsed(row, "status")?,
        amount_cents: codec::get(row, "amount_cents")?,
        currency: codec::get(row, "currency")?,
        token: opt_parsed("token")?
            .map(|t| codec::parse::<PaymentToken>(&t, "token"))
            .transpose()?,
        provider_ref: codec::get(row, "provider_ref")?,
        refund_of: opt_parsed("refund_of")?
            .map(|p| codec::parse::<PaymentId>(&p, "refund_of"))
            .transpose()?,
        message: codec::get(row, "message")?,
        created_at: codec::get_time(row, "created_at")?,
        updated_at: codec::get_time(row, "updated_at")?,
    })
}

type Tx = Transaction<'static, Sqlite>;

impl SqliteStore {
    async fn begin_write(&self) -> Result<Tx, StoreError> {
        self.writer()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(codec::store_error)
    }
}

async fn commit(tx: Tx) -> Result<(), StoreError> {
    tx.commit().await.map_err(codec::store_error)
}

async fn load_order(
    conn: &mut SqliteConnection,
    order: OrderId,
) -> Result<Option<Order>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        order_columns!(),
        " FROM orders WHERE order_id = ?1"
    ))
    .bind(order.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(codec::store_error)?
    .as_ref()
    .map(decode_order)
    .transpose()
}

/// The order if it is `user`'s; someone else's reads as not found.
async fn owned_order(
    conn: &mut SqliteConnection,
    order: OrderId,
    user: &UserId,
) -> Result<Order, OrderError> {
    load_order(conn, order)
        .await?
        .filter(|o| &o.user_id == user)
        .ok_or(OrderError::NotFound)
}

async fn load_payment(
    conn: &mut SqliteConnection,
    payment: PaymentId,
) -> Result<Option<Payment>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        payment_columns!(),
        " FROM payments WHERE payment_id = ?1"
    ))
    .bind(payment.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(codec::store_error)?
    .as_ref()
    .map(decode_payment)
    .transpose()
}

/// The payments of `order` matching `kind` and `status`, oldest first.
async fn payments_where(
    conn: &mut SqliteConnection,
    order: OrderId,
    kind: PaymentKind,
    status: PaymentStatus,
) -> Result<Vec<Payment>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        payment_columns!(),
        " FROM payments WHERE order_id = ?1 AND kind = ?2 AND status = ?3 \
         ORDER BY created_at, payment_id"
    ))
    .bind(order.to_string())
    .bind(kind.as_str())
    .bind(status.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(codec::store_error)?
    .iter()
    .map(decode_payment)
    .collect()
}

struct NewPayment<'a> {
    payment_id: PaymentId,
    order: &'a Order,
    kind: PaymentKind,
    token: Option<&'a PaymentToken>,
    refund_of: Option<PaymentId>,
    now: DateTime<Utc>,
}

async fn insert_payment(
    conn: &mut SqliteConnection,
    new: NewPayment<'_>,
) -> Result<Payment, StoreError> {
    let now = codec::truncate_millis(new.now);
    sqlx::query(
        "INSERT INTO payments \
             (payment_id, order_id, kind, status, amount_cents, currency, token, provider_ref, \
              refund_of, message, created_at, updated_at) \
         VALUES (?1, ?2, ?3, 'PENDING', ?4, ?5, ?6, NULL, ?7, NULL, ?8, ?8)",
    )
    .bind(new.payment_id.to_string())
    .bind(new.order.order_id.to_string())
    .bind(new.kind.as_str())
    .bind(new.order.amount_cents)
    .bind(&new.order.currency)
    .bind(new.token.map(|t| t.as_str()))
    .bind(new.refund_of.map(|p| p.to_string()))
    .bind(codec::millis(now))
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

async fn settle_payment(
    conn: &mut SqliteConnection,
    payment: PaymentId,
    status: PaymentStatus,
    provider_ref: Option<&str>,
    message: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE payments SET status = ?2, provider_ref = COALESCE(?3, provider_ref), \
             message = ?4, updated_at = ?5 \
         WHERE payment_id = ?1 AND status = 'PENDING'",
    )
    .bind(payment.to_string())
    .bind(status.as_str())
    .bind(provider_ref)
    .bind(message)
    .bind(codec::millis(now))
    .execute(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    Ok(())
}

/// Moves an order to `status` (from one it may leave that way), with its claims' end.
async fn set_order_status(
    conn: &mut SqliteConnection,
    order: &mut Order,
    status: OrderStatus,
    reason: Option<&str>,
    seats_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    debug_assert!(order.status.can_become(status));
    let now = codec::truncate_millis(now);
    let seats_until = codec::truncate_millis(seats_until);
    sqlx::query(
        "UPDATE orders SET status = ?2, reason = COALESCE(?3, reason), seats_until = ?4, \
             updated_at = ?5, ticket_code = COALESCE(?6, ticket_code) \
         WHERE order_id = ?1",
    )
    .bind(order.order_id.to_string())
    .bind(status.as_str())
    .bind(reason)
    .bind(codec::millis(seats_until))
    .bind(codec::millis(now))
    .bind(order.ticket_code.as_deref())
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
async fn set_order_reason(
    conn: &mut SqliteConnection,
    order: &mut Order,
    reason: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE orders SET reason = COALESCE(reason, ?2) WHERE order_id = ?1")
        .bind(order.order_id.to_string())
        .bind(reason)
        .execute(&mut *conn)
        .await
        .map_err(codec::store_error)?;
    order.reason.get_or_insert_with(|| reason.to_owned());
    Ok(())
}

/// Frees the order's seats: deletes the claims of `kind` that still name its hold.
async fn free_claims(
    conn: &mut SqliteConnection,
    hold: HoldId,
    kind: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM seat_claims WHERE hold_id = ?1 AND kind = ?2")
        .bind(hold.to_string())
        .bind(kind)
        .execute(&mut *conn)
        .await
        .map_err(codec::store_error)?;
    Ok(())
}

/// How many seat claims of `kind` still name `hold`.
async fn claims_of(
    conn: &mut SqliteConnection,
    hold: HoldId,
    kind: &str,
) -> Result<usize, StoreError> {
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM seat_claims WHERE hold_id = ?1 AND kind = ?2")
            .bind(hold.to_string())
            .bind(kind)
            .fetch_one(&mut *conn)
            .await
            .map_err(codec::store_error)?;
    Ok(count as usize)
}

/// Marks a PENDING payment as sent (again) at `now`.
async fn touch_payment(
    conn: &mut SqliteConnection,
    mut payment: Payment,
    now: DateTime<Utc>,
) -> Result<Payment, StoreError> {
    let now = codec::truncate_millis(now);
    sqlx::query("UPDATE payments SET updated_at = ?2 WHERE payment_id = ?1")
        .bind(payment.payment_id.to_string())
        .bind(codec::millis(now))
        .execute(&mut *conn)
        .await
        .map_err(codec::store_error)?;
    payment.updated_at = now;
    Ok(payment)
}

/// How many charges of `order` went through and have not been refunded.
async fn unrefunded_charges(
    conn: &mut SqliteConnection,
    order: OrderId,
) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM payments c \
         WHERE c.order_id = ?1 AND c.kind = 'CHARGE' AND c.status = 'SUCCEEDED' \
           AND NOT EXISTS (SELECT 1 FROM payments r \
                           WHERE r.refund_of = c.payment_id AND r.status = 'SUCCEEDED')",
    )
    .bind(order.to_string())
    .fetch_one(&mut *conn)
    .await
    .map_err(codec::store_error)
}

/// Sets when the order's waiting claims end (never earlier than they did).
async fn extend_claims(
    conn: &mut SqliteConnection,
    order: &mut Order,
    until: DateTime<Utc>,
) -> Result<(), StoreError> {
    let until = codec::truncate_millis(until);
    if until <= order.seats_until {
        return Ok(());
    }
    sqlx::query("UPDATE seat_claims SET expires_at = ?2 WHERE hold_id = ?1 AND kind = 'ORDER'")
        .bind(order.hold_id.to_string())
        .bind(codec::millis(until))
        .execute(&mut *conn)
        .await
        .map_err(codec::store_error)?;
    sqlx::query("UPDATE orders SET seats_until = ?2 WHERE order_id = ?1")
        .bind(order.order_id.to_string())
        .bind(codec::millis(until))
        .execute(&mut *conn)
        .await
        .map_err(codec::store_error)?;
    order.seats_until = until;
    Ok(())
}

/// A refund of `charge` (an order's successful charge): the one already recorded, or a new one.
async fn refund_for(
    conn: &mut SqliteConnection,
    order: &Order,
    charge: PaymentId,
    refund: PaymentId,
    now: DateTime<Utc>,
) -> Result<Payment, StoreError> {
    let existing = sqlx::query(concat!(
        "SELECT ",
        payment_columns!(),
        " FROM payments WHERE refund_of = ?1"
    ))
    .bind(charge.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    if let Some(row) = existing {
        return decode_payment(&row);
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

#[async_trait]
impl OrderStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(hold_id = %new.hold_id))]
    async fn create_order(&self, new: &NewOrder) -> Result<Order, OrderError> {
        let mut tx = self.begin_write().await?;
        let hold = sqlx::query(concat!(
            "SELECT ",
            hold_columns!(),
            " FROM holds WHERE hold_id = ?1"
        ))
        .bind(new.hold_id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(codec::store_error)?
        .as_ref()
        .map(codec::decode_hold)
        .transpose()?
        .filter(|h| h.user_id == new.user_id)
        .ok_or(OrderError::NotFound)?;
        let status = hold.status_at(new.created_at);
        if status != HoldStatus::Held {
            return Err(OrderError::HoldNotActive(status));
        }
        let now = codec::truncate_millis(new.created_at);
        let expires_at = codec::truncate_millis(new.expires_at);
        sqlx::query(
            "UPDATE holds SET status = 'CONVERTED', ended_at = ?2 \
             WHERE hold_id = ?1 AND status = 'HELD'",
        )
        .bind(hold.hold_id.to_string())
        .bind(codec::millis(now))
        .execute(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        // The hold's live claims pass to the order. All of them or none: a claim that is gone
        // or ran out means the seats are not the hold's to pass on.
        let moved = sqlx::query(
            "UPDATE seat_claims SET kind = 'ORDER', expires_at = ?3 \
             WHERE hold_id = ?1 AND kind = 'HOLD' AND expires_at > ?2",
        )
        .bind(hold.hold_id.to_string())
        .bind(codec::millis(new.created_at))
        .bind(codec::millis(expires_at))
        .execute(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        if moved.rows_affected() as usize != hold.seat_ids.len() {
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
        sqlx::query(
            "INSERT INTO orders \
                 (order_id, hold_id, user_id, show_id, seat_ids, status, amount_cents, currency, \
                  created_at, expires_at, seats_until, updated_at, ticket_code, reason) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'PAYMENT_PENDING', ?6, ?7, ?8, ?9, ?9, ?8, NULL, NULL)",
        )
        .bind(order.order_id.to_string())
        .bind(order.hold_id.to_string())
        .bind(order.user_id.as_str())
        .bind(order.show_id.to_string())
        .bind(codec::to_json(&order.seat_ids)?)
        .bind(order.amount_cents)
        .bind(&order.currency)
        .bind(codec::millis(now))
        .bind(codec::millis(expires_at))
        .execute(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        commit(tx).await?;
        Ok(order)
    }

    async fn get_order(&self, order: OrderId) -> Result<Option<Order>, StoreError> {
        let mut conn = self.readers().acquire().await.map_err(codec::store_error)?;
        load_order(&mut conn, order).await
    }

    async fn order_of_hold(&self, hold: HoldId) -> Result<Option<Order>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders WHERE hold_id = ?1"
        ))
        .bind(hold.to_string())
        .fetch_optional(self.readers())
        .await
        .map_err(codec::store_error)?
        .as_ref()
        .map(decode_order)
        .transpose()
    }

    async fn orders_of(&self, user: &UserId, page: OrderPage) -> Result<Vec<Order>, StoreError> {
        let (after_at, after_id) = match page.after {
            Some((at, id)) => (Some(codec::millis(at)), Some(id.to_string())),
            None => (None, None),
        };
        sqlx::query(concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders WHERE user_id = ?1 \
               AND (?2 IS NULL OR created_at < ?2 OR (created_at = ?2 AND order_id < ?3)) \
             ORDER BY created_at DESC, order_id DESC LIMIT ?4"
        ))
        .bind(user.as_str())
        .bind(after_at)
        .bind(after_id)
        .bind(page.limit as i64)
        .fetch_all(self.readers())
        .await
        .map_err(codec::store_error)?
        .iter()
        .map(decode_order)
        .collect()
    }

    #[tracing::instrument(skip_all, fields(show_id = %show))]
    async fn open_orders_of_show(&self, show: ShowId) -> Result<Vec<Order>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders WHERE show_id = ?1 AND status IN ('PAYMENT_PENDING', 'CONFIRMED') \
             ORDER BY created_at, order_id"
        ))
        .bind(show.to_string())
        .fetch_all(self.readers())
        .await
        .map_err(codec::store_error)?
        .iter()
        .map(decode_order)
        .collect()
    }

    async fn payments_of(&self, order: OrderId) -> Result<Vec<Payment>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            payment_columns!(),
            " FROM payments WHERE order_id = ?1 ORDER BY created_at, payment_id"
        ))
        .bind(order.to_string())
        .fetch_all(self.readers())
        .await
        .map_err(codec::store_error)?
        .iter()
        .map(decode_payment)
        .collect()
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
        let mut tx = self.begin_write().await?;
        let mut order = owned_order(&mut tx, order, user).await?;
        match order.status_at(now) {
            OrderStatus::PaymentPending if now < order.expires_at => {}
            OrderStatus::PaymentPending | OrderStatus::Expired => return Err(OrderError::Expired),
            other => return Err(OrderError::NotPending(other)),
        }
        // By the store's own reckoning the seats must still be the order's: a worker whose clock
        // ran ahead may have taken over a claim that ran out, and nobody is charged for seats
        // that are gone.
        if claims_of(&mut tx, order.hold_id, claim_kind::ORDER).await? != order.seat_ids.len() {
            return Err(OrderError::Expired);
        }
        let in_doubt = payments_where(
            &mut tx,
            order.order_id,
            PaymentKind::Charge,
            PaymentStatus::Pending,
        )
        .await?
        .pop();
        let start = match in_doubt {
            // Sent again now: recovery must not settle it while this attempt is on its way.
            Some(charge) => ChargeStart::InDoubt(touch_payment(&mut tx, charge, now).await?),
            None => ChargeStart::New(
                insert_payment(
                    &mut tx,
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
        extend_claims(&mut tx, &mut order, hold_seats_until).await?;
        commit(tx).await?;
        Ok(start)
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
        let mut tx = self.begin_write().await?;
        let charge = load_payment(&mut tx, payment)
            .await?
            .filter(|p| p.kind == PaymentKind::Charge)
            .ok_or(OrderError::NotFound)?;
        let mut order = load_order(&mut tx, charge.order_id)
            .await?
            .ok_or_else(|| StoreError::corrupt("payments.order_id: no such order"))?;
        if charge.status.is_final() {
            return Ok(ChargeFinish::Settled(order));
        }
        let finish = match result {
            ChargeResult::Charged { provider_ref } => {
                settle_payment(
                    &mut tx,
                    payment,
                    PaymentStatus::Succeeded,
                    Some(provider_ref),
                    None,
                    now,
                )
                .await?;
                let seats_still_its_own = order.status == OrderStatus::PaymentPending
                    && claims_of(&mut tx, order.hold_id, claim_kind::ORDER).await?
                        == order.seat_ids.len();
                if seats_still_its_own {
                    sqlx::query(
                        "UPDATE seat_claims SET kind = 'SOLD', expires_at = ?2 \
                         WHERE hold_id = ?1 AND kind = 'ORDER'",
                    )
                    .bind(order.hold_id.to_string())
                    .bind(codec::millis(sold_until()))
                    .execute(&mut *tx)
                    .await
                    .map_err(codec::store_error)?;
                    order.ticket_code = Some(ticket_code.to_owned());
                    set_order_status(
                        &mut tx,
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
                        free_claims(&mut tx, order.hold_id, claim_kind::ORDER).await?;
                        set_order_status(
                            &mut tx,
                            &mut order,
                            OrderStatus::Expired,
                            Some("payment arrived after the seats were released"),
                            now,
                            now,
                        )
                        .await?;
                    }
                    let refund = refund_for(&mut tx, &order, payment, refund, now).await?;
                    ChargeFinish::MustRefund { order, refund }
                }
            }
            ChargeResult::Declined { reason } => {
                settle_payment(
                    &mut tx,
                    payment,
                    PaymentStatus::Declined,
                    None,
                    Some(reason),
                    now,
                )
                .await?;
                if order.status == OrderStatus::PaymentPending {
                    free_claims(&mut tx, order.hold_id, claim_kind::ORDER).await?;
                    set_order_status(
                        &mut tx,
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
                    &mut tx,
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
        commit(tx).await?;
        Ok(finish)
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
        let mut tx = self.begin_write().await?;
        let mut order = owned_order(&mut tx, order, user).await?;
        let start = match order.status_at(now) {
            OrderStatus::PaymentPending => {
                let in_flight = payments_where(
                    &mut tx,
                    order.order_id,
                    PaymentKind::Charge,
                    PaymentStatus::Pending,
                )
                .await?;
                if !in_flight.is_empty() {
                    return Err(OrderError::PaymentInProgress);
                }
                free_claims(&mut tx, order.hold_id, claim_kind::ORDER).await?;
                set_order_status(
                    &mut tx,
                    &mut order,
                    OrderStatus::Cancelled,
                    Some(reason),
                    now,
                    now,
                )
                .await?;
                CancelStart::Cancelled(order)
            }
            OrderStatus::Confirmed => {
                let charge = payments_where(
                    &mut tx,
                    order.order_id,
                    PaymentKind::Charge,
                    PaymentStatus::Succeeded,
                )
                .await?
                .pop()
                .ok_or_else(|| StoreError::corrupt("a CONFIRMED order without its charge"))?;
                let refund = refund_for(&mut tx, &order, charge.payment_id, refund, now).await?;
                // Why it is being cancelled, kept while the ticket stays valid until the refund.
                set_order_reason(&mut tx, &mut order, reason).await?;
                CancelStart::Refund { order, refund }
            }
            other => return Err(OrderError::NotPending(other)),
        };
        commit(tx).await?;
        Ok(start)
    }

    #[tracing::instrument(skip_all, fields(payment_id = %payment))]
    async fn finish_refund(
        &self,
        payment: PaymentId,
        provider_ref: &str,
        now: DateTime<Utc>,
    ) -> Result<Order, OrderError> {
        let mut tx = self.begin_write().await?;
        let refund = load_payment(&mut tx, payment)
            .await?
            .filter(|p| p.kind == PaymentKind::Refund)
            .ok_or(OrderError::NotFound)?;
        let mut order = load_order(&mut tx, refund.order_id)
            .await?
            .ok_or_else(|| StoreError::corrupt("payments.order_id: no such order"))?;
        if refund.status == PaymentStatus::Pending {
            settle_payment(
                &mut tx,
                payment,
                PaymentStatus::Succeeded,
                Some(provider_ref),
                None,
                now,
            )
            .await?;
            // A confirmed order is cancelled once no charge of it holds money any more (the
            // refund of a second, stray charge leaves the ticket paid by the first).
            if order.status == OrderStatus::Confirmed
                && unrefunded_charges(&mut tx, order.order_id).await? == 0
            {
                free_claims(&mut tx, order.hold_id, claim_kind::SOLD).await?;
                let reason = refunded_reason(order.reason.as_deref());
                set_order_status(
                    &mut tx,
                    &mut order,
                    OrderStatus::Cancelled,
                    Some(&reason),
                    now,
                    now,
                )
                .await?;
            }
        }
        commit(tx).await?;
        Ok(order)
    }

    #[tracing::instrument(skip_all, fields(now = %now))]
    async fn expire_orders(&self, now: DateTime<Utc>) -> Result<Vec<Order>, StoreError> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(concat!(
            "UPDATE orders SET status = 'EXPIRED', updated_at = seats_until, \
                 reason = 'payment not received in time' \
             WHERE status = 'PAYMENT_PENDING' AND seats_until <= ?1 \
             RETURNING ",
            order_columns!()
        ))
        .bind(codec::millis(now))
        .fetch_all(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        let mut expired = rows
            .iter()
            .map(decode_order)
            .collect::<Result<Vec<_>, _>>()?;
        for order in &expired {
            free_claims(&mut tx, order.hold_id, claim_kind::ORDER).await?;
        }
        commit(tx).await?;
        expired.sort_by_key(|o| (o.seats_until, o.order_id));
        Ok(expired)
    }

    async fn unsettled_payments(&self, before: DateTime<Utc>) -> Result<Vec<Payment>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            payment_columns!(),
            " FROM payments WHERE status = 'PENDING' AND updated_at < ?1 \
             ORDER BY updated_at, payment_id"
        ))
        .bind(codec::millis(before))
        .fetch_all(self.readers())
        .await
        .map_err(codec::store_error)?
        .iter()
        .map(decode_payment)
        .collect()
    }
}

/// Every live claim of a show, with the owner of the hold (or order) behind it.
pub(crate) async fn seat_locks(
    store: &SqliteStore,
    show: ShowId,
    now: DateTime<Utc>,
) -> Result<Vec<SeatLock>, StoreError> {
    let rows: Vec<(String, String, String, i64, String)> = sqlx::query_as(
        "SELECT c.seat_id, c.hold_id, c.kind, c.expires_at, h.user_id \
         FROM seat_claims c JOIN holds h ON h.hold_id = c.hold_id \
         WHERE c.show_id = ?1 AND c.expires_at > ?2",
    )
    .bind(show.to_string())
    .bind(codec::millis(now))
    .fetch_all(store.readers())
    .await
    .map_err(codec::store_error)?;
    rows.iter()
        .map(|(seat, hold, kind, expires_at, user)| {
            let status: SeatStatus = booking_sql::claim_status(kind)?;
            Ok(SeatLock {
                seat_id: codec::parse(seat, "seat_id")?,
                hold_id: codec::parse(hold, "hold_id")?,
                user_id: codec::parse(user, "user_id")?,
                expires_at: codec::from_millis(*expires_at, "expires_at")?,
                status,
            })
        })
        .collect()
}
