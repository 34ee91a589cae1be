//! The worker's batch handling when something fails part-way, called as Lambda calls it (an SQS
//! event in, a batch response out) on real PostgreSQL and, for dead letters, moto's SQS:
//!
//! - the store goes away in the middle of a batch: what came before is decided, the failing
//!   message and every later one are reported (they come back in order);
//! - a poison message cannot be dead-lettered (the dead-letter queue is unreachable): it is not
//!   dropped, it and every later message are reported;
//! - a request whose decision keeps failing is retried alone (what came before it is decided)
//!   and set aside in the store on its `MAX_ATTEMPTS`-th delivery, so its show goes on; redriven,
//!   it is decided.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

mod support;

use async_trait::async_trait;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use booking_app::{App, BookingConfig, Stores};
use booking_aws::{QueueMessage, SqsDeadLetters};
use booking_core::ports::{
    DeadLetteredRequest, Inserted, Purged, RequestStore, ShowQueueCounts, StoreError,
};
use booking_core::{
    BookingRequest, NewBookingRequest, RequestId, RequestStatus, Show, ShowId, UserId,
};
use booking_lambda::worker::Worker;
use booking_local::MemoryMirror;
use booking_postgres::PgStore;
use booking_testkit::aws::Moto;
use booking_testkit::faults::{HookedHolds, PoisonedRequests};
use booking_testkit::postgres::TestDatabase;
use booking_testkit::support::{create_show, fresh_user, now, request};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::sync::Arc;

/// The real store, except that reading `unreadable` fails as an outage would.
struct OutageAt {
    inner: Arc<dyn RequestStore>,
    unreadable: RequestId,
}

#[async_trait]
impl RequestStore for OutageAt {
    async fn insert_request(&self, request: NewBookingRequest) -> Result<Inserted, StoreError> {
        self.inner.insert_request(request).await
    }
    async fn get_request(&self, request: RequestId) -> Result<Option<BookingRequest>, StoreError> {
        if request == self.unreadable {
            return Err(StoreError::unavailable("injected outage"));
        }
        self.inner.get_request(request).await
    }
    async fn pending_requests(&self) -> Result<Vec<BookingRequest>, StoreError> {
        self.inner.pending_requests().await
    }
    async fn begin_processing(&self, requests: &[RequestId]) -> Result<Vec<RequestId>, StoreError> {
        self.inner.begin_processing(requests).await
    }
    async fn start_deciding(&self, requests: &[RequestId]) -> Result<Vec<RequestId>, StoreError> {
        self.inner.start_deciding(requests).await
    }
    async fn expire_overdue_requests(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<BookingRequest>, StoreError> {
        self.inner.expire_overdue_requests(now).await
    }
    async fn request_with_key(
        &self,
        user: &UserId,
        key: &booking_core::IdempotencyKey,
    ) -> Result<Option<BookingRequest>, StoreError> {
        self.inner.request_with_key(user, key).await
    }
    async fn undecided_before(
        &self,
        show: ShowId,
        seq: i64,
        limit: u32,
    ) -> Result<Vec<BookingRequest>, StoreError> {
        self.inner.undecided_before(show, seq, limit).await
    }
    async fn fail_undecided(
        &self,
        show: ShowId,
        message: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<BookingRequest>, StoreError> {
        self.inner.fail_undecided(show, message, at).await
    }
    async fn purge_history(&self, before: DateTime<Utc>, limit: u32) -> Result<Purged, StoreError> {
        self.inner.purge_history(before, limit).await
    }
    async fn queue_counts(
        &self,
        shows_from: DateTime<Utc>,
        decided_since: DateTime<Utc>,
    ) -> Result<Vec<ShowQueueCounts>, StoreError> {
        self.inner.queue_counts(shows_from, decided_since).await
    }
    async fn dead_letter_request(
        &self,
        request: RequestId,
        reason: &str,
        attempts: u32,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner
            .dead_letter_request(request, reason, attempts, at)
            .await
    }
    async fn dead_letters(
        &self,
        show: Option<ShowId>,
    ) -> Result<Vec<DeadLetteredRequest>, StoreError> {
        self.inner.dead_letters(show).await
    }
    async fn redrive_dead_letters(
        &self,
        requests: &[RequestId],
    ) -> Result<Vec<BookingRequest>, StoreError> {
        self.inner.redrive_dead_letters(requests).await
    }
    async fn discard_dead_letter(
        &self,
        request: RequestId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<BookingRequest>, StoreError> {
        self.inner.discard_dead_letter(request, reason, at).await
    }
}

/// An SQS event of messages for `requests`, in order, as Lambda delivers a FIFO batch, each
/// delivered for the `deliveries`-th time.
fn event(messages: &[(String, RequestId, &Show)], deliveries: u32) -> SqsEvent {
    let records: Vec<_> = messages
        .iter()
        .map(|(id, request, show)| {
            json!({
                "messageId": id,
                "body": serde_json::to_string(&QueueMessage {
                    request_id: *request,
                    show_id: show.show_id,
                })
                .unwrap(),
                "attributes": {
                    "MessageGroupId": show.show_id.to_string(),
                    "ApproximateReceiveCount": deliveries.to_string(),
                },
                "messageAttributes": {},
                "eventSource": "aws:sqs",
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("an SQS event")
}

/// Three requests of three users for A1, A2 and A3 of `show`, as messages m0, m1 and m2.
async fn three_queued<'a>(store: &PgStore, show: &'a Show) -> Vec<(String, RequestId, &'a Show)> {
    let t = now();
    let mut queued = Vec::new();
    for (i, seat) in ["A1", "A2", "A3"].iter().enumerate() {
        let r = request(store, show, &fresh_user(&format!("u{i}")), &[seat], t).await;
        queued.push((format!("m{i}"), r.request_id, show));
    }
    queued
}

fn failed(response: &SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

async fn worker(db: &TestDatabase, requests: Arc<dyn RequestStore>, moto: &Moto) -> Worker {
    worker_with(db, requests, moto, |stores| stores).await
}

const MAX_ATTEMPTS: u32 = 3;

/// A worker on `db` (its stores passed through `wrap`) whose SQS dead-letter queue does not
/// exist, so that nothing can be set aside there.
async fn worker_with(
    db: &TestDatabase,
    requests: Arc<dyn RequestStore>,
    moto: &Moto,
    wrap: impl FnOnce(Stores) -> Stores,
) -> Worker {
    let store = Arc::new(db.store().clone());
    let config = BookingConfig {
        max_attempts: MAX_ATTEMPTS,
        ..BookingConfig::default()
    };
    let app = App::builder(wrap(Stores::of(store.clone())), config).build();
    let sdk = support::sdk(moto).await;
    // A queue that does not exist: a dead letter cannot be sent.
    let missing = format!("{}/123456789012/missing-dlq.fifo", moto.url());
    Worker::new(
        app.processor().clone(),
        store.clone(),
        requests,
        Arc::new(MemoryMirror::new()),
        Arc::new(SqsDeadLetters::new(aws_sdk_sqs::Client::new(&sdk), missing)),
        MAX_ATTEMPTS,
    )
}

#[tokio::test]
async fn a_store_outage_mid_batch_decides_what_came_before_and_reports_the_rest() {
    let moto = Moto::start();
    let db = TestDatabase::create().await;
    let store = db.store();
    let show = create_show(store, 1, 10).await;
    let queued = three_queued(store, &show).await;
    let requests = Arc::new(OutageAt {
        inner: Arc::new(store.clone()),
        unreadable: queued[1].1,
    });
    let response = worker(&db, requests, &moto)
        .await
        .handle(event(&queued, 1))
        .await;
    assert_eq!(failed(&response), ["m1", "m2"], "from the failure on");
    let status = |id| async move { store.get_request(id).await.unwrap().unwrap().status };
    assert_eq!(status(queued[0].1).await, RequestStatus::Success);
    assert!(!status(queued[1].1).await.is_terminal());
    assert!(
        !status(queued[2].1).await.is_terminal(),
        "nothing after the failure is decided, so the show's order holds"
    );
}

#[tokio::test]
async fn a_poison_message_that_cannot_be_dead_lettered_is_kept_with_everything_after_it() {
    let moto = Moto::start();
    let db = TestDatabase::create().await;
    let store = db.store();
    let show = create_show(store, 1, 10).await;
    let t = now();
    let first = request(store, &show, &fresh_user("before"), &["A5"], t).await;
    let after = request(store, &show, &fresh_user("after"), &["A6"], t).await;
    let messages = vec![
        ("m0".to_owned(), first.request_id, &show),
        // A request the store does not have: poison.
        ("m1".to_owned(), RequestId::new_random(), &show),
        ("m2".to_owned(), after.request_id, &show),
    ];
    let response = worker(&db, Arc::new(store.clone()), &moto)
        .await
        .handle(event(&messages, 1))
        .await;
    assert_eq!(
        failed(&response),
        ["m1", "m2"],
        "the poison message is not lost when the dead-letter queue cannot take it"
    );
    let status = |id| async move { store.get_request(id).await.unwrap().unwrap().status };
    assert_eq!(status(first.request_id).await, RequestStatus::Success);
    assert!(!status(after.request_id).await.is_terminal());
}

#[tokio::test]
async fn a_request_that_keeps_failing_is_set_aside_in_the_store_after_max_attempts() {
    let moto = Moto::start();
    let db = TestDatabase::create().await;
    let store = db.store();
    let show = create_show(store, 1, 10).await;
    let queued = three_queued(store, &show).await;
    let poison = PoisonedRequests::default();
    poison.add(queued[1].1);
    let hook = poison.clone();
    let worker = worker_with(&db, Arc::new(store.clone()), &moto, move |mut stores| {
        stores.holds = Arc::new(HookedHolds::new(stores.holds, hook));
        stores
    })
    .await;
    let status = |id| async move { store.get_request(id).await.unwrap().unwrap().status };

    // First delivery: the run fails as a whole and is decided again request by request, so only
    // the poisoned one and what comes after it go back to the queue.
    let response = worker.handle(event(&queued, 1)).await;
    assert_eq!(failed(&response), ["m1", "m2"]);
    assert_eq!(status(queued[0].1).await, RequestStatus::Success);
    assert!(
        !status(queued[2].1).await.is_terminal(),
        "the show's order holds"
    );
    assert!(
        store.dead_letters(None).await.unwrap().is_empty(),
        "one failed delivery of {MAX_ATTEMPTS} sets nothing aside"
    );

    // The MAX_ATTEMPTS-th delivery: the poisoned request is set aside in the store (not in the
    // SQS dead-letter queue, which does not exist here), its message deleted, the show goes on.
    let response = worker.handle(event(&queued[1..], MAX_ATTEMPTS)).await;
    assert!(failed(&response).is_empty(), "{:?}", failed(&response));
    let dead = store.dead_letters(Some(show.show_id)).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].request.request_id, queued[1].1);
    assert_eq!(dead[0].attempts, MAX_ATTEMPTS);
    assert!(dead[0].reason.contains("injected"), "{}", dead[0].reason);
    assert!(!status(queued[1].1).await.is_terminal());
    assert_eq!(status(queued[2].1).await, RequestStatus::Success);

    // Redriven once the fault is gone, it is decided on its next delivery.
    poison.cure();
    let redriven = store.redrive_dead_letters(&[queued[1].1]).await.unwrap();
    assert_eq!(redriven.len(), 1);
    let response = worker.handle(event(&queued[1..2], 1)).await;
    assert!(failed(&response).is_empty(), "{:?}", failed(&response));
    assert_eq!(status(queued[1].1).await, RequestStatus::Success);
    assert!(store.dead_letters(None).await.unwrap().is_empty());
}
