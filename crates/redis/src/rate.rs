//! Rate-limit buckets in Redis, shared by every process of a deployment: a caller spread over
//! many Lambda instances meets one limit, not one per instance.
//!
//! Each bucket is one key, `rate:<kind>:<who>`, holding the GCRA's theoretical arrival time in µs
//! (see `booking_core::rate`). One script reads and writes it, so concurrent requests of one
//! caller cannot both take the last token, and it measures time by Redis's own clock, so the
//! instances' clocks need not agree. The key expires once the bucket is full again: an idle
//! caller costs no memory.

use super::failed;
use async_trait::async_trait;
use booking_core::ports::{MirrorError, RateLimiter};
use booking_core::rate::{RateRule, RateVerdict};
use redis::Script;
use redis::aio::ConnectionManager;
use std::time::Duration;

/// The GCRA step of `booking_core::rate::gcra`, on Redis's clock. KEYS: the bucket. ARGV: the
/// interval and the tolerance, in µs. Returns 0 when allowed, else the wait in µs.
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
if tat - now > tolerance then
  return tat - now - tolerance
end
local next = tat + interval
redis.call('SET', KEYS[1], string.format('%d', next), 'PX', math.ceil((next - now) / 1000) + 1)
return 0
";

/// The Redis rate limiter; cheap to clone (it shares the mirror's connection).
#[derive(Clone)]
pub struct RedisRateLimiter {
    conn: ConnectionManager,
    acquire: Script,
}

impl RedisRateLimiter {
    pub(crate) fn new(conn: ConnectionManager) -> Self {
        Self {
            conn,
            acquire: Script::new(ACQUIRE),
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn acquire(&self, key: &str, rule: &RateRule) -> Result<RateVerdict, MirrorError> {
        let mut conn = self.conn.clone();
        let wait: u64 = self
            .acquire
            .key(format!("rate:{key}"))
            .arg(rule.interval_micros())
            .arg(rule.tolerance_micros())
            .invoke_async(&mut conn)
            .await
            .map_err(failed("rate limit"))?;
        Ok(match wait {
            0 => RateVerdict::Allowed,
            micros => RateVerdict::Limited {
                retry_after: Duration::from_micros(micros),
            },
        })
    }
}
