//! Real concurrency against the app (in process, real sockets, real stores): a crowd fighting
//! over the same seats, and lanes of different shows proceeding independently.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

#[macro_use]
mod support;

use async_trait::async_trait;
use booking_app::Stores;
use booking_core::ports::{CommitError, HoldStore};
use booking_core::{BatchOutcome, ShowId};
use booking_testkit::faults::{HoldsHook, HookedHolds};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use support::*;
use tokio::sync::{Notify, watch};

/// 200 clients at once ask for the same 2 seats: exactly one wins, 199 lose with alternatives,
/// and every one of them hears its result both over its WebSocket and by polling.
async fn two_hundred_clients_one_pair_of_seats(backend: Backend) {
    crowd_for_one_pair(backend, true).await
}

/// The same crowd with `QUEUE_BASED_BOOKING=false`: each request is decided as it arrives
/// (201 for the one winner, 409 `SEATS_UNAVAILABLE` with alternatives for the rest), through the
/// same engine, and the pushes and polls still agree.
async fn two_hundred_clients_one_pair_of_seats_decided_at_once(backend: Backend) {
    crowd_for_one_pair(backend, false).await
}

async fn crowd_for_one_pair(backend: Backend, queue_based: bool) {
    let mut options = TestAppOptions::on(backend);
    options.config.queue_based = queue_based;
    let server = TestApp::start_with(options).await;
    let c = client();
    const N: usize = 200;
    let mut sockets = Vec::with_capacity(N);
    for i in 0..N {
        sockets.push(WsClient::connect(&server, &token(&format!("fan-{i}"))).await);
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(N));
    let mut tasks = Vec::new();
    for (i, mut ws) in sockets.into_iter().enumerate() {
        let (c, barrier) = (c.clone(), barrier.clone());
        let url = server.url("/api/v1/holds");
        let user_token = token(&format!("fan-{i}"));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let resp = c
                .post(url)
                .bearer_auth(&user_token)
                .json(&json!({"showId": GRAND_HALL, "seatIds": ["J12", "J13"]}))
                .send()
                .await
                .unwrap();
            let (status, body) = json_of(resp).await;
            let request_id = match (queue_based, status) {
                (true, 202) | (false, 201) => body["requestId"].as_str(),
                (false, 409) => {
                    assert_eq!(body["error"]["code"], "SEATS_UNAVAILABLE", "{body}");
                    assert_eq!(
                        body["error"]["details"]["alternatives"]
                            .as_array()
                            .unwrap()
                            .len(),
                        2
                    );
                    body["error"]["details"]["requestId"].as_str()
                }
                _ => panic!("{status}: {body}"),
            }
            .unwrap()
            .to_owned();
            let pushed = ws.next_of("BOOKING_RESULT").await;
            assert_eq!(pushed["requestId"], request_id.as_str());
            (user_token, request_id, pushed)
        }));
    }
    let mut winners = 0;
    for t in tasks {
        let (user_token, request_id, pushed) = t.await.unwrap();
        let polled = wait_terminal(&c, &server, &user_token, &request_id).await;
        assert_eq!(
            polled["status"], pushed["status"],
            "push and poll disagree for {request_id}"
        );
        match pushed["status"].as_str().unwrap() {
            "SUCCESS" => {
                winners += 1;
                assert_eq!(polled["holdId"], pushed["holdId"]);
            }
            "FAILED" => {
                let alternatives = polled["availableAlternatives"].as_array().unwrap();
                assert_eq!(alternatives.len(), 2, "{polled}");
                assert!(
                    !alternatives.contains(&json!("J12")) && !alternatives.contains(&json!("J13"))
                );
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(winners, 1);
    let seats = seat_status(&c, &server, GRAND_HALL).await;
    assert_eq!(seats.values().filter(|s| *s == "HELD").count(), 2);
}

/// Holds one show's batch commits at a gate: its lane is busy (mid-commit) until the test opens
/// it, however long the other shows take.
struct Gate {
    show: ShowId,
    entered: Arc<Notify>,
    open: watch::Receiver<bool>,
}

#[async_trait]
impl HoldsHook for Gate {
    async fn before_commit(
        &self,
        _inner: &dyn HoldStore,
        show: ShowId,
        _batch: &BatchOutcome,
        _decided_at: DateTime<Utc>,
    ) -> Result<(), CommitError> {
        if show == self.show {
            self.entered.notify_one();
            let mut open = self.open.clone();
            let _ = open.wait_for(|open| *open).await;
        }
        Ok(())
    }
}

/// While one show's lane is busy deciding (its commit held at a gate), other shows' requests are
/// decided to completion; the held show's are then decided too, in order.
async fn lanes_of_different_shows_do_not_wait_for_each_other(backend: Backend) {
    let entered = Arc::new(Notify::new());
    let (opener, open) = watch::channel(false);
    let gate = Gate {
        show: MATINEE_EARLY.parse().unwrap(),
        entered: entered.clone(),
        open,
    };
    let mut options = TestAppOptions::on(backend);
    options.wrap_stores = Some(Box::new(move |mut stores: Stores| {
        stores.holds = Arc::new(HookedHolds::new(stores.holds, gate));
        stores
    }));
    let server = TestApp::start_with(options).await;
    let c = client();
    let admin = admin_token("ops");

    let mut blocked = Vec::new();
    for i in 0..20 {
        let t = token(&format!("early-{i}"));
        let seat = format!("C{}", i % 12 + 1);
        let (_, r) = hold(&c, &server, &t, MATINEE_EARLY, &[&seat]).await;
        blocked.push((t, r["requestId"].as_str().unwrap().to_owned()));
    }
    tokio::time::timeout(WAIT, entered.notified())
        .await
        .expect("the held show's lane reached its commit");

    // Meanwhile three other shows are decided to completion.
    let mut others = Vec::new();
    for (i, show) in [GRAND_HALL, STUDIO, MATINEE_LATE].iter().enumerate() {
        for j in 0..10 {
            let t = token(&format!("other-{i}-{j}"));
            let seat = format!("D{}", j + 1);
            let (_, r) = hold(&c, &server, &t, show, &[&seat]).await;
            others.push((t, r["requestId"].as_str().unwrap().to_owned()));
        }
    }
    for (t, id) in &others {
        assert_eq!(wait_terminal(&c, &server, t, id).await["status"], "SUCCESS");
    }
    // The held show's lane is still busy with its first batch: nothing of it is decided.
    for (t, id) in &blocked {
        let (_, r) = get(
            &c,
            &server,
            &format!("/api/v1/booking-requests/{id}"),
            Some(t),
        )
        .await;
        assert!(
            matches!(r["status"].as_str(), Some("QUEUED" | "PROCESSING")),
            "decided while its lane was held: {r}"
        );
    }
    let early = queue_of(&c, &server, &admin, MATINEE_EARLY).await;
    // Counted from the store, where nothing of the show is decided yet. PostgreSQL claims the
    // batch held mid-commit (PROCESSING: in flight), the rest wait; the embedded store claims
    // nothing (its batch commit is the only guard), so there all 20 wait.
    assert_eq!(early["paused"].as_bool(), Some(false));
    assert_eq!(
        early["waiting"].as_u64().unwrap() + early["inFlight"].as_u64().unwrap(),
        20,
        "{early}"
    );
    let in_flight = early["inFlight"].as_u64().unwrap();
    match backend {
        Backend::PostgresRedis => assert!(in_flight > 0, "{early}"),
        Backend::Embedded => assert_eq!(in_flight, 0, "{early}"),
    }

    opener.send(true).unwrap();
    let mut granted = HashSet::new();
    for (t, id) in &blocked {
        let r = wait_terminal(&c, &server, t, id).await;
        if r["status"] == "SUCCESS" {
            assert!(
                granted.insert(r["seatIds"][0].as_str().unwrap().to_owned()),
                "seat granted twice"
            );
        }
    }
    assert_eq!(
        granted.len(),
        12,
        "12 distinct seats C1..C12, the 8 repeats lose"
    );
}

/// Queue positions are real places among the waiting requests, in arrival order.
async fn queue_positions_count_the_requests_ahead(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let admin = admin_token("ops");
    pause_show(&c, &server, STUDIO, &admin).await;
    let mut ids = Vec::new();
    for i in 0..5u64 {
        let t = token(&format!("q{i}"));
        let (_, r) = hold(&c, &server, &t, STUDIO, &["H5"]).await;
        assert_eq!(r["queuePosition"].as_u64(), Some(i + 1));
        ids.push((t, r["requestId"].as_str().unwrap().to_owned()));
    }
    let (_, third) = get(
        &c,
        &server,
        &format!("/api/v1/booking-requests/{}", ids[2].1),
        Some(&ids[2].0),
    )
    .await;
    assert_eq!(third["queuePosition"], 3);
    resume_show(&c, &server, STUDIO, &admin).await;
    // Earliest wins the one seat.
    let first = wait_terminal(&c, &server, &ids[0].0, &ids[0].1).await;
    assert_eq!(first["status"], "SUCCESS");
    for (t, id) in &ids[1..] {
        assert_eq!(wait_terminal(&c, &server, t, id).await["status"], "FAILED");
    }
}

on_every_backend!(
    two_hundred_clients_one_pair_of_seats,
    two_hundred_clients_one_pair_of_seats_decided_at_once,
    lanes_of_different_shows_do_not_wait_for_each_other,
    queue_positions_count_the_requests_ahead,
);
