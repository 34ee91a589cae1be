//! A request made durable whose enqueue failed (the client got a 503) must not wait for nothing:
//! the client's retry with the same idempotency key enqueues it.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use async_trait::async_trait;
use booking_app::config::BookingConfig;
use booking_app::error::{ApiError, BookingError};
use booking_app::service::HoldRequestInput;
use booking_app::{App, QueueAdapter, Stores};
use booking_core::ports::{Notifier, QueueError, QueueTicket, RequestQueue};
use booking_core::protocol::{BookingResult, ServerMessage};
use booking_core::{BookingRequest, RequestId, SeatChange, ShowId, UserId};
use booking_sqlite::{SqliteOptions, SqliteStore};
use booking_testkit::support::{create_show, fresh_user};
use std::sync::{Arc, Mutex};

/// A queue like SQS (it cannot tell positions) whose first enqueue fails.
#[derive(Default)]
struct FlakyQueue {
    attempts: Mutex<u32>,
    enqueued: Mutex<Vec<RequestId>>,
}

#[async_trait]
impl RequestQueue for FlakyQueue {
    async fn enqueue(&self, request: &BookingRequest) -> Result<QueueTicket, QueueError> {
        let mut attempts = self.attempts.lock().unwrap();
        *attempts += 1;
        if *attempts == 1 {
            return Err(QueueError::unavailable("injected outage"));
        }
        self.enqueued.lock().unwrap().push(request.request_id);
        Ok(QueueTicket {
            position: 1,
            estimated_wait_seconds: 1,
        })
    }
    async fn position(&self, _request: &BookingRequest) -> Option<QueueTicket> {
        None
    }
    async fn pause(&self, _show: ShowId) -> Result<(), QueueError> {
        Ok(())
    }
    async fn resume(&self, _show: ShowId) -> Result<(), QueueError> {
        Ok(())
    }
}

struct Quiet;

#[async_trait]
impl Notifier for Quiet {
    async fn booking_results(&self, _results: &[(UserId, BookingResult)]) {}
    async fn to_owners(&self, _messages: &[(UserId, ServerMessage)]) {}
    async fn seats_changed(&self, _show: ShowId, _changes: &[SeatChange]) {}
}

#[tokio::test]
async fn a_retry_enqueues_a_request_whose_first_enqueue_failed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("retry.db"), SqliteOptions::default())
            .await
            .unwrap(),
    );
    let show = create_show(store.as_ref(), 2, 5).await;
    let queue = Arc::new(FlakyQueue::default());
    let app = App::builder(Stores::of(store.clone()), BookingConfig::default())
        .notifier(Arc::new(Quiet))
        .queue(QueueAdapter::External(queue.clone()))
        .build();
    let service = app.service();
    let user = fresh_user("retrying");
    let input = || HoldRequestInput {
        show_id: show.show_id.to_string(),
        seat_ids: vec!["A1".into()],
        idempotency_key: Some("retry-1".into()),
    };

    let first = service.submit_hold(&user, input()).await;
    let outage = first.expect_err("the outage is reported");
    assert!(matches!(outage, BookingError::Queue(_)), "{outage:?}");
    assert_eq!(ApiError::from(outage).status.as_u16(), 503);
    assert!(queue.enqueued.lock().unwrap().is_empty());

    let retry = service.submit_hold(&user, input()).await.expect("accepted");
    assert!(!retry.created, "the same request, not a new one");
    assert_eq!(
        *queue.enqueued.lock().unwrap(),
        vec![retry.request.request_id],
        "the retry put the stored request in the queue"
    );
    assert!(retry.ticket.is_some());
}
