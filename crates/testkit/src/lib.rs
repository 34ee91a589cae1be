//! The contract every store adapter must meet, written once against the port traits.
//!
//! DESIGN.md promises the same guarantees from the embedded SQLite store and from PostgreSQL
//! (no seat held twice, no accepted request lost, one decision per request, expiry by time). A
//! guarantee is only as good as the test that proves it, and two hand-written test suites drift
//! apart; so each case here is a `pub async fn` generic over any store that implements
//! [`CatalogStore`], [`RequestStore`] and [`HoldStore`], and each adapter runs all of them:
//!
//! ```text
//! // crates/<adapter>/tests/contract.rs
//! async fn fresh_store() -> (MyStore, impl Sized) { /* store, and a guard kept until the end */ }
//! booking_testkit::contract_tests!(fresh_store);
//! ```
//!
//! [`contract_tests!`] makes one `#[tokio::test]` per case (the calling crate needs `tokio` with
//! its `macros` feature); [`run_all`] runs every case in turn on one store.
//!
//! Cases may share one database, even concurrently and across runs: each creates its own movie
//! and show with fresh ids, uses fresh user ids, looks only at its own rows in global listings,
//! and the cases that call global sweeps (`expire_holds`, `expire_overdue_requests`) place their
//! data hundreds of days in the past, on time ranges no other case touches.

pub mod aws;
pub mod mirror;
pub mod postgres;
pub mod redis;
pub mod support;
pub mod workload;

use booking_core::layout::LayoutSpec;
use booking_core::ports::{
    CatalogStore, CommitError, HoldStore, Inserted, ReleaseError, RequestStore,
};
use booking_core::{
    BatchOutcome, Decision, DecisionEngine, Hold, HoldId, HoldStatus, IdempotencyKey, MovieId,
    RequestId, RequestOutcome, RequestStatus, SeatLayout, Show, ShowId, ShowSnapshot, SnapshotHold,
    rejection_message,
};
use chrono::{Duration, NaiveDate, TimeZone, Utc};
use std::collections::HashSet;
use std::sync::Arc;
use support::*;

/// The message of a request that was not decided before its deadline.
pub use booking_core::model::REQUEST_EXPIRED_MESSAGE as EXPIRED_MESSAGE;

/// What the cases need of a store: all three state ports, and `Clone` so that concurrent cases
/// can hand it to spawned tasks (adapters are handles around a pool, cheap to clone).
pub trait ContractStore: CatalogStore + RequestStore + HoldStore + Clone {}
impl<T: CatalogStore + RequestStore + HoldStore + Clone> ContractStore for T {}

/// The one list of cases, from which [`contract_tests!`], [`run_all`] and [`case_names`] are all
/// generated: forwards its arguments and every case name to `__expand_cases!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_cases {
    ($($args:tt)*) => {
        $crate::__expand_cases! { ($($args)*)
            insert_and_get_round_trip,
            idempotency_key_returns_existing,
            concurrent_inserts_are_durable,
            pending_requests_in_arrival_order,
            begin_processing_skips_decided,
            commit_batch_records_every_outcome,
            grant_releases_previous_hold,
            seat_conflict_writes_nothing,
            expired_claim_is_taken_without_sweeper,
            stale_duplicate_grant_is_refused,
            one_batch_builds_on_its_own_grants_and_releases,
            stale_claim_before_a_release_in_the_batch_is_refused,
            reads_honour_expiry_by_time,
            release_hold_rules,
            expire_holds_sweeps_overdue,
            expire_overdue_requests_sweeps_queued,
            catalog_listing_and_date_filter,
            ping_answers,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __expand_cases {
    ((tests $make:path) $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (store, _guard) = $make().await;
                $crate::$case(&store).await;
            }
        )*
    };
    ((run $store:ident) $($case:ident),* $(,)?) => {
        $( $crate::$case($store).await; )*
    };
    ((spawn $store:ident) $($case:ident),* $(,)?) => {
        ::std::vec![$(
            (::std::stringify!($case), {
                let store = $store.clone();
                ::tokio::spawn(async move { $crate::$case(&store).await })
            }),
        )*]
    };
    ((names) $($case:ident),* $(,)?) => {
        &[$(stringify!($case)),*]
    };
}

/// Generates one `#[tokio::test]` per contract case. `$make` names an `async fn` (no arguments)
/// returning `(store, guard)`: the guard (a temp dir, a connection, `()`) lives until the case
/// ends.
#[macro_export]
macro_rules! contract_tests {
    ($make:path) => {
        $crate::__with_cases!(tests $make);
    };
}

/// Every case, one after another, on one store.
pub async fn run_all<S: ContractStore>(store: &S) {
    __with_cases!(run store);
}

/// Every case at the same time on one store, as concurrent test runs against one shared
/// PostgreSQL would: proves that the cases do not get in each other's way. Panics (after all
/// have finished) naming every case that failed.
pub async fn run_all_concurrently<S: ContractStore>(store: &S) {
    let tasks: Vec<(&str, tokio::task::JoinHandle<()>)> = __with_cases!(spawn store);
    let mut failed = Vec::new();
    for (name, task) in tasks {
        if task.await.is_err() {
            failed.push(name);
        }
    }
    assert!(failed.is_empty(), "contract cases failed: {failed:?}");
}

/// The names of every case, in the order [`run_all`] runs them.
pub fn case_names() -> &'static [&'static str] {
    __with_cases!(names)
}

/// A request reads back exactly as `insert_request` returned it, QUEUED and without outcome,
/// and sequence numbers grow in arrival order.
pub async fn insert_and_get_round_trip<S: ContractStore>(store: &S) {
    let show = create_show(store, 2, 10).await;
    let t = now_ms();
    let mut last_seq = None;
    for (i, labels) in [&["A1"][..], &["A2", "B10"], &["B1", "B2", "B3"]]
        .into_iter()
        .enumerate()
    {
        let mut new = new_request(&show, &fresh_user("reader"), labels, t);
        if i == 1 {
            new.idempotency_key = Some("round-trip".parse().unwrap());
        }
        let stored = insert(store, new.clone()).await;
        assert_eq!(stored.request_id, new.request_id);
        assert_eq!(stored.user_id, new.user_id);
        assert_eq!(stored.show_id, new.show_id);
        assert_eq!(stored.seat_ids, new.seat_ids);
        assert_eq!(stored.idempotency_key, new.idempotency_key);
        assert_eq!(stored.created_at, new.created_at);
        assert_eq!(stored.expires_at, new.expires_at);
        assert_eq!(stored.status, RequestStatus::Queued);
        assert_eq!(stored.processed_at, None);
        assert_eq!(stored.outcome, None);
        if let Some(last) = last_seq {
            assert!(stored.seq > last, "seq must grow in arrival order");
        }
        last_seq = Some(stored.seq);
        assert_eq!(
            store.get_request(new.request_id).await.unwrap(),
            Some(stored)
        );
    }
    assert_eq!(
        store.get_request(RequestId::new_random()).await.unwrap(),
        None
    );
}

/// A repeated idempotency key of the same user returns the earlier request (in its current
/// state) and writes nothing; other users, other keys and requests without a key are independent.
pub async fn idempotency_key_returns_existing<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 10).await;
    let t = now_ms();
    let user = fresh_user("retrier");
    let key: IdempotencyKey = "checkout-42".parse().unwrap();

    let mut first = new_request(&show, &user, &["A1"], t);
    first.idempotency_key = Some(key.clone());
    let first = insert(store, first).await;

    let mut retry = new_request(&show, &user, &["A2", "A3"], t + Duration::seconds(1));
    retry.idempotency_key = Some(key.clone());
    match store.insert_request(retry.clone()).await.unwrap() {
        Inserted::Existing(earlier) => assert_eq!(earlier, first),
        Inserted::New(r) => panic!("same user and key must not create a request: {r:?}"),
    }
    assert_eq!(store.get_request(retry.request_id).await.unwrap(), None);
    let ids: Vec<RequestId> = pending_of(store, &[show.show_id])
        .await
        .iter()
        .map(|r| r.request_id)
        .collect();
    assert_eq!(ids, vec![first.request_id], "the retry wrote nothing");

    // The key is the user's own: another user may use the same one.
    let mut other = new_request(&show, &fresh_user("other"), &["A5"], t);
    other.idempotency_key = Some(key.clone());
    let other = insert(store, other).await;
    assert_ne!(other.seq, first.seq);

    let mut other_key = new_request(&show, &user, &["A6"], t);
    other_key.idempotency_key = Some("checkout-43".parse().unwrap());
    insert(store, other_key).await;
    let a = insert(store, new_request(&show, &user, &["A7"], t)).await;
    let b = insert(store, new_request(&show, &user, &["A7"], t)).await;
    assert_ne!(a.seq, b.seq, "requests without a key are never merged");

    // After the decision, a retry sees the decided request.
    grant(store, &show, &first, t + Duration::seconds(2)).await;
    let mut late_retry = new_request(&show, &user, &["A9"], t + Duration::seconds(3));
    late_retry.idempotency_key = Some(key);
    match store.insert_request(late_retry).await.unwrap() {
        Inserted::Existing(earlier) => {
            assert_eq!(earlier.request_id, first.request_id);
            assert_eq!(earlier.status, RequestStatus::Success);
        }
        Inserted::New(r) => panic!("a decided request's key is still taken: {r:?}"),
    }
}

/// 200 concurrent intakes: every one durable, with distinct sequence numbers; ten concurrent
/// retries with one key create exactly one request.
pub async fn concurrent_inserts_are_durable<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 10).await;
    let t = now_ms();
    let mut distinct = Vec::new();
    for _ in 0..200 {
        let store = store.clone();
        let new = new_request(&show, &fresh_user("crowd"), &["A1"], t);
        distinct.push(tokio::spawn(async move {
            let inserted = store.insert_request(new.clone()).await;
            (new, inserted)
        }));
    }
    let user = fresh_user("double-clicker");
    let key: IdempotencyKey = "same-click".parse().unwrap();
    let mut retries = Vec::new();
    for _ in 0..10 {
        let store = store.clone();
        let mut new = new_request(&show, &user, &["A2"], t);
        new.idempotency_key = Some(key.clone());
        retries.push(tokio::spawn(async move { store.insert_request(new).await }));
    }

    let mut seqs = HashSet::new();
    let mut ids = HashSet::new();
    for task in distinct {
        let (new, inserted) = task.await.expect("task");
        let Inserted::New(stored) = inserted.expect("insert_request") else {
            panic!("a request without a key is always new");
        };
        assert!(seqs.insert(stored.seq), "seq {} given twice", stored.seq);
        ids.insert(new.request_id);
        assert_eq!(
            store.get_request(new.request_id).await.unwrap(),
            Some(stored),
            "an answered insert is durable"
        );
    }
    let mut created = Vec::new();
    let mut existing = Vec::new();
    for task in retries {
        match task.await.expect("task").expect("insert_request") {
            Inserted::New(r) => created.push(r),
            Inserted::Existing(r) => existing.push(r),
        }
    }
    assert_eq!(created.len(), 1, "one key, one request");
    assert_eq!(existing.len(), 9);
    assert!(
        existing
            .iter()
            .all(|r| r.request_id == created[0].request_id)
    );
    assert!(seqs.insert(created[0].seq));
    ids.insert(created[0].request_id);

    let pending = pending_of(store, &[show.show_id]).await;
    assert_eq!(pending.len(), 201);
    assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(
        pending.iter().map(|r| r.request_id).collect::<HashSet<_>>(),
        ids
    );
}

/// Pending requests come in arrival order across shows, PROCESSING ones included, decided ones
/// gone.
pub async fn pending_requests_in_arrival_order<S: ContractStore>(store: &S) {
    let a = create_show(store, 1, 10).await;
    let b = create_show(store, 1, 10).await;
    let t = now_ms();
    let mut order = Vec::new();
    for (i, show) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        let label = format!("A{}", i + 1);
        order.push(request(store, show, &fresh_user("fan"), &[label.as_str()], t).await);
    }
    let ids = |list: &[booking_core::BookingRequest]| -> Vec<RequestId> {
        list.iter().map(|r| r.request_id).collect()
    };
    let pending = pending_of(store, &[a.show_id, b.show_id]).await;
    assert_eq!(ids(&pending), ids(&order));
    assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq));

    assert_eq!(
        store
            .begin_processing(&[order[2].request_id])
            .await
            .unwrap(),
        vec![order[2].request_id]
    );
    grant(store, &a, &order[0], t).await;
    let pending = pending_of(store, &[a.show_id, b.show_id]).await;
    assert_eq!(ids(&pending), ids(&order[1..]));
    assert_eq!(pending[1].status, RequestStatus::Processing);
    assert_eq!(pending[0].status, RequestStatus::Queued);
}

/// `begin_processing` returns only undecided requests, each once: a duplicate delivery of a
/// decided request leads to no second decision, and even a stray non-grant decision for it
/// changes nothing.
pub async fn begin_processing_skips_decided<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 10).await;
    let t = now_ms();
    let r1 = request(store, &show, &fresh_user("one"), &["A1"], t).await;
    let r2 = request(store, &show, &fresh_user("two"), &["A2"], t).await;
    let r3 = request(store, &show, &fresh_user("three"), &["A3"], t).await;
    assert!(store.begin_processing(&[]).await.unwrap().is_empty());

    grant(store, &show, &r1, t).await;
    let decided = store.get_request(r1.request_id).await.unwrap().unwrap();
    assert_eq!(decided.status, RequestStatus::Success);

    let started = store
        .begin_processing(&[
            r1.request_id,
            r2.request_id,
            r2.request_id,
            RequestId::new_random(),
        ])
        .await
        .unwrap();
    assert_eq!(
        started,
        vec![r2.request_id],
        "only undecided, known requests, each once"
    );
    let r2_now = store.get_request(r2.request_id).await.unwrap().unwrap();
    assert_eq!(r2_now.status, RequestStatus::Processing);
    assert_eq!(r2_now.outcome, None);
    let r3_now = store.get_request(r3.request_id).await.unwrap().unwrap();
    assert_eq!(r3_now.status, RequestStatus::Queued);

    // PROCESSING is still undecided: a worker that crashed mid-batch is redelivered it.
    let mut again = store
        .begin_processing(&[r3.request_id, r2.request_id])
        .await
        .unwrap();
    again.sort();
    let mut expected = vec![r2.request_id, r3.request_id];
    expected.sort();
    assert_eq!(again, expected);

    // The duplicate delivery of r1 yields nothing to decide...
    assert!(
        store
            .begin_processing(&[r1.request_id])
            .await
            .unwrap()
            .is_empty()
    );
    // ...and a stray rejection of it is ignored.
    let stray = BatchOutcome {
        decisions: vec![Decision::Rejected {
            request_id: r1.request_id,
            unavailable: seats(&["A1"]),
            alternatives: seats(&["A4"]),
        }],
        seat_changes: vec![],
    };
    let written = store
        .commit_batch(show.show_id, &stray, t + Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(
        written,
        vec![],
        "the stray rejection is not reported as written"
    );
    assert_eq!(
        store.get_request(r1.request_id).await.unwrap(),
        Some(decided)
    );
}

/// One batch with a grant, a rejection, an expiry and an invalid request records each outcome,
/// the hold and its claims.
pub async fn commit_batch_records_every_outcome<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 6).await;
    let t = now_ms();
    let alice = fresh_user("alice");
    let a = request(store, &show, &alice, &["A1", "A2"], t).await;
    let b = request(store, &show, &fresh_user("bob"), &["A2", "A3"], t).await;
    let mut late = new_request(&show, &fresh_user("carol"), &["A5"], t - REQUEST_TTL);
    late.expires_at = t - Duration::seconds(1);
    let c = insert(store, late).await;
    // A valid seat id that is not in this 1-row hall.
    let d = request(store, &show, &fresh_user("dave"), &["Z9"], t).await;
    let all = [a.request_id, b.request_id, c.request_id, d.request_id];
    assert_eq!(store.begin_processing(&all).await.unwrap().len(), 4);

    let batch = decide(store, &show, &[&a, &b, &c, &d], t).await;
    let [granted, rejected, expired, invalid] = &batch.decisions[..] else {
        panic!("four decisions expected: {:?}", batch.decisions);
    };
    assert!(matches!(granted, Decision::Granted { .. }));
    let Decision::Rejected {
        unavailable,
        alternatives,
        ..
    } = rejected
    else {
        panic!("expected a rejection: {rejected:?}");
    };
    assert!(matches!(expired, Decision::Expired { .. }));
    let Decision::Invalid { reason, .. } = invalid else {
        panic!("expected an invalid request: {invalid:?}");
    };
    let mut written = store.commit_batch(show.show_id, &batch, t).await.unwrap();
    written.sort();
    let mut expected = all.to_vec();
    expected.sort();
    assert_eq!(written, expected, "every outcome of the batch was written");

    let hold_id = HoldId::for_request(a.request_id);
    let hold_expires_at = t + HOLD_TTL;
    let got = |id| async move { store.get_request(id).await.unwrap().unwrap() };

    let a_now = got(a.request_id).await;
    assert_eq!(a_now.status, RequestStatus::Success);
    assert_eq!(a_now.processed_at, Some(t));
    assert_eq!(
        a_now.outcome,
        Some(RequestOutcome::Granted {
            hold_id,
            hold_expires_at
        })
    );

    let b_now = got(b.request_id).await;
    assert_eq!(b_now.status, RequestStatus::Failed);
    assert_eq!(b_now.processed_at, Some(t));
    assert_eq!(unavailable, &seats(&["A2"]));
    assert_eq!(alternatives.len(), 2);
    assert_eq!(
        b_now.outcome,
        Some(RequestOutcome::Rejected {
            unavailable: unavailable.clone(),
            alternatives: alternatives.clone(),
            message: rejection_message(unavailable),
        })
    );

    let c_now = got(c.request_id).await;
    assert_eq!(c_now.status, RequestStatus::Expired);
    assert_eq!(c_now.processed_at, Some(t));
    assert_eq!(
        c_now.outcome,
        Some(RequestOutcome::Expired {
            message: EXPIRED_MESSAGE.to_owned()
        })
    );

    let d_now = got(d.request_id).await;
    assert_eq!(d_now.status, RequestStatus::Failed);
    assert_eq!(
        d_now.outcome,
        Some(RequestOutcome::Rejected {
            unavailable: vec![],
            alternatives: vec![],
            message: reason.clone(),
        })
    );

    assert_eq!(
        store.get_hold(hold_id).await.unwrap(),
        Some(Hold {
            hold_id,
            request_id: a.request_id,
            user_id: alice.clone(),
            show_id: show.show_id,
            seat_ids: seats(&["A1", "A2"]),
            status: HoldStatus::Held,
            created_at: t,
            expires_at: hold_expires_at,
            ended_at: None,
        })
    );
    assert_eq!(store.get_hold(HoldId::new_random()).await.unwrap(), None);
    assert_eq!(taken(store, &show, t).await, held(&["A1", "A2"]));
    assert_eq!(
        store.load_show_state(show.show_id, t).await.unwrap(),
        ShowSnapshot {
            holds: vec![SnapshotHold {
                hold_id,
                user_id: alice,
                seat_ids: seats(&["A1", "A2"]),
                expires_at: hold_expires_at,
            }],
            booked: vec![],
        }
    );
    assert!(pending_of(store, &[show.show_id]).await.is_empty());
}

/// A user's new hold on a show releases their previous one; its seats become free.
pub async fn grant_releases_previous_hold<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 6).await;
    let t = now_ms();
    let t2 = t + Duration::minutes(1);
    let user = fresh_user("changer");
    let first = request(store, &show, &user, &["A1", "A2"], t).await;
    let h1 = grant(store, &show, &first, t).await;

    let second = request(store, &show, &user, &["A2", "A3"], t2).await;
    let batch = decide(store, &show, &[&second], t2).await;
    let [
        Decision::Granted {
            hold_id: h2,
            released,
            ..
        },
    ] = &batch.decisions[..]
    else {
        panic!("expected a grant: {:?}", batch.decisions);
    };
    assert_eq!(*released, Some(h1));
    store.commit_batch(show.show_id, &batch, t2).await.unwrap();

    let old = store.get_hold(h1).await.unwrap().unwrap();
    assert_eq!(old.status, HoldStatus::Released);
    assert_eq!(old.ended_at, Some(t2));
    let new = store.get_hold(*h2).await.unwrap().unwrap();
    assert_eq!(new.status, HoldStatus::Held);
    assert_eq!(new.seat_ids, seats(&["A2", "A3"]));
    assert_eq!(taken(store, &show, t2).await, held(&["A2", "A3"]));
    let state = store.load_show_state(show.show_id, t2).await.unwrap();
    assert_eq!(
        state.holds.iter().map(|h| h.hold_id).collect::<Vec<_>>(),
        vec![*h2]
    );

    let other = request(store, &show, &fresh_user("other"), &["A1"], t2).await;
    grant(store, &show, &other, t2).await;
}

/// Two workers on one show: a batch decided against stale state that grants a seat another hold
/// claims live is refused as a whole; nothing of it is written.
pub async fn seat_conflict_writes_nothing<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 6).await;
    let t = now_ms();
    let t1 = t + Duration::seconds(1);
    let x = request(store, &show, &fresh_user("x"), &["A1"], t).await;
    let hx = grant(store, &show, &x, t).await;

    let p = request(store, &show, &fresh_user("p"), &["A5"], t1).await;
    let q = request(store, &show, &fresh_user("q"), &["A1", "A2"], t1).await;
    store
        .begin_processing(&[p.request_id, q.request_id])
        .await
        .unwrap();
    // The second worker never saw x's hold.
    let mut blind = DecisionEngine::new(show.layout.clone(), ShowSnapshot::default(), HOLD_TTL);
    let stale = blind.decide_batch(vec![pending(&p), pending(&q)], t1);
    assert!(
        stale
            .decisions
            .iter()
            .all(|d| matches!(d, Decision::Granted { .. }))
    );
    assert_eq!(
        store.commit_batch(show.show_id, &stale, t1).await,
        Err(CommitError::SeatConflict)
    );

    for r in [&p, &q] {
        let now = store.get_request(r.request_id).await.unwrap().unwrap();
        assert_eq!(now.status, RequestStatus::Processing, "still undecided");
        assert_eq!(now.outcome, None);
        assert_eq!(now.processed_at, None);
        assert_eq!(
            store
                .get_hold(HoldId::for_request(r.request_id))
                .await
                .unwrap(),
            None,
            "no hold row"
        );
    }
    assert_eq!(taken(store, &show, t1).await, held(&["A1"]));
    let state = store.load_show_state(show.show_id, t1).await.unwrap();
    assert_eq!(
        state.holds.iter().map(|h| h.hold_id).collect::<Vec<_>>(),
        vec![hx]
    );

    // Deciding again from fresh state succeeds: the earlier hold wins.
    let t2 = t1 + Duration::seconds(1);
    let fresh = decide_and_commit(store, &show, &[&p, &q], t2).await;
    assert!(matches!(fresh.decisions[0], Decision::Granted { .. }));
    assert!(
        matches!(&fresh.decisions[1], Decision::Rejected { unavailable, .. } if *unavailable == seats(&["A1"]))
    );
    assert_eq!(taken(store, &show, t2).await, held(&["A1", "A5"]));
}

/// A seat whose hold ran out by time can be claimed again at once, with no sweeper run.
pub async fn expired_claim_is_taken_without_sweeper<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 4).await;
    let t = now_ms();
    let early = t - Duration::minutes(10);
    let x = request(store, &show, &fresh_user("x"), &["A1", "A2"], early).await;
    let hx = grant(store, &show, &x, early).await;
    assert_eq!(taken(store, &show, early).await, held(&["A1", "A2"]));

    // Five minutes later the hold is over, though nothing has written that down.
    assert!(taken(store, &show, t).await.is_empty());
    assert!(
        store
            .load_show_state(show.show_id, t)
            .await
            .unwrap()
            .holds
            .is_empty()
    );
    let y = request(store, &show, &fresh_user("y"), &["A2", "A3"], t).await;
    let hy = grant(store, &show, &y, t).await;
    assert_eq!(taken(store, &show, t).await, held(&["A2", "A3"]));
    assert_eq!(
        store.get_hold(hy).await.unwrap().unwrap().status,
        HoldStatus::Held
    );
    assert_eq!(
        store.get_hold(hx).await.unwrap().unwrap().status_at(t),
        HoldStatus::Expired
    );
}

/// Committing the same granting batch twice (a duplicate delivery decided twice) is refused the
/// second time and changes nothing; repeating a non-granting decision is a harmless no-op.
pub async fn stale_duplicate_grant_is_refused<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 4).await;
    let t = now_ms();
    let r = request(store, &show, &fresh_user("r"), &["A1", "A2"], t).await;
    let s = request(store, &show, &fresh_user("s"), &["A1"], t).await;
    let batch = decide(store, &show, &[&r, &s], t).await;
    assert!(matches!(batch.decisions[0], Decision::Granted { .. }));
    assert!(matches!(batch.decisions[1], Decision::Rejected { .. }));
    store.commit_batch(show.show_id, &batch, t).await.unwrap();

    let hold_id = HoldId::for_request(r.request_id);
    let before = (
        store.get_request(r.request_id).await.unwrap(),
        store.get_request(s.request_id).await.unwrap(),
        store.get_hold(hold_id).await.unwrap(),
        taken(store, &show, t).await,
    );
    for at in [t, t + Duration::seconds(1)] {
        assert_eq!(
            store.commit_batch(show.show_id, &batch, at).await,
            Err(CommitError::SeatConflict)
        );
    }
    let rejection_only = BatchOutcome {
        decisions: vec![batch.decisions[1].clone()],
        seat_changes: vec![],
    };
    let written = store
        .commit_batch(show.show_id, &rejection_only, t + Duration::seconds(2))
        .await
        .unwrap();
    assert_eq!(written, vec![], "an already decided request is skipped");
    let after = (
        store.get_request(r.request_id).await.unwrap(),
        store.get_request(s.request_id).await.unwrap(),
        store.get_hold(hold_id).await.unwrap(),
        taken(store, &show, t).await,
    );
    assert_eq!(before, after);

    // A grant for a request that was already decided otherwise (rejected, then its duplicate
    // delivery decided by a worker that saw the seat free) must not create a hold either.
    let t3 = t + Duration::seconds(3);
    store
        .release_hold(hold_id, &r.user_id, t3)
        .await
        .expect("release");
    let mut blind = DecisionEngine::new(show.layout.clone(), ShowSnapshot::default(), HOLD_TTL);
    let late_grant = blind.decide_batch(vec![pending(&s)], t3);
    assert!(matches!(late_grant.decisions[0], Decision::Granted { .. }));
    assert_eq!(
        store.commit_batch(show.show_id, &late_grant, t3).await,
        Err(CommitError::SeatConflict)
    );
    assert_eq!(store.get_request(s.request_id).await.unwrap(), before.1);
    assert_eq!(
        store
            .get_hold(HoldId::for_request(s.request_id))
            .await
            .unwrap(),
        None
    );
    assert!(taken(store, &show, t3).await.is_empty());
}

/// Within one batch, later decisions see the earlier ones: a user's second grant releases the
/// hold their first grant made (which ends RELEASED, its seats free again), and a seat freed by
/// a release (of a stored hold or of one made earlier in the batch) goes to a later request.
/// Stores that write a batch in bulk must resolve these as applying the decisions in order would.
pub async fn one_batch_builds_on_its_own_grants_and_releases<S: ContractStore>(store: &S) {
    let show = create_show(store, 2, 6).await;
    let t = now_ms();
    let u = fresh_user("u");
    let w = fresh_user("w");
    let stored = request(store, &show, &w, &["B1"], t).await;
    let h0 = grant(store, &show, &stored, t).await;

    let t1 = t + Duration::seconds(1);
    let u1 = request(store, &show, &u, &["A1", "A2", "A4"], t1).await;
    let u2 = request(store, &show, &u, &["A2", "A3"], t1).await;
    let v = request(store, &show, &fresh_user("v"), &["A1"], t1).await;
    let w2 = request(store, &show, &w, &["B5"], t1).await;
    let x = request(store, &show, &fresh_user("x"), &["B1"], t1).await;
    let batch = decide(store, &show, &[&u1, &u2, &v, &w2, &x], t1).await;
    let holds: Vec<(HoldId, Option<HoldId>)> = batch
        .decisions
        .iter()
        .map(|d| match d {
            Decision::Granted {
                hold_id, released, ..
            } => (*hold_id, *released),
            other => panic!("every request is granted: {other:?}"),
        })
        .collect();
    let [
        (h1, None),
        (h2, Some(r2)),
        (hv, None),
        (hw, Some(rw)),
        (hx, None),
    ] = holds[..]
    else {
        panic!("unexpected releases: {holds:?}");
    };
    assert_eq!((r2, rw), (h1, h0));
    store.commit_batch(show.show_id, &batch, t1).await.unwrap();

    let first = store.get_hold(h1).await.unwrap().unwrap();
    assert_eq!(first.status, HoldStatus::Released);
    assert_eq!(first.ended_at, Some(t1));
    assert_eq!(first.seat_ids, seats(&["A1", "A2", "A4"]));
    assert_eq!(
        store.get_hold(h0).await.unwrap().unwrap().status,
        HoldStatus::Released
    );
    for h in [h2, hv, hw, hx] {
        assert_eq!(
            store.get_hold(h).await.unwrap().unwrap().status,
            HoldStatus::Held
        );
    }
    assert_eq!(
        taken(store, &show, t1).await,
        held(&["A1", "A2", "A3", "B1", "B5"])
    );
    let mut live: Vec<HoldId> = store
        .load_show_state(show.show_id, t1)
        .await
        .unwrap()
        .holds
        .iter()
        .map(|h| h.hold_id)
        .collect();
    live.sort();
    let mut expected = vec![h2, hv, hw, hx];
    expected.sort();
    assert_eq!(live, expected);
    for r in [&u1, &u2, &v, &w2, &x] {
        let now = store.get_request(r.request_id).await.unwrap().unwrap();
        assert_eq!(now.status, RequestStatus::Success);
    }
    // The released seats are really free (A4 was only in the hold released within the batch):
    // released holds left no claim behind.
    let t2 = t1 + Duration::seconds(1);
    let after = request(store, &show, &fresh_user("y"), &["A4", "A5", "A6"], t2).await;
    grant(store, &show, &after, t2).await;
    assert_eq!(
        taken(store, &show, t2).await,
        held(&["A1", "A2", "A3", "A4", "A5", "A6", "B1", "B5"])
    );
}

/// A stale batch that grants a seat of a live stored hold *before* the grant that releases that
/// hold is refused: at that point of the batch the seat was still taken. The same decisions in
/// the other order commit.
pub async fn stale_claim_before_a_release_in_the_batch_is_refused<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 6).await;
    let t = now_ms();
    let u = fresh_user("u");
    let first = request(store, &show, &u, &["A1"], t).await;
    let h0 = grant(store, &show, &first, t).await;

    let t1 = t + Duration::seconds(1);
    let v = request(store, &show, &fresh_user("v"), &["A1"], t1).await;
    let again = request(store, &show, &u, &["A5"], t1).await;
    let grant_of = |r: &booking_core::BookingRequest, released: Option<HoldId>| Decision::Granted {
        request_id: r.request_id,
        user_id: r.user_id.clone(),
        hold_id: HoldId::for_request(r.request_id),
        seat_ids: r.seat_ids.clone(),
        expires_at: t1 + HOLD_TTL,
        released,
    };
    let stale = BatchOutcome {
        decisions: vec![grant_of(&v, None), grant_of(&again, Some(h0))],
        seat_changes: vec![],
    };
    assert_eq!(
        store.commit_batch(show.show_id, &stale, t1).await,
        Err(CommitError::SeatConflict)
    );
    assert_eq!(
        store.get_hold(h0).await.unwrap().unwrap().status,
        HoldStatus::Held,
        "nothing of the refused batch was written"
    );
    assert_eq!(taken(store, &show, t1).await, held(&["A1"]));
    for r in [&v, &again] {
        assert_eq!(
            store
                .get_request(r.request_id)
                .await
                .unwrap()
                .unwrap()
                .status,
            RequestStatus::Queued
        );
    }

    let in_order = BatchOutcome {
        decisions: vec![grant_of(&again, Some(h0)), grant_of(&v, None)],
        seat_changes: vec![],
    };
    store
        .commit_batch(show.show_id, &in_order, t1)
        .await
        .unwrap();
    assert_eq!(taken(store, &show, t1).await, held(&["A1", "A5"]));
    assert_eq!(
        store.get_hold(h0).await.unwrap().unwrap().status,
        HoldStatus::Released
    );
}

/// Seat reads decide expiry by comparing with `now`: a hold counts until the instant before its
/// `expires_at` and not from that instant on.
pub async fn reads_honour_expiry_by_time<S: ContractStore>(store: &S) {
    let show = create_show(store, 2, 4).await;
    let t = now_ms();
    let r = request(store, &show, &fresh_user("u"), &["A1", "B1"], t).await;
    let h = grant(store, &show, &r, t).await;
    let end = t + HOLD_TTL;
    let just_before = end - Duration::milliseconds(1);

    assert_eq!(taken(store, &show, just_before).await, held(&["A1", "B1"]));
    let live = store
        .load_show_state(show.show_id, just_before)
        .await
        .unwrap();
    assert_eq!(
        live.holds.iter().map(|h| h.hold_id).collect::<Vec<_>>(),
        vec![h]
    );
    assert!(live.booked.is_empty());

    assert!(taken(store, &show, end).await.is_empty());
    assert!(
        store
            .load_show_state(show.show_id, end)
            .await
            .unwrap()
            .holds
            .is_empty()
    );
    let stored = store.get_hold(h).await.unwrap().unwrap();
    assert_eq!(stored.status_at(just_before), HoldStatus::Held);
    assert_eq!(stored.status_at(end), HoldStatus::Expired);
}

/// Only the owner releases a live hold; twice is NotHeld(Released); an expired one is
/// NotHeld(Expired); released seats are free again.
pub async fn release_hold_rules<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 6).await;
    let t = now_ms();
    let owner = fresh_user("owner");

    let long_ago = t - Duration::minutes(10);
    let old = request(store, &show, &owner, &["A6"], long_ago).await;
    let expired = grant(store, &show, &old, long_ago).await;
    assert_eq!(
        store.release_hold(expired, &owner, t).await,
        Err(ReleaseError::NotHeld(HoldStatus::Expired))
    );

    let r = request(store, &show, &owner, &["A1", "A2"], t).await;
    let h = grant(store, &show, &r, t).await;
    let t1 = t + Duration::seconds(1);
    assert_eq!(
        store.release_hold(h, &fresh_user("stranger"), t1).await,
        Err(ReleaseError::NotFound),
        "not yours reads as not found"
    );
    assert_eq!(
        store.release_hold(HoldId::new_random(), &owner, t1).await,
        Err(ReleaseError::NotFound)
    );
    assert_eq!(taken(store, &show, t1).await, held(&["A1", "A2"]));

    let released = store.release_hold(h, &owner, t1).await.unwrap();
    assert_eq!(released.hold_id, h);
    assert_eq!(released.status, HoldStatus::Released);
    assert_eq!(released.ended_at, Some(t1));
    assert_eq!(released.seat_ids, seats(&["A1", "A2"]));
    assert_eq!(store.get_hold(h).await.unwrap(), Some(released));
    assert_eq!(
        store
            .release_hold(h, &owner, t1 + Duration::seconds(1))
            .await,
        Err(ReleaseError::NotHeld(HoldStatus::Released))
    );

    let t2 = t1 + Duration::seconds(2);
    assert!(taken(store, &show, t2).await.is_empty());
    assert!(
        store
            .load_show_state(show.show_id, t2)
            .await
            .unwrap()
            .holds
            .is_empty()
    );
    let next = request(store, &show, &fresh_user("next"), &["A1", "A2"], t2).await;
    grant(store, &show, &next, t2).await;
    assert_eq!(taken(store, &show, t2).await, held(&["A1", "A2"]));
}

/// `expire_holds` marks HELD holds past their expiry EXPIRED once, returns them, and leaves
/// live and released ones alone.
pub async fn expire_holds_sweeps_overdue<S: ContractStore>(store: &S) {
    // Far in the past, so this global sweep cannot touch another case's holds.
    let e = now_ms() - Duration::days(400);
    let show_x = create_show(store, 1, 4).await;
    let show_y = create_show(store, 1, 4).await;
    let x = request(store, &show_x, &fresh_user("x"), &["A1"], e).await;
    let hx = grant(store, &show_x, &x, e).await;
    let later = e + Duration::minutes(10);
    let y = request(store, &show_y, &fresh_user("y"), &["A1"], later).await;
    let hy = grant(store, &show_y, &y, later).await;

    let show_z = create_show(store, 1, 4).await;
    let z_user = fresh_user("z");
    let z = request(store, &show_z, &z_user, &["A1"], e).await;
    let hz = grant(store, &show_z, &z, e).await;
    store
        .release_hold(hz, &z_user, e + Duration::minutes(1))
        .await
        .expect("release");

    // A busy show: another batch is committed after its hold ran out. The sweep must still
    // return that hold, or its seats' return would never be announced.
    let show_w = create_show(store, 1, 4).await;
    let w = request(store, &show_w, &fresh_user("w"), &["A1"], e).await;
    let hw = grant(store, &show_w, &w, e).await;
    let busy_at = e + HOLD_TTL + Duration::minutes(3);
    let v = request(store, &show_w, &fresh_user("v"), &["A2"], busy_at).await;
    let hv = grant(store, &show_w, &v, busy_at).await;

    let sweep = e + HOLD_TTL + Duration::minutes(6);
    let swept = store.expire_holds(sweep).await.unwrap();
    let mut mine: Vec<&Hold> = swept
        .iter()
        .filter(|h| [hx, hy, hz, hw, hv].contains(&h.hold_id))
        .collect();
    mine.sort_by_key(|h| h.hold_id != hx);
    assert_eq!(mine.len(), 2, "only the overdue holds: {mine:?}");
    assert_eq!(mine[1].hold_id, hw, "expired hold of a busy show");
    assert_eq!(mine[0].hold_id, hx);
    assert_eq!(mine[0].status, HoldStatus::Expired);
    assert_eq!(mine[0].seat_ids, seats(&["A1"]));
    assert!(mine[0].ended_at.is_some());
    assert_eq!(store.get_hold(hx).await.unwrap().as_ref(), Some(mine[0]));

    assert!(
        !store
            .expire_holds(sweep)
            .await
            .unwrap()
            .iter()
            .any(|h| h.hold_id == hx),
        "a hold expires once"
    );
    assert_eq!(
        store.get_hold(hy).await.unwrap().unwrap().status,
        HoldStatus::Held
    );
    assert_eq!(
        store.get_hold(hz).await.unwrap().unwrap().status,
        HoldStatus::Released,
        "a released hold is over already"
    );
    assert!(taken(store, &show_x, sweep).await.is_empty());
    assert_eq!(taken(store, &show_y, sweep).await, held(&["A1"]));
    let again = request(store, &show_x, &fresh_user("z"), &["A1"], sweep).await;
    grant(store, &show_x, &again, sweep).await;
}

/// `expire_overdue_requests` ends QUEUED requests past their deadline as EXPIRED, once, and
/// leaves requests still in time and requests being processed alone.
pub async fn expire_overdue_requests_sweeps_queued<S: ContractStore>(store: &S) {
    // Far in the past (and apart from the hold sweep above), so this global sweep cannot touch
    // another case's requests.
    let e = now_ms() - Duration::days(500);
    let show = create_show(store, 1, 4).await;
    let short = |user: &str, seat: &str| {
        let mut new = new_request(&show, &fresh_user(user), &[seat], e);
        new.expires_at = e + Duration::minutes(1);
        new
    };
    let overdue = insert(store, short("overdue", "A1")).await;
    let working = insert(store, short("working", "A2")).await;
    let mut patient = new_request(&show, &fresh_user("patient"), &["A3"], e);
    patient.expires_at = e + Duration::hours(1);
    let patient = insert(store, patient).await;
    store.begin_processing(&[working.request_id]).await.unwrap();

    let sweep = e + Duration::minutes(2);
    let expired = store.expire_overdue_requests(sweep).await.unwrap();
    let mine: Vec<_> = expired
        .iter()
        .filter(|r| r.show_id == show.show_id)
        .collect();
    assert_eq!(mine.len(), 1, "{mine:?}");
    let swept = mine[0];
    assert_eq!(swept.request_id, overdue.request_id);
    assert_eq!(swept.status, RequestStatus::Expired);
    assert_eq!(swept.processed_at, Some(sweep));
    assert_eq!(
        swept.outcome,
        Some(RequestOutcome::Expired {
            message: EXPIRED_MESSAGE.to_owned()
        })
    );
    assert_eq!(
        store
            .get_request(overdue.request_id)
            .await
            .unwrap()
            .as_ref(),
        Some(swept)
    );
    assert_eq!(
        store
            .get_request(working.request_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        RequestStatus::Processing
    );
    assert_eq!(
        store
            .get_request(patient.request_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        RequestStatus::Queued
    );
    assert!(
        !store
            .expire_overdue_requests(sweep)
            .await
            .unwrap()
            .iter()
            .any(|r| r.request_id == overdue.request_id),
        "a request expires once"
    );
}

/// Movies list by title and round-trip; shows list by start time, filtered by UTC date, with
/// their layout intact; puts replace; a show needs its movie.
pub async fn catalog_listing_and_date_filter<S: ContractStore>(store: &S) {
    let tag = unique("catalog");
    let mut second = movie(&format!("{tag} B"));
    let first = movie(&format!("{tag} A"));
    store.put_movie(&second).await.unwrap();
    store.put_movie(&first).await.unwrap();
    let listed = |all: Vec<booking_core::Movie>| -> Vec<MovieId> {
        all.into_iter()
            .filter(|m| m.title.starts_with(&tag))
            .map(|m| m.movie_id)
            .collect()
    };
    assert_eq!(
        listed(store.list_movies().await.unwrap()),
        vec![first.movie_id, second.movie_id]
    );
    assert_eq!(
        store.get_movie(first.movie_id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.get_movie(MovieId::new_random()).await.unwrap(), None);

    second.title = format!("{tag} 0 (director's cut)");
    second.genres = vec!["Documentary".into()];
    store.put_movie(&second).await.unwrap();
    assert_eq!(
        store.get_movie(second.movie_id).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        listed(store.list_movies().await.unwrap()),
        vec![second.movie_id, first.movie_id]
    );

    let mut spec = LayoutSpec::from(SeatLayout::rectangular(3, 8, 1_200));
    spec.categories.push(booking_core::Category {
        code: "PREMIUM".into(),
        name: "Premium".into(),
        price_cents: 1_800,
        currency: "EUR".into(),
    });
    spec.rows[2].category = "PREMIUM".into();
    spec.blocked = seats(&["A1", "C8"]);
    let layout = Arc::new(SeatLayout::new(spec).unwrap());
    let at = |d: u32, h: u32, m: u32, s: u32, ms: i64| {
        Utc.with_ymd_and_hms(2031, 3, d, h, m, s).unwrap() + Duration::milliseconds(ms)
    };
    let show = |starts_at| Show {
        show_id: ShowId::new_random(),
        movie_id: first.movie_id,
        starts_at,
        auditorium: "Hall 2".into(),
        layout: layout.clone(),
    };
    let before_midnight = show(at(13, 23, 59, 59, 999));
    let mut morning = show(at(14, 10, 0, 0, 0));
    let evening = show(at(14, 20, 30, 0, 0));
    let next_night = show(at(15, 1, 0, 0, 0));
    for s in [&evening, &next_night, &morning, &before_midnight] {
        store.put_show(s).await.unwrap();
    }
    let day = |d| NaiveDate::from_ymd_opt(2031, 3, d).unwrap();
    let ids = |shows: Vec<Show>| shows.into_iter().map(|s| s.show_id).collect::<Vec<_>>();
    assert_eq!(
        store.list_shows(first.movie_id, None).await.unwrap(),
        vec![
            before_midnight.clone(),
            morning.clone(),
            evening.clone(),
            next_night.clone()
        ]
    );
    assert_eq!(
        ids(store
            .list_shows(first.movie_id, Some(day(14)))
            .await
            .unwrap()),
        vec![morning.show_id, evening.show_id]
    );
    assert_eq!(
        ids(store
            .list_shows(first.movie_id, Some(day(13)))
            .await
            .unwrap()),
        vec![before_midnight.show_id]
    );
    assert_eq!(
        ids(store
            .list_shows(first.movie_id, Some(day(15)))
            .await
            .unwrap()),
        vec![next_night.show_id]
    );
    assert!(
        store
            .list_shows(first.movie_id, Some(day(16)))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_shows(second.movie_id, None)
            .await
            .unwrap()
            .is_empty()
    );

    let stored = store.get_show(morning.show_id).await.unwrap().unwrap();
    assert_eq!(stored, morning);
    assert!(stored.layout.is_blocked(seats(&["C8"])[0]));
    assert_eq!(
        stored.layout.category_of(seats(&["C1"])[0]).unwrap().code,
        "PREMIUM"
    );
    morning.auditorium = "Hall 3".into();
    store.put_show(&morning).await.unwrap();
    assert_eq!(
        store.get_show(morning.show_id).await.unwrap(),
        Some(morning)
    );
    assert_eq!(store.get_show(ShowId::new_random()).await.unwrap(), None);

    let mut orphan = show(at(14, 12, 0, 0, 0));
    orphan.movie_id = MovieId::new_random();
    assert!(
        store.put_show(&orphan).await.is_err(),
        "a show needs its movie"
    );
    assert_eq!(store.get_show(orphan.show_id).await.unwrap(), None);
}

/// The store answers.
pub async fn ping_answers<S: ContractStore>(store: &S) {
    store.ping().await.expect("ping");
}
