//! The demo catalog created on a fresh local store, so a newcomer has something to book at once.
//!
//! It is a catalog file (`catalog/demo.json`, the format of `seatbook import`). Ids are fixed so
//! the README's walkthrough can name them; start times are relative to the day the store was
//! seeded, so the shows are always in the future.

use crate::catalog::{Catalog, parse_catalog};
use booking_core::ports::{CatalogError, CatalogStore};
use booking_core::{MovieId, ShowId};
use chrono::{DateTime, Utc};
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

/// The demo catalog, a catalog file like any operator's (`catalog/demo.json`).
pub const DEMO_CATALOG: &str = include_str!("../../../catalog/demo.json");

/// Movies and shows of the demo catalog, with shows starting on the day after `today`.
pub fn catalog(today: DateTime<Utc>) -> Catalog {
    parse_catalog(DEMO_CATALOG, today).expect("the demo catalog is a valid catalog file")
}

/// Seeds the demo catalog into an empty store; leaves a store that has any movie alone.
pub async fn seed_if_empty(
    catalog_store: &dyn CatalogStore,
    today: DateTime<Utc>,
) -> Result<bool, CatalogError> {
    if !catalog_store.list_movies().await?.is_empty() {
        return Ok(false);
    }
    let demo = catalog(today);
    catalog_store.put_catalog(&demo.movies, &demo.shows).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_catalog_has_a_500_seat_hall_and_four_shows() {
        let Catalog { movies, shows } = catalog(Utc::now());
        assert!(movies.len() >= 2);
        assert_eq!(shows.len(), 4);
        assert!(
            shows
                .iter()
                .any(|s| s.layout.len() == 500 && s.layout.spec().blocked.is_empty())
        );
        assert!(shows.iter().all(|s| s.starts_at > Utc::now()));
        let ids: Vec<ShowId> = shows.iter().map(|s| s.show_id).collect();
        assert_eq!(
            ids,
            [
                PREMIERE_GRAND_HALL,
                PREMIERE_STUDIO,
                MATINEE_EARLY,
                MATINEE_LATE
            ]
        );
        assert_eq!(
            movies.iter().map(|m| m.movie_id).collect::<Vec<_>>(),
            [PREMIERE_MOVIE, MATINEE_MOVIE]
        );
        let studio = &shows[1].layout;
        assert!(studio.is_blocked("A1".parse().unwrap()));
        assert_eq!(studio.len(), 96);
    }
}
