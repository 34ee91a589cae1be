//! Faults and gates between the app and a real store, and a notifier that records pushes.
//!
//! Some behaviour only shows when the store misbehaves at one precise moment: a rival worker
//! committing between this worker's claim and its commit, a store that fails twice and then
//! recovers, a show whose commits hang while another show's lane must go on. [`HookedHolds`]
//! puts a test's [`HoldsHook`] in front of a real [`HoldStore`] (SQLite or PostgreSQL, never an
//! in-memory fake), so the rest of the path is the production one. One wrapper, reused by every
//! such test, instead of a hand-written delegate per test. [`UnreliablePayments`] does the same
//! for the payment provider: down, or losing its answers after the money moved.

use async_trait::async_trait;
use booking_core::engine::SeatChange;
use booking_core::ports::{
    ChargeOutcome, CommitError, HoldStore, Notifier, PaymentError, PaymentProvider, ReleaseError,
    SeatLock, StoreError,
};
use booking_core::protocol::{BookingResult, ServerMessage};
use booking_core::{
    BatchOutcome, Hold, HoldId, PaymentId, PaymentToken, RequestId, SeatId, SeatStatus, ShowId,
    ShowSnapshot, UserId,
};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
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

/// A [`HoldsHook`] that refuses to commit any batch deciding one of its requests, as a store
/// refusing bad data would: a failure that counts towards `MAX_ATTEMPTS` (unlike an outage),
/// until the requests are cured.
#[derive(Clone, Default)]
pub struct PoisonedRequests(Arc<Mutex<HashSet<RequestId>>>);

impl PoisonedRequests {
    pub fn add(&self, request: RequestId) {
        self.0.lock().unwrap().insert(request);
    }

    pub fn cure(&self) {
        self.0.lock().unwrap().clear();
    }
}

#[async_trait]
impl HoldsHook for PoisonedRequests {
    async fn before_commit(
        &self,
        _inner: &dyn HoldStore,
        _show: ShowId,
        batch: &BatchOutcome,
        _decided_at: DateTime<Utc>,
    ) -> Result<(), CommitError> {
        let poisoned = self.0.lock().unwrap();
        if batch
            .decisions
            .iter()
            .any(|d| poisoned.contains(&d.request_id()))
        {
            return Err(StoreError::corrupt("injected: this request cannot be committed").into());
        }
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

    async fn seat_locks(
        &self,
        show: ShowId,
        now: DateTime<Utc>,
    ) -> Result<Vec<SeatLock>, StoreError> {
        self.inner.seat_locks(show, now).await
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
    owner_messages: Mutex<Vec<(UserId, ServerMessage)>>,
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

    /// Every message pushed to an owner so far (HOLD_EXPIRED, ORDER_UPDATED), in order.
    pub fn owner_messages(&self) -> Vec<(UserId, ServerMessage)> {
        self.owner_messages
            .lock()
            .expect("recorder poisoned")
            .clone()
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

    async fn to_owners(&self, messages: &[(UserId, ServerMessage)]) {
        self.owner_messages
            .lock()
            .expect("recorder poisoned")
            .extend_from_slice(messages);
    }
}

/// How an [`UnreliablePayments`] provider misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentFault {
    /// Passes every call through.
    None,
    /// Fails every call without passing it on: the provider is down, nothing moves.
    Down,
    /// Passes charges and refunds through, then fails them as if the answer was lost on the way
    /// back (a timeout after the money moved): the caller cannot know it went through.
    LoseAnswers,
    /// Passes every charge through after this long (a slow provider).
    Delay(std::time::Duration),
}

/// A payment provider between the app and a real one (the mock) that can fail on command: for
/// tests of timeouts, outages and answers lost after the money moved.
pub struct UnreliablePayments {
    inner: Arc<dyn PaymentProvider>,
    fault: Mutex<PaymentFault>,
}

impl UnreliablePayments {
    pub fn new(inner: Arc<dyn PaymentProvider>) -> Self {
        Self {
            inner,
            fault: Mutex::new(PaymentFault::None),
        }
    }

    pub fn set(&self, fault: PaymentFault) {
        *self.fault.lock().expect("fault poisoned") = fault;
    }

    fn fault(&self) -> PaymentFault {
        *self.fault.lock().expect("fault poisoned")
    }

    fn lost() -> PaymentError {
        PaymentError::unavailable("test: the provider's answer was lost")
    }
}

#[async_trait]
impl PaymentProvider for UnreliablePayments {
    async fn charge(
        &self,
        key: PaymentId,
        token: &PaymentToken,
        amount_cents: i64,
        currency: &str,
    ) -> Result<ChargeOutcome, PaymentError> {
        match self.fault() {
            PaymentFault::Down => Err(PaymentError::unavailable("test: provider down")),
            PaymentFault::LoseAnswers => {
                self.inner
                    .charge(key, token, amount_cents, currency)
                    .await?;
                Err(Self::lost())
            }
            PaymentFault::Delay(by) => {
                tokio::time::sleep(by).await;
                self.inner.charge(key, token, amount_cents, currency).await
            }
            PaymentFault::None => self.inner.charge(key, token, amount_cents, currency).await,
        }
    }

    async fn charge_outcome(&self, key: PaymentId) -> Result<Option<ChargeOutcome>, PaymentError> {
        match self.fault() {
            PaymentFault::Down => Err(PaymentError::unavailable("test: provider down")),
            _ => self.inner.charge_outcome(key).await,
        }
    }

    async fn refund(
        &self,
        key: PaymentId,
        charge_ref: &str,
        amount_cents: i64,
        currency: &str,
    ) -> Result<String, PaymentError> {
        match self.fault() {
            PaymentFault::Down => Err(PaymentError::unavailable("test: provider down")),
            PaymentFault::LoseAnswers => {
                self.inner
                    .refund(key, charge_ref, amount_cents, currency)
                    .await?;
                Err(Self::lost())
            }
            PaymentFault::None | PaymentFault::Delay(_) => {
                self.inner
                    .refund(key, charge_ref, amount_cents, currency)
                    .await
            }
        }
    }
}
