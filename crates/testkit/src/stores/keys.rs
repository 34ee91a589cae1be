//! Idempotency keys: one use per key and request, answers kept for replay, leases that outlive a
//! crashed attempt, and keys forgotten once their time is over.

use super::ContractStore;
use crate::support::*;
use booking_core::IdempotencyKey;
use booking_core::ports::{KeyAttempt, KeyClaim, StoredResponse};
use chrono::{DateTime, Duration, Utc};

const LEASE: Duration = Duration::seconds(50);
const KEPT: Duration = Duration::hours(24);

fn attempt<'a>(
    user: &'a booking_core::UserId,
    key: &'a IdempotencyKey,
    fingerprint: &'a str,
    new_use_id: &'a str,
    now: DateTime<Utc>,
) -> KeyAttempt<'a> {
    KeyAttempt {
        user,
        key,
        fingerprint,
        new_use_id,
        now,
        lease_until: now + LEASE,
        expires_at: now + KEPT,
    }
}

/// A key is claimed once per use: a second attempt while the first runs is told so, a different
/// request under the same key is refused, the kept answer is replayed, and another user's key of
/// the same text is theirs alone.
pub async fn a_key_is_claimed_once_and_replays_its_answer<S: ContractStore>(store: &S) {
    let t = now();
    let user = fresh_user("k");
    let key: IdempotencyKey = "checkout-1".parse().unwrap();
    let claim = store
        .claim_key(&attempt(&user, &key, "fp-a", "use-1", t))
        .await
        .unwrap();
    assert_eq!(
        claim,
        KeyClaim::Claimed {
            use_id: "use-1".into()
        }
    );
    let again = attempt(&user, &key, "fp-a", "use-2", t + Duration::seconds(1));
    assert_eq!(store.claim_key(&again).await.unwrap(), KeyClaim::InFlight);
    let other_request = attempt(&user, &key, "fp-b", "use-3", t + Duration::seconds(1));
    assert_eq!(
        store.claim_key(&other_request).await.unwrap(),
        KeyClaim::Reused
    );
    let someone_else = fresh_user("k2");
    assert_eq!(
        store
            .claim_key(&attempt(&someone_else, &key, "fp-b", "use-4", t))
            .await
            .unwrap(),
        KeyClaim::Claimed {
            use_id: "use-4".into()
        }
    );

    let answer = StoredResponse {
        status: 201,
        body: br#"{"orderId":"x"}"#.to_vec(),
        location: Some("/api/v1/orders/x".into()),
    };
    store
        .complete_key(&user, &key, "use-1", &answer)
        .await
        .unwrap();
    assert_eq!(
        store.claim_key(&again).await.unwrap(),
        KeyClaim::Done(answer.clone())
    );
    // Even long after its lease, within its time: still the same answer, and still refused for
    // another request.
    let late = attempt(&user, &key, "fp-a", "use-5", t + Duration::hours(23));
    assert_eq!(
        store.claim_key(&late).await.unwrap(),
        KeyClaim::Done(answer)
    );
    let late_other = attempt(&user, &key, "fp-b", "use-5", t + Duration::hours(23));
    assert_eq!(
        store.claim_key(&late_other).await.unwrap(),
        KeyClaim::Reused
    );
}

/// An attempt that failed (released) or died (its lease ran out) leaves the key to the next
/// attempt under the same use id, so what it wrote can be found.
pub async fn a_failed_or_abandoned_use_is_claimed_again_under_its_id<S: ContractStore>(store: &S) {
    let t = now();
    let user = fresh_user("k");
    let key: IdempotencyKey = "pay-1".parse().unwrap();
    store
        .claim_key(&attempt(&user, &key, "fp", "use-1", t))
        .await
        .unwrap();
    store
        .release_key(&user, &key, "use-1", t + Duration::seconds(2))
        .await
        .unwrap();
    let retry = attempt(&user, &key, "fp", "use-2", t + Duration::seconds(3));
    assert_eq!(
        store.claim_key(&retry).await.unwrap(),
        KeyClaim::Claimed {
            use_id: "use-1".into()
        }
    );
    // That attempt dies: in flight until its lease runs out, then claimed again.
    let during = attempt(
        &user,
        &key,
        "fp",
        "use-3",
        t + Duration::seconds(3) + LEASE / 2,
    );
    assert_eq!(store.claim_key(&during).await.unwrap(), KeyClaim::InFlight);
    let after = attempt(&user, &key, "fp", "use-4", t + Duration::seconds(3) + LEASE);
    assert_eq!(
        store.claim_key(&after).await.unwrap(),
        KeyClaim::Claimed {
            use_id: "use-1".into()
        }
    );
    // A stale attempt's answer (another use) is not kept.
    let stale = StoredResponse {
        status: 200,
        body: b"{}".to_vec(),
        location: None,
    };
    store
        .complete_key(&user, &key, "use-9", &stale)
        .await
        .unwrap();
    let check = attempt(&user, &key, "fp", "use-5", t + Duration::seconds(4) + LEASE);
    assert_eq!(store.claim_key(&check).await.unwrap(), KeyClaim::InFlight);
}

/// A key kept past its time is a new key: any request may use it, under a new use id; and the
/// purge forgets it.
pub async fn keys_are_kept_for_their_time_only<S: ContractStore>(store: &S) {
    // The purge is global: this case lives 200 days back, where no other case keeps keys.
    let t = now() - Duration::days(200);
    let user = fresh_user("k");
    let key: IdempotencyKey = "old".parse().unwrap();
    store
        .claim_key(&attempt(&user, &key, "fp-a", "use-1", t))
        .await
        .unwrap();
    let answer = StoredResponse {
        status: 202,
        body: b"{}".to_vec(),
        location: None,
    };
    store
        .complete_key(&user, &key, "use-1", &answer)
        .await
        .unwrap();
    let next_day = t + KEPT;
    assert_eq!(
        store
            .claim_key(&attempt(&user, &key, "fp-b", "use-2", next_day))
            .await
            .unwrap(),
        KeyClaim::Claimed {
            use_id: "use-2".into()
        }
    );

    let purged = fresh_user("purged");
    store
        .claim_key(&attempt(&purged, &key, "fp", "use-1", t))
        .await
        .unwrap();
    assert!(store.purge_keys(next_day).await.unwrap() >= 1);
    // Forgotten: even within what would have been its lease, the key is new.
    assert_eq!(
        store
            .claim_key(&attempt(&purged, &key, "fp-c", "use-3", t))
            .await
            .unwrap(),
        KeyClaim::Claimed {
            use_id: "use-3".into()
        }
    );
}
