//! Builds what every function shares, once per process (cold start): the SDK configuration, the
//! PostgreSQL pool, the Redis mirror and counters, and (where configured) the WebSocket
//! registry and notifier. Invocations reuse them.

use crate::config::{self, ConfigError, optional, required};
use booking_app::config::BookingConfig;
use booking_aws::{DynamoRegistry, GatewayNotifier};
use booking_core::ports::{ConnectionRegistry, Notifier};
use booking_core::protocol::BookingResult;
use booking_core::{Clock, SeatChange, ShowId, SystemClock, UserId};
use booking_postgres::{IntakeMode, PgOptions, PgStore};
use booking_redis::RedisMirror;
use std::sync::Arc;
use std::time::Duration;

/// How long a WebSocket connection is remembered without a refresh (API Gateway closes
/// connections after two hours at most).
const DEFAULT_CONNECTION_TTL_SECONDS: i64 = 2 * 60 * 60;

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Service(String),
}

pub struct Shared {
    pub sdk: aws_config::SdkConfig,
    pub store: Arc<PgStore>,
    pub mirror: Arc<RedisMirror>,
    pub clock: Arc<dyn Clock>,
    pub booking: BookingConfig,
}

impl Shared {
    pub async fn from_env() -> Result<Self, WiringError> {
        let started = std::time::Instant::now();
        let sdk = booking_aws::sdk_config().await;
        let sdk_ms = started.elapsed().as_secs_f64() * 1e3;
        let booking = BookingConfig::from_env().map_err(|e| WiringError::Service(e.to_string()))?;
        let url = config::database_url(&sdk).await?;
        // One invocation at a time per instance and many instances: a small pool each, and
        // direct intake (there are no concurrent callers in one instance to group).
        let store = PgStore::connect(
            &url,
            PgOptions {
                max_connections: 3,
                acquire_timeout: Duration::from_secs(5),
                idle_timeout: Some(Duration::from_secs(300)),
                intake: IntakeMode::Direct,
                application_name: "seatbook-lambda".to_owned(),
                ..PgOptions::default()
            },
        )
        .await
        .map_err(|e| WiringError::Service(format!("PostgreSQL: {e}")))?;
        let postgres_ms = started.elapsed().as_secs_f64() * 1e3 - sdk_ms;
        let redis_url = required("REDIS_URL")?;
        let mirror = RedisMirror::connect(&redis_url)
            .await
            .map_err(|e| WiringError::Service(format!("Redis: {e}")))?;
        tracing::info!(
            sdk_ms,
            postgres_ms,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "cold start: shared clients ready"
        );
        Ok(Self {
            sdk,
            store: Arc::new(store),
            mirror: Arc::new(mirror),
            clock: Arc::new(SystemClock),
            booking,
        })
    }

    /// The connection registry, if `CONNECTIONS_TABLE` is set.
    pub fn registry(&self) -> Result<Option<Arc<DynamoRegistry>>, WiringError> {
        let Some(table) = optional("CONNECTIONS_TABLE") else {
            return Ok(None);
        };
        let ttl = match optional("CONNECTION_TTL_SECONDS") {
            Some(v) => v.parse().map_err(|_| ConfigError::Invalid {
                name: "CONNECTION_TTL_SECONDS",
                reason: format!("{v:?} is not a number of seconds"),
            })?,
            None => DEFAULT_CONNECTION_TTL_SECONDS,
        };
        Ok(Some(Arc::new(DynamoRegistry::new(
            aws_sdk_dynamodb::Client::new(&self.sdk),
            table,
            ttl,
        ))))
    }

    /// The WebSocket notifier (registry + management API at `WEBSOCKET_ENDPOINT`), if both are
    /// configured.
    pub fn gateway_notifier(&self) -> Result<Option<Arc<GatewayNotifier>>, WiringError> {
        let (Some(registry), Some(endpoint)) = (self.registry()?, optional("WEBSOCKET_ENDPOINT"))
        else {
            return Ok(None);
        };
        let registry: Arc<dyn ConnectionRegistry> = registry;
        Ok(Some(Arc::new(GatewayNotifier::new(
            booking_aws::management_client(&self.sdk, &endpoint),
            registry,
        ))))
    }

    /// The notifier to use: the gateway's if configured, otherwise one that only logs (the
    /// results are still there to poll).
    pub fn notifier(&self) -> Result<Arc<dyn Notifier>, WiringError> {
        Ok(match self.gateway_notifier()? {
            Some(n) => n,
            None => {
                tracing::warn!(
                    "CONNECTIONS_TABLE / WEBSOCKET_ENDPOINT not set: no WebSocket pushes, polling only"
                );
                Arc::new(PollingOnly)
            }
        })
    }
}

/// A notifier for deployments without WebSockets.
pub struct PollingOnly;

#[async_trait::async_trait]
impl Notifier for PollingOnly {
    async fn booking_results(&self, results: &[(UserId, BookingResult)]) {
        tracing::debug!(count = results.len(), "results ready to poll");
    }
    async fn seats_changed(&self, _show: ShowId, _changes: &[SeatChange]) {}
}
