//! Faults and gates between the app and a real store, and a notifier that records pushes.
//!
//! Some behaviour only shows when the store misbehaves at one precise moment: a rival worker
//! committing between this worker's claim and its commit, a store that fails twice and then
//! recovers, a show whose commits hang while another show's lane must go on. [`HookedHolds`]
//! puts a test's [`HoldsHook`] in front of a real [`HoldStore`] (SQLite or PostgreSQL, never an
//! in-memory fake), so the rest of the path is the production one. One wrapper, reused by every
//! such test, instead of a hand-written delegate per test.

use async_trait::async_trait;
use booking_core::engine::SeatChange;
use booking_core::ports::{CommitError, HoldStore, Notifier, ReleaseError, StoreError};
use booking_core::protocol::BookingResult;
use booking_core::{
    BatchOutcome, Hold, HoldId, RequestId, SeatId, SeatStatus, ShowId, ShowSnapshot, UserId,
};
use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

/// What a test does at the hooked moments; both default to "nothing, carry on".
#[async_trait]
pub trait HoldsHook: Send + Sync + 'static {
    /// Before the processor loads a show's state; an error is returned instead of the state.
    async fn before_load(&self, _show: ShowId) -> Result<(), StoreError> {
        Ok(())
    }

    /// Before a batch is committed, with the real store at hand (to commit a rival batch
    /// first); an error is returned instead of committing.
    async fn before_commit(
        &self,
        _inner: &dyn HoldStore,
        _show: ShowId,
        _batch: &BatchOutcome,
        _decided_at: DateTime<Utc>,
    ) -> Result<(), CommitError> {
        Ok(())
    }
}

/// A real hold store with a test's hook in front of `load_show_state` and `commit_batch`.
pub struct HookedHolds<H> {
    inner: Arc<dyn HoldStore>,
    hook: H,
}

impl<H: HoldsHook> HookedHolds<H> {
    pub fn new(inner: Arc<dyn HoldStore>, hook: H) -> Self {
        Self { inner, hook }
    }
}

#[async_trait]
impl<H: HoldsHook> HoldStore for HookedHolds<H> {
    async fn load_show_state(
        &self,
        show: ShowId,
        now: DateTime<Utc>,
    ) -> Result<ShowSnapshot, StoreError> {
        self.hook.before_load(show).await?;
        self.inner.load_show_state(show, now).await
    }

    async fn commit_batch(
        &self,
        show: ShowId,
        batch: &BatchOutcome,
        decided_at: DateTime<Utc>,
    ) -> Result<Vec<RequestId>, CommitError> {
        self.hook
            .before_commit(self.inner.as_ref(), show, batch, decided_at)
            .await?;
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

/// A notifier that remembers every pushed result, for tests that check who heard what.
#[derive(Default)]
pub struct RecordingNotifier {
    results: Mutex<Vec<(UserId, BookingResult)>>,
}

impl RecordingNotifier {
    /// Every result pushed so far, in order.
    pub fn results(&self) -> Vec<BookingResult> {
        self.results
            .lock()
            .expect("recorder poisoned")
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn booking_results(&self, results: &[(UserId, BookingResult)]) {
        self.results
            .lock()
            .expect("recorder poisoned")
            .extend_from_slice(results);
    }

    async fn seats_changed(&self, _show: ShowId, _changes: &[SeatChange]) {}
}
