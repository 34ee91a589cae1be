//! The mirror contract against real Redis on 127.0.0.1:6379 (or `TEST_REDIS_URL`), plus what
//! only a real server can show: a flush makes the mirror cold, and an outage is an error that
//! arrives quickly instead of a hang.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use booking_core::ports::{SeatLock, SeatMirror};
use booking_core::{HoldId, SeatStatus, ShowId};
use booking_redis::RedisMirror;
use booking_testkit::mirror;
use chrono::{Duration, Utc};

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn connect() -> RedisMirror {
    let url = redis_url();
    let m = RedisMirror::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "Redis is not reachable at {url} ({e}); start it with `bash scripts/ensure-services.sh`"
        )
    });
    m.ping().await.unwrap_or_else(|e| {
        panic!(
            "Redis is not answering at {url} ({e}); start it with `bash scripts/ensure-services.sh`"
        )
    });
    m
}

macro_rules! cases {
    ($($name:ident),+ $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            mirror::$name(&connect().await).await;
        }
    )+};
}

cases!(
    cold_until_rebuilt,
    apply_sets_and_frees,
    expired_locks_are_not_taken,
    rebuild_replaces,
    invalidate_makes_it_cold,
    shows_are_independent,
    stale_rebuild_is_refused,
    queue_counters_count_per_show,
);

use booking_testkit::redis::PrivateRedis;

#[tokio::test]
async fn the_rate_limiter_meets_the_contract() {
    booking_testkit::rate::run_all(std::sync::Arc::new(connect().await.rate_limiter())).await;
}

/// Instances of a deployment share one bucket per caller: two connections, one limit.
#[tokio::test]
async fn two_processes_share_one_bucket() {
    use booking_core::ports::RateLimiter;
    let (a, b) = (
        connect().await.rate_limiter(),
        connect().await.rate_limiter(),
    );
    let rule = booking_core::rate::RateRule::new(1, std::time::Duration::from_secs(3600), 4);
    let key = format!("shared:{}", uuid::Uuid::new_v4());
    let mut allowed = 0;
    for n in 0..10 {
        let limiter = if n % 2 == 0 { &a } else { &b };
        allowed += usize::from(
            limiter.acquire(&key, &rule).await.unwrap() == booking_core::rate::RateVerdict::Allowed,
        );
    }
    assert_eq!(allowed, 4);
}

#[tokio::test]
async fn a_flush_makes_the_mirror_cold() {
    let server = PrivateRedis::start();
    let m = RedisMirror::connect(&server.url()).await.unwrap();
    let show = ShowId::new_random();
    let layout = vec!["A1".parse().unwrap()];
    let lock = SeatLock {
        seat_id: layout[0],
        hold_id: HoldId::new_random(),
        user_id: "u".parse().unwrap(),
        expires_at: Utc::now() + Duration::minutes(5),
        status: SeatStatus::Held,
    };
    assert!(m.rebuild(show, &layout, &[lock], 0).await.unwrap());
    assert_eq!(
        m.taken_seats(show, &layout, Utc::now()).await.unwrap(),
        Some(vec![(layout[0], SeatStatus::Held)])
    );
    server.flush();
    assert_eq!(
        m.taken_seats(show, &layout, Utc::now()).await.unwrap(),
        None,
        "flushed: not trusted"
    );
}

#[tokio::test]
async fn an_outage_is_an_error_and_the_connection_recovers() {
    let mut server = PrivateRedis::start();
    let m = RedisMirror::connect(&server.url()).await.unwrap();
    let show = ShowId::new_random();
    assert!(m.rebuild(show, &[], &[], 0).await.unwrap());
    server.stop();
    assert!(m.taken_seats(show, &[], Utc::now()).await.is_err());
    assert!(
        m.apply(show, &[], &[("A1".parse().unwrap(), HoldId::new_random())])
            .await
            .is_err()
    );
    // The server comes back empty: the manager reconnects and the mirror reads as cold.
    server.restart();
    let mut answer = Err(booking_core::ports::MirrorError::unavailable("not tried"));
    for _ in 0..100 {
        answer = m.taken_seats(show, &[], Utc::now()).await;
        if answer.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(answer.unwrap(), None);
}

/// A Redis that stops answering while its connections stay open (overloaded, paused) costs a
/// reader the client's response timeout, not a hang: the error arrives while the server is
/// still frozen, and the next read after it thaws succeeds.
#[tokio::test]
async fn an_unresponsive_redis_is_an_error_before_it_answers_again() {
    let server = PrivateRedis::start();
    let m = RedisMirror::connect(&server.url()).await.unwrap();
    let show = ShowId::new_random();
    assert!(m.rebuild(show, &[], &[], 0).await.unwrap());
    let mut frozen = server.freeze(5);
    // Let the freeze reach the server before asking (the command has nothing else to wait for).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let answer = m.taken_seats(show, &[], Utc::now()).await;
    assert!(answer.is_err(), "a frozen Redis answered: {answer:?}");
    assert!(
        frozen.try_wait().unwrap().is_none(),
        "the error came only after the server answered again"
    );
    frozen.wait().unwrap();
    let mut answer = m.taken_seats(show, &[], Utc::now()).await;
    for _ in 0..100 {
        if answer.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        answer = m.taken_seats(show, &[], Utc::now()).await;
    }
    assert_eq!(answer.unwrap(), Some(vec![]), "thawed, with its data");
}
