//! `RequestStore`: the durable record of every accepted hold request.
//!
//! Lists of ids are bound as one array parameter (`= ANY($1)`): the statement text stays fixed
//! (prepared once per connection, cached) and no list is ever too long for the protocol's limit
//! of 65,535 bound parameters.

use crate::codec::{self, EXPIRED_MESSAGE, RequestRow};
use crate::{PgStore, intake};
use async_trait::async_trait;
use booking_core::ports::{
    DeadLetteredRequest, Inserted, Purged, RequestStore, ShowQueueCounts, StoreError,
};
use booking_core::{
    BookingRequest, IdempotencyKey, NewBookingRequest, PROCESSING_GRACE, RequestId, ShowId, UserId,
};
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
             FROM booking_requests \
             WHERE status IN ('QUEUED', 'PROCESSING') AND dead_lettered_at IS NULL \
             ORDER BY seq"
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

    #[tracing::instrument(skip_all, fields(request_id = %request, attempts))]
    async fn dead_letter_request(
        &self,
        request: RequestId,
        reason: &str,
        attempts: u32,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE booking_requests SET status = 'QUEUED', dead_lettered_at = $2, \
                 dead_letter_reason = $3, attempts = $4 \
             WHERE request_id = $1 AND status IN ('QUEUED', 'PROCESSING')",
            request.as_uuid(),
            at,
            reason,
            i32::try_from(attempts).unwrap_or(i32::MAX)
        )
        .execute(self.pool())
        .await
        .map_err(codec::store_error)?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(skip_all)]
    async fn dead_letters(
        &self,
        show: Option<ShowId>,
    ) -> Result<Vec<DeadLetteredRequest>, StoreError> {
        let rows = sqlx::query!(
            r#"SELECT seq, request_id, user_id, show_id, seat_ids, status, idempotency_key,
                      created_at, expires_at, processed_at, hold_id, hold_expires_at,
                      result_message, unavailable, alternatives,
                      dead_letter_reason AS "dead_letter_reason!", attempts AS "attempts!",
                      dead_lettered_at AS "dead_lettered_at!"
               FROM booking_requests
               WHERE dead_lettered_at IS NOT NULL AND status IN ('QUEUED', 'PROCESSING')
                 AND ($1::uuid IS NULL OR show_id = $1)
               ORDER BY seq"#,
            show.map(|s| s.as_uuid())
        )
        .fetch_all(self.pool())
        .await
        .map_err(codec::store_error)?;
        rows.into_iter()
            .map(|r| {
                let request = BookingRequest::try_from(RequestRow {
                    seq: r.seq,
                    request_id: r.request_id,
                    user_id: r.user_id,
                    show_id: r.show_id,
                    seat_ids: r.seat_ids,
                    status: r.status,
                    idempotency_key: r.idempotency_key,
                    created_at: r.created_at,
                    expires_at: r.expires_at,
                    processed_at: r.processed_at,
                    hold_id: r.hold_id,
                    hold_expires_at: r.hold_expires_at,
                    result_message: r.result_message,
                    unavailable: r.unavailable,
                    alternatives: r.alternatives,
                })?;
                Ok(DeadLetteredRequest {
                    request,
                    reason: r.dead_letter_reason,
                    attempts: u32::try_from(r.attempts)
                        .map_err(|_| codec::corrupt(format_args!("attempts: {}", r.attempts)))?,
                    dead_lettered_at: r.dead_lettered_at,
                })
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(requests = requests.len()))]
    async fn redrive_dead_letters(
        &self,
        requests: &[RequestId],
    ) -> Result<Vec<BookingRequest>, StoreError> {
        let ids: Vec<Uuid> = requests.iter().map(|r| r.as_uuid()).collect();
        let rows = sqlx::query_as!(
            RequestRow,
            "UPDATE booking_requests \
             SET dead_lettered_at = NULL, dead_letter_reason = NULL, attempts = NULL \
             WHERE request_id = ANY($1) \
               AND dead_lettered_at IS NOT NULL AND status IN ('QUEUED', 'PROCESSING') \
             RETURNING seq, request_id, user_id, show_id, seat_ids, status, idempotency_key, \
                       created_at, expires_at, processed_at, hold_id, hold_expires_at, \
                       result_message, unavailable, alternatives",
            &ids
        )
        .fetch_all(self.pool())
        .await
        .map_err(codec::store_error)?;
        let mut redriven: Vec<BookingRequest> = codec::decode_all(rows)?;
        redriven.sort_by_key(|r| r.seq);
        Ok(redriven)
    }

    #[tracing::instrument(skip_all, fields(request_id = %request))]
    async fn discard_dead_letter(
        &self,
        request: RequestId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<BookingRequest>, StoreError> {
        let row = sqlx::query_as!(
            RequestRow,
            "UPDATE booking_requests \
             SET status = 'FAILED', processed_at = $3, result_message = $2 \
             WHERE request_id = $1 \
               AND dead_lettered_at IS NOT NULL AND status IN ('QUEUED', 'PROCESSING') \
             RETURNING seq, request_id, user_id, show_id, seat_ids, status, idempotency_key, \
                       created_at, expires_at, processed_at, hold_id, hold_expires_at, \
                       result_message, unavailable, alternatives",
            request.as_uuid(),
            reason,
            at
        )
        .fetch_optional(self.pool())
        .await
        .map_err(codec::store_error)?;
        row.map(BookingRequest::try_from).transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn request_with_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<BookingRequest>, StoreError> {
        let row = sqlx::query_as!(
            RequestRow,
            "SELECT seq, request_id, user_id, show_id, seat_ids, status, idempotency_key, \
                    created_at, expires_at, processed_at, hold_id, hold_expires_at, \
                    result_message, unavailable, alternatives \
             FROM booking_requests WHERE user_id = $1 AND idempotency_key = $2",
            user.as_str(),
            key.as_str()
        )
        .fetch_optional(self.pool())
        .await
        .map_err(codec::store_error)?;
        row.map(BookingRequest::try_from).transpose()
    }

    #[tracing::instrument(skip_all, fields(show_id = %show, seq))]
    async fn undecided_before(
        &self,
        show: ShowId,
        seq: i64,
        limit: u32,
    ) -> Result<Vec<BookingRequest>, StoreError> {
        let rows = sqlx::query_as!(
            RequestRow,
            "SELECT seq, request_id, user_id, show_id, seat_ids, status, idempotency_key, \
                    created_at, expires_at, processed_at, hold_id, hold_expires_at, \
                    result_message, unavailable, alternatives \
             FROM booking_requests \
             WHERE show_id = $1 AND status IN ('QUEUED', 'PROCESSING') \
               AND dead_lettered_at IS NULL AND seq < $2 \
             ORDER BY seq LIMIT $3",
            show.as_uuid(),
            seq,
            i64::from(limit)
        )
        .fetch_all(self.pool())
        .await
        .map_err(codec::store_error)?;
        codec::decode_all(rows)
    }

    #[tracing::instrument(skip_all, fields(show_id = %show))]
    async fn fail_undecided(
        &self,
        show: ShowId,
        message: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<BookingRequest>, StoreError> {
        // The rows are locked in request-id order first, the order a batch commit locks them
        // in, so that this and a decider committing the same requests wait for each other
        // instead of deadlocking.
        let rows = sqlx::query_as!(
            RequestRow,
            "WITH doomed AS ( \
                 SELECT request_id FROM booking_requests \
                 WHERE show_id = $1 AND status IN ('QUEUED', 'PROCESSING') \
                 ORDER BY request_id FOR UPDATE) \
             UPDATE booking_requests r \
             SET status = 'FAILED', processed_at = $3, result_message = $2 \
             FROM doomed WHERE r.request_id = doomed.request_id \
               AND r.status IN ('QUEUED', 'PROCESSING') \
             RETURNING r.seq, r.request_id, r.user_id, r.show_id, r.seat_ids, r.status, \
                       r.idempotency_key, r.created_at, r.expires_at, r.processed_at, \
                       r.hold_id, r.hold_expires_at, r.result_message, r.unavailable, \
                       r.alternatives",
            show.as_uuid(),
            message,
            at
        )
        .fetch_all(self.pool())
        .await
        .map_err(codec::store_error)?;
        let mut failed: Vec<BookingRequest> = codec::decode_all(rows)?;
        failed.sort_by_key(|r| r.seq);
        Ok(failed)
    }

    #[tracing::instrument(skip_all)]
    async fn queue_counts(
        &self,
        shows_from: DateTime<Utc>,
        decided_since: DateTime<Utc>,
    ) -> Result<Vec<ShowQueueCounts>, StoreError> {
        let rows = sqlx::query!(
            r#"SELECT s.show_id, s.starts_at, s.paused,
                      COALESCE(c.queued, 0) AS "queued!", COALESCE(c.processing, 0) AS "processing!",
                      COALESCE(c.dead, 0) AS "dead!",
                      COALESCE(c.succeeded, 0) AS "succeeded!", COALESCE(c.failed, 0) AS "failed!",
                      COALESCE(c.expired, 0) AS "expired!", c.oldest_queued_at AS "oldest_queued_at?",
                      COALESCE(r.recent, 0) AS "recent!", r.mean_ms AS "mean_ms?"
               FROM shows s
               LEFT JOIN (SELECT show_id,
                                 count(*) FILTER (WHERE status = 'QUEUED'
                                                    AND dead_lettered_at IS NULL) AS queued,
                                 count(*) FILTER (WHERE status = 'PROCESSING'
                                                    AND dead_lettered_at IS NULL) AS processing,
                                 count(*) FILTER (WHERE status IN ('QUEUED', 'PROCESSING')
                                                    AND dead_lettered_at IS NOT NULL) AS dead,
                                 count(*) FILTER (WHERE status = 'SUCCESS') AS succeeded,
                                 count(*) FILTER (WHERE status = 'FAILED') AS failed,
                                 count(*) FILTER (WHERE status = 'EXPIRED') AS expired,
                                 min(created_at) FILTER (WHERE status = 'QUEUED'
                                                           AND dead_lettered_at IS NULL)
                                     AS oldest_queued_at
                          FROM booking_requests GROUP BY show_id) c ON c.show_id = s.show_id
               LEFT JOIN (SELECT show_id, count(*) AS recent,
                                 avg(EXTRACT(EPOCH FROM processed_at - created_at) * 1000)::float8
                                     AS mean_ms
                          FROM booking_requests
                          WHERE processed_at >= $2 AND status IN ('SUCCESS', 'FAILED')
                          GROUP BY show_id) r ON r.show_id = s.show_id
               WHERE s.starts_at >= $1 OR c.queued > 0 OR c.processing > 0 OR c.dead > 0
               ORDER BY s.starts_at, s.show_id"#,
            shows_from,
            decided_since
        )
        .fetch_all(self.pool())
        .await
        .map_err(codec::store_error)?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(rows
            .into_iter()
            .map(|row| ShowQueueCounts {
                show_id: ShowId::from_uuid(row.show_id),
                starts_at: row.starts_at,
                paused: row.paused,
                waiting: count(row.queued),
                in_flight: count(row.processing),
                dead_letters: count(row.dead),
                succeeded: count(row.succeeded),
                failed: count(row.failed),
                expired: count(row.expired),
                oldest_waiting_since: row.oldest_queued_at,
                recently_decided: count(row.recent),
                recent_mean_time_to_decision_ms: row.mean_ms,
            })
            .collect())
    }

    #[tracing::instrument(skip_all)]
    async fn purge_history(&self, before: DateTime<Utc>, limit: u32) -> Result<Purged, StoreError> {
        // Oldest first, a bounded batch per statement, skipping rows another transaction has
        // locked: a purge never waits on (or makes wait) the hot path, which only touches live
        // rows anyway. The partial indexes keep both searches off the live rows.
        let mut tx = self.pool().begin().await.map_err(codec::store_error)?;
        let holds = sqlx::query!(
            "DELETE FROM holds WHERE hold_id IN ( \
                 SELECT hold_id FROM holds \
                  WHERE status IN ('RELEASED', 'EXPIRED') AND ended_at < $1 \
                  ORDER BY ended_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            before,
            i64::from(limit)
        )
        .execute(&mut *tx)
        .await
        .map_err(codec::store_error)?
        .rows_affected();
        let requests = sqlx::query!(
            "DELETE FROM booking_requests WHERE request_id IN ( \
                 SELECT r.request_id FROM booking_requests r \
                  WHERE r.processed_at < $1 AND r.status IN ('SUCCESS', 'FAILED', 'EXPIRED') \
                    AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.request_id = r.request_id) \
                  ORDER BY r.processed_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
            before,
            i64::from(limit)
        )
        .execute(&mut *tx)
        .await
        .map_err(codec::store_error)?
        .rows_affected();
        tx.commit().await.map_err(codec::store_error)?;
        Ok(Purged { holds, requests })
    }

    #[tracing::instrument(skip_all, fields(now = %now))]
    async fn expire_overdue_requests(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<BookingRequest>, StoreError> {
        // Rows another transaction holds (a decider committing them, a cancellation failing
        // them) are skipped, not waited for: whatever that transaction decides stands, and one
        // still overdue afterwards is expired by the next sweep. Never waiting, this cannot
        // deadlock with them.
        let rows = sqlx::query_as!(
            RequestRow,
            "WITH overdue AS ( \
                 SELECT request_id FROM booking_requests \
                 WHERE (status = 'QUEUED' AND expires_at <= $1) \
                    OR (status = 'PROCESSING' AND expires_at <= $3) \
                 FOR UPDATE SKIP LOCKED) \
             UPDATE booking_requests r \
             SET status = 'EXPIRED', processed_at = $1, result_message = $2 \
             FROM overdue WHERE r.request_id = overdue.request_id \
             RETURNING r.seq, r.request_id, r.user_id, r.show_id, r.seat_ids, r.status, \
                       r.idempotency_key, r.created_at, r.expires_at, r.processed_at, \
                       r.hold_id, r.hold_expires_at, r.result_message, r.unavailable, \
                       r.alternatives",
            now,
            EXPIRED_MESSAGE,
            now - PROCESSING_GRACE
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
