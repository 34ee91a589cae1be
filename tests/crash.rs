//! Crash safety: every request answered 202 reaches exactly one terminal state across kill -9
//! and restart, and no seat ends up in two live holds.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

#[macro_use]
mod support;

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use support::*;

/// Checks that the live holds of `show` never share a seat and match the seat map.
async fn assert_no_seat_held_twice(
    c: &reqwest::Client,
    server: &Server,
    show: &str,
    decided: &[(String, Value)],
) {
    let mut held: HashSet<String> = HashSet::new();
    for (t, r) in decided {
        if r["status"] != "SUCCESS" {
            continue;
        }
        let (_, h) = get(
            c,
            server,
            &format!("/api/v1/holds/{}", r["holdId"].as_str().unwrap()),
            Some(t),
        )
        .await;
        if h["status"] == "HELD" {
            for s in h["seatIds"].as_array().unwrap() {
                assert!(
                    held.insert(s.as_str().unwrap().to_owned()),
                    "seat {s} is in two live holds"
                );
            }
        }
    }
    let map = seat_status(c, server, show).await;
    let held_in_map: HashSet<String> = map
        .into_iter()
        .filter(|(_, s)| s == "HELD")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(held_in_map, held, "seat map and live holds disagree");
}

/// Requests accepted while their show was paused are all decided after a kill -9, a restart and
/// the resume (the pause survives the crash).
async fn queued_requests_survive_kill_and_restart(backend: Backend) {
    let mut server = Server::start_on(backend, &[]).await;
    let c = client();
    pause_show(&c, &server, STUDIO, &admin_token("ops")).await;
    let mut accepted = Vec::new();
    for i in 0..40 {
        let t = token(&format!("u{i}"));
        let seats = [format!("C{}", i % 6 + 1), format!("C{}", i % 6 + 2)];
        let (status, r) = hold(&c, &server, &t, STUDIO, &[&seats[0], &seats[1]]).await;
        assert_eq!(status, 202);
        accepted.push((t, r["requestId"].as_str().unwrap().to_owned()));
    }
    for (t, id) in &accepted[..3] {
        let (_, r) = get(
            &c,
            &server,
            &format!("/api/v1/booking-requests/{id}"),
            Some(t),
        )
        .await;
        assert_eq!(r["status"], "QUEUED");
    }

    server.crash_and_restart();
    // The pause outlived the crash (it is kept with the show): the operator lifts it.
    let (_, still) = get(
        &c,
        &server,
        &format!("/api/v1/booking-requests/{}", accepted[0].1),
        Some(&accepted[0].0),
    )
    .await;
    assert_eq!(still["status"], "QUEUED", "not decided while still paused");
    resume_show(&c, &server, STUDIO, &admin_token("ops")).await;

    let mut decided = Vec::new();
    for (t, id) in &accepted {
        decided.push((t.clone(), wait_terminal(&c, &server, t, id).await));
    }
    // Arrival order: the very first request (C1, C2) was granted.
    assert_eq!(decided[0].1["status"], "SUCCESS");
    assert_no_seat_held_twice(&c, &server, STUDIO, &decided).await;
}

/// kill -9 while a burst is being decided: every request answered 202 is decided after the
/// restart, exactly once (what was told before the crash is what is stored after it).
async fn kill_during_a_burst_loses_nothing_accepted(backend: Backend) {
    // One request per batch, so that the lanes are far behind the intake at the kill.
    let mut server = Server::start_on(backend, &[("MAX_BATCH", "1")]).await;
    let c = client();
    const USERS: usize = 100;
    const EACH: usize = 4;

    // What each user hears before the crash, request id → result.
    let heard: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
    let mut listeners = Vec::new();
    for u in 0..USERS {
        let mut ws = WsClient::connect(&server, &token(&format!("burst-{u}"))).await;
        let heard = heard.clone();
        listeners.push(tokio::spawn(async move {
            // Ends when the kill resets the connection.
            let (messages, _) = ws.until_closed().await;
            let mut heard = heard.lock().unwrap();
            for m in messages
                .into_iter()
                .filter(|m| m["type"] == "BOOKING_RESULT")
            {
                heard.insert(m["requestId"].as_str().unwrap().to_owned(), m);
            }
        }));
    }

    let mut burst = tokio::task::JoinSet::new();
    for i in 0..USERS * EACH {
        let c = c.clone();
        let url = server.url("/api/v1/holds");
        burst.spawn(async move {
            let t = token(&format!("burst-{}", i % USERS));
            // 1-3 seats among 24 contested ones.
            let seats: Vec<String> = (0..(i % 3 + 1))
                .map(|k| format!("K{}", (i * 7 + k) % 24 + 1))
                .collect();
            let resp = c
                .post(url)
                .bearer_auth(&t)
                .json(&json!({"showId": GRAND_HALL, "seatIds": seats}))
                .send()
                .await
                .map_err(|e| format!("request {i}: {e}"))?;
            let (status, body) = json_of(resp).await;
            if status != 202 {
                return Err(format!("request {i}: {status} {body}"));
            }
            Ok((t, body["requestId"].as_str().unwrap().to_owned()))
        });
    }
    let mut accepted = Vec::new();
    let mut failures = Vec::new();
    let joined = tokio::time::timeout(WAIT, async {
        while let Some(done) = burst.join_next().await {
            match done.expect("request task") {
                Ok(a) => accepted.push(a),
                Err(e) => failures.push(e),
            }
        }
    })
    .await;
    assert!(joined.is_ok(), "the burst was not answered in time");
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert_eq!(accepted.len(), USERS * EACH);

    let killed_at = chrono::Utc::now();
    server.crash_and_restart();
    for listener in listeners {
        tokio::time::timeout(WAIT, listener)
            .await
            .expect("the kill ended every connection")
            .expect("listener");
    }

    let mut decided = Vec::new();
    let mut per_status: HashMap<String, usize> = HashMap::new();
    let mut after_the_kill = 0;
    let heard = heard.lock().unwrap().clone();
    for (t, id) in &accepted {
        let r = wait_terminal(&c, &server, t, id).await;
        *per_status
            .entry(r["status"].as_str().unwrap().to_owned())
            .or_default() += 1;
        let processed: chrono::DateTime<chrono::Utc> =
            r["processedAt"].as_str().unwrap().parse().unwrap();
        after_the_kill += usize::from(processed > killed_at);
        if let Some(told) = heard.get(id) {
            assert_eq!(
                (&told["status"], &told["holdId"]),
                (
                    &r["status"],
                    &r.get("holdId").cloned().unwrap_or(Value::Null)
                ),
                "{id} was told one outcome before the crash and stores another"
            );
        }
        decided.push((t.clone(), r));
    }
    assert!(
        after_the_kill > 0,
        "every request was decided before the kill: the test proved nothing"
    );
    assert!(
        per_status.get("SUCCESS").copied().unwrap_or(0) >= 1,
        "{per_status:?}"
    );
    assert_no_seat_held_twice(&c, &server, GRAND_HALL, &decided).await;
}

/// Decided requests and their holds read the same after a restart.
async fn state_survives_a_restart(backend: Backend) {
    let mut server = Server::start_on(backend, &[]).await;
    let c = client();
    let alice = token("alice");
    let (_, a) = hold(&c, &server, &alice, STUDIO, &["G2"]).await;
    let before = wait_terminal(&c, &server, &alice, a["requestId"].as_str().unwrap()).await;
    server.crash_and_restart();
    let after = wait_terminal(&c, &server, &alice, a["requestId"].as_str().unwrap()).await;
    assert_eq!(before, after);
    assert_eq!(seat_status(&c, &server, STUDIO).await["G2"], "HELD");
}

/// A kill -9 between a store commit and its Redis mirror update leaves the mirror behind the
/// store. Simulated exactly: a held seat's lock is removed from Redis behind the server's back,
/// so the hot seat map reads it AVAILABLE; after the restart the seat map reads HELD again at
/// once (the restart marks every show's mirror incomplete), not only when the show's
/// completeness mark runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_does_not_serve_a_seat_map_the_crash_left_stale() {
    let mut server = Server::start_on(Backend::PostgresRedis, &[]).await;
    let c = client();
    let alice = token("alice");
    let (status, accepted) = hold(&c, &server, &alice, STUDIO, &["E4"]).await;
    assert_eq!(status, 202, "{accepted}");
    let decided = wait_terminal(&c, &server, &alice, accepted["requestId"].as_str().unwrap()).await;
    assert_eq!(decided["status"], "SUCCESS", "{decided}");
    assert_eq!(seat_status(&c, &server, STUDIO).await["E4"], "HELD");

    // The update the crash would have lost.
    let redis = server.redis().expect("a private Redis");
    let removed = redis.command(&["DEL", &format!("seat_lock:{{{STUDIO}}}:E4")]);
    assert_eq!(removed.trim(), "1", "the lock was mirrored");
    assert_eq!(
        seat_status(&c, &server, STUDIO).await["E4"],
        "AVAILABLE",
        "the stale mirror is what the hot read serves"
    );

    server.crash_and_restart();
    assert_eq!(seat_status(&c, &server, STUDIO).await["E4"], "HELD");
}

/// The purchase on the real binary, across kill -9: a confirmed order stays sold (its seats
/// BOOKED, its ticket kept), an order waiting for payment keeps its seats through the restart and
/// can be paid after it, and a replayed Idempotency-Key still answers from before the crash.
async fn orders_and_tickets_survive_kill_and_restart(backend: Backend) {
    let mut server = Server::start_on(backend, &[]).await;
    let c = client();
    let alice = token("alice");
    let mut orders = Vec::new();
    for seat in ["F5", "F6"] {
        let (status, accepted) = hold(&c, &server, &alice, STUDIO, &[seat]).await;
        assert_eq!(status, 202, "{accepted}");
        let decided =
            wait_terminal(&c, &server, &alice, accepted["requestId"].as_str().unwrap()).await;
        assert_eq!(decided["status"], "SUCCESS", "{decided}");
        let (status, order) = post(
            &c,
            &server,
            "/api/v1/orders",
            Some(&alice),
            json!({ "holdId": decided["holdId"] }),
        )
        .await;
        assert_eq!(status, 201, "{order}");
        orders.push(order["orderId"].as_str().unwrap().to_owned());
    }
    let pay = |server: &Server, order: &str| {
        c.post(server.url(&format!("/api/v1/orders/{order}/confirm-payment")))
            .bearer_auth(&alice)
            .header("Idempotency-Key", format!("pay-{order}"))
            .json(&json!({ "paymentToken": "tok_visa" }))
    };
    let (status, paid) = json_of(pay(&server, &orders[0]).send().await.unwrap()).await;
    assert_eq!(
        (status, paid["status"].as_str()),
        (200, Some("CONFIRMED")),
        "{paid}"
    );

    server.crash_and_restart();

    let seats = seat_status(&c, &server, STUDIO).await;
    assert_eq!(
        (seats["F5"].as_str(), seats["F6"].as_str()),
        ("BOOKED", "HELD")
    );
    let (_, sold) = get(
        &c,
        &server,
        &format!("/api/v1/orders/{}", orders[0]),
        Some(&alice),
    )
    .await;
    assert_eq!(sold["status"], "CONFIRMED");
    assert_eq!(sold["ticketCode"], paid["ticketCode"]);
    let replay = pay(&server, &orders[0]).send().await.unwrap();
    assert_eq!(replay.headers()["idempotency-replayed"], "true");
    let (status, replayed) = json_of(replay).await;
    assert_eq!(
        (status, &replayed["ticketCode"]),
        (200, &paid["ticketCode"])
    );
    let (status, later) = json_of(pay(&server, &orders[1]).send().await.unwrap()).await;
    assert_eq!(
        (status, later["status"].as_str()),
        (200, Some("CONFIRMED")),
        "{later}"
    );
    assert_eq!(seat_status(&c, &server, STUDIO).await["F6"], "BOOKED");
}

/// A charge made by the provider whose answer never reached the server (the mock's
/// `tok_lose_answer`), then kill -9: after the restart the order is still waiting with its charge
/// in doubt, and the buyer's retry re-sends that charge, which the provider (its ledger on disk)
/// answers with its first outcome: confirmed, charged once.
async fn a_charge_in_doubt_is_settled_after_kill_and_restart(backend: Backend) {
    let mut server = Server::start_on(backend, &[]).await;
    let c = client();
    let alice = token("alice");
    let (_, accepted) = hold(&c, &server, &alice, STUDIO, &["F8"]).await;
    let decided = wait_terminal(&c, &server, &alice, accepted["requestId"].as_str().unwrap()).await;
    let (status, order) = post(
        &c,
        &server,
        "/api/v1/orders",
        Some(&alice),
        json!({ "holdId": decided["holdId"] }),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    let confirm = format!(
        "/api/v1/orders/{}/confirm-payment",
        order["orderId"].as_str().unwrap()
    );
    let (status, lost) = post(
        &c,
        &server,
        &confirm,
        Some(&alice),
        json!({ "paymentToken": "tok_lose_answer" }),
    )
    .await;
    assert_eq!(
        (status, lost["error"]["code"].as_str()),
        (503, Some("PAYMENT_PROVIDER_UNAVAILABLE")),
        "{lost}"
    );

    server.crash_and_restart();

    let read_path = format!("/api/v1/orders/{}", order["orderId"].as_str().unwrap());
    let (_, waiting) = get(&c, &server, &read_path, Some(&alice)).await;
    assert_eq!(waiting["status"], "PAYMENT_PENDING", "{waiting}");
    assert_eq!(waiting["payments"][0]["status"], "PENDING");
    assert_eq!(seat_status(&c, &server, STUDIO).await["F8"], "HELD");
    let (status, paid) = post(
        &c,
        &server,
        &confirm,
        Some(&alice),
        json!({ "paymentToken": "tok_visa" }),
    )
    .await;
    assert_eq!(
        (status, paid["status"].as_str()),
        (200, Some("CONFIRMED")),
        "{paid}"
    );
    let (_, read) = get(&c, &server, &read_path, Some(&alice)).await;
    let payments: Vec<_> = read["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["kind"].as_str().unwrap(), p["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        payments,
        vec![("CHARGE", "SUCCEEDED")],
        "charged once: {read}"
    );
    assert_eq!(seat_status(&c, &server, STUDIO).await["F8"], "BOOKED");
}

on_every_backend!(
    a_charge_in_doubt_is_settled_after_kill_and_restart,
    orders_and_tickets_survive_kill_and_restart,
    state_survives_a_restart,
    queued_requests_survive_kill_and_restart,
    kill_during_a_burst_loses_nothing_accepted,
);
