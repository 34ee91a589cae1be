//! The plumbing both SQL stores (embedded SQLite, PostgreSQL) share, so that it is written once:
//!
//! - [`group_commit`]: making requests durable in groups, one commit for everything waiting;
//! - [`finish_commit`]: ending a decided batch's transaction the same way everywhere;
//! - [`errors`]: reading sqlx errors alike (data problems, constraint violations).
//!
//! What a batch commit writes is decided in the core (`booking_core::commit::CommitPlan`), with
//! no I/O; the adapters keep only the SQL that executes it in their dialect.

// Unit tests are built with every dev-dependency of the package; each uses only some.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod errors;
pub mod group_commit;

pub use group_commit::{GroupAnswers, GroupCommit, IntakeCounters, IntakeStats};

use booking_core::SeatStatus;
use booking_core::ports::StoreError;

/// The seat-claim kinds both schemas store (`seat_claims.kind`): a live hold's claim, an order's
/// while it waits for payment, and a sold seat's.
pub mod claim_kind {
    pub const HOLD: &str = "HOLD";
    pub const ORDER: &str = "ORDER";
    pub const SOLD: &str = "SOLD";
}

/// What the seat map shows for a live claim of `kind`: a hold's or a waiting order's seat is
/// HELD (it may come free again), a sold one BOOKED.
pub fn claim_status(kind: &str) -> Result<SeatStatus, StoreError> {
    match kind {
        claim_kind::HOLD | claim_kind::ORDER => Ok(SeatStatus::Held),
        claim_kind::SOLD => Ok(SeatStatus::Booked),
        other => Err(StoreError::corrupt(format!(
            "seat_claims.kind: unknown kind {other:?}"
        ))),
    }
}

use booking_core::RequestId;
use booking_core::ports::CommitError;
use sqlx::{Database, Transaction};

/// Ends a batch commit's transaction: commits when `written` succeeded, otherwise rolls back and
/// hands the error on. A refused batch (a seat or request decided concurrently) is expected
/// under redelivery and is logged as such, not as a failure. `commit_error` maps a failed
/// `COMMIT` the adapter's way (a serialization failure is a conflict in PostgreSQL).
pub async fn finish_commit<DB: Database, T>(
    tx: Transaction<'_, DB>,
    written: Result<T, CommitError>,
    commit_error: impl FnOnce(sqlx::Error) -> CommitError,
) -> Result<T, CommitError> {
    match written {
        Ok(written) => tx.commit().await.map(|()| written).map_err(commit_error),
        Err(e) => {
            if let Err(rollback) = tx.rollback().await {
                tracing::warn!(error = %rollback, "rollback of a refused batch failed");
            }
            if matches!(e, CommitError::SeatConflict) {
                tracing::info!("batch refused: a seat or request was decided concurrently");
            }
            Err(e)
        }
    }
}

/// The ids of `requests` that a statement updated, in the caller's order and each once: a
/// message delivered twice within one batch must still be decided only once (`begin_processing`
/// returns its undecided requests this way in every store).
pub fn updated_in_order<K: Eq + std::hash::Hash>(
    requests: &[RequestId],
    key: impl Fn(&RequestId) -> K,
    updated: &std::collections::HashSet<K>,
) -> Vec<RequestId> {
    let mut seen = std::collections::HashSet::with_capacity(updated.len());
    requests
        .iter()
        .filter(|id| updated.contains(&key(id)) && seen.insert(**id))
        .copied()
        .collect()
}
