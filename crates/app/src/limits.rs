//! Rate limits: how fast one user may ask for seats, orders and payments, and one address may read
//! the catalog.
//!
//! The flash crowd's worst member is not a fan but a script: it asks for seats thousands of times a
//! second, queues itself ahead of everyone, and tries payment tokens by the hundred. A token bucket
//! per user and kind of write stops it while a fan clicking fast never notices (the defaults allow
//! a burst of ten holds, then one a second). Reads anyone may make are bucketed per client address
//! instead (an IPv6 caller by its /64, which one subscriber usually has whole).
//!
//! The buckets live in Redis where Redis is configured, so every Lambda instance and every local
//! process shares them; otherwise in this process's memory ([`MemoryRateLimiter`]). A limiter that
//! does not answer lets the request through: the limits protect the sale, and an outage of
//! Redis must not stop it (the per-user cap on open requests, kept in the store, still holds).

use crate::config::ConfigError;
use crate::error::ApiError;
use async_trait::async_trait;
use axum::http::StatusCode;
use booking_core::Chain;
use booking_core::ports::{MirrorError, RateLimiter};
use booking_core::rate::{RateRule, RateSetting, RateVerdict, gcra, parse_setting};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a bucket is for. Each kind has its own rule and its own buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// `POST /holds`, per user.
    Holds,
    /// `POST /orders`, per user.
    Orders,
    /// Confirming and cancelling orders (the routes that move money), per user.
    Payments,
    /// Routes anyone may call (the catalog, the seat map), per client address.
    Anonymous,
    /// Joining a waiting room, per user.
    Joins,
    /// Joining a waiting room, per client address: against one machine farming places with
    /// many accounts.
    JoinsPerAddress,
}

impl LimitKind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Holds => "holds",
            Self::Orders => "orders",
            Self::Payments => "payments",
            Self::Anonymous => "ip",
            Self::Joins => "joins",
            Self::JoinsPerAddress => "joins-ip",
        }
    }
}

/// The configured rules (`off` switches a kind off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// `RATE_LIMIT_HOLDS`, default `60/min,burst=10`.
    pub holds: RateSetting,
    /// `RATE_LIMIT_ORDERS`, default `30/min,burst=5`.
    pub orders: RateSetting,
    /// `RATE_LIMIT_PAYMENTS`, default `30/min,burst=5`.
    pub payments: RateSetting,
    /// `RATE_LIMIT_PER_IP`, default `50/s,burst=200`: generous, because a whole campus or a
    /// mobile carrier's NAT can share one address.
    pub anonymous: RateSetting,
    /// `RATE_LIMIT_JOINS`, default `10/min,burst=5`: a user needs one place per show.
    pub joins: RateSetting,
    /// `RATE_LIMIT_JOINS_PER_IP`, default `300/min,burst=100`: a campus behind one address
    /// joins a premiere at once; a farm of accounts on one machine does not get far.
    pub joins_per_address: RateSetting,
}

impl Default for RateLimits {
    fn default() -> Self {
        let per_minute = |n, burst| Some(RateRule::new(n, Duration::from_secs(60), burst));
        Self {
            holds: per_minute(60, 10),
            orders: per_minute(30, 5),
            payments: per_minute(30, 5),
            anonymous: Some(RateRule::new(50, Duration::from_secs(1), 200)),
            joins: per_minute(10, 5),
            joins_per_address: per_minute(300, 100),
        }
    }
}

impl RateLimits {
    /// No limit at all: for tests and measurements that are about something else.
    pub const OFF: Self = Self {
        holds: None,
        orders: None,
        payments: None,
        anonymous: None,
        joins: None,
        joins_per_address: None,
    };

    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            holds: setting("RATE_LIMIT_HOLDS", d.holds)?,
            orders: setting("RATE_LIMIT_ORDERS", d.orders)?,
            payments: setting("RATE_LIMIT_PAYMENTS", d.payments)?,
            anonymous: setting("RATE_LIMIT_PER_IP", d.anonymous)?,
            joins: setting("RATE_LIMIT_JOINS", d.joins)?,
            joins_per_address: setting("RATE_LIMIT_JOINS_PER_IP", d.joins_per_address)?,
        })
    }

    pub fn rule(&self, kind: LimitKind) -> RateSetting {
        match kind {
            LimitKind::Holds => self.holds,
            LimitKind::Orders => self.orders,
            LimitKind::Payments => self.payments,
            LimitKind::Anonymous => self.anonymous,
            LimitKind::Joins => self.joins,
            LimitKind::JoinsPerAddress => self.joins_per_address,
        }
    }
}

fn setting(name: &'static str, default: RateSetting) -> Result<RateSetting, ConfigError> {
    let Ok(value) = std::env::var(name) else {
        return Ok(default);
    };
    if value.trim().is_empty() {
        return Ok(default);
    }
    parse_setting(&value).map_err(|e| ConfigError {
        name,
        value,
        reason: e.to_string(),
    })
}

/// The rules and the buckets they are kept in.
pub struct Limits {
    rules: RateLimits,
    limiter: Arc<dyn RateLimiter>,
}

impl Limits {
    pub fn new(rules: RateLimits, limiter: Arc<dyn RateLimiter>) -> Self {
        Self { rules, limiter }
    }

    pub fn rules(&self) -> &RateLimits {
        &self.rules
    }

    /// Takes one request of `kind` from `who`'s bucket: `Ok` to go on, 429 `RATE_LIMITED` with
    /// `Retry-After` when over the rule.
    pub async fn check(&self, kind: LimitKind, who: &str) -> Result<(), ApiError> {
        let Some(rule) = self.rules.rule(kind) else {
            return Ok(());
        };
        let key = format!("{}:{who}", kind.prefix());
        match self.limiter.acquire(&key, &rule).await {
            Ok(RateVerdict::Allowed) => Ok(()),
            Ok(RateVerdict::Limited { retry_after }) => {
                crate::metrics::rate_limited(kind.prefix());
                Err(rate_limited(retry_after))
            }
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "rate limiter unavailable; letting the request through");
                Ok(())
            }
        }
    }

    /// [`Limits::check`] for a caller known only by address.
    pub async fn check_address(&self, address: IpAddr) -> Result<(), ApiError> {
        self.check(LimitKind::Anonymous, &bucket_of(address)).await
    }

    /// [`Limits::check`] of a waiting-room join: the user's bucket, then their address's.
    pub async fn check_join(&self, user: &str, address: Option<IpAddr>) -> Result<(), ApiError> {
        self.check(LimitKind::Joins, user).await?;
        match address {
            Some(address) => {
                self.check(LimitKind::JoinsPerAddress, &bucket_of(address))
                    .await
            }
            None => Ok(()),
        }
    }
}

/// The 429 of a caller over its rule. `Retry-After` is whole seconds, rounded up (never 0: a
/// client told "retry after 0" retries at once).
fn rate_limited(retry_after: Duration) -> ApiError {
    let seconds = retry_after
        .as_secs()
        .saturating_add(u64::from(retry_after.subsec_nanos() > 0))
        .clamp(1, u64::from(u16::MAX));
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        format!("Too many requests; retry in {seconds} s"),
    );
    e.retry_after = Some(seconds as u16);
    e
}

/// The bucket an address counts against: itself for IPv4, its /64 for IPv6 (an IPv4 address
/// mapped into IPv6 counts as itself).
pub fn bucket_of(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The client address of a request, put into its extensions by the process that serves the
/// router (the local server from the socket, the api function from API Gateway's request
/// context). Without one, the per-address limit does not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

/// Buckets in this process's memory: for a single process (the local server without Redis), and
/// as the fallback of a Lambda instance without Redis (then each instance limits on its own).
pub struct MemoryRateLimiter {
    buckets: Mutex<Buckets>,
}

struct Buckets {
    tats: HashMap<String, u64>,
    /// Size at which the map is next pruned of full buckets (those whose TAT has passed: they
    /// say nothing a missing key does not).
    prune_at: usize,
}

const FIRST_PRUNE: usize = 4096;

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRateLimiter {
    pub fn new() -> Self {
        Self {
            buckets: Mutex::new(Buckets {
                tats: HashMap::new(),
                prune_at: FIRST_PRUNE,
            }),
        }
    }

    /// How many buckets are kept (full ones are dropped as the map grows).
    pub fn len(&self) -> usize {
        self.buckets.lock().expect("buckets poisoned").tats.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn acquire(&self, key: &str, rule: &RateRule) -> Result<RateVerdict, MirrorError> {
        let now = now_micros();
        let mut buckets = self.buckets.lock().expect("buckets poisoned");
        let (verdict, next) = gcra(buckets.tats.get(key).copied(), now, rule);
        if let Some(next) = next {
            buckets.tats.insert(key.to_owned(), next);
            if buckets.tats.len() >= buckets.prune_at {
                buckets.tats.retain(|_, tat| *tat > now);
                // Double the threshold over what is live, so pruning stays amortised O(1).
                buckets.prune_at = (buckets.tats.len() * 2).max(FIRST_PRUNE);
            }
        }
        Ok(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_callers_share_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(bucket_of(a), bucket_of(b));
        assert_ne!(bucket_of(a), bucket_of(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(bucket_of(mapped), "192.0.2.7");
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(rate_limited(Duration::from_millis(1)).retry_after, Some(1));
        assert_eq!(
            rate_limited(Duration::from_millis(1500)).retry_after,
            Some(2)
        );
        assert_eq!(rate_limited(Duration::from_secs(3)).retry_after, Some(3));
    }

    #[tokio::test]
    async fn full_buckets_are_pruned_as_the_map_grows() {
        let limiter = MemoryRateLimiter::new();
        // A fast rule: every bucket is full again within a millisecond.
        let rule = RateRule::new(1000, Duration::from_millis(1), 1);
        for n in 0..FIRST_PRUNE * 3 {
            limiter.acquire(&format!("k{n}"), &rule).await.unwrap();
            if n % 1024 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        assert!(
            limiter.len() < FIRST_PRUNE * 2,
            "{} buckets kept",
            limiter.len()
        );
    }

    #[tokio::test]
    async fn an_unanswering_limiter_lets_requests_through() {
        struct Down;
        #[async_trait]
        impl RateLimiter for Down {
            async fn acquire(&self, _: &str, _: &RateRule) -> Result<RateVerdict, MirrorError> {
                Err(MirrorError::unavailable("down"))
            }
        }
        let limits = Limits::new(RateLimits::default(), Arc::new(Down));
        for _ in 0..100 {
            limits.check(LimitKind::Holds, "u").await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_kind_switched_off_is_never_limited() {
        let limits = Limits::new(
            RateLimits {
                holds: None,
                ..RateLimits::default()
            },
            Arc::new(MemoryRateLimiter::new()),
        );
        for _ in 0..100 {
            limits.check(LimitKind::Holds, "u").await.unwrap();
        }
        let mut refused = 0;
        for _ in 0..100 {
            refused += usize::from(limits.check(LimitKind::Orders, "u").await.is_err());
        }
        assert_eq!(refused, 95, "orders keep their burst of 5");
    }
}
