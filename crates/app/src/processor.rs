//! Deciding one show's batch of requests: the worker's whole job, shared by the local lanes and
//! the Lambda worker.
//!
//! Order of work, and why: find which requests are still undecided (duplicates drop out here;
//! PostgreSQL also claims them, PROCESSING, so that a racing worker waits), load the show's seat
//! state once, decide the whole batch in memory with the core engine, commit every result in
//! one transaction that records only outcomes of requests still undecided, and only then
//! notify. No transaction that writes is ever held
//! across a network call, and a client never hears of a result that might still roll back. The
//! one exception is deliberate: where deciders are serialised per show (`Ports::show_locks`), the
//! lock is held through the pushes too, so that one show's SEATS_CHANGED reach subscribers in
//! commit order; on PostgreSQL that lock is an idle transaction holding nothing but an advisory
//! lock (no rows, no writes).

use crate::app::Ports;
use crate::service::update_mirror;
use booking_core::commit::CommitPlan;
use booking_core::engine::BatchOutcome;
use booking_core::engine::{Decision, DecisionEngine, PendingRequest};
use booking_core::ports::{CommitError, SeatLock, SeatMirror, StoreError};
use booking_core::protocol::BookingResult;
use booking_core::{
    BookingRequest, HoldId, RequestId, RequestOutcome, RequestStatus, SeatId, SeatStatus, ShowId,
    UserId,
};
use chrono::Duration;
use std::collections::HashMap;
use std::collections::HashSet;

/// Why a batch was not decided. Nothing of it was committed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The batch names a show the catalog does not have: retrying the same input cannot help.
    #[error("show {0} does not exist")]
    UnknownShow(ShowId),
    /// Every attempt lost a seat race to another worker on the same show.
    #[error("seat conflicts persisted across {0} attempts")]
    ConflictsPersisted(usize),
    #[error("a store failed while deciding the batch")]
    Store(#[from] StoreError),
}

impl ProcessError {
    /// Whether the same batch may succeed later (a store comes back, the rival worker finishes);
    /// otherwise the input itself is at fault (an unknown show, invalid stored data).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::UnknownShow(_) => false,
            Self::ConflictsPersisted(_) => true,
            Self::Store(e) => e.is_unavailable(),
        }
    }

    /// Whether this failure counts towards `MAX_ATTEMPTS`, after which the request is set aside
    /// as a dead letter. A store that does not answer does not count: it fails every request
    /// alike (and could not record a dead letter either), and setting a show's whole queue aside
    /// during an outage would be worse than waiting for the store.
    pub fn counts_as_attempt(&self) -> bool {
        !matches!(self, Self::Store(e) if e.is_unavailable())
    }
}

/// What a processed batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchReport {
    pub decided: usize,
    pub granted: usize,
    /// Requests that were already decided (duplicate deliveries); their result was re-sent.
    pub duplicates: usize,
    /// Commit attempts that lost a seat race and were decided again.
    pub conflicts: usize,
}

pub struct BatchProcessor {
    ports: Ports,
    hold_ttl: Duration,
}

/// What a direct-mode arrival came to ([`BatchProcessor::process_arrival`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// Decided, with the show's requests that waited from before it.
    Decided(BatchReport),
    /// Too many of the show's requests wait from before it: nothing was decided.
    Backlogged,
}

/// Whether a batch re-sends the stored outcome of requests someone else decided: yes for
/// deliveries from a queue (a duplicate's owner may have missed the first push), no for a
/// direct-mode arrival (whoever decided them told their owners).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    Duplicates,
    Nothing,
}

/// How many times a batch is re-decided after losing a seat race before giving up for now.
const MAX_CONFLICT_RETRIES: usize = 5;

impl BatchProcessor {
    /// A processor deciding with holds that last `hold_ttl`; every committed batch is mirrored
    /// into `ports.mirror` when there is one.
    pub fn new(ports: Ports, hold_ttl: Duration) -> Self {
        Self { ports, hold_ttl }
    }

    /// Decides `batch` (requests of `show`, in arrival order) and notifies the outcomes.
    #[tracing::instrument(skip_all, fields(show_id = %show, size = batch.len()))]
    pub async fn process(
        &self,
        show: ShowId,
        batch: &[BookingRequest],
    ) -> Result<BatchReport, ProcessError> {
        // Held until the outcomes are committed and told: nobody else decides this show meanwhile.
        self.ports
            .as_sole_decider(show, self.process_locked(show, batch, Resend::Duplicates))
            .await
    }

    /// Decides a request the moment it arrives (direct mode): under the show's lock, together
    /// with the show's requests still waiting from before it (read under the lock, so nobody
    /// else is deciding them), in arrival order, so that it never overtakes them. Behind more
    /// than `backlog_limit` of them it is not decided here ([`Arrival::Backlogged`]): it belongs
    /// in the queue behind them. A request of the batch decided meanwhile by someone else (its
    /// own arrival, a lane) was told by them, and is not told again.
    #[tracing::instrument(skip_all, fields(show_id = %request.show_id, request_id = %request.request_id))]
    pub async fn process_arrival(
        &self,
        request: &BookingRequest,
        backlog_limit: u32,
    ) -> Result<Arrival, ProcessError> {
        let show = request.show_id;
        let arrival = async {
            let mut batch = self
                .ports
                .requests
                .undecided_before(show, request.seq, backlog_limit.saturating_add(1))
                .await?;
            if batch.len() > backlog_limit as usize {
                return Ok(Arrival::Backlogged);
            }
            batch.push(request.clone());
            self.process_locked(show, &batch, Resend::Nothing)
                .await
                .map(Arrival::Decided)
        };
        self.ports.as_sole_decider(show, arrival).await
    }

    async fn process_locked(
        &self,
        show: ShowId,
        batch: &[BookingRequest],
        resend: Resend,
    ) -> Result<BatchReport, ProcessError> {
        let started = std::time::Instant::now();
        // Read fresh under the show's lock: a show cancelled a moment ago grants nothing more.
        let stored = self
            .ports
            .catalog
            .get_show(show)
            .await?
            .ok_or(ProcessError::UnknownShow(show))?;
        let cancelled = stored.cancellation_message();
        let layout = stored.layout;
        let ids: Vec<_> = batch.iter().map(|r| r.request_id).collect();
        let mut report = BatchReport::default();
        // Requests still ours to decide as of the previous attempt: after a lost race, those a
        // racing worker decided meanwhile drop out, and their stored outcome is what to send.
        let mut claimed: HashSet<_> = ids.iter().copied().collect();

        for attempt in 0..=MAX_CONFLICT_RETRIES {
            let undecided: HashSet<_> = self
                .ports
                .requests
                .start_deciding(&ids)
                .await?
                .into_iter()
                .collect();
            let pending: Vec<PendingRequest> = batch
                .iter()
                .filter(|r| undecided.contains(&r.request_id))
                .map(|r| PendingRequest {
                    request_id: r.request_id,
                    user_id: r.user_id.clone(),
                    seat_ids: r.seat_ids.clone(),
                    expires_at: r.expires_at,
                })
                .collect();
            if attempt == 0 {
                report.duplicates = batch.len() - pending.len();
            }
            if resend == Resend::Duplicates {
                self.resend_stored(batch.iter().filter(|r| {
                    claimed.contains(&r.request_id) && !undecided.contains(&r.request_id)
                }))
                .await?;
            }
            claimed.clone_from(&undecided);
            if pending.is_empty() {
                return Ok(report);
            }
            let now = self.ports.clock.now();
            let (outcome, snapshot_seats) = match &cancelled {
                Some(message) => (BatchOutcome::refuse_all(&pending, message), HashMap::new()),
                None => {
                    let snapshot = self.ports.holds.load_show_state(show, now).await?;
                    let snapshot_seats: HashMap<HoldId, Vec<SeatId>> = match &self.ports.mirror {
                        Some(_) => snapshot
                            .holds
                            .iter()
                            .map(|h| (h.hold_id, h.seat_ids.clone()))
                            .collect(),
                        None => HashMap::new(),
                    };
                    let mut engine = DecisionEngine::new(layout.clone(), snapshot, self.hold_ttl);
                    (engine.decide_batch(pending, now), snapshot_seats)
                }
            };
            match self.ports.holds.commit_batch(show, &outcome, now).await {
                Ok(written) => {
                    // Mirror before notifying, so a client that reloads the seat map the moment
                    // it hears its result sees its seats taken.
                    if let Some(mirror) = &self.ports.mirror {
                        mirror_batch(mirror.as_ref(), show, &snapshot_seats, &outcome).await;
                    }
                    let owners: std::collections::HashMap<_, _> = batch
                        .iter()
                        .map(|r| (r.request_id, (&r.user_id, &r.seat_ids)))
                        .collect();
                    // A request another worker decided between our claim and our commit kept
                    // that worker's outcome: only what this commit wrote is ours to announce.
                    let written: HashSet<_> = written.into_iter().collect();
                    let results: Vec<(UserId, BookingResult)> = outcome
                        .decisions
                        .iter()
                        .filter(|d| written.contains(&d.request_id()))
                        .map(|d| {
                            let (user, seats) = owners[&d.request_id()];
                            ((*user).clone(), booking_result(d, seats))
                        })
                        .collect();
                    report.decided = results.len();
                    report.granted = results
                        .iter()
                        .filter(|(_, r)| r.status == RequestStatus::Success)
                        .count();
                    self.ports.notifier.booking_results(&results).await;
                    if written.len() < outcome.decisions.len() && resend == Resend::Duplicates {
                        tracing::info!(
                            skipped = outcome.decisions.len() - written.len(),
                            "requests decided concurrently elsewhere; re-sending their outcomes"
                        );
                        self.resend_stored(batch.iter().filter(|r| {
                            !written.contains(&r.request_id) && undecided.contains(&r.request_id)
                        }))
                        .await?;
                    }
                    if !outcome.seat_changes.is_empty() {
                        self.ports
                            .notifier
                            .seats_changed(show, &outcome.seat_changes)
                            .await;
                    }
                    crate::metrics::batch_decided(&report, started.elapsed());
                    return Ok(report);
                }
                Err(CommitError::SeatConflict) => {
                    report.conflicts += 1;
                    tracing::warn!(
                        attempt,
                        "seat claimed concurrently by another worker; deciding the batch again"
                    );
                }
                Err(CommitError::Store(e)) => return Err(e.into()),
            }
        }
        Err(ProcessError::ConflictsPersisted(MAX_CONFLICT_RETRIES + 1))
    }

    /// Sets a request that could not be decided after `attempts` tries aside as a dead letter,
    /// with why, so that its show goes on; `false` if it was decided meanwhile.
    pub async fn dead_letter(
        &self,
        request: &BookingRequest,
        reason: &str,
        attempts: u32,
    ) -> Result<bool, StoreError> {
        let set_aside = self
            .ports
            .requests
            .dead_letter_request(request.request_id, reason, attempts, self.ports.clock.now())
            .await?;
        if set_aside {
            tracing::error!(
                request_id = %request.request_id, show_id = %request.show_id, attempts, %reason,
                "request cannot be decided; set aside as a dead letter"
            );
        }
        Ok(set_aside)
    }

    /// Pushes the stored outcome of requests decided earlier or elsewhere: a duplicate delivery
    /// changes nothing, but its owner may have missed the first push.
    async fn resend_stored(
        &self,
        requests: impl Iterator<Item = &BookingRequest>,
    ) -> Result<(), ProcessError> {
        let mut results = Vec::new();
        for r in requests {
            if let Some(stored) = self.ports.requests.get_request(r.request_id).await?
                && let Some(outcome) = &stored.outcome
            {
                results.push((stored.user_id.clone(), stored_result(&stored, outcome)));
            }
        }
        if !results.is_empty() {
            self.ports.notifier.booking_results(&results).await;
        }
        Ok(())
    }
}

/// Mirrors a committed batch from the same resolution of it the store committed
/// ([`CommitPlan`]): each seat's final claim becomes a lock, unless its hold was released again
/// within the batch, and the seats of the stored holds the batch released are freed.
async fn mirror_batch(
    mirror: &dyn SeatMirror,
    show: ShowId,
    stored_seats: &HashMap<HoldId, Vec<SeatId>>,
    outcome: &BatchOutcome,
) {
    // The store resolved this very batch before committing it, so it resolves here too.
    let Ok(plan) = CommitPlan::new(outcome) else {
        return;
    };
    let live: HashMap<HoldId, &UserId> = plan
        .new_holds
        .iter()
        .filter(|h| !h.released)
        .map(|h| (h.hold_id, &h.user_id))
        .collect();
    let locks: Vec<SeatLock> = plan
        .claims
        .iter()
        .filter_map(|claim| {
            live.get(&claim.hold_id).map(|user| SeatLock {
                seat_id: claim.seat_id,
                hold_id: claim.hold_id,
                user_id: (*user).clone(),
                expires_at: claim.expires_at,
                status: SeatStatus::Held,
            })
        })
        .collect();
    let freed: Vec<(SeatId, HoldId)> = plan
        .releases
        .iter()
        .flat_map(|release| {
            stored_seats
                .get(&release.hold_id)
                .into_iter()
                .flatten()
                .map(|&seat| (seat, release.hold_id))
        })
        .collect();
    update_mirror(mirror, show, &locks, &freed).await;
}

/// The push message for a fresh decision: what its outcome records, to the requester.
fn booking_result(decision: &Decision, requested: &[SeatId]) -> BookingResult {
    result_of(decision.request_id(), requested, &decision.outcome())
}

/// The push messages for requests decided earlier, each to its owner (those still undecided have
/// none).
pub fn stored_results(requests: &[BookingRequest]) -> Vec<(UserId, BookingResult)> {
    requests
        .iter()
        .filter_map(|r| {
            r.outcome
                .as_ref()
                .map(|o| (r.user_id.clone(), stored_result(r, o)))
        })
        .collect()
}

/// The push message for a request decided earlier.
pub fn stored_result(request: &BookingRequest, outcome: &RequestOutcome) -> BookingResult {
    result_of(request.request_id, &request.seat_ids, outcome)
}

fn result_of(request_id: RequestId, seats: &[SeatId], outcome: &RequestOutcome) -> BookingResult {
    BookingResult {
        request_id,
        status: outcome.status(),
        hold_id: match outcome {
            RequestOutcome::Granted { hold_id, .. } => Some(*hold_id),
            _ => None,
        },
        seat_ids: seats.to_vec(),
        message: outcome.message(),
    }
}
