//! Group commit for `insert_request`.
//!
//! A request must be on disk before the client is answered 202, and on disk means an fsync per
//! commit (a few milliseconds on most disks). One transaction per request would cap intake at a
//! few hundred per second, exactly when a premiere opens. Instead every caller sends its request
//! to one task over a channel; the task takes everything that is waiting (up to
//! [`MAX_GROUP`]), inserts it all in one transaction, commits once, and only then answers each
//! caller. Under load a group fills up while the previous one is being fsynced, so the cost of a
//! commit is shared by hundreds of requests; with no load a group is a single request and adds
//! no delay.
//!
//! If a caller gives up (its future is dropped) after handing over its request, the request is
//! still written: the same as a crash between commit and response, which idempotency keys and
//! polling already cover.

use crate::codec::{self, request_columns};
use booking_core::ports::{Inserted, StoreError};
use booking_core::{BookingRequest, NewBookingRequest};
use sqlx::SqliteConnection;
use sqlx::sqlite::SqlitePool;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Most requests written by one transaction: bounds the time one commit holds the writer.
const MAX_GROUP: usize = 512;
/// Requests that may wait for the writer before callers are slowed down (back-pressure).
const QUEUE_CAPACITY: usize = 8 * MAX_GROUP;

/// Counters of the writer task, for benchmarks and operations: `requests / groups` is the
/// average number of requests that shared one commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntakeStats {
    /// Transactions committed by the intake writer.
    pub groups: u64,
    /// Requests written (new or found to repeat an earlier one) by those transactions.
    pub requests: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    groups: AtomicU64,
    requests: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> IntakeStats {
        IntakeStats {
            groups: self.groups.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }
}

pub(crate) struct InsertJob {
    request: NewBookingRequest,
    reply: oneshot::Sender<Result<Inserted, StoreError>>,
}

/// Starts the writer task. It ends when every sender is dropped (the last store clone).
pub(crate) fn spawn(pool: SqlitePool, counters: Arc<Counters>) -> mpsc::Sender<InsertJob> {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    tokio::spawn(run(pool, rx, counters));
    tx
}

/// Hands `request` to the writer task and waits for its commit.
pub(crate) async fn submit(
    intake: &mpsc::Sender<InsertJob>,
    request: NewBookingRequest,
) -> Result<Inserted, StoreError> {
    let (reply, answer) = oneshot::channel();
    intake
        .send(InsertJob { request, reply })
        .await
        .map_err(|_| StoreError::unavailable("the request writer has stopped"))?;
    answer
        .await
        .map_err(|_| StoreError::unavailable("the request writer stopped mid-commit"))?
}

async fn run(pool: SqlitePool, mut jobs: mpsc::Receiver<InsertJob>, counters: Arc<Counters>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while jobs.recv_many(&mut group, MAX_GROUP).await > 0 {
        let size = group.len();
        match write_group(&pool, &group).await {
            Ok(results) => {
                tracing::trace!(size, "request group committed");
                counters.groups.fetch_add(1, Ordering::Relaxed);
                counters.requests.fetch_add(size as u64, Ordering::Relaxed);
                for (job, result) in group.drain(..).zip(results) {
                    // A caller that went away no longer needs its answer.
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                tracing::warn!(size, error = %e, "request group not committed");
                for job in group.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Writes a group in one transaction. The outer error means nothing was committed; an inner
/// error concerns one request only (a request for an unknown show) and left no row behind.
async fn write_group(
    pool: &SqlitePool,
    group: &[InsertJob],
) -> Result<Vec<Result<Inserted, StoreError>>, StoreError> {
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(codec::store_error)?;
    let mut results = Vec::with_capacity(group.len());
    for job in group {
        match insert_one(&mut tx, &job.request).await {
            Ok(result) => results.push(result),
            // An I/O error or a full disk may have rolled the whole transaction back in SQLite,
            // and later statements would then autocommit one by one: stop here.
            Err(e) => {
                let _ = tx.rollback().await;
                return Err(codec::store_error(e));
            }
        }
    }
    tx.commit().await.map_err(codec::store_error)?;
    Ok(results)
}

/// Inserts one request, or finds the earlier one it repeats. The outer error is fatal to the
/// whole group; the inner one is this request's own problem (a constraint failure undoes only
/// its own statement, and the transaction goes on).
async fn insert_one(
    conn: &mut SqliteConnection,
    new: &NewBookingRequest,
) -> Result<Result<Inserted, StoreError>, sqlx::Error> {
    let key = new.idempotency_key.as_ref().map(|k| k.as_str().to_owned());
    if let Some(key) = &key {
        let earlier = sqlx::query(concat!(
            "SELECT ",
            request_columns!(),
            " FROM booking_requests WHERE user_id = ?1 AND idempotency_key = ?2"
        ))
        .bind(new.user_id.as_str())
        .bind(key)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = earlier {
            return Ok(codec::decode_request(&row).map(Inserted::Existing));
        }
    }

    let seats = match codec::to_json(&new.seat_ids) {
        Ok(seats) => seats,
        Err(e) => return Ok(Err(e)),
    };
    let inserted = sqlx::query_scalar::<_, i64>(
        "INSERT INTO booking_requests \
             (request_id, user_id, show_id, seat_ids, status, idempotency_key, created_at, \
              expires_at) \
         VALUES (?1, ?2, ?3, ?4, 'QUEUED', ?5, ?6, ?7) \
         ON CONFLICT (request_id) DO NOTHING \
         RETURNING seq",
    )
    .bind(new.request_id.to_string())
    .bind(new.user_id.as_str())
    .bind(new.show_id.to_string())
    .bind(seats)
    .bind(key)
    .bind(codec::millis(new.created_at))
    .bind(codec::millis(new.expires_at))
    .fetch_optional(&mut *conn)
    .await;

    match inserted {
        Ok(Some(seq)) => {
            let mut stored = new.clone();
            stored.created_at = codec::truncate_millis(stored.created_at);
            stored.expires_at = codec::truncate_millis(stored.expires_at);
            Ok(Ok(Inserted::New(BookingRequest::from_new(stored, seq))))
        }
        // The same request id again: an intake retrying after a lost answer. It is the same
        // request, so it is answered like an idempotent repeat.
        Ok(None) => {
            let row = sqlx::query(concat!(
                "SELECT ",
                request_columns!(),
                " FROM booking_requests WHERE request_id = ?1"
            ))
            .bind(new.request_id.to_string())
            .fetch_one(&mut *conn)
            .await?;
            Ok(codec::decode_request(&row).and_then(|earlier| {
                if earlier.user_id == new.user_id {
                    Ok(Inserted::Existing(earlier))
                } else {
                    Err(StoreError::corrupt(format!(
                        "request id {} is already used by another user",
                        new.request_id
                    )))
                }
            }))
        }
        Err(e) if codec::is_foreign_key_violation(&e) => Ok(Err(StoreError::corrupt(format!(
            "show {} does not exist",
            new.show_id
        )))),
        Err(e @ sqlx::Error::Database(_)) if codec::is_constraint_violation(&e) => {
            Ok(Err(codec::store_error(e)))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use crate::{SqliteOptions, SqliteStore};
    use booking_core::ports::{Inserted, RequestStore};
    use booking_testkit::support::{create_show, fresh_user, new_request, now_ms};

    /// Requests that arrive while the writer is busy share its next commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("g.db"), SqliteOptions::default())
            .await
            .unwrap();
        let show = create_show(&store, 1, 4).await;
        let before = store.intake_stats();
        let tasks: Vec<_> = (0..300)
            .map(|_| {
                let store = store.clone();
                let new = new_request(&show, &fresh_user("u"), &["A1"], now_ms());
                tokio::spawn(async move { store.insert_request(new).await })
            })
            .collect();
        for task in tasks {
            assert!(matches!(task.await.unwrap().unwrap(), Inserted::New(_)));
        }
        let after = store.intake_stats();
        assert_eq!(after.requests - before.requests, 300);
        let groups = after.groups - before.groups;
        assert!(
            groups < 100,
            "300 concurrent requests took {groups} commits"
        );
    }
}
