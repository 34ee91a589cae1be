//! Catalog administration, for the admin role: movies and shows one at a time, and a whole
//! catalog file at once (the format of `seatbook import`, in `crate::catalog`).
//!
//! `POST` makes a new movie or show (its id derived from the `Idempotency-Key`'s use when there is
//! one, so a retry after a lost answer finds it instead of making a second); `PUT` on an id adds
//! or replaces it (201 if it was new, 200 otherwise), which is how prices and blocked seats are
//! changed before a show goes on sale.

use super::AppState;
use super::catalog::ShowView;
use super::extract::{Admin, ApiJson, Segment};
use super::idempotency::KeyUse;
use crate::catalog::{MovieInput, ShowInput};
use crate::error::{ApiError, BookingError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Extension, Json, Router};
use booking_core::ports::CatalogWrite;
use booking_core::{MovieId, ShowId};

/// Where a whole catalog file is posted.
pub const CATALOG_IMPORT_PATH: &str = "/api/v1/admin/catalog";
/// Largest catalog file accepted over HTTP (a chain's whole programme; `seatbook import` reads a
/// file of any size).
pub const MAX_CATALOG_BYTES: usize = 4 * 1024 * 1024;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/movies", post(create_movie))
        .route("/api/v1/admin/movies/{movie_id}", put(put_movie))
        .route("/api/v1/admin/shows", post(create_show))
        .route("/api/v1/admin/shows/{show_id}", put(put_show))
        .route("/api/v1/admin/shows/{show_id}/cancel", post(cancel_show))
        .route(
            CATALOG_IMPORT_PATH,
            post(import_catalog).layer(DefaultBodyLimit::max(MAX_CATALOG_BYTES)),
        )
}

/// The id a `POST` gives what it makes: derived from the key's use (the same on every retry of
/// it), or new.
fn new_id(key_use: &Option<Extension<KeyUse>>, mask: u128) -> uuid::Uuid {
    key_use
        .as_ref()
        .and_then(|Extension(KeyUse(id))| crate::orders::derived(Some(id), mask))
        .unwrap_or_else(uuid::Uuid::new_v4)
}

const MOVIE_ID_MASK: u128 = 0x6a09_e667_f3bc_c908_bb67_ae85_84ca_a73b & crate::orders::ID_MASK_BITS;
const SHOW_ID_MASK: u128 = 0x3c6e_f372_fe94_f82b_a54f_f53a_5f1d_36f1 & crate::orders::ID_MASK_BITS;

fn written(status: StatusCode, location: String, body: impl serde::Serialize) -> Response {
    let location = HeaderValue::from_str(&location).expect("URLs are ASCII");
    (status, [(header::LOCATION, location)], Json(body)).into_response()
}

fn created_or_ok(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

async fn create_movie(
    State(state): State<AppState>,
    _admin: Admin,
    key_use: Option<Extension<KeyUse>>,
    ApiJson(input): ApiJson<MovieInput>,
) -> Result<Response, ApiError> {
    let id = MovieId::from_uuid(new_id(&key_use, MOVIE_ID_MASK));
    let (movie, _) = state.catalog.put_movie(id, input).await?;
    Ok(written(
        StatusCode::CREATED,
        format!("/api/v1/movies/{id}"),
        movie,
    ))
}

async fn put_movie(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(raw): Segment,
    ApiJson(input): ApiJson<MovieInput>,
) -> Result<Response, ApiError> {
    let id: MovieId = raw.parse().map_err(|_| BookingError::MovieNotFound)?;
    let (movie, created) = state.catalog.put_movie(id, input).await?;
    Ok(written(
        created_or_ok(created),
        format!("/api/v1/movies/{id}"),
        movie,
    ))
}

async fn create_show(
    State(state): State<AppState>,
    _admin: Admin,
    key_use: Option<Extension<KeyUse>>,
    ApiJson(input): ApiJson<ShowInput>,
) -> Result<Response, ApiError> {
    let id = ShowId::from_uuid(new_id(&key_use, SHOW_ID_MASK));
    let (show, _) = state.catalog.put_show(id, input).await?;
    Ok(written(
        StatusCode::CREATED,
        format!("/api/v1/shows/{id}/seatmap"),
        ShowView::from(&show),
    ))
}

async fn put_show(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(raw): Segment,
    ApiJson(input): ApiJson<ShowInput>,
) -> Result<Response, ApiError> {
    let id: ShowId = raw.parse().map_err(|_| BookingError::ShowNotFound)?;
    let (show, created) = state.catalog.put_show(id, input).await?;
    Ok(written(
        created_or_ok(created),
        format!("/api/v1/shows/{id}/seatmap"),
        ShowView::from(&show),
    ))
}

/// Cancels a show (body optional: `{"reason": "..."}`, shown to its buyers) and answers the show
/// as it is now and what its wind-up ended. Repeatable: a second call keeps the first reason and
/// finishes what is left.
async fn cancel_show(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(raw): Segment,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let reason = super::admin::optional_reason(body)?;
    let (show, wound_up) = state.catalog.cancel_show(&raw, reason.as_deref()).await?;
    Ok(Json(serde_json::json!({
        "show": ShowView::from(&show),
        "woundUp": wound_up,
    })))
}

/// A whole catalog file, written all or nothing; answers what it created, changed and found
/// unchanged.
async fn import_catalog(
    State(state): State<AppState>,
    _admin: Admin,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CatalogWrite>, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "Send the body as Content-Type: application/json",
        ));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("A catalog file over HTTP is at most {MAX_CATALOG_BYTES} bytes"),
            )
        } else {
            ApiError::from(e)
        }
    })?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("MALFORMED_JSON", "Request body is not UTF-8"))?;
    Ok(Json(state.catalog.import(text).await?))
}
