//! `HoldStore`: holds, the seat claims that back them, and the commit of a decided batch.
//!
//! The decision engine has already decided who gets which seat, but it decided against a
//! snapshot, and two workers may decide the same show at once (a redelivered message, an expired
//! visibility timeout). So the commit does not trust the batch: every grant must find its
//! request still undecided, its hold id unused, and every seat either unclaimed or carrying a
//! claim that has expired by time. If any check fails the whole batch is rolled back
//! ([`CommitError::SeatConflict`]) and the worker decides again from fresh state.
//!
//! ## Why READ COMMITTED is enough
//!
//! Nothing the commit decides on is read from its snapshot. Every check is a guarded write:
//! `UPDATE booking_requests ... WHERE` the status is still undecided, `INSERT INTO holds ...
//! ON CONFLICT DO NOTHING`, and `INSERT INTO seat_claims ... ON CONFLICT (show_id, seat_id) DO
//! UPDATE ... WHERE seat_claims.expires_at <= $decided_at`. When such a write meets a row that a
//! concurrent transaction has changed but not committed, PostgreSQL waits for that transaction,
//! then re-evaluates the condition against the row version it committed (READ COMMITTED's
//! "EvalPlanQual" recheck; for `ON CONFLICT` the conflicting row is always locked and checked in
//! its newest committed version). So of two workers claiming one seat, the second sees the
//! first's live claim and touches nothing: zero rows, `SeatConflict`, rollback. The test
//! `racing_claims_on_one_seat_commit_exactly_once` (tests/concurrency.rs) holds one transaction
//! open mid-claim to prove it. SERIALIZABLE would only add serialization failures for
//! read/write overlaps that these guards already make harmless (and they are mapped to
//! `SeatConflict` anyway, as are deadlocks, should a DBA change the default).
//!
//! ## Round trips
//!
//! Semantics are those of the embedded store, which applies the decisions one by one. Here a
//! batch of any size is `BEGIN`, two bulk statements (every list bound once as an array and
//! expanded with `UNNEST`), rarely a third, and `COMMIT`. The one-by-one order matters only
//! where a decision depends on an earlier one of the same batch (a user's new hold releasing
//! the hold they got earlier in the batch; a seat freed by a release and claimed by a later
//! grant); [`Plan::new`] works those out in memory, exactly as applying them in order would,
//! and the database checks the rest.

use crate::PgStore;
use crate::codec::{self, EXPIRED_MESSAGE, HoldRow};
use async_trait::async_trait;
use booking_core::ports::{CommitError, HoldStore, ReleaseError, StoreError};
use booking_core::{
    BatchOutcome, Decision, Hold, HoldId, RequestId, RequestOutcome, SeatId, SeatStatus, ShowId,
    ShowSnapshot, SnapshotHold, UserId, rejection_message,
};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

#[async_trait]
impl HoldStore for PgStore {
    #[tracing::instrument(skip_all, fields(show_id = %show))]
    async fn load_show_state(
        &self,
        show: ShowId,
        now: DateTime<Utc>,
    ) -> Result<ShowSnapshot, StoreError> {
        // One statement, so live holds and booked seats come from the same snapshot without a
        // transaction (one round trip). Holds come oldest first: if a malformed state ever had
        // two live holds of one user, the engine treats the last one as theirs.
        let rows = sqlx::query!(
            r#"SELECT h.hold_id AS "hold_id?", h.user_id AS "user_id?", h.seat_ids AS "seat_ids!",
                      h.expires_at AS "expires_at?", h.created_at AS "created_at?"
               FROM holds h
               WHERE h.show_id = $1 AND h.status = 'HELD' AND h.expires_at > $2
               UNION ALL
               SELECT NULL, NULL, ARRAY[c.seat_id], NULL, NULL
               FROM seat_claims c
               WHERE c.show_id = $1 AND c.kind = 'ORDER' AND c.expires_at > $2
               ORDER BY 5, 1"#,
            show.as_uuid(),
            now
        )
        .fetch_all(self.pool())
        .await
        .map_err(codec::store_error)?;
        let mut snapshot = ShowSnapshot::default();
        for row in rows {
            let seats = codec::parse_seats(&row.seat_ids, "seat_ids")?;
            match (row.hold_id, row.user_id, row.expires_at) {
                (Some(hold_id), Some(user_id), Some(expires_at)) => {
                    snapshot.holds.push(SnapshotHold {
                        hold_id: HoldId::from_uuid(hold_id),
                        user_id: codec::parse(&user_id, "user_id")?,
                        seat_ids: seats,
                        expires_at,
                    });
                }
                _ => snapshot.booked.extend(seats),
            }
        }
        Ok(snapshot)
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
        let plan = Plan::new(batch)?;
        // Explicitly READ COMMITTED (see the module docs), whatever the server's default. Every
        // statement of the batch reaches its rows through a key (primary keys, the claims'
        // (show_id, seat_id) and hold_id indexes), so for this transaction only: keep the one
        // plan each prepared statement has instead of re-planning the large statements on every
        // call, and never take a sequential scan. Young tables (a new show, stale statistics)
        // otherwise tempt the planner into scanning every hold of the show per release: measured
        // 3.7 ms of a 5 ms commit with 2,600 holds. All in the one round trip of BEGIN.
        let mut tx = self
            .pool()
            .begin_with(
                "BEGIN ISOLATION LEVEL READ COMMITTED; \
                 SET LOCAL plan_cache_mode = force_generic_plan; \
                 SET LOCAL enable_seqscan = off",
            )
            .await
            .map_err(commit_error)?;
        match write_batch(&mut tx, show, &plan, decided_at).await {
            Ok(decided) => tx.commit().await.map(|()| decided).map_err(commit_error),
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
        let rows = sqlx::query!(
            "SELECT seat_id, kind FROM seat_claims WHERE show_id = $1 AND expires_at > $2",
            show.as_uuid(),
            now
        )
        .fetch_all(self.pool())
        .await
        .map_err(codec::store_error)?;
        rows.into_iter()
            .map(|row| {
                let status = match row.kind.as_str() {
                    "HOLD" => SeatStatus::Held,
                    "ORDER" => SeatStatus::Booked,
                    other => return Err(codec::corrupt(format_args!("kind: {other:?}"))),
                };
                Ok((codec::parse(&row.seat_id, "seat_id")?, status))
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(hold_id = %hold))]
    async fn get_hold(&self, hold: HoldId) -> Result<Option<Hold>, StoreError> {
        let row = sqlx::query_as!(
            HoldRow,
            "SELECT hold_id, request_id, user_id, show_id, seat_ids, status, created_at, \
                    expires_at, ended_at \
             FROM holds WHERE hold_id = $1",
            hold.as_uuid()
        )
        .fetch_optional(self.pool())
        .await
        .map_err(codec::store_error)?;
        row.map(Hold::try_from).transpose()
    }

    #[tracing::instrument(skip_all, fields(hold_id = %hold))]
    async fn release_hold(
        &self,
        hold: HoldId,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<Hold, ReleaseError> {
        let store = |e| ReleaseError::Store(codec::store_error(e));
        // One statement (its own transaction): the guarded update and the removal of the
        // hold's claims commit together. Claims of the hold only: a seat taken over after an
        // expiry belongs to its new hold, and a released hold is live, so it has not expired.
        let released = sqlx::query_as!(
            HoldRow,
            r#"WITH released AS (
                   UPDATE holds SET status = 'RELEASED', ended_at = $3
                   WHERE hold_id = $1 AND user_id = $2 AND status = 'HELD' AND expires_at > $3
                   RETURNING hold_id, request_id, user_id, show_id, seat_ids, status, created_at,
                             expires_at, ended_at
               ),
               freed AS (
                   DELETE FROM seat_claims c USING released r
                   WHERE c.hold_id = r.hold_id AND c.kind = 'HOLD'
               )
               SELECT hold_id AS "hold_id!", request_id AS "request_id!", user_id AS "user_id!",
                      show_id AS "show_id!", seat_ids AS "seat_ids!", status AS "status!",
                      created_at AS "created_at!", expires_at AS "expires_at!", ended_at
               FROM released"#,
            hold.as_uuid(),
            user.as_str(),
            now
        )
        .fetch_optional(self.pool())
        .await
        .map_err(store)?;
        if let Some(row) = released {
            return Ok(Hold::try_from(row)?);
        }
        // Nothing released: say why, as of `now`.
        let Some(found) = self.get_hold(hold).await? else {
            return Err(ReleaseError::NotFound);
        };
        if found.user_id != *user {
            return Err(ReleaseError::NotFound);
        }
        Err(ReleaseError::NotHeld(found.status_at(now)))
    }

    #[tracing::instrument(skip_all, fields(now = %now))]
    async fn expire_holds(&self, now: DateTime<Utc>) -> Result<Vec<Hold>, StoreError> {
        // Only claims still naming these holds are removed: a seat taken over since belongs to
        // its new hold (a concurrent take-over is waited for and rechecked).
        let rows = sqlx::query_as!(
            HoldRow,
            r#"WITH expired AS (
                   UPDATE holds SET status = 'EXPIRED', ended_at = expires_at
                   WHERE status = 'HELD' AND expires_at <= $1
                   RETURNING hold_id, request_id, user_id, show_id, seat_ids, status, created_at,
                             expires_at, ended_at
               ),
               freed AS (
                   DELETE FROM seat_claims c USING expired e
                   WHERE c.hold_id = e.hold_id AND c.kind = 'HOLD'
               )
               SELECT hold_id AS "hold_id!", request_id AS "request_id!", user_id AS "user_id!",
                      show_id AS "show_id!", seat_ids AS "seat_ids!", status AS "status!",
                      created_at AS "created_at!", expires_at AS "expires_at!", ended_at
               FROM expired"#,
            now
        )
        .fetch_all(self.pool())
        .await
        .map_err(codec::store_error)?;
        let mut expired: Vec<Hold> = codec::decode_all(rows)?;
        expired.sort_by_key(|h| (h.expires_at, h.hold_id));
        Ok(expired)
    }

    #[tracing::instrument(skip_all)]
    async fn ping(&self) -> Result<(), StoreError> {
        if self.inner.intake.as_ref().is_some_and(|w| w.is_closed()) {
            return Err(StoreError::unavailable("the request writer has stopped"));
        }
        sqlx::query_scalar!("SELECT 1")
            .fetch_one(self.pool())
            .await
            .map_err(codec::store_error)?;
        Ok(())
    }
}

/// A driver error inside `commit_batch`: a lost race (deadlock, serialization failure, a
/// constraint another writer got to first) is a conflict, worth deciding again.
fn commit_error(e: sqlx::Error) -> CommitError {
    if codec::is_concurrency_failure(&e)
        || matches!(&e, sqlx::Error::Database(db) if db.is_unique_violation())
    {
        CommitError::SeatConflict
    } else {
        CommitError::Store(codec::store_error(e))
    }
}

/// A batch turned into columns for the bulk statements, with the dependencies between its own
/// decisions resolved the way applying them one by one would resolve them.
#[derive(Debug, Default)]
struct Plan {
    // Every request's outcome, one row per request, sorted by request id (lock order).
    req_ids: Vec<Uuid>,
    /// Set for grants only: the grant's guard also checks the request's owner.
    req_users: Vec<Option<String>>,
    req_status: Vec<String>,
    req_message: Vec<String>,
    req_hold: Vec<Option<Uuid>>,
    req_hold_expires: Vec<Option<DateTime<Utc>>>,
    /// Joined seat lists (see `codec::joined_seats`); `None` is SQL NULL.
    req_unavailable: Vec<Option<String>>,
    req_alternatives: Vec<Option<String>>,
    grants: usize,

    // Holds that existed before the batch and that grants release (user's previous hold).
    rel_holds: Vec<Uuid>,
    rel_users: Vec<String>,
    /// Position (among the grants) of the grant that releases each of them.
    rel_position: HashMap<Uuid, usize>,

    // New holds, sorted by hold id; those released again later in the batch are RELEASED.
    hold_ids: Vec<Uuid>,
    hold_requests: Vec<Uuid>,
    hold_users: Vec<String>,
    hold_seats: Vec<String>,
    hold_status: Vec<String>,
    hold_expires: Vec<DateTime<Utc>>,
    /// Whether the hold is released again later in the batch (then it ends at `decided_at`).
    hold_released: Vec<bool>,

    // One claim per seat a grant takes, sorted by seat id, naming the last grant that took it.
    claim_seats: Vec<String>,
    claim_holds: Vec<Uuid>,
    claim_expires: Vec<DateTime<Utc>>,
    /// For each claimed seat, the position of the first grant that claims it.
    first_claim: HashMap<String, usize>,

    /// New holds released by a later grant of the same batch: their claims go again.
    released_in_batch: Vec<Uuid>,
}

/// A new hold while the plan is being worked out.
struct NewHold<'a> {
    hold_id: HoldId,
    user_id: &'a UserId,
    seats: &'a [SeatId],
    live: bool,
}

impl Plan {
    /// Resolves the batch in decision order. Refuses (`SeatConflict`) what applying it one
    /// decision at a time would refuse without even asking the database: a request decided
    /// twice with a grant among the decisions, a hold id granted twice, a seat granted while
    /// an earlier grant of the batch still holds it.
    fn new(batch: &BatchOutcome) -> Result<Self, CommitError> {
        struct Outcome {
            user: Option<String>,
            status: &'static str,
            message: String,
            hold: Option<(Uuid, DateTime<Utc>)>,
            unavailable: Option<String>,
            alternatives: Option<String>,
        }
        let mut plan = Plan::default();
        let mut outcomes: BTreeMap<Uuid, Outcome> = BTreeMap::new();
        let mut new_holds: Vec<NewHold<'_>> = Vec::new();
        let mut hold_index: HashMap<HoldId, usize> = HashMap::new();
        // Seat → index (in `new_holds`) of the live new hold that has it.
        let mut owner: HashMap<SeatId, usize> = HashMap::new();
        let mut last_claim: BTreeMap<SeatId, usize> = BTreeMap::new();

        for decision in &batch.decisions {
            let id = decision.request_id().as_uuid();
            if outcomes.contains_key(&id) {
                // Applied in order, a later decision for a decided request is a no-op, except a
                // grant, whose guard fails.
                if matches!(decision, Decision::Granted { .. }) {
                    return Err(CommitError::SeatConflict);
                }
                continue;
            }
            let outcome = match decision {
                Decision::Granted {
                    user_id,
                    hold_id,
                    seat_ids,
                    expires_at,
                    released,
                    ..
                } => {
                    let position = new_holds.len();
                    if let Some(previous) = released {
                        match hold_index.get(previous) {
                            // The user's hold from earlier in this batch: released here, its
                            // seats free for the rest of the batch.
                            Some(&i) if new_holds[i].live && new_holds[i].user_id == user_id => {
                                new_holds[i].live = false;
                                owner.retain(|_, o| *o != i);
                            }
                            // Already released in this batch, or another user's: a no-op.
                            Some(_) => {}
                            None => {
                                if plan
                                    .rel_position
                                    .insert(previous.as_uuid(), position)
                                    .is_none()
                                {
                                    plan.rel_holds.push(previous.as_uuid());
                                    plan.rel_users.push(user_id.as_str().to_owned());
                                }
                            }
                        }
                    }
                    if hold_index.insert(*hold_id, position).is_some() {
                        // Inserting the same hold twice: the second insert fails.
                        return Err(CommitError::SeatConflict);
                    }
                    for seat in seat_ids {
                        if owner.insert(*seat, position).is_some() {
                            return Err(CommitError::SeatConflict);
                        }
                        last_claim.insert(*seat, position);
                        plan.first_claim.entry(seat.to_string()).or_insert(position);
                    }
                    new_holds.push(NewHold {
                        hold_id: *hold_id,
                        user_id,
                        seats: seat_ids,
                        live: true,
                    });
                    plan.hold_requests.push(id);
                    plan.hold_expires.push(*expires_at);
                    plan.grants += 1;
                    Outcome {
                        user: Some(user_id.as_str().to_owned()),
                        status: "SUCCESS",
                        message: RequestOutcome::Granted {
                            hold_id: *hold_id,
                            hold_expires_at: *expires_at,
                        }
                        .message(),
                        hold: Some((hold_id.as_uuid(), *expires_at)),
                        unavailable: None,
                        alternatives: None,
                    }
                }
                Decision::Rejected {
                    unavailable,
                    alternatives,
                    ..
                } => Outcome {
                    user: None,
                    status: "FAILED",
                    message: rejection_message(unavailable),
                    hold: None,
                    unavailable: Some(codec::joined_seats(unavailable)),
                    alternatives: Some(codec::joined_seats(alternatives)),
                },
                Decision::Expired { .. } => Outcome {
                    user: None,
                    status: "EXPIRED",
                    message: EXPIRED_MESSAGE.to_owned(),
                    hold: None,
                    unavailable: None,
                    alternatives: None,
                },
                Decision::Invalid { reason, .. } => Outcome {
                    user: None,
                    status: "FAILED",
                    message: reason.clone(),
                    hold: None,
                    unavailable: Some(String::new()),
                    alternatives: Some(String::new()),
                },
            };
            outcomes.insert(id, outcome);
        }

        for (id, o) in outcomes {
            plan.req_ids.push(id);
            plan.req_users.push(o.user);
            plan.req_status.push(o.status.to_owned());
            plan.req_message.push(o.message);
            plan.req_hold.push(o.hold.map(|(h, _)| h));
            plan.req_hold_expires.push(o.hold.map(|(_, e)| e));
            plan.req_unavailable.push(o.unavailable);
            plan.req_alternatives.push(o.alternatives);
        }

        let mut holds: Vec<(usize, &NewHold<'_>)> = new_holds.iter().enumerate().collect();
        holds.sort_by_key(|(_, h)| h.hold_id);
        let (requests, expires) = (
            std::mem::take(&mut plan.hold_requests),
            std::mem::take(&mut plan.hold_expires),
        );
        for (i, hold) in holds {
            plan.hold_ids.push(hold.hold_id.as_uuid());
            plan.hold_requests.push(requests[i]);
            plan.hold_users.push(hold.user_id.as_str().to_owned());
            plan.hold_seats.push(codec::joined_seats(hold.seats));
            plan.hold_expires.push(expires[i]);
            plan.hold_released.push(!hold.live);
            if hold.live {
                plan.hold_status.push("HELD".to_owned());
            } else {
                plan.hold_status.push("RELEASED".to_owned());
                plan.released_in_batch.push(hold.hold_id.as_uuid());
            }
        }
        for (seat, i) in last_claim {
            plan.claim_seats.push(seat.to_string());
            plan.claim_holds.push(new_holds[i].hold_id.as_uuid());
            plan.claim_expires.push(expires[i]);
        }
        Ok(plan)
    }
}

/// The body of `commit_batch`, inside its transaction. Any error means: roll back.
async fn write_batch(
    conn: &mut PgConnection,
    show: ShowId,
    plan: &Plan,
    decided_at: DateTime<Utc>,
) -> Result<Vec<RequestId>, CommitError> {
    let show_id = show.as_uuid();

    // The guards on `booking_requests` and `holds` are spelled so that no index can serve them
    // (`IS NOT DISTINCT FROM`, `NOT IN` the final states, which the CHECK constraints make
    // equivalent to `=` and `IN` the live ones): the only way left to the rows is the primary
    // key, one probe per element of the batch. Otherwise, with statistics that lag behind a hot
    // new show (they always do), the planner picks the (show_id, status) index and walks every
    // pending request of the show on every commit: measured 60 ms instead of 1 ms per batch
    // with a few thousand requests waiting.
    //
    // 1. Every request's outcome (guarded: only undecided requests change; a grant also checks
    //    its owner), the claims of holds that ran out (dead by time already; removing them keeps
    //    the table from growing; the holds themselves stay HELD until `expire_holds` writes
    //    EXPIRED down and returns them, so the sweep can announce them even on a busy show;
    //    dead claims another writer has locked are its business: skipped, not waited for, which
    //    spares racing workers lock waits and deadlocks over mere housekeeping),
    //    and the users' previous holds that grants release, with their live claims.
    let first = sqlx::query!(
        r#"WITH decided AS (
               UPDATE booking_requests r
               SET status = d.status, processed_at = $2, result_message = d.message,
                   hold_id = d.hold_id, hold_expires_at = d.hold_expires_at,
                   unavailable = string_to_array(d.unavailable, ','),
                   alternatives = string_to_array(d.alternatives, ',')
               FROM UNNEST($3::uuid[], $4::text[], $5::text[], $6::text[], $7::uuid[],
                           $8::timestamptz[], $9::text[], $10::text[])
                    AS d(request_id, user_id, status, message, hold_id, hold_expires_at,
                         unavailable, alternatives)
               WHERE r.request_id = d.request_id
                 AND r.show_id IS NOT DISTINCT FROM $1
                 AND r.status NOT IN ('SUCCESS', 'FAILED', 'EXPIRED')
                 AND (d.user_id IS NULL OR r.user_id = d.user_id)
               RETURNING r.request_id, d.user_id IS NOT NULL AS granted
           ),
           dead AS (
               DELETE FROM seat_claims c
               WHERE c.show_id = $1
                 AND c.seat_id IN (SELECT s.seat_id FROM seat_claims s
                                   WHERE s.show_id = $1 AND s.kind = 'HOLD'
                                     AND s.expires_at <= $2
                                   FOR UPDATE SKIP LOCKED)
           ),
           released AS (
               UPDATE holds h SET status = 'RELEASED', ended_at = $2
               FROM UNNEST($11::uuid[], $12::text[]) AS x(hold_id, user_id)
               WHERE h.hold_id = x.hold_id AND h.user_id = x.user_id
                 AND h.show_id IS NOT DISTINCT FROM $1
                 AND h.status NOT IN ('RELEASED', 'EXPIRED', 'CONVERTED')
               RETURNING h.hold_id
           ),
           freed AS (
               DELETE FROM seat_claims c USING released x
               WHERE c.hold_id = x.hold_id AND c.kind = 'HOLD' AND c.expires_at > $2
               RETURNING c.seat_id, c.hold_id
           )
           SELECT (SELECT count(*) FROM decided WHERE granted) AS "granted!",
                  (SELECT coalesce(array_agg(request_id), '{}') FROM decided) AS "decided!",
                  (SELECT coalesce(array_agg(seat_id ORDER BY seat_id), '{}') FROM freed)
                      AS "freed_seats!",
                  (SELECT coalesce(array_agg(hold_id ORDER BY seat_id), '{}') FROM freed)
                      AS "freed_holds!""#,
        show_id,
        decided_at,
        &plan.req_ids,
        &plan.req_users as _,
        &plan.req_status,
        &plan.req_message,
        &plan.req_hold as _,
        &plan.req_hold_expires as _,
        &plan.req_unavailable as _,
        &plan.req_alternatives as _,
        &plan.rel_holds,
        &plan.rel_users
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(commit_error)?;

    if first.granted != plan.grants as i64 {
        // A granted request was decided already (a duplicate delivery committed first): this
        // batch was decided against stale state.
        return Err(CommitError::SeatConflict);
    }
    // A seat freed by a release at grant k was, for the grants before k, still the previous
    // hold's: a grant before k claiming it would have met a live claim.
    for (seat, hold) in first.freed_seats.iter().zip(&first.freed_holds) {
        if let (Some(&claimed_at), Some(&released_at)) =
            (plan.first_claim.get(seat), plan.rel_position.get(hold))
            && claimed_at < released_at
        {
            return Err(CommitError::SeatConflict);
        }
    }
    let decided: Vec<RequestId> = first
        .decided
        .into_iter()
        .map(RequestId::from_uuid)
        .collect();
    if plan.grants == 0 {
        return Ok(decided);
    }

    // 2. The new holds (a hold id already taken: someone else committed this grant) and their
    //    seat claims: a seat is taken only if unclaimed or its claim has expired by time.
    let hold_ended: Vec<Option<DateTime<Utc>>> = plan
        .hold_released
        .iter()
        .map(|&released| released.then_some(decided_at))
        .collect();
    let second = sqlx::query!(
        r#"WITH new_holds AS (
               INSERT INTO holds
                   (hold_id, request_id, user_id, show_id, seat_ids, status, created_at,
                    expires_at, ended_at)
               SELECT n.hold_id, n.request_id, n.user_id, $1, string_to_array(n.seat_ids, ','),
                      n.status, $2, n.expires_at, n.ended_at
               FROM UNNEST($3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::text[],
                           $8::timestamptz[], $9::timestamptz[])
                    AS n(hold_id, request_id, user_id, seat_ids, status, expires_at, ended_at)
               ORDER BY n.hold_id
               ON CONFLICT DO NOTHING
               RETURNING hold_id
           ),
           claimed AS (
               INSERT INTO seat_claims (show_id, seat_id, hold_id, kind, expires_at)
               SELECT $1, c.seat_id, c.hold_id, 'HOLD', c.expires_at
               FROM UNNEST($10::text[], $11::uuid[], $12::timestamptz[])
                    AS c(seat_id, hold_id, expires_at)
               ORDER BY c.seat_id
               ON CONFLICT (show_id, seat_id) DO UPDATE
               SET hold_id = excluded.hold_id, kind = 'HOLD', expires_at = excluded.expires_at
               WHERE seat_claims.expires_at <= $2
               RETURNING seat_id
           )
           SELECT (SELECT count(*) FROM new_holds) AS "holds!",
                  (SELECT count(*) FROM claimed) AS "claims!""#,
        show_id,
        decided_at,
        &plan.hold_ids,
        &plan.hold_requests,
        &plan.hold_users,
        &plan.hold_seats,
        &plan.hold_status,
        &plan.hold_expires,
        &hold_ended as _,
        &plan.claim_seats,
        &plan.claim_holds,
        &plan.claim_expires
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(commit_error)?;
    if second.holds != plan.hold_ids.len() as i64 || second.claims != plan.claim_seats.len() as i64
    {
        // A hold that exists already, or a live claim of another hold or order: the database
        // refuses the double allocation the batch would make.
        return Err(CommitError::SeatConflict);
    }

    // 3. Rarely: holds granted and released again within the batch give their seats back.
    if !plan.released_in_batch.is_empty() {
        sqlx::query!(
            "DELETE FROM seat_claims \
             WHERE show_id = $1 AND kind = 'HOLD' AND hold_id = ANY($2)",
            show_id,
            &plan.released_in_batch
        )
        .execute(&mut *conn)
        .await
        .map_err(commit_error)?;
    }
    Ok(decided)
}
