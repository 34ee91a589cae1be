//! The whole hold flow, over HTTP and WebSocket against the app in process: token → POST hold →
//! WebSocket BOOKING_RESULT → polling shows the same outcome → the seat map shows HELD; plus
//! release, replacing a hold, idempotent retries and ownership. (What needs the real binary, a
//! restart or a crash, is in crash.rs.)

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

#[macro_use]
mod support;

use serde_json::json;
use support::*;

async fn hold_flow_end_to_end(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let alice = token("alice");

    let (status, health) = get(&c, &server, "/health", None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (_, movies) = get(&c, &server, "/api/v1/movies", None).await;
    assert!(movies["movies"].as_array().unwrap().len() >= 2);
    let (_, shows) = get(
        &c,
        &server,
        &format!("/api/v1/movies/{PREMIERE_MOVIE}/shows"),
        None,
    )
    .await;
    assert!(
        shows["shows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["showId"] == GRAND_HALL && s["totalSeats"] == 500)
    );

    let mut ws = WsClient::connect(&server, &alice).await;
    let mut watcher = WsClient::connect(&server, &token("watcher")).await;
    watcher.subscribe(GRAND_HALL).await;

    let (status, accepted) = hold(&c, &server, &alice, GRAND_HALL, &["C7", "C8"]).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "QUEUED");
    assert!(accepted["queuePosition"].as_u64().unwrap() >= 1);
    assert!(accepted["estimatedWaitSeconds"].is_u64());
    let request_id = accepted["requestId"].as_str().unwrap().to_owned();
    assert_eq!(
        accepted["statusUrl"],
        format!("/api/v1/booking-requests/{request_id}")
    );

    let pushed = ws.next_of("BOOKING_RESULT").await;
    assert_eq!(pushed["requestId"], request_id.as_str());
    assert_eq!(pushed["status"], "SUCCESS");
    assert_eq!(pushed["seatIds"], json!(["C7", "C8"]));
    let hold_id = pushed["holdId"].as_str().unwrap().to_owned();

    let polled = wait_terminal(&c, &server, &alice, &request_id).await;
    assert_eq!(polled["status"], "SUCCESS");
    assert_eq!(polled["holdId"], hold_id.as_str());
    assert!(polled["expiresAt"].is_string());

    let changed = watcher.next_of("SEATS_CHANGED").await;
    assert_eq!(changed["showId"], GRAND_HALL);
    assert_eq!(
        changed["seats"],
        json!([{"seatId":"C7","status":"HELD"},{"seatId":"C8","status":"HELD"}])
    );

    let seats = seat_status(&c, &server, GRAND_HALL).await;
    assert_eq!(seats["C7"], "HELD");
    assert_eq!(seats["C8"], "HELD");
    assert_eq!(seats["C9"], "AVAILABLE");

    let (status, h) = get(
        &c,
        &server,
        &format!("/api/v1/holds/{hold_id}"),
        Some(&alice),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["status"], "HELD");
    assert_eq!(h["amountCents"], 2 * 1800, "row C is premium");
}

async fn loser_gets_alternatives_and_release_frees_seats(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let (alice, bob) = (token("alice"), token("bob"));

    let (_, a) = hold(&c, &server, &alice, STUDIO, &["D5", "D6"]).await;
    let a = wait_terminal(&c, &server, &alice, a["requestId"].as_str().unwrap()).await;
    assert_eq!(a["status"], "SUCCESS");

    let (_, b) = hold(&c, &server, &bob, STUDIO, &["D6", "D7"]).await;
    let b = wait_terminal(&c, &server, &bob, b["requestId"].as_str().unwrap()).await;
    assert_eq!(b["status"], "FAILED");
    assert_eq!(b["unavailableSeatIds"], json!(["D6"]));
    assert_eq!(
        b["availableAlternatives"],
        json!(["D7", "D8"]),
        "same row, adjacent, nearest: {b}"
    );
    assert!(b["message"].as_str().unwrap().contains("D6"));

    let hold_id = a["holdId"].as_str().unwrap();
    let (status, _) = post(
        &c,
        &server,
        &format!("/api/v1/holds/{hold_id}/release"),
        Some(&bob),
        json!({}),
    )
    .await;
    assert_eq!(status, 404, "bob cannot release alice's hold");
    let (status, released) = post(
        &c,
        &server,
        &format!("/api/v1/holds/{hold_id}/release"),
        Some(&alice),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{released}");
    assert_eq!(released["status"], "RELEASED");
    let seats = seat_status(&c, &server, STUDIO).await;
    assert_eq!(
        (seats["D5"].as_str(), seats["D6"].as_str()),
        ("AVAILABLE", "AVAILABLE")
    );
    let (status, again) = post(
        &c,
        &server,
        &format!("/api/v1/holds/{hold_id}/release"),
        Some(&alice),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("HOLD_NOT_ACTIVE"))
    );

    let (_, b2) = hold(&c, &server, &bob, STUDIO, &["D6", "D7"]).await;
    assert_eq!(
        wait_terminal(&c, &server, &bob, b2["requestId"].as_str().unwrap()).await["status"],
        "SUCCESS"
    );
}

async fn a_new_hold_releases_the_previous_one_for_that_show(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let alice = token("alice");
    let (_, r1) = hold(&c, &server, &alice, MATINEE_EARLY, &["B3"]).await;
    let r1 = wait_terminal(&c, &server, &alice, r1["requestId"].as_str().unwrap()).await;
    let (_, r2) = hold(&c, &server, &alice, MATINEE_EARLY, &["B4", "B5"]).await;
    let r2 = wait_terminal(&c, &server, &alice, r2["requestId"].as_str().unwrap()).await;
    assert_eq!(
        (r1["status"].as_str(), r2["status"].as_str()),
        (Some("SUCCESS"), Some("SUCCESS"))
    );
    let (_, h1) = get(
        &c,
        &server,
        &format!("/api/v1/holds/{}", r1["holdId"].as_str().unwrap()),
        Some(&alice),
    )
    .await;
    assert_eq!(h1["status"], "RELEASED");
    let seats = seat_status(&c, &server, MATINEE_EARLY).await;
    assert_eq!(
        (seats["B3"].as_str(), seats["B4"].as_str()),
        ("AVAILABLE", "HELD")
    );

    // A hold on another show is untouched.
    let (_, r3) = hold(&c, &server, &alice, MATINEE_LATE, &["B3"]).await;
    wait_terminal(&c, &server, &alice, r3["requestId"].as_str().unwrap()).await;
    let (_, h2) = get(
        &c,
        &server,
        &format!("/api/v1/holds/{}", r2["holdId"].as_str().unwrap()),
        Some(&alice),
    )
    .await;
    assert_eq!(h2["status"], "HELD");
}

async fn idempotency_key_makes_retries_safe(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let alice = token("alice");
    let send = |key: &'static str, who: String| {
        let c = c.clone();
        let url = server.url("/api/v1/holds");
        async move {
            json_of(
                c.post(url)
                    .bearer_auth(who)
                    .header("Idempotency-Key", key)
                    .json(&json!({"showId": STUDIO, "seatIds": ["E1"]}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let (s1, first) = send("retry-1", alice.clone()).await;
    let (s2, second) = send("retry-1", alice.clone()).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(first["requestId"], second["requestId"]);
    // Another user's identical key is theirs alone.
    let (_, other) = send("retry-1", token("bob")).await;
    assert_ne!(other["requestId"], first["requestId"]);
}

async fn users_see_and_receive_only_their_own(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let (alice, mallory) = (token("alice"), token("mallory"));
    let mut mallory_ws = WsClient::connect(&server, &mallory).await;
    let mut alice_ws = WsClient::connect(&server, &alice).await;
    let (_, a) = hold(&c, &server, &alice, STUDIO, &["F3"]).await;
    let request_id = a["requestId"].as_str().unwrap();
    let pushed = alice_ws.next_of("BOOKING_RESULT").await;
    let hold_id = pushed["holdId"].as_str().unwrap();

    let (status, body) = get(
        &c,
        &server,
        &format!("/api/v1/booking-requests/{request_id}"),
        Some(&mallory),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("REQUEST_NOT_FOUND"))
    );
    let (status, _) = get(
        &c,
        &server,
        &format!("/api/v1/holds/{hold_id}"),
        Some(&mallory),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = get(
        &c,
        &server,
        &format!("/api/v1/booking-requests/{request_id}"),
        None,
    )
    .await;
    assert_eq!(status, 401);
    let leaked = mallory_ws
        .drain_for(std::time::Duration::from_millis(300))
        .await;
    assert!(
        leaked.iter().all(|m| m["type"] != "BOOKING_RESULT"),
        "mallory got {leaked:?}"
    );

    let (status, body) = get(&c, &server, "/api/v1/admin/queues", Some(&mallory)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("FORBIDDEN"))
    );
    let (status, body) = get(
        &c,
        &server,
        "/api/v1/admin/queues",
        Some(&admin_token("ops")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// With the store gone, health says so (503, so a load balancer stops sending traffic) and a
/// hold request is refused as unavailable, never accepted without being durable.
async fn health_and_intake_report_a_store_that_is_down(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    assert_eq!(get(&c, &server, "/health", None).await.0, 200);
    server.close_store().await;
    let (status, health) = get(&c, &server, "/health", None).await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["checks"]["store"], "unavailable");
    let (status, body) = hold(&c, &server, &token("alice"), STUDIO, &["A5"]).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("SERVICE_UNAVAILABLE")),
        "{body}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        !message.contains("SQLite") && !message.contains("PostgreSQL"),
        "a 5xx body names no internals: {message}"
    );
}

on_every_backend!(
    health_and_intake_report_a_store_that_is_down,
    hold_flow_end_to_end,
    loser_gets_alternatives_and_release_frees_seats,
    a_new_hold_releases_the_previous_one_for_that_show,
    idempotency_key_makes_retries_safe,
    users_see_and_receive_only_their_own,
);
