//! The periodic expiry sweep.
//!
//! Correctness never depends on it: an expired hold already frees its seats by time in every
//! read and every decision, and an unpaid order's seats come free at the end of its payment window
//! the same way. The sweep exists to write the EXPIRED states down, end requests that waited past
//! their deadline, tell subscribers and owners about all of it promptly (`HOLD_EXPIRED`,
//! `ORDER_UPDATED`, `SEATS_CHANGED`), and settle payments whose caller crashed or gave up
//! (`OrderService::settle_abandoned_payments`): the step that makes "no money without a ticket
//! or a refund" hold across crashes. Every [`WIND_UP_INTERVAL`] it finishes the wind-up of recently
//! cancelled shows (`crate::cancellation`), which is what makes a cancellation complete even when
//! the call that made it was cut short. Once an hour it also removes the booking history older
//! than `REQUEST_RETENTION_DAYS`, in small batches, so that the tables the hot path reads stay the
//! size of what is live rather than of everything that ever happened.

use crate::app::Ports;
use crate::cancellation::{Cancellations, WindUp};
use crate::orders::{OrderService, Settled};
use booking_core::Chain;
use booking_core::engine::SeatChange;
use booking_core::ports::{Purged, StoreError};
use booking_core::protocol::ServerMessage;
use booking_core::{SeatStatus, ShowId};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// How often history past the retention is removed: it grows slowly, and each purge walks the
/// old rows from the oldest, past those kept for their orders.
const PURGE_INTERVAL: chrono::Duration = chrono::Duration::hours(1);

/// Rows of each kind removed per transaction: small enough that no table is held for long.
const PURGE_BATCH: u32 = 500;

/// How often the wind-up of recently cancelled shows is repeated: what slipped past a
/// cancellation (a race, a charge in flight, a crash) is ended within this long.
pub const WIND_UP_INTERVAL: chrono::Duration = chrono::Duration::seconds(30);

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub holds_expired: usize,
    pub requests_expired: usize,
    pub orders_expired: usize,
    pub payments_settled: Settled,
    /// Idempotency keys kept past `IDEMPOTENCY_TTL_SECONDS`, forgotten.
    pub keys_forgotten: u64,
    /// History older than the retention, removed (on the sweeps that purge).
    pub purged: Purged,
    /// What was still open of cancelled shows, ended (on the sweeps that wind up).
    pub wound_up: WindUp,
}

pub struct Sweeper {
    ports: Ports,
    orders: Arc<OrderService>,
    cancellations: Cancellations,
    retention: chrono::Duration,
    /// When this sweeper last purged old history (never, on its first sweep).
    last_purge: Mutex<Option<DateTime<Utc>>>,
    /// When it last wound up cancelled shows (never, on its first sweep).
    last_wind_up: Mutex<Option<DateTime<Utc>>>,
    wind_up_interval: chrono::Duration,
}

/// Whether a periodic task last run at `last` is due at `now` (and if so, marks it run).
fn due(last: &Mutex<Option<DateTime<Utc>>>, now: DateTime<Utc>, every: chrono::Duration) -> bool {
    let mut last = last.lock().unwrap();
    if last.is_some_and(|at| now - at < every) {
        return false;
    }
    *last = Some(now);
    true
}

impl Sweeper {
    pub fn new(ports: Ports, orders: Arc<OrderService>, retention: chrono::Duration) -> Self {
        Self {
            cancellations: Cancellations::new(ports.clone(), orders.clone()),
            ports,
            orders,
            retention,
            last_purge: Mutex::new(None),
            last_wind_up: Mutex::new(None),
            wind_up_interval: WIND_UP_INTERVAL,
        }
    }

    /// Winds up cancelled shows at most every `interval` instead of [`WIND_UP_INTERVAL`]: a
    /// sweeper that is itself run rarely (the expirer function, once a minute) does it on every
    /// sweep.
    pub fn with_wind_up_interval(mut self, interval: chrono::Duration) -> Self {
        self.wind_up_interval = interval;
        self
    }

    /// Removes history that ended more than the retention ago, batch by batch, if the last purge
    /// was [`PURGE_INTERVAL`] ago or more.
    async fn purge_if_due(&self, now: DateTime<Utc>) -> Result<Purged, StoreError> {
        if !due(&self.last_purge, now, PURGE_INTERVAL) {
            return Ok(Purged::default());
        }
        let before = now - self.retention;
        let mut total = Purged::default();
        loop {
            let batch = self
                .ports
                .requests
                .purge_history(before, PURGE_BATCH)
                .await?;
            total.holds += batch.holds;
            total.requests += batch.requests;
            if !batch.is_full(PURGE_BATCH) {
                return Ok(total);
            }
            // Between batches, let the hot path have the store (and this task's thread).
            tokio::task::yield_now().await;
        }
    }

    #[tracing::instrument(skip_all)]
    pub async fn sweep_once(&self) -> Result<SweepReport, StoreError> {
        let now = self.ports.clock.now();
        let holds = self.ports.holds.expire_holds(now).await?;
        let mut by_show: BTreeMap<ShowId, Vec<_>> = BTreeMap::new();
        for hold in &holds {
            by_show
                .entry(hold.show_id)
                .or_default()
                .extend(hold.seat_ids.iter().copied());
        }
        if let Some(mirror) = &self.ports.mirror {
            // TTLs removed these locks already; freeing them again (only if they still name the
            // expired hold) covers a mirror whose clock runs behind.
            let mut freed: BTreeMap<ShowId, Vec<_>> = BTreeMap::new();
            for hold in &holds {
                freed
                    .entry(hold.show_id)
                    .or_default()
                    .extend(hold.seat_ids.iter().map(|&s| (s, hold.hold_id)));
            }
            for (show, freed) in freed {
                crate::service::update_mirror(mirror.as_ref(), show, &[], &freed).await;
            }
        }
        for (show, seats) in by_show {
            // A seat of an expired hold may already belong to a newer hold: report what it is now.
            let taken: HashMap<_, _> = self
                .ports
                .holds
                .taken_seats(show, now)
                .await?
                .into_iter()
                .collect();
            let mut changes: Vec<SeatChange> = seats
                .into_iter()
                .map(|seat_id| SeatChange {
                    seat_id,
                    status: taken
                        .get(&seat_id)
                        .copied()
                        .unwrap_or(SeatStatus::Available),
                })
                .collect();
            changes.sort_by_key(|c| c.seat_id);
            changes.dedup();
            self.ports.notifier.seats_changed(show, &changes).await;
        }

        let requests = self.ports.requests.expire_overdue_requests(now).await?;
        self.ports
            .notifier
            .booking_results(&crate::processor::stored_results(&requests))
            .await;
        let owners: Vec<_> = holds
            .iter()
            .map(|h| {
                (
                    h.user_id.clone(),
                    ServerMessage::HoldExpired {
                        hold_id: h.hold_id,
                        show_id: h.show_id,
                        seat_ids: h.seat_ids.clone(),
                    },
                )
            })
            .collect();
        self.ports.notifier.to_owners(&owners).await;

        // Abandoned payments first: a charge that went through confirms its order if its seats
        // are still its own, which they no longer are once the order is expired and its claims
        // freed.
        let payments_settled = self.orders.settle_abandoned_payments().await?;
        let orders_expired = self.orders.expire_orders().await?;
        let keys_forgotten = self.ports.idempotency.purge_keys(now).await?;
        let wound_up = if due(&self.last_wind_up, now, self.wind_up_interval) {
            self.cancellations.wind_up_recent(now).await?
        } else {
            WindUp::default()
        };
        let purged = self.purge_if_due(now).await?;
        let report = SweepReport {
            holds_expired: holds.len(),
            requests_expired: requests.len(),
            orders_expired,
            payments_settled,
            keys_forgotten,
            purged,
            wound_up,
        };
        crate::metrics::swept(&report);
        Ok(report)
    }

    /// Sweeps every `interval` until `stop` turns true (or its sender is dropped); a sweep in
    /// progress is finished first.
    pub async fn run(self, interval: std::time::Duration, stop: watch::Receiver<bool>) {
        every(interval, stop, || async {
            match self.sweep_once().await {
                Ok(r) if r != SweepReport::default() => tracing::info!(?r, "swept"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %Chain(&e), "expiry sweep failed; will retry"),
            }
        })
        .await;
    }
}

/// Runs `work` every `interval` (a late run delays the next rather than bunching them) until
/// `stop` turns true or its sender is dropped; a run in progress is finished first. The loop of
/// the app's background tasks (the sweep, the waiting rooms' ticker).
pub async fn every<F, Fut>(
    interval: std::time::Duration,
    mut stop: watch::Receiver<bool>,
    mut work: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // A stop asked for while a run is due wins: no run starts after it.
            biased;
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
                continue;
            }
            _ = tick.tick() => {}
        }
        work().await;
    }
}
