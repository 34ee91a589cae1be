//! The expirer function: the periodic sweep on a schedule.
//!
//! Correctness never waits for it (an expired hold frees its seats by time in every read and
//! decision); it writes EXPIRED down, ends requests that waited past their deadline, keeps the
//! mirror tidy and tells owners and subscribers, exactly as the local server's sweeper does,
//! finishes the wind-up of recently cancelled shows; a warm instance also removes history past
//! `REQUEST_RETENTION_DAYS` once an hour. Where the WebSocket API is configured it also closes
//! the sockets whose token has expired (API Gateway holds them; nothing is pushed to them once
//! the token has expired, and this sweep ends them within a minute).

use crate::wiring::{Shared, TokenKey, WiringError};
use booking_app::sweeper::{SweepReport, Sweeper};
use booking_aws::GatewayNotifier;
use booking_core::Chain;
use booking_core::ports::StoreError;
use std::sync::Arc;

/// How many expired sockets one sweep closes at most (the rest wait a minute): bounded so that
/// the sweep always ends before the next one starts.
const SOCKETS_PER_SWEEP: usize = 2_000;

/// The expirer function: one sweep per scheduled invocation (the event's content does not
/// matter).
pub async fn serve() -> Result<(), lambda_runtime::Error> {
    let expirer = &*Box::leak(Box::new(Expirer::from_env().await?));
    crate::serve_events(lambda_runtime::service_fn(
        move |_event: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
            let report = expirer.handle().await?;
            Ok::<serde_json::Value, lambda_runtime::Error>(serde_json::json!({
                "holdsExpired": report.sweep.holds_expired,
                "requestsExpired": report.sweep.requests_expired,
                "ordersExpired": report.sweep.orders_expired,
                "holdsPurged": report.sweep.purged.holds,
                "requestsPurged": report.sweep.purged.requests,
                "woundUp": report.sweep.wound_up,
                "socketsClosed": report.sockets_closed,
            }))
        },
    ))
    .await
}

pub struct Expirer {
    sweeper: Sweeper,
    sockets: Option<Arc<GatewayNotifier>>,
}

/// What one invocation did.
#[derive(Debug)]
pub struct ExpirerReport {
    pub sweep: SweepReport,
    /// WebSocket connections closed because their token had expired.
    pub sockets_closed: usize,
}

impl Expirer {
    pub async fn from_env() -> Result<Self, WiringError> {
        let shared = Shared::from_env(TokenKey::NotNeeded).await?;
        // Invoked once a minute: every sweep finishes what cancelled shows still have open.
        let sweeper = shared
            .app()?
            .build()
            .sweeper()
            .with_wind_up_interval(chrono::Duration::zero());
        Ok(Self::new(sweeper).closing_sockets(shared.gateway_notifier()?))
    }

    pub fn new(sweeper: Sweeper) -> Self {
        Self {
            sweeper,
            sockets: None,
        }
    }

    /// Also closes the gateway's sockets whose token has expired.
    pub fn closing_sockets(mut self, notifier: Option<Arc<GatewayNotifier>>) -> Self {
        self.sockets = notifier;
        self
    }

    /// One sweep. The scheduled event's content does not matter: any invocation sweeps.
    pub async fn handle(&self) -> Result<ExpirerReport, StoreError> {
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
        let report = ExpirerReport {
            sweep,
            sockets_closed,
        };
        tracing::info!(
            holds_expired = report.sweep.holds_expired,
            requests_expired = report.sweep.requests_expired,
            orders_expired = report.sweep.orders_expired,
            holds_purged = report.sweep.purged.holds,
            requests_purged = report.sweep.purged.requests,
            wound_up = ?report.sweep.wound_up,
            sockets_closed = report.sockets_closed,
            "swept"
        );
        Ok(report)
    }
}
