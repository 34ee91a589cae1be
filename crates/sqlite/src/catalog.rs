//! `CatalogStore`: movies and shows. Written rarely (administration, catalog imports, the demo
//! seed), read on every seat map and every intake validation.

use crate::SqliteStore;
use crate::codec;
use async_trait::async_trait;
use booking_core::catalog::EntryWrite;
use booking_core::ports::{CatalogError, CatalogStore, CatalogWrite, StoreError, Upserted};
use booking_core::{Movie, MovieId, SeatLayout, Show, ShowCancellation, ShowId};
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteRow;
use std::sync::Arc;

const MILLIS_PER_DAY: i64 = 86_400_000;

fn decode_movie(row: &SqliteRow) -> Result<Movie, StoreError> {
    let duration: i64 = codec::get(row, "duration_minutes")?;
    Ok(Movie {
        movie_id: codec::get_parsed(row, "movie_id")?,
        title: codec::get(row, "title")?,
        description: codec::get(row, "description")?,
        duration_minutes: u32::try_from(duration)
            .map_err(|_| codec::corrupt(format_args!("duration_minutes: {duration}")))?,
        rating: codec::get(row, "rating")?,
        genres: codec::from_json(&codec::get::<String>(row, "genres")?, "genres")?,
        language: codec::get(row, "language")?,
    })
}

fn decode_show(row: &SqliteRow) -> Result<Show, StoreError> {
    let layout: SeatLayout = codec::from_json(&codec::get::<String>(row, "layout")?, "layout")?;
    Ok(Show {
        show_id: codec::get_parsed(row, "show_id")?,
        movie_id: codec::get_parsed(row, "movie_id")?,
        starts_at: codec::get_time(row, "starts_at")?,
        auditorium: codec::get(row, "auditorium")?,
        layout: Arc::new(layout),
        cancelled: match codec::get_opt_time(row, "cancelled_at")? {
            Some(at) => Some(ShowCancellation {
                at,
                reason: codec::get::<Option<String>>(row, "cancel_reason")?.unwrap_or_default(),
            }),
            None => None,
        },
    })
}

/// The columns [`decode_show`] reads.
macro_rules! show_columns {
    () => {
        "show_id, movie_id, starts_at, auditorium, layout, cancelled_at, cancel_reason"
    };
}

#[async_trait]
impl CatalogStore for SqliteStore {
    #[tracing::instrument(skip_all)]
    async fn list_movies(&self) -> Result<Vec<Movie>, StoreError> {
        let rows = sqlx::query(
            "SELECT movie_id, title, description, duration_minutes, rating, genres, language \
             FROM movies ORDER BY title, movie_id",
        )
        .fetch_all(self.readers())
        .await
        .map_err(codec::store_error)?;
        rows.iter().map(decode_movie).collect()
    }

    #[tracing::instrument(skip_all, fields(movie_id = %movie))]
    async fn get_movie(&self, movie: MovieId) -> Result<Option<Movie>, StoreError> {
        let row = sqlx::query(
            "SELECT movie_id, title, description, duration_minutes, rating, genres, language \
             FROM movies WHERE movie_id = ?1",
        )
        .bind(movie.to_string())
        .fetch_optional(self.readers())
        .await
        .map_err(codec::store_error)?;
        row.as_ref().map(decode_movie).transpose()
    }

    #[tracing::instrument(skip_all, fields(movie_id = %movie))]
    async fn list_shows(
        &self,
        movie: MovieId,
        date: Option<NaiveDate>,
    ) -> Result<Vec<Show>, StoreError> {
        // A date is a half-open range of start times, so the (movie_id, starts_at) index serves
        // both the filtered and the unfiltered listing.
        let (from, until) = match date {
            Some(day) => {
                let start = codec::millis(day.and_time(chrono::NaiveTime::MIN).and_utc());
                (start, start + MILLIS_PER_DAY)
            }
            None => (i64::MIN, i64::MAX),
        };
        let rows = sqlx::query(concat!(
            "SELECT ",
            show_columns!(),
            " FROM shows \
             WHERE movie_id = ?1 AND starts_at >= ?2 AND starts_at < ?3 \
             ORDER BY starts_at, show_id"
        ))
        .bind(movie.to_string())
        .bind(from)
        .bind(until)
        .fetch_all(self.readers())
        .await
        .map_err(codec::store_error)?;
        rows.iter().map(decode_show).collect()
    }

    #[tracing::instrument(skip_all, fields(show_id = %show))]
    async fn get_show(&self, show: ShowId) -> Result<Option<Show>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            show_columns!(),
            " FROM shows WHERE show_id = ?1"
        ))
        .bind(show.to_string())
        .fetch_optional(self.readers())
        .await
        .map_err(codec::store_error)?;
        row.as_ref().map(decode_show).transpose()
    }

    #[tracing::instrument(skip_all, fields(show_id = %show, paused))]
    async fn set_paused(&self, show: ShowId, paused: bool) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE shows SET paused = ?2 WHERE show_id = ?1")
            .bind(show.to_string())
            .bind(i64::from(paused))
            .execute(self.writer())
            .await
            .map_err(codec::store_error)?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(skip_all, fields(show_id = %show))]
    async fn is_paused(&self, show: ShowId) -> Result<bool, StoreError> {
        let paused: Option<i64> = sqlx::query_scalar("SELECT paused FROM shows WHERE show_id = ?1")
            .bind(show.to_string())
            .fetch_optional(self.readers())
            .await
            .map_err(codec::store_error)?;
        Ok(paused.is_some_and(|p| p != 0))
    }

    #[tracing::instrument(skip_all)]
    async fn paused_shows(&self) -> Result<Vec<ShowId>, StoreError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT show_id FROM shows WHERE paused = 1 ORDER BY show_id")
                .fetch_all(self.readers())
                .await
                .map_err(codec::store_error)?;
        ids.iter().map(|id| codec::parse(id, "show_id")).collect()
    }

    #[tracing::instrument(skip_all, fields(show_id = %show))]
    async fn cancel_show(
        &self,
        show: ShowId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Show>, StoreError> {
        // One statement: the first cancellation wins, a later one changes nothing.
        let row = sqlx::query(concat!(
            "UPDATE shows SET cancelled_at = COALESCE(cancelled_at, ?2), \
                 cancel_reason = CASE WHEN cancelled_at IS NULL THEN ?3 ELSE cancel_reason END \
             WHERE show_id = ?1 RETURNING ",
            show_columns!()
        ))
        .bind(show.to_string())
        .bind(codec::millis(at))
        .bind(reason)
        .fetch_optional(self.writer())
        .await
        .map_err(codec::store_error)?;
        row.as_ref().map(decode_show).transpose()
    }

    #[tracing::instrument(skip_all)]
    async fn cancelled_shows(&self, since: DateTime<Utc>) -> Result<Vec<ShowId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT show_id FROM shows WHERE cancelled_at >= ?1 ORDER BY cancelled_at, show_id",
        )
        .bind(codec::millis(since))
        .fetch_all(self.readers())
        .await
        .map_err(codec::store_error)?;
        ids.iter().map(|id| codec::parse(id, "show_id")).collect()
    }

    #[tracing::instrument(skip_all, fields(movies = movies.len(), shows = shows.len()))]
    async fn put_catalog(
        &self,
        movies: &[Movie],
        shows: &[Show],
    ) -> Result<CatalogWrite, CatalogError> {
        // One IMMEDIATE transaction on the single writer: no request can be inserted between the
        // check that a show has none and the write of its new layout.
        let mut tx = self
            .writer()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(codec::store_error)?;
        let mut written = CatalogWrite::default();
        for movie in movies {
            written.count_movie(upsert_movie(&mut tx, movie).await?);
        }
        for show in shows {
            written.count_show(upsert_show(&mut tx, show).await?);
        }
        tx.commit().await.map_err(codec::store_error)?;
        Ok(written)
    }
}

async fn upsert_movie(conn: &mut SqliteConnection, movie: &Movie) -> Result<Upserted, StoreError> {
    let stored = sqlx::query(
        "SELECT movie_id, title, description, duration_minutes, rating, genres, language \
         FROM movies WHERE movie_id = ?1",
    )
    .bind(movie.movie_id.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(codec::store_error)?
    .as_ref()
    .map(decode_movie)
    .transpose()?;
    let write = EntryWrite::of(stored.as_ref(), movie);
    if write == EntryWrite::Unchanged {
        return Ok(Upserted::Unchanged);
    }
    // An upsert, not INSERT OR REPLACE: replacing would delete the row first, which the
    // shows referencing it forbid.
    sqlx::query(
        "INSERT INTO movies \
             (movie_id, title, description, duration_minutes, rating, genres, language) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (movie_id) DO UPDATE SET \
             title = excluded.title, description = excluded.description, \
             duration_minutes = excluded.duration_minutes, rating = excluded.rating, \
             genres = excluded.genres, language = excluded.language",
    )
    .bind(movie.movie_id.to_string())
    .bind(&movie.title)
    .bind(&movie.description)
    .bind(i64::from(movie.duration_minutes))
    .bind(&movie.rating)
    .bind(codec::to_json(&movie.genres)?)
    .bind(&movie.language)
    .execute(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    Ok(write.upserted())
}

async fn upsert_show(conn: &mut SqliteConnection, show: &Show) -> Result<Upserted, CatalogError> {
    let stored = sqlx::query(concat!(
        "SELECT ",
        show_columns!(),
        " FROM shows WHERE show_id = ?1"
    ))
    .bind(show.show_id.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(codec::store_error)?
    .as_ref()
    .map(decode_show)
    .transpose()?;
    let write = EntryWrite::of_show(stored.as_ref(), show)?;
    match write {
        EntryWrite::Unchanged => return Ok(Upserted::Unchanged),
        EntryWrite::ReplaceUnlessOnSale => {
            let on_sale: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM booking_requests WHERE show_id = ?1)",
            )
            .bind(show.show_id.to_string())
            .fetch_one(&mut *conn)
            .await
            .map_err(codec::store_error)?;
            if on_sale {
                return Err(CatalogError::OnSale(show.show_id));
            }
        }
        EntryWrite::Create | EntryWrite::Replace => {}
    }
    let result = sqlx::query(
        "INSERT INTO shows (show_id, movie_id, starts_at, auditorium, layout) \
         VALUES (?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (show_id) DO UPDATE SET \
             movie_id = excluded.movie_id, starts_at = excluded.starts_at, \
             auditorium = excluded.auditorium, layout = excluded.layout",
    )
    .bind(show.show_id.to_string())
    .bind(show.movie_id.to_string())
    .bind(codec::millis(show.starts_at))
    .bind(&show.auditorium)
    .bind(codec::to_json(&*show.layout)?)
    .execute(&mut *conn)
    .await;
    booking_sql::errors::show_written(result, show.show_id, show.movie_id, codec::store_error)?;
    Ok(write.upserted())
}
