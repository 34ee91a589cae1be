//! `HoldStore`: holds, the seat claims that back them, and the commit of a decided batch.
//!
//! The decision engine has already decided who gets which seat, but it decided against a
//! snapshot, and two workers may decide the same show at once (a redelivered message, an expired
//! visibility timeout). So the commit does not trust the batch: every grant must find its
//! request still undecided, and every seat must either be unclaimed or carry a claim that has
//! expired by time. If either check fails the whole batch is rolled back and the worker decides
//! again from fresh state.
//!
//! What a batch writes is the core's `CommitPlan` (the same one PostgreSQL executes), one
//! set-based statement per step, as on PostgreSQL. SQLite has no arrays to bind, so each step's
//! rows go in as one JSON array parameter that the statement reads with `jsonb_each` where its
//! rows are arrays or objects (`json_each` would hand each row over as JSON text, which every
//! `->>` then parses again: under callgrind that was a seventh of a request's instructions), and
//! with `json_each` where they are plain ids. A statement
//! per row would cost far more than it looks: the connection is in-process, but sqlx runs it on
//! its own thread, and every statement is a hand-over to that thread and back (measured: a
//! batch's per-row statements were most of the server's CPU per request; see
//! docs/PERFORMANCE.md).

use crate::SqliteStore;
use crate::codec::{self, hold_columns};
use async_trait::async_trait;
use booking_core::commit::CommitPlan;
use booking_core::ports::{CommitError, HoldStore, ReleaseError, SeatLock, StoreError};
use booking_core::{
    BatchOutcome, Hold, HoldId, HoldStatus, RequestId, SeatId, SeatStatus, ShowId, ShowSnapshot,
    UserId,
};
use booking_sql::finish_commit;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use std::collections::HashSet;

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
        // The holds as one row (a JSON array of arrays): sqlx hands each returned row over from
        // its connection thread on its own, and a busy show has hundreds of holds, read again
        // for every batch.
        let holds: String = sqlx::query_scalar(
            "SELECT json_group_array(json_array(hold_id, user_id, json(seat_ids), expires_at)) \
             FROM holds WHERE show_id = ?1 AND status = 'HELD' AND expires_at > ?2",
        )
        .bind(show.to_string())
        .bind(codec::millis(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        let booked: Vec<String> = sqlx::query_scalar(
            "SELECT seat_id FROM seat_claims \
             WHERE show_id = ?1 AND kind IN ('ORDER', 'SOLD') AND expires_at > ?2",
        )
        .bind(show.to_string())
        .bind(codec::millis(now))
        .fetch_all(&mut *tx)
        .await
        .map_err(codec::store_error)?;
        tx.commit().await.map_err(codec::store_error)?;
        Ok(ShowSnapshot {
            holds: codec::decode_snapshot_holds(&holds)?,
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
        let plan = CommitPlan::new(batch)?;
        let mut tx = self
            .writer()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(commit_error)?;
        let written = write_batch(&mut tx, show, &plan, decided_at).await;
        finish_commit(tx, written, commit_error).await
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
                let status = booking_sql::claim_status(kind)?;
                Ok((codec::parse(seat, "seat_id")?, status))
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(show_id = %show))]
    async fn seat_locks(
        &self,
        show: ShowId,
        now: DateTime<Utc>,
    ) -> Result<Vec<SeatLock>, StoreError> {
        crate::orders::seat_locks(self, show, now).await
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

fn commit_error(e: sqlx::Error) -> CommitError {
    CommitError::Store(codec::store_error(e))
}

/// Which outcomes `o` (rows of the bound plan) may be recorded on their requests `r`: the request
/// is still undecided, and a grant's is still its user's. One clause for the read of what will be
/// recorded and for the update that records it, so the two cannot drift apart.
macro_rules! recordable_outcomes {
    () => {
        "WHERE r.request_id = o.value ->> 'request_id' AND +r.show_id = ?2 \
           AND +r.status IN ('QUEUED', 'PROCESSING') \
           AND (o.value ->> 'grant_to' IS NULL OR r.user_id = o.value ->> 'grant_to')"
    };
}

/// The body of `commit_batch`, inside its transaction, in the plan's order (see
/// `booking_core::commit`). Any error means: roll back.
async fn write_batch(
    conn: &mut SqliteConnection,
    show: ShowId,
    plan: &CommitPlan,
    decided_at: DateTime<Utc>,
) -> Result<Vec<RequestId>, CommitError> {
    let show_text = show.to_string();
    let at = codec::millis(decided_at);

    // 1. Every request's outcome, if it is still undecided (a grant: and still its user's).
    //    The unary `+` keeps SQLite from driving the set-based statements below by the
    //    (show, status) indexes, which would visit every waiting request (or held hold) of the
    //    show once per row of the batch; each row is found by its own key instead.
    let outcomes = plan
        .outcomes
        .iter()
        .map(|planned| {
            let columns = planned.outcome.columns();
            Ok(serde_json::json!({
                "request_id": planned.request_id.to_string(),
                "status": planned.outcome.status().as_str(),
                "message": columns.message,
                "hold_id": columns.hold_id.map(|h| h.to_string()),
                "hold_expires_at": columns.hold_expires_at.map(codec::millis),
                // As the text the columns keep.
                "unavailable": columns.unavailable.as_deref().map(codec::to_json).transpose()?,
                "alternatives": columns.alternatives.as_deref().map(codec::to_json).transpose()?,
                "grant_to": planned.grant_to.as_ref().map(|u| u.as_str()),
            }))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let outcomes = codec::to_json(&outcomes)?;
    // Which of them are still to record, read first in the same (immediate) transaction, as one
    // row: an `UPDATE ... RETURNING` would hand each row over from sqlx's connection thread on
    // its own, and a flash sale's batch has hundreds.
    let recordable: String = sqlx::query_scalar(concat!(
        "SELECT json_group_array(r.request_id) FROM jsonb_each(?1) AS o, booking_requests AS r ",
        recordable_outcomes!()
    ))
    .bind(&outcomes)
    .bind(&show_text)
    .fetch_one(&mut *conn)
    .await
    .map_err(commit_error)?;
    let recorded: HashSet<String> = codec::from_json(&recordable, "request_id")?;
    let written = sqlx::query(concat!(
        "UPDATE booking_requests AS r \
         SET status = o.value ->> 'status', processed_at = ?3, \
             result_message = o.value ->> 'message', hold_id = o.value ->> 'hold_id', \
             hold_expires_at = o.value ->> 'hold_expires_at', \
             unavailable = o.value ->> 'unavailable', alternatives = o.value ->> 'alternatives' \
         FROM jsonb_each(?1) AS o ",
        recordable_outcomes!()
    ))
    .bind(&outcomes)
    .bind(&show_text)
    .bind(at)
    .execute(&mut *conn)
    .await
    .map_err(commit_error)?
    .rows_affected();
    if written != recorded.len() as u64 {
        // Nothing else writes inside this transaction: the read and the update must agree.
        return Err(CommitError::Store(codec::corrupt(format_args!(
            "recorded {written} outcomes where {} were recordable",
            recorded.len()
        ))));
    }
    // In the plan's (arrival) order.
    let mut decided = Vec::with_capacity(recorded.len());
    let mut granted = 0;
    for planned in &plan.outcomes {
        if recorded.contains(&planned.request_id.to_string()) {
            decided.push(planned.request_id);
            granted += usize::from(planned.grant_to.is_some());
        }
    }
    if granted != plan.grants {
        // A granted request was decided already (a duplicate delivery committed first): this
        // batch was decided against stale state.
        return Err(CommitError::SeatConflict);
    }

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
    .map_err(commit_error)?;

    // 2. The users' previous holds that grants release, with their live claims. One that is no
    //    longer HELD (released by its owner meanwhile, or converted to an order) keeps its claims:
    //    they are not this grant's to remove.
    let mut freed = Vec::new();
    if !plan.releases.is_empty() {
        let releases: Vec<_> = plan
            .releases
            .iter()
            .map(|r| serde_json::json!([r.hold_id.to_string(), r.user_id.as_str()]))
            .collect();
        let ended: Vec<String> = sqlx::query_scalar(
            "UPDATE holds SET status = 'RELEASED', ended_at = ?3 \
             WHERE +show_id = ?2 AND +status = 'HELD' \
               AND (hold_id, user_id) IN \
                   (SELECT value ->> 0, value ->> 1 FROM jsonb_each(?1)) \
             RETURNING hold_id",
        )
        .bind(codec::to_json(&releases)?)
        .bind(&show_text)
        .bind(at)
        .fetch_all(&mut *conn)
        .await
        .map_err(commit_error)?;
        if !ended.is_empty() {
            let seats: Vec<(String, String)> = sqlx::query_as(
                "DELETE FROM seat_claims \
                 WHERE kind = 'HOLD' AND hold_id IN (SELECT value FROM json_each(?1)) \
                 RETURNING seat_id, hold_id",
            )
            .bind(codec::to_json(&ended)?)
            .fetch_all(&mut *conn)
            .await
            .map_err(commit_error)?;
            for (seat, hold) in seats {
                freed.push((
                    codec::parse(&seat, "seat_id")?,
                    codec::parse(&hold, "hold_id")?,
                ));
            }
        }
    }
    plan.check_freed(&freed)?;

    // 3. The new holds (a hold id already taken: someone else committed this grant) and their
    //    claims: a seat is taken only if unclaimed or its claim has expired by time.
    if !plan.new_holds.is_empty() {
        let holds = plan
            .new_holds
            .iter()
            .map(|hold| {
                Ok(serde_json::json!({
                    "hold_id": hold.hold_id.to_string(),
                    "request_id": hold.request_id.to_string(),
                    "user_id": hold.user_id.as_str(),
                    "seat_ids": codec::to_json(&hold.seat_ids)?,
                    "status": if hold.released { "RELEASED" } else { "HELD" },
                    "expires_at": codec::millis(hold.expires_at),
                    "ended_at": hold.released.then_some(at),
                }))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let inserted = sqlx::query(
            "INSERT INTO holds \
                 (hold_id, request_id, user_id, show_id, seat_ids, status, created_at, \
                  expires_at, ended_at) \
             SELECT value ->> 'hold_id', value ->> 'request_id', value ->> 'user_id', ?2, \
                    value ->> 'seat_ids', value ->> 'status', ?3, value ->> 'expires_at', \
                    value ->> 'ended_at' \
             FROM jsonb_each(?1)",
        )
        .bind(codec::to_json(&holds)?)
        .bind(&show_text)
        .bind(at)
        .execute(&mut *conn)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if codec::is_unique_violation(&e) => return Err(CommitError::SeatConflict),
            Err(e) => return Err(commit_error(e)),
        }
    }
    if !plan.claims.is_empty() {
        let claims: Vec<_> = plan
            .claims
            .iter()
            .map(|claim| {
                serde_json::json!([
                    claim.seat_id.to_string(),
                    claim.hold_id.to_string(),
                    codec::millis(claim.expires_at),
                ])
            })
            .collect();
        // `WHERE true` tells SQLite's parser that ON CONFLICT belongs to the INSERT, not to a
        // join in the SELECT.
        let claimed = sqlx::query(
            "INSERT INTO seat_claims (show_id, seat_id, hold_id, kind, expires_at) \
             SELECT ?2, value ->> 0, value ->> 1, 'HOLD', value ->> 2 FROM jsonb_each(?1) \
             WHERE true \
             ON CONFLICT (show_id, seat_id) DO UPDATE \
             SET hold_id = excluded.hold_id, kind = 'HOLD', expires_at = excluded.expires_at \
             WHERE seat_claims.expires_at <= ?3",
        )
        .bind(codec::to_json(&claims)?)
        .bind(&show_text)
        .bind(at)
        .execute(&mut *conn)
        .await
        .map_err(commit_error)?;
        if claimed.rows_affected() != plan.claims.len() as u64 {
            // A live claim of another hold or order: the database refuses the double
            // allocation the batch would make.
            return Err(CommitError::SeatConflict);
        }
    }

    // 4. Holds granted and released again within the batch give their seats back.
    if !plan.released_in_batch.is_empty() {
        let holds: Vec<String> = plan
            .released_in_batch
            .iter()
            .map(ToString::to_string)
            .collect();
        sqlx::query(
            "DELETE FROM seat_claims \
             WHERE kind = 'HOLD' AND hold_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(codec::to_json(&holds)?)
        .execute(&mut *conn)
        .await
        .map_err(commit_error)?;
    }
    Ok(decided)
}

async fn delete_hold_claims(conn: &mut SqliteConnection, hold: HoldId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM seat_claims WHERE hold_id = ?1 AND kind = 'HOLD'")
        .bind(hold.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}
