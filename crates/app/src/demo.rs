//! The demo catalog created on a fresh local store, so a newcomer has something to book at once.
//!
//! Ids are fixed so the README's walkthrough can name them; start times are relative to the day
//! the store was seeded, so the shows are always in the future.

use booking_core::layout::{Category, LayoutSpec, RowSpec};
use booking_core::ports::{CatalogStore, StoreError};
use booking_core::{Movie, MovieId, SeatId, SeatLayout, Show, ShowId};
use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use uuid::Uuid;

pub const PREMIERE_MOVIE: MovieId =
    MovieId::from_uuid(Uuid::from_u128(0x6d0c1a6e_8f1e_4c3a_9b2d_000000000001));
pub const MATINEE_MOVIE: MovieId =
    MovieId::from_uuid(Uuid::from_u128(0x6d0c1a6e_8f1e_4c3a_9b2d_000000000002));
/// The 500-seat flash-sale show.
pub const PREMIERE_GRAND_HALL: ShowId =
    ShowId::from_uuid(Uuid::from_u128(0x5e0c1a6e_8f1e_4c3a_9b2d_000000000001));
pub const PREMIERE_STUDIO: ShowId =
    ShowId::from_uuid(Uuid::from_u128(0x5e0c1a6e_8f1e_4c3a_9b2d_000000000002));
pub const MATINEE_EARLY: ShowId =
    ShowId::from_uuid(Uuid::from_u128(0x5e0c1a6e_8f1e_4c3a_9b2d_000000000003));
pub const MATINEE_LATE: ShowId =
    ShowId::from_uuid(Uuid::from_u128(0x5e0c1a6e_8f1e_4c3a_9b2d_000000000004));

fn category(code: &str, name: &str, price_cents: i64) -> Category {
    Category {
        code: code.into(),
        name: name.into(),
        price_cents,
        currency: "EUR".into(),
    }
}

/// 20 rows (A–T) of 25 seats: 500 sellable seats, rows A–E premium.
pub fn grand_hall() -> SeatLayout {
    let rows = (0..20u16)
        .map(|r| RowSpec {
            row: SeatId::row_label(r),
            seats: 25,
            category: if r < 5 { "PREMIUM" } else { "STANDARD" }.into(),
        })
        .collect();
    SeatLayout::new(LayoutSpec {
        categories: vec![
            category("PREMIUM", "Premium", 1800),
            category("STANDARD", "Standard", 1200),
        ],
        rows,
        blocked: vec![],
    })
    .expect("the grand hall layout is valid")
}

/// 8 rows (A–H) of 12 seats, the two aisle seats of row A blocked (wheelchair spaces).
pub fn studio() -> SeatLayout {
    let rows = (0..8u16)
        .map(|r| RowSpec {
            row: SeatId::row_label(r),
            seats: 12,
            category: if r == 7 { "SOFA" } else { "STANDARD" }.into(),
        })
        .collect();
    SeatLayout::new(LayoutSpec {
        categories: vec![
            category("STANDARD", "Standard", 1100),
            category("SOFA", "Sofa", 1500),
        ],
        rows,
        blocked: vec!["A1".parse().expect("seat"), "A12".parse().expect("seat")],
    })
    .expect("the studio layout is valid")
}

/// Movies and shows of the demo catalog, with shows starting on the days after `today`.
pub fn catalog(today: DateTime<Utc>) -> (Vec<Movie>, Vec<Show>) {
    let day = today
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        + Duration::days(1);
    let movies = vec![
        Movie {
            movie_id: PREMIERE_MOVIE,
            title: "The Last Premiere".into(),
            description: "Opening night of the year's most awaited film. Seats go fast.".into(),
            duration_minutes: 148,
            rating: "PG-13".into(),
            genres: vec!["Sci-Fi".into(), "Adventure".into()],
            language: "en".into(),
        },
        Movie {
            movie_id: MATINEE_MOVIE,
            title: "Midnight Matinee".into(),
            description: "A quiet thriller in a small cinema.".into(),
            duration_minutes: 104,
            rating: "PG".into(),
            genres: vec!["Thriller".into()],
            language: "en".into(),
        },
    ];
    let grand = Arc::new(grand_hall());
    let studio = Arc::new(studio());
    let show = |show_id, movie_id, hours: i64, auditorium: &str, layout: &Arc<SeatLayout>| Show {
        show_id,
        movie_id,
        starts_at: day + Duration::hours(hours),
        auditorium: auditorium.into(),
        layout: layout.clone(),
    };
    let shows = vec![
        show(
            PREMIERE_GRAND_HALL,
            PREMIERE_MOVIE,
            20,
            "Grand Hall",
            &grand,
        ),
        show(PREMIERE_STUDIO, PREMIERE_MOVIE, 21, "Studio 2", &studio),
        show(MATINEE_EARLY, MATINEE_MOVIE, 14, "Studio 2", &studio),
        show(MATINEE_LATE, MATINEE_MOVIE, 18, "Studio 2", &studio),
    ];
    (movies, shows)
}

/// Seeds the demo catalog into an empty store; leaves a store that has any movie alone.
pub async fn seed_if_empty(
    catalog_store: &dyn CatalogStore,
    today: DateTime<Utc>,
) -> Result<bool, StoreError> {
    if !catalog_store.list_movies().await?.is_empty() {
        return Ok(false);
    }
    let (movies, shows) = catalog(today);
    for m in &movies {
        catalog_store.put_movie(m).await?;
    }
    for s in &shows {
        catalog_store.put_show(s).await?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_catalog_has_a_500_seat_hall_and_four_shows() {
        let (movies, shows) = catalog(Utc::now());
        assert!(movies.len() >= 2);
        assert_eq!(shows.len(), 4);
        assert!(
            shows
                .iter()
                .any(|s| s.layout.len() == 500 && s.layout.spec().blocked.is_empty())
        );
        assert!(shows.iter().all(|s| s.starts_at > Utc::now()));
    }
}
