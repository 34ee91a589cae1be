//! The purchase on the real `seatbook` binary, on both backends: the paths a buyer can take
//! from a held seat (paid to a ticket, declined, cancelled and refunded, left unpaid past its
//! deadline), other users' orders, bad input on the order routes, and the source system's
//! double sale (a hold TTL and its Redis lock lapse while the order waits) as a test. The same
//! paths run in process in `tests/orders.rs`, with faults injected; this file proves the
//! shipped binary does them.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

#[macro_use]
mod support;

use serde_json::{Value, json};
use support::*;

/// A hold request for `seats` by `token`, waited for; the decided request.
async fn decided(c: &reqwest::Client, server: &Server, token: &str, seats: &[&str]) -> Value {
    let (status, accepted) = hold(c, server, token, STUDIO, seats).await;
    assert_eq!(status, 202, "{accepted}");
    wait_terminal(c, server, token, accepted["requestId"].as_str().unwrap()).await
}

/// A hold that must be granted: its hold id.
async fn granted(c: &reqwest::Client, server: &Server, token: &str, seats: &[&str]) -> String {
    let result = decided(c, server, token, seats).await;
    assert_eq!(result["status"], "SUCCESS", "{result}");
    result["holdId"].as_str().unwrap().to_owned()
}

/// An order for the hold: its id.
async fn ordered(c: &reqwest::Client, server: &Server, token: &str, hold: &str) -> Value {
    let (status, order) = post(
        c,
        server,
        "/api/v1/orders",
        Some(token),
        json!({ "holdId": hold }),
    )
    .await;
    assert_eq!(
        (status, order["status"].as_str()),
        (201, Some("PAYMENT_PENDING")),
        "{order}"
    );
    order
}

async fn pay(
    c: &reqwest::Client,
    server: &Server,
    token: &str,
    order: &str,
    card: &str,
) -> (u16, Value) {
    let path = format!("/api/v1/orders/{order}/confirm-payment");
    post(
        c,
        server,
        &path,
        Some(token),
        json!({ "paymentToken": card }),
    )
    .await
}

/// Paid to a ticket (BOOKED, listed, the owner's only), cancelled and refunded (AVAILABLE
/// again), declined (FAILED, the seat free for the next buyer), and bad input answered 4xx.
async fn buying_paying_declining_and_cancelling(backend: Backend) {
    let server = Server::start_on(backend, &[]).await;
    let c = client();
    let (alice, mallory) = (token("alice"), token("mallory"));

    let hold = granted(&c, &server, &alice, &["D1", "D2"]).await;
    let order = ordered(&c, &server, &alice, &hold).await;
    let id = order["orderId"].as_str().unwrap();
    let (status, paid) = pay(&c, &server, &alice, id, "tok_visa").await;
    assert_eq!(
        (status, paid["status"].as_str()),
        (200, Some("CONFIRMED")),
        "{paid}"
    );
    assert!(
        paid["ticketCode"]
            .as_str()
            .is_some_and(|t| t.starts_with("TKT-")),
        "{paid}"
    );
    let seats = seat_status(&c, &server, STUDIO).await;
    assert_eq!(
        (seats["D1"].as_str(), seats["D2"].as_str()),
        ("BOOKED", "BOOKED")
    );
    let (_, mine) = get(&c, &server, "/api/v1/me/orders", Some(&alice)).await;
    assert_eq!(mine["orders"][0]["orderId"], order["orderId"], "{mine}");

    // Another user's order does not exist for them.
    let order_path = format!("/api/v1/orders/{id}");
    assert_eq!(get(&c, &server, &order_path, Some(&mallory)).await.0, 404);
    assert_eq!(pay(&c, &server, &mallory, id, "tok_visa").await.0, 404);
    let cancel = format!("/api/v1/orders/{id}/cancel");
    assert_eq!(
        post(&c, &server, &cancel, Some(&mallory), json!({}))
            .await
            .0,
        404
    );
    let (_, theirs) = get(&c, &server, "/api/v1/me/orders", Some(&mallory)).await;
    assert_eq!(theirs["orders"], json!([]));

    // Cancelled: refunded first, then the seats are free.
    let (status, cancelled) = post(&c, &server, &cancel, Some(&alice), json!({})).await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (200, Some("CANCELLED")),
        "{cancelled}"
    );
    let (_, read) = get(&c, &server, &order_path, Some(&alice)).await;
    let kinds: Vec<(&str, &str)> = read["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["kind"].as_str().unwrap(), p["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [("CHARGE", "SUCCEEDED"), ("REFUND", "SUCCEEDED")],
        "{read}"
    );
    assert_eq!(seat_status(&c, &server, STUDIO).await["D1"], "AVAILABLE");

    // Declined: 402, the order FAILED, and the seat goes to the next buyer.
    let erin = token("erin");
    let hold = granted(&c, &server, &erin, &["E1"]).await;
    let order = ordered(&c, &server, &erin, &hold).await;
    let id = order["orderId"].as_str().unwrap();
    let (status, declined) = pay(&c, &server, &erin, id, "tok_decline").await;
    assert_eq!(
        (status, declined["error"]["code"].as_str()),
        (402, Some("PAYMENT_DECLINED")),
        "{declined}"
    );
    let (_, failed) = get(&c, &server, &format!("/api/v1/orders/{id}"), Some(&erin)).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    granted(&c, &server, &token("frank"), &["E1"]).await;

    // Bad input on the order routes: a 4xx with its code, never a 5xx.
    let hostile = token("hostile");
    for (path, body) in [
        (
            "/api/v1/orders".to_owned(),
            json!({ "holdId": "not-a-uuid" }),
        ),
        ("/api/v1/orders".to_owned(), json!({})),
        ("/api/v1/orders".to_owned(), json!([1, 2, 3])),
        (
            "/api/v1/orders".to_owned(),
            json!({ "holdId": "00000000-0000-0000-0000-000000000000" }),
        ),
        (
            format!("/api/v1/orders/{id}/confirm-payment"),
            json!({ "paymentToken": 42 }),
        ),
        ("/api/v1/orders/not-a-uuid/cancel".to_owned(), json!({})),
    ] {
        let (status, answer) = post(&c, &server, &path, Some(&hostile), body).await;
        assert!(
            (400..500).contains(&status),
            "POST {path}: {status} {answer}"
        );
        assert!(answer["error"]["code"].is_string(), "POST {path}: {answer}");
    }
    for path in [
        "/api/v1/orders/not-a-uuid",
        "/api/v1/me/orders?limit=0",
        "/api/v1/me/orders?cursor=x%27--",
    ] {
        let (status, answer) = get(&c, &server, path, Some(&hostile)).await;
        assert!(
            (400..500).contains(&status),
            "GET {path}: {status} {answer}"
        );
        assert!(answer["error"]["code"].is_string(), "GET {path}: {answer}");
    }
}

/// Waits until `at` (an RFC 3339 instant the server gave) has passed.
async fn wait_past(at: &Value) {
    let at: chrono::DateTime<chrono::Utc> = at.as_str().expect("an instant").parse().unwrap();
    while chrono::Utc::now() <= at + chrono::Duration::milliseconds(200) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The source system's double sale, as a test: with a 3 s hold TTL the hold and its Redis lock
/// lapse while the order waits for payment, a second buyer asks for the seat and is refused, the
/// first pays, and the seat is sold once. Then an order left unpaid past its own deadline:
/// payment refused, and the seat can be held by someone else.
async fn an_order_keeps_its_seats_past_the_hold_ttl_and_ends_at_its_own_deadline(backend: Backend) {
    let server = Server::start_on(
        backend,
        &[
            ("HOLD_TTL_SECONDS", "3"),
            ("ORDER_PAYMENT_TTL_SECONDS", "10"),
        ],
    )
    .await;
    let c = client();
    let (alice, bob) = (token("alice"), token("bob"));

    let result = decided(&c, &server, &alice, &["B3"]).await;
    assert_eq!(result["status"], "SUCCESS", "{result}");
    let order = ordered(&c, &server, &alice, result["holdId"].as_str().unwrap()).await;
    wait_past(&result["expiresAt"]).await;
    if let Some(redis) = server.redis() {
        // The lock mirrored in Redis is gone too, as when its TTL ran out.
        redis.flush();
    }
    let rival = decided(&c, &server, &bob, &["B3"]).await;
    assert_eq!(rival["status"], "FAILED", "{rival}");
    assert_eq!(rival["unavailableSeatIds"], json!(["B3"]), "{rival}");
    let (status, paid) = pay(
        &c,
        &server,
        &alice,
        order["orderId"].as_str().unwrap(),
        "tok_visa",
    )
    .await;
    assert_eq!(
        (status, paid["status"].as_str()),
        (200, Some("CONFIRMED")),
        "{paid}"
    );
    assert_eq!(seat_status(&c, &server, STUDIO).await["B3"], "BOOKED");

    // Unpaid past its deadline: refused, and the seat is someone else's to hold.
    let carol = token("carol");
    let hold = granted(&c, &server, &carol, &["C2"]).await;
    let order = ordered(&c, &server, &carol, &hold).await;
    wait_past(&order["expiresAt"]).await;
    let (status, late) = pay(
        &c,
        &server,
        &carol,
        order["orderId"].as_str().unwrap(),
        "tok_visa",
    )
    .await;
    assert_eq!(
        (status, late["error"]["code"].as_str()),
        (409, Some("ORDER_EXPIRED")),
        "{late}"
    );
    granted(&c, &server, &token("dave"), &["C2"]).await;
}

on_every_backend!(
    buying_paying_declining_and_cancelling,
    an_order_keeps_its_seats_past_the_hold_ttl_and_ends_at_its_own_deadline,
);
