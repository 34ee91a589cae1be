//! `RequestStore`: the durable record of every accepted hold request.
//!
//! Lists of ids are bound as one JSON array and expanded with `json_each` rather than as one
//! placeholder per id: the statement text stays fixed (prepared once, cached) and no list is ever
//! too long for SQLite's limit on bound parameters.

use crate::SqliteStore;
use crate::codec::{self, EXPIRED_MESSAGE, request_columns};
use async_trait::async_trait;
use booking_core::ports::{
    DeadLetteredRequest, Inserted, Purged, RequestStore, ShowQueueCounts, StoreError,
};
use booking_core::{
    BookingRequest, IdempotencyKey, NewBookingRequest, PROCESSING_GRACE, RequestId, ShowId, UserId,
};
use chrono::{DateTime, Utc};
use std::collections::HashSet;

/// The claim of a batch (`begin_processing`). The unary `+` on `status` keeps SQLite from
/// driving the update by the `(status, seq)` index, which holds every undecided request of every
/// show (a paused show's whole backlog among them): each row is found by its own key instead
/// (a test checks the plan).
const CLAIM: &str = "UPDATE booking_requests SET status = 'PROCESSING' \
     WHERE request_id IN (SELECT value FROM json_each(?1)) \
       AND +status IN ('QUEUED', 'PROCESSING')";

/// Which of the requests named are still undecided, as one JSON array; by key, as [`CLAIM`].
const UNDECIDED: &str = "SELECT json_group_array(request_id) FROM booking_requests \
     WHERE request_id IN (SELECT value FROM json_each(?1)) \
       AND +status IN ('QUEUED', 'PROCESSING')";

#[async_trait]
impl RequestStore for SqliteStore {
    #[tracing::instrument(
        skip_all,
        fields(request_id = %request.request_id, show_id = %request.show_id)
    )]
    async fn insert_request(&self, request: NewBookingRequest) -> Result<Inserted, StoreError> {
        self.inner.intake.submit(request).await
    }

    #[tracing::instrument(skip_all, fields(request_id = %request))]
    async fn get_request(&self, request: RequestId) -> Result<Option<BookingRequest>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            request_columns!(),
            " FROM booking_requests WHERE request_id = ?1"
        ))
        .bind(request.to_string())
        .fetch_optional(self.readers())
        .await
        .map_err(codec::store_error)?;
        row.as_ref().map(codec::decode_request).transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn pending_requests(&self) -> Result<Vec<BookingRequest>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            request_columns!(),
            " FROM booking_requests WHERE status IN ('QUEUED', 'PROCESSING') \
             AND dead_lettered_at IS NULL ORDER BY seq"
        ))
        .fetch_all(self.readers())
        .await
        .map_err(codec::store_error)?;
        rows.iter().map(codec::decode_request).collect()
    }

    #[tracing::instrument(skip_all, fields(requests = requests.len()))]
    async fn begin_processing(&self, requests: &[RequestId]) -> Result<Vec<RequestId>, StoreError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = requests.iter().map(ToString::to_string).collect();
        let ids = codec::to_json(&ids)?;
        // The claim and the read of what it took, on the writer, as one transaction. No
        // `RETURNING`: sqlx hands every returned row to the caller through a channel of its
        // own, a thread hand-over per row. The count says whether every request was still
        // undecided, as it nearly always is. (Deciders call `start_deciding`, which claims
        // nothing here; see below.)
        let mut tx = self
            .writer()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(codec::store_error)?;
        let claimed = sqlx::query(CLAIM).bind(&ids).execute(&mut *tx).await;
        let claimed = claimed.map_err(codec::store_error)?.rows_affected();
        let distinct: HashSet<RequestId> = requests.iter().copied().collect();
        if claimed == distinct.len() as u64 {
            tx.commit().await.map_err(codec::store_error)?;
            return Ok(booking_sql::updated_in_order(requests, |id| *id, &distinct));
        }
        // Some were decided already (a duplicate delivery): which ones the claim took, in one
        // row. It left each undecided one PROCESSING.
        let processing: String = sqlx::query_scalar(UNDECIDED)
            .bind(&ids)
            .fetch_one(&mut *tx)
            .await
            .map_err(codec::store_error)?;
        tx.commit().await.map_err(codec::store_error)?;
        let updated: HashSet<String> = codec::from_json(&processing, "request_id")?;
        Ok(booking_sql::updated_in_order(
            requests,
            ToString::to_string,
            &updated,
        ))
    }

    /// A read on a reader connection, not a claim: the single writer connection is what every
    /// 202 and every batch commit waits for, and a claim there cost a flash sale's batch a
    /// statement per request and a commit of its own. Nothing is lost by not claiming on this
    /// store: a claim here never kept a second decider off (PROCESSING may be claimed again),
    /// `commit_batch` records an outcome only on a request still undecided, and a request decided
    /// while its batch was being decided makes that batch's grants fail as a seat conflict, to be
    /// decided again from fresh state.
    #[tracing::instrument(skip_all, fields(requests = requests.len()))]
    async fn start_deciding(&self, requests: &[RequestId]) -> Result<Vec<RequestId>, StoreError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = requests.iter().map(ToString::to_string).collect();
        let undecided: String = sqlx::query_scalar(UNDECIDED)
            .bind(codec::to_json(&ids)?)
            .fetch_one(self.readers())
            .await
            .map_err(codec::store_error)?;
        let undecided: HashSet<String> = codec::from_json(&undecided, "request_id")?;
        Ok(booking_sql::updated_in_order(
            requests,
            ToString::to_string,
            &undecided,
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
        let done = sqlx::query(
            "UPDATE booking_requests SET status = 'QUEUED', dead_lettered_at = ?2, \
                 dead_letter_reason = ?3, attempts = ?4 \
             WHERE request_id = ?1 AND status IN ('QUEUED', 'PROCESSING')",
        )
        .bind(request.to_string())
        .bind(codec::millis(at))
        .bind(reason)
        .bind(i64::from(attempts))
        .execute(self.writer())
        .await
        .map_err(codec::store_error)?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(skip_all)]
    async fn dead_letters(
        &self,
        show: Option<ShowId>,
    ) -> Result<Vec<DeadLetteredRequest>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            request_columns!(),
            ", dead_letter_reason, attempts, dead_lettered_at FROM booking_requests \
             WHERE dead_lettered_at IS NOT NULL AND status IN ('QUEUED', 'PROCESSING') \
               AND (?1 IS NULL OR show_id = ?1) \
             ORDER BY seq"
        ))
        .bind(show.map(|s| s.to_string()))
        .fetch_all(self.readers())
        .await
        .map_err(codec::store_error)?;
        rows.iter()
            .map(|row| {
                let attempts: i64 = codec::get(row, "attempts")?;
                Ok(DeadLetteredRequest {
                    request: codec::decode_request(row)?,
                    reason: codec::get(row, "dead_letter_reason")?,
                    attempts: u32::try_from(attempts)
                        .map_err(|_| codec::corrupt(format_args!("attempts: {attempts}")))?,
                    dead_lettered_at: codec::get_time(row, "dead_lettered_at")?,
                })
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(requests = requests.len()))]
    async fn redrive_dead_letters(
        &self,
        requests: &[RequestId],
    ) -> Result<Vec<BookingRequest>, StoreError> {
        let ids: Vec<String> = requests.iter().map(ToString::to_string).collect();
        let rows = sqlx::query(concat!(
            "UPDATE booking_requests \
             SET dead_lettered_at = NULL, dead_letter_reason = NULL, attempts = NULL \
             WHERE request_id IN (SELECT value FROM json_each(?1)) \
               AND dead_lettered_at IS NOT NULL AND status IN ('QUEUED', 'PROCESSING') \
             RETURNING ",
            request_columns!()
        ))
        .bind(codec::to_json(&ids)?)
        .fetch_all(self.writer())
        .await
        .map_err(codec::store_error)?;
        let mut redriven: Vec<BookingRequest> = rows
            .iter()
            .map(codec::decode_request)
            .collect::<Result<_, _>>()?;
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
        let row = sqlx::query(concat!(
            "UPDATE booking_requests \
             SET status = 'FAILED', processed_at = ?3, result_message = ?2 \
             WHERE request_id = ?1 \
               AND dead_lettered_at IS NOT NULL AND status IN ('QUEUED', 'PROCESSING') \
             RETURNING ",
            request_columns!()
        ))
        .bind(request.to_string())
        .bind(reason)
        .bind(codec::millis(at))
        .fetch_optional(self.writer())
        .await
        .map_err(codec::store_error)?;
        row.as_ref().map(codec::decode_request).transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn request_with_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<BookingRequest>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            request_columns!(),
            " FROM booking_requests WHERE user_id = ?1 AND idempotency_key = ?2"
        ))
        .bind(user.as_str())
        .bind(key.as_str())
        .fetch_optional(self.readers())
        .await
        .map_err(codec::store_error)?
        .as_ref()
        .map(codec::decode_request)
        .transpose()
    }

    #[tracing::instrument(skip_all, fields(show_id = %show, seq))]
    async fn undecided_before(
        &self,
        show: ShowId,
        seq: i64,
        limit: u32,
    ) -> Result<Vec<BookingRequest>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            request_columns!(),
            " FROM booking_requests \
             WHERE show_id = ?1 AND status IN ('QUEUED', 'PROCESSING') \
               AND dead_lettered_at IS NULL AND seq < ?2 \
             ORDER BY seq LIMIT ?3"
        ))
        .bind(show.to_string())
        .bind(seq)
        .bind(i64::from(limit))
        .fetch_all(self.readers())
        .await
        .map_err(codec::store_error)?
        .iter()
        .map(codec::decode_request)
        .collect()
    }

    #[tracing::instrument(skip_all, fields(show_id = %show))]
    async fn fail_undecided(
        &self,
        show: ShowId,
        message: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<BookingRequest>, StoreError> {
        let rows = sqlx::query(concat!(
            "UPDATE booking_requests \
             SET status = 'FAILED', processed_at = ?3, result_message = ?2 \
             WHERE show_id = ?1 AND status IN ('QUEUED', 'PROCESSING') \
             RETURNING ",
            request_columns!()
        ))
        .bind(show.to_string())
        .bind(message)
        .bind(codec::millis(at))
        .fetch_all(self.writer())
        .await
        .map_err(codec::store_error)?;
        let mut failed = rows
            .iter()
            .map(codec::decode_request)
            .collect::<Result<Vec<_>, _>>()?;
        failed.sort_by_key(|r| r.seq);
        Ok(failed)
    }

    #[tracing::instrument(skip_all)]
    async fn queue_counts(
        &self,
        shows_from: DateTime<Utc>,
        decided_since: DateTime<Utc>,
    ) -> Result<Vec<ShowQueueCounts>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.show_id, s.starts_at, s.paused, \
                    COALESCE(c.queued, 0) AS queued, COALESCE(c.processing, 0) AS processing, \
                    COALESCE(c.dead, 0) AS dead, \
                    COALESCE(c.succeeded, 0) AS succeeded, COALESCE(c.failed, 0) AS failed, \
                    COALESCE(c.expired, 0) AS expired, c.oldest_queued_at, \
                    COALESCE(r.recent, 0) AS recent, r.mean_ms \
             FROM shows s \
             LEFT JOIN (SELECT show_id, \
                            SUM(status = 'QUEUED' AND dead_lettered_at IS NULL) AS queued, \
                            SUM(status = 'PROCESSING' AND dead_lettered_at IS NULL) \
                                AS processing, \
                            SUM(status IN ('QUEUED', 'PROCESSING') \
                                AND dead_lettered_at IS NOT NULL) AS dead, \
                            SUM(status = 'SUCCESS') AS succeeded, \
                            SUM(status = 'FAILED') AS failed, \
                            SUM(status = 'EXPIRED') AS expired, \
                            MIN(CASE WHEN status = 'QUEUED' AND dead_lettered_at IS NULL \
                                THEN created_at END) AS oldest_queued_at \
                        FROM booking_requests GROUP BY show_id) c ON c.show_id = s.show_id \
             LEFT JOIN (SELECT show_id, COUNT(*) AS recent, \
                               AVG(processed_at - created_at) AS mean_ms \
                        FROM booking_requests \
                        WHERE processed_at >= ?2 AND status IN ('SUCCESS', 'FAILED') \
                        GROUP BY show_id) r ON r.show_id = s.show_id \
             WHERE s.starts_at >= ?1 OR c.queued > 0 OR c.processing > 0 OR c.dead > 0 \
             ORDER BY s.starts_at, s.show_id",
        )
        .bind(codec::millis(shows_from))
        .bind(codec::millis(decided_since))
        .fetch_all(self.readers())
        .await
        .map_err(codec::store_error)?;
        rows.iter()
            .map(|row| {
                let count = |column: &str| -> Result<u64, StoreError> {
                    let n: i64 = codec::get(row, column)?;
                    u64::try_from(n).map_err(|_| codec::corrupt(format_args!("{column}: {n}")))
                };
                Ok(ShowQueueCounts {
                    show_id: codec::get_parsed(row, "show_id")?,
                    starts_at: codec::get_time(row, "starts_at")?,
                    paused: codec::get::<i64>(row, "paused")? != 0,
                    waiting: count("queued")?,
                    in_flight: count("processing")?,
                    dead_letters: count("dead")?,
                    succeeded: count("succeeded")?,
                    failed: count("failed")?,
                    expired: count("expired")?,
                    oldest_waiting_since: codec::get_opt_time(row, "oldest_queued_at")?,
                    recently_decided: count("recent")?,
                    recent_mean_time_to_decision_ms: codec::get(row, "mean_ms")?,
                })
            })
            .collect()
    }

    #[tracing::instrument(skip_all)]
    async fn purge_history(&self, before: DateTime<Utc>, limit: u32) -> Result<Purged, StoreError> {
        // Oldest first, a bounded batch per statement, so that the writer is held briefly; the
        // partial indexes keep both searches off the live rows.
        let mut tx = self
            .writer()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(codec::store_error)?;
        let holds = sqlx::query(
            "DELETE FROM holds WHERE hold_id IN ( \
                 SELECT hold_id FROM holds \
                  WHERE status IN ('RELEASED', 'EXPIRED') AND ended_at < ?1 \
                  ORDER BY ended_at LIMIT ?2)",
        )
        .bind(codec::millis(before))
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await
        .map_err(codec::store_error)?
        .rows_affected();
        let requests = sqlx::query(
            "DELETE FROM booking_requests WHERE request_id IN ( \
                 SELECT r.request_id FROM booking_requests r \
                  WHERE r.processed_at IS NOT NULL AND r.processed_at < ?1 \
                    AND r.status IN ('SUCCESS', 'FAILED', 'EXPIRED') \
                    AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.request_id = r.request_id) \
                  ORDER BY r.processed_at LIMIT ?2)",
        )
        .bind(codec::millis(before))
        .bind(i64::from(limit))
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
        let rows = sqlx::query(concat!(
            "UPDATE booking_requests \
             SET status = 'EXPIRED', processed_at = ?1, result_message = ?2 \
             WHERE (status = 'QUEUED' AND expires_at <= ?1) \
                OR (status = 'PROCESSING' AND expires_at <= ?3) \
             RETURNING ",
            request_columns!()
        ))
        .bind(codec::millis(now))
        .bind(EXPIRED_MESSAGE)
        .bind(codec::millis(now - PROCESSING_GRACE))
        .fetch_all(self.writer())
        .await
        .map_err(codec::store_error)?;
        let mut expired = rows
            .iter()
            .map(codec::decode_request)
            .collect::<Result<Vec<_>, _>>()?;
        // RETURNING gives no order; callers get arrival order, like everywhere else.
        expired.sort_by_key(|r| r.seq);
        Ok(expired)
    }
}

#[cfg(test)]
mod tests {
    use crate::{SqliteOptions, SqliteStore};

    /// The claim's statements find each request by its key: driven by the `(status, seq)`
    /// index instead, a claim of a few requests would visit every undecided request of every
    /// show.
    #[tokio::test]
    async fn the_claim_finds_requests_by_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("p.db"), SqliteOptions::default())
            .await
            .unwrap();
        for statement in [super::CLAIM, super::UNDECIDED] {
            let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "EXPLAIN QUERY PLAN {statement}"
            )))
            .bind("[]")
            .fetch_all(store.readers())
            .await
            .unwrap();
            let steps: Vec<&str> = plan.iter().map(|(_, _, _, step)| step.as_str()).collect();
            assert!(
                steps.iter().any(|step| step.starts_with("SEARCH booking_requests USING INDEX sqlite_autoindex_booking_requests_1 (request_id=?)")),
                "{statement}: {steps:?}"
            );
        }
    }
}
