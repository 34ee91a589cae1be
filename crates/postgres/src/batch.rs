//! The batch writer: a decided batch, as the core's [`CommitPlan`], written with two bulk
//! statements (rarely a third) inside the transaction `commit_batch` opened.
//!
//! The plan says what to write; this module only turns it into one array per column (bound
//! once, expanded with `UNNEST`) and runs the statements. Every list is sorted by its key, as the
//! plan gives it: that is the order rows are locked in, so two workers committing overlapping
//! batches wait for each other instead of deadlocking.

use crate::codec;
use booking_core::commit::CommitPlan;
use booking_core::ports::{CommitError, StoreError};
use booking_core::{HoldId, RequestId, ShowId};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// A driver error inside `commit_batch`: a lost race (deadlock, serialization failure, a
/// constraint another writer got to first) is a conflict, worth deciding again.
pub(crate) fn commit_error(e: sqlx::Error) -> CommitError {
    if codec::is_concurrency_failure(&e) || booking_sql::errors::is_unique_violation(&e) {
        CommitError::SeatConflict
    } else {
        CommitError::Store(codec::store_error(e))
    }
}

/// A commit plan as the bulk statements bind it: one array per column.
#[derive(Debug, Default)]
struct Columns {
    // Every request's outcome, one row per request, by request id.
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

    // Stored holds that grants release (each user's previous hold).
    rel_holds: Vec<Uuid>,
    rel_users: Vec<String>,

    // New holds, by hold id; those released again later in the batch are RELEASED.
    hold_ids: Vec<Uuid>,
    hold_requests: Vec<Uuid>,
    hold_users: Vec<String>,
    hold_seats: Vec<String>,
    hold_status: Vec<String>,
    hold_expires: Vec<DateTime<Utc>>,
    hold_released: Vec<bool>,

    // One claim per seat, by seat id.
    claim_seats: Vec<String>,
    claim_holds: Vec<Uuid>,
    claim_expires: Vec<DateTime<Utc>>,

    /// New holds released within the batch: their claims go again.
    released_in_batch: Vec<Uuid>,
}

impl Columns {
    fn of(plan: &CommitPlan) -> Self {
        let mut c = Columns::default();
        for planned in &plan.outcomes {
            let columns = planned.outcome.columns();
            c.req_ids.push(planned.request_id.as_uuid());
            c.req_users
                .push(planned.grant_to.as_ref().map(|u| u.as_str().to_owned()));
            c.req_status
                .push(planned.outcome.status().as_str().to_owned());
            c.req_message.push(columns.message.unwrap_or_default());
            c.req_hold.push(columns.hold_id.map(|h| h.as_uuid()));
            c.req_hold_expires.push(columns.hold_expires_at);
            c.req_unavailable
                .push(columns.unavailable.as_deref().map(codec::joined_seats));
            c.req_alternatives
                .push(columns.alternatives.as_deref().map(codec::joined_seats));
        }
        for release in &plan.releases {
            c.rel_holds.push(release.hold_id.as_uuid());
            c.rel_users.push(release.user_id.as_str().to_owned());
        }
        for hold in &plan.new_holds {
            c.hold_ids.push(hold.hold_id.as_uuid());
            c.hold_requests.push(hold.request_id.as_uuid());
            c.hold_users.push(hold.user_id.as_str().to_owned());
            c.hold_seats.push(codec::joined_seats(&hold.seat_ids));
            let status = if hold.released { "RELEASED" } else { "HELD" };
            c.hold_status.push(status.to_owned());
            c.hold_expires.push(hold.expires_at);
            c.hold_released.push(hold.released);
        }
        for claim in &plan.claims {
            c.claim_seats.push(claim.seat_id.to_string());
            c.claim_holds.push(claim.hold_id.as_uuid());
            c.claim_expires.push(claim.expires_at);
        }
        c.released_in_batch = plan.released_in_batch.iter().map(|h| h.as_uuid()).collect();
        c
    }
}

/// The body of `commit_batch`, inside its transaction. Any error means: roll back.
pub(crate) async fn write_batch(
    conn: &mut PgConnection,
    show: ShowId,
    plan: &CommitPlan,
    decided_at: DateTime<Utc>,
) -> Result<Vec<RequestId>, CommitError> {
    let show_id = show.as_uuid();
    let columns = Columns::of(plan);

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
        &columns.req_ids,
        &columns.req_users as _,
        &columns.req_status,
        &columns.req_message,
        &columns.req_hold as _,
        &columns.req_hold_expires as _,
        &columns.req_unavailable as _,
        &columns.req_alternatives as _,
        &columns.rel_holds,
        &columns.rel_users
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
    let freed = first
        .freed_seats
        .iter()
        .zip(&first.freed_holds)
        .map(|(seat, hold)| Ok((codec::parse(seat, "seat_id")?, HoldId::from_uuid(*hold))))
        .collect::<Result<Vec<_>, StoreError>>()?;
    plan.check_freed(&freed)?;
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
    let hold_ended: Vec<Option<DateTime<Utc>>> = columns
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
        &columns.hold_ids,
        &columns.hold_requests,
        &columns.hold_users,
        &columns.hold_seats,
        &columns.hold_status,
        &columns.hold_expires,
        &hold_ended as _,
        &columns.claim_seats,
        &columns.claim_holds,
        &columns.claim_expires
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(commit_error)?;
    if second.holds != columns.hold_ids.len() as i64
        || second.claims != columns.claim_seats.len() as i64
    {
        // A hold that exists already, or a live claim of another hold or order: the database
        // refuses the double allocation the batch would make.
        return Err(CommitError::SeatConflict);
    }

    // 3. Rarely: holds granted and released again within the batch give their seats back.
    if !columns.released_in_batch.is_empty() {
        sqlx::query!(
            "DELETE FROM seat_claims \
             WHERE show_id = $1 AND kind = 'HOLD' AND hold_id = ANY($2)",
            show_id,
            &columns.released_in_batch
        )
        .execute(&mut *conn)
        .await
        .map_err(commit_error)?;
    }
    Ok(decided)
}
