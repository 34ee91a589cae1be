//! Intake: how a store takes requests in and hands them to the worker.
//!
//! An answered `insert_request` is the promise "your request will be decided", so these cases
//! pin down what that promise rests on: the request reads back exactly as stored, durable the
//! moment the call returns, even under hundreds of concurrent intakes; a retry with the same
//! idempotency key never creates a second request; and pending requests come back in arrival
//! order, the order the engine decides them in.

use super::ContractStore;
use crate::support::*;
use booking_core::ports::Inserted;
use booking_core::{IdempotencyKey, RequestId, RequestStatus};
use chrono::Duration;
use std::collections::HashSet;

/// A request reads back exactly as `insert_request` returned it, QUEUED and without outcome,
/// and sequence numbers grow in arrival order.
pub async fn insert_and_get_round_trip<S: ContractStore>(store: &S) {
    let show = create_show(store, 2, 10).await;
    let t = now();
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
        assert_eq!(stored.created_at, store.as_stored(new.created_at));
        assert_eq!(stored.expires_at, store.as_stored(new.expires_at));
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
    let t = now();
    let user = fresh_user("retrier");
    let key: IdempotencyKey = "checkout-42".parse().unwrap();

    let mut first = new_request(&show, &user, &["A1"], t);
    first.idempotency_key = Some(key.clone());
    let first = insert(store, first).await;

    let mut retry = new_request(&show, &user, &["A2", "A3"], t + Duration::seconds(1));
    retry.idempotency_key = Some(key.clone());
    match store.insert_request(retry.clone()).await.unwrap() {
        Inserted::Existing(earlier) => assert_eq!(earlier, first),
        other => panic!("same user and key must not create a request: {other:?}"),
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
    assert_eq!(
        store.request_with_key(&user, &key).await.unwrap(),
        Some(first.clone()),
        "found by its user and key"
    );
    assert_eq!(
        store
            .request_with_key(&other.user_id, &key)
            .await
            .unwrap()
            .map(|r| r.request_id),
        Some(other.request_id)
    );
    assert_eq!(
        store
            .request_with_key(&fresh_user("nobody"), &key)
            .await
            .unwrap(),
        None
    );

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
        other => panic!("a decided request's key is still taken: {other:?}"),
    }
}

/// 200 concurrent intakes: every one durable, with distinct sequence numbers; ten concurrent
/// retries with one key create exactly one request.
pub async fn concurrent_inserts_are_durable<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 10).await;
    let t = now();
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
            Inserted::TooManyOpen { max } => panic!("no cap was set, refused at {max}"),
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

/// The cap on a user's open requests is counted by the insert itself: a new request beyond
/// `max_open` undecided requests of its user for its show is refused and writes nothing;
/// decided requests do not count, other users and other shows are independent, a request
/// without a cap passes; a retry (the same idempotency key, or the same request id) is found
/// even at the cap; and of many concurrent requests of one user, exactly `max_open` get in.
pub async fn open_request_cap_is_counted_by_the_insert<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 10).await;
    let other_show = create_show(store, 1, 10).await;
    let t = now();
    let user = fresh_user("capped");
    let capped = |show: &booking_core::Show, user: &booking_core::UserId, labels: &[&str]| {
        let mut new = new_request(show, user, labels, t);
        new.max_open = Some(2);
        new
    };
    let first = insert(store, capped(&show, &user, &["A1"])).await;
    let mut keyed = capped(&show, &user, &["A2"]);
    keyed.idempotency_key = Some("cap-key".parse().unwrap());
    let second = insert(store, keyed.clone()).await;

    let third = capped(&show, &user, &["A3"]);
    assert_eq!(
        store.insert_request(third.clone()).await.unwrap(),
        Inserted::TooManyOpen { max: 2 }
    );
    assert_eq!(
        store.get_request(third.request_id).await.unwrap(),
        None,
        "nothing written"
    );

    // Retries are no new requests: found, at the cap.
    let mut retry = capped(&show, &user, &["A4"]);
    retry.idempotency_key = keyed.idempotency_key.clone();
    match store.insert_request(retry).await.unwrap() {
        Inserted::Existing(found) => assert_eq!(found.request_id, second.request_id),
        other => panic!("a retry by key at the cap: {other:?}"),
    }
    let mut same_id = capped(&show, &user, &["A1"]);
    same_id.request_id = first.request_id;
    match store.insert_request(same_id).await.unwrap() {
        Inserted::Existing(found) => assert_eq!(found.request_id, first.request_id),
        other => panic!("a retry of the same request id at the cap: {other:?}"),
    }

    // Others, elsewhere, and uncapped requests are not held back.
    insert(store, capped(&show, &fresh_user("free"), &["A5"])).await;
    insert(store, capped(&other_show, &user, &["A1"])).await;
    let uncapped = insert(store, new_request(&show, &user, &["A6"], t)).await;

    // Decided requests no longer count: after both capped ones are decided, the uncapped one
    // alone is open, so one more gets in and the next does not.
    grant(store, &show, &first, t + Duration::seconds(1)).await;
    grant(store, &show, &second, t + Duration::seconds(2)).await;
    let _ = uncapped;
    insert(store, capped(&show, &user, &["A7"])).await;
    assert_eq!(
        store
            .insert_request(capped(&show, &user, &["A8"]))
            .await
            .unwrap(),
        Inserted::TooManyOpen { max: 2 }
    );

    // Concurrent requests of one user through one store: exactly the cap gets in.
    let crowd = fresh_user("crowd-of-one");
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            let mut new = new_request(&show, &crowd, &[["B1", "B2", "B3", "B4"][i % 4]], t);
            new.max_open = Some(5);
            tokio::spawn(async move { store.insert_request(new).await.unwrap() })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Inserted::New(_) => admitted += 1,
            Inserted::TooManyOpen { max } => assert_eq!(max, 5),
            Inserted::Existing(r) => panic!("nothing to repeat: {r:?}"),
        }
    }
    assert_eq!(admitted, 5, "of 20 concurrent requests with a cap of 5");
}

/// Pending requests come in arrival order across shows, PROCESSING ones included, decided ones
/// gone.
pub async fn pending_requests_in_arrival_order<S: ContractStore>(store: &S) {
    let a = create_show(store, 1, 10).await;
    let b = create_show(store, 1, 10).await;
    let t = now();
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

/// A request set aside as a dead letter stays QUEUED but is no longer pending (recovery skips
/// it) and is listed with its reason and attempts; a redrive hands it back once; a discard ends
/// it FAILED with the reason; a decided request cannot be set aside.
pub async fn dead_letters_are_set_aside_redriven_once_and_discarded<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 6).await;
    let other = create_show(store, 1, 6).await;
    let t = now();
    let first = request(store, &show, &fresh_user("dl-a"), &["A1"], t).await;
    let stuck = request(store, &show, &fresh_user("dl-b"), &["A2"], t).await;
    let doomed = request(store, &show, &fresh_user("dl-c"), &["A3"], t).await;
    let elsewhere = request(store, &other, &fresh_user("dl-d"), &["A1"], t).await;
    store.begin_processing(&[stuck.request_id]).await.unwrap();
    for (r, why) in [(&stuck, "injected: cannot commit"), (&doomed, "bad row")] {
        assert!(
            store
                .dead_letter_request(r.request_id, why, 5, t)
                .await
                .unwrap()
        );
    }
    assert!(
        store
            .dead_letter_request(elsewhere.request_id, "x", 2, t)
            .await
            .unwrap()
    );

    let pending = pending_of(store, &[show.show_id, other.show_id]).await;
    assert_eq!(
        pending.iter().map(|r| r.request_id).collect::<Vec<_>>(),
        [first.request_id],
        "dead letters are not pending"
    );
    let listed = store.dead_letters(Some(show.show_id)).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|d| d.request.request_id)
            .collect::<Vec<_>>(),
        [stuck.request_id, doomed.request_id],
        "in arrival order, of the show asked for"
    );
    assert_eq!(
        listed[0].request.status,
        RequestStatus::Queued,
        "set aside as QUEUED"
    );
    assert_eq!(
        (listed[0].reason.as_str(), listed[0].attempts),
        ("injected: cannot commit", 5)
    );
    assert!(
        store
            .dead_letters(None)
            .await
            .unwrap()
            .iter()
            .any(|d| d.request.request_id == elsewhere.request_id)
    );

    // A redrive hands a dead letter back once.
    let redriven = store
        .redrive_dead_letters(&[stuck.request_id, first.request_id])
        .await
        .unwrap();
    assert_eq!(
        redriven.iter().map(|r| r.request_id).collect::<Vec<_>>(),
        [stuck.request_id],
        "only what was a dead letter"
    );
    assert!(
        store
            .redrive_dead_letters(&[stuck.request_id])
            .await
            .unwrap()
            .is_empty()
    );
    let pending = pending_of(store, &[show.show_id]).await;
    assert_eq!(
        pending.iter().map(|r| r.request_id).collect::<Vec<_>>(),
        [first.request_id, stuck.request_id]
    );

    // A discard ends it FAILED with the reason, once.
    let discarded = store
        .discard_dead_letter(doomed.request_id, "withdrawn by the box office", t)
        .await
        .unwrap()
        .expect("it was a dead letter");
    assert_eq!(discarded.status, RequestStatus::Failed);
    assert_eq!(
        discarded.outcome.as_ref().map(|o| o.message()).as_deref(),
        Some("withdrawn by the box office")
    );
    assert_eq!(
        store.get_request(doomed.request_id).await.unwrap(),
        Some(discarded)
    );
    assert!(
        store
            .discard_dead_letter(doomed.request_id, "again", t)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .dead_letters(Some(show.show_id))
            .await
            .unwrap()
            .is_empty()
    );

    // A decided request is not set aside.
    decide_and_commit(store, &show, &[&first], t).await;
    assert!(
        !store
            .dead_letter_request(first.request_id, "late", 5, t)
            .await
            .unwrap()
    );
}

/// `undecided_before` lists the show's requests still undecided that arrived before the given
/// one, in arrival order and up to the limit: QUEUED and PROCESSING ones, not decided ones, not
/// dead letters, not later ones, not other shows'.
pub async fn undecided_before_lists_the_older_waiting_requests<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 8).await;
    let other = create_show(store, 1, 8).await;
    let t = now();
    let decided = request(store, &show, &fresh_user("decided"), &["A1"], t).await;
    grant(store, &show, &decided, t).await;
    let queued = request(store, &show, &fresh_user("queued"), &["A2"], t).await;
    let set_aside = request(store, &show, &fresh_user("set-aside"), &["A3"], t).await;
    let taken = request(store, &show, &fresh_user("taken"), &["A4"], t).await;
    request(store, &other, &fresh_user("elsewhere"), &["A1"], t).await;
    let me = request(store, &show, &fresh_user("me"), &["A5"], t).await;
    request(store, &show, &fresh_user("later"), &["A6"], t).await;
    store.begin_processing(&[taken.request_id]).await.unwrap();
    assert!(
        store
            .dead_letter_request(set_aside.request_id, "poison", 5, t)
            .await
            .unwrap()
    );
    let ids = |rs: Vec<booking_core::BookingRequest>| -> Vec<_> {
        rs.into_iter().map(|r| r.request_id).collect()
    };
    assert_eq!(
        ids(store
            .undecided_before(show.show_id, me.seq, 10)
            .await
            .unwrap()),
        vec![queued.request_id, taken.request_id]
    );
    assert_eq!(
        ids(store
            .undecided_before(show.show_id, me.seq, 1)
            .await
            .unwrap()),
        vec![queued.request_id]
    );
    assert_eq!(
        ids(store
            .undecided_before(show.show_id, queued.seq, 10)
            .await
            .unwrap()),
        vec![]
    );
}
