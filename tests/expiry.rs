//! Holds and requests expire by time: seats come back at once, even with no sweep, and the states
//! read EXPIRED. The app's clock is moved by the test (no sleeping), and the sweep runs when the
//! test says so, so each step is checked exactly when it happens.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

#[macro_use]
mod support;

use chrono::Duration;
use serde_json::json;
use support::*;

/// Just past the default hold lifetime (300 s).
fn past_hold_ttl() -> Duration {
    Duration::seconds(301)
}

async fn expired_holds_free_their_seats_and_subscribers_hear_it(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let (alice, bob) = (token("alice"), token("bob"));
    let mut watcher = WsClient::connect(&server, &token("watcher")).await;
    watcher.subscribe(STUDIO).await;

    let (_, r) = hold(&c, &server, &alice, STUDIO, &["B2"]).await;
    let r = wait_terminal(&c, &server, &alice, r["requestId"].as_str().unwrap()).await;
    assert_eq!(r["status"], "SUCCESS");
    let held = watcher.next_of("SEATS_CHANGED").await;
    assert_eq!(held["seats"], json!([{"seatId":"B2","status":"HELD"}]));

    server.advance(past_hold_ttl());
    let swept = server.sweep().await;
    assert_eq!(swept.holds_expired, 1, "{swept:?}");
    let freed = watcher.next_of("SEATS_CHANGED").await;
    assert_eq!(
        freed["seats"],
        json!([{"seatId":"B2","status":"AVAILABLE"}])
    );
    assert_eq!(server.sweep().await.holds_expired, 0, "expired once");
    let hold_path = format!("/api/v1/holds/{}", r["holdId"].as_str().unwrap());
    let (_, h) = get(&c, &server, &hold_path, Some(&alice)).await;
    assert_eq!(h["status"], "EXPIRED");
    let (status, body) = post(
        &c,
        &server,
        &format!("{hold_path}/release"),
        Some(&alice),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("HOLD_NOT_ACTIVE"))
    );

    let (_, b) = hold(&c, &server, &bob, STUDIO, &["B2"]).await;
    assert_eq!(
        wait_terminal(&c, &server, &bob, b["requestId"].as_str().unwrap()).await["status"],
        "SUCCESS"
    );
}

/// With no sweep at all, expiry still frees seats: it is decided by time.
async fn expiry_needs_no_sweeper(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let (alice, bob) = (token("alice"), token("bob"));
    let (_, r) = hold(&c, &server, &alice, MATINEE_LATE, &["C4"]).await;
    let r = wait_terminal(&c, &server, &alice, r["requestId"].as_str().unwrap()).await;
    let hold_path = format!("/api/v1/holds/{}", r["holdId"].as_str().unwrap());

    // The instant before its expiry the hold still holds; from its expiry on, it does not.
    server.advance(Duration::seconds(299));
    assert_eq!(
        get(&c, &server, &hold_path, Some(&alice)).await.1["status"],
        "HELD"
    );
    assert_eq!(seat_status(&c, &server, MATINEE_LATE).await["C4"], "HELD");
    server.advance(Duration::seconds(2));
    assert_eq!(
        get(&c, &server, &hold_path, Some(&alice)).await.1["status"],
        "EXPIRED"
    );
    assert_eq!(
        seat_status(&c, &server, MATINEE_LATE).await["C4"],
        "AVAILABLE"
    );
    let (_, b) = hold(&c, &server, &bob, MATINEE_LATE, &["C4"]).await;
    assert_eq!(
        wait_terminal(&c, &server, &bob, b["requestId"].as_str().unwrap()).await["status"],
        "SUCCESS"
    );
}

/// A request not decided before its deadline ends EXPIRED, and its owner is told; deciding it
/// later changes nothing.
async fn requests_waiting_past_their_deadline_expire(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let admin = admin_token("ops");
    let alice = token("alice");
    let mut ws = WsClient::connect(&server, &alice).await;
    pause_show(&c, &server, STUDIO, &admin).await;
    let (_, r) = hold(&c, &server, &alice, STUDIO, &["D1"]).await;
    let id = r["requestId"].as_str().unwrap();

    // Default request lifetime: 120 s.
    server.advance(Duration::seconds(119));
    assert_eq!(server.sweep().await.requests_expired, 0, "still in time");
    server.advance(Duration::seconds(2));
    assert_eq!(server.sweep().await.requests_expired, 1);
    let pushed = ws.next_of("BOOKING_RESULT").await;
    assert_eq!(
        (pushed["requestId"].as_str(), pushed["status"].as_str()),
        (Some(id), Some("EXPIRED"))
    );
    resume_show(&c, &server, STUDIO, &admin).await;
    server.drain().await;
    let done = wait_terminal(&c, &server, &alice, id).await;
    assert_eq!(done["status"], "EXPIRED");
    assert_eq!(seat_status(&c, &server, STUDIO).await["D1"], "AVAILABLE");
}

/// The sweep removes history older than `REQUEST_RETENTION_DAYS` (default 30): a released hold
/// and its request are gone after 30 days, a sale (its order, hold and request) is kept.
async fn history_past_the_retention_is_removed_and_sales_are_kept(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let (alice, bob) = (token("alice"), token("bob"));
    let hold_path = |id: &str| format!("/api/v1/holds/{id}");
    let released_hold = held(&c, &server, &alice, STUDIO, &["E1"]).await;
    let released_request = get(&c, &server, &hold_path(&released_hold), Some(&alice))
        .await
        .1["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = post(
        &c,
        &server,
        &format!("/api/v1/holds/{released_hold}/release"),
        Some(&alice),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sold_hold = held(&c, &server, &bob, STUDIO, &["E2"]).await;
    let sold_request = get(&c, &server, &hold_path(&sold_hold), Some(&bob)).await.1["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    let order = order(&c, &server, &bob, &sold_hold).await;
    let order_id = order["orderId"].as_str().unwrap();
    let (status, paid) = pay(&c, &server, &bob, order_id, "tok_visa").await;
    assert_eq!(
        (status, paid["status"].as_str()),
        (200, Some("CONFIRMED")),
        "{paid}"
    );

    let recent = server.sweep().await;
    assert_eq!(recent.purged.requests, 0, "nothing is old yet: {recent:?}");
    server.advance(Duration::days(29));
    assert_eq!(server.sweep().await.purged.requests, 0, "29 days are kept");
    server.advance(Duration::days(2));
    let swept = server.sweep().await;
    assert!(
        swept.purged.holds >= 1 && swept.purged.requests >= 1,
        "{swept:?}"
    );

    let request_path = |id: &str| format!("/api/v1/booking-requests/{id}");
    let (status, _) = get(&c, &server, &request_path(&released_request), Some(&alice)).await;
    assert_eq!(
        status, 404,
        "a released hold's request is gone after the retention"
    );
    let (status, _) = get(&c, &server, &hold_path(&released_hold), Some(&alice)).await;
    assert_eq!(status, 404, "and so is the hold");
    let (status, kept) = get(&c, &server, &request_path(&sold_request), Some(&bob)).await;
    assert_eq!(
        (status, kept["status"].as_str()),
        (200, Some("SUCCESS")),
        "{kept}"
    );
    let (status, kept) = get(
        &c,
        &server,
        &format!("/api/v1/orders/{order_id}"),
        Some(&bob),
    )
    .await;
    assert_eq!(
        (status, kept["status"].as_str()),
        (200, Some("CONFIRMED")),
        "{kept}"
    );
    assert_eq!(kept["ticketCode"], paid["ticketCode"]);
    let (status, _) = get(&c, &server, &hold_path(&sold_hold), Some(&bob)).await;
    assert_eq!(status, 200, "a sale's hold is kept");
}

on_every_backend!(
    expired_holds_free_their_seats_and_subscribers_hear_it,
    expiry_needs_no_sweeper,
    requests_waiting_past_their_deadline_expire,
    history_past_the_retention_is_removed_and_sales_are_kept,
);
