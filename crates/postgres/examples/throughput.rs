//! Quick throughput figures for the PostgreSQL store (a measurement, not a test: it asserts
//! nothing about timing).
//!
//! ```text
//! cargo run --release -p booking-postgres --example throughput            # both parts
//! cargo run --release -p booking-postgres --example throughput -- decide  # worker cycle only
//! cargo run --release -p booking-postgres --example throughput -- intake  # insert_request only
//! ```
//!
//! Three runs on the shared 2-core development machine (PostgreSQL 15 on localhost, fsync on,
//! other builds running; ranges, not precise figures):
//!
//! ```text
//! intake, 200 callers     grouped 14,600-18,800 requests/s (~100 per commit), direct 4,150-4,400
//! decide, batch of   1      270-400 decisions/s   (commit_batch alone   520-770/s)
//!                   10    1,200-1,900             (                   1,800-3,300/s)
//!                  100    3,100-4,000             (                   4,800-6,400/s)
//!                  500    4,700-5,650             (                   7,700-9,300/s)
//! ```
//!
//! The floor per decision is two non-HOT updates of its `booking_requests` row (QUEUED →
//! PROCESSING → outcome), each touching all six indexes the schema asks for, plus the hold and
//! its claims; the commit itself is shared by the batch.
//!
//! It creates a throw-away database on the server of `TEST_DATABASE_URL` (default: local
//! PostgreSQL, see `booking_postgres::testing`) and drops it at the end.
//!
//! - **decide**: one worker deciding one hot show (500 seats, requests for 1-4 adjacent seats
//!   from 5,000 users), the full worker cycle per batch: begin_processing → load_show_state →
//!   decide_batch → commit_batch. Batch size 1 is one transaction per decision. Time moves two
//!   (simulated) seconds per decision with five-minute holds, so seats keep being freed and
//!   granted again: grants and rejections both occur throughout. "decisions/s" is the whole
//!   cycle; "commit-only" counts the time inside `commit_batch` alone.
//! - **intake**: 20,000 `insert_request` calls from 200 concurrent callers, with group commit
//!   and with one statement per request, and the latency of a lone caller in each mode.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use booking_core::ports::{HoldStore, RequestStore};
use booking_core::{
    Decision, DecisionEngine, NewBookingRequest, PendingRequest, RequestId, UserId,
};
use booking_postgres::{IntakeMode, PgOptions};
use booking_testkit::postgres::TestDatabase;
use booking_testkit::support::{create_show, fresh_user};
use booking_testkit::workload::{hot_show_requests, insert_all};
use chrono::Duration;
use std::time::Instant;

const HOLD_TTL: Duration = Duration::minutes(5);
const STEP: Duration = Duration::seconds(2);

async fn decide(db: &TestDatabase) {
    println!("== decide: one worker, one hot show (500 seats), full worker cycle per batch");
    println!(
        "{:>6} {:>10} {:>13} {:>16} {:>20} {:>8} {:>8}",
        "batch",
        "decisions",
        "decisions/s",
        "commit ms/batch",
        "commit-only dec/s",
        "granted",
        "elapsed"
    );
    let store = db.store().clone();
    let users: Vec<UserId> = (0..5_000).map(|i| fresh_user(&format!("u{i}"))).collect();
    for (batch_size, count) in [
        (1usize, 3_000usize),
        (10, 20_000),
        (100, 40_000),
        (500, 40_000),
    ] {
        let show = create_show(&store, 20, 25).await;
        let t0 = booking_testkit::support::now();
        let requests = insert_all(&store, hot_show_requests(&show, &users, count, t0, 42)).await;

        let mut now = t0;
        let mut granted = 0usize;
        let mut commit_time = std::time::Duration::ZERO;
        let mut batches = 0usize;
        let started = Instant::now();
        for batch in requests.chunks(batch_size) {
            let ids: Vec<RequestId> = batch.iter().map(|r| r.request_id).collect();
            let undecided = store
                .begin_processing(&ids)
                .await
                .expect("begin_processing");
            assert_eq!(undecided.len(), batch.len());
            let snapshot = store
                .load_show_state(show.show_id, now)
                .await
                .expect("load_show_state");
            let mut engine = DecisionEngine::new(show.layout.clone(), snapshot, HOLD_TTL);
            let pending: Vec<PendingRequest> = batch
                .iter()
                .map(booking_testkit::support::pending)
                .collect();
            let outcome = engine.decide_batch(pending, now);
            granted += outcome
                .decisions
                .iter()
                .filter(|d| matches!(d, Decision::Granted { .. }))
                .count();
            let commit_started = Instant::now();
            store
                .commit_batch(show.show_id, &outcome, now)
                .await
                .expect("a lone worker never conflicts");
            commit_time += commit_started.elapsed();
            batches += 1;
            now += STEP * batch.len() as i32;
        }
        let elapsed = started.elapsed();
        println!(
            "{:>6} {:>10} {:>13.0} {:>16.2} {:>20.0} {:>7.0}% {:>7.1}s",
            batch_size,
            count,
            count as f64 / elapsed.as_secs_f64(),
            commit_time.as_secs_f64() * 1e3 / batches as f64,
            count as f64 / commit_time.as_secs_f64(),
            100.0 * granted as f64 / count as f64,
            elapsed.as_secs_f64()
        );
    }
}

async fn intake(db: &TestDatabase) {
    println!("== intake: insert_request, durable before it returns");
    println!(
        "{:>8} {:>10} {:>9} {:>12} {:>18} {:>20}",
        "mode", "requests", "callers", "requests/s", "requests/commit", "lone caller µs/call"
    );
    let users: Vec<UserId> = (0..5_000).map(|i| fresh_user(&format!("i{i}"))).collect();
    for mode in [IntakeMode::Grouped, IntakeMode::Direct] {
        let store = db
            .another_store(PgOptions {
                max_connections: 10,
                intake: mode,
                ..PgOptions::default()
            })
            .await;
        let show = create_show(&store, 20, 25).await;
        let t0 = booking_testkit::support::now();

        // A lone caller: one request at a time.
        let lone = hot_show_requests(&show, &users, 1_000, t0, 7);
        let started = Instant::now();
        for new in lone {
            store.insert_request(new).await.expect("insert_request");
        }
        let lone_us = started.elapsed().as_secs_f64() * 1e6 / 1_000.0;

        // A crowd: 200 callers, 100 requests each, one after another.
        let (callers, per_caller) = (200usize, 100usize);
        let mut crowd = hot_show_requests(&show, &users, callers * per_caller, t0, 11);
        let before = store.intake_stats();
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(callers);
        for _ in 0..callers {
            let mine: Vec<NewBookingRequest> = crowd.drain(..per_caller).collect();
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for new in mine {
                    store.insert_request(new).await.expect("insert_request");
                }
            }));
        }
        for task in tasks {
            task.await.expect("caller");
        }
        let elapsed = started.elapsed();
        let after = store.intake_stats();
        let total = callers * per_caller;
        println!(
            "{:>8} {:>10} {:>9} {:>12.0} {:>18.1} {:>20.0}",
            format!("{mode:?}"),
            total,
            callers,
            total as f64 / elapsed.as_secs_f64(),
            (after.requests - before.requests) as f64 / (after.groups - before.groups) as f64,
            lone_us
        );
        store.close().await;
    }
}

#[tokio::main]
async fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".to_owned());
    let db = TestDatabase::create_with(PgOptions {
        max_connections: 10,
        ..PgOptions::default()
    })
    .await;
    println!("database {} (dropped at the end)", db.name());
    if what == "all" || what == "intake" {
        intake(&db).await;
    }
    if what == "all" || what == "decide" {
        decide(&db).await;
    }
}
