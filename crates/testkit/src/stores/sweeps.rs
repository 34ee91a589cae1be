//! Sweeps: the global clean-ups that write down what time has already decided.
//!
//! `expire_holds` and `expire_overdue_requests` run across every show, so their results are what
//! the rest of the system announces (seats returned, requests expired): each row must be swept
//! exactly once, and rows still live or being processed must be left alone. Because the sweeps
//! are global, these cases place their data hundreds of days in the past, on time ranges no
//! other case touches, and look only at their own rows in what a sweep returns.

use super::{ContractStore, EXPIRED_MESSAGE};
use crate::support::*;
use booking_core::{Hold, HoldStatus, RequestOutcome, RequestStatus};
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
/// leaves requests still in time and requests being processed alone.
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
}
