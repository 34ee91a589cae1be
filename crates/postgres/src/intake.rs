//! `insert_request`: making an accepted request durable before the client hears 202.
//!
//! Every write goes through [`insert_batch`]: one statement that inserts a whole list of requests
//! (arrays bound once, expanded with `UNNEST`), skips the ones that repeat an earlier request
//! (`ON CONFLICT DO NOTHING` on the request id and on `(user_id, idempotency_key)`) and the ones
//! for a show that does not exist, and returns the numbers it gave out. It runs in a transaction
//! of its own, begun with [`INTAKE_BEGIN`]: when that commits, it is on disk (with
//! `synchronous_commit = on`, the server default). A second query runs only when something was
//! skipped, to find the earlier request it repeats.
//!
//! **Planned on every call.** The cap's count (below) has two indexes to choose from: the
//! partial `booking_requests_open_by_user (user_id, show_id)` and `(show_id, status)`. A
//! prepared statement that PostgreSQL plans while the table is still nearly empty (a fresh
//! database, a first sale) may keep a generic plan that counts through `(show_id, status)`,
//! reading every request the show ever had for each inserted row: measured in the flash sale at
//! 2,000 requests/s, 20 M index entries read for 17,000 inserts, intake down to a quarter of the
//! offered rate, in about half the runs on a fresh database. Planned for each call, the planner
//! sees the table's current size and takes the partial index.
//!
//! **Group commit** ([`IntakeMode::Grouped`](crate::IntakeMode), the default): concurrent
//! callers hand their request to the shared group-commit writer (`booking_sql::group_commit`),
//! which takes everything waiting (up to [`MAX_GROUP`]) and writes it with that one statement
//! (`insert_batch`), answering each caller after the commit. Under load a group fills up while the
//! previous one is being written, so a commit and its WAL flush are shared by hundreds of
//! requests; with no load a group is one request.
//!
//! Measured on this 2-core machine (PostgreSQL 15 on localhost, fsync on; `cargo run --release
//! -p booking-postgres --example throughput -- intake`), 20,000 requests from 200 concurrent
//! callers: grouped ~15,000-19,000 requests/s (~100 requests per commit), direct (one statement
//! per caller, pool of 10) ~4,200-4,400/s. A lone caller waits no longer grouped than direct
//! (0.4-0.5 ms against 0.6-0.7 ms per call: the channel hop costs microseconds, the round trip and commit
//! dominate). PostgreSQL shares WAL flushes between concurrent commits on its own, but each
//! direct insert still pays a statement, a commit record and a round trip of its own, and it
//! holds a pooled connection meanwhile, which the workers need. Grouped it is.
//!
//! The cap on a user's open requests ([`NewBookingRequest::max_open`]) is counted by the same
//! statement, row by row (through the `booking_requests_open_by_user` index), together with the
//! earlier rows of the user in the same group; a row over it is skipped like a conflict and
//! answered [`Inserted::TooManyOpen`]. Grouped, that is exact within the process (one writer);
//! direct, each capped insert first takes an advisory lock on its user and show, so it is exact
//! across processes too ([`insert_one`]). Two local servers grouping one user's requests into
//! one database at the same instant could still both pass it (nobody runs two).
//!
//! Ordering: within one process, one writer task means `seq` is handed out in commit order, so
//! of two requests accepted by the same intake the earlier one is never numbered later. Across
//! processes (several API instances) `seq` follows the identity sequence, which is what
//! "arrival" means there; the per-show order that decides seats is the queue's (SQS FIFO).

use crate::codec::{self, RequestRow};
use booking_core::ports::{Inserted, StoreError};
use booking_core::{BookingRequest, NewBookingRequest};
use booking_sql::IntakeCounters;
use sqlx::{PgConnection, PgPool};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// Most requests written by one statement: bounds the time one commit takes.
pub(crate) const MAX_GROUP: usize = 512;

/// How every intake transaction begins (one round trip): the insert is planned afresh on every
/// call instead of keeping the plan it got while the table was young (see the module docs).
pub(crate) const INTAKE_BEGIN: &str = "BEGIN; SET LOCAL plan_cache_mode = force_custom_plan";

/// Writes a group ([`IntakeMode::Grouped`](crate::IntakeMode)) with [`insert_batch`] in a
/// transaction of its own, committed before it returns.
pub(crate) async fn write_group(
    pool: &PgPool,
    requests: &[NewBookingRequest],
) -> Result<Vec<Result<Inserted, StoreError>>, StoreError> {
    let mut tx = pool
        .begin_with(INTAKE_BEGIN)
        .await
        .map_err(codec::store_error)?;
    let results = insert_batch(&mut tx, requests).await?;
    tx.commit().await.map_err(codec::store_error)?;
    Ok(results)
}

/// The class (first key) of the advisory locks that serialise one user's capped inserts for one
/// show; the second key is a hash of the user and the show. Two-key advisory locks never
/// conflict with the one-key locks of the show locks (`show_locks.rs`).
const OPEN_CAP_LOCK_CLASS: i32 = 0x0CA9;

/// Writes one request on its own ([`IntakeMode::Direct`](crate::IntakeMode)), the deployed api
/// function's way: every instance writes through its own connections, so the open-request cap
/// cannot rely on one writer seeing all of a user's requests. A capped insert therefore first
/// takes an advisory lock on (user, show) in its transaction: of two concurrent requests of one
/// user, in one process or in two, the second one's count is taken after the first one
/// committed, and the cap is exact. It costs the capped insert one more round trip (the lock);
/// requests of different users never wait for each other.
pub(crate) async fn insert_one(
    pool: &PgPool,
    counters: &IntakeCounters,
    request: NewBookingRequest,
) -> Result<Inserted, StoreError> {
    let mut tx = pool
        .begin_with(INTAKE_BEGIN)
        .await
        .map_err(codec::store_error)?;
    if request.max_open.is_some() {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(OPEN_CAP_LOCK_CLASS)
            .bind(format!("{}/{}", request.user_id.as_str(), request.show_id))
            .execute(&mut *tx)
            .await
            .map_err(codec::store_error)?;
    }
    let mut results = insert_batch(&mut tx, std::slice::from_ref(&request)).await?;
    tx.commit().await.map_err(codec::store_error)?;
    counters.record(1);
    results.pop().expect("one result per request")
}

/// Writes `requests` with one statement, inside the caller's transaction, and answers each:
/// new, a repeat of an earlier request, or its own error (an unknown show). The outer error
/// means nothing was written.
pub(crate) async fn insert_batch(
    conn: &mut PgConnection,
    requests: &[NewBookingRequest],
) -> Result<Vec<Result<Inserted, StoreError>>, StoreError> {
    let n = requests.len();
    let mut ids = Vec::with_capacity(n);
    let mut users = Vec::with_capacity(n);
    let mut shows = Vec::with_capacity(n);
    let mut seats = Vec::with_capacity(n);
    let mut keys: Vec<Option<String>> = Vec::with_capacity(n);
    let mut created = Vec::with_capacity(n);
    let mut expires = Vec::with_capacity(n);
    let mut max_open: Vec<Option<i32>> = Vec::with_capacity(n);
    let mut earlier: Vec<i32> = Vec::with_capacity(n);
    // How many earlier rows of this statement each user already has for the show: the
    // statement's count of stored requests cannot see them.
    let mut earlier_in_group: HashMap<(&str, Uuid), i32> = HashMap::new();
    for r in requests {
        let seen = earlier_in_group
            .entry((r.user_id.as_str(), r.show_id.as_uuid()))
            .or_default();
        earlier.push(*seen);
        *seen += 1;
        max_open.push(r.max_open.map(|m| i32::try_from(m).unwrap_or(i32::MAX)));
        ids.push(r.request_id.as_uuid());
        users.push(r.user_id.as_str().to_owned());
        shows.push(r.show_id.as_uuid());
        seats.push(codec::joined_seats(&r.seat_ids));
        keys.push(r.idempotency_key.as_ref().map(|k| k.as_str().to_owned()));
        created.push(r.created_at);
        expires.push(r.expires_at);
    }

    // `ORDER BY ord` inserts (and numbers) the rows in the callers' order; `ON CONFLICT DO
    // NOTHING` also skips a later row of this same statement that repeats an earlier one.
    let inserted = sqlx::query!(
        r#"INSERT INTO booking_requests
               (request_id, user_id, show_id, seat_ids, status, idempotency_key, created_at,
                expires_at)
           SELECT i.request_id, i.user_id, i.show_id, string_to_array(i.seat_ids, ','), 'QUEUED',
                  i.idempotency_key, i.created_at, i.expires_at
           FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[],
                       $6::timestamptz[], $7::timestamptz[], $8::int4[], $9::int4[])
                WITH ORDINALITY
                AS i(request_id, user_id, show_id, seat_ids, idempotency_key, created_at,
                     expires_at, max_open, earlier, ord)
           WHERE EXISTS (SELECT 1 FROM shows s WHERE s.show_id = i.show_id)
             AND (i.max_open IS NULL
                  OR (SELECT count(*) FROM booking_requests b
                      WHERE b.user_id = i.user_id AND b.show_id = i.show_id
                        AND b.status IN ('QUEUED', 'PROCESSING')
                        AND b.dead_lettered_at IS NULL) + i.earlier < i.max_open)
           ORDER BY i.ord
           ON CONFLICT DO NOTHING
           RETURNING request_id, seq"#,
        &ids,
        &users,
        &shows,
        &seats,
        &keys as _,
        &created,
        &expires,
        &max_open as _,
        &earlier
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    let new_seq: HashMap<Uuid, i64> = inserted
        .into_iter()
        .map(|r| (r.request_id, r.seq))
        .collect();

    // Which rows were new: a request id is new at most once in a group (a repeated id in the
    // same group is a repeat of the first).
    let mut claimed = HashSet::with_capacity(new_seq.len());
    let is_new: Vec<bool> = requests
        .iter()
        .map(|r| new_seq.contains_key(&r.request_id.as_uuid()) && claimed.insert(r.request_id))
        .collect();
    let skipped: Vec<&NewBookingRequest> = requests
        .iter()
        .zip(&is_new)
        .filter(|(_, new)| !**new)
        .map(|(r, _)| r)
        .collect();
    let earlier = if skipped.is_empty() {
        Earlier::default()
    } else {
        find_earlier(conn, &skipped).await?
    };

    Ok(requests
        .iter()
        .zip(is_new)
        .map(|(r, new)| {
            if new {
                let mut stored = r.clone();
                stored.created_at = codec::truncate_micros(stored.created_at);
                stored.expires_at = codec::truncate_micros(stored.expires_at);
                let seq = new_seq[&r.request_id.as_uuid()];
                Ok(Inserted::New(BookingRequest::from_new(stored, seq)))
            } else {
                earlier.answer(r)
            }
        })
        .collect())
}

/// The stored requests that skipped ones repeat, and which of their shows exist.
#[derive(Default)]
struct Earlier {
    by_key: HashMap<(String, String), BookingRequest>,
    by_id: HashMap<Uuid, BookingRequest>,
    known_shows: HashSet<Uuid>,
}

impl Earlier {
    /// Mirrors the embedded store: the idempotency key is looked up first, then the request id
    /// (a retried intake after a lost answer), which must belong to the same user.
    fn answer(&self, r: &NewBookingRequest) -> Result<Inserted, StoreError> {
        if let Some(key) = &r.idempotency_key
            && let Some(found) = self
                .by_key
                .get(&(r.user_id.as_str().to_owned(), key.as_str().to_owned()))
        {
            return Ok(Inserted::Existing(found.clone()));
        }
        if let Some(found) = self.by_id.get(&r.request_id.as_uuid()) {
            return if found.user_id == r.user_id {
                Ok(Inserted::Existing(found.clone()))
            } else {
                Err(StoreError::corrupt(format!(
                    "request id {} is already used by another user",
                    r.request_id
                )))
            };
        }
        if !self.known_shows.contains(&r.show_id.as_uuid()) {
            return Err(StoreError::corrupt(format!(
                "show {} does not exist",
                r.show_id
            )));
        }
        // Skipped, new, for a show that exists: the cap left it out.
        if let Some(max) = r.max_open {
            return Ok(Inserted::TooManyOpen { max });
        }
        // Skipped for a conflict whose row is gone again: cannot happen (requests are never
        // deleted), but if it did, a retry would insert it.
        Err(StoreError::unavailable(format!(
            "request {} conflicted with a request that no longer exists; retry",
            r.request_id
        )))
    }
}

async fn find_earlier(
    conn: &mut PgConnection,
    skipped: &[&NewBookingRequest],
) -> Result<Earlier, StoreError> {
    let ids: Vec<Uuid> = skipped.iter().map(|r| r.request_id.as_uuid()).collect();
    let (key_users, keys): (Vec<String>, Vec<String>) = skipped
        .iter()
        .filter_map(|r| {
            let key = r.idempotency_key.as_ref()?;
            Some((r.user_id.as_str().to_owned(), key.as_str().to_owned()))
        })
        .unzip();
    let shows: Vec<Uuid> = skipped.iter().map(|r| r.show_id.as_uuid()).collect();

    // A new statement, so it sees what concurrent writers committed while the insert waited
    // for them, as well as the rows the insert itself committed.
    let rows = sqlx::query_as!(
        RequestRow,
        "SELECT seq, request_id, user_id, show_id, seat_ids, status, idempotency_key, \
                created_at, expires_at, processed_at, hold_id, hold_expires_at, \
                result_message, unavailable, alternatives \
         FROM booking_requests \
         WHERE request_id = ANY($1) \
            OR (user_id, idempotency_key) IN (SELECT * FROM UNNEST($2::text[], $3::text[]))",
        &ids,
        &key_users,
        &keys
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    let known_shows: Vec<Uuid> =
        sqlx::query_scalar!("SELECT show_id FROM shows WHERE show_id = ANY($1)", &shows)
            .fetch_all(&mut *conn)
            .await
            .map_err(codec::store_error)?;

    let mut earlier = Earlier {
        known_shows: known_shows.into_iter().collect(),
        ..Earlier::default()
    };
    for row in rows {
        let request = BookingRequest::try_from(row)?;
        if let Some(key) = &request.idempotency_key {
            earlier.by_key.insert(
                (request.user_id.as_str().to_owned(), key.as_str().to_owned()),
                request.clone(),
            );
        }
        earlier.by_id.insert(request.request_id.as_uuid(), request);
    }
    Ok(earlier)
}
