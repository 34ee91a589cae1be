//! The batch processor when another worker decides one of its requests between its claim and its
//! commit (a redelivery after a visibility timeout does this in production): the requester must
//! hear the outcome that was stored, never the one this worker computed and could not write.
//!
//! The race is made deterministic with a store wrapper that commits the rival worker's decision
//! just before the processor's own commit, against the real SQLite store.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use async_trait::async_trait;
use booking_app::Ports;
use booking_app::processor::{BatchProcessor, ProcessError};
use booking_core::ports::{CommitError, HoldStore, RequestStore};
use booking_core::{BatchOutcome, Decision, ManualClock, RequestStatus, ShowId};
use booking_sqlite::{SqliteOptions, SqliteStore};
use booking_testkit::faults::{HoldsHook, HookedHolds, RecordingNotifier};
use booking_testkit::support::{HOLD_TTL, create_show, fresh_user, grant, now, request};
use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

/// The first commit is preceded by the rival's, on the real store.
struct RivalCommitsFirst {
    rival: Mutex<Option<(ShowId, BatchOutcome)>>,
}

#[async_trait]
impl HoldsHook for RivalCommitsFirst {
    async fn before_commit(
        &self,
        inner: &dyn HoldStore,
        _show: ShowId,
        _batch: &BatchOutcome,
        decided_at: DateTime<Utc>,
    ) -> Result<(), CommitError> {
        let rival = self.rival.lock().unwrap().take();
        if let Some((rival_show, rival_batch)) = rival {
            let written = inner
                .commit_batch(rival_show, &rival_batch, decided_at)
                .await?;
            assert_eq!(written.len(), rival_batch.decisions.len(), "the rival wins");
        }
        Ok(())
    }
}

/// Every commit loses a seat race: another worker always got there first.
struct AlwaysBeaten;

#[async_trait]
impl HoldsHook for AlwaysBeaten {
    async fn before_commit(
        &self,
        _inner: &dyn HoldStore,
        _show: ShowId,
        _batch: &BatchOutcome,
        _decided_at: DateTime<Utc>,
    ) -> Result<(), CommitError> {
        Err(CommitError::SeatConflict)
    }
}

fn rival(show: ShowId, batch: BatchOutcome) -> RivalCommitsFirst {
    RivalCommitsFirst {
        rival: Mutex::new(Some((show, batch))),
    }
}

struct Setup {
    store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("race.db"), SqliteOptions::default())
        .await
        .expect("open the store");
    Setup {
        store: Arc::new(store),
        _dir: dir,
    }
}

fn processor(
    store: &Arc<SqliteStore>,
    hook: impl HoldsHook,
    notifier: Arc<RecordingNotifier>,
    now: DateTime<Utc>,
) -> BatchProcessor {
    let holds = Arc::new(HookedHolds::new(store.clone(), hook));
    BatchProcessor::new(
        Ports {
            catalog: store.clone(),
            requests: store.clone(),
            holds,
            orders: store.clone(),
            idempotency: store.clone(),
            payments: Arc::new(booking_app::MockPaymentProvider::new()),
            notifier,
            clock: Arc::new(ManualClock::new(now)),
            mirror: None,
            show_locks: None,
        },
        HOLD_TTL,
    )
}

/// This worker would reject the request (its seat is held); the rival expired it first. The
/// requester hears EXPIRED, the stored outcome, once.
#[tokio::test]
async fn a_rejection_lost_to_a_rival_announces_the_stored_outcome() {
    let Setup { store, _dir } = setup().await;
    let t = now();
    let show = create_show(store.as_ref(), 1, 4).await;
    let holder = request(store.as_ref(), &show, &fresh_user("holder"), &["A1"], t).await;
    grant(store.as_ref(), &show, &holder, t).await;
    let late = request(store.as_ref(), &show, &fresh_user("late"), &["A1"], t).await;

    let rival_batch = BatchOutcome {
        decisions: vec![Decision::Expired {
            request_id: late.request_id,
        }],
        seat_changes: vec![],
    };
    let notifier = Arc::new(RecordingNotifier::default());
    let report = processor(
        &store,
        rival(show.show_id, rival_batch),
        notifier.clone(),
        t,
    )
    .process(show.show_id, std::slice::from_ref(&late))
    .await
    .expect("the batch is processed");

    assert_eq!(
        report.decided, 0,
        "nothing of this batch was written by this worker"
    );
    let pushed = notifier.results();
    assert_eq!(pushed.len(), 1, "one push: {pushed:?}");
    assert_eq!(pushed[0].request_id, late.request_id);
    assert_eq!(pushed[0].status, RequestStatus::Expired, "{pushed:?}");
    let stored = store.get_request(late.request_id).await.unwrap().unwrap();
    assert_eq!(stored.status, RequestStatus::Expired);
}

/// This worker would grant the request; the rival rejected it first, so the grant's commit is
/// refused, the batch is decided again without it, and the requester hears the stored FAILED.
#[tokio::test]
async fn a_grant_lost_to_a_rival_announces_the_stored_outcome() {
    let Setup { store, _dir } = setup().await;
    let t = now();
    let show = create_show(store.as_ref(), 1, 4).await;
    let wanted = request(store.as_ref(), &show, &fresh_user("wanted"), &["A2"], t).await;

    let rival_batch = BatchOutcome {
        decisions: vec![Decision::Invalid {
            request_id: wanted.request_id,
            reason: "decided by the rival".to_owned(),
        }],
        seat_changes: vec![],
    };
    let notifier = Arc::new(RecordingNotifier::default());
    let report = processor(
        &store,
        rival(show.show_id, rival_batch),
        notifier.clone(),
        t,
    )
    .process(show.show_id, std::slice::from_ref(&wanted))
    .await
    .expect("the batch is processed");

    assert_eq!(report.conflicts, 1, "the stale grant was refused once");
    assert_eq!(report.granted, 0);
    let pushed = notifier.results();
    assert_eq!(pushed.len(), 1, "one push: {pushed:?}");
    assert_eq!(pushed[0].status, RequestStatus::Failed, "{pushed:?}");
    assert_eq!(pushed[0].message, "decided by the rival");
    assert!(store.taken_seats(show.show_id, t).await.unwrap().is_empty());
    let stored = store.get_request(wanted.request_id).await.unwrap().unwrap();
    assert_eq!(stored.status, RequestStatus::Failed);
}

/// A batch that loses the seat race on every attempt gives up (retryably) after the retry
/// budget: nothing is written, nobody is told anything, and the requests stay undecided for the
/// next delivery.
#[tokio::test]
async fn conflicts_that_persist_end_in_a_retryable_failure_that_writes_nothing() {
    let Setup { store, _dir } = setup().await;
    let t = now();
    let show = create_show(store.as_ref(), 1, 4).await;
    let wanted = request(store.as_ref(), &show, &fresh_user("unlucky"), &["A3"], t).await;
    let notifier = Arc::new(RecordingNotifier::default());
    let failed = processor(&store, AlwaysBeaten, notifier.clone(), t)
        .process(show.show_id, std::slice::from_ref(&wanted))
        .await
        .expect_err("every attempt was refused");
    assert!(
        matches!(failed, ProcessError::ConflictsPersisted(6)),
        "{failed:?}"
    );
    assert!(failed.is_retryable(), "another delivery may succeed");
    assert!(notifier.results().is_empty(), "nothing to announce");
    let stored = store.get_request(wanted.request_id).await.unwrap().unwrap();
    assert!(!stored.status.is_terminal(), "{stored:?}");
    assert!(store.taken_seats(show.show_id, t).await.unwrap().is_empty());
}
