//! The catalog: movies, their shows, and a show's seat map with each seat's status as of now.
//! Public: browsing needs no token.

use super::AppState;
use super::extract::{ApiQuery, Segment};
use crate::error::ApiError;
use crate::service::SeatMap;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use booking_core::{Category, Movie, MovieId, SeatId, SeatStatus, Show, ShowId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/movies", get(list_movies))
        .route("/api/v1/movies/{movie_id}", get(get_movie))
        .route("/api/v1/movies/{movie_id}/shows", get(list_shows))
        .route("/api/v1/movies/{movie_id}/availability", get(availability))
        .route("/api/v1/shows/{show_id}/seatmap", get(seat_map))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ShowView {
    show_id: ShowId,
    movie_id: MovieId,
    starts_at: DateTime<Utc>,
    auditorium: String,
    total_seats: usize,
    categories: Vec<Category>,
    /// `SCHEDULED`, or `CANCELLED` (for good: it sells nothing any more).
    status: &'static str,
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
                "CANCELLED"
            } else {
                "SCHEDULED"
            },
            cancelled_at: s.cancelled.as_ref().map(|c| c.at),
            cancellation_reason: s.cancelled.as_ref().map(|c| c.reason.clone()),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SeatView {
    seat_id: SeatId,
    number: u16,
    category: String,
    status: SeatStatus,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RowView {
    row: String,
    seats: Vec<SeatView>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct SeatSummary {
    available: usize,
    held: usize,
    booked: usize,
    blocked: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
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

async fn list_movies(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let movies: Vec<Movie> = state.service.movies().await?;
    Ok(Json(json!({ "movies": movies })))
}

async fn get_movie(
    State(state): State<AppState>,
    Segment(id): Segment,
) -> Result<Json<Movie>, ApiError> {
    Ok(Json(state.service.movie(&id).await?))
}

#[derive(Deserialize)]
struct ShowsQuery {
    date: Option<String>,
}

async fn list_shows(
    State(state): State<AppState>,
    Segment(id): Segment,
    ApiQuery(q): ApiQuery<ShowsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let shows = state.service.shows_of(&id, q.date.as_deref()).await?;
    let views: Vec<ShowView> = shows.iter().map(ShowView::from).collect();
    Ok(Json(json!({ "shows": views })))
}

async fn seat_map(
    State(state): State<AppState>,
    Segment(id): Segment,
) -> Result<Json<SeatMapView>, ApiError> {
    let map = state.service.seat_map(&id).await?;
    Ok(Json(SeatMapView::from(&map)))
}

/// The days on which a movie has shows still to start: what a date picker offers.
async fn availability(
    State(state): State<AppState>,
    Segment(id): Segment,
) -> Result<Json<serde_json::Value>, ApiError> {
    let days = state.catalog.availability(&id).await?;
    Ok(Json(json!({ "movieId": id, "dates": days })))
}
