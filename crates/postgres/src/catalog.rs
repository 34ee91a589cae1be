//! `CatalogStore`: movies and shows. Written rarely (administration, catalog imports, the demo
//! seed), read on every seat map and every intake validation.

use crate::PgStore;
use crate::codec::{self, corrupt};
use async_trait::async_trait;
use booking_core::catalog::EntryWrite;
use booking_core::ports::{CatalogError, CatalogStore, CatalogWrite, StoreError, Upserted};
use booking_core::{Movie, MovieId, SeatLayout, Show, ShowCancellation, ShowId};
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;
use sqlx::types::Json;
use std::sync::Arc;
use uuid::Uuid;

struct MovieRow {
    movie_id: Uuid,
    title: String,
    description: String,
    duration_minutes: i64,
    rating: String,
    genres: Vec<String>,
    language: String,
}

impl TryFrom<MovieRow> for Movie {
    type Error = StoreError;

    fn try_from(row: MovieRow) -> Result<Self, StoreError> {
        Ok(Movie {
            movie_id: MovieId::from_uuid(row.movie_id),
            title: row.title,
            description: row.description,
            duration_minutes: u32::try_from(row.duration_minutes)
                .map_err(|_| corrupt(format_args!("duration_minutes: {}", row.duration_minutes)))?,
            rating: row.rating,
            genres: row.genres,
            language: row.language,
        })
    }
}

struct ShowRow {
    show_id: Uuid,
    movie_id: Uuid,
    starts_at: DateTime<Utc>,
    auditorium: String,
    layout: Json<SeatLayout>,
    cancelled_at: Option<DateTime<Utc>>,
    cancel_reason: Option<String>,
}

impl From<ShowRow> for Show {
    fn from(row: ShowRow) -> Self {
        Show {
            show_id: ShowId::from_uuid(row.show_id),
            movie_id: MovieId::from_uuid(row.movie_id),
            starts_at: row.starts_at,
            auditorium: row.auditorium,
            layout: Arc::new(row.layout.0),
            cancelled: row.cancelled_at.map(|at| ShowCancellation {
                at,
                reason: row.cancel_reason.unwrap_or_default(),
            }),
        }
    }
}

#[async_trait]
impl CatalogStore for PgStore {
    #[tracing::instrument(skip_all)]
    async fn list_movies(&self) -> Result<Vec<Movie>, StoreError> {
        let rows = sqlx::query_as!(
            MovieRow,
            "SELECT movie_id, title, description, duration_minutes, rating, genres, language \
             FROM movies ORDER BY title, movie_id"
        )
        .fetch_all(self.pool())
        .await
        .map_err(codec::store_error)?;
        codec::decode_all(rows)
    }

    #[tracing::instrument(skip_all, fields(movie_id = %movie))]
    async fn get_movie(&self, movie: MovieId) -> Result<Option<Movie>, StoreError> {
        let row = sqlx::query_as!(
            MovieRow,
            "SELECT movie_id, title, description, duration_minutes, rating, genres, language \
             FROM movies WHERE movie_id = $1",
            movie.as_uuid()
        )
        .fetch_optional(self.pool())
        .await
        .map_err(codec::store_error)?;
        row.map(Movie::try_from).transpose()
    }

    #[tracing::instrument(skip_all, fields(movie_id = %movie))]
    async fn list_shows(
        &self,
        movie: MovieId,
        date: Option<NaiveDate>,
    ) -> Result<Vec<Show>, StoreError> {
        // A date is a half-open range of start times, so the (movie_id, starts_at) index serves
        // both the filtered and the unfiltered listing.
        let from = date.map(|day| day.and_time(chrono::NaiveTime::MIN).and_utc());
        let until = from.map(|start| start + chrono::Duration::days(1));
        let rows = sqlx::query_as!(
            ShowRow,
            r#"SELECT show_id, movie_id, starts_at, auditorium, layout AS "layout: Json<SeatLayout>",
                      cancelled_at, cancel_reason
               FROM shows
               WHERE movie_id = $1
                 AND ($2::timestamptz IS NULL OR starts_at >= $2)
                 AND ($3::timestamptz IS NULL OR starts_at < $3)
               ORDER BY starts_at, show_id"#,
            movie.as_uuid(),
            from,
            until
        )
        .fetch_all(self.pool())
        .await
        .map_err(codec::store_error)?;
        Ok(rows.into_iter().map(Show::from).collect())
    }

    #[tracing::instrument(skip_all, fields(show_id = %show))]
    async fn get_show(&self, show: ShowId) -> Result<Option<Show>, StoreError> {
        let row = sqlx::query_as!(
            ShowRow,
            r#"SELECT show_id, movie_id, starts_at, auditorium, layout AS "layout: Json<SeatLayout>",
                      cancelled_at, cancel_reason
               FROM shows WHERE show_id = $1"#,
            show.as_uuid()
        )
        .fetch_optional(self.pool())
        .await
        .map_err(codec::store_error)?;
        Ok(row.map(Show::from))
    }

    #[tracing::instrument(skip_all, fields(show_id = %show, paused))]
    async fn set_paused(&self, show: ShowId, paused: bool) -> Result<bool, StoreError> {
        let done = sqlx::query!(
            "UPDATE shows SET paused = $2 WHERE show_id = $1",
            show.as_uuid(),
            paused
        )
        .execute(self.pool())
        .await
        .map_err(codec::store_error)?;
        Ok(done.rows_affected() == 1)
    }

    #[tracing::instrument(skip_all, fields(show_id = %show))]
    async fn is_paused(&self, show: ShowId) -> Result<bool, StoreError> {
        let paused = sqlx::query_scalar!(
            "SELECT paused FROM shows WHERE show_id = $1",
            show.as_uuid()
        )
        .fetch_optional(self.pool())
        .await
        .map_err(codec::store_error)?;
        Ok(paused.unwrap_or(false))
    }

    #[tracing::instrument(skip_all)]
    async fn paused_shows(&self) -> Result<Vec<ShowId>, StoreError> {
        let ids = sqlx::query_scalar!("SELECT show_id FROM shows WHERE paused ORDER BY show_id")
            .fetch_all(self.pool())
            .await
            .map_err(codec::store_error)?;
        Ok(ids.into_iter().map(ShowId::from_uuid).collect())
    }

    #[tracing::instrument(skip_all, fields(show_id = %show))]
    async fn cancel_show(
        &self,
        show: ShowId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Show>, StoreError> {
        // One statement: the first cancellation wins, a later one changes nothing. The row lock
        // it takes waits for a catalog write of the show in progress.
        let row = sqlx::query_as!(
            ShowRow,
            r#"UPDATE shows SET cancelled_at = COALESCE(cancelled_at, $2),
                   cancel_reason = CASE WHEN cancelled_at IS NULL THEN $3 ELSE cancel_reason END
               WHERE show_id = $1
               RETURNING show_id, movie_id, starts_at, auditorium,
                         layout AS "layout: Json<SeatLayout>", cancelled_at, cancel_reason"#,
            show.as_uuid(),
            at,
            reason
        )
        .fetch_optional(self.pool())
        .await
        .map_err(codec::store_error)?;
        Ok(row.map(Show::from))
    }

    #[tracing::instrument(skip_all)]
    async fn cancelled_shows(&self, since: DateTime<Utc>) -> Result<Vec<ShowId>, StoreError> {
        let ids = sqlx::query_scalar!(
            "SELECT show_id FROM shows WHERE cancelled_at >= $1 ORDER BY cancelled_at, show_id",
            since
        )
        .fetch_all(self.pool())
        .await
        .map_err(codec::store_error)?;
        Ok(ids.into_iter().map(ShowId::from_uuid).collect())
    }

    #[tracing::instrument(skip_all, fields(movies = movies.len(), shows = shows.len()))]
    async fn put_catalog(
        &self,
        movies: &[Movie],
        shows: &[Show],
    ) -> Result<CatalogWrite, CatalogError> {
        let mut tx = self
            .pool()
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
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

async fn upsert_movie(conn: &mut PgConnection, movie: &Movie) -> Result<Upserted, StoreError> {
    let stored = sqlx::query_as!(
        MovieRow,
        "SELECT movie_id, title, description, duration_minutes, rating, genres, language \
         FROM movies WHERE movie_id = $1 FOR UPDATE",
        movie.movie_id.as_uuid()
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(codec::store_error)?
    .map(Movie::try_from)
    .transpose()?;
    let write = EntryWrite::of(stored.as_ref(), movie);
    if write == EntryWrite::Unchanged {
        return Ok(Upserted::Unchanged);
    }
    sqlx::query!(
        "INSERT INTO movies \
             (movie_id, title, description, duration_minutes, rating, genres, language) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (movie_id) DO UPDATE SET \
             title = excluded.title, description = excluded.description, \
             duration_minutes = excluded.duration_minutes, rating = excluded.rating, \
             genres = excluded.genres, language = excluded.language",
        movie.movie_id.as_uuid(),
        movie.title,
        movie.description,
        i64::from(movie.duration_minutes),
        movie.rating,
        &movie.genres,
        movie.language
    )
    .execute(&mut *conn)
    .await
    .map_err(codec::store_error)?;
    Ok(write.upserted())
}

async fn upsert_show(conn: &mut PgConnection, show: &Show) -> Result<Upserted, CatalogError> {
    // FOR UPDATE conflicts with the KEY SHARE lock a request insert takes on its show (the
    // foreign key): a show's first request and the replacement of its layout wait for each
    // other, and the check below, a statement after the lock, sees a request committed meanwhile.
    let stored = sqlx::query_as!(
        ShowRow,
        r#"SELECT show_id, movie_id, starts_at, auditorium, layout AS "layout: Json<SeatLayout>",
                      cancelled_at, cancel_reason
           FROM shows WHERE show_id = $1 FOR UPDATE"#,
        show.show_id.as_uuid()
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(codec::store_error)?
    .map(Show::from);
    let write = EntryWrite::of_show(stored.as_ref(), show)?;
    match write {
        EntryWrite::Unchanged => return Ok(Upserted::Unchanged),
        EntryWrite::ReplaceUnlessOnSale => {
            let on_sale = sqlx::query_scalar!(
                r#"SELECT EXISTS (SELECT 1 FROM booking_requests WHERE show_id = $1) AS "on_sale!""#,
                show.show_id.as_uuid()
            )
            .fetch_one(&mut *conn)
            .await
            .map_err(codec::store_error)?;
            if on_sale {
                return Err(CatalogError::OnSale(show.show_id));
            }
        }
        EntryWrite::Create | EntryWrite::Replace => {}
    }
    let result = sqlx::query!(
        "INSERT INTO shows (show_id, movie_id, starts_at, auditorium, layout) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (show_id) DO UPDATE SET \
             movie_id = excluded.movie_id, starts_at = excluded.starts_at, \
             auditorium = excluded.auditorium, layout = excluded.layout",
        show.show_id.as_uuid(),
        show.movie_id.as_uuid(),
        show.starts_at,
        show.auditorium,
        Json(&*show.layout) as _
    )
    .execute(&mut *conn)
    .await;
    booking_sql::errors::show_written(result, show.show_id, show.movie_id, codec::store_error)?;
    Ok(write.upserted())
}
