//! `Idempotency-Key` on every POST, over HTTP against the app in process, on both backends: a
//! retry replays the first answer (`Idempotency-Replayed: true`) and does nothing twice; the same
//! key for a different request is 422; a retry while the first attempt runs is 409; a 5xx is not
//! kept (the retry runs again); keys are forgotten after `IDEMPOTENCY_TTL_SECONDS`.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

#[macro_use]
mod support;

use async_trait::async_trait;
use booking_app::{BookingConfig, Stores};
use booking_core::ports::{
    IdempotencyStore, KeyAttempt, KeyClaim, PaymentProvider, StoreError, StoredResponse,
};
use booking_core::{IdempotencyKey, UserId};
use booking_testkit::faults::{PaymentFault, UnreliablePayments};
use chrono::Duration;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::sync::Arc;
use support::*;

/// A POST with an Idempotency-Key: (status, replayed?, Location, body).
async fn keyed(
    c: &reqwest::Client,
    server: &TestApp,
    token: &str,
    key: &str,
    path: &str,
    body: Value,
) -> (u16, bool, Option<String>, Value) {
    let response = c
        .post(server.url(path))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .expect("POST");
    let replayed = response
        .headers()
        .get("idempotency-replayed")
        .is_some_and(|v| v == "true");
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    let (status, body) = json_of(response).await;
    (status, replayed, location, body)
}

async fn hold_and_wait(c: &reqwest::Client, server: &TestApp, token: &str, seat: &str) -> String {
    let (status, accepted) = hold(c, server, token, STUDIO, &[seat]).await;
    assert_eq!(status, 202, "{accepted}");
    server.drain().await;
    let result = wait_terminal(c, server, token, accepted["requestId"].as_str().unwrap()).await;
    assert_eq!(result["status"], "SUCCESS", "{result}");
    result["holdId"].as_str().unwrap().to_owned()
}

async fn every_purchase_step_replays_instead_of_repeating(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let alice = token("alice");

    // POST /holds: the same answer, one request.
    let body = json!({"showId": STUDIO, "seatIds": ["H4"]});
    let first = keyed(&c, &server, &alice, "hold-1", "/api/v1/holds", body.clone()).await;
    assert_eq!((first.0, first.1), (202, false), "{first:?}");
    let retry = keyed(&c, &server, &alice, "hold-1", "/api/v1/holds", body.clone()).await;
    assert_eq!((retry.0, retry.1), (202, true), "{retry:?}");
    assert_eq!(retry.3, first.3);
    assert_eq!(retry.2, first.2, "Location replayed too");
    assert_eq!(server.stored_request_count().await, 1);
    // The same request in another encoding is the same request.
    let reordered = c
        .post(server.url("/api/v1/holds"))
        .bearer_auth(&alice)
        .header("Idempotency-Key", "hold-1")
        .header("content-type", "application/json")
        .body(format!(
            "{{ \"seatIds\": [\"H4\"],\n \"showId\": \"{STUDIO}\" }}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(reordered.status(), 202);
    assert_eq!(reordered.headers()["idempotency-replayed"], "true");
    // A different request under the same key is refused, and writes nothing.
    let other = keyed(
        &c,
        &server,
        &alice,
        "hold-1",
        "/api/v1/holds",
        json!({"showId": STUDIO, "seatIds": ["H5"]}),
    )
    .await;
    assert_eq!(
        (other.0, other.3["error"]["code"].as_str()),
        (422, Some("IDEMPOTENCY_KEY_REUSED")),
        "{other:?}"
    );
    assert_eq!(server.stored_request_count().await, 1);
    // Another user's key of the same text is theirs.
    let bob = keyed(
        &c,
        &server,
        &token("bob"),
        "hold-1",
        "/api/v1/holds",
        body.clone(),
    )
    .await;
    assert_eq!((bob.0, bob.1), (202, false));
    assert_ne!(bob.3["requestId"], first.3["requestId"]);

    server.drain().await;
    let request_id = first.3["requestId"].as_str().unwrap();
    let hold_id = wait_terminal(&c, &server, &alice, request_id).await["holdId"]
        .as_str()
        .unwrap()
        .to_owned();

    // POST /orders: one order, the same 201 and Location.
    let order_body = json!({ "holdId": hold_id });
    let made = keyed(
        &c,
        &server,
        &alice,
        "order-1",
        "/api/v1/orders",
        order_body.clone(),
    )
    .await;
    assert_eq!(made.0, 201, "{made:?}");
    let again = keyed(&c, &server, &alice, "order-1", "/api/v1/orders", order_body).await;
    assert_eq!((again.0, again.1, &again.2), (201, true, &made.2));
    assert_eq!(again.3, made.3);
    let order_id = made.3["orderId"].as_str().unwrap().to_owned();
    // The same key for another body is refused on every purchase route, not replayed.
    let reused_elsewhere = |key: &'static str, path: String, body: Value| {
        let (c, server, alice) = (&c, &server, &alice);
        async move {
            let answer = keyed(c, server, alice, key, &path, body).await;
            assert_eq!(
                (answer.0, answer.3["error"]["code"].as_str()),
                (422, Some("IDEMPOTENCY_KEY_REUSED")),
                "{key} on {path}: {answer:?}"
            );
        }
    };
    reused_elsewhere(
        "order-1",
        "/api/v1/orders".into(),
        json!({ "holdId": "00000000-0000-4000-8000-000000000001" }),
    )
    .await;

    // confirm-payment: charged once, confirmed once, the same ticket on the replay.
    let confirm = format!("/api/v1/orders/{order_id}/confirm-payment");
    let card = json!({ "paymentToken": "tok_visa" });
    let paid = keyed(&c, &server, &alice, "pay-1", &confirm, card.clone()).await;
    assert_eq!(
        (paid.0, paid.3["status"].as_str()),
        (200, Some("CONFIRMED")),
        "{paid:?}"
    );
    let repaid = keyed(&c, &server, &alice, "pay-1", &confirm, card).await;
    assert_eq!((repaid.0, repaid.1), (200, true));
    reused_elsewhere(
        "pay-1",
        confirm.clone(),
        json!({ "paymentToken": "tok_decline" }),
    )
    .await;
    assert_eq!(repaid.3["ticketCode"], paid.3["ticketCode"]);
    assert_eq!(server.payments.movements().len(), 1);
    // Without the key, a second confirm is the state conflict it is.
    let (status, _) = post(
        &c,
        &server,
        &confirm,
        Some(&alice),
        json!({ "paymentToken": "tok_visa" }),
    )
    .await;
    assert_eq!(status, 409);

    // cancel: refunded once, the same answer on the replay.
    let cancel = format!("/api/v1/orders/{order_id}/cancel");
    let cancelled = keyed(&c, &server, &alice, "cancel-1", &cancel, json!({})).await;
    assert_eq!(
        (cancelled.0, cancelled.3["status"].as_str()),
        (200, Some("CANCELLED"))
    );
    let recancelled = keyed(&c, &server, &alice, "cancel-1", &cancel, json!({})).await;
    assert_eq!((recancelled.0, recancelled.1), (200, true));
    reused_elsewhere(
        "cancel-1",
        "/api/v1/orders/00000000-0000-4000-8000-000000000002/cancel".into(),
        json!({}),
    )
    .await;
    assert_eq!(server.payments.movements().len(), 2);
    assert_eq!(server.payments.balance_cents(), 0);

    // A day later the key is forgotten (the sweep purges it): it may name a new request.
    server.advance(BookingConfig::default().idempotency_ttl + Duration::seconds(1));
    assert!(server.sweep().await.keys_forgotten >= 4);
    let reused = keyed(
        &c,
        &server,
        &alice,
        "hold-1",
        "/api/v1/holds",
        json!({"showId": STUDIO, "seatIds": ["H6"]}),
    )
    .await;
    assert_eq!((reused.0, reused.1), (202, false), "{reused:?}");
    assert_ne!(reused.3["requestId"], first.3["requestId"]);
}

/// Answers that say "nothing happened" (5xx) are not kept, so the retry runs again; answers that
/// say what happened (a declined card) are kept and replayed; a retry while the first attempt is
/// still running is told to wait.
async fn what_is_kept_and_what_runs_again(backend: Backend) {
    let mock = Arc::new(booking_app::MockPaymentProvider::new());
    let provider = Arc::new(UnreliablePayments::new(mock.clone()));
    let server = TestApp::start_with(TestAppOptions {
        payments: Some(provider.clone() as Arc<dyn PaymentProvider>),
        ..TestAppOptions::on(backend)
    })
    .await;
    let c = client();
    let alice = token("alice");
    let card = json!({ "paymentToken": "tok_visa" });

    let hold_id = hold_and_wait(&c, &server, &alice, "G6").await;
    let (_, order) = post(
        &c,
        &server,
        "/api/v1/orders",
        Some(&alice),
        json!({ "holdId": hold_id }),
    )
    .await;
    let confirm = format!(
        "/api/v1/orders/{}/confirm-payment",
        order["orderId"].as_str().unwrap()
    );
    provider.set(PaymentFault::Down);
    let down = keyed(&c, &server, &alice, "pay-k1", &confirm, card.clone()).await;
    assert_eq!(down.0, 503, "{down:?}");
    provider.set(PaymentFault::None);
    let retried = keyed(&c, &server, &alice, "pay-k1", &confirm, card.clone()).await;
    assert_eq!(
        (retried.0, retried.1, retried.3["status"].as_str()),
        (200, false, Some("CONFIRMED")),
        "{retried:?}"
    );
    assert_eq!(mock.movements().len(), 1);

    let hold_id = hold_and_wait(&c, &server, &alice, "G7").await;
    let (_, order) = post(
        &c,
        &server,
        "/api/v1/orders",
        Some(&alice),
        json!({ "holdId": hold_id }),
    )
    .await;
    let confirm = format!(
        "/api/v1/orders/{}/confirm-payment",
        order["orderId"].as_str().unwrap()
    );
    let declined = keyed(
        &c,
        &server,
        &alice,
        "pay-k2",
        &confirm,
        json!({ "paymentToken": "tok_decline" }),
    )
    .await;
    assert_eq!(declined.0, 402);
    let replayed = keyed(
        &c,
        &server,
        &alice,
        "pay-k2",
        &confirm,
        json!({ "paymentToken": "tok_decline" }),
    )
    .await;
    assert_eq!((replayed.0, replayed.1), (402, true));
    assert_eq!(replayed.3, declined.3);

    let hold_id = hold_and_wait(&c, &server, &alice, "G8").await;
    let (_, order) = post(
        &c,
        &server,
        "/api/v1/orders",
        Some(&alice),
        json!({ "holdId": hold_id }),
    )
    .await;
    let confirm = format!(
        "/api/v1/orders/{}/confirm-payment",
        order["orderId"].as_str().unwrap()
    );
    provider.set(PaymentFault::Delay(std::time::Duration::from_millis(1500)));
    let slow = keyed(&c, &server, &alice, "pay-k3", &confirm, card.clone());
    let eager = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        keyed(&c, &server, &alice, "pay-k3", &confirm, card.clone()).await
    };
    let (slow, eager) = tokio::join!(slow, eager);
    assert_eq!(slow.0, 200, "{slow:?}");
    assert_eq!(
        (eager.0, eager.3["error"]["code"].as_str()),
        (409, Some("IDEMPOTENCY_KEY_IN_FLIGHT")),
        "{eager:?}"
    );
    assert_eq!(mock.movements().len(), 2);

    // "A payment is in progress" is an answer for now, not for ever: not kept.
    let hold_id = hold_and_wait(&c, &server, &alice, "G9").await;
    let (_, order) = post(
        &c,
        &server,
        "/api/v1/orders",
        Some(&alice),
        json!({ "holdId": hold_id }),
    )
    .await;
    let order_id = order["orderId"].as_str().unwrap().to_owned();
    let confirm_g9 = format!("/api/v1/orders/{order_id}/confirm-payment");
    let cancel_g9 = format!("/api/v1/orders/{order_id}/cancel");
    provider.set(PaymentFault::LoseAnswers);
    assert_eq!(
        keyed(&c, &server, &alice, "pay-g9", &confirm_g9, card.clone())
            .await
            .0,
        503
    );
    let busy = keyed(&c, &server, &alice, "cancel-g9", &cancel_g9, json!({})).await;
    assert_eq!(
        (busy.0, busy.3["error"]["code"].as_str()),
        (409, Some("PAYMENT_IN_PROGRESS"))
    );
    provider.set(PaymentFault::None);
    let paid = keyed(&c, &server, &alice, "pay-g9", &confirm_g9, card.clone()).await;
    assert_eq!(
        (paid.0, paid.1),
        (200, false),
        "the 503 was not kept: {paid:?}"
    );
    let cancelled = keyed(&c, &server, &alice, "cancel-g9", &cancel_g9, json!({})).await;
    assert_eq!(
        (cancelled.0, cancelled.1, cancelled.3["status"].as_str()),
        (200, false, Some("CANCELLED")),
        "{cancelled:?}"
    );

    // A key that is not a key, and a key on a request without a valid token.
    let bad = keyed(
        &c,
        &server,
        &alice,
        &"k".repeat(200),
        &confirm,
        card.clone(),
    )
    .await;
    assert_eq!(
        (bad.0, bad.3["error"]["code"].as_str()),
        (400, Some("INVALID_IDEMPOTENCY_KEY"))
    );
    let anonymous = keyed(&c, &server, "not-a-token", "pay-k9", &confirm, card).await;
    assert_eq!(anonymous.0, 401);
}

/// An idempotency store that never manages to keep an answer, as if the process died between
/// doing the work and keeping its answer.
struct AnswersLost(Arc<dyn IdempotencyStore>);

#[async_trait]
impl IdempotencyStore for AnswersLost {
    async fn claim_key(&self, attempt: &KeyAttempt<'_>) -> Result<KeyClaim, StoreError> {
        self.0.claim_key(attempt).await
    }
    async fn complete_key(
        &self,
        _user: &UserId,
        _key: &IdempotencyKey,
        _use_id: &str,
        _response: &StoredResponse,
    ) -> Result<(), StoreError> {
        Err(StoreError::unavailable(
            "test: the process died before keeping the answer",
        ))
    }
    async fn release_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        use_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.0.release_key(user, key, use_id, now).await
    }
    async fn purge_keys(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.0.purge_keys(now).await
    }
}

/// When an attempt's answer was never kept (the process died after the work), the retry after
/// the lease runs again under the same use and recognises what the first attempt made: the same
/// order, the same charge's outcome, the same refund; nothing is done twice.
async fn a_retry_after_a_lost_answer_finds_what_the_first_attempt_made(backend: Backend) {
    let mut options = TestAppOptions::on(backend);
    options.wrap_stores = Some(Box::new(|mut stores: Stores| {
        stores.idempotency = Arc::new(AnswersLost(stores.idempotency.clone()));
        stores
    }));
    let server = TestApp::start_with(options).await;
    let c = client();
    let alice = token("alice");
    let lease = BookingConfig::default().payment_window() + Duration::seconds(1);

    let hold_id = hold_and_wait(&c, &server, &alice, "B5").await;
    let order_body = json!({ "holdId": hold_id });
    let made = keyed(
        &c,
        &server,
        &alice,
        "order-b5",
        "/api/v1/orders",
        order_body.clone(),
    )
    .await;
    assert_eq!(made.0, 201, "{made:?}");
    let busy = keyed(
        &c,
        &server,
        &alice,
        "order-b5",
        "/api/v1/orders",
        order_body.clone(),
    )
    .await;
    assert_eq!(
        busy.3["error"]["code"], "IDEMPOTENCY_KEY_IN_FLIGHT",
        "the key is still leased"
    );
    server.advance(lease);
    let again = keyed(
        &c,
        &server,
        &alice,
        "order-b5",
        "/api/v1/orders",
        order_body,
    )
    .await;
    assert_eq!(
        (again.0, &again.3["orderId"]),
        (201, &made.3["orderId"]),
        "{again:?}"
    );
    let order_id = made.3["orderId"].as_str().unwrap().to_owned();

    let confirm = format!("/api/v1/orders/{order_id}/confirm-payment");
    let card = json!({ "paymentToken": "tok_visa" });
    let paid = keyed(&c, &server, &alice, "pay-b5", &confirm, card.clone()).await;
    assert_eq!(paid.0, 200, "{paid:?}");
    server.advance(lease);
    let repaid = keyed(&c, &server, &alice, "pay-b5", &confirm, card).await;
    assert_eq!(
        (repaid.0, &repaid.3["ticketCode"]),
        (200, &paid.3["ticketCode"]),
        "{repaid:?}"
    );
    assert_eq!(server.payments.movements().len(), 1);

    let cancel = format!("/api/v1/orders/{order_id}/cancel");
    let cancelled = keyed(&c, &server, &alice, "cancel-b5", &cancel, json!({})).await;
    assert_eq!(
        (cancelled.0, cancelled.3["status"].as_str()),
        (200, Some("CANCELLED"))
    );
    server.advance(lease);
    let recancelled = keyed(&c, &server, &alice, "cancel-b5", &cancel, json!({})).await;
    assert_eq!(
        (recancelled.0, recancelled.3["status"].as_str()),
        (200, Some("CANCELLED")),
        "{recancelled:?}"
    );
    assert_eq!(server.payments.movements().len(), 2, "refunded once");

    // A declined card: the retry answers the decline again.
    let hold_id = hold_and_wait(&c, &server, &alice, "B6").await;
    let (_, order) = post(
        &c,
        &server,
        "/api/v1/orders",
        Some(&alice),
        json!({ "holdId": hold_id }),
    )
    .await;
    let confirm = format!(
        "/api/v1/orders/{}/confirm-payment",
        order["orderId"].as_str().unwrap()
    );
    let decline = json!({ "paymentToken": "tok_decline" });
    let first = keyed(&c, &server, &alice, "pay-b6", &confirm, decline.clone()).await;
    assert_eq!(first.0, 402);
    server.advance(lease);
    let second = keyed(&c, &server, &alice, "pay-b6", &confirm, decline).await;
    assert_eq!(
        (second.0, &second.3["error"]["code"]),
        (402, &first.3["error"]["code"]),
        "{second:?}"
    );
}

on_every_backend!(
    every_purchase_step_replays_instead_of_repeating,
    what_is_kept_and_what_runs_again,
    a_retry_after_a_lost_answer_finds_what_the_first_attempt_made,
);
