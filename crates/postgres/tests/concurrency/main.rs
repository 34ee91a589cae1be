//! What the serial lane normally prevents, and the database must survive anyway: several
//! workers deciding the same show at the same time (visibility-timeout expiry, redelivery).
//!
//! Each worker does what `booking_app::processor` does: begin_processing → load_show_state →
//! DecisionEngine::decide_batch → commit_batch, deciding again on `SeatConflict`. Time is a
//! shared simulated clock that moves on with every read, with a short hold lifetime, so seats
//! keep expiring and being taken over while the workers race.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use booking_core::ports::{CommitError, HoldStore, RequestStore};
use booking_core::{Decision, RequestStatus};
use booking_postgres::PgOptions;
use booking_testkit::postgres::TestDatabase;
use booking_testkit::support::create_show;
use chrono::Duration;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::Mutex;

mod workers;

use workers::*;

/// Three workers (each its own pool, like separate Lambda instances) take batches of varying
/// sizes of 2,000 requests for 50 seats from one queue and decide them at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_workers_never_double_allocate() {
    let db = TestDatabase::create().await;
    let store = db.store().clone();
    let show = create_show(&store, 5, 10).await;
    let clock = Arc::new(SimClock::new());
    let requests = make_requests(&store, &show, 5, 2_000, 300, &clock).await;

    let queue = Arc::new(Mutex::new(chunk(&requests, &[1, 10, 3, 50, 7, 100, 25, 2])));
    let done = Arc::new(AtomicBool::new(false));

    // Meanwhile, a checker looks for a seat in two live holds, over and over.
    let checks = Arc::new(AtomicUsize::new(0));
    let checker = {
        let (done, clock, checks) = (done.clone(), clock.clone(), checks.clone());
        let db_options = db.connect_options();
        let show = show.clone();
        tokio::spawn(async move {
            use sqlx::ConnectOptions;
            let mut conn = db_options.connect().await.unwrap();
            while !done.load(Ordering::SeqCst) {
                let at = clock.peek();
                let doubles: Vec<String> = sqlx::query_scalar(
                    "SELECT seat FROM holds h, unnest(h.seat_ids) AS seat \
                     WHERE h.show_id = $1 AND h.status = 'HELD' AND h.created_at <= $2 \
                       AND h.expires_at > $2 \
                     GROUP BY seat HAVING count(*) > 1",
                )
                .bind(show.show_id.as_uuid())
                .bind(at)
                .fetch_all(&mut conn)
                .await
                .unwrap();
                assert!(
                    doubles.is_empty(),
                    "seats {doubles:?} in two live holds at {at}"
                );
                checks.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    };

    let mut workers = Vec::new();
    for _ in 0..3 {
        let worker_store = db
            .another_store(PgOptions {
                max_connections: 2,
                ..PgOptions::default()
            })
            .await;
        let (queue, clock, show) = (queue.clone(), clock.clone(), show.clone());
        workers.push(tokio::spawn(async move {
            let mut stats = WorkerStats::default();
            loop {
                let Some(batch) = queue.lock().await.pop_front() else {
                    break;
                };
                process(&worker_store, &show, &batch, &clock, &mut stats).await;
            }
            stats
        }));
    }
    let mut total = WorkerStats::default();
    for worker in workers {
        let stats = worker.await.expect("worker");
        total.batches += stats.batches;
        total.conflicts += stats.conflicts;
        total.decided += stats.decided;
    }
    done.store(true, Ordering::SeqCst);
    checker.await.expect("no seat was ever in two live holds");

    let by_status = check_final_state(&db, &store, &show, &requests, clock.peek()).await;
    eprintln!(
        "{total:?}, outcomes {by_status:?}, {} concurrent checks",
        checks.load(Ordering::Relaxed)
    );
    assert_eq!(total.decided, requests.len(), "each request decided once");
    assert!(
        by_status.get("SUCCESS").copied().unwrap_or(0) > 50,
        "{by_status:?}"
    );
    assert!(
        by_status.get("FAILED").copied().unwrap_or(0) > 50,
        "{by_status:?}"
    );
    assert!(
        total.conflicts > 0,
        "the workers never raced for a seat; the test proved nothing"
    );
}

/// Every request delivered to two workers at once (each with its own batching): each request
/// is decided exactly once, as an audit of every write to a request's status shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_delivery_to_two_workers_decides_each_request_once() {
    let db = TestDatabase::create().await;
    let store = db.store().clone();
    let mut conn = db.raw_connection().await;
    // Test-only audit: every update that writes a terminal status, with the status it replaced.
    for ddl in [
        "CREATE TABLE decision_audit (request_id UUID NOT NULL, old_status TEXT NOT NULL, \
             new_status TEXT NOT NULL)",
        "CREATE FUNCTION audit_decision() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             INSERT INTO decision_audit VALUES (NEW.request_id, OLD.status, NEW.status); \
             RETURN NEW; END $$",
        "CREATE TRIGGER audit_decision AFTER UPDATE ON booking_requests FOR EACH ROW \
             WHEN (NEW.status IN ('SUCCESS', 'FAILED', 'EXPIRED')) \
             EXECUTE FUNCTION audit_decision()",
    ] {
        sqlx::query(ddl).execute(&mut conn).await.unwrap();
    }

    let show = create_show(&store, 5, 10).await;
    let clock = Arc::new(SimClock::new());
    let requests = make_requests(&store, &show, 5, 1_500, 200, &clock).await;

    let mut workers = Vec::new();
    for sizes in [&[10usize, 1, 25, 4][..], &[7, 50, 3, 13][..]] {
        let worker_store = db
            .another_store(PgOptions {
                max_connections: 2,
                ..PgOptions::default()
            })
            .await;
        let batches = chunk(&requests, sizes);
        let (clock, show) = (clock.clone(), show.clone());
        workers.push(tokio::spawn(async move {
            let mut stats = WorkerStats::default();
            for batch in batches {
                process(&worker_store, &show, &batch, &clock, &mut stats).await;
            }
            stats
        }));
    }
    let mut conflicts = 0;
    let mut batches = 0;
    for worker in workers {
        let stats = worker.await.expect("worker");
        conflicts += stats.conflicts;
        batches += stats.batches;
    }

    let by_status = check_final_state(&db, &store, &show, &requests, clock.peek()).await;
    let audit: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT request_id, old_status FROM decision_audit")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let mut decisions: HashMap<uuid::Uuid, usize> = HashMap::new();
    for (request, old) in &audit {
        assert!(
            old == "QUEUED" || old == "PROCESSING",
            "request {request} was decided again after {old}"
        );
        *decisions.entry(*request).or_default() += 1;
    }
    assert_eq!(decisions.len(), requests.len(), "every request decided");
    assert!(
        decisions.values().all(|&n| n == 1),
        "a request was decided twice"
    );
    eprintln!("{batches} batches committed, {conflicts} conflicts, outcomes {by_status:?}");
}

/// What seat A1 carries before the race.
#[derive(Debug, Clone, Copy)]
enum Prior {
    /// No claim row: both transactions insert one.
    Nothing,
    /// The claim of a hold that ran out: both remove it as dead, then insert.
    ExpiredHold,
    /// The claim of an order whose payment window ran out: both take the row over with
    /// `ON CONFLICT ... DO UPDATE ... WHERE seat_claims.expires_at <= $now`.
    ExpiredOrder,
}

/// Two transactions race for seat A1, each decided against the same state. The first is held
/// open right after writing its claim (a test-only trigger waits on an advisory lock), and the
/// second is seen waiting for the first's transaction. If the first commits, PostgreSQL
/// re-evaluates the second's guard against the row the first committed, which is a live claim:
/// the second claims nothing and is refused. If the first fails instead, the second goes
/// through. Exactly one commits, whatever A1 carried before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_claims_on_one_seat_commit_exactly_once() {
    for prior in [Prior::Nothing, Prior::ExpiredHold, Prior::ExpiredOrder] {
        for first_fails in [false, true] {
            race_for_one_seat(prior, first_fails).await;
        }
    }
}

async fn race_for_one_seat(prior: Prior, first_fails: bool) {
    use booking_testkit::support::{decide, fresh_user, grant, held, now, request, taken};
    let db = TestDatabase::create().await;
    let store = db.store().clone();
    let show = create_show(&store, 1, 4).await;
    let t = now();
    let early = t - Duration::minutes(10);
    let mut control = db.raw_connection().await;
    match prior {
        Prior::Nothing => {}
        Prior::ExpiredHold => {
            let old = request(&store, &show, &fresh_user("old"), &["A1"], early).await;
            grant(&store, &show, &old, early).await;
        }
        Prior::ExpiredOrder => {
            sqlx::query(
                "INSERT INTO seat_claims (show_id, seat_id, hold_id, kind, expires_at) \
                 VALUES ($1, 'A1', $2, 'ORDER', $3)",
            )
            .bind(show.show_id.as_uuid())
            .bind(uuid::Uuid::new_v4())
            .bind(early)
            .execute(&mut control)
            .await
            .unwrap();
        }
    }

    let a = request(&store, &show, &fresh_user("a"), &["A1", "A2"], t).await;
    let b = request(&store, &show, &fresh_user("b"), &["A1"], t).await;
    // Both decided against the same state: each wins A1 in its own eyes.
    let batch_a = decide(&store, &show, &[&a], t).await;
    let batch_b = decide(&store, &show, &[&b], t).await;
    assert!(matches!(batch_a.decisions[0], Decision::Granted { .. }));
    assert!(matches!(batch_b.decisions[0], Decision::Granted { .. }));

    // Test-only gate: A's claim rows, once written inside A's transaction, wait on an advisory
    // lock the test holds; then A optionally fails.
    let hold_a = booking_core::HoldId::for_request(a.request_id);
    let hold_b = booking_core::HoldId::for_request(b.request_id);
    for ddl in [
        "CREATE TABLE race_gate (hold_id UUID NOT NULL, fail BOOLEAN NOT NULL)",
        "CREATE FUNCTION race_gate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.hold_id IN (SELECT hold_id FROM race_gate) THEN \
                 PERFORM pg_advisory_xact_lock_shared(4242); \
                 IF (SELECT fail FROM race_gate) THEN \
                     RAISE EXCEPTION 'injected failure after claiming'; \
                 END IF; \
             END IF; RETURN NEW; END $$",
        "CREATE TRIGGER race_gate AFTER INSERT OR UPDATE ON seat_claims FOR EACH ROW \
             EXECUTE FUNCTION race_gate()",
    ] {
        sqlx::query(ddl).execute(&mut control).await.unwrap();
    }
    sqlx::query("INSERT INTO race_gate VALUES ($1, $2)")
        .bind(hold_a.as_uuid())
        .bind(first_fails)
        .execute(&mut control)
        .await
        .unwrap();
    sqlx::query("SELECT pg_advisory_lock(4242)")
        .execute(&mut control)
        .await
        .unwrap();

    let waiting = |event: &'static str| {
        let db_options = db.connect_options();
        async move {
            use sqlx::ConnectOptions;
            let mut conn = db_options.connect().await.unwrap();
            for _ in 0..500 {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock' \
                       AND wait_event = $1",
                )
                .bind(event)
                .fetch_one(&mut conn)
                .await
                .unwrap();
                if n > 0 {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("nobody started waiting on {event} ({prior:?})");
        }
    };

    let store_a = db.another_store(PgOptions::default()).await;
    let store_b = db.another_store(PgOptions::default()).await;
    let (id, batch) = (show.show_id, batch_a.clone());
    let first = tokio::spawn(async move { store_a.commit_batch(id, &batch, t).await });
    // A has written its claim of A1 and waits at the gate, its transaction open.
    waiting("advisory").await;
    let batch = batch_b.clone();
    let second = tokio::spawn(async move { store_b.commit_batch(id, &batch, t).await });
    // B meets A's uncommitted row and waits for A's transaction to end.
    waiting("transactionid").await;
    sqlx::query("SELECT pg_advisory_unlock(4242)")
        .execute(&mut control)
        .await
        .unwrap();

    let first = first.await.unwrap();
    let second = second.await.unwrap();
    let context = format!("{prior:?}, first fails: {first_fails}");
    if first_fails {
        assert!(
            matches!(first, Err(CommitError::Store(_))),
            "the injected failure ({context}): {first:?}"
        );
        assert_eq!(
            second,
            Ok(vec![b.request_id]),
            "A rolled back, B goes through ({context})"
        );
        assert_eq!(taken(&store, &show, t).await, held(&["A1"]), "{context}");
        assert!(store.get_hold(hold_a).await.unwrap().is_none());
        assert!(store.get_hold(hold_b).await.unwrap().is_some());
        let a_now = store.get_request(a.request_id).await.unwrap().unwrap();
        assert_eq!(a_now.status, RequestStatus::Queued, "A wrote nothing");
    } else {
        assert_eq!(first, Ok(vec![a.request_id]), "{context}");
        assert_eq!(
            second,
            Err(CommitError::SeatConflict),
            "B re-checked A1 against A's committed claim ({context})"
        );
        assert_eq!(
            taken(&store, &show, t).await,
            held(&["A1", "A2"]),
            "{context}"
        );
        assert!(store.get_hold(hold_a).await.unwrap().is_some());
        assert!(store.get_hold(hold_b).await.unwrap().is_none());
        let b_now = store.get_request(b.request_id).await.unwrap().unwrap();
        assert_eq!(b_now.status, RequestStatus::Queued, "B wrote nothing");
    }
    assert_eq!(doubly_held_seats(&db, &show, t).await, Vec::<String>::new());
}

/// A show's first request and a new layout for it cannot pass each other: while a request insert
/// is in flight (its transaction holds the foreign-key lock on the show), a layout change waits
/// for it, then sees it and is refused as on sale; it never writes a layout under a request that
/// was validated against the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layout_change_waits_for_a_first_request_in_flight() {
    use booking_core::ports::{CatalogError, CatalogStore};
    use sqlx::ConnectOptions;
    let db = TestDatabase::create().await;
    let store = db.store().clone();
    let created = create_show(&store, 2, 5).await;
    let show = store.get_show(created.show_id).await.unwrap().unwrap();

    let mut conn = db.connect_options().connect().await.unwrap();
    let mut insert = sqlx::Connection::begin(&mut conn).await.unwrap();
    sqlx::query(
        "INSERT INTO booking_requests (request_id, user_id, show_id, seat_ids, expires_at) \
         VALUES ($1, 'first-buyer', $2, ARRAY['A1'], now() + interval '1 minute')",
    )
    .bind(uuid::Uuid::new_v4())
    .bind(show.show_id.as_uuid())
    .execute(&mut *insert)
    .await
    .unwrap();

    let changed = booking_core::Show {
        layout: Arc::new(booking_core::SeatLayout::rectangular(3, 5, 1_200)),
        ..show.clone()
    };
    let change = {
        let store = store.clone();
        tokio::spawn(async move { store.put_show(&changed).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !change.is_finished(),
        "the layout change must wait for the request insert in flight"
    );
    insert.commit().await.unwrap();
    assert_eq!(
        change.await.unwrap(),
        Err(CatalogError::OnSale(show.show_id))
    );
    assert!(store.get_show(show.show_id).await.unwrap() == Some(show));
}

/// The show lock is the database's: a second process (its own pool) waits while the first holds
/// it, gets it as soon as the first lets go, and other shows are never held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_show_lock_excludes_other_processes_until_released() {
    use booking_core::ShowId;
    use booking_core::ports::ShowLocks;
    let db = TestDatabase::create().await;
    let first = db.store().clone();
    let second = booking_postgres::PgStore::connect(db.url(), PgOptions::default())
        .await
        .unwrap();
    let (show, other) = (ShowId::new_random(), ShowId::new_random());
    let held = first.lock(show).await.unwrap();
    let _unrelated = second.lock(other).await.unwrap();
    let waiting = {
        let second = second.clone();
        tokio::spawn(async move { second.lock(show).await.map(|_guard| ()) })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the second process waits for the lock"
    );
    drop(held);
    tokio::time::timeout(std::time::Duration::from_secs(30), waiting)
        .await
        .expect("released when the guard is dropped")
        .unwrap()
        .unwrap();
}
