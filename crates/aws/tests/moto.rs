//! The SQS queue and the DynamoDB registry against moto (a private server per test binary).

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use booking_aws::{DynamoRegistry, QueueMessage, SqsQueue};
use booking_core::ports::{
    ConnectionRegistry, QueueCounters, Registration, RequestQueue, Subscription,
};
use booking_core::{BookingRequest, RequestId, RequestStatus, ShowId};
use booking_local::MemoryMirror;
use booking_testkit::aws::Moto;
use booking_testkit::support::{fresh_user, now};
use std::sync::{Arc, OnceLock};

fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(Moto::start)
}

async fn sdk() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto().url())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

async fn registry(ttl_seconds: i64) -> DynamoRegistry {
    let client = aws_sdk_dynamodb::Client::new(&sdk().await);
    let table = unique("connections");
    booking_aws::create_connections_table(&client, &table)
        .await
        .expect("create the table");
    DynamoRegistry::new(client, table, ttl_seconds)
}

/// Registers `connection` for `user` with a token valid for an hour, under a cap it is far from.
async fn connect(r: &DynamoRegistry, connection: &str, user: &booking_core::UserId) {
    let until = now() + chrono::Duration::hours(1);
    assert_eq!(
        r.connect(connection, user, until, 32).await.unwrap(),
        Registration::Registered
    );
}

#[tokio::test]
async fn registry_finds_connections_by_user_and_subscribers_by_show() {
    let r = registry(3_600).await;
    let (alice, bob) = (fresh_user("alice"), fresh_user("bob"));
    let (show, other) = (ShowId::new_random(), ShowId::new_random());
    connect(&r, "a1", &alice).await;
    connect(&r, "a2", &alice).await;
    connect(&r, "b1", &bob).await;
    assert_eq!(r.connections_of(&alice).await.unwrap(), ["a1", "a2"]);
    assert_eq!(r.connections_of(&bob).await.unwrap(), ["b1"]);

    assert_eq!(
        r.subscribe("a1", show, 32).await.unwrap(),
        Subscription::Subscribed
    );
    assert_eq!(
        r.subscribe("b1", show, 32).await.unwrap(),
        Subscription::Subscribed
    );
    assert_eq!(
        r.subscribe("b1", other, 32).await.unwrap(),
        Subscription::Subscribed
    );
    assert_eq!(
        r.subscribe("never-connected", show, 32).await.unwrap(),
        Subscription::UnknownConnection,
        "an unknown connection cannot subscribe"
    );
    assert_eq!(r.subscribers(show).await.unwrap(), ["a1", "b1"]);
    // A subscription is not a connection of its user twice.
    assert_eq!(r.connections_of(&bob).await.unwrap(), ["b1"]);

    r.unsubscribe("a1", show).await.unwrap();
    assert_eq!(r.subscribers(show).await.unwrap(), ["b1"]);

    r.disconnect("b1").await.unwrap();
    assert!(r.connections_of(&bob).await.unwrap().is_empty());
    assert!(r.subscribers(show).await.unwrap().is_empty());
    assert!(r.subscribers(other).await.unwrap().is_empty());
    assert_eq!(r.connections_of(&alice).await.unwrap(), ["a1", "a2"]);
}

#[tokio::test]
async fn registry_ignores_items_past_their_ttl() {
    // Items written already expired: DynamoDB deletes them lazily, readers must not use them.
    let r = registry(3_600).await;
    let lapsed = r.with_ttl(-60);
    let (user, late) = (fresh_user("live"), fresh_user("late"));
    let show = ShowId::new_random();
    connect(&r, "c1", &user).await;
    connect(&lapsed, "c2", &late).await;
    assert!(r.connections_of(&late).await.unwrap().is_empty());
    assert_eq!(
        r.subscribe("c2", show, 32).await.unwrap(),
        Subscription::UnknownConnection,
        "an expired connection cannot subscribe"
    );
    assert_eq!(
        lapsed.subscribe("c1", show, 32).await.unwrap(),
        Subscription::Subscribed
    );
    assert!(
        r.subscribers(show).await.unwrap().is_empty(),
        "an expired subscription"
    );
}

/// A user holds at most `max` connections, exactly, however many arrive at the same moment; a
/// disconnect, or the end of a connection's token, frees its place.
#[tokio::test]
async fn registry_caps_a_users_connections_exactly() {
    let r = Arc::new(registry(3_600).await);
    let user = fresh_user("crowd");
    let until = now() + chrono::Duration::hours(1);
    let attempts = futures_util::future::join_all((0..24).map(|i| {
        let (r, user) = (r.clone(), user.clone());
        async move {
            (
                format!("c{i:02}"),
                r.connect(&format!("c{i:02}"), &user, until, 3).await,
            )
        }
    }))
    .await;
    let registered: Vec<String> = attempts
        .into_iter()
        .filter_map(|(id, outcome)| {
            (outcome.expect("the registry answers") == Registration::Registered).then_some(id)
        })
        .collect();
    assert_eq!(registered.len(), 3, "exactly the cap: {registered:?}");
    assert_eq!(r.connections_of(&user).await.unwrap(), registered);
    assert_eq!(
        r.connect("late", &user, until, 3).await.unwrap(),
        Registration::TooMany
    );

    r.disconnect(&registered[0]).await.unwrap();
    assert_eq!(
        r.connect("after-a-disconnect", &user, until, 3)
            .await
            .unwrap(),
        Registration::Registered
    );
    assert_eq!(
        r.connect("still-full", &user, until, 3).await.unwrap(),
        Registration::TooMany
    );
    // Another user is not affected.
    connect(&r, "someone-else", &fresh_user("other")).await;

    // A connection whose token has expired holds no place.
    let brief = fresh_user("brief");
    let past = now() - chrono::Duration::seconds(1);
    assert_eq!(
        r.connect("expired-1", &brief, past, 1).await.unwrap(),
        Registration::Registered
    );
    assert_eq!(
        r.connect("fresh", &brief, until, 1).await.unwrap(),
        Registration::Registered
    );
}

/// Connections whose token has expired are named for closing (and served no more); the others
/// are not.
#[tokio::test]
async fn registry_names_connections_whose_token_expired() {
    let r = registry(3_600).await;
    let (gone, soon, here) = (fresh_user("gone"), fresh_user("soon"), fresh_user("here"));
    let show = ShowId::new_random();
    let past = now() - chrono::Duration::seconds(1);
    let in_a_minute = now() + chrono::Duration::minutes(1);
    assert_eq!(
        r.connect("expired", &gone, past, 5).await.unwrap(),
        Registration::Registered
    );
    assert_eq!(
        r.connect("expiring", &soon, in_a_minute, 5).await.unwrap(),
        Registration::Registered
    );
    connect(&r, "long", &here).await;
    for connection in ["expired", "long"] {
        r.subscribe(connection, show, 32).await.unwrap();
    }
    assert_eq!(
        r.subscribe("expired", show, 32).await.unwrap(),
        Subscription::UnknownConnection,
        "past its token a connection cannot subscribe"
    );

    assert_eq!(r.token_expired(now(), 100).await.unwrap(), ["expired"]);
    let mut later = r
        .token_expired(now() + chrono::Duration::minutes(2), 100)
        .await
        .unwrap();
    later.sort();
    assert_eq!(later, ["expired", "expiring"]);
    assert!(
        r.connections_of(&gone).await.unwrap().is_empty(),
        "nothing is pushed past the token"
    );
    assert_eq!(r.connections_of(&soon).await.unwrap(), ["expiring"]);
    assert_eq!(r.subscribers(show).await.unwrap(), ["long"]);

    r.disconnect("expired").await.unwrap();
    assert!(r.token_expired(now(), 100).await.unwrap().is_empty());
}

/// One connection watches at most `max` shows; subscribing again to one it watches is fine, and
/// an unsubscribe makes room.
#[tokio::test]
async fn registry_caps_the_shows_one_connection_watches() {
    let r = registry(3_600).await;
    let connection = format!("cap-{}", uuid::Uuid::new_v4());
    connect(&r, &connection, &fresh_user("watcher")).await;
    let shows: Vec<ShowId> = (0..4).map(|_| ShowId::new_random()).collect();
    for show in &shows[..3] {
        assert_eq!(
            r.subscribe(&connection, *show, 3).await.unwrap(),
            Subscription::Subscribed
        );
    }
    assert_eq!(
        r.subscribe(&connection, shows[3], 3).await.unwrap(),
        Subscription::TooMany
    );
    assert_eq!(
        r.subscribe(&connection, shows[0], 3).await.unwrap(),
        Subscription::Subscribed,
        "a show it already watches"
    );
    r.unsubscribe(&connection, shows[1]).await.unwrap();
    assert_eq!(
        r.subscribe(&connection, shows[3], 3).await.unwrap(),
        Subscription::Subscribed
    );
    // Expired subscriptions do not count.
    let lapsed = r.with_ttl(-60);
    let old = format!("lapsed-{}", uuid::Uuid::new_v4());
    connect(&r, &old, &fresh_user("lapsed")).await;
    for show in &shows[..3] {
        lapsed.subscribe(&old, *show, 3).await.unwrap();
    }
    assert_eq!(
        r.subscribe(&old, shows[3], 3).await.unwrap(),
        Subscription::Subscribed
    );
}

fn request(show: ShowId) -> BookingRequest {
    let t = now();
    BookingRequest {
        request_id: RequestId::new_random(),
        user_id: fresh_user("q"),
        show_id: show,
        seat_ids: vec!["A1".parse().unwrap()],
        status: RequestStatus::Queued,
        seq: 1,
        idempotency_key: None,
        created_at: t,
        expires_at: t + chrono::Duration::minutes(2),
        processed_at: None,
        outcome: None,
    }
}

async fn fifo_queue(sqs: &aws_sdk_sqs::Client) -> String {
    sqs.create_queue()
        .queue_name(format!("{}.fifo", unique("booking")))
        .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .expect("create the queue")
        .queue_url
        .expect("queue url")
}

#[tokio::test]
async fn sqs_queue_groups_by_show_deduplicates_by_request_and_counts_positions() {
    let sqs = aws_sdk_sqs::Client::new(&sdk().await);
    let url = fifo_queue(&sqs).await;
    let counters = Arc::new(MemoryMirror::new());
    let queue = SqsQueue::new(sqs.clone(), url.clone(), counters.clone());
    let show = ShowId::new_random();
    let (first, second) = (request(show), request(show));

    let place = async |r: &BookingRequest| queue.position(r).await.map(|t| t.position);
    assert_eq!(queue.enqueue(&first).await.unwrap().position, 1);
    assert_eq!(queue.enqueue(&second).await.unwrap().position, 2);
    // The same request enqueued again (a client retry): SQS drops the duplicate message, and the
    // request keeps its ticket, so it neither moves back nor pushes anyone else back.
    assert_eq!(queue.enqueue(&first).await.unwrap().position, 1);
    assert_eq!(place(&first).await, Some(1));
    assert_eq!(place(&second).await, Some(2));
    // The worker decides the first request.
    counters.add_decided(show, 1).await.unwrap();
    let third = request(show);
    assert_eq!(
        queue.enqueue(&third).await.unwrap().position,
        2,
        "three requests, one decided: the third is second in line"
    );
    assert_eq!(place(&second).await, Some(1), "next to be decided");
    assert_eq!(place(&third).await, Some(2));
    assert_eq!(
        place(&request(show)).await,
        None,
        "a request that was never enqueued has no place (the service enqueues it)"
    );

    let received = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    let messages = received.messages();
    let bodies: Vec<QueueMessage> = messages
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect();
    let ids: Vec<RequestId> = bodies.iter().map(|b| b.request_id).collect();
    assert_eq!(
        ids,
        [first.request_id, second.request_id, third.request_id],
        "in order, the duplicate dropped"
    );
    assert!(bodies.iter().all(|b| b.show_id == show));
    for m in messages {
        let attrs = m.attributes().unwrap();
        let group = attrs.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId);
        assert_eq!(group.map(String::as_str), Some(show.to_string().as_str()));
    }
}

#[tokio::test]
async fn a_requeued_request_is_sent_again_inside_the_deduplication_window() {
    let sqs = aws_sdk_sqs::Client::new(&sdk().await);
    let url = fifo_queue(&sqs).await;
    let queue = SqsQueue::new(sqs.clone(), url.clone(), Arc::new(MemoryMirror::new()));
    let show = ShowId::new_random();
    let (redriven, later) = (request(show), request(show));
    queue.enqueue(&redriven).await.unwrap();
    queue.enqueue(&later).await.unwrap();
    // The first message was taken and the request set aside as a dead letter; a redrive a moment
    // later must reach the queue, where a plain enqueue would be dropped as a duplicate.
    queue.enqueue(&redriven).await.unwrap();
    let place = queue.requeue(&redriven).await.unwrap().position;
    assert_eq!(place, 1, "it keeps the ticket it took first");

    let mut ids = Vec::new();
    for _ in 0..3 {
        let received = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        for m in received.messages() {
            let body: QueueMessage = serde_json::from_str(m.body().unwrap()).unwrap();
            ids.push(body.request_id);
            sqs.delete_message()
                .queue_url(&url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    assert_eq!(
        ids,
        [redriven.request_id, later.request_id, redriven.request_id],
        "the enqueue retry dropped, the requeue sent"
    );
}

#[tokio::test]
async fn sqs_queue_reports_an_unreachable_queue() {
    let sqs = aws_sdk_sqs::Client::new(&sdk().await);
    let queue = SqsQueue::new(
        sqs,
        format!("{}/123456789012/missing.fifo", moto().url()),
        Arc::new(MemoryMirror::new()),
    );
    let err = queue.enqueue(&request(ShowId::new_random())).await;
    assert!(err.is_err(), "{err:?}");
}

/// The pause lives in the store, not in Redis: with Redis down it is still recorded (the worker
/// reads it from the store), and with the store down the admin route answers 503, never
/// `{"paused": true}` for a show that goes on being decided.
#[tokio::test]
async fn the_pause_is_kept_in_the_store_whatever_redis_does() {
    use axum::body::Body;
    use booking_core::ports::CatalogStore;
    use tower::ServiceExt;
    let sqs = aws_sdk_sqs::Client::new(&sdk().await);
    let url = fifo_queue(&sqs).await;
    let mut redis = booking_testkit::redis::PrivateRedis::start();
    let counters = Arc::new(
        booking_redis::RedisMirror::connect(&redis.url())
            .await
            .unwrap(),
    );
    redis.stop();
    let queue = Arc::new(SqsQueue::new(sqs, url, counters));

    let db = booking_testkit::postgres::TestDatabase::create().await;
    let show = booking_testkit::support::create_show(db.store(), 1, 4).await;
    let auth = booking_app::Authenticator::hs256(b"pause-test-secret");
    let admin = auth.mint(&"ops".parse().unwrap(), true, chrono::Duration::minutes(5));
    let app = booking_app::App::builder(
        booking_app::Stores::of(Arc::new(db.store().clone())),
        booking_app::BookingConfig::default(),
    )
    .queue(booking_app::QueueAdapter::External(queue))
    .authenticator(auth)
    .build();
    let call = |action: &str| {
        axum::http::Request::post(format!("/api/v1/admin/shows/{}/{action}", show.show_id))
            .header("authorization", format!("Bearer {admin}"))
            .body(Body::empty())
            .unwrap()
    };
    let paused = app.router().oneshot(call("pause")).await.unwrap();
    assert_eq!(
        paused.status().as_u16(),
        200,
        "Redis is not needed to pause"
    );
    assert!(db.store().is_paused(show.show_id).await.unwrap());

    db.store().pool().close().await;
    let response = app.router().oneshot(call("resume")).await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE", "{body}");
}

/// A retry (same idempotency key) of a request that is decided already is told its outcome,
/// not a place in the queue, although the queue still remembers the request's ticket.
#[tokio::test]
async fn a_decided_request_retried_has_no_queue_position() {
    let sqs = aws_sdk_sqs::Client::new(&sdk().await);
    let url = fifo_queue(&sqs).await;
    let queue = Arc::new(SqsQueue::new(sqs, url, Arc::new(MemoryMirror::new())));
    let db = booking_testkit::postgres::TestDatabase::create().await;
    let show = booking_testkit::support::create_show(db.store(), 1, 4).await;
    let app = booking_app::App::builder(
        booking_app::Stores::of(Arc::new(db.store().clone())),
        booking_app::BookingConfig::default(),
    )
    .queue(booking_app::QueueAdapter::External(queue))
    .build();
    let user = fresh_user("retrier");
    let input = || booking_app::service::HoldRequestInput {
        show_id: show.show_id.to_string(),
        seat_ids: vec!["A1".into()],
        idempotency_key: Some("key-1".into()),
    };
    let first = app.service().submit_hold(&user, input()).await.unwrap();
    assert_eq!(first.ticket.map(|t| t.position), Some(1));
    app.processor()
        .process(show.show_id, std::slice::from_ref(&first.request))
        .await
        .unwrap();
    let retry = app.service().submit_hold(&user, input()).await.unwrap();
    assert!(!retry.created);
    assert_eq!(retry.request.status, RequestStatus::Success);
    assert_eq!(retry.ticket, None, "a decided request waits nowhere");
}
