//! The expirer function: the periodic sweep on a schedule.
//!
//! Correctness never waits for it (an expired hold frees its seats by time in every read and
//! decision); it writes EXPIRED down, ends requests that waited past their deadline, keeps the
//! mirror tidy and tells owners and subscribers, exactly as the local server's sweeper does,
//! finishes the wind-up of recently cancelled shows; a warm instance also removes history past
//! `REQUEST_RETENTION_DAYS` once an hour.

use crate::wiring::{Shared, WiringError};
use booking_app::sweeper::{SweepReport, Sweeper};
use booking_core::ports::StoreError;

/// The expirer function: one sweep per scheduled invocation (the event's content does not
/// matter).
pub async fn serve() -> Result<(), lambda_runtime::Error> {
    let expirer = &*Box::leak(Box::new(Expirer::from_env().await?));
    lambda_runtime::run(lambda_runtime::service_fn(
        move |_event: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
            let report = expirer.handle().await?;
            Ok::<serde_json::Value, lambda_runtime::Error>(serde_json::json!({
                "holdsExpired": report.holds_expired,
                "requestsExpired": report.requests_expired,
                "ordersExpired": report.orders_expired,
                "holdsPurged": report.purged.holds,
                "requestsPurged": report.purged.requests,
                "woundUp": report.wound_up,
            }))
        },
    ))
    .await
}

pub struct Expirer {
    sweeper: Sweeper,
}

impl Expirer {
    pub async fn from_env() -> Result<Self, WiringError> {
        let shared = Shared::from_env().await?;
        // Invoked once a minute: every sweep finishes what cancelled shows still have open.
        let sweeper = shared
            .app()?
            .build()
            .sweeper()
            .with_wind_up_interval(chrono::Duration::zero());
        Ok(Self::new(sweeper))
    }

    pub fn new(sweeper: Sweeper) -> Self {
        Self { sweeper }
    }

    /// One sweep. The scheduled event's content does not matter: any invocation sweeps.
    pub async fn handle(&self) -> Result<SweepReport, StoreError> {
        let report = self.sweeper.sweep_once().await?;
        tracing::info!(
            holds_expired = report.holds_expired,
            requests_expired = report.requests_expired,
            orders_expired = report.orders_expired,
            holds_purged = report.purged.holds,
            requests_purged = report.purged.requests,
            wound_up = ?report.wound_up,
            "swept"
        );
        Ok(report)
    }
}
