//! Conflicts: what a store refuses when a batch was decided against stale state.
//!
//! No seat may ever be held twice, yet two workers (or a redelivered message decided twice) can
//! hand a store decisions made from an out-of-date view of the show. The store is the last line
//! of defence: these cases pin down that such a batch is refused as a whole with
//! `CommitError::SeatConflict` and writes nothing, that a grant for an already decided request
//! creates no hold, and that "stale" is judged at each decision's place in the batch, not only
//! against the state before it.

use super::ContractStore;
use crate::support::*;
use booking_core::ports::CommitError;
use booking_core::{
    BatchOutcome, Decision, DecisionEngine, HoldId, HoldStatus, RequestStatus, ShowSnapshot,
};
use chrono::Duration;

/// Two workers on one show: a batch decided against stale state that grants a seat another hold
/// claims live is refused as a whole; nothing of it is written.
pub async fn seat_conflict_writes_nothing<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 6).await;
    let t = now();
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

/// Committing the same granting batch twice (a duplicate delivery decided twice) is refused the
/// second time and changes nothing; repeating a non-granting decision is a harmless no-op.
pub async fn stale_duplicate_grant_is_refused<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 4).await;
    let t = now();
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

/// A stale batch that grants a seat of a live stored hold *before* the grant that releases that
/// hold is refused: at that point of the batch the seat was still taken. The same decisions in
/// the other order commit.
pub async fn stale_claim_before_a_release_in_the_batch_is_refused<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 6).await;
    let t = now();
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
