//! Cancelling a show: the screening will not happen, so nobody may keep, buy or pay for a seat of
//! it, and everyone who had one is told and, if they paid, refunded.
//!
//! A cancellation is two steps, and only the first is atomic: the store marks the show cancelled
//! (for good; the first cancellation's time and reason stand), then the *wind-up* ends what the
//! show had. From the mark on, nothing new can start: intake refuses the show's hold requests
//! (`SHOW_CANCELLED`), deciders refuse the requests they take (they read the show fresh, under
//! its lock), and orders and charges of it are refused. The wind-up then, each part idempotent:
//!
//! 1. ends every undecided request FAILED, dead letters included (one store transaction);
//! 2. releases every live hold;
//! 3. cancels every open order through the purchase's own cancel: an unpaid one at once, a paid
//!    one by a refund through the payment provider (the order stays CONFIRMED, its ticket valid,
//!    until the money is back).
//!
//! Where deciders are serialised per show (`Ports::show_locks`), steps 1 and 2 run under the
//! show's lock, so no batch decided before the mark can commit a hold after them. Whatever the
//! wind-up could not finish (a crash between the mark and the end, a charge in flight that had to
//! be waited for, a payment provider that did not answer, a request or hold that slipped in
//! through a race with the mark in a process without show locks) the sweeper finishes: it repeats
//! the wind-up of every show cancelled in the last [`WIND_UP_WINDOW`], which changes nothing once
//! nothing is left open.

use crate::app::Ports;
use crate::error::BookingError;
use crate::orders::OrderService;
use crate::service::announce_released;
use booking_core::ports::{ReleaseError, StoreError};
use booking_core::protocol::ServerMessage;
use booking_core::{Chain, OrderStatus, Show, UserId};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;

/// How long after its cancellation the sweeper keeps winding a show up: far longer than a charge
/// in flight or a payment provider's outage lasts.
pub const WIND_UP_WINDOW: chrono::Duration = chrono::Duration::days(7);

/// What one wind-up of a cancelled show did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindUp {
    /// Undecided requests ended FAILED.
    pub requests_failed: usize,
    pub holds_released: usize,
    /// Unpaid orders cancelled.
    pub orders_cancelled: usize,
    /// Paid orders refunded and cancelled.
    pub orders_refunded: usize,
    /// Orders not over yet: a charge in flight to wait for, or a refund the provider has not
    /// confirmed. The sweeper goes on with them.
    pub orders_unfinished: usize,
}

impl WindUp {
    fn add(&mut self, other: WindUp) {
        self.requests_failed += other.requests_failed;
        self.holds_released += other.holds_released;
        self.orders_cancelled += other.orders_cancelled;
        self.orders_refunded += other.orders_refunded;
        self.orders_unfinished += other.orders_unfinished;
    }
}

/// Cancels shows and winds them up.
pub struct Cancellations {
    ports: Ports,
    orders: Arc<OrderService>,
}

impl Cancellations {
    pub fn new(ports: Ports, orders: Arc<OrderService>) -> Self {
        Self { ports, orders }
    }

    /// Ends what a cancelled show still has open (see the module docs); nothing for a show that
    /// is not cancelled.
    pub async fn wind_up(&self, show: &Show) -> Result<WindUp, BookingError> {
        let Some(message) = show.cancellation_message() else {
            return Ok(WindUp::default());
        };
        let mut told: BTreeSet<UserId> = BTreeSet::new();
        let mut wound_up = self
            .ports
            .as_sole_decider(
                show.show_id,
                self.end_requests_and_holds(show, &message, &mut told),
            )
            .await?;
        self.end_orders(show, &message, &mut wound_up, &mut told)
            .await?;
        let reason = show
            .cancelled
            .as_ref()
            .map(|c| c.reason.clone())
            .unwrap_or_default();
        let messages: Vec<_> = told
            .into_iter()
            .map(|user| {
                (
                    user,
                    ServerMessage::ShowCancelled {
                        show_id: show.show_id,
                        reason: reason.clone(),
                    },
                )
            })
            .collect();
        self.ports.notifier.to_owners(&messages).await;
        Ok(wound_up)
    }

    /// Steps 1 and 2: the show's undecided requests and live holds.
    async fn end_requests_and_holds(
        &self,
        show: &Show,
        message: &str,
        told: &mut BTreeSet<UserId>,
    ) -> Result<WindUp, BookingError> {
        let now = self.ports.clock.now();
        let failed = self
            .ports
            .requests
            .fail_undecided(show.show_id, message, now)
            .await?;
        self.ports
            .notifier
            .booking_results(&crate::processor::stored_results(&failed))
            .await;
        told.extend(failed.iter().map(|r| r.user_id.clone()));

        let live = self.ports.holds.load_show_state(show.show_id, now).await?;
        let mut released = Vec::new();
        for hold in live.holds.iter().filter(|h| h.expires_at > now) {
            match self
                .ports
                .holds
                .release_hold(hold.hold_id, &hold.user_id, now)
                .await
            {
                Ok(hold) => released.push(hold),
                // Ended meanwhile (expired, converted into an order: step 3 has it).
                Err(ReleaseError::NotFound | ReleaseError::NotHeld(_)) => {}
                Err(ReleaseError::Store(e)) => return Err(e.into()),
            }
        }
        announce_released(&self.ports, show.show_id, &released).await;
        told.extend(released.iter().map(|h| h.user_id.clone()));
        Ok(WindUp {
            requests_failed: failed.len(),
            holds_released: released.len(),
            ..WindUp::default()
        })
    }

    /// Step 3: the show's open orders, each cancelled (and refunded) like a buyer's cancel.
    async fn end_orders(
        &self,
        show: &Show,
        message: &str,
        wound_up: &mut WindUp,
        told: &mut BTreeSet<UserId>,
    ) -> Result<(), BookingError> {
        for order in self.ports.orders.open_orders_of_show(show.show_id).await? {
            let paid = order.status == OrderStatus::Confirmed;
            match self.orders.cancel_because(&order, message).await {
                Ok(now) if now.status == OrderStatus::Cancelled => {
                    if paid {
                        wound_up.orders_refunded += 1;
                    } else {
                        wound_up.orders_cancelled += 1;
                    }
                    told.insert(order.user_id.clone());
                }
                Ok(_) => wound_up.orders_unfinished += 1,
                // Ran out of time meanwhile: its seats are free and the sweep writes it down.
                Err(BookingError::OrderNotCancellable(_)) => {}
                // A charge in flight decides first; a refund that did not go through stays
                // recorded and is sent again. Either way the next wind-up has the order.
                Err(
                    e @ (BookingError::PaymentInProgress | BookingError::PaymentUnavailable(_)),
                ) => {
                    tracing::info!(order_id = %order.order_id, error = %Chain(&e), "order of a cancelled show not over yet; the sweep goes on with it");
                    wound_up.orders_unfinished += 1;
                }
                // Whatever else stops one order stops only it: the others go on, and the sweep
                // tries this one again.
                Err(e) => {
                    tracing::warn!(order_id = %order.order_id, error = %Chain(&e), "could not cancel an order of a cancelled show; will retry");
                    wound_up.orders_unfinished += 1;
                }
            }
        }
        Ok(())
    }

    /// Repeats the wind-up of every show cancelled since `now - WIND_UP_WINDOW`: what finishes a
    /// cancellation cut short. A show that fails is logged and left for the next sweep; the
    /// others go on.
    pub async fn wind_up_recent(&self, now: DateTime<Utc>) -> Result<WindUp, StoreError> {
        let mut total = WindUp::default();
        for show_id in self
            .ports
            .catalog
            .cancelled_shows(now - WIND_UP_WINDOW)
            .await?
        {
            let Some(show) = self.ports.catalog.get_show(show_id).await? else {
                continue;
            };
            match self.wind_up(&show).await {
                Ok(done) => total.add(done),
                Err(e) => {
                    tracing::warn!(show_id = %show_id, error = %Chain(&e), "could not wind up a cancelled show; will retry");
                }
            }
        }
        Ok(total)
    }
}
