//! The store contract (booking-testkit) against PostgreSQL, each case on its own freshly
//! created database (dropped afterwards, also on failure), plus what only this adapter has.
//!
//! Needs a PostgreSQL server: `TEST_DATABASE_URL`, default postgres://postgres@127.0.0.1:5432/
//! (then user root). If none answers, every test fails saying how to start one.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use booking_core::ports::{HoldStore, Inserted, RequestStore, StoreError};
use booking_core::{RequestId, ShowId};
use booking_postgres::{IntakeMode, PgOptions, PgStore};
use booking_testkit::postgres::TestDatabase;
use booking_testkit::support::{
    assert_spoiled_rows_read_as_corrupt, create_show, fresh_user, new_request, now, request,
    rows_to_spoil,
};

/// A store on a database of its own; the database lives as long as the guard.
async fn fresh_store() -> (PgStore, TestDatabase) {
    let db = TestDatabase::create().await;
    (db.store().clone(), db)
}

booking_testkit::contract_tests!(fresh_store);

/// Every case in turn on one database, as they would run against a shared server.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_cases_share_one_database() {
    let (store, _db) = fresh_store().await;
    booking_testkit::run_all(&store).await;
}

/// Every case at once on one database, as concurrent test runs against one server would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_cases_at_once_on_one_database() {
    let (store, _db) = fresh_store().await;
    booking_testkit::run_all_concurrently(&store).await;
}

/// The contract holds as well with one statement per intake (no group commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_cases_with_direct_intake() {
    let db = TestDatabase::create_with(PgOptions {
        max_connections: 8,
        intake: IntakeMode::Direct,
        ..PgOptions::default()
    })
    .await;
    booking_testkit::run_all_concurrently(db.store()).await;
}

/// A request for a show that does not exist is refused on its own, without failing the other
/// requests written in the same group.
// One thread: both requests are handed over before the writer task can run, so they share
// its first group (asserted through the intake's counters), which is the point of the case.
#[tokio::test(flavor = "current_thread")]
async fn a_request_for_an_unknown_show_fails_alone() {
    let (store, _db) = fresh_store().await;
    let show = create_show(&store, 1, 4).await;
    let mut ghost = show.clone();
    ghost.show_id = ShowId::new_random();
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
    assert!(
        matches!(&bad, Err(e) if e.kind() == booking_core::StoreFailure::Corrupt),
        "{bad:?}"
    );
    let Ok(Inserted::New(good)) = good else {
        panic!("{good:?}")
    };
    assert_eq!(
        store.get_request(good.request_id).await.unwrap(),
        Some(good)
    );
}

/// The same request id sent again (an intake retrying after a lost answer) is the earlier
/// request; the same id from another user is refused.
#[tokio::test]
async fn a_repeated_request_id_is_the_same_request() {
    let (store, _db) = fresh_store().await;
    let show = create_show(&store, 1, 4).await;
    let user = fresh_user("u");
    let first = new_request(&show, &user, &["A1"], now());
    let Inserted::New(stored) = store.insert_request(first.clone()).await.unwrap() else {
        panic!("new")
    };
    assert_eq!(
        store.insert_request(first.clone()).await.unwrap(),
        Inserted::Existing(stored)
    );
    let mut thief = first;
    thief.user_id = fresh_user("other");
    assert!(matches!(
        store.insert_request(thief).await,
        Err(e) if e.kind() == booking_core::StoreFailure::Corrupt
    ));
}

/// Id lists are bound as one array parameter, so no list is too long for the protocol.
#[tokio::test]
async fn begin_processing_takes_any_number_of_ids() {
    let (store, _db) = fresh_store().await;
    let show = create_show(&store, 1, 4).await;
    let real = request(&store, &show, &fresh_user("u"), &["A1"], now()).await;
    let mut ids: Vec<_> = (0..70_000).map(|_| RequestId::new_random()).collect();
    ids.push(real.request_id);
    assert_eq!(
        store.begin_processing(&ids).await.unwrap(),
        vec![real.request_id]
    );
}

/// A row that does not decode is reported as corrupt, never a panic, and spoils only the reads
/// that touch it.
#[tokio::test]
async fn undecodable_rows_are_corrupt_not_panics() {
    let (store, db) = fresh_store().await;
    let rows = rows_to_spoil(&store).await;
    let [bad_seats, bad_user] = &rows.bad;
    let (show, hold, t) = (&rows.show, rows.hold, rows.at);

    let mut raw = db.raw_connection().await;
    sqlx::query("UPDATE booking_requests SET seat_ids = '{\"not a seat\"}' WHERE request_id = $1")
        .bind(bad_seats.request_id.as_uuid())
        .execute(&mut raw)
        .await
        .unwrap();
    sqlx::query("UPDATE booking_requests SET user_id = 'has space' WHERE request_id = $1")
        .bind(bad_user.request_id.as_uuid())
        .execute(&mut raw)
        .await
        .unwrap();
    sqlx::query("UPDATE holds SET seat_ids = '{A1,ZZZ9}' WHERE hold_id = $1")
        .bind(hold.as_uuid())
        .execute(&mut raw)
        .await
        .unwrap();
    sqlx::query("UPDATE shows SET layout = '{\"rows\": 3}' WHERE show_id = $1")
        .bind(show.show_id.as_uuid())
        .execute(&mut raw)
        .await
        .unwrap();

    assert_spoiled_rows_read_as_corrupt(&store, &rows).await;
    // Here the hold's seats and the show's layout are spoiled too.
    let corrupt = |r: Result<(), StoreError>| matches!(r, Err(e) if e.kind() == booking_core::StoreFailure::Corrupt);
    use booking_core::ports::CatalogStore;
    assert!(corrupt(
        store.load_show_state(show.show_id, t).await.map(|_| ())
    ));
    assert!(corrupt(store.get_show(show.show_id).await.map(|_| ())));
}

/// A store whose pool was closed reports Unavailable (worth retrying), never Corrupt.
#[tokio::test]
async fn a_closed_store_reports_unavailable() {
    let (store, _db) = fresh_store().await;
    store.close().await;
    let err = store
        .taken_seats(ShowId::new_random(), now())
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
}

/// A database the schema was never applied to is reported as such: no retry fixes it.
#[tokio::test]
async fn an_unmigrated_database_is_corrupt_not_unavailable() {
    let db = TestDatabase::create_empty(PgOptions::default()).await;
    let err = db
        .store()
        .get_request(RequestId::new_random())
        .await
        .unwrap_err();
    assert!(
        (err.kind() == booking_core::StoreFailure::Corrupt),
        "{err:?}"
    );
}
