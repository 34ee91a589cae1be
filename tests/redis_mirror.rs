//! The local server on PostgreSQL with a real Redis as its seat mirror: the seat map is served from Redis, and
//! when Redis is flushed or down bookings go on, the seat map falls back to the store, and the
//! mirror is rebuilt. Nothing is lost and nothing is double-held.

#[macro_use]
mod support;

use booking_testkit::redis::PrivateRedis;
use std::collections::HashSet;
use support::*;

fn lock_key(seat: &str) -> String {
    format!("seat_lock:{{{STUDIO}}}:{seat}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookings_survive_a_redis_flush_and_outage() {
    let mut redis = PrivateRedis::start();
    // As deployed: PostgreSQL decides, Redis mirrors.
    let database = booking_testkit::postgres::TestDatabase::create().await;
    let server = Server::start(&[
        ("REDIS_URL", &redis.url()),
        ("DATABASE_URL", database.url()),
    ]);
    let c = client();
    let mut granted: Vec<(String, serde_json::Value)> = Vec::new();
    let mut book = async |user: &str, seats: &[&str]| {
        let t = token(user);
        let (status, r) = hold(&c, &server, &t, STUDIO, seats).await;
        assert_eq!(status, 202, "{r}");
        let r = wait_terminal(&c, &server, &t, r["requestId"].as_str().unwrap()).await;
        assert_eq!(r["status"], "SUCCESS", "{r}");
        granted.push((t, r));
    };

    // Warm: the first read builds the mirror; a grant is then mirrored as a TTL'd lock.
    seat_status(&c, &server, STUDIO).await;
    book("u1", &["C3", "C4"]).await;
    let value = redis
        .get(&lock_key("C3"))
        .expect("the grant is mirrored in Redis");
    assert!(value.starts_with("HELD|"), "{value}");
    assert_eq!(seat_status(&c, &server, STUDIO).await["C3"], "HELD");

    // Flushed: reads fall back to the store and rebuild the mirror.
    redis.flush();
    assert_eq!(seat_status(&c, &server, STUDIO).await["C4"], "HELD");
    assert!(
        redis.get(&lock_key("C4")).is_some(),
        "the read rebuilt the mirror"
    );
    book("u2", &["C5"]).await;

    // Down: bookings and seat maps go on from the store.
    redis.stop();
    book("u3", &["C6"]).await;
    book("u4", &["D1", "D2"]).await;
    let seats = seat_status(&c, &server, STUDIO).await;
    for s in ["C3", "C4", "C5", "C6", "D1", "D2"] {
        assert_eq!(seats[s], "HELD", "{s} while Redis is down");
    }
    let (status, health) = get(&c, &server, "/health", None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));

    // Back (empty): the mirror is rebuilt from the store, including what happened meanwhile.
    redis.restart();
    let mut rebuilt = false;
    for _ in 0..100 {
        let seats = seat_status(&c, &server, STUDIO).await;
        assert_eq!(seats["D2"], "HELD");
        if redis.get(&lock_key("D2")).is_some() {
            rebuilt = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(rebuilt, "the mirror was not rebuilt after Redis came back");

    // A loser still loses: the store decided all along.
    let t = token("late");
    let (_, r) = hold(&c, &server, &t, STUDIO, &["C6"]).await;
    assert_eq!(
        wait_terminal(&c, &server, &t, r["requestId"].as_str().unwrap()).await["status"],
        "FAILED"
    );

    let mut seen = HashSet::new();
    for (_, r) in &granted {
        for s in r["seatIds"].as_array().unwrap() {
            assert!(
                seen.insert(s.as_str().unwrap().to_owned()),
                "{s} granted twice"
            );
        }
    }
}
