//! What every function builds once per process (cold start): the SDK configuration, the
//! PostgreSQL pool, the Redis mirror and counters, the token key where the function verifies
//! tokens, and (where configured) the WebSocket registry and notifier. Invocations reuse them.
//! Each function then takes what it serves from the app's composition root ([`Shared::app`]):
//! the router, the batch processor or the sweeper.
//!
//! The connections are opened side by side, not one after another: a cold start is paid by the
//! request that caused it, and each part is a network round trip or a TLS handshake (PostgreSQL's
//! alone was most of a start measured sequentially), so the start takes as long as the slowest
//! part instead of their sum.

use crate::config::{self, ConfigError, optional, required};
use booking_app::admission::AdmissionKey;
use booking_app::auth::Authenticator;
use booking_app::config::BookingConfig;
use booking_app::show_locks::InProcessShowLocks;
use booking_app::{App, AppBuilder, Stores};
use booking_aws::{DynamoRegistry, GatewayNotifier};
use booking_core::ports::{ConnectionRegistry, MirrorError, Notifier, StoreError};
use booking_postgres::{IntakeMode, PgOptions, PgStore};
use booking_redis::RedisMirror;
use std::sync::Arc;
use std::time::Duration;

/// How long a WebSocket connection is remembered without a refresh (API Gateway closes
/// connections after two hours at most).
const DEFAULT_CONNECTION_TTL_SECONDS: i64 = 2 * 60 * 60;

/// Why a function could not start.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot connect to PostgreSQL")]
    Postgres(#[source] StoreError),
    #[error("cannot connect to Redis")]
    Redis(#[source] MirrorError),
    #[error("cannot load the identity provider's keys")]
    IdentityProvider(#[from] crate::authorizer::KeyFetchError),
}

/// Whether a function verifies bearer tokens itself, and so needs the token key (`JWT_SECRET`,
/// or the secret `JWT_SECRET_ARN`) at cold start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKey {
    /// Fetch it alongside the connections ([`Shared::authenticator`] then uses it).
    Fetch,
    /// The function verifies no tokens (or the gateway's authorizer does).
    NotNeeded,
}

pub struct Shared {
    pub sdk: aws_config::SdkConfig,
    pub store: Arc<PgStore>,
    pub mirror: Arc<RedisMirror>,
    pub booking: BookingConfig,
    /// The bearer tokens' HS256 key, when the function asked for it ([`TokenKey::Fetch`]).
    token_secret: Option<String>,
}

/// Milliseconds since `started`.
fn ms_since(started: std::time::Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}

impl Shared {
    pub async fn from_env(token_key: TokenKey) -> Result<Self, WiringError> {
        let started = std::time::Instant::now();
        let sdk = booking_aws::sdk_config().await;
        let sdk_ms = ms_since(started);
        let booking = BookingConfig::from_env().map_err(ConfigError::from)?;
        let (store, mirror, token_secret) = tokio::try_join!(
            async {
                let store = connect_postgres(&sdk).await?;
                Ok::<_, WiringError>((store, ms_since(started)))
            },
            async {
                let mirror = connect_redis().await?;
                Ok::<_, WiringError>((mirror, ms_since(started)))
            },
            async {
                Ok::<_, WiringError>(match token_key {
                    TokenKey::Fetch => Some((config::jwt_secret(&sdk).await?, ms_since(started))),
                    TokenKey::NotNeeded => None,
                })
            },
        )?;
        // Each part's time is from the start of the cold start, so the slowest is the total.
        tracing::info!(
            sdk_ms,
            postgres_ready_ms = store.1,
            redis_ready_ms = mirror.1,
            token_key_ready_ms = token_secret.as_ref().map(|(_, ms)| *ms),
            total_ms = ms_since(started),
            "cold start: shared clients ready"
        );
        Ok(Self {
            sdk,
            store: Arc::new(store.0),
            mirror: Arc::new(mirror.0),
            booking,
            token_secret: token_secret.map(|(secret, _)| secret),
        })
    }

    /// The app over these clients: PostgreSQL for the stores, Redis as the seat mirror, and the
    /// gateway's notifier when the WebSocket API is configured (otherwise results are polled).
    /// The caller adds what only it needs (the queue, the authenticator) and builds.
    pub fn app(&self) -> Result<AppBuilder, WiringError> {
        // Every function decides under the show's database lock: the worker, and the api
        // function in direct mode (QUEUE_BASED_BOOKING=false), may run at once during a
        // switch-over, and several instances of each always do.
        let mut builder = App::builder(Stores::of(self.store.clone()), self.booking.clone())
            .mirror(self.mirror.clone())
            .rate_limiter(Arc::new(self.mirror.rate_limiter()))
            .show_locks(Arc::new(InProcessShowLocks::in_front_of(
                self.store.clone(),
            )));
        match self.gateway_notifier()? {
            Some(notifier) => {
                let notifier: Arc<dyn Notifier> = notifier;
                builder = builder.notifier(notifier);
            }
            None => tracing::warn!(
                "CONNECTIONS_TABLE / WEBSOCKET_ENDPOINT not set: no WebSocket pushes, polling only"
            ),
        }
        Ok(builder)
    }

    /// The waiting rooms' admission key (`ADMISSION_SECRET`, or the secret
    /// `ADMISSION_SECRET_ARN`), which every function that mints or checks admissions shares;
    /// without one, no room may be switched on (an admission would be honoured only by the
    /// instance that issued it).
    pub async fn with_admission_key(&self, builder: AppBuilder) -> Result<AppBuilder, WiringError> {
        Ok(match config::admission_secret(&self.sdk).await? {
            Some(secret) => {
                let key =
                    AdmissionKey::new(secret.as_bytes()).map_err(|_| ConfigError::Invalid {
                        name: "ADMISSION_SECRET",
                        reason: format!(
                            "must be at least {} bytes",
                            booking_app::admission::MIN_KEY_BYTES
                        ),
                    })?;
                builder.admission_key(key)
            }
            None => {
                tracing::warn!(
                    "no ADMISSION_SECRET or ADMISSION_SECRET_ARN: waiting rooms cannot be switched on (their admissions would only be honoured by the instance that issued them)"
                );
                builder.no_shared_admission_key()
            }
        })
    }

    /// The HS256 key of bearer tokens (fetched at cold start: [`TokenKey::Fetch`]), as an
    /// authenticator with the token rules of the environment (`JWT_ISSUER`, `JWT_AUDIENCE`,
    /// `JWT_MAX_LIFETIME_SECONDS`). A key shorter than 32 bytes is refused. (The development
    /// secret is not refused here: the functions run under cargo-lambda with it; deployed, the
    /// template generates the key in Secrets Manager.)
    pub fn authenticator(&self) -> Result<Authenticator, WiringError> {
        let secret = self
            .token_secret
            .as_deref()
            .ok_or(ConfigError::Missing("JWT_SECRET"))?;
        booking_app::auth::check_secret(secret, false).map_err(ConfigError::from)?;
        let rules = booking_app::auth::TokenRules::from_env().map_err(ConfigError::from)?;
        Ok(Authenticator::hs256_with(secret.as_bytes(), rules))
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
}

/// The PostgreSQL pool, with its first connection open (so a wrong URL or an unreachable
/// database stops the cold start with its cause, not the first request).
async fn connect_postgres(sdk: &aws_config::SdkConfig) -> Result<PgStore, WiringError> {
    let url = config::database_url(sdk).await?;
    // One invocation at a time per instance and many instances: a small pool each, and
    // direct intake (there are no concurrent callers in one instance to group).
    PgStore::connect(
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
    .map_err(WiringError::Postgres)
}

/// The Redis mirror (seat map, counters, rate limits) on one managed connection.
async fn connect_redis() -> Result<RedisMirror, WiringError> {
    let redis_url = required("REDIS_URL")?;
    // ElastiCache's certificates chain to the system's trust store; REDIS_CA_FILE names a
    // private CA's instead.
    let redis_ca = match config::optional("REDIS_CA_FILE") {
        Some(path) => Some(std::fs::read(&path).map_err(|e| ConfigError::Invalid {
            name: "REDIS_CA_FILE",
            reason: format!("{path} cannot be read: {e}"),
        })?),
        None => None,
    };
    RedisMirror::connect_trusting(&redis_url, redis_ca.as_deref())
        .await
        .map_err(WiringError::Redis)
}
