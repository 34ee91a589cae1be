//! Business settings read from the environment, shared by every binary.
//!
//! Parsing is strict: a set-but-invalid variable stops start-up with a message naming it, rather
//! than silently falling back to a default in production.

use crate::limits::RateLimits;
use chrono::Duration;
use std::str::FromStr;

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value:?} is invalid: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

/// Reads `name` from the environment, or `default` when it is unset or empty.
pub fn env_or<T: FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|e: T::Err| ConfigError {
            name,
            value: v,
            reason: e.to_string(),
        }),
        _ => Ok(default),
    }
}

fn positive(name: &'static str, v: u64) -> Result<u64, ConfigError> {
    if v == 0 {
        return Err(ConfigError {
            name,
            value: "0".into(),
            reason: "must be at least 1".into(),
        });
    }
    Ok(v)
}

/// The rules of the booking business, as configured.
#[derive(Debug, Clone)]
pub struct BookingConfig {
    /// How long a granted hold keeps its seats (`HOLD_TTL_SECONDS`, default 300).
    pub hold_ttl: Duration,
    /// How long an accepted request may wait to be decided before it ends EXPIRED
    /// (`REQUEST_TTL_SECONDS`, default 120).
    pub request_ttl: Duration,
    /// Most seats one request may ask for (`MAX_SEATS_PER_REQUEST`, default 10).
    pub max_seats_per_request: usize,
    /// Largest accepted request body in bytes (`MAX_BODY_BYTES`, default 16 KiB).
    pub max_body_bytes: usize,
    /// How long an order waits for payment, keeping its seats (`ORDER_PAYMENT_TTL_SECONDS`,
    /// default 600).
    pub order_payment_ttl: Duration,
    /// How long a call to the payment provider may take before it counts as failed
    /// (`PAYMENT_TIMEOUT_SECONDS`, default 10). A charge that started before the payment deadline
    /// keeps the order's seats for twice this plus 30 s, so it can finish.
    pub payment_timeout: Duration,
    /// How long an `Idempotency-Key` and the answer it replays are kept
    /// (`IDEMPOTENCY_TTL_SECONDS`, default 86,400: one day).
    pub idempotency_ttl: Duration,
    /// How many failed tries to decide a request before it is set aside as a dead letter
    /// (`MAX_ATTEMPTS`, default 5). An unreachable store does not count.
    pub max_attempts: u32,
    /// Whether `POST /holds` queues requests for the deciders (`QUEUE_BASED_BOOKING=true`, the
    /// default) or decides each at once, answering 201 or 409 (`false`: the rollback switch).
    pub queue_based: bool,
    /// How long decided requests, holds that ended without an order and dead letters that were
    /// discarded or expired are kept before the sweep removes them (`REQUEST_RETENTION_DAYS`,
    /// default 30). Holds that became orders, and their requests, are kept with the orders.
    pub request_retention: Duration,
    /// Most undecided requests one user may have for one show at a time
    /// (`MAX_OPEN_REQUESTS_PER_USER`, default 3, at most 100): a fan who changes their mind is
    /// never blocked, a script that queues thousands of requests to push everyone else back is
    /// (429 `TOO_MANY_OPEN_REQUESTS`).
    pub max_open_requests_per_user: u32,
    /// How fast one user may write and one address may read (`RATE_LIMIT_*`; see
    /// [`RateLimits`]).
    pub rate_limits: RateLimits,
}

impl Default for BookingConfig {
    fn default() -> Self {
        Self {
            hold_ttl: Duration::seconds(300),
            request_ttl: Duration::seconds(120),
            max_seats_per_request: 10,
            max_body_bytes: 16 * 1024,
            order_payment_ttl: Duration::seconds(600),
            payment_timeout: Duration::seconds(10),
            idempotency_ttl: Duration::seconds(86_400),
            max_attempts: 5,
            queue_based: true,
            request_retention: Duration::days(30),
            max_open_requests_per_user: 3,
            rate_limits: RateLimits::default(),
        }
    }
}

impl BookingConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        Self {
            hold_ttl: Duration::seconds(positive(
                "HOLD_TTL_SECONDS",
                env_or("HOLD_TTL_SECONDS", d.hold_ttl.num_seconds() as u64)?,
            )? as i64),
            request_ttl: Duration::seconds(positive(
                "REQUEST_TTL_SECONDS",
                env_or("REQUEST_TTL_SECONDS", d.request_ttl.num_seconds() as u64)?,
            )? as i64),
            max_seats_per_request: positive(
                "MAX_SEATS_PER_REQUEST",
                env_or("MAX_SEATS_PER_REQUEST", d.max_seats_per_request as u64)?,
            )? as usize,
            max_body_bytes: positive(
                "MAX_BODY_BYTES",
                env_or("MAX_BODY_BYTES", d.max_body_bytes as u64)?,
            )? as usize,
            order_payment_ttl: seconds("ORDER_PAYMENT_TTL_SECONDS", d.order_payment_ttl)?,
            payment_timeout: seconds("PAYMENT_TIMEOUT_SECONDS", d.payment_timeout)?,
            idempotency_ttl: seconds("IDEMPOTENCY_TTL_SECONDS", d.idempotency_ttl)?,
            max_attempts: positive(
                "MAX_ATTEMPTS",
                env_or("MAX_ATTEMPTS", u64::from(d.max_attempts))?,
            )?
            .min(u64::from(u32::MAX)) as u32,
            queue_based: env_or("QUEUE_BASED_BOOKING", d.queue_based)?,
            request_retention: Duration::days(
                positive(
                    "REQUEST_RETENTION_DAYS",
                    env_or(
                        "REQUEST_RETENTION_DAYS",
                        d.request_retention.num_days() as u64,
                    )?,
                )?
                .min(36_500) as i64,
            ),
            max_open_requests_per_user: positive(
                "MAX_OPEN_REQUESTS_PER_USER",
                env_or(
                    "MAX_OPEN_REQUESTS_PER_USER",
                    u64::from(d.max_open_requests_per_user),
                )?,
            )?
            .min(100) as u32,
            rate_limits: RateLimits::from_env()?,
        }
        .checked()
    }

    /// Refuses settings that contradict each other.
    fn checked(self) -> Result<Self, ConfigError> {
        // A key must outlive the lease of an attempt under it, or a retry while the first
        // attempt still runs would start a new use of the key and do the work twice.
        if self.idempotency_ttl < self.payment_window() {
            return Err(ConfigError {
                name: "IDEMPOTENCY_TTL_SECONDS",
                value: self.idempotency_ttl.num_seconds().to_string(),
                reason: format!(
                    "must be at least the payment window (2 × PAYMENT_TIMEOUT_SECONDS + 30 = {} s)",
                    self.payment_window().num_seconds()
                ),
            });
        }
        Ok(self)
    }

    /// How long a charge may be in flight, from its start to its outcome being recorded: the
    /// provider's time and a margin for the two store writes around it. Seats of an order with a
    /// charge in flight stay claimed this long; a PENDING payment older than this was abandoned
    /// by its caller and is settled by recovery.
    pub fn payment_window(&self) -> Duration {
        self.payment_timeout * 2 + Duration::seconds(30)
    }
}

/// A positive number of seconds from `name`, or `default`.
fn seconds(name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    Ok(Duration::seconds(
        positive(name, env_or(name, default.num_seconds() as u64)?)? as i64,
    ))
}
