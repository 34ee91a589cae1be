//! The worker's whole cycle against PostgreSQL, with and without the Redis seat-lock mirror (a
//! measurement, not a test: it asserts nothing about timing).
//!
//! ```text
//! cargo run --release --example worker_throughput
//! ```
//!
//! One `BatchProcessor` (the code the Lambda worker and the local lanes run), wired by the app's
//! composition root as every process wires it, decides one hot show
//! (500 seats, requests for 1-4 adjacent seats from 5,000 users) batch after batch:
//! begin_processing → load_show_state → decide → commit_batch → mirror → notify (a notifier that
//! drops the pushes, so only the stores are timed). Time moves two simulated seconds per
//! decision with five-minute holds, so seats keep being freed and granted again.
//!
//! It creates a throw-away database on the server of `TEST_DATABASE_URL` (default: local
//! PostgreSQL) and uses the Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`); every show
//! is new, so its mirror keys are too.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use booking_app::app::PollingOnly;
use booking_app::{App, BookingConfig, Stores};
use booking_core::ports::SeatMirror;
use booking_core::{ManualClock, UserId};
use booking_redis::RedisMirror;
use booking_testkit::postgres::TestDatabase;
use booking_testkit::support::{create_show, fresh_user, now};
use booking_testkit::workload::{hot_show_requests, insert_all};
use chrono::Duration;
use std::sync::Arc;
use std::time::Instant;

const HOLD_TTL: Duration = Duration::minutes(5);
const STEP: Duration = Duration::seconds(2);

#[tokio::main]
async fn main() {
    let db = TestDatabase::create().await;
    let store = Arc::new(db.store().clone());
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mirror: Arc<dyn SeatMirror> = Arc::new(
        RedisMirror::connect(&redis_url)
            .await
            .unwrap_or_else(|e| panic!("Redis at {redis_url}: {e} (start it, or set REDIS_URL)")),
    );
    let users: Vec<UserId> = (0..5_000).map(|i| fresh_user(&format!("u{i}"))).collect();

    println!("== worker cycle, one hot show (500 seats), PostgreSQL, with and without Redis");
    println!(
        "{:>6} {:>8} {:>10} {:>13} {:>14} {:>8}",
        "batch", "mirror", "decisions", "decisions/s", "ms per batch", "granted"
    );
    for (batch_size, count) in [(1usize, 2_000usize), (10, 10_000), (100, 30_000)] {
        for with_mirror in [false, true] {
            let show = create_show(store.as_ref(), 20, 25).await;
            let t0 = now();
            let requests = insert_all(
                store.as_ref(),
                hot_show_requests(&show, &users, count, t0, 42),
            )
            .await;
            let clock = Arc::new(ManualClock::new(t0));
            let config = BookingConfig {
                hold_ttl: HOLD_TTL,
                ..BookingConfig::default()
            };
            let mut app = App::builder(Stores::of(store.clone()), config)
                .clock(clock.clone())
                .notifier(Arc::new(PollingOnly));
            if with_mirror {
                app = app.mirror(mirror.clone());
            }
            let app = app.build();
            let processor = app.processor();
            let mut granted = 0;
            let started = Instant::now();
            for batch in requests.chunks(batch_size) {
                let report = processor
                    .process(show.show_id, batch)
                    .await
                    .expect("a lone worker's batch is processed");
                assert_eq!(report.decided, batch.len());
                granted += report.granted;
                clock.advance(STEP * batch.len() as i32);
            }
            let elapsed = started.elapsed().as_secs_f64();
            let batches = count.div_ceil(batch_size);
            println!(
                "{:>6} {:>8} {:>10} {:>13.0} {:>14.2} {:>7.0}%",
                batch_size,
                if with_mirror { "redis" } else { "none" },
                count,
                count as f64 / elapsed,
                elapsed * 1_000.0 / batches as f64,
                100.0 * granted as f64 / count as f64
            );
        }
    }
}
