//! `insert_request`: making an accepted request durable before the client hears 202, in groups.
//!
//! Concurrent callers share one transaction and one fsync through the shared group-commit
//! writer (`booking_sql::group_commit`, which explains why); this module is the SQLite part: how
//! one group is written.

use crate::codec::{self, request_columns};
use booking_core::ports::{Inserted, StoreError};
use booking_core::{BookingRequest, NewBookingRequest};
use sqlx::SqliteConnection;
use sqlx::sqlite::SqlitePool;

/// Most requests written by one transaction: bounds the time one commit holds the writer.
pub(crate) const MAX_GROUP: usize = 512;

/// Writes a group in one transaction. The outer error means nothing was committed; an inner
/// error concerns one request only (a request for an unknown show) and left no row behind.
pub(crate) async fn write_group(
    pool: &SqlitePool,
    group: &[NewBookingRequest],
) -> Result<Vec<Result<Inserted, StoreError>>, StoreError> {
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(codec::store_error)?;
    let mut results = Vec::with_capacity(group.len());
    for request in group {
        match insert_one(&mut tx, request).await {
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
    use booking_testkit::support::{create_show, fresh_user, new_request, now};

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
                let new = new_request(&show, &fresh_user("u"), &["A1"], now());
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
