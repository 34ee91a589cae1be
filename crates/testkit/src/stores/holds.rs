//! Holds: when a hold counts, and who may end it early.
//!
//! Holds expire by time, not by a sweeper: a hold counts until the instant before its
//! `expires_at` and not from that instant on, so a seat whose hold ran out can be claimed again
//! at once even if no sweep has run. And only the owner releases a live hold; anyone else is
//! told it does not exist.

use super::ContractStore;
use crate::support::*;
use booking_core::ports::ReleaseError;
use booking_core::{HoldId, HoldStatus};
use chrono::Duration;

/// A seat whose hold ran out by time can be claimed again at once, with no sweeper run.
pub async fn expired_claim_is_taken_without_sweeper<S: ContractStore>(store: &S) {
    let show = create_show(store, 1, 4).await;
    let t = now();
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

/// Seat reads decide expiry by comparing with `now`: a hold counts until the instant before its
/// `expires_at` and not from that instant on.
pub async fn reads_honour_expiry_by_time<S: ContractStore>(store: &S) {
    let show = create_show(store, 2, 4).await;
    let t = now();
    let r = request(store, &show, &fresh_user("u"), &["A1", "B1"], t).await;
    let h = grant(store, &show, &r, t).await;
    // The hold ends at its expiry as stored; one nanosecond earlier it still holds.
    let end = store.as_stored(t + HOLD_TTL);
    let just_before = end - Duration::nanoseconds(1);

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
    let t = now();
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
    assert_eq!(released.ended_at, Some(store.as_stored(t1)));
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
