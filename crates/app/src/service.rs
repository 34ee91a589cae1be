//! The use cases behind the HTTP API: validate and accept hold requests, answer polls, read and
//! release holds, build seat maps, read the catalog.
//!
//! Validation happens here, before anything is written, so bad input never leaves a partial
//! write; ownership is checked here, so every entry point (HTTP, Lambda) gets it for free.

use crate::app::Ports;
use crate::config::BookingConfig;
use crate::error::BookingError;
use crate::processor::{Arrival, BatchProcessor};
use booking_core::Chain;
use booking_core::engine::SeatChange;
use booking_core::ports::{
    DeadLetteredRequest, Inserted, QueueTicket, ReleaseError, RequestQueue, SeatLock, SeatMirror,
};
use booking_core::{
    BookingRequest, Hold, IdempotencyKey, Movie, MovieId, NewBookingRequest, RequestId,
    RequestStatus, SeatId, SeatStatus, Show, ShowId, UserId,
};
use booking_core::{HoldId, SeatLayout};
use chrono::NaiveDate;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// A request as the client sent it, before validation.
#[derive(Debug, Clone)]
pub struct HoldRequestInput {
    pub show_id: String,
    pub seat_ids: Vec<String>,
    pub idempotency_key: Option<String>,
}

/// The answer to an accepted request.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub request: BookingRequest,
    pub ticket: Option<QueueTicket>,
    /// False when an idempotency key matched an earlier request.
    pub created: bool,
}

/// A seat map: the layout with each seat's status.
#[derive(Debug, Clone)]
pub struct SeatMap {
    pub show: Show,
    pub statuses: Vec<(SeatId, SeatStatus)>,
}

pub struct BookingService {
    ports: Ports,
    queue: Arc<dyn RequestQueue>,
    /// Set when requests are decided as they arrive (`QUEUE_BASED_BOOKING=false`): the same
    /// processor the deciders run, serialised per show by `Ports::show_locks`.
    direct: Option<Arc<BatchProcessor>>,
    /// Serialises pauses and resumes (store write, then lanes) in this process.
    pause_writes: tokio::sync::Mutex<()>,
    config: BookingConfig,
    /// Every hold request needs its show's layout: a read-through cache keeps validation off
    /// the database. A show changes rarely, and what is on sale never once it has taken a
    /// request; an entry is dropped when this process writes the show, and lives at most
    /// [`SHOW_CACHE_TTL`] so a write by another process (another Lambda instance, an import) is
    /// seen soon. A request validated against an entry just replaced is still decided against
    /// the stored layout by the engine.
    shows: RwLock<HashMap<ShowId, (Show, Instant)>>,
}

/// Most requests of a show waiting from before that a request decided as it arrives decides first
/// (in direct mode), in one batch with it (the lanes' largest batch, with it); behind more, it
/// queues up behind them instead.
const DIRECT_BACKLOG: u32 = 511;

/// What a discarded dead letter's owner is told when the operator gave no reason.
const DISCARDED_MESSAGE: &str = "The request could not be processed and was withdrawn";

/// The window queue statistics measure the decision rate over.
const RATE_WINDOW: chrono::Duration = chrono::Duration::seconds(60);

/// One show's queue, for operators.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueStats {
    pub show_id: ShowId,
    pub starts_at: chrono::DateTime<chrono::Utc>,
    pub paused: bool,
    /// Accepted and waiting to be taken by a decider.
    pub waiting: u64,
    /// Taken by a decider, not decided yet.
    pub in_flight: u64,
    /// Set aside after `MAX_ATTEMPTS` failed tries, waiting for an operator.
    pub dead_letters: u64,
    /// Every request that reached an outcome.
    pub decided: u64,
    pub outcomes: Outcomes,
    /// How long the oldest waiting request has waited.
    pub oldest_waiting_age_seconds: Option<i64>,
    /// Requests decided per second over the last minute.
    pub decisions_per_second: f64,
    /// Their mean time from acceptance to decision.
    pub mean_time_to_decision_ms: Option<f64>,
}

/// Decided requests by outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Outcomes {
    pub success: u64,
    pub failed: u64,
    pub expired: u64,
}

/// How long a show stays cached for validation and seat maps.
pub const SHOW_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

impl BookingService {
    pub fn new(
        ports: Ports,
        queue: Arc<dyn RequestQueue>,
        direct: Option<Arc<BatchProcessor>>,
        config: BookingConfig,
    ) -> Self {
        Self {
            ports,
            queue,
            direct,
            pause_writes: tokio::sync::Mutex::new(()),
            config,
            shows: RwLock::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &BookingConfig {
        &self.config
    }

    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// Where accepted requests wait to be decided.
    pub fn queue(&self) -> &Arc<dyn RequestQueue> {
        &self.queue
    }

    /// A show by id, from the cache or the catalog.
    pub async fn show(&self, show_id: ShowId) -> Result<Option<Show>, BookingError> {
        if let Some((show, cached_at)) = self
            .shows
            .read()
            .expect("show cache poisoned")
            .get(&show_id)
            && cached_at.elapsed() < SHOW_CACHE_TTL
        {
            return Ok(Some(show.clone()));
        }
        let show = self.ports.catalog.get_show(show_id).await?;
        let mut cache = self.shows.write().expect("show cache poisoned");
        match &show {
            Some(show) => {
                cache.insert(show_id, (show.clone(), Instant::now()));
            }
            None => {
                cache.remove(&show_id);
            }
        }
        Ok(show)
    }

    /// Drops a show from the cache (this process just wrote it).
    pub fn forget_show(&self, show_id: ShowId) {
        self.shows
            .write()
            .expect("show cache poisoned")
            .remove(&show_id);
    }

    pub(crate) async fn require_show(&self, raw: &str) -> Result<Show, BookingError> {
        let show_id: ShowId = raw.parse().map_err(|_| BookingError::ShowNotFound)?;
        self.show(show_id).await?.ok_or(BookingError::ShowNotFound)
    }

    /// Checks a hold request against the show's layout and the limits; nothing is written.
    fn validate_seats(
        &self,
        layout: &SeatLayout,
        raw: &[String],
    ) -> Result<Vec<SeatId>, BookingError> {
        if raw.is_empty() {
            return Err(BookingError::NoSeats);
        }
        let max = self.config.max_seats_per_request;
        if raw.len() > max {
            return Err(BookingError::TooManySeats {
                max,
                requested: raw.len(),
            });
        }
        let mut seats = Vec::with_capacity(raw.len());
        let mut seen = HashSet::with_capacity(raw.len());
        for s in raw {
            let seat: SeatId = s
                .parse()
                .map_err(|_| BookingError::InvalidSeatId(truncate(s, 16)))?;
            if !layout.contains(seat) {
                return Err(BookingError::SeatNotInLayout(seat));
            }
            if layout.is_blocked(seat) {
                return Err(BookingError::SeatBlocked(seat));
            }
            if !seen.insert(seat) {
                return Err(BookingError::DuplicateSeat(seat));
            }
            seats.push(seat);
        }
        Ok(seats)
    }

    /// Validates, persists as QUEUED (durably) and enqueues a hold request.
    #[tracing::instrument(skip_all, fields(user = %user))]
    pub async fn submit_hold(
        &self,
        user: &UserId,
        input: HoldRequestInput,
    ) -> Result<Accepted, BookingError> {
        let idempotency_key = input
            .idempotency_key
            .as_deref()
            .map(|k| {
                k.parse::<IdempotencyKey>()
                    .map_err(|_| BookingError::InvalidIdempotencyKey)
            })
            .transpose()?;
        let show = self.require_show(&input.show_id).await?;
        if show.is_cancelled() {
            return Err(BookingError::ShowCancelled(show.show_id));
        }
        let seat_ids = self.validate_seats(&show.layout, &input.seat_ids)?;
        let now = self.ports.clock.now();
        let new = NewBookingRequest {
            request_id: RequestId::new_time_ordered(),
            user_id: user.clone(),
            show_id: show.show_id,
            seat_ids,
            idempotency_key,
            created_at: now,
            expires_at: now + self.config.request_ttl,
            // One user cannot queue up requests to push everyone else back. The store counts
            // it as it inserts; a retry of a request already made (same key) is not a new one:
            // it is found, and queued again if its enqueue failed.
            max_open: Some(self.config.max_open_requests_per_user),
        };
        let (request, created) = match self.ports.requests.insert_request(new).await? {
            Inserted::New(request) => (request, true),
            Inserted::Existing(request) => (request, false),
            Inserted::TooManyOpen { max } => {
                return Err(BookingError::TooManyOpenRequests { max });
            }
        };
        if let Some(processor) = &self.direct {
            return self.decide_now(processor, request, created).await;
        }
        match (request, created) {
            (request, true) => {
                let ticket = self.queue.enqueue(&request).await?;
                tracing::debug!(request_id = %request.request_id, position = ticket.position, "accepted");
                Ok(Accepted {
                    request,
                    ticket: Some(ticket),
                    created: true,
                })
            }
            (request, false) => {
                // A decided request has no place in any queue, whatever the queue remembers.
                let mut ticket = if request.status.is_terminal() {
                    None
                } else {
                    self.queue.position(&request).await
                };
                // Still waiting but not known to the queue: the first attempt's enqueue may have
                // failed after the insert (the client saw a 503 and retried). Enqueue it now, or
                // it would wait for nothing until it expires. The queue deduplicates by request
                // id, and a second delivery is decided once anyway.
                if ticket.is_none() && request.status == RequestStatus::Queued {
                    ticket = Some(self.queue.enqueue(&request).await?);
                }
                Ok(Accepted {
                    request,
                    ticket,
                    created: false,
                })
            }
        }
    }

    /// Direct mode: decides a durable request at once through the same processor (and engine)
    /// the queue's deciders run, and answers with its outcome. If its show is paused, or it
    /// cannot be decided now (a store failing mid-way), it is queued instead, to be decided like
    /// any other: the client hears 202, as in queue mode, and nothing is lost.
    async fn decide_now(
        &self,
        processor: &Arc<BatchProcessor>,
        request: BookingRequest,
        created: bool,
    ) -> Result<Accepted, BookingError> {
        if request.status.is_terminal() {
            return Ok(Accepted {
                request,
                ticket: None,
                created,
            });
        }
        // A paused show decides nothing, in either mode: its requests wait in the queue.
        if self.ports.catalog.is_paused(request.show_id).await? {
            return self.queue_instead(request, created).await;
        }
        // Arrival order holds across modes: requests of the show still waiting from before (a
        // pause just lifted, a switch-over from queue mode, a decision that failed, concurrent
        // arrivals) are decided first, in the same batch; behind a long backlog this one queues up
        // instead. Decided in a task of its own, so that a client going away mid-way (which drops
        // this call) cannot leave the batch taken but undecided.
        let deciding = {
            let (processor, request) = (processor.clone(), request.clone());
            tokio::spawn(async move { processor.process_arrival(&request, DIRECT_BACKLOG).await })
        };
        match deciding.await {
            Ok(Ok(Arrival::Decided(_))) => {}
            Ok(Ok(Arrival::Backlogged)) => return self.queue_instead(request, created).await,
            Ok(Err(e)) => {
                tracing::warn!(request_id = %request.request_id, error = %Chain(&e), "not decided at once; queued instead");
                return self.queue_instead(request, created).await;
            }
            Err(panicked) => {
                tracing::error!(request_id = %request.request_id, error = %panicked, "the decision panicked; queued instead");
                return self.queue_instead(request, created).await;
            }
        }
        let decided = self
            .ports
            .requests
            .get_request(request.request_id)
            .await?
            .ok_or_else(|| BookingError::Inconsistent("a decided request is gone".into()))?;
        Ok(Accepted {
            request: decided,
            ticket: None,
            created,
        })
    }

    /// Direct mode's fallback: the request waits in the queue like any other (202).
    async fn queue_instead(
        &self,
        request: BookingRequest,
        created: bool,
    ) -> Result<Accepted, BookingError> {
        let ticket = self.queue.enqueue(&request).await?;
        Ok(Accepted {
            request,
            ticket: Some(ticket),
            created,
        })
    }

    /// A request, if it exists and belongs to `user` (someone else's reads as not found).
    pub async fn booking_request(
        &self,
        user: &UserId,
        raw_id: &str,
    ) -> Result<(BookingRequest, Option<QueueTicket>), BookingError> {
        let not_found = || BookingError::RequestNotFound;
        let id: RequestId = raw_id.parse().map_err(|_| not_found())?;
        let request = self
            .ports
            .requests
            .get_request(id)
            .await?
            .filter(|r| &r.user_id == user)
            .ok_or_else(not_found)?;
        let ticket = if request.status == RequestStatus::Queued
            || request.status == RequestStatus::Processing
        {
            self.queue.position(&request).await
        } else {
            None
        };
        Ok((request, ticket))
    }

    /// A hold of `user`'s, with its status as of now.
    pub async fn hold(&self, user: &UserId, raw_id: &str) -> Result<(Hold, Show), BookingError> {
        let not_found = || BookingError::HoldNotFound;
        let id: HoldId = raw_id.parse().map_err(|_| not_found())?;
        let mut hold = self
            .ports
            .holds
            .get_hold(id)
            .await?
            .filter(|h| &h.user_id == user)
            .ok_or_else(not_found)?;
        hold.status = hold.status_at(self.ports.clock.now());
        let show = self.show_of(&hold).await?;
        Ok((hold, show))
    }

    /// Releases a live hold of `user`'s and tells the show's subscribers its seats are free.
    #[tracing::instrument(skip_all, fields(user = %user, hold = raw_id))]
    pub async fn release_hold(
        &self,
        user: &UserId,
        raw_id: &str,
    ) -> Result<(Hold, Show), BookingError> {
        let id: HoldId = raw_id.parse().map_err(|_| BookingError::HoldNotFound)?;
        let now = self.ports.clock.now();
        let hold = self
            .ports
            .holds
            .release_hold(id, user, now)
            .await
            .map_err(|e| match e {
                ReleaseError::NotFound => BookingError::HoldNotFound,
                ReleaseError::NotHeld(status) => BookingError::HoldNotActive(status),
                ReleaseError::Store(e) => BookingError::Store(e),
            })?;
        announce_released(&self.ports, hold.show_id, std::slice::from_ref(&hold)).await;
        let show = self.show_of(&hold).await?;
        Ok((hold, show))
    }

    /// Every seat of a show with its status as of now.
    pub async fn seat_map(&self, raw_show: &str) -> Result<SeatMap, BookingError> {
        let show = self.require_show(raw_show).await?;
        let taken = self.taken_seats(&show).await?;
        let statuses = show
            .layout
            .seats()
            .iter()
            .map(|&seat| {
                let status = if show.layout.is_blocked(seat) {
                    SeatStatus::Blocked
                } else {
                    taken.get(&seat).copied().unwrap_or(SeatStatus::Available)
                };
                (seat, status)
            })
            .collect();
        Ok(SeatMap { show, statuses })
    }

    /// Pauses (or resumes) deciding an existing show's requests; they keep queueing, in order.
    /// The store records it first (what survives a restart, and what deciders in other processes
    /// read), then this process's lanes apply it. Fails when either could not: an operator must
    /// not be told a pause took.
    pub async fn set_paused(&self, raw_show: &str, paused: bool) -> Result<ShowId, BookingError> {
        let show = self.require_show(raw_show).await?.show_id;
        // One pause or resume at a time in this process: two admins racing must not leave this
        // process's lanes contradicting the store (the last write is the one both see).
        let _one_at_a_time = self.pause_writes.lock().await;
        if !self.ports.catalog.set_paused(show, paused).await? {
            return Err(BookingError::ShowNotFound);
        }
        if paused {
            self.queue.pause(show).await?;
        } else {
            self.queue.resume(show).await?;
        }
        Ok(show)
    }

    /// Per-show queue statistics from the store (so they are the same after a restart and in
    /// every process): every show that has not started (or started less than a day ago) and
    /// every show with undecided requests, by start time.
    pub async fn queue_stats(&self) -> Result<Vec<QueueStats>, BookingError> {
        let now = self.ports.clock.now();
        let counts = self
            .ports
            .requests
            .queue_counts(now - chrono::Duration::days(1), now - RATE_WINDOW)
            .await?;
        Ok(counts
            .into_iter()
            .map(|c| QueueStats {
                show_id: c.show_id,
                starts_at: c.starts_at,
                paused: c.paused,
                waiting: c.waiting,
                in_flight: c.in_flight,
                dead_letters: c.dead_letters,
                decided: c.succeeded + c.failed + c.expired,
                outcomes: Outcomes {
                    success: c.succeeded,
                    failed: c.failed,
                    expired: c.expired,
                },
                oldest_waiting_age_seconds: c
                    .oldest_waiting_since
                    .map(|since| (now - since).num_seconds().max(0)),
                decisions_per_second: c.recently_decided as f64 / RATE_WINDOW.num_seconds() as f64,
                mean_time_to_decision_ms: c.recent_mean_time_to_decision_ms,
            })
            .collect())
    }

    /// The requests set aside as dead letters, of one show (`raw_show`) or of all.
    pub async fn dead_letters(
        &self,
        raw_show: Option<&str>,
    ) -> Result<Vec<DeadLetteredRequest>, BookingError> {
        let show = match raw_show {
            Some(raw) => Some(self.require_show(raw).await?.show_id),
            None => None,
        };
        Ok(self.ports.requests.dead_letters(show).await?)
    }

    /// Puts dead letters back in their show's queue to be decided again, in arrival order, each
    /// once (a second redrive of the same finds nothing). Returns the requests redriven.
    async fn redrive(&self, ids: &[RequestId]) -> Result<Vec<BookingRequest>, BookingError> {
        let redriven = self.ports.requests.redrive_dead_letters(ids).await?;
        for (i, request) in redriven.iter().enumerate() {
            if let Err(e) = self.queue.requeue(request).await {
                // Not queued, and no longer a dead letter: set what is left aside again, so that
                // the operator still sees it (and can redrive it once the queue is back).
                let reason = format!("redrive could not be queued: {}", Chain(&e));
                let now = self.ports.clock.now();
                for left in &redriven[i..] {
                    self.ports
                        .requests
                        .dead_letter_request(left.request_id, &reason, 0, now)
                        .await?;
                }
                return Err(e.into());
            }
        }
        Ok(redriven)
    }

    /// Redrives one dead letter (`DEAD_LETTER_NOT_FOUND` if the request is not one).
    pub async fn redrive_dead_letter(&self, raw: &str) -> Result<BookingRequest, BookingError> {
        let id: RequestId = raw.parse().map_err(|_| BookingError::DeadLetterNotFound)?;
        self.redrive(&[id])
            .await?
            .pop()
            .ok_or(BookingError::DeadLetterNotFound)
    }

    /// Redrives every dead letter of a show, in arrival order.
    pub async fn redrive_show(&self, raw_show: &str) -> Result<Vec<BookingRequest>, BookingError> {
        let ids: Vec<RequestId> = self
            .dead_letters(Some(raw_show))
            .await?
            .into_iter()
            .map(|d| d.request.request_id)
            .collect();
        self.redrive(&ids).await
    }

    /// Ends a dead letter FAILED with `reason`, and tells its owner.
    pub async fn discard_dead_letter(
        &self,
        raw: &str,
        reason: Option<&str>,
    ) -> Result<BookingRequest, BookingError> {
        let id: RequestId = raw.parse().map_err(|_| BookingError::DeadLetterNotFound)?;
        let reason = operator_reason(reason)?.unwrap_or_else(|| DISCARDED_MESSAGE.to_owned());
        let now = self.ports.clock.now();
        let request = self
            .ports
            .requests
            .discard_dead_letter(id, &reason, now)
            .await?
            .ok_or(BookingError::DeadLetterNotFound)?;
        if let Some(outcome) = &request.outcome {
            let result = crate::processor::stored_result(&request, outcome);
            self.ports
                .notifier
                .booking_results(&[(request.user_id.clone(), result)])
                .await;
        }
        Ok(request)
    }

    /// Held and booked seats of a show, straight from the store.
    async fn store_taken_seats(
        &self,
        show: ShowId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<HashMap<SeatId, SeatStatus>, BookingError> {
        Ok(self
            .ports
            .holds
            .taken_seats(show, now)
            .await?
            .into_iter()
            .collect())
    }

    /// Held and booked seats of a show: from the mirror when it is complete; otherwise from the
    /// store, rebuilding the mirror from what was read.
    async fn taken_seats(&self, show: &Show) -> Result<HashMap<SeatId, SeatStatus>, BookingError> {
        let now = self.ports.clock.now();
        let Some(mirror) = &self.ports.mirror else {
            return self.store_taken_seats(show.show_id, now).await;
        };
        let layout = show.layout.seats();
        match mirror.taken_seats(show.show_id, layout, now).await {
            Ok(Some(taken)) => return Ok(taken.into_iter().collect()),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(show_id = %show.show_id, error = %Chain(&e), "seat mirror unreadable; reading the store");
                return self.store_taken_seats(show.show_id, now).await;
            }
        }
        // Cold: read the truth, then offer it to the mirror. The generation is read first so
        // that a worker's update landing meanwhile makes this (older) rebuild a no-op.
        let generation = mirror.generation(show.show_id).await;
        // Every live claim, holds' and orders' alike: a rebuild from holds alone would leave a
        // booked seat reading AVAILABLE on every hot read after it.
        let locks = self.ports.holds.seat_locks(show.show_id, now).await?;
        if let Ok(generation) = generation
            && let Err(e) = mirror
                .rebuild(show.show_id, layout, &locks, generation)
                .await
        {
            tracing::warn!(show_id = %show.show_id, error = %Chain(&e), "seat mirror rebuild failed");
        }
        Ok(locks.iter().map(|l| (l.seat_id, l.status)).collect())
    }

    pub async fn movies(&self) -> Result<Vec<Movie>, BookingError> {
        Ok(self.ports.catalog.list_movies().await?)
    }

    pub async fn movie(&self, raw: &str) -> Result<Movie, BookingError> {
        let not_found = || BookingError::MovieNotFound;
        let id: MovieId = raw.parse().map_err(|_| not_found())?;
        self.ports
            .catalog
            .get_movie(id)
            .await?
            .ok_or_else(not_found)
    }

    pub async fn shows_of(
        &self,
        raw_movie: &str,
        date: Option<&str>,
    ) -> Result<Vec<Show>, BookingError> {
        let movie = self.movie(raw_movie).await?;
        let date = date
            .map(|d| {
                NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| BookingError::InvalidDate)
            })
            .transpose()?;
        Ok(self.ports.catalog.list_shows(movie.movie_id, date).await?)
    }
}

impl BookingService {
    /// The show a stored hold belongs to; its absence is a contradiction between the stores.
    async fn show_of(&self, hold: &Hold) -> Result<Show, BookingError> {
        self.show(hold.show_id).await?.ok_or_else(|| {
            BookingError::Inconsistent(format!(
                "hold {} names show {}, which the catalog does not have",
                hold.hold_id, hold.show_id
            ))
        })
    }
}

/// Tells the mirror and the show's subscribers that `holds` of `show` were released: their
/// seats are free.
pub(crate) async fn announce_released(ports: &Ports, show: ShowId, holds: &[Hold]) {
    if let Some(mirror) = &ports.mirror {
        let freed: Vec<_> = holds
            .iter()
            .flat_map(|h| h.seat_ids.iter().map(|&s| (s, h.hold_id)))
            .collect();
        update_mirror(mirror.as_ref(), show, &[], &freed).await;
    }
    let changes: Vec<SeatChange> = holds
        .iter()
        .flat_map(|h| &h.seat_ids)
        .map(|&seat_id| SeatChange {
            seat_id,
            status: SeatStatus::Available,
        })
        .collect();
    if !changes.is_empty() {
        ports.notifier.seats_changed(show, &changes).await;
    }
}

/// Mirrors committed changes of one show (new locks, freed seats). The mirror is best effort: a
/// failed update invalidates the show's mirror, so readers use the store until it is rebuilt.
pub async fn update_mirror(
    mirror: &dyn SeatMirror,
    show: ShowId,
    locks: &[SeatLock],
    freed: &[(SeatId, HoldId)],
) {
    if let Err(e) = mirror.apply(show, locks, freed).await {
        tracing::warn!(show_id = %show, error = %Chain(&e), "seat mirror update failed; invalidating it");
        if let Err(e) = mirror.invalidate(show).await {
            tracing::warn!(show_id = %show, error = %Chain(&e), "seat mirror invalidation failed; it heals when its completeness mark runs out");
        }
    }
}

/// Most characters of a reason an operator gives (for discarding a request, cancelling a show).
pub const MAX_REASON_CHARS: usize = 500;

/// A reason an operator gave, trimmed; `None` if none was given. Refused
/// ([`BookingError::InvalidReason`]) if it is too long or has control characters: it is shown
/// to buyers as it is.
pub(crate) fn operator_reason(raw: Option<&str>) -> Result<Option<String>, BookingError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(r) if r.chars().count() > MAX_REASON_CHARS || r.chars().any(char::is_control) => {
            Err(BookingError::InvalidReason)
        }
        Some(r) => Ok(Some(r.to_owned())),
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}
