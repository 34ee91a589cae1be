//! The per-show decision engine.
//!
//! Given a show's seat state and an ordered batch of hold requests, decide each request in order:
//! all of its seats or none of them, earlier requests win, a user's new hold releases their
//! previous live hold on the show, and a request that cannot be granted is told which seats were
//! taken and offered the nearest alternatives. Expiry is decided by comparing the `now` it is
//! given with each hold's `expires_at`: no timer, no sweeper needed for correctness.
//!
//! It exists so that the one contested decision of the system, *who gets which seat*, is made by
//! a single piece of pure, deterministic code: a worker loads a show's [`ShowSnapshot`] from its
//! store once per batch, runs the batch through a fresh [`DecisionEngine`], and hands the
//! [`BatchOutcome`] back to the store to commit. The stores persist decisions; they do not make
//! them. Being free of I/O, the engine can be tested exhaustively and measured on its own.
//!
//! The engine keeps one `u32` slot per seat (dense layout index), so a single-seat decision is a
//! few array reads and writes; the expensive part of the system is persistence, not this.
//! Deciding allocates nothing beyond what the returned decision carries (a rejection even reuses
//! the request's seat vector for its `unavailable` list), and alternatives are found on per-row
//! bit masks of free seats, visiting only rows that have one, nearest first.
//! `benches/engine.rs` measures it; `tests/engine_properties/` checks it against a plain
//! reference model.
//!
//! # Layout
//!
//! This file holds the engine's vocabulary: the types that go in and come out
//! ([`PendingRequest`], [`ShowSnapshot`], [`Decision`], [`BatchOutcome`], ...) and
//! [`rejection_message`]. [`DecisionEngine`] is defined in `seats.rs` and re-exported here; each
//! submodule adds its own `impl DecisionEngine` block, and the state they share is visible to the
//! engine's submodules only (`pub(super)`), never outside this module.
//!
//! - `seats.rs`: the seat state (slots, holds, row bit masks), its construction from a snapshot,
//!   the bookkeeping that changes it, expiry, and the read accessors.
//! - `hasher.rs`: the cheap, per-engine seeded hasher of the user-id table.
//! - `decide.rs`: validating and deciding one request, and deciding a batch.
//! - `alternatives.rs`: the search for the nearest free seats to offer a rejected request.
//! - `tests.rs`: unit tests of single rules and regressions.

mod alternatives;
mod decide;
mod hasher;
mod seats;
#[cfg(test)]
mod tests;

pub use seats::DecisionEngine;

use crate::ids::{HoldId, RequestId, SeatId, UserId};
use crate::model::{REQUEST_EXPIRED_MESSAGE, RequestOutcome, SeatStatus};
use chrono::{DateTime, Utc};

/// A request waiting to be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRequest {
    pub request_id: RequestId,
    pub user_id: UserId,
    pub seat_ids: Vec<SeatId>,
    /// Deadline: a request still undecided at this instant ends EXPIRED.
    pub expires_at: DateTime<Utc>,
}

/// A hold that was live (HELD) when the snapshot was taken. It may have expired by time since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotHold {
    pub hold_id: HoldId,
    pub user_id: UserId,
    pub seat_ids: Vec<SeatId>,
    pub expires_at: DateTime<Utc>,
}

/// The stored seat state of one show, as loaded once per batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShowSnapshot {
    pub holds: Vec<SnapshotHold>,
    /// Seats sold or reserved by orders; never available.
    pub booked: Vec<SeatId>,
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Granted {
        request_id: RequestId,
        user_id: UserId,
        hold_id: HoldId,
        seat_ids: Vec<SeatId>,
        expires_at: DateTime<Utc>,
        /// The user's previous live hold on this show, released by this grant.
        released: Option<HoldId>,
    },
    Rejected {
        request_id: RequestId,
        /// The requested seats that were not available.
        unavailable: Vec<SeatId>,
        /// Same number of free seats, adjacent in one row where possible, nearest those asked for;
        /// empty when the show has fewer free seats than were asked for.
        alternatives: Vec<SeatId>,
    },
    /// Not decided before its deadline.
    Expired { request_id: RequestId },
    /// A request that cannot be granted whatever the seats: one that should never have been
    /// accepted (unknown or blocked seat, duplicates, no seats; validation at intake prevents
    /// these, the engine refuses them anyway because a queue message can come from anywhere), or
    /// one of a show that no longer sells (cancelled, [`BatchOutcome::refuse_all`]).
    Invalid {
        request_id: RequestId,
        reason: String,
    },
}

impl Decision {
    pub fn request_id(&self) -> RequestId {
        match self {
            Self::Granted { request_id, .. }
            | Self::Rejected { request_id, .. }
            | Self::Expired { request_id }
            | Self::Invalid { request_id, .. } => *request_id,
        }
    }

    /// What this decision records for its request, and what the requester is told: the one
    /// mapping every store and every push uses. An invalid request ends FAILED with the reason
    /// as its message and nothing to offer.
    pub fn outcome(&self) -> RequestOutcome {
        match self {
            Self::Granted {
                hold_id,
                expires_at,
                ..
            } => RequestOutcome::Granted {
                hold_id: *hold_id,
                hold_expires_at: *expires_at,
            },
            Self::Rejected {
                unavailable,
                alternatives,
                ..
            } => RequestOutcome::Rejected {
                unavailable: unavailable.clone(),
                alternatives: alternatives.clone(),
                message: rejection_message(unavailable),
            },
            Self::Expired { .. } => RequestOutcome::Expired {
                message: REQUEST_EXPIRED_MESSAGE.to_owned(),
            },
            Self::Invalid { reason, .. } => RequestOutcome::Rejected {
                unavailable: Vec::new(),
                alternatives: Vec::new(),
                message: reason.clone(),
            },
        }
    }
}

/// A seat whose status differs after the batch from before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeatChange {
    pub seat_id: SeatId,
    pub status: SeatStatus,
}

/// The decisions of one batch, in request order, and the seats they changed (coalesced: each
/// changed seat once, with its final status).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub decisions: Vec<Decision>,
    pub seat_changes: Vec<SeatChange>,
}

impl BatchOutcome {
    /// Every request refused with `reason`, no seat touched: the batch of a show that no longer
    /// sells (cancelled). Committed like any batch, so a request decided elsewhere meanwhile
    /// keeps its outcome.
    pub fn refuse_all(requests: &[PendingRequest], reason: &str) -> Self {
        Self {
            decisions: requests
                .iter()
                .map(|r| Decision::Invalid {
                    request_id: r.request_id,
                    reason: reason.to_owned(),
                })
                .collect(),
            seat_changes: Vec::new(),
        }
    }
}

/// The message a rejected request carries.
pub fn rejection_message(unavailable: &[SeatId]) -> String {
    let list: Vec<String> = unavailable.iter().map(ToString::to_string).collect();
    if list.len() == 1 {
        format!("Seat {} is no longer available", list[0])
    } else {
        format!("Seats {} are no longer available", list.join(", "))
    }
}
