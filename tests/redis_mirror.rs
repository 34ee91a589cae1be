//! The app on PostgreSQL with a real (private) Redis as its seat mirror: the seat map is served
//! from Redis, and when Redis is flushed or down bookings go on, the seat map falls back to the
//! store, and the mirror is rebuilt. Nothing is lost and nothing is double-held: at each stage two
//! users compete for the same seat and exactly one gets it.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

#[macro_use]
mod support;

use serde_json::Value;
use std::collections::HashMap;
use support::*;

fn lock_key(seat: &str) -> String {
    format!("seat_lock:{{{STUDIO}}}:{seat}")
}

/// Two users ask for the same seats at once; returns the winner's result. Exactly one wins.
async fn contest(
    c: &reqwest::Client,
    server: &TestApp,
    stage: &str,
    seats: &[&str],
    granted: &mut Vec<Value>,
) -> Value {
    let (a, b) = (token(&format!("{stage}-a")), token(&format!("{stage}-b")));
    let (ra, rb) = tokio::join!(
        hold(c, server, &a, STUDIO, seats),
        hold(c, server, &b, STUDIO, seats)
    );
    assert_eq!((ra.0, rb.0), (202, 202), "{stage}: {ra:?} {rb:?}");
    let ra = wait_terminal(c, server, &a, ra.1["requestId"].as_str().unwrap()).await;
    let rb = wait_terminal(c, server, &b, rb.1["requestId"].as_str().unwrap()).await;
    let winners: Vec<Value> = [ra, rb]
        .into_iter()
        .filter(|r| r["status"] == "SUCCESS")
        .collect();
    assert_eq!(winners.len(), 1, "{stage}: {winners:?}");
    granted.push(winners[0].clone());
    winners[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookings_survive_a_redis_flush_and_outage() {
    let mut server = TestApp::start(Backend::PostgresRedis).await;
    let c = client();
    let mut granted: Vec<Value> = Vec::new();

    // Warm: the first read builds the mirror; a grant is then mirrored as a TTL'd lock.
    seat_status(&c, &server, STUDIO).await;
    contest(&c, &server, "warm", &["C3", "C4"], &mut granted).await;
    let value = server
        .redis()
        .unwrap()
        .get(&lock_key("C3"))
        .expect("the grant is mirrored in Redis");
    assert!(value.starts_with("HELD|"), "{value}");
    assert_eq!(seat_status(&c, &server, STUDIO).await["C3"], "HELD");

    // Flushed: reads fall back to the store and rebuild the mirror.
    server.redis().unwrap().flush();
    assert_eq!(seat_status(&c, &server, STUDIO).await["C4"], "HELD");
    assert!(
        server.redis().unwrap().get(&lock_key("C4")).is_some(),
        "the read rebuilt the mirror"
    );
    contest(&c, &server, "flushed", &["C5"], &mut granted).await;

    // Down: bookings and seat maps go on from the store.
    server.redis().unwrap().stop();
    contest(&c, &server, "down", &["C6"], &mut granted).await;
    contest(&c, &server, "down-pair", &["D1", "D2"], &mut granted).await;
    let seats = seat_status(&c, &server, STUDIO).await;
    for s in ["C3", "C4", "C5", "C6", "D1", "D2"] {
        assert_eq!(seats[s], "HELD", "{s} while Redis is down");
    }
    let (status, health) = get(&c, &server, "/health", None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));

    // Back (empty): the mirror is rebuilt from the store, including what happened meanwhile.
    server.redis().unwrap().restart();
    let mut rebuilt = false;
    for _ in 0..100 {
        let seats = seat_status(&c, &server, STUDIO).await;
        assert_eq!(seats["D2"], "HELD");
        if server.redis().unwrap().get(&lock_key("D2")).is_some() {
            rebuilt = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(rebuilt, "the mirror was not rebuilt after Redis came back");

    // A seat granted while Redis was down is still taken: the store decided all along.
    let late = token("late");
    let (_, r) = hold(&c, &server, &late, STUDIO, &["C6"]).await;
    assert_eq!(
        wait_terminal(&c, &server, &late, r["requestId"].as_str().unwrap()).await["status"],
        "FAILED"
    );

    // No seat is in two grants, across every stage.
    let mut owner: HashMap<String, String> = HashMap::new();
    for g in &granted {
        for s in g["seatIds"].as_array().unwrap() {
            let seat = s.as_str().unwrap().to_owned();
            let hold = g["holdId"].as_str().unwrap().to_owned();
            if let Some(other) = owner.insert(seat.clone(), hold.clone()) {
                panic!("{seat} granted to {other} and to {hold}");
            }
        }
    }
}

/// Redis answers but refuses the mirror's update (here: the show's generation key holds a value
/// that is not a number, as a stray write could leave it). The booking is unaffected, the show's
/// mirror is invalidated, and the seat map is read from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_mirror_update_falls_back_to_the_store() {
    let mut server = TestApp::start(Backend::PostgresRedis).await;
    let c = client();
    seat_status(&c, &server, STUDIO).await;
    let redis = server.redis().unwrap();
    let complete = format!("seat_mirror:{{{STUDIO}}}:complete");
    assert_eq!(redis.command(&["EXISTS", &complete]), "1", "warm");
    redis.command(&[
        "SET",
        &format!("seat_mirror:{{{STUDIO}}}:generation"),
        "not-a-number",
    ]);

    let t = token("unlucky-mirror");
    let (_, r) = hold(&c, &server, &t, STUDIO, &["E5"]).await;
    let r = wait_terminal(&c, &server, &t, r["requestId"].as_str().unwrap()).await;
    assert_eq!(r["status"], "SUCCESS", "{r}");
    let redis = server.redis().unwrap();
    assert_eq!(redis.get(&lock_key("E5")), None, "the update was refused");
    assert_eq!(
        redis.command(&["EXISTS", &complete]),
        "0",
        "and the show's mirror invalidated"
    );
    assert_eq!(
        seat_status(&c, &server, STUDIO).await["E5"],
        "HELD",
        "the seat map comes from the store"
    );
}
