//! The local server's configuration, read from the environment once at start.
//!
//! Parsing is strict: a set-but-invalid variable (not a number, not a known value) stops start-up
//! with a message naming it; only `MAX_BATCH` and `SWEEP_INTERVAL_MS` are brought into range
//! instead. The business rules shared with the Lambda functions are read by `BookingConfig`.

use axum::http::HeaderValue;
use booking_app::BookingConfig;
use booking_app::auth::{DEV_JWT_SECRET, TokenRules, check_secret};
use booking_app::config::{ConfigError, env_or};
use booking_local::http::HttpLimits;
use booking_local::hub::SocketLimits;
use booking_sqlite::Synchronous;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything `seatbook serve` is told by its environment.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `BIND`: where the HTTP API and WebSocket listen.
    pub bind: SocketAddr,
    /// `DATA_DIR`: where the embedded store's file and the mock payment ledger live.
    pub data_dir: PathBuf,
    /// `SQLITE_SYNCHRONOUS`: how hard the embedded store insists on reaching the disk.
    pub synchronous: Synchronous,
    /// `DATABASE_URL`: PostgreSQL instead of the embedded store.
    pub database_url: Option<String>,
    /// `REDIS_URL`: Redis as the seat mirror instead of process memory.
    pub redis_url: Option<String>,
    /// `REDIS_CA_FILE`: PEM certificates of the CA that signed a `rediss://` server's certificate,
    /// trusted instead of the system's store (for a private CA).
    pub redis_ca: Option<Vec<u8>>,
    /// `JWT_SECRET`, or the development secret when unset (on loopback only).
    pub jwt_secret: String,
    pub dev_secret: bool,
    /// `JWT_ISSUER`, `JWT_AUDIENCE`, `JWT_MAX_LIFETIME_SECONDS`.
    pub token_rules: TokenRules,
    /// `ADMISSION_SECRET`: the key of the waiting rooms' admission tokens (at least 32 bytes).
    /// Unset: a random key kept in `DATA_DIR/admission.key`, made at the first start, so that
    /// tokens outlive a restart.
    pub admission_secret: Option<String>,
    /// `MAX_BATCH`: most requests a lane decides in one batch.
    pub max_batch: usize,
    /// `SWEEP_INTERVAL_MS`: how often expired holds and requests are written down.
    pub sweep_interval: Duration,
    /// `SHUTDOWN_GRACE_SECONDS`: how long a stop may take to finish what was accepted.
    pub shutdown_grace: Duration,
    /// `MAX_SOCKETS_PER_USER`, `MAX_SOCKETS`: the WebSocket connections the server holds;
    /// `WS_PING_INTERVAL_SECONDS`: how often each is pinged.
    pub socket_limits: SocketLimits,
    /// `LOCAL_MANAGEMENT_API`: serve API Gateway's `/@connections` for the local sockets
    /// (loopback callers only), to run the Lambda functions against this server.
    pub local_management_api: bool,
    /// `HTTP_HEADER_TIMEOUT_SECONDS`, `HTTP_BODY_TIMEOUT_SECONDS`, `MAX_CONCURRENT_REQUESTS`,
    /// `CORS_ALLOWED_ORIGINS`: the HTTP transport's defences.
    pub http: HttpLimits,
    pub booking: BookingConfig,
    /// `FAULT_DELIVER_TWICE=true`: fault injection for tests and the load tool; every decided
    /// batch is delivered to the decider a second time (see [`booking_local::LaneOptions`]).
    pub deliver_twice: bool,
    /// `PAGE_DIR`: serve the page's files from this directory (read on every request) instead of
    /// the copies built into the binary; for editing the page without rebuilding.
    pub page_dir: Option<PathBuf>,
}

impl ServerConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let (jwt_secret, dev_secret) = jwt_secret();
        // Out-of-range values are brought into range rather than refused: a batch of at least
        // one request, a sweep at most every 10 ms.
        let max_batch: usize = env_or("MAX_BATCH", 512usize)?.max(1);
        let sweep_ms: u64 = env_or("SWEEP_INTERVAL_MS", 1000u64)?.max(10);
        let synchronous = match env_or("SQLITE_SYNCHRONOUS", "full".to_owned())?.as_str() {
            "full" => Synchronous::Full,
            "normal" => Synchronous::Normal,
            other => return Err(invalid("SQLITE_SYNCHRONOUS", other, "use full or normal")),
        };
        let bind: SocketAddr = env_or("BIND", SocketAddr::from(([127, 0, 0, 1], 3000)))?;
        // Anyone who can reach a non-loopback address could mint tokens with a public secret.
        check_secret(&jwt_secret, !bind.ip().is_loopback())?;
        let local_management_api: bool = env_or("LOCAL_MANAGEMENT_API", false)?;
        if local_management_api && !bind.ip().is_loopback() {
            return Err(invalid(
                "LOCAL_MANAGEMENT_API",
                "true",
                "the management API lets any caller push to any socket: only with a loopback BIND",
            ));
        }
        let booking = BookingConfig::from_env()?;
        let admission_secret = non_empty("ADMISSION_SECRET");
        if let Some(secret) = &admission_secret
            && secret.len() < booking_app::admission::MIN_KEY_BYTES
        {
            return Err(invalid(
                "ADMISSION_SECRET",
                "<secret>",
                &format!(
                    "must be at least {} bytes",
                    booking_app::admission::MIN_KEY_BYTES
                ),
            ));
        }
        Ok(Self {
            admission_secret,
            bind,
            data_dir: env_or("DATA_DIR", PathBuf::from("data"))?,
            synchronous,
            database_url: non_empty("DATABASE_URL"),
            redis_url: non_empty("REDIS_URL"),
            redis_ca: match non_empty("REDIS_CA_FILE") {
                Some(path) => Some(std::fs::read(&path).map_err(|e| {
                    invalid("REDIS_CA_FILE", &path, &format!("cannot be read: {e}"))
                })?),
                None => None,
            },
            jwt_secret,
            dev_secret,
            token_rules: TokenRules::from_env()?,
            max_batch,
            deliver_twice: env_or("FAULT_DELIVER_TWICE", false)?,
            page_dir: non_empty("PAGE_DIR").map(PathBuf::from),
            sweep_interval: Duration::from_millis(sweep_ms),
            shutdown_grace: Duration::from_secs(env_or("SHUTDOWN_GRACE_SECONDS", 10u64)?),
            local_management_api,
            socket_limits: SocketLimits {
                per_user: env_or("MAX_SOCKETS_PER_USER", SocketLimits::default().per_user)?.max(1),
                total: env_or("MAX_SOCKETS", SocketLimits::default().total)?.max(1),
                ping_interval: Duration::from_secs(
                    env_or(
                        "WS_PING_INTERVAL_SECONDS",
                        SocketLimits::default().ping_interval.as_secs(),
                    )?
                    .max(1),
                ),
            },
            http: http_limits(booking.max_body_bytes)?,
            booking,
        })
    }
}

fn http_limits(max_body_bytes: usize) -> Result<HttpLimits, ConfigError> {
    let d = HttpLimits::default();
    let seconds = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(env_or(name, default.as_secs())?.max(1)))
    };
    Ok(HttpLimits {
        header_read_timeout: seconds("HTTP_HEADER_TIMEOUT_SECONDS", d.header_read_timeout)?,
        body_read_timeout: seconds("HTTP_BODY_TIMEOUT_SECONDS", d.body_read_timeout)?,
        max_concurrent_requests: env_or("MAX_CONCURRENT_REQUESTS", d.max_concurrent_requests)?
            .max(1),
        max_body_bytes,
        cors_allowed_origins: cors_origins()?,
    })
}

/// `CORS_ALLOWED_ORIGINS`: comma-separated origins (`https://tickets.example.com`). `*` is
/// refused: an allow-list names who may call.
fn cors_origins() -> Result<Vec<HeaderValue>, ConfigError> {
    let Some(list) = non_empty("CORS_ALLOWED_ORIGINS") else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|origin| {
            let well_formed = (origin.starts_with("https://") || origin.starts_with("http://"))
                && !origin.trim_end_matches('/').contains(['*', ' ', '?', '#'])
                && origin
                    .split("://")
                    .nth(1)
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
            if !well_formed {
                return Err(invalid(
                    "CORS_ALLOWED_ORIGINS",
                    &list,
                    "list origins as scheme://host[:port], comma-separated (no `*`, no path)",
                ));
            }
            HeaderValue::from_str(origin)
                .map_err(|_| invalid("CORS_ALLOWED_ORIGINS", &list, "not a valid origin"))
        })
        .collect()
}

fn invalid(name: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError {
        name,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

fn non_empty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// How the server writes its logs (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

/// `LOG_FORMAT=json|text`; unset: text on a terminal, JSON otherwise (a service manager or a
/// container collecting the output wants lines it can parse).
pub fn log_format() -> Result<LogFormat, ConfigError> {
    match non_empty("LOG_FORMAT").as_deref() {
        Some("json") => Ok(LogFormat::Json),
        Some("text") => Ok(LogFormat::Text),
        Some(other) => Err(invalid("LOG_FORMAT", other, "use json or text")),
        None if std::io::IsTerminal::is_terminal(&std::io::stdout()) => Ok(LogFormat::Text),
        None => Ok(LogFormat::Json),
    }
}

/// The secret and whether it is the development default.
pub fn jwt_secret() -> (String, bool) {
    match non_empty("JWT_SECRET") {
        Some(secret) => (secret, false),
        None => (DEV_JWT_SECRET.to_owned(), true),
    }
}

/// A connection URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
