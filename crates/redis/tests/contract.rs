//! The mirror contract against real Redis on 127.0.0.1:6379 (or `TEST_REDIS_URL`), plus what
//! only a real server can show: a flush makes the mirror cold, and an outage is an error that
//! arrives quickly instead of a hang.

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
    pause_is_per_show,
);

use booking_testkit::redis::PrivateRedis;

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
async fn an_outage_is_a_quick_error_and_the_connection_recovers() {
    let mut server = PrivateRedis::start();
    let m = RedisMirror::connect(&server.url()).await.unwrap();
    let show = ShowId::new_random();
    assert!(m.rebuild(show, &[], &[], 0).await.unwrap());
    server.stop();
    let started = std::time::Instant::now();
    assert!(m.taken_seats(show, &[], Utc::now()).await.is_err());
    assert!(
        m.apply(show, &[], &[("A1".parse().unwrap(), HoldId::new_random())])
            .await
            .is_err()
    );
    eprintln!("outage errors took {:?}", started.elapsed());
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
