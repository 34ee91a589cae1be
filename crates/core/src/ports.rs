//! The capabilities the application needs from the outside world, one small trait each.
//!
//! Adapters implement these for a technology (embedded SQLite, PostgreSQL, Redis, SQS,
//! API Gateway); the application is written against the traits only. The traits are object-safe
//! (`async_trait`) because the local server picks its adapters at start-up from configuration.

use crate::engine::{BatchOutcome, SeatChange, ShowSnapshot};
use crate::ids::{
    HoldId, IdempotencyKey, MovieId, OrderId, PaymentId, PaymentToken, RequestId, SeatId, ShowId,
    UserId,
};
use crate::model::{BookingRequest, Hold, HoldStatus, Movie, NewBookingRequest, SeatStatus, Show};
use crate::order::{NewOrder, Order, OrderStatus, Payment};
use crate::protocol::{BookingResult, ServerMessage};
use crate::rate::{RateRule, RateVerdict};
use crate::waiting_room::{
    AdmissionError, AdmissionPace, Joined, PlaceStatus, RoomCounts, RoomPolicy, Tick,
};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

pub use crate::error::{MirrorError, PaymentError, QueueError, StoreError};

/// Why a batch could not be committed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommitError {
    /// Another writer claimed a seat this batch grants (two workers on one show): nothing was
    /// written; reload the show state and decide the batch again.
    #[error("a seat was claimed concurrently; batch not committed")]
    SeatConflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a hold could not be released.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReleaseError {
    /// No such hold, or not the caller's (indistinguishable on purpose).
    #[error("hold not found")]
    NotFound,
    #[error("hold is {0}, not HELD")]
    NotHeld(HoldStatus),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The result of making a request durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Stored as QUEUED; must now be enqueued.
    New(BookingRequest),
    /// The user already sent a request with this idempotency key; nothing was written.
    Existing(BookingRequest),
    /// The user already has `max` undecided requests for the show
    /// ([`NewBookingRequest::max_open`]); nothing was written. Counted in the same statement
    /// that inserts, so the cap costs no query of its own; two requests of one user written by
    /// different processes at the same instant may still pass it together (it bounds queue spam,
    /// it is not an invariant).
    TooManyOpen { max: u32 },
}

/// Show waiting rooms: each show's room (its policy, whether its order is drawn, its admission
/// credit) and its places, kept so that every process of a deployment, and a restarted local
/// server, sees the same room. The rules are [`crate::waiting_room`]'s; each adapter applies them
/// atomically per room (a room's changes are serialised on its row), and the contract suite
/// checks every adapter against the pure [`Room`](crate::waiting_room::Room) on the same history.
#[async_trait]
pub trait WaitingRoomStore: Send + Sync + 'static {
    /// Switches the show's room on, or changes its policy; its places, order and credit are
    /// kept.
    async fn put_room(&self, show: ShowId, policy: &RoomPolicy) -> Result<(), StoreError>;
    /// Switches the show's room off and forgets its places; false if it had none.
    async fn remove_room(&self, show: ShowId) -> Result<bool, StoreError>;
    /// The show's room: its policy, whether its order is drawn, and its places by state.
    async fn room(&self, show: ShowId) -> Result<Option<RoomSummary>, StoreError>;
    /// The show's room without its counts (what every poll needs; cheaper than
    /// [`Self::room`]).
    async fn room_rules(&self, show: ShowId) -> Result<Option<RoomRules>, StoreError>;
    /// The shows that have a room, for the ticker and the hold requests' check.
    async fn rooms(&self) -> Result<Vec<ListedRoom>, StoreError>;
    /// [`Room::record_demand`](crate::waiting_room::Room::record_demand): a process counted
    /// `requests` hold requests for the show; true if this switched its armed room on.
    async fn record_demand(
        &self,
        show: ShowId,
        requests: u64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// [`Room::join`](crate::waiting_room::Room::join); `None` if the show has no room.
    async fn join_room(
        &self,
        show: ShowId,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Option<Joined>, StoreError>;
    /// The user's place (their live one, else their last) and its position; with `seen_at`,
    /// first a sign of life ([`Room::seen`](crate::waiting_room::Room::seen)).
    async fn place(
        &self,
        show: ShowId,
        user: &UserId,
        seen_at: Option<DateTime<Utc>>,
    ) -> Result<Option<PlaceStatus>, StoreError>;
    /// Everyone waiting with a position (the order is drawn), in admission order: the first is
    /// position 1. For the coalesced position pushes.
    async fn waiting_places(&self, show: ShowId) -> Result<Vec<(UserId, u64)>, StoreError>;
    /// [`Room::tick`](crate::waiting_room::Room::tick), with `seed` for the opening's draw.
    async fn tick_room(
        &self,
        show: ShowId,
        now: DateTime<Utc>,
        seed: [u8; 32],
    ) -> Result<Tick, StoreError>;
    /// [`Room::start_shopping`](crate::waiting_room::Room::start_shopping) for the place
    /// `ticket` (the one the admission token names: an older place's token admits nobody).
    async fn start_shopping(
        &self,
        show: ShowId,
        user: &UserId,
        ticket: u64,
        now: DateTime<Utc>,
    ) -> Result<Result<(), AdmissionError>, StoreError>;
    /// [`Room::finish`](crate::waiting_room::Room::finish): true if a live place ended.
    async fn finish_place(&self, show: ShowId, user: &UserId) -> Result<bool, StoreError>;
}

/// A room as [`WaitingRoomStore::room`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSummary {
    pub policy: RoomPolicy,
    /// The pre-queue's order is drawn and admission has started.
    pub opened: bool,
    /// Waiting to switch itself on ([`RoomPolicy::switch_on_above`]).
    pub armed: bool,
    pub pace: AdmissionPace,
    pub counts: RoomCounts,
}

/// A room as [`WaitingRoomStore::room_rules`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRules {
    pub policy: RoomPolicy,
    pub armed: bool,
    pub pace: AdmissionPace,
}

/// A room as [`WaitingRoomStore::rooms`] lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedRoom {
    pub show: ShowId,
    /// Armed: it switches itself on above this many hold requests a second. `None`: on.
    pub armed_above: Option<u32>,
}

/// Movies and shows.
#[async_trait]
pub trait CatalogStore: Send + Sync + 'static {
    async fn list_movies(&self) -> Result<Vec<Movie>, StoreError>;
    async fn get_movie(&self, movie: MovieId) -> Result<Option<Movie>, StoreError>;
    /// Shows of a movie, by start time; only those starting on `date` (UTC) if given.
    async fn list_shows(
        &self,
        movie: MovieId,
        date: Option<NaiveDate>,
    ) -> Result<Vec<Show>, StoreError>;
    async fn get_show(&self, show: ShowId) -> Result<Option<Show>, StoreError>;
    /// Writes movies and shows in one transaction, all or nothing: each is added, or replaces
    /// the stored one of its id. A show's movie must exist (in the store or in `movies`), and a
    /// show that has taken a hold request keeps what is on sale
    /// ([`crate::catalog::changes_what_is_on_sale`]): writing it otherwise is refused with
    /// [`CatalogError::OnSale`]. On a store shared by several writers, a show cannot take its
    /// first request while its layout is being replaced (the two are serialised).
    async fn put_catalog(
        &self,
        movies: &[Movie],
        shows: &[Show],
    ) -> Result<CatalogWrite, CatalogError>;
    /// Records whether a show's lane is paused (its requests wait, in order, undecided); `false`
    /// if there is no such show. The store is the pause's only truth: it survives restarts, and
    /// every process that decides reads it here.
    async fn set_paused(&self, show: ShowId, paused: bool) -> Result<bool, StoreError>;
    /// Whether the show's lane is paused (`false` for an unknown show).
    async fn is_paused(&self, show: ShowId) -> Result<bool, StoreError>;
    /// Every paused show.
    async fn paused_shows(&self) -> Result<Vec<ShowId>, StoreError>;
    /// Marks a show cancelled at `at` with `reason` and returns it as stored now; a show
    /// cancelled before keeps its first cancellation (the call changes nothing). `None` if there
    /// is no such show. Only the mark: winding up what the show had is the caller's.
    async fn cancel_show(
        &self,
        show: ShowId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Show>, StoreError>;
    /// Shows cancelled at or after `since`, oldest cancellation first: those whose wind-up the
    /// sweeper repeats until nothing of them is left open.
    async fn cancelled_shows(&self, since: DateTime<Utc>) -> Result<Vec<ShowId>, StoreError>;
    /// Adds or replaces one movie.
    async fn put_movie(&self, movie: &Movie) -> Result<CatalogWrite, CatalogError> {
        self.put_catalog(std::slice::from_ref(movie), &[]).await
    }
    /// Adds or replaces one show (see [`CatalogStore::put_catalog`]).
    async fn put_show(&self, show: &Show) -> Result<CatalogWrite, CatalogError> {
        self.put_catalog(&[], std::slice::from_ref(show)).await
    }
}

/// Why a catalog write was refused. Nothing was written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CatalogError {
    /// A show names a movie that neither the store nor the write has.
    #[error("show {show} names movie {movie}, which does not exist")]
    MovieNotFound { show: ShowId, movie: MovieId },
    /// The show has taken hold requests: its layout, prices, blocked seats and movie are fixed.
    #[error("show {0} is on sale: its seats, prices and movie can no longer change")]
    OnSale(ShowId),
    /// The show was cancelled: nothing of it changes any more.
    #[error("show {0} is cancelled")]
    Cancelled(ShowId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a catalog write did, counted: new, replaced with something different, or equal to what
/// was stored (a re-import of the same file changes nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogWrite {
    pub movies_created: u32,
    pub movies_updated: u32,
    pub movies_unchanged: u32,
    pub shows_created: u32,
    pub shows_updated: u32,
    pub shows_unchanged: u32,
}

/// Whether an upsert made a row, replaced one, or found it equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Created,
    Updated,
    Unchanged,
}

impl CatalogWrite {
    pub fn count_movie(&mut self, what: Upserted) {
        match what {
            Upserted::Created => self.movies_created += 1,
            Upserted::Updated => self.movies_updated += 1,
            Upserted::Unchanged => self.movies_unchanged += 1,
        }
    }

    pub fn count_show(&mut self, what: Upserted) {
        match what {
            Upserted::Created => self.shows_created += 1,
            Upserted::Updated => self.shows_updated += 1,
            Upserted::Unchanged => self.shows_unchanged += 1,
        }
    }
}

/// Booking requests: the durable record of every accepted request and its outcome.
#[async_trait]
pub trait RequestStore: Send + Sync + 'static {
    /// Stores a request as QUEUED (durably, before the client is answered) and assigns its
    /// arrival sequence number; with an idempotency key (or request id) already used by the same
    /// user, returns the earlier request instead, whatever the cap; refuses a new request beyond
    /// its `max_open`.
    async fn insert_request(&self, request: NewBookingRequest) -> Result<Inserted, StoreError>;
    async fn get_request(&self, request: RequestId) -> Result<Option<BookingRequest>, StoreError>;
    /// Every QUEUED or PROCESSING request, in arrival order: what a restarted worker must redo.
    async fn pending_requests(&self) -> Result<Vec<BookingRequest>, StoreError>;
    /// Moves requests to PROCESSING and returns those that were still undecided; an id that is
    /// already terminal (a duplicate delivery) is left alone and not returned.
    async fn begin_processing(&self, requests: &[RequestId]) -> Result<Vec<RequestId>, StoreError>;
    /// What a decider calls before deciding `requests`: those still undecided, in the given
    /// order, each once. It need not claim them: a request's outcome is only ever recorded by a
    /// [`HoldStore::commit_batch`] that finds it undecided (and a grant only while every grant of
    /// its batch can be), so the commit is the guard against deciding twice. A claim only lets a
    /// store make a racing decider wait (PostgreSQL's row locks, across Lambda workers) and
    /// spares the request an expiry sweep within [`crate::PROCESSING_GRACE`]; the default is
    /// [`RequestStore::begin_processing`]'s claim. A store with one writer may answer with a
    /// read instead and keep the claim's write off that writer.
    async fn start_deciding(&self, requests: &[RequestId]) -> Result<Vec<RequestId>, StoreError> {
        self.begin_processing(requests).await
    }
    /// Per-show counts of requests, for queue statistics: every show starting at or after
    /// `shows_from`, and every other show with undecided requests, by start time. Requests
    /// decided at or after `decided_since` are counted apart (the recent rate).
    async fn queue_counts(
        &self,
        shows_from: DateTime<Utc>,
        decided_since: DateTime<Utc>,
    ) -> Result<Vec<ShowQueueCounts>, StoreError>;
    /// Sets an undecided request aside after `attempts` failed tries to decide it: it is QUEUED
    /// again (so it still expires at its deadline), recorded with `reason`, and no longer
    /// pending ([`RequestStore::pending_requests`] skips it) until it is redriven. `false` if it
    /// was decided meanwhile (nothing to set aside).
    async fn dead_letter_request(
        &self,
        request: RequestId,
        reason: &str,
        attempts: u32,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// The undecided requests set aside, of one show or of all, in arrival order.
    async fn dead_letters(
        &self,
        show: Option<ShowId>,
    ) -> Result<Vec<DeadLetteredRequest>, StoreError>;
    /// Takes requests out of the dead letters to be decided again: returns those that were set
    /// aside and are still undecided, in arrival order, each to one caller only (a second redrive
    /// finds nothing).
    async fn redrive_dead_letters(
        &self,
        requests: &[RequestId],
    ) -> Result<Vec<BookingRequest>, StoreError>;
    /// Ends a dead-lettered request FAILED with `reason` (no seats are taken); returns it as it
    /// is now, or `None` if it is not a dead letter (any more).
    async fn discard_dead_letter(
        &self,
        request: RequestId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<BookingRequest>, StoreError>;
    /// Removes booking history that ended before `before`, at most `limit` rows of each kind in
    /// one short transaction: holds that ended without becoming an order (released or expired),
    /// then decided requests (dead letters that were discarded or expired included) that no
    /// remaining hold refers to. A hold that became an order is kept,
    /// and with it its request: orders and payments are the record of a sale. The caller repeats
    /// while a kind comes back full ([`Purged::is_full`]).
    async fn purge_history(&self, before: DateTime<Utc>, limit: u32) -> Result<Purged, StoreError>;
    /// Ends every undecided request of a show FAILED with `message` (no seats taken), dead
    /// letters included, in one transaction, and returns them as they are now: what cancelling a
    /// show does to its queue. A decider holding one of them meanwhile finds it decided.
    async fn fail_undecided(
        &self,
        show: ShowId,
        message: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<BookingRequest>, StoreError>;
    /// The request `user` made with idempotency key `key`, if any.
    async fn request_with_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<BookingRequest>, StoreError>;
    /// The show's undecided requests (QUEUED or PROCESSING, not dead letters) that arrived before
    /// `seq`, in arrival order, at most `limit`: what a request decided as it arrives must be
    /// decided after.
    async fn undecided_before(
        &self,
        show: ShowId,
        seq: i64,
        limit: u32,
    ) -> Result<Vec<BookingRequest>, StoreError>;
    /// Marks QUEUED requests past their deadline, and PROCESSING ones past it by
    /// [`crate::model::PROCESSING_GRACE`] (their decider was cut off), EXPIRED and returns them.
    async fn expire_overdue_requests(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<BookingRequest>, StoreError>;
}

/// Seat ownership: holds and the claims that make double allocation impossible.
#[async_trait]
pub trait HoldStore: Send + Sync + 'static {
    /// Live holds and booked seats of a show: the engine's starting state for a batch.
    async fn load_show_state(
        &self,
        show: ShowId,
        now: DateTime<Utc>,
    ) -> Result<ShowSnapshot, StoreError>;
    /// Writes a decided batch in one transaction: new holds and their seat claims, released
    /// holds, and every request's outcome. All or nothing.
    ///
    /// Returns the requests whose outcome this commit wrote (in no particular order). A non-granting
    /// decision for a request that another writer decided meanwhile is skipped, not an error:
    /// the stored outcome stands, and only it may be told to the requester.
    async fn commit_batch(
        &self,
        show: ShowId,
        batch: &BatchOutcome,
        decided_at: DateTime<Utc>,
    ) -> Result<Vec<RequestId>, CommitError>;
    /// Seats that are not available as of `now` (held or booked); every other seat of the layout
    /// is available unless blocked.
    async fn taken_seats(
        &self,
        show: ShowId,
        now: DateTime<Utc>,
    ) -> Result<Vec<(SeatId, SeatStatus)>, StoreError>;
    /// Every live seat claim of a show as a mirror lock (the hold or order behind it, its owner,
    /// until when, HELD or BOOKED): what a cold [`SeatMirror`] is rebuilt from.
    async fn seat_locks(
        &self,
        show: ShowId,
        now: DateTime<Utc>,
    ) -> Result<Vec<SeatLock>, StoreError>;
    async fn get_hold(&self, hold: HoldId) -> Result<Option<Hold>, StoreError>;
    /// Releases a live hold owned by `user`.
    async fn release_hold(
        &self,
        hold: HoldId,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Hold, ReleaseError>;
    /// Marks HELD holds past their expiry EXPIRED and returns them (for notifications; their
    /// seats were already free by time).
    async fn expire_holds(&self, now: DateTime<Utc>) -> Result<Vec<Hold>, StoreError>;
    /// Whether the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Why an order operation did not happen. Nothing was written in any of these cases.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OrderError {
    /// No such order (or hold, for `create_order`), or not the caller's: indistinguishable on
    /// purpose.
    #[error("not found")]
    NotFound,
    /// The hold an order was asked for is not live (released, expired, already converted).
    #[error("hold is {0}, not HELD")]
    HoldNotActive(HoldStatus),
    /// The order is not in a state that allows this (its status as of now).
    #[error("order is {0}")]
    NotPending(OrderStatus),
    /// The payment deadline has passed: no charge may start.
    #[error("the order's payment deadline has passed")]
    Expired,
    /// A charge of this order is in flight; its outcome decides what may happen next.
    #[error("a payment of this order is in progress")]
    PaymentInProgress,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A page of a user's orders, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderPage {
    /// Only orders older than this one (the last of the previous page): `(created_at, order)`.
    pub after: Option<(DateTime<Utc>, OrderId)>,
    pub limit: usize,
}

/// The charge `begin_charge` hands back to be sent to the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeStart {
    /// Recorded just now.
    New(Payment),
    /// An earlier charge of this order whose outcome is not known yet: send it again (same key,
    /// same token); the provider answers its first outcome and never charges twice.
    InDoubt(Payment),
}

impl ChargeStart {
    pub fn payment(&self) -> &Payment {
        match self {
            Self::New(p) | Self::InDoubt(p) => p,
        }
    }
}

/// What became of a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeResult {
    /// The money moved; `provider_ref` names it (to refund it).
    Charged { provider_ref: String },
    /// The provider refused it (a declined card): the order fails and frees its seats.
    Declined { reason: String },
    /// The provider never charged it (asked after the fact): the order is left as it is.
    /// Recorded only if the charge was last sent at `last_sent` (its `updated_at` when recovery
    /// listed it): a charge sent again since may be on its way to the provider, and is left
    /// PENDING.
    NotCharged {
        reason: String,
        last_sent: DateTime<Utc>,
    },
}

/// What recording a charge's outcome did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeFinish {
    /// The order as it is now: CONFIRMED (with its ticket code) for a charge, FAILED for a
    /// decline, unchanged for a charge that never happened. Also what a second recording of an
    /// already recorded outcome returns.
    Settled(Order),
    /// The money moved but the order can no longer be confirmed (cancelled, expired and its seats
    /// given to someone else, confirmed by another charge): the refund recorded here (PENDING)
    /// must be sent.
    MustRefund { order: Order, refund: Payment },
}

/// What cancelling did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelStart {
    /// An unpaid order: CANCELLED now, its seats free.
    Cancelled(Order),
    /// A paid order: the refund recorded here (PENDING, or the earlier one still pending) must be
    /// sent; the order becomes CANCELLED when it is recorded as refunded.
    Refund { order: Order, refund: Payment },
}

/// Orders and their payments, kept with the seat claims they own.
///
/// Every method is one transaction. The stores implement the rules of `booking_core::order`;
/// the contract suite (booking-testkit) proves each store keeps them.
#[async_trait]
pub trait OrderStore: Send + Sync + 'static {
    /// Converts a live hold of `new.user_id` into a PAYMENT_PENDING order: the hold becomes
    /// CONVERTED and its seat claims pass to the order, lasting until `new.expires_at`. Refused
    /// (nothing written) unless every claim of the hold is still its own and live at
    /// `new.created_at`.
    async fn create_order(&self, new: &NewOrder) -> Result<Order, OrderError>;
    async fn get_order(&self, order: OrderId) -> Result<Option<Order>, StoreError>;
    /// The order made from a hold, if any (a retried create finds it).
    async fn order_of_hold(&self, hold: HoldId) -> Result<Option<Order>, StoreError>;
    /// A user's orders, newest first.
    async fn orders_of(&self, user: &UserId, page: OrderPage) -> Result<Vec<Order>, StoreError>;
    /// Every payment of an order, oldest first.
    async fn payments_of(&self, order: OrderId) -> Result<Vec<Payment>, StoreError>;
    /// Records a charge of a PAYMENT_PENDING order of `user`'s, to be sent with `token`, unless a
    /// charge of the order is still PENDING (then that one is returned, to be sent again). The
    /// order's seats stay claimed until at least `hold_seats_until` (the charge's time to finish).
    /// Refused at or after the order's `expires_at` ([`OrderError::Expired`]).
    async fn begin_charge(
        &self,
        order: OrderId,
        user: &UserId,
        payment: PaymentId,
        token: &PaymentToken,
        now: DateTime<Utc>,
        hold_seats_until: DateTime<Utc>,
    ) -> Result<ChargeStart, OrderError>;
    /// Records a PENDING charge's outcome and moves its order (see [`ChargeFinish`]). A charge that
    /// went through confirms the order with `ticket_code` if it is still PAYMENT_PENDING and every
    /// seat claim is still its own (even past `seats_until`: nobody took them). Recording the same
    /// outcome again changes nothing and returns the order as it is.
    async fn finish_charge(
        &self,
        payment: PaymentId,
        result: &ChargeResult,
        ticket_code: &str,
        refund: PaymentId,
        now: DateTime<Utc>,
    ) -> Result<ChargeFinish, OrderError>;
    /// Cancels an order of `user`'s (see [`CancelStart`]) for `reason` (kept on the order);
    /// refused while a charge is in flight and for orders that are over.
    async fn cancel_order(
        &self,
        order: OrderId,
        user: &UserId,
        refund: PaymentId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<CancelStart, OrderError>;
    /// A show's orders that are not over (PAYMENT_PENDING or CONFIRMED, whatever their payment
    /// window says), oldest first: what cancelling the show must cancel or refund.
    async fn open_orders_of_show(&self, show: ShowId) -> Result<Vec<Order>, StoreError>;
    /// Records that a PENDING refund went through: the payment SUCCEEDED, and the order, if it is
    /// still CONFIRMED (a cancel's refund), becomes CANCELLED and frees its seats. Returns the
    /// order as it is now; recording it again changes nothing.
    async fn finish_refund(
        &self,
        payment: PaymentId,
        provider_ref: &str,
        now: DateTime<Utc>,
    ) -> Result<Order, OrderError>;
    /// Marks PAYMENT_PENDING orders whose seat claims ran out by `now` EXPIRED, frees their
    /// claims, and returns them (for notifications; their seats were free by time already).
    async fn expire_orders(&self, now: DateTime<Utc>) -> Result<Vec<Order>, StoreError>;
    /// PENDING payments last sent (`updated_at`) before `before`, oldest first: calls whose
    /// caller has given up (crashed, timed out), for recovery to settle. Re-sending a charge in
    /// doubt (`begin_charge`) counts as sending it.
    async fn unsettled_payments(&self, before: DateTime<Utc>) -> Result<Vec<Payment>, StoreError>;
}

/// A response kept for replaying a request made with an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    /// The JSON body, as sent.
    pub body: Vec<u8>,
    /// The `Location` header, if the response had one.
    pub location: Option<String>,
}

/// What claiming an idempotency key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// Handle the request: the caller holds the key until its lease ends. `use_id` names this use
    /// of the key, the same on every attempt at it (a retry after a crash or a 5xx gets it
    /// again), so a write made under it can be found again instead of made twice.
    Claimed { use_id: String },
    /// Handled before: replay this response.
    Done(StoredResponse),
    /// Another attempt with this key is being handled right now.
    InFlight,
    /// The key was used for a different request (another method, path or body).
    Reused,
}

/// One attempt at a request that carries an idempotency key.
#[derive(Debug, Clone, Copy)]
pub struct KeyAttempt<'a> {
    pub user: &'a UserId,
    pub key: &'a IdempotencyKey,
    /// A digest of the request's method, path and body: the same key with another digest is a
    /// different request.
    pub fingerprint: &'a str,
    /// The use id to give the key if this attempt starts a new use of it.
    pub new_use_id: &'a str,
    pub now: DateTime<Utc>,
    /// Until when the attempt holds the key (longer than any request takes).
    pub lease_until: DateTime<Utc>,
    /// Until when a new use of the key is kept.
    pub expires_at: DateTime<Utc>,
}

/// Idempotency keys: which requests a user already made with a key, and their answers.
#[async_trait]
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims a key for one attempt at a request (see [`KeyAttempt`]). A key unknown, or kept
    /// past its `expires_at`, is claimed afresh under `new_use_id` and kept until the attempt's
    /// `expires_at`; one whose lease ran out without an answer (its handler crashed or failed) is
    /// claimed again under its old use id.
    async fn claim_key(&self, attempt: &KeyAttempt<'_>) -> Result<KeyClaim, StoreError>;
    /// Records the answer of the use `use_id` of `key`, to replay from now on.
    async fn complete_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        use_id: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError>;
    /// Ends the lease of the use `use_id` without an answer (the request failed in a way that
    /// must not be replayed): the next attempt with the key is handled again, under the same use.
    async fn release_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        use_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Forgets keys kept past their `expires_at`; returns how many.
    async fn purge_keys(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// The outcome of a charge at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Charged { provider_ref: String },
    Declined { reason: String },
}

/// Moves money: charges a payment token, refunds a charge.
///
/// Every call carries an idempotency key (a [`PaymentId`]): the provider performs the call once
/// per key and answers every repeat with the first outcome. An error means the outcome is
/// unknown; the caller repeats the call with the same key, or asks [`PaymentProvider::charge_outcome`].
#[async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    async fn charge(
        &self,
        key: PaymentId,
        token: &PaymentToken,
        amount_cents: i64,
        currency: &str,
    ) -> Result<ChargeOutcome, PaymentError>;
    /// What became of the charge sent with `key`; `None` if the provider never charged it.
    async fn charge_outcome(&self, key: PaymentId) -> Result<Option<ChargeOutcome>, PaymentError>;
    /// Refunds `amount_cents` of the charge `charge_ref`; returns the refund's reference.
    async fn refund(
        &self,
        key: PaymentId,
        charge_ref: &str,
        amount_cents: i64,
        currency: &str,
    ) -> Result<String, PaymentError>;
}

/// Where an accepted request waits, per show, in arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueTicket {
    /// 1 = next to be decided.
    pub position: u64,
    pub estimated_wait_seconds: u64,
}

/// A request that could not be decided, set aside so that its show goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetteredRequest {
    pub request: BookingRequest,
    /// Why the last try failed.
    pub reason: String,
    /// How many tries failed.
    pub attempts: u32,
    pub dead_lettered_at: DateTime<Utc>,
}

/// What one [`RequestStore::purge_history`] call removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub holds: u64,
    pub requests: u64,
}

impl Purged {
    /// Whether either kind reached `limit`, so that more may be left to remove.
    pub fn is_full(&self, limit: u32) -> bool {
        self.holds >= u64::from(limit) || self.requests >= u64::from(limit)
    }
}

/// One show's requests, counted from the store (see [`RequestStore::queue_counts`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ShowQueueCounts {
    pub show_id: ShowId,
    pub starts_at: DateTime<Utc>,
    pub paused: bool,
    /// QUEUED: accepted, not yet taken by a decider (dead letters not counted).
    pub waiting: u64,
    /// Undecided requests set aside as dead letters.
    pub dead_letters: u64,
    /// PROCESSING: taken by a decider, not yet decided.
    pub in_flight: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub expired: u64,
    /// When the oldest QUEUED request (not a dead letter) was accepted.
    pub oldest_waiting_since: Option<DateTime<Utc>>,
    /// Requests decided (SUCCESS or FAILED) since `decided_since`.
    pub recently_decided: u64,
    /// Their mean time from acceptance to decision, in milliseconds.
    pub recent_mean_time_to_decision_ms: Option<f64>,
}

/// The per-show FIFO that feeds the worker.
#[async_trait]
pub trait RequestQueue: Send + Sync + 'static {
    /// Enqueues a request that is already durable (QUEUED in the request store).
    async fn enqueue(&self, request: &BookingRequest) -> Result<QueueTicket, QueueError>;
    /// Enqueues a request again that was taken off the queue undecided (a redriven dead
    /// letter): unlike a retried [`RequestQueue::enqueue`], which a queue may deduplicate, this
    /// puts it in the queue again even if it was sent a moment ago.
    async fn requeue(&self, request: &BookingRequest) -> Result<QueueTicket, QueueError> {
        self.enqueue(request).await
    }
    /// The request's current place in its show's queue, if it is still waiting.
    async fn position(&self, request: &BookingRequest) -> Option<QueueTicket>;
    /// Stops deciding the show's requests in this process; they keep queueing, in order. The
    /// pause is recorded in the store first ([`CatalogStore::set_paused`]), which deciders in
    /// other processes read (the worker function); a queue whose deciding happens elsewhere has
    /// nothing more to do.
    async fn pause(&self, _show: ShowId) -> Result<(), QueueError> {
        Ok(())
    }
    async fn resume(&self, _show: ShowId) -> Result<(), QueueError> {
        Ok(())
    }
    /// Stops taking requests and lets this process finish deciding those it already holds,
    /// for at most `grace`; returns how many were left undecided (they are durable, and are
    /// decided after the next start). A queue whose requests are decided by another process
    /// (SQS and the worker function) has nothing to finish.
    async fn drain(&self, _grace: std::time::Duration) -> usize {
        0
    }
}

/// A queued message that cannot be decided (not ours, a request the store does not have, a show
/// that does not exist), set aside with the reason so that it never blocks its show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message's id in its queue.
    pub message_id: String,
    /// Its ordering group (the show), where the queue has one.
    pub group: Option<String>,
    /// The message as it was received.
    pub body: String,
    pub reason: String,
}

/// A show lock as its adapter holds it.
#[async_trait]
pub trait HeldLock: Send {
    /// Lets the lock go, and returns once it is gone.
    async fn release(self: Box<Self>);
}

/// Held while a show's requests are decided. [`ShowLockGuard::release`] lets the next decider
/// in and waits until it can; a guard merely dropped (a panic, a cancelled call) lets go too,
/// but in the background, which a process that may be frozen right after (a Lambda function
/// between invocations) must not rely on.
pub struct ShowLockGuard {
    held: Box<dyn HeldLock>,
}

impl ShowLockGuard {
    pub fn new(held: impl HeldLock + 'static) -> Self {
        Self {
            held: Box::new(held),
        }
    }

    pub async fn release(self) {
        self.held.release().await;
    }
}

impl std::fmt::Debug for ShowLockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShowLockGuard")
    }
}

/// Serialises the deciders of one show, across processes where they share a store: whoever
/// holds a show's lock is the only one loading, deciding and committing its requests. The seat
/// claims keep a seat from being sold twice without it; the lock keeps arrival order when hold
/// requests are decided as they arrive (`QUEUE_BASED_BOOKING=false`), possibly in several
/// processes, and while both modes run at once during a switch-over.
#[async_trait]
pub trait ShowLocks: Send + Sync + 'static {
    async fn lock(&self, show: ShowId) -> Result<ShowLockGuard, StoreError>;
}

/// Where messages that cannot be decided go (the SQS dead-letter queue deployed).
#[async_trait]
pub trait DeadLetters: Send + Sync + 'static {
    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), QueueError>;
}

/// Pushes outcomes to connected clients. Delivery is best effort: polling is the always-correct
/// path, so a failed push is logged by the adapter and never fails the caller.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    async fn booking_results(&self, results: &[(UserId, BookingResult)]);
    async fn seats_changed(&self, show: ShowId, changes: &[SeatChange]);
    /// Sends each message to every connection of its user (HOLD_EXPIRED, ORDER_UPDATED).
    async fn to_owners(&self, messages: &[(UserId, ServerMessage)]);
    /// Closes the connections this process holds, once what is queued for them has gone out,
    /// waiting at most `grace` for clients to acknowledge. A notifier that holds no connections
    /// (API Gateway holds them deployed) has nothing to close.
    async fn close(&self, _grace: std::time::Duration) {}
}

/// One seat's entry in the [`SeatMirror`]: who holds it, through which hold, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatLock {
    pub seat_id: SeatId,
    pub hold_id: HoldId,
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
    /// HELD for a hold, BOOKED for an order.
    pub status: SeatStatus,
}

/// A fast, disposable copy of seat ownership (Redis TTL'd locks deployed, process memory
/// locally) that serves the seat map's hot read path. It never decides anything: the store's
/// claims do. It may be flushed or unreachable at any moment; readers then fall back to the
/// store and the mirror is rebuilt from it.
///
/// Rebuilds race with workers' updates: a reader loads the store's state, a worker commits and
/// applies a change, then the reader's rebuild would overwrite it with older state. So every
/// `apply` bumps a per-show generation, a rebuild names the generation it read before loading the
/// store, and it is dropped if any apply came in between.
#[async_trait]
pub trait SeatMirror: Send + Sync + 'static {
    /// Mirrors committed changes of one show: each freed `(seat, hold)` is removed if it still
    /// names that hold, then every lock in `locks` is set, living until its `expires_at`.
    async fn apply(
        &self,
        show: ShowId,
        locks: &[SeatLock],
        freed: &[(SeatId, HoldId)],
    ) -> Result<(), MirrorError>;
    /// The show's taken seats as of `now`, or `None` when the mirror is not known to be complete
    /// for the show (never built, flushed, invalidated, or its completeness mark ran out).
    async fn taken_seats(
        &self,
        show: ShowId,
        layout: &[SeatId],
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<(SeatId, SeatStatus)>>, MirrorError>;
    /// The show's current generation; take it *before* loading the state to rebuild from.
    async fn generation(&self, show: ShowId) -> Result<u64, MirrorError>;
    /// Replaces the show's mirror with `locks` (the store's truth) and marks it complete, unless
    /// the generation has moved past `generation` (an apply came in between): then nothing is
    /// written and `false` is returned.
    async fn rebuild(
        &self,
        show: ShowId,
        layout: &[SeatId],
        locks: &[SeatLock],
        generation: u64,
    ) -> Result<bool, MirrorError>;
    /// Drops the show's completeness mark (after an apply failed): reads go to the store until
    /// the next rebuild.
    async fn invalidate(&self, show: ShowId) -> Result<(), MirrorError>;
}

/// Per-show arrival and decision counters, for queue positions where the queue itself cannot
/// count (SQS FIFO).
#[async_trait]
pub trait QueueCounters: Send + Sync + 'static {
    /// The request's ticket (1, 2, 3, … per show, in the order tickets were taken): taken on the
    /// first call for the request, the same one on every later call (a retried enqueue must not
    /// count the request twice). The request's ticket is remembered until `keep_until`.
    async fn take_ticket(
        &self,
        show: ShowId,
        request: RequestId,
        keep_until: DateTime<Utc>,
    ) -> Result<u64, MirrorError>;
    /// The ticket the request took, if it took one (and it is still remembered).
    async fn ticket_of(&self, show: ShowId, request: RequestId)
    -> Result<Option<u64>, MirrorError>;
    /// Counts `count` more decided requests for the show.
    async fn add_decided(&self, show: ShowId, count: u64) -> Result<(), MirrorError>;
    /// How many requests were decided for the show so far.
    async fn decided(&self, show: ShowId) -> Result<u64, MirrorError>;
}

/// Token buckets by key (`holds:<user>`, `ip:<address>`): how fast one caller may go. Shared by
/// every process that serves the API where it can be (Redis), so that a caller spread over many
/// Lambda instances meets one limit, not one per instance.
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Takes one request from `key`'s bucket under `rule` (see [`crate::rate::gcra`]): allowed,
    /// or limited with when to retry. A limited request takes nothing.
    async fn acquire(&self, key: &str, rule: &RateRule) -> Result<RateVerdict, MirrorError>;
}

/// What [`ConnectionRegistry::subscribe`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    Subscribed,
    /// The connection is not (or no longer) registered.
    UnknownConnection,
    /// The connection watches as many shows as it may.
    TooMany,
}

/// What [`ConnectionRegistry::connect`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    Registered,
    /// The user already holds as many connections as they may.
    TooMany,
}

/// The WebSocket connections a gateway holds for us (API Gateway keeps the sockets; we keep who
/// is behind each one): by user, for booking results, and by subscribed show, for seat changes.
#[async_trait]
pub trait ConnectionRegistry: Send + Sync + 'static {
    /// Records a freshly authenticated connection whose token is valid until
    /// `token_expires_at`, unless its user already holds `max_per_user` live connections. The
    /// cap is exact however many connections of one user arrive at once. A connection is not
    /// pushed to after its token expires, and [`ConnectionRegistry::token_expired`] names it
    /// for closing.
    async fn connect(
        &self,
        connection: &str,
        user: &UserId,
        token_expires_at: DateTime<Utc>,
        max_per_user: usize,
    ) -> Result<Registration, StoreError>;
    /// Subscribes a known connection to a show's seat changes, unless it already watches `max`
    /// other shows.
    async fn subscribe(
        &self,
        connection: &str,
        show: ShowId,
        max: usize,
    ) -> Result<Subscription, StoreError>;
    async fn unsubscribe(&self, connection: &str, show: ShowId) -> Result<(), StoreError>;
    /// Forgets the connection and its subscriptions.
    async fn disconnect(&self, connection: &str) -> Result<(), StoreError>;
    async fn connections_of(&self, user: &UserId) -> Result<Vec<String>, StoreError>;
    async fn subscribers(&self, show: ShowId) -> Result<Vec<String>, StoreError>;
    /// Up to `limit` registered connections whose token had expired at `now`: still open at
    /// the gateway until someone closes them.
    async fn token_expired(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
}
