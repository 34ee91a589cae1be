//! Batches: how a store claims requests for a worker and writes what the engine decided.
//!
//! A batch goes `start_deciding` (or `begin_processing`) -> decide -> `commit_batch`; the cases
//! here cover that path when the decisions were made against current state. They pin down that every request is
//! decided once (duplicate deliveries and stray decisions change nothing), that one commit
//! writes every kind of outcome with its hold and seat claims, that a user's new hold releases
//! their previous one, and that decisions later in a batch build on the grants and releases
//! earlier in it, which stores writing a batch in bulk could easily get wrong.
//! Batches decided against stale state are in `conflicts`.

use super::{ContractStore, EXPIRED_MESSAGE};
use crate::support::*;
use booking_core::ports::CommitError;
use booking_core::{
    BatchOutcome, Decision, Hold, HoldId, HoldStatus, RequestId, RequestOutcome, RequestStatus,
    ShowSnapshot, SnapshotHold, rejection_message,
};
use chrono::Duration;

/// `begin_processing` returns only undecided requests, each once: a duplicate delivery of a
/// decided request leads to no second decision, and even a stray non-grant decision for it
/// changes nothing.
pub async fn begin_processing_skips_decided<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 10).await;
    let t = now();
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

/// `start_deciding` returns only undecided requests, each once, and whether or not it claims
/// them, the commit is the guard it relies on: two deciders that both started on one request
/// cannot both grant it; the later commit is refused as a seat conflict and writes nothing, and
/// after it the request is no longer among those to decide.
pub async fn start_deciding_leaves_the_guard_to_the_commit<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 10).await;
    let t = now();
    let r1 = request(store, &show, &fresh_user("one"), &["A1"], t).await;
    let r2 = request(store, &show, &fresh_user("two"), &["A2"], t).await;
    assert!(store.start_deciding(&[]).await.unwrap().is_empty());
    grant(store, &show, &r1, t).await;

    let started = store
        .start_deciding(&[
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
    assert!(!r2_now.status.is_terminal(), "{:?}", r2_now.status);
    assert_eq!(r2_now.outcome, None);

    // Two deciders start on r2 and each decide it against the same state.
    assert_eq!(
        store.start_deciding(&[r2.request_id]).await.unwrap(),
        [r2.request_id]
    );
    let first = decide(store, &show, &[&r2], t).await;
    let second = decide(store, &show, &[&r2], t).await;
    assert_eq!(
        store.commit_batch(show.show_id, &first, t).await.unwrap(),
        [r2.request_id]
    );
    let decided = store.get_request(r2.request_id).await.unwrap().unwrap();
    assert_eq!(decided.status, RequestStatus::Success);
    let held = taken(store, &show, t).await;
    assert!(matches!(
        store.commit_batch(show.show_id, &second, t).await,
        Err(CommitError::SeatConflict)
    ));
    assert_eq!(
        store.get_request(r2.request_id).await.unwrap(),
        Some(decided),
        "the first decision stands"
    );
    assert_eq!(
        taken(store, &show, t).await,
        held,
        "the refused commit wrote nothing"
    );
    assert!(
        store
            .start_deciding(&[r2.request_id])
            .await
            .unwrap()
            .is_empty()
    );
}

/// One batch with a grant, a rejection, an expiry and an invalid request records each outcome,
/// the hold and its claims.
pub async fn commit_batch_records_every_outcome<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 6).await;
    let t = now();
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
    let hold_expires_at = store.as_stored(t + HOLD_TTL);
    let got = |id| async move { store.get_request(id).await.unwrap().unwrap() };

    let a_now = got(a.request_id).await;
    assert_eq!(a_now.status, RequestStatus::Success);
    assert_eq!(a_now.processed_at, Some(store.as_stored(t)));
    assert_eq!(
        a_now.outcome,
        Some(RequestOutcome::Granted {
            hold_id,
            hold_expires_at
        })
    );

    let b_now = got(b.request_id).await;
    assert_eq!(b_now.status, RequestStatus::Failed);
    assert_eq!(b_now.processed_at, Some(store.as_stored(t)));
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
    assert_eq!(c_now.processed_at, Some(store.as_stored(t)));
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
            created_at: store.as_stored(t),
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
    let t = now();
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
    assert_eq!(old.ended_at, Some(store.as_stored(t2)));
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

/// Within one batch, later decisions see the earlier ones: a user's second grant releases the
/// hold their first grant made (which ends RELEASED, its seats free again), and a seat freed by
/// a release (of a stored hold or of one made earlier in the batch) goes to a later request.
/// Stores that write a batch in bulk must resolve these as applying the decisions in order would.
pub async fn one_batch_builds_on_its_own_grants_and_releases<S: ContractStore>(store: &S) {
    let show = create_show(store, 2, 6).await;
    let t = now();
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
    assert_eq!(first.ended_at, Some(store.as_stored(t1)));
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
