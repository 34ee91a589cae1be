//! The schema is applied only when asked, and asking again (or several processes asking at
//! once) changes nothing.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use booking_core::ports::{HoldStore, RequestStore};
use booking_postgres::{MIGRATOR, PgOptions, PgStore};
use booking_testkit::postgres::TestDatabase;
use booking_testkit::support::{create_show, fresh_user, now, request};

async fn table_exists(db: &TestDatabase, table: &str) -> bool {
    let mut conn = db.raw_connection().await;
    sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connect_never_migrates_and_migrate_is_idempotent() {
    let db = TestDatabase::create_empty(PgOptions::default()).await;
    assert!(
        !table_exists(&db, "booking_requests").await,
        "connect must not migrate"
    );

    db.store().migrate().await.expect("first migrate");
    // The guard's URL reaches the same database (what a server process started by a test uses).
    let by_url = PgStore::connect(db.url(), PgOptions::default())
        .await
        .expect("connect by URL");
    by_url.ping().await.expect("ping");
    assert!(table_exists(&db, "booking_requests").await);
    let show = create_show(db.store(), 1, 4).await;
    let before = request(db.store(), &show, &fresh_user("u"), &["A1"], now()).await;

    // Again, and from several processes at once: nothing changes, nothing is lost.
    db.store().migrate().await.expect("second migrate");
    let mut racers = Vec::new();
    for _ in 0..4 {
        let store = db.another_store(PgOptions::default()).await;
        racers.push(tokio::spawn(async move { store.migrate().await }));
    }
    for racer in racers {
        racer.await.unwrap().expect("concurrent migrate");
    }

    let mut conn = db.raw_connection().await;
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let embedded: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    assert_eq!(applied, embedded, "each migration applied exactly once");
    assert_eq!(
        by_url.get_request(before.request_id).await.unwrap(),
        Some(before)
    );
}
