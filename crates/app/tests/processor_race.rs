//! The batch processor when another worker decides one of its requests between its claim and its
//! commit (a redelivery after a visibility timeout does this in production): the requester must
//! hear the outcome that was stored, never the one this worker computed and could not write.
//!
//! The race is made deterministic with a store wrapper that commits the rival worker's decision
//! just before the processor's own commit, against the real SQLite store.

use async_trait::async_trait;
use booking_app::Ports;
use booking_app::processor::BatchProcessor;
use booking_core::ports::{
    CommitError, HoldStore, Notifier, ReleaseError, RequestStore, StoreError,
};
use booking_core::protocol::BookingResult;
use booking_core::{
    BatchOutcome, Decision, Hold, HoldId, ManualClock, RequestId, RequestStatus, SeatChange,
    SeatId, SeatStatus, ShowId, ShowSnapshot, UserId,
};
use booking_sqlite::{SqliteOptions, SqliteStore};
use booking_testkit::support::{HOLD_TTL, create_show, fresh_user, grant, now_ms, request};
use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

/// Delegates to the real store, but the first commit is preceded by the rival's.
struct RivalCommitsFirst {
    inner: Arc<SqliteStore>,
    rival: Mutex<Option<(ShowId, BatchOutcome)>>,
}

#[async_trait]
impl HoldStore for RivalCommitsFirst {
    async fn load_show_state(
        &self,
        show: ShowId,
        now: DateTime<Utc>,
    ) -> Result<ShowSnapshot, StoreError> {
        self.inner.load_show_state(show, now).await
    }

    async fn commit_batch(
        &self,
        show: ShowId,
        batch: &BatchOutcome,
        decided_at: DateTime<Utc>,
    ) -> Result<Vec<RequestId>, CommitError> {
        let rival = self.rival.lock().unwrap().take();
        if let Some((rival_show, rival_batch)) = rival {
            let written = self
                .inner
                .commit_batch(rival_show, &rival_batch, decided_at)
                .await?;
            assert_eq!(written.len(), rival_batch.decisions.len(), "the rival wins");
        }
        self.inner.commit_batch(show, batch, decided_at).await
    }

    async fn taken_seats(
        &self,
        show: ShowId,
        now: DateTime<Utc>,
    ) -> Result<Vec<(SeatId, SeatStatus)>, StoreError> {
        self.inner.taken_seats(show, now).await
    }

    async fn get_hold(&self, hold: HoldId) -> Result<Option<Hold>, StoreError> {
        self.inner.get_hold(hold).await
    }

    async fn release_hold(
        &self,
        hold: HoldId,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Hold, ReleaseError> {
        self.inner.release_hold(hold, user, now).await
    }

    async fn expire_holds(&self, now: DateTime<Utc>) -> Result<Vec<Hold>, StoreError> {
        self.inner.expire_holds(now).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

/// Remembers every pushed result.
#[derive(Default)]
struct Recorder(Mutex<Vec<BookingResult>>);

#[async_trait]
impl Notifier for Recorder {
    async fn booking_results(&self, results: &[(UserId, BookingResult)]) {
        let mut seen = self.0.lock().unwrap();
        seen.extend(results.iter().map(|(_, r)| r.clone()));
    }

    async fn seats_changed(&self, _show: ShowId, _changes: &[SeatChange]) {}
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
    holds: Arc<dyn HoldStore>,
    notifier: Arc<Recorder>,
    now: DateTime<Utc>,
) -> BatchProcessor {
    BatchProcessor::new(
        Ports {
            catalog: store.clone(),
            requests: store.clone(),
            holds,
            notifier,
            clock: Arc::new(ManualClock::new(now)),
            mirror: None,
        },
        HOLD_TTL,
    )
}

/// This worker would reject the request (its seat is held); the rival expired it first. The
/// requester hears EXPIRED, the stored outcome, once.
#[tokio::test]
async fn a_rejection_lost_to_a_rival_announces_the_stored_outcome() {
    let Setup { store, _dir } = setup().await;
    let t = now_ms();
    let show = create_show(store.as_ref(), 1, 4).await;
    let holder = request(store.as_ref(), &show, &fresh_user("holder"), &["A1"], t).await;
    grant(store.as_ref(), &show, &holder, t).await;
    let late = request(store.as_ref(), &show, &fresh_user("late"), &["A1"], t).await;

    let rival = BatchOutcome {
        decisions: vec![Decision::Expired {
            request_id: late.request_id,
        }],
        seat_changes: vec![],
    };
    let holds = Arc::new(RivalCommitsFirst {
        inner: store.clone(),
        rival: Mutex::new(Some((show.show_id, rival))),
    });
    let notifier = Arc::new(Recorder::default());
    let report = processor(&store, holds, notifier.clone(), t)
        .process(show.show_id, std::slice::from_ref(&late))
        .await
        .expect("the batch is processed");

    assert_eq!(
        report.decided, 0,
        "nothing of this batch was written by this worker"
    );
    let pushed = notifier.0.lock().unwrap().clone();
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
    let t = now_ms();
    let show = create_show(store.as_ref(), 1, 4).await;
    let wanted = request(store.as_ref(), &show, &fresh_user("wanted"), &["A2"], t).await;

    let rival = BatchOutcome {
        decisions: vec![Decision::Invalid {
            request_id: wanted.request_id,
            reason: "decided by the rival".to_owned(),
        }],
        seat_changes: vec![],
    };
    let holds = Arc::new(RivalCommitsFirst {
        inner: store.clone(),
        rival: Mutex::new(Some((show.show_id, rival))),
    });
    let notifier = Arc::new(Recorder::default());
    let report = processor(&store, holds, notifier.clone(), t)
        .process(show.show_id, std::slice::from_ref(&wanted))
        .await
        .expect("the batch is processed");

    assert_eq!(report.conflicts, 1, "the stale grant was refused once");
    assert_eq!(report.granted, 0);
    let pushed = notifier.0.lock().unwrap().clone();
    assert_eq!(pushed.len(), 1, "one push: {pushed:?}");
    assert_eq!(pushed[0].status, RequestStatus::Failed, "{pushed:?}");
    assert_eq!(pushed[0].message, "decided by the rival");
    assert!(store.taken_seats(show.show_id, t).await.unwrap().is_empty());
    let stored = store.get_request(wanted.request_id).await.unwrap().unwrap();
    assert_eq!(stored.status, RequestStatus::Failed);
}
