//! The expirer function: the periodic sweep on a schedule.
//!
//! Correctness never waits for it (an expired hold frees its seats by time in every read and
//! decision); it writes EXPIRED down, ends requests that waited past their deadline, keeps the
//! mirror tidy and tells owners and subscribers, exactly as the local server's sweeper does,
//! finishes the wind-up of recently cancelled shows; a warm instance also removes history past
//! `REQUEST_RETENTION_DAYS` once an hour. Where the WebSocket API is configured it also closes
//! the sockets whose token has expired (API Gateway holds them; nothing is pushed to them once
//! the token has expired, and this sweep ends them within a minute).
//!
//! While a show's waiting room is on, the invocation then stays for most of its minute as the
//! rooms' ticker, as the local server's runs: every `WAITING_ROOM_TICK` it moves each room on
//! (lapsed places and admissions given up, the next let in and told, with their token) and
//! pushes the waiting their coalesced positions, which no other function does (polls move a
//! room on too, but a poll answers only its own caller). With no room on it returns at once,
//! so a quiet deployment pays for a sweep a minute, no more.

use crate::wiring::{Shared, TokenKey, WiringError};
use booking_app::app::WAITING_ROOM_TICK;
use booking_app::sweeper::{SweepReport, Sweeper};
use booking_app::waiting_rooms::WaitingRooms;
use booking_aws::GatewayNotifier;
use booking_core::Chain;
use booking_core::ports::StoreError;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many expired sockets one sweep closes at most (the rest wait a minute): bounded so that
/// the sweep always ends before the next one starts.
const SOCKETS_PER_SWEEP: usize = 2_000;

/// How long one invocation stays on as the rooms' ticker at most, by default: most of the
/// minute between two invocations (`WAITING_ROOM_TICKER_SECONDS`; 0: never).
const DEFAULT_TICKER_SECONDS: u64 = 55;

/// What is left of an invocation's time when the ticker stops, so that it returns before
/// Lambda's timeout cuts it off.
const TICKER_MARGIN: Duration = Duration::from_secs(2);

/// The expirer function: one sweep per scheduled invocation (the event's content does not
/// matter).
pub async fn serve() -> Result<(), lambda_runtime::Error> {
    let expirer = &*Box::leak(Box::new(Expirer::from_env().await?));
    crate::serve_events(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
            // The invocation's deadline, as the runtime gives it (milliseconds since the epoch);
            // `None` if it is not in the future (an emulator may give none).
            let left_ms = i64::try_from(event.context.deadline)
                .unwrap_or(i64::MAX)
                .saturating_sub(chrono::Utc::now().timestamp_millis());
            let deadline = u64::try_from(left_ms)
                .ok()
                .filter(|&ms| ms > 0)
                .map(|ms| Instant::now() + Duration::from_millis(ms));
            let report = expirer.handle(deadline).await?;
            Ok::<serde_json::Value, lambda_runtime::Error>(serde_json::json!({
                "holdsExpired": report.sweep.holds_expired,
                "requestsExpired": report.sweep.requests_expired,
                "ordersExpired": report.sweep.orders_expired,
                "holdsPurged": report.sweep.purged.holds,
                "requestsPurged": report.sweep.purged.requests,
                "woundUp": report.sweep.wound_up,
                "socketsClosed": report.sockets_closed,
                "roomTicks": report.room_ticks,
            }))
        },
    ))
    .await
}

pub struct Expirer {
    sweeper: Sweeper,
    sockets: Option<Arc<GatewayNotifier>>,
    rooms: Option<RoomTicker>,
}

/// The waiting rooms, and how long an invocation ticks them at most.
struct RoomTicker {
    rooms: Arc<WaitingRooms>,
    for_at_most: Duration,
}

/// What one invocation did.
#[derive(Debug)]
pub struct ExpirerReport {
    pub sweep: SweepReport,
    /// WebSocket connections closed because their token had expired.
    pub sockets_closed: usize,
    /// Rounds of the waiting rooms' ticker this invocation ran (0: no room was on).
    pub room_ticks: u64,
}

impl Expirer {
    pub async fn from_env() -> Result<Self, WiringError> {
        let shared = Shared::from_env(TokenKey::NotNeeded).await?;
        // The admissions it hands out as the rooms' ticker are checked by the api function.
        let app = shared.with_admission_key(shared.app()?).await?.build();
        // Invoked once a minute: every sweep finishes what cancelled shows still have open.
        let sweeper = app
            .sweeper()
            .with_wind_up_interval(chrono::Duration::zero());
        let ticker_seconds = crate::config::optional("WAITING_ROOM_TICKER_SECONDS")
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| crate::config::ConfigError::Invalid {
                        name: "WAITING_ROOM_TICKER_SECONDS",
                        reason: format!("{v:?} is not a whole number of seconds"),
                    })
            })
            .transpose()?
            .unwrap_or(DEFAULT_TICKER_SECONDS);
        Ok(Self::new(sweeper)
            .closing_sockets(shared.gateway_notifier()?)
            .ticking_rooms(
                app.waiting_rooms().clone(),
                Duration::from_secs(ticker_seconds),
            ))
    }

    pub fn new(sweeper: Sweeper) -> Self {
        Self {
            sweeper,
            sockets: None,
            rooms: None,
        }
    }

    /// Also ticks the waiting rooms while any is on, for `for_at_most` of an invocation.
    pub fn ticking_rooms(mut self, rooms: Arc<WaitingRooms>, for_at_most: Duration) -> Self {
        self.rooms = (!for_at_most.is_zero()).then_some(RoomTicker { rooms, for_at_most });
        self
    }

    /// Also closes the gateway's sockets whose token has expired.
    pub fn closing_sockets(mut self, notifier: Option<Arc<GatewayNotifier>>) -> Self {
        self.sockets = notifier;
        self
    }

    /// One sweep, then, while a room is on, the rooms' ticker until the invocation's
    /// `deadline` (less a margin) or its own limit. The scheduled event's content does not
    /// matter: any invocation sweeps.
    pub async fn handle(&self, deadline: Option<Instant>) -> Result<ExpirerReport, StoreError> {
        let sweep = self.sweeper.sweep_once().await?;
        let sockets_closed = match &self.sockets {
            Some(notifier) => notifier
                .close_token_expired(chrono::Utc::now(), SOCKETS_PER_SWEEP)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %Chain(&e), "could not look for expired sockets");
                    0
                }),
            None => 0,
        };
        let room_ticks = match &self.rooms {
            Some(ticker) => {
                let mut until = Instant::now() + ticker.for_at_most;
                if let Some(deadline) = deadline {
                    until = until.min(deadline.checked_sub(TICKER_MARGIN).unwrap_or(deadline));
                }
                ticker.run_until(until).await
            }
            None => 0,
        };
        let report = ExpirerReport {
            sweep,
            sockets_closed,
            room_ticks,
        };
        tracing::info!(
            holds_expired = report.sweep.holds_expired,
            requests_expired = report.sweep.requests_expired,
            orders_expired = report.sweep.orders_expired,
            holds_purged = report.sweep.purged.holds,
            requests_purged = report.sweep.purged.requests,
            wound_up = ?report.sweep.wound_up,
            sockets_closed = report.sockets_closed,
            room_ticks = report.room_ticks,
            "swept"
        );
        Ok(report)
    }
}

impl RoomTicker {
    /// Runs the rooms' ticker ([`WaitingRooms::round`]) each `WAITING_ROOM_TICK` until `until`,
    /// or until no room is on; the rounds it ran.
    async fn run_until(&self, until: Instant) -> u64 {
        let mut rounds = 0;
        while Instant::now() < until {
            if !self.rooms.round().await {
                break;
            }
            rounds += 1;
            tokio::time::sleep_until((Instant::now() + WAITING_ROOM_TICK).min(until).into()).await;
        }
        rounds
    }
}
