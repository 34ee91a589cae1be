//! Catalog: movies and shows as the API lists them, and the store's health check.
//!
//! The catalog is what every request is checked against: a show's layout (categories, blocked
//! seats) must come back intact, movies list by title and shows by start time, the date filter
//! cuts at UTC midnight, puts replace, and a show cannot exist without its movie. `ping` is what
//! `GET /health` asks, so a load balancer stops sending traffic to an instance whose store does
//! not answer.

use super::ContractStore;
use crate::support::*;
use booking_core::layout::LayoutSpec;
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
