//! The purchase, over HTTP and WebSocket against the app in process, on both backends: hold →
//! order → payment → ticket, the seat map BOOKED (also after the mirror is lost); a declined
//! card; an order that runs out; cancel and refund; the source system's double sale (a seat lock
//! lapsing while its order waits for payment) proven impossible; concurrent confirm and cancel;
//! a provider that is down or loses its answers, and the recovery that settles what it left.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

#[macro_use]
mod support;

use booking_app::BookingConfig;
use booking_core::ports::PaymentProvider;
use booking_testkit::faults::{PaymentFault, UnreliablePayments};
use chrono::Duration;
use serde_json::{Value, json};
use std::sync::Arc;
use support::*;

async fn cancel(
    c: &reqwest::Client,
    server: &TestApp,
    token: &str,
    order_id: &str,
) -> (u16, Value) {
    post(
        c,
        server,
        &format!("/api/v1/orders/{order_id}/cancel"),
        Some(token),
        json!({}),
    )
    .await
}

fn with_config(backend: Backend, config: BookingConfig) -> TestAppOptions {
    TestAppOptions {
        config,
        ..TestAppOptions::on(backend)
    }
}

async fn purchase_end_to_end(backend: Backend) {
    let mut server = TestApp::start(backend).await;
    let c = client();
    let alice = token("alice");
    let mut ws = WsClient::connect(&server, &alice).await;
    let mut watcher = WsClient::connect(&server, &token("watcher")).await;
    watcher.subscribe(GRAND_HALL).await;

    let hold_id = held(&c, &server, &alice, GRAND_HALL, &["D5", "D6"]).await;
    watcher.next_of("SEATS_CHANGED").await;
    let created = order(&c, &server, &alice, &hold_id).await;
    assert_eq!(created["status"], "PAYMENT_PENDING");
    assert_eq!(created["holdId"], hold_id.as_str());
    assert_eq!(created["showId"], GRAND_HALL);
    assert_eq!(created["seatIds"], json!(["D5", "D6"]));
    assert!(created["amountCents"].as_i64().unwrap() > 0);
    assert_eq!(created["currency"], "EUR");
    assert!(created["expiresAt"].is_string());
    let order_id = created["orderId"].as_str().unwrap().to_owned();
    let amount = created["amountCents"].as_i64().unwrap();

    let (_, h) = get(
        &c,
        &server,
        &format!("/api/v1/holds/{hold_id}"),
        Some(&alice),
    )
    .await;
    assert_eq!(h["status"], "CONVERTED");
    assert_eq!(seat_status(&c, &server, GRAND_HALL).await["D5"], "HELD");
    // A hold converts once.
    let (status, again) = post(
        &c,
        &server,
        "/api/v1/orders",
        Some(&alice),
        json!({ "holdId": hold_id }),
    )
    .await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("HOLD_NOT_ACTIVE")),
        "{again}"
    );
    assert_eq!(
        again["error"]["details"],
        json!({"status": "CONVERTED", "orderId": order_id})
    );

    // Nobody else sees or touches it.
    let mallory = token("mallory");
    let (status, _) = get(
        &c,
        &server,
        &format!("/api/v1/orders/{order_id}"),
        Some(&mallory),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = pay(&c, &server, &mallory, &order_id, "tok_visa").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("ORDER_NOT_FOUND"))
    );
    let (status, _) = cancel(&c, &server, &mallory, &order_id).await;
    assert_eq!(status, 404);
    let (_, theirs) = get(&c, &server, "/api/v1/me/orders", Some(&mallory)).await;
    assert_eq!(theirs["orders"], json!([]));

    let (status, paid) = pay(&c, &server, &alice, &order_id, "tok_visa").await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["status"], "CONFIRMED");
    let ticket = paid["ticketCode"].as_str().unwrap().to_owned();
    assert!(ticket.starts_with("TKT-"), "{ticket}");
    let pushed = ws.next_of("ORDER_UPDATED").await;
    assert_eq!(
        pushed,
        json!({"type":"ORDER_UPDATED","orderId":order_id,"status":"CONFIRMED","ticketCode":ticket})
    );
    let changed = watcher.next_of("SEATS_CHANGED").await;
    assert_eq!(
        changed["seats"],
        json!([{"seatId":"D5","status":"BOOKED"},{"seatId":"D6","status":"BOOKED"}])
    );
    assert_eq!(server.payments.balance_cents(), amount);

    let seats = seat_status(&c, &server, GRAND_HALL).await;
    assert_eq!(
        (seats["D5"].as_str(), seats["D6"].as_str()),
        ("BOOKED", "BOOKED")
    );
    // The mirror lost (Redis flushed): the cold rebuild must bring BOOKED back, and every hot read
    // after it must keep it.
    if let Some(redis) = server.redis() {
        redis.flush();
    }
    for _ in 0..2 {
        assert_eq!(seat_status(&c, &server, GRAND_HALL).await["D5"], "BOOKED");
    }
    // Paid once: a second confirm is refused and charges nothing.
    let (status, body) = pay(&c, &server, &alice, &order_id, "tok_visa").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("ORDER_NOT_PENDING")),
        "{body}"
    );
    assert_eq!(body["error"]["details"]["status"], "CONFIRMED");
    assert_eq!(server.payments.movements().len(), 1);
    // Nobody else can hold a sold seat, long after every hold TTL.
    server.advance(Duration::hours(2));
    let bob = token("bob");
    let (_, accepted) = hold(&c, &server, &bob, GRAND_HALL, &["D5"]).await;
    server.drain().await;
    let refused = wait_terminal(&c, &server, &bob, accepted["requestId"].as_str().unwrap()).await;
    assert_eq!(refused["status"], "FAILED", "{refused}");

    let (_, listed) = get(&c, &server, "/api/v1/me/orders", Some(&alice)).await;
    assert_eq!(listed["orders"][0]["orderId"], order_id.as_str());
    assert_eq!(listed["orders"][0]["ticketCode"], ticket.as_str());

    // Cancel a confirmed order: refunded through the provider, seats free.
    let (status, cancelled) = cancel(&c, &server, &alice, &order_id).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(server.payments.balance_cents(), 0);
    assert_eq!(ws.next_of("ORDER_UPDATED").await["status"], "CANCELLED");
    assert_eq!(
        seat_status(&c, &server, GRAND_HALL).await["D5"],
        "AVAILABLE"
    );
    let (_, read) = get(
        &c,
        &server,
        &format!("/api/v1/orders/{order_id}"),
        Some(&alice),
    )
    .await;
    let payments: Vec<_> = read["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap(),
                p["status"].as_str().unwrap(),
                p["amountCents"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        payments,
        vec![
            ("CHARGE", "SUCCEEDED", amount),
            ("REFUND", "SUCCEEDED", amount)
        ]
    );
    assert!(
        read["payments"][0].get("token").is_none(),
        "tokens stay inside: {read}"
    );
    let (status, body) = cancel(&c, &server, &alice, &order_id).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("ORDER_NOT_CANCELLABLE"))
    );
}

async fn declined_card_fails_the_order_and_frees_its_seats(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let alice = token("alice");
    let mut ws = WsClient::connect(&server, &alice).await;
    let hold_id = held(&c, &server, &alice, STUDIO, &["B1"]).await;
    let order_id = order(&c, &server, &alice, &hold_id).await["orderId"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, body) = pay(&c, &server, &alice, &order_id, "tok_decline").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (402, Some("PAYMENT_DECLINED")),
        "{body}"
    );
    assert_eq!(body["error"]["details"]["orderId"], order_id.as_str());
    assert_eq!(body["error"]["details"]["status"], "FAILED");
    assert_eq!(ws.next_of("ORDER_UPDATED").await["status"], "FAILED");
    let (_, read) = get(
        &c,
        &server,
        &format!("/api/v1/orders/{order_id}"),
        Some(&alice),
    )
    .await;
    assert_eq!(read["status"], "FAILED");
    assert_eq!(read["payments"][0]["status"], "DECLINED");
    assert_eq!(seat_status(&c, &server, STUDIO).await["B1"], "AVAILABLE");
    assert_eq!(server.payments.balance_cents(), 0);
    let (status, body) = pay(&c, &server, &alice, &order_id, "tok_visa").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("ORDER_NOT_PENDING"))
    );
    // The seat is free for the next buyer at once.
    held(&c, &server, &token("bob"), STUDIO, &["B1"]).await;
}

/// The double sale of the source system: a 2 s hold TTL; the order is made; the hold's TTL and
/// the seat's cache lock lapse; a second user asks for the seat and is refused; the first user
/// pays. The seat is sold once.
async fn a_lapsed_hold_ttl_cannot_sell_an_ordered_seat_twice(backend: Backend) {
    let config = BookingConfig {
        hold_ttl: Duration::seconds(2),
        ..BookingConfig::default()
    };
    let mut server = TestApp::start_with(with_config(backend, config)).await;
    let c = client();
    let (alice, bob) = (token("alice"), token("bob"));
    let hold_id = held(&c, &server, &alice, STUDIO, &["B3"]).await;
    let order_id = order(&c, &server, &alice, &hold_id).await["orderId"]
        .as_str()
        .unwrap()
        .to_owned();

    server.advance(Duration::seconds(3));
    if let Some(redis) = server.redis() {
        // The lock's TTL lapsing in Redis, as it did in the source system.
        redis.flush();
    }
    server.sweep().await;
    let (_, accepted) = hold(&c, &server, &bob, STUDIO, &["B3"]).await;
    server.drain().await;
    let refused = wait_terminal(&c, &server, &bob, accepted["requestId"].as_str().unwrap()).await;
    assert_eq!(refused["status"], "FAILED", "{refused}");
    assert_eq!(refused["unavailableSeatIds"], json!(["B3"]));

    let (status, paid) = pay(&c, &server, &alice, &order_id, "tok_visa").await;
    assert_eq!(
        (status, paid["status"].as_str()),
        (200, Some("CONFIRMED")),
        "{paid}"
    );
    assert_eq!(seat_status(&c, &server, STUDIO).await["B3"], "BOOKED");
    assert_eq!(server.payments.movements().len(), 1);
}

/// Payment after the order's deadline is refused without calling the provider, and the seat can
/// then be held by someone else; the sweep writes EXPIRED down and tells the owner.
async fn payment_after_the_deadline_is_refused(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let alice = token("alice");
    let mut ws = WsClient::connect(&server, &alice).await;
    let hold_id = held(&c, &server, &alice, STUDIO, &["C2"]).await;
    let order_id = order(&c, &server, &alice, &hold_id).await["orderId"]
        .as_str()
        .unwrap()
        .to_owned();
    // Another unpaid order, whose seat nobody takes meanwhile.
    let carol = token("carol");
    let carols_hold = held(&c, &server, &carol, STUDIO, &["C3"]).await;
    order(&c, &server, &carol, &carols_hold).await;

    server.advance(BookingConfig::default().order_payment_ttl + Duration::seconds(1));
    let (status, body) = pay(&c, &server, &alice, &order_id, "tok_visa").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("ORDER_EXPIRED")),
        "{body}"
    );
    assert!(
        server.payments.movements().is_empty(),
        "the provider must not be called"
    );
    let (_, read) = get(
        &c,
        &server,
        &format!("/api/v1/orders/{order_id}"),
        Some(&alice),
    )
    .await;
    assert_eq!(
        read["status"], "EXPIRED",
        "expired by time, before any sweep"
    );
    assert_eq!(read["payments"], json!([]));
    assert_eq!(seat_status(&c, &server, STUDIO).await["C2"], "AVAILABLE");
    held(&c, &server, &token("bob"), STUDIO, &["C2"]).await;

    // The sweep writes both down and tells the show's subscribers that C3 is free; C2 is
    // bob's by now, and nobody is told otherwise.
    let mut watcher = WsClient::connect(&server, &token("watcher")).await;
    watcher.subscribe(STUDIO).await;
    assert_eq!(server.sweep().await.orders_expired, 2);
    assert_eq!(ws.next_of("ORDER_UPDATED").await["status"], "EXPIRED");
    watcher.send(json!({"action": "ping"})).await;
    let mut announced = std::collections::HashMap::new();
    loop {
        let message = watcher.next_json().await;
        if message["type"] == "pong" {
            break;
        }
        if message["type"] == "SEATS_CHANGED" {
            for seat in message["seats"].as_array().unwrap() {
                announced.insert(
                    seat["seatId"].as_str().unwrap().to_owned(),
                    seat["status"].as_str().unwrap().to_owned(),
                );
            }
        }
    }
    assert_eq!(
        announced.get("C3").map(String::as_str),
        Some("AVAILABLE"),
        "{announced:?}"
    );
    assert_ne!(
        announced.get("C2").map(String::as_str),
        Some("AVAILABLE"),
        "C2 is bob's: {announced:?}"
    );
    assert_eq!(seat_status(&c, &server, STUDIO).await["C2"], "HELD");
    let (status, body) = cancel(&c, &server, &alice, &order_id).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("ORDER_NOT_CANCELLABLE"))
    );
}

/// Confirm and cancel of one order, sent at the same moment, leave exactly one outcome, and the
/// money matches it.
async fn concurrent_confirm_and_cancel_leave_one_outcome(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let mut confirmed_amount = 0;
    for (i, seat) in ["D1", "D2", "D3", "D4", "D5", "D6"].iter().enumerate() {
        let user = token(&format!("racer-{i}"));
        let hold_id = held(&c, &server, &user, STUDIO, &[seat]).await;
        let created = order(&c, &server, &user, &hold_id).await;
        let order_id = created["orderId"].as_str().unwrap().to_owned();
        let (paid, cancelled) = tokio::join!(
            pay(&c, &server, &user, &order_id, "tok_visa"),
            cancel(&c, &server, &user, &order_id)
        );
        let (_, read) = get(
            &c,
            &server,
            &format!("/api/v1/orders/{order_id}"),
            Some(&user),
        )
        .await;
        match read["status"].as_str().unwrap() {
            "CONFIRMED" => {
                assert_eq!(paid.0, 200, "{paid:?}");
                assert_eq!(cancelled.0, 409, "{cancelled:?}");
                confirmed_amount += created["amountCents"].as_i64().unwrap();
                assert_eq!(seat_status(&c, &server, STUDIO).await[*seat], "BOOKED");
            }
            "CANCELLED" => {
                // Either the cancel came first (the confirm is refused) or after the payment
                // (then it refunded it).
                assert_eq!(cancelled.0, 200, "{cancelled:?}");
                assert_eq!(seat_status(&c, &server, STUDIO).await[*seat], "AVAILABLE");
            }
            other => panic!("order ended {other}: {read}"),
        }
    }
    assert_eq!(server.payments.balance_cents(), confirmed_amount);
}

/// The provider down: 503, nothing changed, and a retry charges once. The provider losing its
/// answer after charging: the retry re-sends the same charge (never a second one); with no retry
/// at all (the caller crashed), recovery settles it: the order is confirmed, or refunded if its
/// seats went to someone else meanwhile.
async fn provider_failures_never_charge_twice_or_keep_money(backend: Backend) {
    let mock = Arc::new(booking_app::MockPaymentProvider::new());
    let provider = Arc::new(UnreliablePayments::new(mock.clone()));
    let server = TestApp::start_with(TestAppOptions {
        payments: Some(provider.clone() as Arc<dyn PaymentProvider>),
        ..TestAppOptions::on(backend)
    })
    .await;
    let c = client();
    let alice = token("alice");
    let mut ws = WsClient::connect(&server, &alice).await;

    // Down, then back.
    let hold_id = held(&c, &server, &alice, STUDIO, &["E1"]).await;
    let order_id = order(&c, &server, &alice, &hold_id).await["orderId"]
        .as_str()
        .unwrap()
        .to_owned();
    provider.set(PaymentFault::Down);
    let (status, body) = pay(&c, &server, &alice, &order_id, "tok_visa").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("PAYMENT_PROVIDER_UNAVAILABLE")),
        "{body}"
    );
    let (_, read) = get(
        &c,
        &server,
        &format!("/api/v1/orders/{order_id}"),
        Some(&alice),
    )
    .await;
    assert_eq!(read["status"], "PAYMENT_PENDING");
    assert!(mock.movements().is_empty());
    provider.set(PaymentFault::None);
    let (status, paid) = pay(&c, &server, &alice, &order_id, "tok_visa").await;
    assert_eq!(
        (status, paid["status"].as_str()),
        (200, Some("CONFIRMED")),
        "{paid}"
    );
    assert_eq!(mock.movements().len(), 1);

    // The answer lost after the charge; the client retries.
    let hold_id = held(&c, &server, &alice, STUDIO, &["E2"]).await;
    let order_id = order(&c, &server, &alice, &hold_id).await["orderId"]
        .as_str()
        .unwrap()
        .to_owned();
    provider.set(PaymentFault::LoseAnswers);
    let (status, _) = pay(&c, &server, &alice, &order_id, "tok_visa").await;
    assert_eq!(status, 503);
    assert_eq!(mock.movements().len(), 2, "the charge went through");
    // While in doubt the order cannot be cancelled (the charge decides).
    let (status, body) = cancel(&c, &server, &alice, &order_id).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("PAYMENT_IN_PROGRESS"))
    );
    provider.set(PaymentFault::None);
    let (status, paid) = pay(&c, &server, &alice, &order_id, "tok_other").await;
    assert_eq!(
        (status, paid["status"].as_str()),
        (200, Some("CONFIRMED")),
        "{paid}"
    );
    assert_eq!(
        mock.movements().len(),
        2,
        "the retry re-sent the first charge"
    );

    // The answer lost and nobody retries (the process died): recovery confirms it.
    let hold_id = held(&c, &server, &alice, STUDIO, &["E3"]).await;
    let order_id = order(&c, &server, &alice, &hold_id).await["orderId"]
        .as_str()
        .unwrap()
        .to_owned();
    provider.set(PaymentFault::LoseAnswers);
    assert_eq!(pay(&c, &server, &alice, &order_id, "tok_visa").await.0, 503);
    provider.set(PaymentFault::None);
    server.advance(BookingConfig::default().payment_window() + Duration::seconds(1));
    while !ws
        .drain_for(std::time::Duration::from_millis(50))
        .await
        .is_empty()
    {}
    let report = server.sweep().await;
    assert_eq!(report.payments_settled.confirmed, 1, "{report:?}");
    let pushed = ws.next_of("ORDER_UPDATED").await;
    assert_eq!(
        (pushed["orderId"].as_str(), pushed["status"].as_str()),
        (Some(order_id.as_str()), Some("CONFIRMED"))
    );
    assert_eq!(mock.movements().len(), 3);

    // Charged, the answer lost, and by the time recovery runs the order is over and its seat
    // sold to someone else: the money goes back.
    let hold_id = held(&c, &server, &alice, STUDIO, &["E4"]).await;
    let order_id = order(&c, &server, &alice, &hold_id).await["orderId"]
        .as_str()
        .unwrap()
        .to_owned();
    provider.set(PaymentFault::LoseAnswers);
    assert_eq!(pay(&c, &server, &alice, &order_id, "tok_visa").await.0, 503);
    provider.set(PaymentFault::Down);
    server.advance(
        BookingConfig::default().order_payment_ttl + BookingConfig::default().payment_window(),
    );
    held(&c, &server, &token("bob"), STUDIO, &["E4"]).await;
    let report = server.sweep().await;
    assert_eq!(report.orders_expired, 1, "{report:?}");
    provider.set(PaymentFault::None);
    let report = server.sweep().await;
    assert_eq!(report.payments_settled.refunded, 1, "{report:?}");
    let (_, read) = get(
        &c,
        &server,
        &format!("/api/v1/orders/{order_id}"),
        Some(&alice),
    )
    .await;
    assert_eq!(read["status"], "EXPIRED", "{read}");
    let kinds: Vec<_> = read["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["kind"].as_str().unwrap(), p["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        vec![("CHARGE", "SUCCEEDED"), ("REFUND", "SUCCEEDED")]
    );
    let kept: i64 = mock.balance_cents();
    let three_tickets = 3 * read["amountCents"].as_i64().unwrap();
    assert_eq!(
        kept, three_tickets,
        "money kept only for the three tickets sold"
    );
}

/// A charge that started just before the deadline, went through and lost its answer is settled
/// by recovery after its payment window: its seats ran out by time but nobody took them, so the
/// order is confirmed, not refunded.
async fn recovery_confirms_a_late_charge_whose_seats_nobody_took(backend: Backend) {
    let config = BookingConfig {
        order_payment_ttl: Duration::seconds(60),
        ..BookingConfig::default()
    };
    let window = config.payment_window();
    let mock = Arc::new(booking_app::MockPaymentProvider::new());
    let provider = Arc::new(UnreliablePayments::new(mock.clone()));
    let server = TestApp::start_with(TestAppOptions {
        payments: Some(provider.clone() as Arc<dyn PaymentProvider>),
        ..with_config(backend, config)
    })
    .await;
    let c = client();
    let alice = token("alice");
    let hold_id = held(&c, &server, &alice, STUDIO, &["A5"]).await;
    let order_id = order(&c, &server, &alice, &hold_id).await["orderId"]
        .as_str()
        .unwrap()
        .to_owned();
    server.advance(Duration::seconds(55));
    provider.set(PaymentFault::LoseAnswers);
    assert_eq!(pay(&c, &server, &alice, &order_id, "tok_visa").await.0, 503);
    provider.set(PaymentFault::None);
    server.advance(window + Duration::seconds(1));
    let report = server.sweep().await;
    assert_eq!(report.payments_settled.confirmed, 1, "{report:?}");
    assert_eq!(report.orders_expired, 0, "{report:?}");
    let (_, read) = get(
        &c,
        &server,
        &format!("/api/v1/orders/{order_id}"),
        Some(&alice),
    )
    .await;
    assert_eq!(read["status"], "CONFIRMED", "{read}");
    assert_eq!(seat_status(&c, &server, STUDIO).await["A5"], "BOOKED");
    assert_eq!(mock.balance_cents(), read["amountCents"].as_i64().unwrap());
}

/// A hold that runs out is announced to its owner.
async fn an_expired_hold_is_pushed_to_its_owner(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let alice = token("alice");
    let mut ws = WsClient::connect(&server, &alice).await;
    let hold_id = held(&c, &server, &alice, STUDIO, &["F1", "F2"]).await;
    server.advance(BookingConfig::default().hold_ttl + Duration::seconds(1));
    assert_eq!(server.sweep().await.holds_expired, 1);
    let pushed = ws.next_of("HOLD_EXPIRED").await;
    assert_eq!(
        pushed,
        json!({"type":"HOLD_EXPIRED","holdId":hold_id,"showId":STUDIO,"seatIds":["F1","F2"]})
    );
    let (status, body) = post(
        &c,
        &server,
        "/api/v1/orders",
        Some(&alice),
        json!({ "holdId": hold_id }),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("HOLD_NOT_ACTIVE"))
    );
    assert_eq!(body["error"]["details"]["status"], "EXPIRED");
}

/// `GET /me/orders`: newest first, in pages joined by a cursor, none missed or repeated.
async fn my_orders_are_paginated_newest_first(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let alice = token("alice");
    let mut made = Vec::new();
    for seat in ["G1", "G2", "G3", "G4", "G5"] {
        let hold_id = held(&c, &server, &alice, STUDIO, &[seat]).await;
        made.push(
            order(&c, &server, &alice, &hold_id).await["orderId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        server.advance(Duration::milliseconds(5));
    }
    made.reverse();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/me/orders?limit=2&cursor={c}"),
            None => "/api/v1/me/orders?limit=2".to_owned(),
        };
        let (status, page) = get(&c, &server, &path, Some(&alice)).await;
        assert_eq!(status, 200, "{page}");
        let orders = page["orders"].as_array().unwrap();
        assert!(orders.len() <= 2);
        seen.extend(
            orders
                .iter()
                .map(|o| o["orderId"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, made);
}

/// Bad input on every purchase route: a clear 4xx with a code, never a 5xx, nothing written.
async fn bad_purchase_input_gets_a_clear_4xx(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let alice = token("alice");
    let hold_id = held(&c, &server, &alice, STUDIO, &["H1"]).await;
    let order_id = order(&c, &server, &alice, &hold_id).await["orderId"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_hold = held(&c, &server, &token("bob"), STUDIO, &["H2"]).await;
    let confirm = format!("/api/v1/orders/{order_id}/confirm-payment");
    let long_token = "t".repeat(300);
    let cases: Vec<(&str, String, Option<Value>, u16, &str)> = vec![
        (
            "POST",
            "/api/v1/orders".into(),
            Some(json!({})),
            400,
            "INVALID_REQUEST",
        ),
        (
            "POST",
            "/api/v1/orders".into(),
            Some(json!({ "holdId": 7 })),
            400,
            "INVALID_REQUEST",
        ),
        (
            "POST",
            "/api/v1/orders".into(),
            Some(json!({ "holdId": "'; DROP TABLE orders; --" })),
            404,
            "HOLD_NOT_FOUND",
        ),
        (
            "POST",
            "/api/v1/orders".into(),
            Some(json!({ "holdId": bob_hold })),
            404,
            "HOLD_NOT_FOUND",
        ),
        (
            "POST",
            "/api/v1/orders".into(),
            Some(json!({ "holdId": "x".repeat(20_000) })),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "POST",
            confirm.clone(),
            Some(json!({})),
            400,
            "INVALID_REQUEST",
        ),
        (
            "POST",
            confirm.clone(),
            Some(json!({ "paymentToken": "" })),
            422,
            "INVALID_PAYMENT_TOKEN",
        ),
        (
            "POST",
            confirm.clone(),
            Some(json!({ "paymentToken": long_token })),
            422,
            "INVALID_PAYMENT_TOKEN",
        ),
        (
            "POST",
            confirm.clone(),
            Some(json!({ "paymentToken": "tök" })),
            422,
            "INVALID_PAYMENT_TOKEN",
        ),
        (
            "POST",
            confirm.clone(),
            Some(json!({ "paymentToken": ["tok_visa"] })),
            400,
            "INVALID_REQUEST",
        ),
        (
            "POST",
            "/api/v1/orders/not-an-id/confirm-payment".into(),
            Some(json!({ "paymentToken": "tok_visa" })),
            404,
            "ORDER_NOT_FOUND",
        ),
        (
            "POST",
            "/api/v1/orders/not-an-id/cancel".into(),
            Some(json!({})),
            404,
            "ORDER_NOT_FOUND",
        ),
        (
            "GET",
            "/api/v1/orders/..%2F..%2Fetc".into(),
            None,
            404,
            "ORDER_NOT_FOUND",
        ),
        (
            "GET",
            "/api/v1/me/orders?limit=0".into(),
            None,
            400,
            "INVALID_LIMIT",
        ),
        (
            "GET",
            "/api/v1/me/orders?limit=1000".into(),
            None,
            400,
            "INVALID_LIMIT",
        ),
        (
            "GET",
            "/api/v1/me/orders?limit=abc".into(),
            None,
            400,
            "INVALID_QUERY",
        ),
        (
            "GET",
            "/api/v1/me/orders?cursor=garbage".into(),
            None,
            400,
            "INVALID_CURSOR",
        ),
        (
            "GET",
            "/api/v1/me/orders?cursor=1_2".into(),
            None,
            400,
            "INVALID_CURSOR",
        ),
        (
            "GET",
            "/api/v1/me/orders?sort=evil".into(),
            None,
            400,
            "INVALID_QUERY",
        ),
    ];
    for (method, path, body, want_status, want_code) in cases {
        let (status, answer) = match (method, body) {
            ("POST", Some(body)) => post(&c, &server, &path, Some(&alice), body).await,
            _ => get(&c, &server, &path, Some(&alice)).await,
        };
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (want_status, Some(want_code)),
            "{method} {path}: {answer}"
        );
    }
    // Without a token, every purchase route is 401.
    for path in [
        "/api/v1/orders".to_owned(),
        confirm.clone(),
        format!("/api/v1/orders/{order_id}/cancel"),
    ] {
        let (status, _) = post(
            &c,
            &server,
            &path,
            None,
            json!({ "holdId": hold_id, "paymentToken": "tok_visa" }),
        )
        .await;
        assert_eq!(status, 401, "{path}");
    }
    let (status, _) = get(&c, &server, "/api/v1/me/orders", None).await;
    assert_eq!(status, 401);
    // Nothing changed: the order still waits, and nothing was charged.
    let (_, read) = get(
        &c,
        &server,
        &format!("/api/v1/orders/{order_id}"),
        Some(&alice),
    )
    .await;
    assert_eq!(
        (
            read["status"].as_str(),
            read["payments"].as_array().map(Vec::len)
        ),
        (Some("PAYMENT_PENDING"), Some(0))
    );
    assert!(server.payments.movements().is_empty());
}

/// A provider that does not answer within `PAYMENT_TIMEOUT_SECONDS`: 503
/// `PAYMENT_PROVIDER_UNAVAILABLE`, the order still waits for payment and keeps its seat, and
/// nothing was charged (the call was abandoned); a retry once the provider answers charges once.
async fn a_provider_that_does_not_answer_in_time_is_a_503_and_a_retry_charges_once(
    backend: Backend,
) {
    let mock = Arc::new(booking_app::MockPaymentProvider::new());
    let provider = Arc::new(UnreliablePayments::new(mock.clone()));
    let mut options = TestAppOptions::on(backend);
    options.config.payment_timeout = Duration::seconds(1);
    options.payments = Some(provider.clone() as Arc<dyn PaymentProvider>);
    let server = TestApp::start_with(options).await;
    let c = client();
    let alice = token("alice");
    let hold_id = held(&c, &server, &alice, STUDIO, &["E3"]).await;
    let order_id = order(&c, &server, &alice, &hold_id).await["orderId"]
        .as_str()
        .unwrap()
        .to_owned();

    provider.set(PaymentFault::Delay(std::time::Duration::from_secs(5)));
    let (status, body) = pay(&c, &server, &alice, &order_id, "tok_visa").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("PAYMENT_PROVIDER_UNAVAILABLE")),
        "{body}"
    );
    let (_, read) = get(
        &c,
        &server,
        &format!("/api/v1/orders/{order_id}"),
        Some(&alice),
    )
    .await;
    assert_eq!(read["status"], "PAYMENT_PENDING", "{read}");
    assert_eq!(seat_status(&c, &server, STUDIO).await["E3"], "HELD");
    assert!(
        mock.movements().is_empty(),
        "the abandoned call charged nothing"
    );

    provider.set(PaymentFault::None);
    let (status, paid) = pay(&c, &server, &alice, &order_id, "tok_visa").await;
    assert_eq!(
        (status, paid["status"].as_str()),
        (200, Some("CONFIRMED")),
        "{paid}"
    );
    assert_eq!(mock.movements().len(), 1, "charged once");
}

on_every_backend!(
    purchase_end_to_end,
    a_provider_that_does_not_answer_in_time_is_a_503_and_a_retry_charges_once,
    declined_card_fails_the_order_and_frees_its_seats,
    a_lapsed_hold_ttl_cannot_sell_an_ordered_seat_twice,
    payment_after_the_deadline_is_refused,
    concurrent_confirm_and_cancel_leave_one_outcome,
    provider_failures_never_charge_twice_or_keep_money,
    recovery_confirms_a_late_charge_whose_seats_nobody_took,
    an_expired_hold_is_pushed_to_its_owner,
    my_orders_are_paginated_newest_first,
    bad_purchase_input_gets_a_clear_4xx,
);
