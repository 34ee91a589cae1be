//! `HoldStore`: holds, the seat claims that back them, and the commit of a decided batch.
//!
//! The decision engine has already decided who gets which seat, but it decided against a
//! snapshot, and two workers may decide the same show at once (a redelivered message, an expired
//! visibility timeout). So the commit does not trust the batch: every grant must find its
//! request still undecided, and every seat must either be unclaimed or carry a claim that has
//! expired by time. If either check fails the whole batch is rolled back and the worker decides
//! again from fresh state.

use crate::SqliteStore;
use crate::codec::{self, EXPIRED_MESSAGE, hold_columns};
use async_trait::async_trait;
use booking_core::ports::{CommitError, HoldStore, ReleaseError, StoreError};
use booking_core::{
    BatchOutcome, Decision, Hold, HoldId, HoldStatus, RequestId, RequestOutcome, SeatId,
    SeatStatus, ShowId, ShowSnapshot, UserId, rejection_message,
};
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

#[async_trait]
impl HoldStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(show_id = %show))]
    async fn load_show_state(
        &self,
        show: ShowId,
        now: DateTime<Utc>,
    ) -> Result<ShowSnapshot, StoreError> {
        // One read transaction, so holds and booked seats come from the same instant.
        let mut tx = self.readers().begin().await.map_err(codec::store_error)?;
        let holds = sqlx::query(
            "SELECT hold_id, user_id, seat_ids, expires_at FROM holds \
             WHERE show_id = ?1 AND status = 'HELD' AND expires_at > ?2",
        )
        .bind(show.to_string())
        .bind(codec::millis(now))
        .fetch_all(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        let booked: Vec<String> = sqlx::query_scalar(
            "SELECT seat_id FROM seat_claims \
             WHERE show_id = ?1 AND kind = 'ORDER' AND expires_at > ?2",
        )
        .bind(show.to_string())
        .bind(codec::millis(now))
        .fetch_all(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        tx.commit().await.map_err(codec::store_error)?;
        Ok(ShowSnapshot {
            holds: holds
                .iter()
                .map(codec::decode_snapshot_hold)
                .collect::<Result<_, _>>()?,
            booked: booked
                .iter()
                .map(|s| codec::parse(s, "seat_id"))
                .collect::<Result<_, _>>()?,
        })
    }

    #[tracing::instrument(
        skip_all,
        fields(show_id = %show, decisions = batch.decisions.len())
    )]
    async fn commit_batch(
        &self,
        show: ShowId,
        batch: &BatchOutcome,
        decided_at: DateTime<Utc>,
    ) -> Result<Vec<RequestId>, CommitError> {
        let mut tx = self
            .writer()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| CommitError::Store(codec::store_error(e)))?;
        match write_batch(&mut tx, show, batch, decided_at).await {
            Ok(decided) => tx
                .commit()
                .await
                .map(|()| decided)
                .map_err(|e| CommitError::Store(codec::store_error(e))),
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

    #[tracing::instrument(skip_all, fields(show_id = %show))]
    async fn taken_seats(
        &self,
        show: ShowId,
        now: DateTime<Utc>,
    ) -> Result<Vec<(SeatId, SeatStatus)>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT seat_id, kind FROM seat_claims WHERE show_id = ?1 AND expires_at > ?2",
        )
        .bind(show.to_string())
        .bind(codec::millis(now))
        .fetch_all(self.readers())
        .await
        .map_err(codec::store_error)?;
        rows.iter()
            .map(|(seat, kind)| {
                let status = match kind.as_str() {
                    "HOLD" => SeatStatus::Held,
                    "ORDER" => SeatStatus::Booked,
                    other => return Err(codec::corrupt(format_args!("kind: {other:?}"))),
                };
                Ok((codec::parse(seat, "seat_id")?, status))
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(hold_id = %hold))]
    async fn get_hold(&self, hold: HoldId) -> Result<Option<Hold>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            hold_columns!(),
            " FROM holds WHERE hold_id = ?1"
        ))
        .bind(hold.to_string())
        .fetch_optional(self.readers())
        .await
        .map_err(codec::store_error)?;
        row.as_ref().map(codec::decode_hold).transpose()
    }

    #[tracing::instrument(skip_all, fields(hold_id = %hold))]
    async fn release_hold(
        &self,
        hold: HoldId,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Hold, ReleaseError> {
        let store = |e| ReleaseError::Store(codec::store_error(e));
        let mut tx = self
            .writer()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store)?;
        let row = sqlx::query(concat!(
            "SELECT ",
            hold_columns!(),
            " FROM holds WHERE hold_id = ?1"
        ))
        .bind(hold.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(store)?;
        let Some(row) = row else {
            return Err(ReleaseError::NotFound);
        };
        let mut found = codec::decode_hold(&row)?;
        if found.user_id != *user {
            return Err(ReleaseError::NotFound);
        }
        let status = found.status_at(now);
        if status != HoldStatus::Held {
            return Err(ReleaseError::NotHeld(status));
        }
        let now = codec::truncate_millis(now);
        sqlx::query(
            "UPDATE holds SET status = 'RELEASED', ended_at = ?2 \
             WHERE hold_id = ?1 AND status = 'HELD'",
        )
        .bind(hold.to_string())
        .bind(codec::millis(now))
        .execute(&mut *tx)
        .await
        .map_err(store)?;
        delete_hold_claims(&mut tx, hold).await.map_err(store)?;
        tx.commit().await.map_err(store)?;
        found.status = HoldStatus::Released;
        found.ended_at = Some(now);
        Ok(found)
    }

    #[tracing::instrument(skip_all, fields(now = %now))]
    async fn expire_holds(&self, now: DateTime<Utc>) -> Result<Vec<Hold>, StoreError> {
        let mut tx = self
            .writer()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(codec::store_error)?;
        let rows = sqlx::query(concat!(
            "UPDATE holds SET status = 'EXPIRED', ended_at = expires_at \
             WHERE status = 'HELD' AND expires_at <= ?1 \
             RETURNING ",
            hold_columns!()
        ))
        .bind(codec::millis(now))
        .fetch_all(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        let ids: Vec<String> = rows
            .iter()
            .map(|row| codec::get::<String>(row, "hold_id"))
            .collect::<Result<_, _>>()?;
        // Only claims still naming these holds: a seat taken over since belongs to its new hold.
        sqlx::query(
            "DELETE FROM seat_claims \
             WHERE kind = 'HOLD' AND hold_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(codec::to_json(&ids)?)
        .execute(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        tx.commit().await.map_err(codec::store_error)?;
        let mut expired = rows
            .iter()
            .map(codec::decode_hold)
            .collect::<Result<Vec<_>, _>>()?;
        expired.sort_by_key(|h| (h.expires_at, h.hold_id));
        Ok(expired)
    }

    #[tracing::instrument(skip_all)]
    async fn ping(&self) -> Result<(), StoreError> {
        if self.inner.intake.is_closed() {
            return Err(StoreError::unavailable("the request writer has stopped"));
        }
        sqlx::query("SELECT 1")
            .execute(self.readers())
            .await
            .map_err(codec::store_error)?;
        Ok(())
    }
}

/// The body of `commit_batch`, inside its transaction. Any error means: roll back.
async fn write_batch(
    conn: &mut SqliteConnection,
    show: ShowId,
    batch: &BatchOutcome,
    decided_at: DateTime<Utc>,
) -> Result<Vec<RequestId>, CommitError> {
    let store = |e| CommitError::Store(codec::store_error(e));
    let mut decided_ids = Vec::with_capacity(batch.decisions.len());
    let show_text = show.to_string();
    let at = codec::millis(decided_at);

    // Claims of holds that ran out are dead by time already; removing them keeps the table from
    // growing with every expiry. The holds themselves stay HELD until `expire_holds` writes
    // EXPIRED down and returns them, so the sweep can announce them even on a busy show.
    sqlx::query(
        "DELETE FROM seat_claims WHERE show_id = ?1 AND kind = 'HOLD' AND expires_at <= ?2",
    )
    .bind(&show_text)
    .bind(at)
    .execute(&mut *conn)
    .await
    .map_err(store)?;

    for decision in &batch.decisions {
        match decision {
            Decision::Granted {
                request_id,
                user_id,
                hold_id,
                seat_ids,
                expires_at,
                released,
            } => {
                let message = RequestOutcome::Granted {
                    hold_id: *hold_id,
                    hold_expires_at: *expires_at,
                }
                .message();
                let decided = sqlx::query(
                    "UPDATE booking_requests \
                     SET status = 'SUCCESS', processed_at = ?4, hold_id = ?5, \
                         hold_expires_at = ?6, result_message = ?7, \
                         unavailable = NULL, alternatives = NULL \
                     WHERE request_id = ?1 AND show_id = ?2 AND user_id = ?3 \
                       AND status IN ('QUEUED', 'PROCESSING')",
                )
                .bind(request_id.to_string())
                .bind(&show_text)
                .bind(user_id.as_str())
                .bind(at)
                .bind(hold_id.to_string())
                .bind(codec::millis(*expires_at))
                .bind(message)
                .execute(&mut *conn)
                .await
                .map_err(store)?;
                if decided.rows_affected() == 0 {
                    // Already decided (a duplicate delivery committed first): this batch was
                    // decided against stale state.
                    return Err(CommitError::SeatConflict);
                }
                decided_ids.push(*request_id);

                if let Some(previous) = released {
                    let ended = sqlx::query(
                        "UPDATE holds SET status = 'RELEASED', ended_at = ?4 \
                         WHERE hold_id = ?1 AND show_id = ?2 AND user_id = ?3 \
                           AND status = 'HELD'",
                    )
                    .bind(previous.to_string())
                    .bind(&show_text)
                    .bind(user_id.as_str())
                    .bind(at)
                    .execute(&mut *conn)
                    .await
                    .map_err(store)?;
                    // If it is no longer HELD (released by its owner meanwhile, or converted to
                    // an order) its claims are not this grant's to remove.
                    if ended.rows_affected() == 1 {
                        delete_hold_claims(conn, *previous).await.map_err(store)?;
                    }
                }

                let inserted = sqlx::query(
                    "INSERT INTO holds \
                         (hold_id, request_id, user_id, show_id, seat_ids, status, created_at, \
                          expires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 'HELD', ?6, ?7)",
                )
                .bind(hold_id.to_string())
                .bind(request_id.to_string())
                .bind(user_id.as_str())
                .bind(&show_text)
                .bind(codec::to_json(seat_ids)?)
                .bind(at)
                .bind(codec::millis(*expires_at))
                .execute(&mut *conn)
                .await;
                match inserted {
                    Ok(_) => {}
                    // The hold exists already: someone else committed this grant.
                    Err(e) if codec::is_unique_violation(&e) => {
                        return Err(CommitError::SeatConflict);
                    }
                    Err(e) => return Err(store(e)),
                }

                for seat in seat_ids {
                    let claimed = sqlx::query(
                        "INSERT INTO seat_claims (show_id, seat_id, hold_id, kind, expires_at) \
                         VALUES (?1, ?2, ?3, 'HOLD', ?4) \
                         ON CONFLICT (show_id, seat_id) DO UPDATE \
                         SET hold_id = excluded.hold_id, kind = 'HOLD', \
                             expires_at = excluded.expires_at \
                         WHERE seat_claims.expires_at <= ?5",
                    )
                    .bind(&show_text)
                    .bind(seat.to_string())
                    .bind(hold_id.to_string())
                    .bind(codec::millis(*expires_at))
                    .bind(at)
                    .execute(&mut *conn)
                    .await
                    .map_err(store)?;
                    if claimed.rows_affected() == 0 {
                        // A live claim of another hold or order: the database refuses the double
                        // allocation the batch would make.
                        return Err(CommitError::SeatConflict);
                    }
                }
            }
            Decision::Rejected {
                request_id,
                unavailable,
                alternatives,
            } => {
                if finish(
                    conn,
                    *request_id,
                    &show_text,
                    at,
                    "FAILED",
                    &rejection_message(unavailable),
                    Some((unavailable, alternatives)),
                )
                .await?
                {
                    decided_ids.push(*request_id);
                }
            }
            Decision::Expired { request_id } => {
                if finish(
                    conn,
                    *request_id,
                    &show_text,
                    at,
                    "EXPIRED",
                    EXPIRED_MESSAGE,
                    None,
                )
                .await?
                {
                    decided_ids.push(*request_id);
                }
            }
            Decision::Invalid { request_id, reason } => {
                if finish(
                    conn,
                    *request_id,
                    &show_text,
                    at,
                    "FAILED",
                    reason,
                    Some((&[], &[])),
                )
                .await?
                {
                    decided_ids.push(*request_id);
                }
            }
        }
    }
    Ok(decided_ids)
}

/// Records a decision that grants nothing. A request that is already decided is left alone: the
/// earlier decision stands, and nothing else of the batch depends on this one. Returns whether
/// this decision was recorded.
async fn finish(
    conn: &mut SqliteConnection,
    request: booking_core::RequestId,
    show: &str,
    at: i64,
    status: &'static str,
    message: &str,
    seats: Option<(&[SeatId], &[SeatId])>,
) -> Result<bool, CommitError> {
    let (unavailable, alternatives) = match seats {
        Some((u, a)) => (Some(codec::to_json(u)?), Some(codec::to_json(a)?)),
        None => (None, None),
    };
    let recorded = sqlx::query(
        "UPDATE booking_requests \
         SET status = ?3, processed_at = ?4, result_message = ?5, unavailable = ?6, \
             alternatives = ?7, hold_id = NULL, hold_expires_at = NULL \
         WHERE request_id = ?1 AND show_id = ?2 AND status IN ('QUEUED', 'PROCESSING')",
    )
    .bind(request.to_string())
    .bind(show)
    .bind(status)
    .bind(at)
    .bind(message)
    .bind(unavailable)
    .bind(alternatives)
    .execute(&mut *conn)
    .await
    .map_err(|e| CommitError::Store(codec::store_error(e)))?;
    Ok(recorded.rows_affected() == 1)
}

async fn delete_hold_claims(conn: &mut SqliteConnection, hold: HoldId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM seat_claims WHERE hold_id = ?1 AND kind = 'HOLD'")
        .bind(hold.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}
