//! The flash-sale tool's quick run, in the test suite: a server started by the tool itself (the
//! real binary, on each backend), a crowd of users with WebSockets asking mostly for the same
//! best seats, then the tool's checks: exactly one result per accepted request (WebSocket and
//! polling agreeing), no seat in two live holds and a seat map that agrees, and no request that
//! lost its seat to a later one. Timings are printed, never judged.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use booking_loadgen::args::Target;
use booking_loadgen::faults::FaultKind;
use booking_loadgen::{Options, Outcomes, Scenario};
use booking_testkit::postgres::TestDatabase;
use booking_testkit::redis::PrivateRedis;

fn quick(extra: &[&str]) -> Options {
    let mut argv = vec![
        "loadgen",
        "flash-sale",
        "--quick",
        "--quiet",
        "--server-bin",
        env!("CARGO_BIN_EXE_seatbook"),
        // Fixed, so that a failure can be replayed.
        "--seed",
        "20261203",
    ];
    argv.extend_from_slice(extra);
    match booking_loadgen::parse_from(argv, None).expect("a valid command line") {
        Scenario::FlashSale(o) => *o,
        _ => unreachable!(),
    }
}

/// The checks passed, and they had something to check: without contested seats, decided
/// requests and live holds, "no violations" would prove nothing.
fn assert_checked_and_passed(o: &Outcomes) {
    let v = o.verification.as_ref().expect("the checks ran");
    assert!(v.passed(), "the checks failed: {:#?}", v);
    assert!(
        v.accepted > 100,
        "too few requests to judge: {}",
        v.accepted
    );
    assert_eq!(v.polled, v.accepted, "--quick polls every accepted request");
    assert_eq!(
        o.book.matched + v.results_after_the_drain + v.results_lost_to_restarts,
        v.accepted,
        "every accepted request decided once: pushed (in the drain or during the checks), or \
         (after a crash) found decided by polling"
    );
    assert!(v.live_holds > 0 && v.holds_read >= v.live_holds, "{v:?}");
    let f = &v.fairness;
    assert!(
        f.failed_checked > 0 && f.explained > 0,
        "no contested seats were judged: {f:?}"
    );
    assert_eq!(f.violations, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_flash_sale_on_the_embedded_store_passes_its_checks() {
    let opts = quick(&["--start", "embedded"]);
    assert!(matches!(opts.common.target, Target::Start(_)));
    let o = booking_loadgen::flash_sale(opts.clone())
        .await
        .expect("the run");
    booking_loadgen::publish(&opts, 2, &o).expect("the report");
    assert_checked_and_passed(&o);
    assert!(o.started.is_some(), "the tool started its own server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_flash_sale_on_postgres_and_redis_passes_its_checks() {
    let database = TestDatabase::create().await;
    let redis = PrivateRedis::start();
    let (db, rd) = (database.url().to_owned(), redis.url());
    let opts = quick(&[
        "--start",
        "postgres",
        "--database-url",
        db.as_str(),
        "--redis-url",
        rd.as_str(),
    ]);
    let o = booking_loadgen::flash_sale(opts.clone())
        .await
        .expect("the run");
    booking_loadgen::publish(&opts, 2, &o).expect("the report");
    assert_checked_and_passed(&o);
}

/// Five kill -9s mid-sale, each followed by a restart on the same data: nothing accepted is lost
/// (every accepted request is decided, found by polling where the crash took its push), no seat
/// is held twice, fairness holds across the restarts, and the server takes requests again.
async fn survives_five_kill_9_restarts(backend: &[&str]) {
    let mut args = vec!["--kill", "5", "--duration", "6"];
    args.extend_from_slice(backend);
    let opts = quick(&args);
    let o = booking_loadgen::flash_sale(opts.clone())
        .await
        .expect("the run");
    booking_loadgen::publish(&opts, 2, &o).expect("the report");
    assert_eq!(o.outages.len(), 5, "five crashes and restarts");
    assert!(
        o.accepted_after_last_restart.is_some_and(|n| n > 0),
        "the server took requests again after the last restart"
    );
    assert_checked_and_passed(&o);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_flash_sale_on_the_embedded_store_survives_five_kill_9_restarts() {
    survives_five_kill_9_restarts(&["--start", "embedded"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_flash_sale_on_postgres_and_redis_survives_five_kill_9_restarts() {
    let database = TestDatabase::create().await;
    let redis = PrivateRedis::start();
    let (db, rd) = (database.url().to_owned(), redis.url());
    let postgres = [
        "--start",
        "postgres",
        "--database-url",
        db.as_str(),
        "--redis-url",
        rd.as_str(),
    ];
    survives_five_kill_9_restarts(&postgres).await;
}

/// Every batch delivered to the decider twice, as SQS does when a delete is lost: each request
/// is still decided once (its repeated result says the same), and the other checks hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_flash_sale_on_the_embedded_store_decides_each_request_once_when_every_batch_is_delivered_twice()
 {
    let opts = quick(&["--start", "embedded", "--deliver-twice"]);
    let o = booking_loadgen::flash_sale(opts.clone())
        .await
        .expect("the run");
    booking_loadgen::publish(&opts, 2, &o).expect("the report");
    assert!(
        o.book.duplicate_results > 0,
        "the second deliveries pushed the stored outcomes again"
    );
    assert_checked_and_passed(&o);
}

/// Mid-sale on PostgreSQL + Redis, with every batch delivered twice: Redis flushed, then Redis
/// stopped for 1.5 s and back empty, then the database cut off for 1.5 s (connections terminated
/// and refused, as in a restart). Bookings go on while Redis is gone (the store decides, Redis
/// only mirrors), the server takes requests again after each fault, and the checks hold: nothing
/// accepted lost, nothing held twice, no order violated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_flash_sale_on_postgres_and_redis_survives_redis_and_database_outages_and_duplicate_deliveries()
 {
    let database = TestDatabase::create().await;
    let db = database.url().to_owned();
    let opts = quick(&[
        "--start",
        "postgres",
        "--database-url",
        db.as_str(),
        "--redis-flush",
        "1",
        "--redis-stop",
        "1",
        "--postgres-outage",
        "1",
        "--outage",
        "1.5",
        "--deliver-twice",
        "--duration",
        "8",
    ]);
    let o = booking_loadgen::flash_sale(opts.clone())
        .await
        .expect("the run");
    booking_loadgen::publish(&opts, 2, &o).expect("the report");
    let kinds: Vec<_> = o.faults.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        [
            FaultKind::RedisFlush,
            FaultKind::RedisStop,
            FaultKind::PostgresOutage
        ]
    );
    for f in &o.faults {
        assert!(
            f.accepting_again_after_s.is_some(),
            "no request was accepted after {f:?}"
        );
    }
    assert!(
        o.faults[1].accepted_during > 0,
        "requests were accepted while Redis was down: {:?}",
        o.faults[1]
    );
    assert!(o.book.duplicate_results > 0, "batches were delivered twice");
    assert_checked_and_passed(&o);
}

/// The waiting-room crowd's quick run (`loadgen waiting-room --quick`): 2,000 arrivals, half
/// before the opening, let in at 200 a second; the tool's checks (every arrival let in once,
/// never faster than the rate, later arrivals in arrival order, the pre-queue first and drawn
/// independently of its arrival order) pass, and had something to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_waiting_room_crowd_is_let_in_in_order_at_the_rate() {
    let argv = [
        "loadgen",
        "waiting-room",
        "--quick",
        "--quiet",
        "--start",
        "embedded",
        "--server-bin",
        env!("CARGO_BIN_EXE_seatbook"),
    ];
    let Scenario::WaitingRoom(o) = booking_loadgen::parse_from(argv, None).expect("valid") else {
        unreachable!()
    };
    let outcome = booking_loadgen::room::run(*o).await.expect("the run");
    booking_loadgen::room::print(&outcome);
    assert!(outcome.passed(), "{:?}", outcome.failures());
    assert_eq!(outcome.admitted, 2_000);
    assert_eq!(outcome.observers_admitted, 200);
    assert!(
        outcome.pre_queue_correlation.is_some(),
        "the pre-queue was let in over several ticks, so its order could be measured"
    );
}

/// Ordinary traffic over many shows (`loadgen steady --quick`): users reading seat maps,
/// holding free seats and buying (some cards declined), releasing or keeping them, beside
/// open-loop seat-map readers. Its checks (every result once and agreeing with polling, no
/// seat in two certain holds or orders at once nor in two confirmed orders, unique tickets,
/// confirmed orders reading back as bought, seat maps showing them sold) pass, and had
/// something to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_steady_traffic_over_many_shows_passes_its_checks() {
    let argv = [
        "loadgen",
        "steady",
        "--quick",
        "--quiet",
        "--start",
        "embedded",
        "--server-bin",
        env!("CARGO_BIN_EXE_seatbook"),
        "--seed",
        "20261203",
    ];
    let Scenario::Steady(opts) = booking_loadgen::parse_from(argv, None).expect("valid") else {
        unreachable!()
    };
    let o = booking_loadgen::steady::run(*opts).await.expect("the run");
    booking_loadgen::steady::publish(&o).expect("the report");
    let c = &o.checks;
    assert!(o.passed(), "the checks failed: {:?}", c.problems);
    let n = &o.counts;
    assert!(n.journeys > 50, "too few journeys to judge: {n:?}");
    assert!(n.confirmed > 10 && n.declined > 0, "orders: {n:?}");
    assert!(
        n.released > 0 && n.kept > 0,
        "releases and kept holds: {n:?}"
    );
    assert!(n.reads > 50, "open-loop seat-map reads: {n:?}");
    let accepted = c.get("exactly one result", "accepted");
    assert!(
        accepted >= n.held && n.held > 50,
        "{accepted} accepted, {n:?}"
    );
    assert_eq!(
        c.get("exactly one result", "polled"),
        accepted,
        "every request polled"
    );
    assert_eq!(c.get("confirmed orders", "read back"), n.confirmed);
    assert!(c.get("no seat twice", "certain claims") > n.held);
    assert!(c.get("kept holds", "read back") > 0, "{:?}", c.groups);
}
