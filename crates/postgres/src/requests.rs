//! `RequestStore`: the durable record of every accepted hold request.
//!
//! Lists of ids are bound as one array parameter (`= ANY($1)`): the statement text stays fixed
//! (prepared once per connection, cached) and no list is ever too long for the protocol's limit
//! of 65,535 bound parameters.

use crate::codec::{self, EXPIRED_MESSAGE, RequestRow};
use crate::{PgStore, intake};
use async_trait::async_trait;
use booking_core::ports::{Inserted, RequestStore, StoreError};
use booking_core::{BookingRequest, NewBookingRequest, RequestId};
use chrono::{DateTime, Utc};
use std::collections::HashSet;
use uuid::Uuid;

#[async_trait]
impl RequestStore for PgStore {
    #[tracing::instrument(
        skip_all,
        fields(request_id = %request.request_id, show_id = %request.show_id)
    )]
    async fn insert_request(&self, request: NewBookingRequest) -> Result<Inserted, StoreError> {
        match &self.inner.intake {
            Some(writer) => writer.submit(request).await,
            None => intake::insert_one(self.pool(), &self.inner.intake_counters, request).await,
        }
    }

    #[tracing::instrument(skip_all, fields(request_id = %request))]
    async fn get_request(&self, request: RequestId) -> Result<Option<BookingRequest>, StoreError> {
        let row = sqlx::query_as!(
            RequestRow,
            "SELECT seq, request_id, user_id, show_id, seat_ids, status, idempotency_key, \
                    created_at, expires_at, processed_at, hold_id, hold_expires_at, \
                    result_message, unavailable, alternatives \
             FROM booking_requests WHERE request_id = $1",
            request.as_uuid()
        )
        .fetch_optional(self.pool())
        .await
        .map_err(codec::store_error)?;
        row.map(BookingRequest::try_from).transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn pending_requests(&self) -> Result<Vec<BookingRequest>, StoreError> {
        let rows = sqlx::query_as!(
            RequestRow,
            "SELECT seq, request_id, user_id, show_id, seat_ids, status, idempotency_key, \
                    created_at, expires_at, processed_at, hold_id, hold_expires_at, \
                    result_message, unavailable, alternatives \
             FROM booking_requests WHERE status IN ('QUEUED', 'PROCESSING') ORDER BY seq"
        )
        .fetch_all(self.pool())
        .await
        .map_err(codec::store_error)?;
        codec::decode_all(rows)
    }

    #[tracing::instrument(skip_all, fields(requests = requests.len()))]
    async fn begin_processing(&self, requests: &[RequestId]) -> Result<Vec<RequestId>, StoreError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        // Sorted, and joined in that order (one primary-key probe per id, as in `commit_batch`),
        // so that every writer locks request rows in one order: this statement and a concurrent
        // `commit_batch` of an overlapping batch wait for each other, never deadlock. (With
        // `= ANY($1)` the rows are locked in heap order, and the two did deadlock.)
        let mut ids: Vec<Uuid> = requests.iter().map(RequestId::as_uuid).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut attempt = 0;
        let updated = loop {
            match mark_processing(self.pool(), &ids).await {
                // Should a plan change still let a deadlock through: the statement is idempotent
                // and was rolled back, so run it again.
                Err(e) if codec::is_concurrency_failure(&e) && attempt < 3 => attempt += 1,
                result => break result.map_err(codec::store_error)?,
            }
        };
        let updated: HashSet<Uuid> = updated.into_iter().collect();
        Ok(booking_sql::updated_in_order(
            requests,
            RequestId::as_uuid,
            &updated,
        ))
    }

    #[tracing::instrument(skip_all, fields(now = %now))]
    async fn expire_overdue_requests(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<BookingRequest>, StoreError> {
        let rows = sqlx::query_as!(
            RequestRow,
            "UPDATE booking_requests \
             SET status = 'EXPIRED', processed_at = $1, result_message = $2 \
             WHERE status = 'QUEUED' AND expires_at <= $1 \
             RETURNING seq, request_id, user_id, show_id, seat_ids, status, idempotency_key, \
                       created_at, expires_at, processed_at, hold_id, hold_expires_at, \
                       result_message, unavailable, alternatives",
            now,
            EXPIRED_MESSAGE
        )
        .fetch_all(self.pool())
        .await
        .map_err(codec::store_error)?;
        let mut expired: Vec<BookingRequest> = codec::decode_all(rows)?;
        // RETURNING gives no order; callers get arrival order, like everywhere else.
        expired.sort_by_key(|r| r.seq);
        Ok(expired)
    }
}

/// Moves the (sorted, distinct) `ids` that are still undecided to PROCESSING; returns those.
async fn mark_processing(pool: &sqlx::PgPool, ids: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    // The status guard is `NOT IN` the final states (equivalent under the CHECK constraint)
    // rather than `IN` the pending ones, and sequential scans are off for the transaction, so
    // that the planner cannot walk the (status, seq) index or the table over every pending
    // request: the primary key is the only way in (see `holds.rs`, write_batch).
    // PROCESSING → PROCESSING is rewritten on purpose: the row lock makes this wait for a
    // concurrent commit of the same request and then see its outcome (a decided request drops
    // out), instead of reading a snapshot from before that commit.
    //
    // The commit does not wait for the WAL flush (`synchronous_commit = off` for this transaction
    // only): losing a PROCESSING mark in a server crash loses nothing, since PROCESSING and
    // QUEUED are both "undecided" and the message is delivered again; and the decision that
    // follows is committed synchronously, which flushes this (earlier) WAL too. It saves a flush
    // wait per batch on the worker's critical path.
    let mut tx = pool
        .begin_with("BEGIN; SET LOCAL synchronous_commit = off; SET LOCAL enable_seqscan = off")
        .await?;
    let updated = sqlx::query_scalar!(
        "UPDATE booking_requests r SET status = 'PROCESSING' \
         FROM UNNEST($1::uuid[]) AS d(request_id) \
         WHERE r.request_id = d.request_id \
           AND r.status NOT IN ('SUCCESS', 'FAILED', 'EXPIRED') \
         RETURNING r.request_id",
        ids
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(updated)
}
