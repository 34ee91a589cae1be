//! Dead letters, on both backends, with a store wrapper that makes chosen requests undecidable
//! (their batches cannot be committed): such a request is set aside after `MAX_ATTEMPTS` tries
//! while the rest of its show is decided; the admin API lists it, redrives it once the fault is
//! gone (one, or all of a show's in arrival order) or discards it (FAILED, its owner told).

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

#[macro_use]
mod support;

use booking_app::Stores;
use booking_local::LaneOptions;
use booking_testkit::faults::{HookedHolds, PoisonedRequests};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::*;

const MAX_ATTEMPTS: u32 = 3;

async fn start(backend: Backend) -> (TestApp, PoisonedRequests) {
    let poison = PoisonedRequests::default();
    let mut options = TestAppOptions::on(backend);
    options.lanes = LaneOptions {
        max_backoff: Duration::from_millis(20),
        max_attempts: MAX_ATTEMPTS,
        ..LaneOptions::default()
    };
    let hook = poison.clone();
    options.wrap_stores = Some(Box::new(move |mut stores: Stores| {
        stores.holds = Arc::new(HookedHolds::new(stores.holds, hook));
        stores
    }));
    (TestApp::start_with(options).await, poison)
}

/// Asks for `seat` of the early matinee as `user`; returns (token, request id).
async fn ask(c: &reqwest::Client, server: &TestApp, user: &str, seat: &str) -> (String, String) {
    let t = token(user);
    let (status, body) = hold(c, server, &t, MATINEE_EARLY, &[seat]).await;
    assert_eq!(status, 202, "{body}");
    (t, body["requestId"].as_str().unwrap().to_owned())
}

/// Asks for `seat` as `user` while the show is paused, poisons the request, resumes and lets the
/// lane set it aside; returns (token, request id).
async fn poisoned(
    c: &reqwest::Client,
    server: &TestApp,
    poison: &PoisonedRequests,
    admin: &str,
    user: &str,
    seat: &str,
) -> (String, String) {
    pause_show(c, server, MATINEE_EARLY, admin).await;
    let asked = ask(c, server, user, seat).await;
    poison.add(asked.1.parse().unwrap());
    resume_show(c, server, MATINEE_EARLY, admin).await;
    server.drain().await;
    asked
}

async fn status_of(c: &reqwest::Client, server: &TestApp, t: &str, id: &str) -> Value {
    get(
        c,
        server,
        &format!("/api/v1/booking-requests/{id}"),
        Some(t),
    )
    .await
    .1
}

async fn dead_letters(c: &reqwest::Client, server: &TestApp, admin: &str) -> Vec<Value> {
    let (status, body) = get(
        c,
        server,
        &format!("/api/v1/admin/dead-letters?showId={MATINEE_EARLY}"),
        Some(admin),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["deadLetters"].as_array().unwrap().clone()
}

on_every_backend!(
    an_undecidable_request_is_set_aside_and_redriven_once_the_fault_is_gone,
    a_dead_letter_discarded_ends_failed_and_its_owner_is_told
);

async fn an_undecidable_request_is_set_aside_and_redriven_once_the_fault_is_gone(backend: Backend) {
    let (server, poison) = start(backend).await;
    let c = client();
    let admin = admin_token("operator");
    // Paused, so that the three are decided together, in one batch.
    pause_show(&c, &server, MATINEE_EARLY, &admin).await;
    let first = ask(&c, &server, "dl-first", "B1").await;
    let stuck = ask(&c, &server, "dl-stuck", "B2").await;
    let last = ask(&c, &server, "dl-last", "B3").await;
    poison.add(stuck.1.parse().unwrap());
    resume_show(&c, &server, MATINEE_EARLY, &admin).await;
    server.drain().await;

    for (t, id) in [&first, &last] {
        let r = wait_terminal(&c, &server, t, id).await;
        assert_eq!(r["status"], "SUCCESS", "the show went on: {r}");
    }
    assert_eq!(
        status_of(&c, &server, &stuck.0, &stuck.1).await["status"],
        "QUEUED"
    );
    let letters = dead_letters(&c, &server, &admin).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["requestId"], stuck.1.as_str());
    assert_eq!(letters[0]["attempts"], MAX_ATTEMPTS);
    assert!(
        letters[0]["reason"].as_str().unwrap().contains("injected"),
        "{letters:?}"
    );
    let lane = queue_of(&c, &server, &admin, MATINEE_EARLY).await;
    assert_eq!(
        (lane["deadLetters"].as_u64(), lane["waiting"].as_u64()),
        (Some(1), Some(0))
    );

    // Only admins see or touch them.
    let (status, _) = get(
        &c,
        &server,
        "/api/v1/admin/dead-letters",
        Some(&token("fan")),
    )
    .await;
    assert_eq!(status, 403);

    // The fault is repaired: the redrive decides it, once.
    poison.cure();
    let path = format!("/api/v1/admin/dead-letters/{}/redrive", stuck.1);
    let (status, body) = post(&c, &server, &path, Some(&admin), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redriven"], json!([stuck.1]));
    server.drain().await;
    assert_eq!(
        wait_terminal(&c, &server, &stuck.0, &stuck.1).await["status"],
        "SUCCESS"
    );
    let (status, again) = post(&c, &server, &path, Some(&admin), json!({})).await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (404, Some("DEAD_LETTER_NOT_FOUND"))
    );

    // Two more set aside, each alone (no batch to split), then redriven together, in order.
    // (Each is asked for while the show is paused, so it is poisoned before it is decided.)
    let one = poisoned(&c, &server, &poison, &admin, "dl-one", "C1").await;
    let two = poisoned(&c, &server, &poison, &admin, "dl-two", "C1").await;
    let listed: Vec<Value> = dead_letters(&c, &server, &admin)
        .await
        .iter()
        .map(|d| d["requestId"].clone())
        .collect();
    assert_eq!(listed, [json!(one.1), json!(two.1)]);
    poison.cure();
    let (status, body) = post(
        &c,
        &server,
        &format!("/api/v1/admin/shows/{MATINEE_EARLY}/dead-letters/redrive"),
        Some(&admin),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redriven"], json!([one.1, two.1]));
    server.drain().await;
    // Decided in their original order: the earlier one gets the seat.
    assert_eq!(
        wait_terminal(&c, &server, &one.0, &one.1).await["status"],
        "SUCCESS"
    );
    assert_eq!(
        wait_terminal(&c, &server, &two.0, &two.1).await["status"],
        "FAILED"
    );
    assert!(dead_letters(&c, &server, &admin).await.is_empty());
}

async fn a_dead_letter_discarded_ends_failed_and_its_owner_is_told(backend: Backend) {
    let (server, poison) = start(backend).await;
    let c = client();
    let admin = admin_token("operator");
    let mut owner_socket = WsClient::connect(&server, &token("dl-owner")).await;
    let (t, id) = poisoned(&c, &server, &poison, &admin, "dl-owner", "D4").await;
    assert_eq!(dead_letters(&c, &server, &admin).await.len(), 1);

    let path = format!("/api/v1/admin/dead-letters/{id}/discard");
    let (status, body) = post(
        &c,
        &server,
        &path,
        Some(&admin),
        json!({ "reason": "x".repeat(501) }),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("INVALID_REASON"))
    );
    let (status, body) = post(
        &c,
        &server,
        &path,
        Some(&admin),
        json!({ "reason": "Withdrawn by the box office" }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "FAILED");
    let pushed = owner_socket.next_of("BOOKING_RESULT").await;
    assert_eq!(pushed["requestId"], id.as_str(), "{pushed}");
    assert_eq!(pushed["status"], "FAILED");
    assert_eq!(pushed["message"], "Withdrawn by the box office");
    let polled = status_of(&c, &server, &t, &id).await;
    assert_eq!(polled["status"], "FAILED", "{polled}");
    assert!(dead_letters(&c, &server, &admin).await.is_empty());
    let (status, _) = post(&c, &server, &path, Some(&admin), json!({})).await;
    assert_eq!(status, 404, "discarded once");
    // Nothing of the seat was taken.
    assert_eq!(
        seat_status(&c, &server, MATINEE_EARLY).await["D4"],
        "AVAILABLE"
    );
}
