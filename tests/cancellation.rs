//! Cancelling a show, as an operator does it, on both backends: everything the show had ends
//! (a waiting request FAILED, a hold released, an unpaid order cancelled, a paid one refunded,
//! a charge in flight refunded once it settles), everyone concerned is told, nothing new can
//! start, and the money all goes back. And a cancellation cut short right after its mark (a
//! crash) is finished anyway: by the decider, which refuses the show's requests, and by the sweep.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

#[macro_use]
mod support;

use booking_app::BookingConfig;
use booking_core::{Clock, ShowId};
use chrono::Duration;
use serde_json::{Value, json};
use support::*;

const REASON: &str = "Projector failure";
const MESSAGE: &str = "The show was cancelled: Projector failure";

async fn cancel(c: &reqwest::Client, server: &TestApp, admin: &str, body: Value) -> (u16, Value) {
    post(
        c,
        server,
        &format!("/api/v1/admin/shows/{STUDIO}/cancel"),
        Some(admin),
        body,
    )
    .await
}

async fn order_of(c: &reqwest::Client, server: &TestApp, token: &str, order_id: &str) -> Value {
    let (status, order) = get(
        c,
        server,
        &format!("/api/v1/orders/{order_id}"),
        Some(token),
    )
    .await;
    assert_eq!(status, 200, "{order}");
    order
}

/// Waits for a message of `kind`, skipping others.
async fn told(ws: &mut WsClient, kind: &str) -> Value {
    ws.next_of(kind).await
}

async fn a_cancelled_show_ends_everything_it_had_and_refunds_every_payment(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let admin = admin_token("operator");
    let (alice, bob, carol, dave, erin) = (
        token("alice"),
        token("bob"),
        token("carol"),
        token("dave"),
        token("erin"),
    );
    let mut alice_ws = WsClient::connect(&server, &alice).await;
    let mut carol_ws = WsClient::connect(&server, &carol).await;
    let mut watcher = WsClient::connect(&server, &token("watcher")).await;
    watcher.subscribe(STUDIO).await;

    let alice_hold = held(&c, &server, &alice, STUDIO, &["B2"]).await;
    let bob_hold = held(&c, &server, &bob, STUDIO, &["C1"]).await;
    let bob_order = order(&c, &server, &bob, &bob_hold).await;
    let carol_hold = held(&c, &server, &carol, STUDIO, &["C2"]).await;
    let carol_order = order(&c, &server, &carol, &carol_hold).await;
    let (status, paid) = pay(
        &c,
        &server,
        &carol,
        carol_order["orderId"].as_str().unwrap(),
        "tok_visa",
    )
    .await;
    assert_eq!(status, 200, "{paid}");
    let dave_hold = held(&c, &server, &dave, STUDIO, &["C3"]).await;
    let dave_order = order(&c, &server, &dave, &dave_hold).await;
    let dave_order_id = dave_order["orderId"].as_str().unwrap().to_owned();
    // Charged, but the answer is lost: the charge stays in flight.
    let (status, _) = pay(&c, &server, &dave, &dave_order_id, "tok_lose_answer").await;
    assert_eq!(status, 503);
    pause_show(&c, &server, STUDIO, &admin).await;
    let (status, waiting) = hold(&c, &server, &erin, STUDIO, &["D1"]).await;
    assert_eq!(status, 202, "{waiting}");
    let erin_request = waiting["requestId"].as_str().unwrap().to_owned();
    let charged = server.payments.balance_cents();
    assert!(charged > 0);
    watcher
        .drain_for(std::time::Duration::from_millis(50))
        .await;

    // Only an admin cancels, and the reason is checked like any input.
    let (status, _) = cancel(&c, &server, &alice, json!({ "reason": REASON })).await;
    assert_eq!(status, 403);
    let (status, refused) = cancel(&c, &server, &admin, json!({ "reason": "x".repeat(501) })).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("INVALID_REASON"))
    );
    let (status, refused) = cancel(&c, &server, &admin, json!({ "why": REASON })).await;
    assert_eq!(status, 400, "{refused}");
    let (status, refused) = post(
        &c,
        &server,
        &format!("/api/v1/admin/shows/{}/cancel", ShowId::new_random()),
        Some(&admin),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (404, Some("SHOW_NOT_FOUND"))
    );
    assert_eq!(
        get(
            &c,
            &server,
            &format!("/api/v1/shows/{STUDIO}/seatmap"),
            None
        )
        .await
        .1["status"],
        "SCHEDULED",
        "a refused cancel wrote nothing"
    );

    let movie = get(
        &c,
        &server,
        &format!("/api/v1/shows/{STUDIO}/seatmap"),
        None,
    )
    .await
    .1["movieId"]
        .as_str()
        .unwrap()
        .to_owned();
    let shows_on_sale = || async {
        let (status, days) = get(
            &c,
            &server,
            &format!("/api/v1/movies/{movie}/availability"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{days}");
        days["dates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["shows"].as_u64().unwrap())
            .sum::<u64>()
    };
    let listed_before = shows_on_sale().await;

    let (status, cancelled) = cancel(&c, &server, &admin, json!({ "reason": REASON })).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(
        shows_on_sale().await,
        listed_before - 1,
        "a cancelled show is no longer offered"
    );
    assert_eq!(cancelled["show"]["status"], "CANCELLED");
    assert_eq!(cancelled["show"]["cancellationReason"], REASON);
    assert_eq!(
        cancelled["woundUp"],
        json!({
            "requestsFailed": 1,
            "holdsReleased": 1,
            "ordersCancelled": 1,
            "ordersRefunded": 1,
            "ordersUnfinished": 1
        })
    );

    // The waiting request failed, and its owner can read why.
    let (_, request) = get(
        &c,
        &server,
        &format!("/api/v1/booking-requests/{erin_request}"),
        Some(&erin),
    )
    .await;
    assert_eq!(
        (request["status"].as_str(), request["message"].as_str()),
        (Some("FAILED"), Some(MESSAGE)),
        "{request}"
    );
    // The hold was released, and its owner told.
    let (_, released) = get(
        &c,
        &server,
        &format!("/api/v1/holds/{alice_hold}"),
        Some(&alice),
    )
    .await;
    assert_eq!(released["status"], "RELEASED", "{released}");
    assert_eq!(
        told(&mut alice_ws, "SHOW_CANCELLED").await,
        json!({ "type": "SHOW_CANCELLED", "showId": STUDIO, "reason": REASON })
    );
    // The unpaid order is cancelled; the paid one refunded, then cancelled.
    let bob_now = order_of(&c, &server, &bob, bob_order["orderId"].as_str().unwrap()).await;
    assert_eq!(
        (bob_now["status"].as_str(), bob_now["reason"].as_str()),
        (Some("CANCELLED"), Some(MESSAGE)),
        "{bob_now}"
    );
    let carol_now = order_of(
        &c,
        &server,
        &carol,
        carol_order["orderId"].as_str().unwrap(),
    )
    .await;
    assert_eq!(carol_now["status"], "CANCELLED", "{carol_now}");
    let refund = carol_now["payments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "REFUND")
        .cloned()
        .unwrap_or_else(|| panic!("a refund: {carol_now}"));
    assert_eq!(refund["status"], "SUCCEEDED", "{carol_now}");
    // (Pushes of earlier steps may still be on their way: wait for this one.)
    while told(&mut carol_ws, "ORDER_UPDATED").await["status"] != "CANCELLED" {}
    told(&mut carol_ws, "SHOW_CANCELLED").await;
    // Every seat it freed reads AVAILABLE, live and on the map; the order whose charge is in
    // flight keeps its seat until that charge settles.
    let mut freed = std::collections::BTreeSet::new();
    while freed.len() < 3 {
        let changed = told(&mut watcher, "SEATS_CHANGED").await;
        for seat in changed["seats"].as_array().unwrap() {
            if seat["status"] == "AVAILABLE" {
                freed.insert(seat["seatId"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(freed, ["B2", "C1", "C2"].map(String::from).into());
    let seats = seat_status(&c, &server, STUDIO).await;
    assert_eq!(
        ["B2", "C1", "C2", "C3"].map(|s| seats[s].as_str()),
        ["AVAILABLE", "AVAILABLE", "AVAILABLE", "HELD"]
    );

    // Nothing new starts: no hold request, no payment.
    let (status, refused) = hold(&c, &server, &bob, STUDIO, &["A1"]).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("SHOW_CANCELLED")),
        "{refused}"
    );
    assert_eq!(refused["error"]["details"]["showId"], STUDIO);
    let (status, refused) = pay(&c, &server, &dave, &dave_order_id, "tok_visa").await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("SHOW_CANCELLED")),
        "{refused}"
    );
    // An order that is over answers as it always does.
    let (status, refused) = pay(
        &c,
        &server,
        &bob,
        bob_order["orderId"].as_str().unwrap(),
        "tok_visa",
    )
    .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("ORDER_NOT_PENDING")),
        "{refused}"
    );
    let (_, map) = get(
        &c,
        &server,
        &format!("/api/v1/shows/{STUDIO}/seatmap"),
        None,
    )
    .await;
    assert_eq!(
        (map["status"].as_str(), map["cancellationReason"].as_str()),
        (Some("CANCELLED"), Some(REASON))
    );
    // Nor any change to it.
    let (status, refused) = put(
        &c,
        &server,
        &format!("/api/v1/admin/shows/{STUDIO}"),
        Some(&admin),
        json!({
            "movieId": movie,
            "startsAt": cancelled["show"]["startsAt"],
            "auditorium": "Elsewhere",
            "layout": {
                "categories": [{ "code": "STD", "name": "Standard", "priceCents": 900, "currency": "EUR" }],
                "rows": [{ "row": "A", "seats": 4, "category": "STD" }],
                "blocked": []
            }
        }),
    )
    .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("SHOW_CANCELLED")),
        "{refused}"
    );
    // Cancelling again keeps the first reason and has nothing more to do for now.
    let (status, again) = cancel(&c, &server, &admin, json!({ "reason": "other" })).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["show"]["cancellationReason"], REASON);
    assert_eq!(
        again["show"]["cancelledAt"],
        cancelled["show"]["cancelledAt"]
    );
    assert_eq!(again["woundUp"]["ordersUnfinished"], 1, "{again}");
    assert_eq!(again["woundUp"]["holdsReleased"], 0, "{again}");

    // The charge in flight settles (it went through) and the sweep refunds it: all money back.
    server.advance(BookingConfig::default().payment_window() + Duration::seconds(1));
    let report = server.sweep().await;
    assert_eq!(report.payments_settled.confirmed, 1, "{report:?}");
    assert_eq!(report.wound_up.orders_refunded, 1, "{report:?}");
    let dave_now = order_of(&c, &server, &dave, &dave_order_id).await;
    assert_eq!(dave_now["status"], "CANCELLED", "{dave_now}");
    assert_eq!(seat_status(&c, &server, STUDIO).await["C3"], "AVAILABLE");
    assert_eq!(server.payments.balance_cents(), 0, "every payment refunded");
    let report = server.sweep().await;
    assert_eq!(report.wound_up, Default::default(), "nothing left open");
    assert!(charged > 0);
}

/// A crash right after the mark: the wind-up never ran. The decider refuses the show's waiting
/// request when it comes to it, and the sweep releases the hold the wind-up would have.
async fn a_cancellation_cut_short_after_its_mark_is_finished_anyway(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let admin = admin_token("operator");
    let (alice, erin) = (token("alice"), token("erin"));
    let alice_hold = held(&c, &server, &alice, STUDIO, &["B2"]).await;
    pause_show(&c, &server, STUDIO, &admin).await;
    let (status, waiting) = hold(&c, &server, &erin, STUDIO, &["D1"]).await;
    assert_eq!(status, 202, "{waiting}");
    let studio: ShowId = STUDIO.parse().unwrap();
    let marked = server
        .app
        .ports()
        .catalog
        .cancel_show(studio, REASON, server.clock.now())
        .await
        .unwrap()
        .expect("the demo show");
    assert!(marked.is_cancelled());

    resume_show(&c, &server, STUDIO, &admin).await;
    let decided = wait_terminal(&c, &server, &erin, waiting["requestId"].as_str().unwrap()).await;
    assert_eq!(
        (decided["status"].as_str(), decided["message"].as_str()),
        (Some("FAILED"), Some(MESSAGE)),
        "the decider grants nothing of a cancelled show: {decided}"
    );
    assert_eq!(seat_status(&c, &server, STUDIO).await["D1"], "AVAILABLE");
    assert_eq!(seat_status(&c, &server, STUDIO).await["B2"], "HELD");

    let report = server.sweep().await;
    assert_eq!(report.wound_up.holds_released, 1, "{report:?}");
    let (_, hold) = get(
        &c,
        &server,
        &format!("/api/v1/holds/{alice_hold}"),
        Some(&alice),
    )
    .await;
    assert_eq!(hold["status"], "RELEASED", "{hold}");
    assert_eq!(seat_status(&c, &server, STUDIO).await["B2"], "AVAILABLE");
}

on_every_backend!(
    a_cancelled_show_ends_everything_it_had_and_refunds_every_payment,
    a_cancellation_cut_short_after_its_mark_is_finished_anyway,
);
