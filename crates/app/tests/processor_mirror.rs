//! What the batch processor writes to the seat mirror after a commit: exactly the holds that
//! stand, so that the seat map served from the mirror agrees with the store.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use booking_app::{App, BookingConfig, Stores};
use booking_core::ports::{HoldStore, SeatMirror};
use booking_core::{ManualClock, SeatStatus};
use booking_local::MemoryMirror;
use booking_sqlite::{SqliteOptions, SqliteStore};
use booking_testkit::support::{create_show, fresh_user, held, now, request};
use std::sync::Arc;

/// A user's two requests decided in one batch: the second grant releases the first, and the
/// mirror must not keep the first hold's seats (it used to, until the hold's expiry).
#[tokio::test]
async fn a_hold_released_within_its_batch_is_not_mirrored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("mirror.db"), SqliteOptions::default())
            .await
            .unwrap(),
    );
    let t = now();
    let show = create_show(store.as_ref(), 1, 6).await;
    let user = fresh_user("double-click");
    let first = request(store.as_ref(), &show, &user, &["A1"], t).await;
    let second = request(store.as_ref(), &show, &user, &["A2"], t).await;

    let mirror = Arc::new(MemoryMirror::new());
    let generation = mirror.generation(show.show_id).await.unwrap();
    assert!(
        mirror
            .rebuild(show.show_id, show.layout.seats(), &[], generation)
            .await
            .unwrap()
    );
    let app = App::builder(Stores::of(store.clone()), BookingConfig::default())
        .clock(Arc::new(ManualClock::new(t)))
        .mirror(mirror.clone())
        .build();
    let report = app
        .processor()
        .process(show.show_id, &[first, second])
        .await
        .unwrap();
    assert_eq!((report.decided, report.granted), (2, 2));

    let stored = store.taken_seats(show.show_id, t).await.unwrap();
    assert_eq!(
        stored,
        held(&["A2"]),
        "the store keeps only the second hold"
    );
    let mirrored = mirror
        .taken_seats(show.show_id, show.layout.seats(), t)
        .await
        .unwrap()
        .expect("the mirror is complete");
    assert_eq!(mirrored, vec![("A2".parse().unwrap(), SeatStatus::Held)]);
}
