//! The racing workers of these tests and the checks run after them: a shared simulated clock,
//! requests made concurrently, one worker's batch decided as the processor decides it, and the
//! final state checked in SQL and through the ports.

use booking_core::ports::{CommitError, HoldStore, Inserted, RequestStore};
use booking_core::{
    BookingRequest, DecisionEngine, NewBookingRequest, RequestId, SeatId, SeatStatus, Show, UserId,
};
use booking_postgres::PgStore;
use booking_testkit::postgres::TestDatabase;
use booking_testkit::support::pending;
use booking_testkit::workload::Rng;
use chrono::{DateTime, Duration, Utc};
use sqlx::Row;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};

/// How long a hold lives in simulated time.
pub const TTL: Duration = Duration::seconds(1);
/// How far the simulated clock moves per read.
pub const TICK_MS: i64 = 40;

/// A clock shared by all workers: every `now()` is later than every earlier one.
pub struct SimClock {
    base: DateTime<Utc>,
    ms: AtomicI64,
}

impl SimClock {
    pub fn new() -> Self {
        Self {
            base: booking_testkit::support::now(),
            ms: AtomicI64::new(0),
        }
    }
    pub fn now(&self) -> DateTime<Utc> {
        self.base + Duration::milliseconds(self.ms.fetch_add(TICK_MS, Ordering::SeqCst))
    }
    /// The current time, without moving the clock.
    pub fn peek(&self) -> DateTime<Utc> {
        self.base + Duration::milliseconds(self.ms.load(Ordering::SeqCst))
    }
}

/// `count` requests for 1-3 adjacent seats of `show` (rows × 10 seats) from `users` users,
/// inserted concurrently; returned in arrival order.
pub async fn make_requests(
    store: &PgStore,
    show: &Show,
    rows: u16,
    count: usize,
    users: usize,
    clock: &SimClock,
) -> Vec<BookingRequest> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let user_ids: Vec<UserId> = (0..users)
        .map(|i| booking_testkit::support::fresh_user(&format!("fan{i}")))
        .collect();
    let t = clock.peek();
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let len = 1 + rng.below(3) as u16;
        let row = rng.below(u64::from(rows)) as u16;
        let first = 1 + rng.below(u64::from(11 - len)) as u16;
        let seats: Vec<SeatId> = (first..first + len)
            .map(|n| SeatId::new(row, n).unwrap())
            .collect();
        let new = NewBookingRequest {
            request_id: RequestId::new_random(),
            user_id: user_ids[rng.below(users as u64) as usize].clone(),
            show_id: show.show_id,
            seat_ids: seats,
            idempotency_key: None,
            created_at: t,
            // One in twenty must be decided within two simulated seconds, or expire.
            expires_at: if i % 20 == 7 {
                t + Duration::seconds(2)
            } else {
                t + Duration::hours(1)
            },
            max_open: None,
        };
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.insert_request(new).await }));
    }
    let mut requests = Vec::with_capacity(count);
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Inserted::New(r) => requests.push(r),
            other => panic!("expected a new request: {other:?}"),
        }
    }
    requests.sort_by_key(|r| r.seq);
    requests
}

#[derive(Debug, Default, Clone, Copy)]
pub struct WorkerStats {
    pub batches: usize,
    pub conflicts: usize,
    pub decided: usize,
}

/// Decides one batch the way the processor does, deciding again after a lost seat race.
pub async fn process(
    store: &PgStore,
    show: &Show,
    batch: &[BookingRequest],
    clock: &SimClock,
    stats: &mut WorkerStats,
) {
    let ids: Vec<RequestId> = batch.iter().map(|r| r.request_id).collect();
    for _attempt in 0..200 {
        let undecided: HashSet<RequestId> = store
            .begin_processing(&ids)
            .await
            .expect("begin_processing")
            .into_iter()
            .collect();
        let todo: Vec<_> = batch
            .iter()
            .filter(|r| undecided.contains(&r.request_id))
            .map(pending)
            .collect();
        if todo.is_empty() {
            return;
        }
        let now = clock.now();
        let snapshot = store
            .load_show_state(show.show_id, now)
            .await
            .expect("load_show_state");
        let mut engine = DecisionEngine::new(show.layout.clone(), snapshot, TTL);
        let outcome = engine.decide_batch(todo, now);
        match store.commit_batch(show.show_id, &outcome, now).await {
            Ok(written) => {
                stats.batches += 1;
                // What this commit wrote: a request decided by a racing worker meanwhile is
                // that worker's, and counting it here too would hide a double decision.
                stats.decided += written.len();
                return;
            }
            Err(CommitError::SeatConflict) => stats.conflicts += 1,
            Err(e) => panic!("commit_batch: {e}"),
        }
    }
    panic!("a batch lost 200 seat races in a row");
}

/// Batches of varying sizes, cycling through `sizes`.
pub fn chunk(requests: &[BookingRequest], sizes: &[usize]) -> VecDeque<Vec<BookingRequest>> {
    let mut out = VecDeque::new();
    let mut rest = requests;
    for size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at((*size).min(rest.len()));
        out.push_back(head.to_vec());
        rest = tail;
    }
    out
}

/// Seats that two HELD holds of the show, both live at `at` and granted by then, share: must
/// be none. Checked in SQL, on the holds table, independently of the claims.
pub async fn doubly_held_seats(db: &TestDatabase, show: &Show, at: DateTime<Utc>) -> Vec<String> {
    let mut conn = db.raw_connection().await;
    sqlx::query(
        "SELECT seat FROM holds h, unnest(h.seat_ids) AS seat \
         WHERE h.show_id = $1 AND h.status = 'HELD' AND h.created_at <= $2 AND h.expires_at > $2 \
         GROUP BY seat HAVING count(*) > 1",
    )
    .bind(show.show_id.as_uuid())
    .bind(at)
    .fetch_all(&mut conn)
    .await
    .expect("double-hold query")
    .iter()
    .map(|row| row.get::<String, _>(0))
    .collect()
}

/// Everything that must hold once the workers are done, checked in SQL and through the ports.
pub async fn check_final_state(
    db: &TestDatabase,
    store: &PgStore,
    show: &Show,
    requests: &[BookingRequest],
    at: DateTime<Utc>,
) -> HashMap<String, i64> {
    // Every request reached a terminal state.
    let mut conn = db.raw_connection().await;
    let by_status: HashMap<String, i64> = sqlx::query(
        "SELECT status::text, count(*) FROM booking_requests WHERE show_id = $1 GROUP BY status",
    )
    .bind(show.show_id.as_uuid())
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect();
    assert_eq!(
        by_status.values().sum::<i64>(),
        requests.len() as i64,
        "{by_status:?}"
    );
    for status in ["QUEUED", "PROCESSING"] {
        assert!(!by_status.contains_key(status), "{by_status:?}");
    }
    assert!(
        store
            .pending_requests()
            .await
            .unwrap()
            .iter()
            .all(|r| r.show_id != show.show_id)
    );
    for r in requests {
        let stored = store.get_request(r.request_id).await.unwrap().unwrap();
        assert!(stored.status.is_terminal(), "{stored:?}");
    }

    // One hold per granted request, none for the others.
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM booking_requests r FULL JOIN holds h ON h.request_id = r.request_id \
         WHERE (r.show_id = $1 OR h.show_id = $1) \
           AND ((r.status = 'SUCCESS') IS DISTINCT FROM (h.hold_id IS NOT NULL) \
                OR (r.status = 'SUCCESS' AND r.hold_id IS DISTINCT FROM h.hold_id))",
    )
    .bind(show.show_id.as_uuid())
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        mismatched, 0,
        "every SUCCESS has its hold and nothing else has one"
    );

    // No seat in two live holds (SQL, on the holds table).
    assert_eq!(doubly_held_seats(db, show, at).await, Vec::<String>::new());

    // The claims are exactly the live holds' seats (SQL).
    let orphans: i64 = sqlx::query_scalar(
        "WITH live AS ( \
             SELECT h.hold_id, seat FROM holds h, unnest(h.seat_ids) AS seat \
             WHERE h.show_id = $1 AND h.status = 'HELD' AND h.expires_at > $2), \
         claims AS ( \
             SELECT hold_id, seat_id AS seat FROM seat_claims \
             WHERE show_id = $1 AND kind = 'HOLD' AND expires_at > $2) \
         SELECT count(*) FROM live FULL JOIN claims USING (hold_id, seat) \
         WHERE live.hold_id IS NULL OR claims.hold_id IS NULL",
    )
    .bind(show.show_id.as_uuid())
    .bind(at)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(orphans, 0, "live claims and live holds' seats differ");

    // Through the ports: the live holds are disjoint and are exactly the taken seats.
    let snapshot = store.load_show_state(show.show_id, at).await.unwrap();
    let mut seen = BTreeSet::new();
    for hold in &snapshot.holds {
        for seat in &hold.seat_ids {
            assert!(seen.insert(*seat), "seat {seat} in two live holds");
        }
    }
    let taken: BTreeSet<SeatId> = store
        .taken_seats(show.show_id, at)
        .await
        .unwrap()
        .into_iter()
        .map(|(seat, status)| {
            assert_eq!(status, SeatStatus::Held);
            seat
        })
        .collect();
    assert_eq!(taken, seen);
    by_status
}
