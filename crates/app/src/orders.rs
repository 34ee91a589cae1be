//! The purchase: turning a hold into an order, paying for it, cancelling it, and settling what a
//! crash left in flight.
//!
//! Money and seats move together through the [`OrderStore`]'s transactions (see
//! `booking_core::order` for the rules); this module adds what lies between them: the call to the
//! [`PaymentProvider`] (never inside a transaction, bounded by `PAYMENT_TIMEOUT_SECONDS`), the
//! pushes to the owner (`ORDER_UPDATED`) and to the show's subscribers (`SEATS_CHANGED`), and the
//! seat mirror. Ownership is checked here and in the store: someone else's order reads as not
//! found.
//!
//! [`OrderStore`]: booking_core::ports::OrderStore
//! [`PaymentProvider`]: booking_core::ports::PaymentProvider

use crate::app::Ports;
use crate::config::BookingConfig;
use crate::error::BookingError;
use crate::service::update_mirror;
use booking_core::engine::SeatChange;
use booking_core::ports::{
    CancelStart, ChargeFinish, ChargeOutcome, ChargeResult, ChargeStart, OrderError, OrderPage,
    PaymentError, SeatLock, StoreError,
};
use booking_core::protocol::ServerMessage;
use booking_core::{
    CANCELLED_BY_BUYER, Chain, HoldId, HoldStatus, NewOrder, Order, OrderId, OrderStatus, Payment,
    PaymentId, PaymentKind, PaymentStatus, PaymentToken, SeatStatus, ShowId, UserId,
    new_ticket_code, price_of,
};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// Most orders one page of `GET /me/orders` lists, and how many it lists by default.
pub const MAX_PAGE: usize = 100;
pub const DEFAULT_PAGE: usize = 20;

/// 9999-12-31T23:59:59Z in microseconds: the latest instant a cursor may name.
const LATEST_CURSOR_MICROS: i64 = booking_core::SOLD_UNTIL * 1_000_000;

/// A page of a user's orders and the cursor of the next one.
#[derive(Debug, Clone)]
pub struct OrdersPage {
    pub orders: Vec<Order>,
    pub next_cursor: Option<String>,
}

/// What one settling pass over abandoned payments did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    pub confirmed: usize,
    pub refunded: usize,
    pub released: usize,
}

pub struct OrderService {
    ports: Ports,
    config: BookingConfig,
}

impl OrderService {
    pub fn new(ports: Ports, config: BookingConfig) -> Self {
        Self { ports, config }
    }

    fn now(&self) -> DateTime<Utc> {
        self.ports.clock.now()
    }

    /// Converts a live hold of `user`'s into an order waiting for payment. Under an
    /// idempotency key's use (`key_use`), the order's id is derived from it, so a retry that runs
    /// again after a crash recognises the order it made and answers with it.
    #[tracing::instrument(skip_all, fields(user = %user, hold = raw_hold))]
    pub async fn create_order(
        &self,
        user: &UserId,
        raw_hold: &str,
        key_use: Option<&str>,
    ) -> Result<Order, BookingError> {
        let order_id =
            derived(key_use, ORDER_ID_MASK).map_or_else(OrderId::new_random, OrderId::from_uuid);
        let hold_id: HoldId = raw_hold.parse().map_err(|_| BookingError::HoldNotFound)?;
        let hold = self
            .ports
            .holds
            .get_hold(hold_id)
            .await?
            .filter(|h| &h.user_id == user)
            .ok_or(BookingError::HoldNotFound)?;
        let now = self.now();
        let status = hold.status_at(now);
        if status == HoldStatus::Converted
            && let Some(mut order) = self.ports.orders.order_of_hold(hold_id).await?
        {
            if order.order_id == order_id {
                // This very request made it, before its answer was lost.
                order.status = order.status_at(now);
                return Ok(order);
            }
            // A retried create without an Idempotency-Key learns which order it made.
            return Err(BookingError::HoldConverted {
                order_id: order.order_id,
            });
        }
        if status != HoldStatus::Held {
            return Err(BookingError::HoldNotActive(status));
        }
        let show = self
            .ports
            .catalog
            .get_show(hold.show_id)
            .await?
            .ok_or_else(|| {
                BookingError::Inconsistent(format!("hold {hold_id} names a show that is gone"))
            })?;
        if show.is_cancelled() {
            return Err(BookingError::ShowCancelled(show.show_id));
        }
        let (amount_cents, currency) =
            price_of(&show.layout, &hold.seat_ids).map_err(BookingError::SeatsNotPriced)?;
        let order = self
            .ports
            .orders
            .create_order(&NewOrder {
                order_id,
                hold_id,
                user_id: user.clone(),
                amount_cents,
                currency,
                created_at: now,
                expires_at: now + self.config.order_payment_ttl,
            })
            .await
            .map_err(|e| order_error(e, Operation::Create))?;
        // The seats stay HELD for everyone else; only the mirror's idea of until when changes.
        self.mirror_locks(&order, SeatStatus::Held).await;
        tracing::info!(order_id = %order.order_id, amount_cents, "order created");
        Ok(order)
    }

    /// An order of `user`'s, with its status as of now, and its payments.
    pub async fn order(
        &self,
        user: &UserId,
        raw: &str,
    ) -> Result<(Order, Vec<Payment>), BookingError> {
        let id: OrderId = raw.parse().map_err(|_| BookingError::OrderNotFound)?;
        let mut order = self
            .ports
            .orders
            .get_order(id)
            .await?
            .filter(|o| &o.user_id == user)
            .ok_or(BookingError::OrderNotFound)?;
        order.status = order.status_at(self.now());
        let payments = self.ports.orders.payments_of(id).await?;
        Ok((order, payments))
    }

    /// A page of `user`'s orders, newest first. `cursor` is the `nextCursor` of the page before.
    pub async fn orders_of(
        &self,
        user: &UserId,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> Result<OrdersPage, BookingError> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(BookingError::InvalidLimit { max: MAX_PAGE });
        }
        let after = cursor.map(decode_cursor).transpose()?;
        // One more than asked for tells whether there is a next page.
        let mut orders = self
            .ports
            .orders
            .orders_of(
                user,
                OrderPage {
                    after,
                    limit: limit + 1,
                },
            )
            .await?;
        let next_cursor = if orders.len() > limit {
            orders.truncate(limit);
            orders.last().map(encode_cursor)
        } else {
            None
        };
        let now = self.now();
        for order in &mut orders {
            order.status = order.status_at(now);
        }
        Ok(OrdersPage {
            orders,
            next_cursor,
        })
    }

    /// Charges `raw_token` for a pending order of `user`'s and confirms it with a ticket code.
    /// Under an idempotency key's use, the charge's id is derived from it: a retry that runs
    /// again after a crash finds the charge it made and answers with its outcome.
    #[tracing::instrument(skip_all, fields(user = %user, order = raw))]
    pub async fn confirm_payment(
        &self,
        user: &UserId,
        raw: &str,
        raw_token: &str,
        key_use: Option<&str>,
    ) -> Result<Order, BookingError> {
        let id: OrderId = raw.parse().map_err(|_| BookingError::OrderNotFound)?;
        let token: PaymentToken = raw_token
            .parse()
            .map_err(|_| BookingError::InvalidPaymentToken)?;
        let now = self.now();
        // No new charge for an order of a cancelled show (it is being cancelled); an order that
        // is over answers as it would anyway. A charge that slips past this check while the show
        // is being cancelled is refunded by the show's wind-up.
        if let Some(order) = self.ports.orders.get_order(id).await?
            && &order.user_id == user
            && order.status_at(now) == OrderStatus::PaymentPending
            && self.show_is_cancelled(order.show_id).await?
        {
            return Err(BookingError::ShowCancelled(order.show_id));
        }
        let payment_id = derived(key_use, CHARGE_ID_MASK)
            .map_or_else(PaymentId::new_random, PaymentId::from_uuid);
        let started = self
            .ports
            .orders
            .begin_charge(
                id,
                user,
                payment_id,
                &token,
                now,
                now + self.config.payment_window(),
            )
            .await;
        let start = match started {
            Ok(start) => start,
            Err(OrderError::NotPending(_)) if key_use.is_some() => {
                return self.outcome_of_charge(user, id, payment_id).await;
            }
            Err(e) => return Err(order_error(e, Operation::Confirm)),
        };
        if let ChargeStart::InDoubt(charge) = &start {
            tracing::info!(payment_id = %charge.payment_id, "re-sending a charge in doubt");
        }
        let charge = start.payment();
        let outcome = self.charge(charge).await?;
        let result = match outcome {
            ChargeOutcome::Charged { provider_ref } => ChargeResult::Charged { provider_ref },
            ChargeOutcome::Declined { reason } => ChargeResult::Declined { reason },
        };
        let (order, _) = self.finish_charge(charge.payment_id, &result).await?;
        let declined = match &result {
            ChargeResult::Declined { reason } => Some(reason.as_str()),
            _ => None,
        };
        answer_of_charge(order, declined)
    }

    /// What a confirm that already ran (its charge `payment`) answered: the order if the charge
    /// confirmed it, the decline if it was declined; otherwise the order's state conflict.
    async fn outcome_of_charge(
        &self,
        user: &UserId,
        order: OrderId,
        payment: PaymentId,
    ) -> Result<Order, BookingError> {
        let (order, payments) = self.order(user, &order.to_string()).await?;
        let Some(charge) = payments.iter().find(|p| p.payment_id == payment) else {
            return Err(BookingError::OrderNotPending(order.status));
        };
        match charge.status {
            PaymentStatus::Succeeded if order.status == OrderStatus::Confirmed => Ok(order),
            PaymentStatus::Declined => {
                answer_of_charge(order, charge.message.as_deref().or(Some("")))
            }
            _ => answer_of_charge(order, None),
        }
    }

    /// Cancels an order of `user`'s: an unpaid one at once, a paid one once it is refunded.
    /// Under an idempotency key's use, a paid order's refund id is derived from it, so a retry
    /// that runs again after a crash recognises the refund it made.
    #[tracing::instrument(skip_all, fields(user = %user, order = raw))]
    pub async fn cancel(
        &self,
        user: &UserId,
        raw: &str,
        key_use: Option<&str>,
    ) -> Result<Order, BookingError> {
        let id: OrderId = raw.parse().map_err(|_| BookingError::OrderNotFound)?;
        let refund_id = derived(key_use, REFUND_ID_MASK)
            .map_or_else(PaymentId::new_random, PaymentId::from_uuid);
        let started = self
            .ports
            .orders
            .cancel_order(id, user, refund_id, CANCELLED_BY_BUYER, self.now())
            .await;
        let start = match started {
            Ok(start) => start,
            Err(OrderError::NotPending(OrderStatus::Cancelled)) if key_use.is_some() => {
                let (order, payments) = self.order(user, raw).await?;
                if payments.iter().any(|p| p.payment_id == refund_id) {
                    return Ok(order);
                }
                return Err(BookingError::OrderNotCancellable(order.status));
            }
            Err(e) => return Err(order_error(e, Operation::Cancel)),
        };
        self.finish_cancel(start).await
    }

    /// Cancels an order whatever its buyer wants, for `reason` (its show was cancelled): an
    /// unpaid one at once, a paid one once it is refunded. Refused, like a buyer's cancel, while
    /// a charge is in flight ([`BookingError::PaymentInProgress`]) and once the order is over.
    /// Repeating it is safe: a paid order's refund is recorded once and only sent again.
    pub async fn cancel_because(&self, order: &Order, reason: &str) -> Result<Order, BookingError> {
        let start = self
            .ports
            .orders
            .cancel_order(
                order.order_id,
                &order.user_id,
                PaymentId::new_random(),
                reason,
                self.now(),
            )
            .await
            .map_err(|e| order_error(e, Operation::Cancel))?;
        self.finish_cancel(start).await
    }

    async fn finish_cancel(&self, start: CancelStart) -> Result<Order, BookingError> {
        match start {
            CancelStart::Cancelled(order) => {
                self.announce(&order).await;
                Ok(order)
            }
            CancelStart::Refund { refund, .. } => self.refund(&refund).await,
        }
    }

    async fn show_is_cancelled(&self, show: ShowId) -> Result<bool, StoreError> {
        Ok(self
            .ports
            .catalog
            .get_show(show)
            .await?
            .is_some_and(|s| s.is_cancelled()))
    }

    /// Marks orders whose payment window ran out EXPIRED and tells their owners and the shows'
    /// subscribers; their seats were free by time already.
    pub async fn expire_orders(&self) -> Result<usize, StoreError> {
        let expired = self.ports.orders.expire_orders(self.now()).await?;
        for order in &expired {
            self.announce(order).await;
        }
        Ok(expired.len())
    }

    /// Settles payments whose caller gave up on them (a crash, a timeout) more than one payment
    /// window ago: asks the provider what became of each charge and records it (confirming the
    /// order, or refunding the money if the order can no longer have it); sends refunds again.
    #[tracing::instrument(skip_all)]
    pub async fn settle_abandoned_payments(&self) -> Result<Settled, StoreError> {
        let before = self.now() - self.config.payment_window();
        let mut settled = Settled::default();
        for payment in self.ports.orders.unsettled_payments(before).await? {
            let outcome = match payment.kind {
                PaymentKind::Charge => self.settle_charge(&payment).await,
                PaymentKind::Refund => self.refund(&payment).await.map(|order| (order, true)),
            };
            match outcome {
                Ok((_, true)) => settled.refunded += 1,
                Ok((order, false)) if order.status == OrderStatus::Confirmed => {
                    settled.confirmed += 1
                }
                Ok(_) => settled.released += 1,
                Err(e) => {
                    tracing::warn!(payment_id = %payment.payment_id, error = %Chain(&e), "could not settle a payment; will retry");
                }
            }
        }
        Ok(settled)
    }

    /// Settles one abandoned charge; `true` if money had to go back.
    async fn settle_charge(&self, charge: &Payment) -> Result<(Order, bool), BookingError> {
        let outcome = self
            .within_timeout(self.ports.payments.charge_outcome(charge.payment_id))
            .await?;
        let result = match outcome {
            Some(ChargeOutcome::Charged { provider_ref }) => ChargeResult::Charged { provider_ref },
            Some(ChargeOutcome::Declined { reason }) => ChargeResult::Declined { reason },
            None => ChargeResult::NotCharged {
                reason: "the provider has no record of this charge".to_owned(),
                // Only if nobody has sent it again since it was listed: a retry may be on its
                // way to the provider right now.
                last_sent: charge.updated_at,
            },
        };
        self.finish_charge(charge.payment_id, &result).await
    }

    /// Sends a charge to the provider, within the payment timeout.
    async fn charge(&self, charge: &Payment) -> Result<ChargeOutcome, BookingError> {
        let token = charge.token.as_ref().ok_or_else(|| {
            BookingError::Inconsistent(format!("charge {} has no token", charge.payment_id))
        })?;
        let call = self.ports.payments.charge(
            charge.payment_id,
            token,
            charge.amount_cents,
            &charge.currency,
        );
        self.within_timeout(call).await
    }

    async fn within_timeout<T>(
        &self,
        call: impl Future<Output = Result<T, PaymentError>>,
    ) -> Result<T, BookingError> {
        let timeout = self
            .config
            .payment_timeout
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(10));
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(BookingError::PaymentUnavailable(e)),
            Err(_) => Err(BookingError::PaymentUnavailable(PaymentError::unavailable(
                format!("no answer within {timeout:?}"),
            ))),
        }
    }

    /// Records a charge's outcome; refunds money the order can no longer have (then `true`);
    /// tells everyone.
    async fn finish_charge(
        &self,
        payment: PaymentId,
        result: &ChargeResult,
    ) -> Result<(Order, bool), BookingError> {
        let finish = self
            .ports
            .orders
            .finish_charge(
                payment,
                result,
                &new_ticket_code(),
                PaymentId::new_random(),
                self.now(),
            )
            .await
            .map_err(|e| order_error(e, Operation::Confirm))?;
        match finish {
            ChargeFinish::Settled(order) => {
                self.announce(&order).await;
                Ok((order, false))
            }
            ChargeFinish::MustRefund { order, refund } => {
                tracing::warn!(order_id = %order.order_id, status = %order.status, "charged an order that can no longer be confirmed; refunding");
                self.announce(&order).await;
                match self.refund(&refund).await {
                    Ok(order) => Ok((order, true)),
                    Err(e) => {
                        // Recorded as PENDING: the next settling pass sends it again.
                        tracing::warn!(payment_id = %refund.payment_id, error = %Chain(&e), "refund failed; will retry");
                        Ok((order, false))
                    }
                }
            }
        }
    }

    /// Sends a recorded refund to the provider and records that it went through.
    async fn refund(&self, refund: &Payment) -> Result<Order, BookingError> {
        let payments = self.ports.orders.payments_of(refund.order_id).await?;
        let charge_ref = refund
            .refund_of
            .and_then(|charge| payments.iter().find(|p| p.payment_id == charge))
            .and_then(|charge| charge.provider_ref.clone())
            .ok_or_else(|| {
                BookingError::Inconsistent(format!(
                    "refund {} names no settled charge",
                    refund.payment_id
                ))
            })?;
        let call = self.ports.payments.refund(
            refund.payment_id,
            &charge_ref,
            refund.amount_cents,
            &refund.currency,
        );
        let provider_ref = self.within_timeout(call).await?;
        let order = self
            .ports
            .orders
            .finish_refund(refund.payment_id, &provider_ref, self.now())
            .await
            .map_err(|e| order_error(e, Operation::Cancel))?;
        self.announce(&order).await;
        Ok(order)
    }

    /// Tells the owner where their order stands, and the show's subscribers and the mirror what
    /// became of its seats.
    async fn announce(&self, order: &Order) {
        self.ports
            .notifier
            .to_owners(&[(
                order.user_id.clone(),
                ServerMessage::OrderUpdated {
                    order_id: order.order_id,
                    status: order.status,
                    ticket_code: order.ticket_code.clone(),
                },
            )])
            .await;
        match order.status {
            OrderStatus::Confirmed => {
                self.mirror_locks(order, SeatStatus::Booked).await;
                self.seats_changed(order.show_id, &order.seat_ids, |_| SeatStatus::Booked)
                    .await;
            }
            OrderStatus::PaymentPending => {}
            OrderStatus::Failed | OrderStatus::Expired | OrderStatus::Cancelled => {
                if let Some(mirror) = &self.ports.mirror {
                    let freed: Vec<_> =
                        order.seat_ids.iter().map(|&s| (s, order.hold_id)).collect();
                    update_mirror(mirror.as_ref(), order.show_id, &[], &freed).await;
                }
                // A seat freed by time may already be someone else's: say what it is now.
                let taken: HashMap<_, _> = match self
                    .ports
                    .holds
                    .taken_seats(order.show_id, self.now())
                    .await
                {
                    Ok(taken) => taken.into_iter().collect(),
                    Err(e) => {
                        tracing::warn!(error = %Chain(&e), "could not read the seats an order freed; subscribers are not told (the seat map is right)");
                        return;
                    }
                };
                self.seats_changed(order.show_id, &order.seat_ids, |seat| {
                    taken.get(&seat).copied().unwrap_or(SeatStatus::Available)
                })
                .await;
            }
        }
    }

    async fn seats_changed(
        &self,
        show: ShowId,
        seats: &[booking_core::SeatId],
        status: impl Fn(booking_core::SeatId) -> SeatStatus,
    ) {
        let changes: Vec<SeatChange> = seats
            .iter()
            .map(|&seat_id| SeatChange {
                seat_id,
                status: status(seat_id),
            })
            .collect();
        self.ports.notifier.seats_changed(show, &changes).await;
    }

    async fn mirror_locks(&self, order: &Order, status: SeatStatus) {
        let Some(mirror) = &self.ports.mirror else {
            return;
        };
        // A waiting order's claims may be pushed out by a charge in flight (up to one payment
        // window past the deadline) without the mirror hearing of it; the mirror keeps the seat
        // that long, so it never shows a claimed seat as free. When the order ends, `announce`
        // frees the seats in the mirror at once.
        let expires_at = match status {
            SeatStatus::Held => order.seats_until + self.config.payment_window(),
            _ => order.seats_until,
        };
        let locks: Vec<SeatLock> = order
            .seat_ids
            .iter()
            .map(|&seat_id| SeatLock {
                seat_id,
                hold_id: order.hold_id,
                user_id: order.user_id.clone(),
                expires_at,
                status,
            })
            .collect();
        update_mirror(mirror.as_ref(), order.show_id, &locks, &[]).await;
    }
}

/// The answer of a confirm whose charge ended with `order` (declined with a reason, or not).
fn answer_of_charge(order: Order, declined: Option<&str>) -> Result<Order, BookingError> {
    match (declined, order.status) {
        (_, OrderStatus::Confirmed) => Ok(order),
        (Some(reason), OrderStatus::Failed) => Err(BookingError::PaymentDeclined {
            order_id: order.order_id,
            reason: reason.to_owned(),
        }),
        // Charged, but the order was cancelled or lost its seats meanwhile: refunded.
        (_, OrderStatus::Expired) => Err(BookingError::OrderExpired),
        (_, status) => Err(BookingError::OrderNotPending(status)),
    }
}

/// Bits flipped to derive the ids a use of an idempotency key gives what it makes: every bit
/// except the UUID version (76..80) and variant (62..64) fields, so each derived id is a
/// well-formed v4 UUID, distinct per purpose, and the same on every attempt under the use.
pub(crate) const ID_MASK_BITS: u128 = !(0xF << 76) & !(0x3 << 62);
const ORDER_ID_MASK: u128 = 0x3c5a_e196_4b2d_f087_6e3d_1c5a_72b9_e40f & ID_MASK_BITS;
const CHARGE_ID_MASK: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834 & ID_MASK_BITS;
const REFUND_ID_MASK: u128 = 0x1b87_3593_cc9e_2d51_85eb_ca6b_c2b2_ae35 & ID_MASK_BITS;

/// The id a use of an idempotency key gives what it makes, for one purpose (`mask`).
pub(crate) fn derived(key_use: Option<&str>, mask: u128) -> Option<uuid::Uuid> {
    let use_id = uuid::Uuid::try_parse(key_use?).ok()?;
    Some(uuid::Uuid::from_u128(use_id.as_u128() ^ mask))
}

/// Which use case an [`OrderError`] came from: "not pending" reads differently for each.
#[derive(Debug, Clone, Copy)]
enum Operation {
    Create,
    Confirm,
    Cancel,
}

fn order_error(e: OrderError, operation: Operation) -> BookingError {
    match (e, operation) {
        (OrderError::NotFound, Operation::Create) => BookingError::HoldNotFound,
        (OrderError::NotFound, _) => BookingError::OrderNotFound,
        (OrderError::HoldNotActive(status), _) => BookingError::HoldNotActive(status),
        (OrderError::NotPending(status), Operation::Cancel) => {
            BookingError::OrderNotCancellable(status)
        }
        (OrderError::NotPending(status), _) => BookingError::OrderNotPending(status),
        (OrderError::Expired, _) => BookingError::OrderExpired,
        (OrderError::PaymentInProgress, _) => BookingError::PaymentInProgress,
        (OrderError::Store(e), _) => BookingError::Store(e),
    }
}

/// The cursor after `order`: its creation instant (microseconds) and id, opaque to clients.
fn encode_cursor(order: &Order) -> String {
    format!("{}_{}", order.created_at.timestamp_micros(), order.order_id)
}

fn decode_cursor(raw: &str) -> Result<(DateTime<Utc>, OrderId), BookingError> {
    let (micros, id) = raw.split_once('_').ok_or(BookingError::InvalidCursor)?;
    // Only instants an order can have been made at: anything else was not handed out by us
    // (and some stores refuse instants far outside their range).
    let at = micros
        .parse::<i64>()
        .ok()
        .filter(|m| (0..=crate::orders::LATEST_CURSOR_MICROS).contains(m))
        .and_then(DateTime::from_timestamp_micros)
        .ok_or(BookingError::InvalidCursor)?;
    let id = id.parse().map_err(|_| BookingError::InvalidCursor)?;
    Ok((at, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let at = DateTime::from_timestamp_micros(1_800_000_000_123_456).unwrap();
        let id = OrderId::new_random();
        let cursor = format!("{}_{id}", at.timestamp_micros());
        assert_eq!(decode_cursor(&cursor).unwrap(), (at, id));
        for bad in [
            "",
            "_",
            "12",
            "x_y",
            "1_not-a-uuid",
            &format!("99999999999999999999_{id}"),
            &format!("-300000000000000000_{id}"),
            &format!("253402300800000000_{id}"),
        ] {
            assert!(decode_cursor(bad).is_err(), "{bad:?}");
        }
    }
}
