//! The catalog: movies, their shows, and a show's seat map with each seat's status as of now.
//! Public: browsing needs no token.

use super::AppState;
use super::extract::{ApiQuery, Segment};
use super::openapi::ErrorBody;
use crate::catalog::DayWithShows;
use crate::error::ApiError;
use crate::service::SeatMap;
use axum::Json;
use axum::extract::State;
use booking_core::{Category, Movie, MovieId, SeatId, SeatStatus, Show, ShowId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;

pub(super) fn routes<const DESCRIBE: bool>() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(route!(DESCRIBE, list_movies))
        .routes(route!(DESCRIBE, get_movie))
        .routes(route!(DESCRIBE, list_shows))
        .routes(route!(DESCRIBE, availability))
        .routes(route!(DESCRIBE, seat_map))
}

/// Whether a show still sells.
#[derive(Serialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum ShowState {
    Scheduled,
    /// For good: it sells nothing any more.
    Cancelled,
}

/// A show: when and where, and its price categories.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Show)]
pub(super) struct ShowView {
    show_id: ShowId,
    movie_id: MovieId,
    starts_at: DateTime<Utc>,
    auditorium: String,
    total_seats: usize,
    categories: Vec<Category>,
    status: ShowState,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancelled_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancellation_reason: Option<String>,
}

impl From<&Show> for ShowView {
    fn from(s: &Show) -> Self {
        Self {
            show_id: s.show_id,
            movie_id: s.movie_id,
            starts_at: s.starts_at,
            auditorium: s.auditorium.clone(),
            total_seats: s.layout.len(),
            categories: s.layout.categories().to_vec(),
            status: if s.is_cancelled() {
                ShowState::Cancelled
            } else {
                ShowState::Scheduled
            },
            cancelled_at: s.cancelled.as_ref().map(|c| c.at),
            cancellation_reason: s.cancelled.as_ref().map(|c| c.reason.clone()),
        }
    }
}

/// One seat and its status as of now.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Seat)]
struct SeatView {
    seat_id: SeatId,
    number: u16,
    category: String,
    status: SeatStatus,
}

/// A row of seats, all of one category.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Row)]
struct RowView {
    row: String,
    seats: Vec<SeatView>,
}

/// How many seats are in each status.
#[derive(Serialize, Default, ToSchema)]
#[serde(rename_all = "camelCase")]
struct SeatSummary {
    available: usize,
    held: usize,
    booked: usize,
    blocked: usize,
}

/// A show and every seat of it, row by row.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SeatMap)]
struct SeatMapView {
    #[serde(flatten)]
    show: ShowView,
    rows: Vec<RowView>,
    summary: SeatSummary,
}

impl From<&SeatMap> for SeatMapView {
    fn from(map: &SeatMap) -> Self {
        let layout = &map.show.layout;
        let mut summary = SeatSummary::default();
        let mut statuses = map.statuses.iter().peekable();
        let rows = layout
            .rows()
            .iter()
            .map(|row| {
                let seats = (0..row.seats)
                    .filter_map(|_| statuses.next())
                    .map(|&(seat_id, status)| {
                        match status {
                            SeatStatus::Available => summary.available += 1,
                            SeatStatus::Held => summary.held += 1,
                            SeatStatus::Booked => summary.booked += 1,
                            SeatStatus::Blocked => summary.blocked += 1,
                        }
                        SeatView {
                            seat_id,
                            number: seat_id.number(),
                            category: row.category.clone(),
                            status,
                        }
                    })
                    .collect();
                RowView {
                    row: row.row.clone(),
                    seats,
                }
            })
            .collect();
        Self {
            show: ShowView::from(&map.show),
            rows,
            summary,
        }
    }
}

/// The catalog's movies.
#[derive(Serialize, ToSchema)]
#[schema(as = Movies)]
struct MoviesView {
    movies: Vec<Movie>,
}

/// A movie's shows, by start time.
#[derive(Serialize, ToSchema)]
#[schema(as = Shows)]
struct ShowsView {
    shows: Vec<ShowView>,
}

/// The days on which a movie has shows still to start.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Availability)]
struct AvailabilityView {
    movie_id: MovieId,
    dates: Vec<DayWithShows>,
}

/// List the movies
#[utoipa::path(
    get,
    path = "/api/v1/movies",
    tag = "catalog",
    responses(
        (status = 200, description = "Every movie of the catalog", body = MoviesView),
        (status = 429, description = "RATE_LIMITED: too many requests from this address", body = ErrorBody),
    ),
)]
async fn list_movies(State(state): State<AppState>) -> Result<Json<MoviesView>, ApiError> {
    let movies: Vec<Movie> = state.service.movies().await?;
    Ok(Json(MoviesView { movies }))
}

/// Read a movie
#[utoipa::path(
    get,
    path = "/api/v1/movies/{movieId}",
    tag = "catalog",
    params(("movieId" = MovieId, Path)),
    responses(
        (status = 200, description = "The movie", body = Movie),
        (status = 404, description = "MOVIE_NOT_FOUND: no such movie (also for a malformed id)", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many requests from this address", body = ErrorBody),
    ),
)]
async fn get_movie(
    State(state): State<AppState>,
    Segment(id): Segment,
) -> Result<Json<Movie>, ApiError> {
    Ok(Json(state.service.movie(&id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ShowsQuery {
    /// Only the shows starting on this day (UTC), as YYYY-MM-DD.
    #[param(value_type = Option<String>, format = Date)]
    date: Option<String>,
}

/// List a movie's shows
#[utoipa::path(
    get,
    path = "/api/v1/movies/{movieId}/shows",
    tag = "catalog",
    params(("movieId" = MovieId, Path), ShowsQuery),
    responses(
        (status = 200, description = "The movie's shows, by start time", body = ShowsView),
        (status = 400, description = "INVALID_DATE: `date` is not YYYY-MM-DD; INVALID_QUERY", body = ErrorBody),
        (status = 404, description = "MOVIE_NOT_FOUND: no such movie", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many requests from this address", body = ErrorBody),
    ),
)]
async fn list_shows(
    State(state): State<AppState>,
    Segment(id): Segment,
    ApiQuery(q): ApiQuery<ShowsQuery>,
) -> Result<Json<ShowsView>, ApiError> {
    let shows = state.service.shows_of(&id, q.date.as_deref()).await?;
    let shows = shows.iter().map(ShowView::from).collect();
    Ok(Json(ShowsView { shows }))
}

/// Read a show's seat map
#[utoipa::path(
    get,
    path = "/api/v1/shows/{showId}/seatmap",
    tag = "catalog",
    params(("showId" = ShowId, Path)),
    responses(
        (status = 200, description = "The show and each seat's status as of now", body = SeatMapView),
        (status = 404, description = "SHOW_NOT_FOUND: no such show", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many requests from this address", body = ErrorBody),
    ),
)]
async fn seat_map(
    State(state): State<AppState>,
    Segment(id): Segment,
) -> Result<Json<SeatMapView>, ApiError> {
    let map = state.service.seat_map(&id).await?;
    Ok(Json(SeatMapView::from(&map)))
}

/// List the days a movie plays
///
/// The days on which a movie has shows still to start: what a date picker offers.
#[utoipa::path(
    get,
    path = "/api/v1/movies/{movieId}/availability",
    tag = "catalog",
    params(("movieId" = MovieId, Path)),
    responses(
        (status = 200, description = "The days with shows to come (empty if none)", body = AvailabilityView),
        (status = 404, description = "MOVIE_NOT_FOUND: no such movie", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many requests from this address", body = ErrorBody),
    ),
)]
async fn availability(
    State(state): State<AppState>,
    Segment(id): Segment,
) -> Result<Json<AvailabilityView>, ApiError> {
    let (movie_id, dates) = state.catalog.availability(&id).await?;
    Ok(Json(AvailabilityView { movie_id, dates }))
}
