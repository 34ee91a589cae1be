//! Redis adapters: the seat-lock mirror, the per-show queue counters and the rate-limit buckets.
//!
//! Redis never decides who gets a seat; PostgreSQL's claims do. What Redis adds is speed: the
//! seat map of a hot show is one round trip (`MGET` of its seat keys) instead of a database
//! query, and queue positions can be counted where SQS cannot. Everything here may vanish at any
//! moment (flush, failover, outage): readers then fall back to the store and the mirror is rebuilt,
//! so nothing is lost and nothing is double-held.
//!
//! Keys carry the show id as a hash tag (`{…}`) so that one show's keys share a cluster slot and
//! every multi-key script stays on one shard:
//! - `seat_lock:{show}:A12` = `HELD|<holdId>|<expiresAtMillis>|<userId>`, expiring at the hold's
//!   expiry (`PXAT`); readers also compare the expiry with their own clock, so clock skew between
//!   Redis and the application never shows an expired hold as held;
//! - `seat_mirror:{show}:complete`: present while the mirror is known to hold every lock of the
//!   show; it lives `COMPLETE_TTL` so that even a missed update heals on the next rebuild;
//! - `queue:{show}:tickets`, `queue:{show}:decided`: arrival and decision counters;
//! - `queue:{show}:ticket:<requestId>`: the ticket a request took, kept while the request may
//!   still wait, so a retried enqueue gets its own ticket back instead of counting twice;
//! - `rate:<kind>:<who>`: a rate-limit bucket (not per show, so no hash tag; see
//!   [`RedisRateLimiter`]).

// Unit tests are built with every dev-dependency of the package; each uses only some.
#![cfg_attr(test, allow(unused_crate_dependencies))]

mod rate;

pub use rate::RedisRateLimiter;

use async_trait::async_trait;
use booking_core::ports::{MirrorError, QueueCounters, SeatLock, SeatMirror};
use booking_core::{HoldId, RequestId, SeatId, SeatStatus, ShowId, UserId};
use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use std::time::Duration;

/// How long a rebuilt mirror is trusted without a rebuild: bounds how stale the seat map can be
/// after an update was lost in an outage.
pub const COMPLETE_TTL: Duration = Duration::from_secs(30);

/// Bumps the show's generation, removes freed seats that still name the freed hold, then sets
/// the new locks. KEYS: the generation, the freed seat keys, then the lock keys. ARGV: the number
/// of freed keys, the freed holds' ids (one per freed key), then a value and a PXAT per lock key.
const APPLY: &str = r"
redis.call('INCR', KEYS[1])
local freed = tonumber(ARGV[1])
for i = 1, freed do
  local v = redis.call('GET', KEYS[1 + i])
  if v and string.match(v, '^[^|]*|([^|]*)|') == ARGV[1 + i] then
    redis.call('DEL', KEYS[1 + i])
  end
end
local a = freed + 2
for i = freed + 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[a], 'PXAT', ARGV[a + 1])
  a = a + 2
end
return #KEYS
";

/// The request's ticket: the one it took before, or the next one of its show. KEYS: the show's
/// ticket counter, the request's ticket. ARGV: when the request's ticket may be forgotten (unix
/// ms).
const TAKE_TICKET: &str = r"
local held = redis.call('GET', KEYS[2])
if held then
  return tonumber(held)
end
local ticket = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], ticket, 'PXAT', ARGV[1])
return ticket
";

/// Replaces a show's mirror unless an apply came after the rebuilder read the generation.
/// KEYS: the generation, the completeness mark, then every seat key of the layout. ARGV: the
/// generation read, the mark's lifetime in ms, then (key index, value, PXAT) per live lock.
const REBUILD: &str = r"
if tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[1]) then
  return 0
end
for i = 3, #KEYS do
  redis.call('DEL', KEYS[i])
end
for a = 3, #ARGV, 3 do
  redis.call('SET', KEYS[tonumber(ARGV[a])], ARGV[a + 1], 'PXAT', ARGV[a + 2])
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return 1
";

/// Maps a Redis failure to the port's error, naming the operation and keeping the cause.
fn failed(operation: &'static str) -> impl FnOnce(redis::RedisError) -> MirrorError {
    move |e| MirrorError::unavailable(format!("Redis {operation}")).caused_by(e)
}

pub fn seat_key(show: ShowId, seat: SeatId) -> String {
    format!("seat_lock:{{{show}}}:{seat}")
}

fn complete_key(show: ShowId) -> String {
    format!("seat_mirror:{{{show}}}:complete")
}

fn generation_key(show: ShowId) -> String {
    format!("seat_mirror:{{{show}}}:generation")
}

fn tickets_key(show: ShowId) -> String {
    format!("queue:{{{show}}}:tickets")
}

fn request_ticket_key(show: ShowId, request: RequestId) -> String {
    format!("queue:{{{show}}}:ticket:{request}")
}

fn decided_key(show: ShowId) -> String {
    format!("queue:{{{show}}}:decided")
}

fn lock_value(lock: &SeatLock) -> String {
    let kind = if lock.status == SeatStatus::Booked {
        "BOOKED"
    } else {
        "HELD"
    };
    format!(
        "{kind}|{}|{}|{}",
        lock.hold_id,
        lock.expires_at.timestamp_millis(),
        lock.user_id
    )
}

/// Parses a lock value; `None` for anything malformed (treated as absent: the store decides).
fn parse_value(value: &str) -> Option<(SeatStatus, HoldId, i64, UserId)> {
    let mut parts = value.splitn(4, '|');
    let status = match parts.next()? {
        "HELD" => SeatStatus::Held,
        "BOOKED" => SeatStatus::Booked,
        _ => return None,
    };
    let hold = parts.next()?.parse().ok()?;
    let expires = parts.next()?.parse().ok()?;
    let user = parts.next()?.parse().ok()?;
    Some((status, hold, expires, user))
}

/// The Redis adapter; cheap to clone (the connection manager multiplexes and reconnects).
#[derive(Clone)]
pub struct RedisMirror {
    conn: ConnectionManager,
    apply: Script,
    rebuild: Script,
    take_ticket: Script,
}

impl RedisMirror {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`). Commands time out quickly so that an
    /// outage degrades reads to the store instead of stalling them. A `rediss://` URL is TLS,
    /// verified against the system's trust store (ElastiCache's certificates chain to it) and the
    /// host name in the URL.
    pub async fn connect(url: &str) -> Result<Self, MirrorError> {
        Self::connect_trusting(url, None).await
    }

    /// [`RedisMirror::connect`], trusting only the CA certificates in `ca_pem` (PEM) for a
    /// `rediss://` URL instead of the system's trust store: for a server whose certificate a
    /// private CA signed.
    pub async fn connect_trusting(url: &str, ca_pem: Option<&[u8]>) -> Result<Self, MirrorError> {
        let client = match ca_pem {
            Some(ca) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.to_vec()),
                },
            ),
            None => redis::Client::open(url),
        }
        .map_err(failed("connect"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1);
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(failed("connect"))?;
        Ok(Self {
            conn,
            apply: Script::new(APPLY),
            rebuild: Script::new(REBUILD),
            take_ticket: Script::new(TAKE_TICKET),
        })
    }

    /// Rate-limit buckets on the same connection.
    pub fn rate_limiter(&self) -> RedisRateLimiter {
        RedisRateLimiter::new(self.conn.clone())
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), MirrorError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(failed("ping"))
    }
}

#[async_trait]
impl SeatMirror for RedisMirror {
    #[tracing::instrument(skip_all, fields(show_id = %show, locks = locks.len(), freed = freed.len()))]
    async fn apply(
        &self,
        show: ShowId,
        locks: &[SeatLock],
        freed: &[(SeatId, HoldId)],
    ) -> Result<(), MirrorError> {
        // A lock that has already run out is simply not written (PXAT in the past is refused).
        let now = Utc::now().timestamp_millis();
        let live: Vec<&SeatLock> = locks
            .iter()
            .filter(|l| l.expires_at.timestamp_millis() > now)
            .collect();
        if live.is_empty() && freed.is_empty() {
            return Ok(());
        }
        let mut invocation = self.apply.prepare_invoke();
        invocation.key(generation_key(show)).arg(freed.len());
        for (seat, hold) in freed {
            invocation.key(seat_key(show, *seat)).arg(hold.to_string());
        }
        for lock in &live {
            invocation
                .key(seat_key(show, lock.seat_id))
                .arg(lock_value(lock))
                .arg(lock.expires_at.timestamp_millis());
        }
        let mut conn = self.conn.clone();
        invocation
            .invoke_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(failed("apply"))
    }

    #[tracing::instrument(skip_all, fields(show_id = %show))]
    async fn taken_seats(
        &self,
        show: ShowId,
        layout: &[SeatId],
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<(SeatId, SeatStatus)>>, MirrorError> {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = layout.iter().map(|s| seat_key(show, *s)).collect();
        let mut pipe = redis::pipe();
        pipe.exists(complete_key(show));
        if !keys.is_empty() {
            pipe.mget(&keys);
        }
        let (complete, values): (bool, Vec<Option<String>>) = if keys.is_empty() {
            let (c,): (bool,) = pipe
                .query_async(&mut conn)
                .await
                .map_err(failed("taken_seats"))?;
            (c, Vec::new())
        } else {
            pipe.query_async(&mut conn)
                .await
                .map_err(failed("taken_seats"))?
        };
        if !complete {
            return Ok(None);
        }
        let now = now.timestamp_millis();
        Ok(Some(
            layout
                .iter()
                .zip(values)
                .filter_map(|(seat, value)| {
                    let (status, _, expires, _) = parse_value(value.as_deref()?)?;
                    (expires > now).then_some((*seat, status))
                })
                .collect(),
        ))
    }

    async fn generation(&self, show: ShowId) -> Result<u64, MirrorError> {
        let mut conn = self.conn.clone();
        conn.get::<_, Option<u64>>(generation_key(show))
            .await
            .map(|g| g.unwrap_or(0))
            .map_err(failed("generation"))
    }

    #[tracing::instrument(skip_all, fields(show_id = %show, locks = locks.len()))]
    async fn rebuild(
        &self,
        show: ShowId,
        layout: &[SeatId],
        locks: &[SeatLock],
        generation: u64,
    ) -> Result<bool, MirrorError> {
        let now = Utc::now().timestamp_millis();
        // Lua arrays are 1-based and the first two keys are the generation and the mark.
        let index: std::collections::HashMap<SeatId, usize> = layout
            .iter()
            .enumerate()
            .map(|(i, s)| (*s, i + 3))
            .collect();
        let mut invocation = self.rebuild.prepare_invoke();
        invocation
            .key(generation_key(show))
            .key(complete_key(show))
            .arg(generation)
            .arg(COMPLETE_TTL.as_millis() as u64);
        for seat in layout {
            invocation.key(seat_key(show, *seat));
        }
        for lock in locks
            .iter()
            .filter(|l| l.expires_at.timestamp_millis() > now)
        {
            if let Some(i) = index.get(&lock.seat_id) {
                invocation
                    .arg(*i)
                    .arg(lock_value(lock))
                    .arg(lock.expires_at.timestamp_millis());
            }
        }
        let mut conn = self.conn.clone();
        invocation
            .invoke_async::<i64>(&mut conn)
            .await
            .map(|written| written == 1)
            .map_err(failed("rebuild"))
    }

    async fn invalidate(&self, show: ShowId) -> Result<(), MirrorError> {
        let mut conn = self.conn.clone();
        conn.del::<_, i64>(complete_key(show))
            .await
            .map(|_| ())
            .map_err(failed("invalidate"))
    }
}

#[async_trait]
impl QueueCounters for RedisMirror {
    async fn take_ticket(
        &self,
        show: ShowId,
        request: RequestId,
        keep_until: DateTime<Utc>,
    ) -> Result<u64, MirrorError> {
        let mut conn = self.conn.clone();
        // PXAT in the past is refused: a request kept for no time is kept for a moment.
        let keep = keep_until
            .timestamp_millis()
            .max(Utc::now().timestamp_millis() + 1_000);
        let mut invocation = self.take_ticket.prepare_invoke();
        invocation
            .key(tickets_key(show))
            .key(request_ticket_key(show, request))
            .arg(keep);
        // One round trip on the intake path: the script, loaded in the same pipeline, so a
        // restarted Redis never answers NOSCRIPT.
        let (_, ticket): (String, u64) = redis::pipe()
            .load_script(&self.take_ticket)
            .invoke_script(&invocation)
            .query_async(&mut conn)
            .await
            .map_err(failed("take_ticket"))?;
        Ok(ticket)
    }

    async fn ticket_of(
        &self,
        show: ShowId,
        request: RequestId,
    ) -> Result<Option<u64>, MirrorError> {
        let mut conn = self.conn.clone();
        conn.get::<_, Option<u64>>(request_ticket_key(show, request))
            .await
            .map_err(failed("ticket_of"))
    }

    async fn add_decided(&self, show: ShowId, count: u64) -> Result<(), MirrorError> {
        let mut conn = self.conn.clone();
        conn.incr::<_, _, u64>(decided_key(show), count)
            .await
            .map(|_| ())
            .map_err(failed("add_decided"))
    }

    async fn decided(&self, show: ShowId) -> Result<u64, MirrorError> {
        let mut conn = self.conn.clone();
        conn.get::<_, Option<u64>>(decided_key(show))
            .await
            .map(|v| v.unwrap_or(0))
            .map_err(failed("decided"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_including_user_ids_with_separators() {
        let lock = SeatLock {
            seat_id: "A1".parse().unwrap(),
            hold_id: HoldId::new_random(),
            user_id: "auth0|abc|def".parse().unwrap(),
            expires_at: DateTime::from_timestamp_millis(1_900_000_000_123).unwrap(),
            status: SeatStatus::Held,
        };
        let (status, hold, expires, user) = parse_value(&lock_value(&lock)).unwrap();
        assert_eq!(
            (status, hold, expires, user),
            (
                SeatStatus::Held,
                lock.hold_id,
                1_900_000_000_123,
                lock.user_id
            )
        );
        assert!(parse_value("garbage").is_none());
    }

    #[test]
    fn one_shows_keys_share_a_hash_tag() {
        let show = ShowId::new_random();
        let tag = format!("{{{show}}}");
        for key in [
            seat_key(show, "B7".parse().unwrap()),
            complete_key(show),
            generation_key(show),
            tickets_key(show),
            request_ticket_key(show, RequestId::new_random()),
            decided_key(show),
        ] {
            assert!(key.contains(&tag), "{key}");
        }
    }
}
