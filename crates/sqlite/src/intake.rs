//! `insert_request`: making an accepted request durable before the client hears 202, in groups.
//!
//! Concurrent callers share one transaction and one fsync through the shared group-commit
//! writer (`booking_sql::group_commit`, which explains why); this module is the SQLite part: how
//! one group is written.
//!
//! The cap on a user's open requests ([`NewBookingRequest::max_open`]) is counted inside the
//! same statements, so a POST costs no query of its own for it. One writer writes every group,
//! one after the other, and a request is counted against the undecided ones stored before it
//! and the earlier ones of its own group: the cap is exact within the process.

use crate::codec::{self, request_columns};
use booking_core::ports::{Inserted, StoreError};
use booking_core::{BookingRequest, NewBookingRequest};
use sqlx::SqliteConnection;
use sqlx::sqlite::SqlitePool;
use std::collections::HashMap;

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
    let mut results: Vec<Option<Result<Inserted, StoreError>>> =
        group.iter().map(|_| None).collect();
    // The common case in one statement: requests without an Idempotency-Key, for known shows,
    // with fresh ids. A statement per request would cost a hand-over to sqlx's connection
    // thread each, which under load was a large part of a request's cost.
    let plain: Vec<usize> = (0..group.len())
        .filter(|&i| group[i].idempotency_key.is_none())
        .collect();
    if plain.len() > 1 {
        match insert_many(&mut tx, group, &plain).await {
            Ok(inserted) => {
                for (i, result) in inserted {
                    results[i] = Some(Ok(result));
                }
            }
            // One of them broke a constraint (an unknown show): the statement wrote nothing,
            // and each is tried on its own below, so only that one fails.
            Err(e @ sqlx::Error::Database(_)) if codec::is_constraint_violation(&e) => {}
            Err(e) => {
                let _ = tx.rollback().await;
                return Err(codec::store_error(e));
            }
        }
    }
    for (i, request) in group.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        match insert_one(&mut tx, request).await {
            Ok(result) => results[i] = Some(result),
            // An I/O error or a full disk may have rolled the whole transaction back in SQLite,
            // and later statements would then autocommit one by one: stop here.
            Err(e) => {
                let _ = tx.rollback().await;
                return Err(codec::store_error(e));
            }
        }
    }
    tx.commit().await.map_err(codec::store_error)?;
    Ok(results
        .into_iter()
        .map(|r| r.expect("every request of the group has its result"))
        .collect())
}

/// Inserts the requests `group[i]` for `i` in `which` (none with an idempotency key) in one
/// statement, in that order, and returns those it inserted; one whose id exists already (an
/// intake retrying after a lost answer) or that would pass its user's cap is left out:
/// [`insert_one`] answers it.
async fn insert_many(
    conn: &mut SqliteConnection,
    group: &[NewBookingRequest],
    which: &[usize],
) -> Result<Vec<(usize, Inserted)>, sqlx::Error> {
    let encode = |e: serde_json::Error| sqlx::Error::Encode(Box::new(e));
    // How many earlier rows of this statement each user already has for the show: the
    // statement's own count of stored requests cannot see them.
    let mut earlier_in_group: HashMap<(&str, _), u32> = HashMap::new();
    let rows = which
        .iter()
        .map(|&i| {
            let new = &group[i];
            let earlier = earlier_in_group
                .entry((new.user_id.as_str(), new.show_id))
                .or_default();
            let row = serde_json::json!([
                new.request_id.to_string(),
                new.user_id.as_str(),
                new.show_id.to_string(),
                // As the text the column keeps.
                serde_json::to_string(&new.seat_ids).map_err(encode)?,
                codec::millis(new.created_at),
                codec::millis(new.expires_at),
                new.max_open,
                *earlier,
            ]);
            *earlier += 1;
            Ok(row)
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let json = serde_json::to_string(&rows).map_err(encode)?;
    // Rows are inserted in the array's order, so their `seq` follows it. A row over its user's
    // cap is left out here and answered by `insert_one`, which counts exactly.
    //
    // What was inserted is read back afterwards as one row (the rows past the largest `seq`
    // before: this transaction is the only writer) rather than by `RETURNING`, which would hand
    // each row over from sqlx's connection thread on its own.
    let before: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM booking_requests")
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO booking_requests \
             (request_id, user_id, show_id, seat_ids, status, idempotency_key, created_at, \
              expires_at) \
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, 'QUEUED', NULL, \
                value ->> 4, value ->> 5 \
         FROM jsonb_each(?1) \
         WHERE value ->> 6 IS NULL \
            OR (SELECT COUNT(*) FROM booking_requests b \
                WHERE b.user_id = value ->> 1 AND b.show_id = value ->> 2 \
                  AND b.status IN ('QUEUED', 'PROCESSING') AND b.dead_lettered_at IS NULL) \
               + (value ->> 7) < (value ->> 6) \
         ON CONFLICT (request_id) DO NOTHING",
    )
    .bind(json)
    .execute(&mut *conn)
    .await?;
    let inserted: String = sqlx::query_scalar(
        "SELECT json_group_array(json_array(request_id, seq)) FROM booking_requests \
         WHERE seq > ?1",
    )
    .bind(before)
    .fetch_one(&mut *conn)
    .await?;
    let returned: Vec<(String, i64)> =
        serde_json::from_str(&inserted).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let seqs: HashMap<String, i64> = returned.into_iter().collect();
    Ok(which
        .iter()
        .filter_map(|&i| {
            let new = &group[i];
            let seq = *seqs.get(&new.request_id.to_string())?;
            let mut stored = new.clone();
            stored.created_at = codec::truncate_millis(stored.created_at);
            stored.expires_at = codec::truncate_millis(stored.expires_at);
            Some((i, Inserted::New(BookingRequest::from_new(stored, seq))))
        })
        .collect())
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

    if let Some(max) = new.max_open {
        // The same request id again is found below, whatever the cap: it is no new request.
        let known: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM booking_requests WHERE request_id = ?1")
                .bind(new.request_id.to_string())
                .fetch_optional(&mut *conn)
                .await?;
        if known.is_none() {
            let open: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM booking_requests \
                 WHERE user_id = ?1 AND show_id = ?2 AND status IN ('QUEUED', 'PROCESSING') \
                   AND dead_lettered_at IS NULL",
            )
            .bind(new.user_id.as_str())
            .bind(new.show_id.to_string())
            .fetch_one(&mut *conn)
            .await?;
            if open >= i64::from(max) {
                return Ok(Ok(Inserted::TooManyOpen { max }));
            }
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
