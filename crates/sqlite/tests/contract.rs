//! The store contract (booking-testkit) against the SQLite store, plus what only a file-backed
//! store has: surviving a restart and reopening an existing database.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use booking_core::RequestStatus;
use booking_core::ports::{Inserted, RequestStore};
use booking_sqlite::{SqliteOptions, SqliteStore, Synchronous};
use booking_testkit::support::{
    assert_spoiled_rows_read_as_corrupt, create_show, fresh_user, new_request, now, request,
    rows_to_spoil,
};
use tempfile::TempDir;

/// A store on a fresh file; the directory lives as long as the guard.
async fn fresh_store() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("booking.db"), SqliteOptions::default())
        .await
        .expect("open");
    (store, dir)
}

booking_testkit::contract_tests!(fresh_store);

/// Every case in turn on one database, as they would run against a shared PostgreSQL: proves the
/// cases do not depend on having the database to themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_cases_share_one_database() {
    let (store, _dir) = fresh_store().await;
    booking_testkit::run_all(&store).await;
}

#[tokio::test]
async fn requests_survive_a_restart_and_seq_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("booking.db");
    let t = now();

    let store = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .unwrap();
    let show = create_show(&store, 1, 4).await;
    let first = request(&store, &show, &fresh_user("early"), &["A1"], t).await;
    // Dropped without close(): only what insert_request committed may be relied on.
    drop(store);

    let store = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .unwrap();
    assert_eq!(
        store.get_request(first.request_id).await.unwrap(),
        Some(first.clone())
    );
    let pending = store.pending_requests().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].status, RequestStatus::Queued);
    let second = request(&store, &show, &fresh_user("late"), &["A2"], t).await;
    assert!(
        second.seq > first.seq,
        "arrival order continues after a restart"
    );
    store.close().await;
}

#[tokio::test]
async fn reopening_applies_no_migration_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("booking.db");
    let store = SqliteStore::open(&path, SqliteOptions::default())
        .await
        .unwrap();
    let show = create_show(&store, 1, 4).await;
    store.close().await;

    for synchronous in [Synchronous::Normal, Synchronous::Full] {
        let options = SqliteOptions {
            synchronous,
            max_readers: 1,
        };
        let store = SqliteStore::open(&path, options).await.unwrap();
        let new = new_request(&show, &fresh_user("again"), &["A1"], now());
        assert!(matches!(
            store.insert_request(new).await.unwrap(),
            Inserted::New(_)
        ));
        store.close().await;
    }
}

#[tokio::test]
async fn a_closed_store_reports_unavailable() {
    let (store, _dir) = fresh_store().await;
    store.close().await;
    let show_id = booking_core::ShowId::new_random();
    let err = booking_core::ports::HoldStore::taken_seats(&store, show_id, now())
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
}

/// Every case at once on one database, as concurrent runs against a shared PostgreSQL would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_cases_at_once_on_one_database() {
    let (store, _dir) = fresh_store().await;
    booking_testkit::run_all_concurrently(&store).await;
}

/// A row that does not decode is reported as corrupt, never a panic, and spoils only the reads
/// that touch it.
#[tokio::test]
async fn undecodable_rows_are_corrupt_not_panics() {
    use sqlx::Connection;

    let (store, dir) = fresh_store().await;
    let rows = rows_to_spoil(&store).await;
    let [bad_seats, bad_status] = &rows.bad;
    let hold = rows.hold;

    let url = format!("sqlite://{}", dir.path().join("booking.db").display());
    let mut raw = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("PRAGMA ignore_check_constraints = ON")
        .execute(&mut raw)
        .await
        .unwrap();
    sqlx::query("UPDATE booking_requests SET seat_ids = 'not json' WHERE request_id = ?1")
        .bind(bad_seats.request_id.to_string())
        .execute(&mut raw)
        .await
        .unwrap();
    sqlx::query("UPDATE booking_requests SET status = 'BOGUS' WHERE request_id = ?1")
        .bind(bad_status.request_id.to_string())
        .execute(&mut raw)
        .await
        .unwrap();
    sqlx::query("UPDATE holds SET expires_at = 'soon' WHERE hold_id = ?1")
        .bind(hold.to_string())
        .execute(&mut raw)
        .await
        .unwrap();
    raw.close().await.unwrap();

    assert_spoiled_rows_read_as_corrupt(&store, &rows).await;
}

/// Requests for a show that does not exist are refused one by one, without failing the other
/// requests committed with them.
// One thread: both requests are handed over before the writer task can run, so they share
// its first group (asserted through the intake's counters), which is the point of the case.
#[tokio::test(flavor = "current_thread")]
async fn a_request_for_an_unknown_show_fails_alone() {
    let (store, _dir) = fresh_store().await;
    let show = create_show(&store, 1, 4).await;
    let mut ghost = show.clone();
    ghost.show_id = booking_core::ShowId::new_random();
    let t = now();
    let before = store.intake_stats();
    let (bad, good) = tokio::join!(
        store.insert_request(new_request(&ghost, &fresh_user("g"), &["A1"], t)),
        store.insert_request(new_request(&show, &fresh_user("h"), &["A1"], t)),
    );
    let after = store.intake_stats();
    assert_eq!(
        (
            after.groups - before.groups,
            after.requests - before.requests
        ),
        (1, 2),
        "both requests were written by one commit"
    );
    assert!(matches!(
        bad,
        Err(e) if e.kind() == booking_core::StoreFailure::Corrupt
    ));
    let Ok(Inserted::New(good)) = good else {
        panic!("{good:?}")
    };
    assert_eq!(
        store.get_request(good.request_id).await.unwrap(),
        Some(good)
    );
}

/// Id lists are bound as one JSON array, so no list is too long for SQLite's parameter limit.
#[tokio::test]
async fn begin_processing_takes_any_number_of_ids() {
    let (store, _dir) = fresh_store().await;
    let show = create_show(&store, 1, 4).await;
    let real = request(&store, &show, &fresh_user("u"), &["A1"], now()).await;
    let mut ids: Vec<_> = (0..40_000)
        .map(|_| booking_core::RequestId::new_random())
        .collect();
    ids.push(real.request_id);
    assert_eq!(
        store.begin_processing(&ids).await.unwrap(),
        vec![real.request_id]
    );
}
