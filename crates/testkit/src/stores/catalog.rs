//! Catalog: movies and shows as the API lists them, and the store's health check.
//!
//! The catalog is what every request is checked against: a show's layout (categories, blocked
//! seats) must come back intact, movies list by title and shows by start time, the date filter
//! cuts at UTC midnight, puts replace, and a show cannot exist without its movie. A catalog write
//! is all or nothing and counts what it changed, and a show on sale keeps its seats, prices and
//! movie. `ping` is what
//! `GET /health` asks, so a load balancer stops sending traffic to an instance whose store does
//! not answer.

use super::ContractStore;
use crate::support::*;
use booking_core::layout::LayoutSpec;
use booking_core::ports::{CatalogError, CatalogWrite};
use booking_core::{MovieId, SeatLayout, Show, ShowId};
use chrono::{Duration, NaiveDate, TimeZone, Utc};
use std::sync::Arc;

/// Movies list by title and round-trip; shows list by start time, filtered by UTC date, with
/// their layout intact; puts replace; a show needs its movie.
pub async fn catalog_listing_and_date_filter<S: ContractStore>(store: &S) {
    let tag = unique("catalog");
    let mut second = movie(&format!("{tag} B"));
    let first = movie(&format!("{tag} A"));
    store.put_movie(&second).await.unwrap();
    store.put_movie(&first).await.unwrap();
    let listed = |all: Vec<booking_core::Movie>| -> Vec<MovieId> {
        all.into_iter()
            .filter(|m| m.title.starts_with(&tag))
            .map(|m| m.movie_id)
            .collect()
    };
    assert_eq!(
        listed(store.list_movies().await.unwrap()),
        vec![first.movie_id, second.movie_id]
    );
    assert_eq!(
        store.get_movie(first.movie_id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.get_movie(MovieId::new_random()).await.unwrap(), None);

    second.title = format!("{tag} 0 (director's cut)");
    second.genres = vec!["Documentary".into()];
    store.put_movie(&second).await.unwrap();
    assert_eq!(
        store.get_movie(second.movie_id).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        listed(store.list_movies().await.unwrap()),
        vec![second.movie_id, first.movie_id]
    );

    let mut spec = LayoutSpec::from(SeatLayout::rectangular(3, 8, 1_200));
    spec.categories.push(booking_core::Category {
        code: "PREMIUM".into(),
        name: "Premium".into(),
        price_cents: 1_800,
        currency: "EUR".into(),
    });
    spec.rows[2].category = "PREMIUM".into();
    spec.blocked = seats(&["A1", "C8"]);
    let layout = Arc::new(SeatLayout::new(spec).unwrap());
    let at = |d: u32, h: u32, m: u32, s: u32, ms: i64| {
        Utc.with_ymd_and_hms(2031, 3, d, h, m, s).unwrap() + Duration::milliseconds(ms)
    };
    let show = |starts_at| Show {
        show_id: ShowId::new_random(),
        movie_id: first.movie_id,
        starts_at,
        auditorium: "Hall 2".into(),
        layout: layout.clone(),
        cancelled: None,
    };
    let before_midnight = show(at(13, 23, 59, 59, 999));
    let mut morning = show(at(14, 10, 0, 0, 0));
    let evening = show(at(14, 20, 30, 0, 0));
    let next_night = show(at(15, 1, 0, 0, 0));
    for s in [&evening, &next_night, &morning, &before_midnight] {
        store.put_show(s).await.unwrap();
    }
    let day = |d| NaiveDate::from_ymd_opt(2031, 3, d).unwrap();
    let ids = |shows: Vec<Show>| shows.into_iter().map(|s| s.show_id).collect::<Vec<_>>();
    assert_eq!(
        store.list_shows(first.movie_id, None).await.unwrap(),
        vec![
            before_midnight.clone(),
            morning.clone(),
            evening.clone(),
            next_night.clone()
        ]
    );
    assert_eq!(
        ids(store
            .list_shows(first.movie_id, Some(day(14)))
            .await
            .unwrap()),
        vec![morning.show_id, evening.show_id]
    );
    assert_eq!(
        ids(store
            .list_shows(first.movie_id, Some(day(13)))
            .await
            .unwrap()),
        vec![before_midnight.show_id]
    );
    assert_eq!(
        ids(store
            .list_shows(first.movie_id, Some(day(15)))
            .await
            .unwrap()),
        vec![next_night.show_id]
    );
    assert!(
        store
            .list_shows(first.movie_id, Some(day(16)))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_shows(second.movie_id, None)
            .await
            .unwrap()
            .is_empty()
    );

    let stored = store.get_show(morning.show_id).await.unwrap().unwrap();
    assert_eq!(stored, morning);
    assert!(stored.layout.is_blocked(seats(&["C8"])[0]));
    assert_eq!(
        stored.layout.category_of(seats(&["C1"])[0]).unwrap().code,
        "PREMIUM"
    );
    morning.auditorium = "Hall 3".into();
    store.put_show(&morning).await.unwrap();
    assert_eq!(
        store.get_show(morning.show_id).await.unwrap(),
        Some(morning)
    );
    assert_eq!(store.get_show(ShowId::new_random()).await.unwrap(), None);

    let mut orphan = show(at(14, 12, 0, 0, 0));
    orphan.movie_id = MovieId::new_random();
    assert!(
        store.put_show(&orphan).await.is_err(),
        "a show needs its movie"
    );
    assert_eq!(store.get_show(orphan.show_id).await.unwrap(), None);
}

/// The store answers.
pub async fn ping_answers<S: ContractStore>(store: &S) {
    store.ping().await.expect("ping");
}

/// A write of several movies and shows lands whole or not at all, and says what it created,
/// changed and found equal: a second write of the same catalog changes nothing.
pub async fn catalog_write_is_all_or_nothing<S: ContractStore>(store: &S) {
    let first = movie(&unique("import A"));
    let second = movie(&unique("import B"));
    let show_of = |movie: &booking_core::Movie, hours| Show {
        show_id: ShowId::new_random(),
        movie_id: movie.movie_id,
        starts_at: Utc.with_ymd_and_hms(2031, 5, 1, hours, 0, 0).unwrap(),
        auditorium: "Hall 4".into(),
        layout: Arc::new(SeatLayout::rectangular(2, 5, 900)),
        cancelled: None,
    };
    let shows = vec![show_of(&first, 18), show_of(&second, 20)];
    let movies = vec![first.clone(), second.clone()];

    // The last show names a movie nobody has: nothing of the write lands.
    let mut broken = shows.clone();
    let mut orphan = show_of(&first, 22);
    orphan.movie_id = MovieId::new_random();
    broken.push(orphan.clone());
    assert_eq!(
        store.put_catalog(&movies, &broken).await,
        Err(CatalogError::MovieNotFound {
            show: orphan.show_id,
            movie: orphan.movie_id
        })
    );
    assert_eq!(store.get_movie(first.movie_id).await.unwrap(), None);
    assert_eq!(store.get_show(shows[0].show_id).await.unwrap(), None);

    assert_eq!(
        store.put_catalog(&movies, &shows).await.unwrap(),
        CatalogWrite {
            movies_created: 2,
            shows_created: 2,
            ..CatalogWrite::default()
        }
    );
    assert_eq!(
        store.put_catalog(&movies, &shows).await.unwrap(),
        CatalogWrite {
            movies_unchanged: 2,
            shows_unchanged: 2,
            ..CatalogWrite::default()
        }
    );
    let mut renamed = second.clone();
    renamed.title = format!("{} (restored)", second.title);
    let mut moved = shows[1].clone();
    moved.starts_at += Duration::hours(1);
    assert_eq!(
        store
            .put_catalog(
                &[first.clone(), renamed.clone()],
                &[shows[0].clone(), moved.clone()]
            )
            .await
            .unwrap(),
        CatalogWrite {
            movies_updated: 1,
            movies_unchanged: 1,
            shows_updated: 1,
            shows_unchanged: 1,
            ..CatalogWrite::default()
        }
    );
    assert_eq!(
        store.get_movie(second.movie_id).await.unwrap(),
        Some(renamed)
    );
    assert_eq!(store.get_show(moved.show_id).await.unwrap(), Some(moved));
}

/// Before its first hold request a show's layout, prices and movie may change; after it, they
/// are fixed (`OnSale`, nothing written), while its start time and auditorium may still move.
pub async fn a_show_on_sale_keeps_what_is_on_sale<S: ContractStore>(store: &S) {
    let created = create_show(store, 2, 6).await;
    // As stored (start times keep the store's precision), so that a write of it is a no-op.
    let show = store.get_show(created.show_id).await.unwrap().unwrap();
    let other_movie = movie(&unique("other movie"));
    store.put_movie(&other_movie).await.unwrap();

    // Before sales: prices and blocked seats change freely.
    let mut spec = LayoutSpec::from((*show.layout).clone());
    spec.categories[0].price_cents = 1_500;
    spec.blocked = seats(&["A1"]);
    let repriced = Show {
        layout: Arc::new(SeatLayout::new(spec.clone()).unwrap()),
        ..show.clone()
    };
    assert_eq!(
        store.put_show(&repriced).await.unwrap().shows_updated,
        1,
        "a show not yet on sale takes a new layout"
    );

    // The first request puts it on sale.
    insert(
        store,
        new_request(&repriced, &fresh_user("first-buyer"), &["B2"], now()),
    )
    .await;
    let mut bigger = spec.clone();
    bigger.rows[1].seats = 8;
    let changes = [
        Show {
            layout: Arc::new(SeatLayout::new(bigger).unwrap()),
            ..repriced.clone()
        },
        Show {
            layout: Arc::new(SeatLayout::rectangular(2, 6, 1_200)),
            ..repriced.clone()
        },
        Show {
            movie_id: other_movie.movie_id,
            ..repriced.clone()
        },
    ];
    for change in &changes {
        assert_eq!(
            store.put_show(change).await,
            Err(CatalogError::OnSale(show.show_id))
        );
        assert!(
            store.get_show(show.show_id).await.unwrap() == Some(repriced.clone()),
            "a refused write leaves the show as it was"
        );
    }
    // The same layout again, or a new time and auditorium: accepted.
    assert_eq!(store.put_show(&repriced).await.unwrap().shows_unchanged, 1);
    let rescheduled = Show {
        starts_at: repriced.starts_at + Duration::minutes(30),
        auditorium: "Hall 9".into(),
        ..repriced.clone()
    };
    assert_eq!(store.put_show(&rescheduled).await.unwrap().shows_updated, 1);
    assert_eq!(
        store.get_show(show.show_id).await.unwrap(),
        Some(rescheduled)
    );
}

/// Queue statistics are counted from the stored requests, per show: waiting, in flight, each
/// outcome, the oldest waiting request, and the recent decisions; a show without requests is
/// listed while it is to come, and one with undecided requests whatever its start. The pause is
/// kept with the show.
pub async fn queue_counts_and_pauses_come_from_the_store<S: ContractStore>(store: &S) {
    use booking_core::ports::ShowQueueCounts;
    let show = create_show(store, 2, 5).await;
    let quiet = create_show(store, 1, 5).await;
    let t = now();
    let at = |ms: i64| t + Duration::milliseconds(ms);
    let first = request(store, &show, &fresh_user("q-alice"), &["A1"], at(0)).await;
    let loser = request(store, &show, &fresh_user("q-bob"), &["A1"], at(1_000)).await;
    let taken = request(store, &show, &fresh_user("q-carol"), &["B1"], at(2_000)).await;
    let waiting = request(store, &show, &fresh_user("q-dave"), &["B2"], at(3_000)).await;
    request(store, &show, &fresh_user("q-erin"), &["B3"], at(4_000)).await;
    let late = request(
        store,
        &show,
        &fresh_user("q-frank"),
        &["B4"],
        t - REQUEST_TTL * 2,
    )
    .await;
    decide_and_commit(store, &show, &[&first, &loser], at(5_000)).await;
    decide_and_commit(store, &show, &[&late], at(5_000)).await;
    store.begin_processing(&[taken.request_id]).await.unwrap();

    let counts_of = |all: Vec<ShowQueueCounts>, show: &Show| {
        all.into_iter().find(|c| c.show_id == show.show_id)
    };
    let all = store.queue_counts(t, t).await.unwrap();
    let quiet_counts = counts_of(all.clone(), &quiet).expect("a show to come is listed");
    assert_eq!(
        (
            quiet_counts.waiting,
            quiet_counts.succeeded,
            quiet_counts.recently_decided
        ),
        (0, 0, 0)
    );
    let c = counts_of(all, &show).expect("the show");
    assert_eq!(
        (c.waiting, c.in_flight, c.succeeded, c.failed, c.expired),
        (2, 1, 1, 1, 1)
    );
    assert!(!c.paused);
    let oldest = c.oldest_waiting_since.expect("the oldest waiting request");
    assert!(
        (oldest - waiting.created_at).num_milliseconds().abs() <= 1,
        "{oldest} is when the first still-waiting request came"
    );
    // Decided since `t`: the grant and the refusal (an expiry is not a decision), 5 s and 4 s
    // after they came.
    assert_eq!(c.recently_decided, 2);
    let mean = c.recent_mean_time_to_decision_ms.expect("a mean");
    assert!(
        (mean - 4_500.0).abs() < 5.0,
        "mean time to decision {mean} ms"
    );
    let later = counts_of(store.queue_counts(t, at(6_000)).await.unwrap(), &show).unwrap();
    assert_eq!(
        (
            later.recently_decided,
            later.recent_mean_time_to_decision_ms
        ),
        (0, None)
    );

    // After both have started: only the show with undecided requests is still listed.
    let after = store
        .queue_counts(show.starts_at.max(quiet.starts_at) + Duration::hours(1), t)
        .await
        .unwrap();
    assert!(counts_of(after.clone(), &show).is_some());
    assert!(counts_of(after, &quiet).is_none());

    // The pause is the show's, in the store.
    assert!(!store.is_paused(show.show_id).await.unwrap());
    assert!(store.set_paused(show.show_id, true).await.unwrap());
    assert!(store.is_paused(show.show_id).await.unwrap());
    assert!(!store.is_paused(quiet.show_id).await.unwrap());
    assert!(store.paused_shows().await.unwrap().contains(&show.show_id));
    assert!(
        counts_of(store.queue_counts(t, t).await.unwrap(), &show)
            .unwrap()
            .paused
    );
    assert!(
        !store.set_paused(ShowId::new_random(), true).await.unwrap(),
        "no such show"
    );
    assert!(store.set_paused(show.show_id, false).await.unwrap());
    assert!(!store.paused_shows().await.unwrap().contains(&show.show_id));
}
