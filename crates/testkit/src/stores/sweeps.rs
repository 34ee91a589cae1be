//! Sweeps: the global clean-ups that write down what time has already decided.
//!
//! `expire_holds` and `expire_overdue_requests` run across every show, so their results are what
//! the rest of the system announces (seats returned, requests expired): each row must be swept
//! exactly once, and rows still live or being processed must be left alone. Because the sweeps
//! are global, these cases place their data hundreds of days in the past, on time ranges no
//! other case touches, and look only at their own rows in what a sweep returns.

use super::{ContractStore, EXPIRED_MESSAGE};
use crate::support::*;
use booking_core::ports::{OrderError, Purged};
use booking_core::{BookingRequest, Hold, HoldStatus, RequestOutcome, RequestStatus};
use chrono::Duration;

/// `expire_holds` marks HELD holds past their expiry EXPIRED once, returns them, and leaves
/// live and released ones alone.
pub async fn expire_holds_sweeps_overdue<S: ContractStore>(store: &S) {
    // Far in the past, so this global sweep cannot touch another case's holds.
    let e = now() - Duration::days(400);
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
/// leaves requests still in time alone, and requests being processed until they are past their
/// deadline by `PROCESSING_GRACE`.
pub async fn expire_overdue_requests_sweeps_queued<S: ContractStore>(store: &S) {
    // Far in the past (and apart from the hold sweep above), so this global sweep cannot touch
    // another case's requests.
    let e = now() - Duration::days(500);
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
    assert_eq!(swept.processed_at, Some(store.as_stored(sweep)));
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
    // A request taken by a decider that was cut off ends EXPIRED too, once it is past its
    // deadline by PROCESSING_GRACE, not before.
    let late = e + Duration::minutes(1) + booking_core::PROCESSING_GRACE;
    let swept: Vec<_> = store
        .expire_overdue_requests(late - Duration::seconds(1))
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.show_id == show.show_id)
        .collect();
    assert_eq!(swept, vec![], "still within its grace");
    let swept: Vec<_> = store
        .expire_overdue_requests(late)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.show_id == show.show_id)
        .map(|r| (r.request_id, r.status))
        .collect();
    assert_eq!(swept, vec![(working.request_id, RequestStatus::Expired)]);
}

/// `purge_history` removes, in batches of at most `limit`, the holds that ended without an order
/// before the cutoff and the decided requests no remaining hold refers to (FAILED, discarded
/// dead letters, and SUCCESS once their hold is gone), and keeps sales (a hold that
/// became an order, its request and the order) and anything newer than the cutoff.
pub async fn purge_history_removes_old_history_and_keeps_sales<S: ContractStore>(store: &S) {
    // Older than anything another case writes, so that this global purge removes only these
    // rows. The requests' deadlines lie in the future, so that no other case's global sweep can
    // expire them before they are decided here (an EXPIRED request is purged by the same rule as
    // a FAILED one, the discarded dead letter below).
    let e = now() - Duration::days(3100);
    let cutoff = now() - Duration::days(3000);
    let show = create_show(store, 1, 10).await;
    let ask = |user: &str, labels: &[&str]| {
        let mut new = new_request(&show, &fresh_user(user), labels, e);
        new.expires_at = now() + Duration::days(1);
        insert(store, new)
    };

    // Another case's global sweep may expire a hold of these old instants at any moment (they
    // all lie in its past), so the steps that need a live hold tolerate that (the release: an
    // EXPIRED hold is purged by the same rule) or try again (the sale).
    let released = ask("released", &["A1"]).await;
    let released_hold = grant(store, &show, &released, e).await;
    let _ = store
        .release_hold(released_hold, &released.user_id, e + Duration::minutes(1))
        .await;
    let ended = store.get_hold(released_hold).await.unwrap().unwrap().status;
    assert!(
        matches!(ended, HoldStatus::Released | HoldStatus::Expired),
        "{ended:?}"
    );
    // Two requests for one seat: one granted (its hold left to expire), one FAILED.
    let won = ask("won", &["A2"]).await;
    let lost = ask("lost", &["A2"]).await;
    decide_and_commit(store, &show, &[&won, &lost], e).await;
    let won_hold = match store.get_request(won.request_id).await.unwrap() {
        Some(BookingRequest {
            outcome: Some(RequestOutcome::Granted { hold_id, .. }),
            ..
        }) => hold_id,
        other => panic!("won was granted: {other:?}"),
    };
    store
        .expire_holds(e + HOLD_TTL + Duration::minutes(1))
        .await
        .unwrap();
    let dead = ask("dead", &["A4"]).await;
    assert!(
        store
            .dead_letter_request(dead.request_id, "poison", 5, e)
            .await
            .unwrap()
    );
    assert!(
        store
            .discard_dead_letter(dead.request_id, "given up", e)
            .await
            .unwrap()
            .is_some()
    );
    let mut sold = None;
    for seat in ["A5", "A6", "A7"] {
        let bought = ask("buyer", &[seat]).await;
        let hold = grant(store, &show, &bought, e).await;
        let order = new_order(&show, hold, &bought.user_id, &[seat], e, e + ORDER_TTL);
        match store.create_order(&order).await {
            Ok(order) => {
                sold = Some(order);
                break;
            }
            Err(OrderError::HoldNotActive(HoldStatus::Expired)) => continue,
            Err(other) => panic!("create_order: {other:?}"),
        }
    }
    let sold = sold.expect("a sale at the third try at the latest");
    let t = now();
    let recent_user = fresh_user("recent");
    let recent = request(store, &show, &recent_user, &["A8"], t).await;
    let recent_hold = grant(store, &show, &recent, t).await;
    store
        .release_hold(recent_hold, &recent_user, t)
        .await
        .expect("release");

    const LIMIT: u32 = 2;
    let mut total = Purged::default();
    for call in 1.. {
        let purged = store.purge_history(cutoff, LIMIT).await.unwrap();
        assert!(
            purged.holds <= u64::from(LIMIT) && purged.requests <= u64::from(LIMIT),
            "bounded batches: {purged:?}"
        );
        total.holds += purged.holds;
        total.requests += purged.requests;
        if !purged.is_full(LIMIT) {
            break;
        }
        assert!(call < 20, "the purge does not end");
    }
    assert!(total.holds >= 2 && total.requests >= 4, "{total:?}");

    for gone in [&released, &won, &lost, &dead] {
        assert_eq!(store.get_request(gone.request_id).await.unwrap(), None);
    }
    for gone in [released_hold, won_hold] {
        assert_eq!(store.get_hold(gone).await.unwrap(), None);
    }
    let sold_hold = store
        .get_hold(sold.hold_id)
        .await
        .unwrap()
        .expect("a sale's hold is kept");
    assert_eq!(sold_hold.status, HoldStatus::Converted);
    assert!(
        store
            .get_request(sold_hold.request_id)
            .await
            .unwrap()
            .is_some(),
        "a sale's request is kept"
    );
    assert!(store.get_order(sold.order_id).await.unwrap().is_some());
    assert!(
        store
            .get_request(recent.request_id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.get_hold(recent_hold).await.unwrap().is_some());

    // The seats of purged history are free: a new request for them is granted.
    let again = request(store, &show, &fresh_user("again"), &["A1", "A2"], t).await;
    grant(store, &show, &again, t).await;
}
