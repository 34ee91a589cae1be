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
use super::openapi::ErrorBody;
use crate::cancellation::WindUp;
use crate::catalog::{CatalogFile, MovieInput, ShowInput};
use crate::error::{ApiError, BookingError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use booking_core::ports::CatalogWrite;
use booking_core::{Movie, MovieId, ShowId};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

/// Where a whole catalog file is posted.
pub const CATALOG_IMPORT_PATH: &str = "/api/v1/admin/catalog";
/// Largest catalog file accepted over HTTP (a chain's whole programme; `seatbook import` reads a
/// file of any size).
pub const MAX_CATALOG_BYTES: usize = 4 * 1024 * 1024;

pub(super) fn routes<const DESCRIBE: bool>() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(route!(DESCRIBE, create_movie))
        .routes(route!(DESCRIBE, put_movie))
        .routes(route!(DESCRIBE, create_show))
        .routes(route!(DESCRIBE, put_show))
        .routes(route!(DESCRIBE, cancel_show))
        .merge(
            OpenApiRouter::new()
                .routes(route!(DESCRIBE, import_catalog))
                .layer(DefaultBodyLimit::max(MAX_CATALOG_BYTES)),
        )
}

/// A cancelled show, and what its wind-up ended.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ShowCancellation)]
struct CancelledView {
    show: ShowView,
    wound_up: WindUp,
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

/// Add a movie
///
/// Its id is made up (derived from the `Idempotency-Key`'s use when there is one, so a retry
/// finds the same movie).
#[utoipa::path(
    post,
    path = "/api/v1/admin/movies",
    tag = "catalog administration",
    security(("bearerAuth" = ["admin"])),
    request_body = MovieInput,
    responses(
        (status = 201, description = "The movie", body = Movie,
            headers(("Location" = String, description = "The movie's URL"))),
        (status = 403, description = "FORBIDDEN: not an admin", body = ErrorBody),
        (status = 422, description = "INVALID_CATALOG: every value at fault in `details.issues`", body = ErrorBody),
    ),
)]
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

/// Add or replace a movie
#[utoipa::path(
    put,
    path = "/api/v1/admin/movies/{movieId}",
    tag = "catalog administration",
    security(("bearerAuth" = ["admin"])),
    params(("movieId" = MovieId, Path)),
    request_body = MovieInput,
    responses(
        (status = 200, description = "Replaced (or unchanged)", body = Movie,
            headers(("Location" = String, description = "The movie's URL"))),
        (status = 201, description = "Added", body = Movie,
            headers(("Location" = String, description = "The movie's URL"))),
        (status = 403, description = "FORBIDDEN: not an admin", body = ErrorBody),
        (status = 404, description = "MOVIE_NOT_FOUND: the id is not a UUID", body = ErrorBody),
        (status = 422, description = "INVALID_CATALOG: every value at fault in `details.issues`", body = ErrorBody),
    ),
)]
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

/// Add a show
#[utoipa::path(
    post,
    path = "/api/v1/admin/shows",
    tag = "catalog administration",
    security(("bearerAuth" = ["admin"])),
    request_body = ShowInput,
    responses(
        (status = 201, description = "The show", body = ShowView,
            headers(("Location" = String, description = "The show's seat map"))),
        (status = 403, description = "FORBIDDEN: not an admin", body = ErrorBody),
        (status = 404, description = "MOVIE_NOT_FOUND: no such movie", body = ErrorBody),
        (status = 422, description = "INVALID_CATALOG: every value at fault in `details.issues`", body = ErrorBody),
    ),
)]
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

/// Add or replace a show
///
/// How prices and blocked seats change before a show goes on sale.
#[utoipa::path(
    put,
    path = "/api/v1/admin/shows/{showId}",
    tag = "catalog administration",
    security(("bearerAuth" = ["admin"])),
    params(("showId" = ShowId, Path)),
    request_body = ShowInput,
    responses(
        (status = 200, description = "Replaced (or unchanged)", body = ShowView,
            headers(("Location" = String, description = "The show's seat map"))),
        (status = 201, description = "Added", body = ShowView,
            headers(("Location" = String, description = "The show's seat map"))),
        (status = 403, description = "FORBIDDEN: not an admin", body = ErrorBody),
        (status = 404, description = "SHOW_NOT_FOUND: the id is not a UUID; MOVIE_NOT_FOUND: no such movie", body = ErrorBody),
        (status = 409, description = "SHOW_ON_SALE: its seats, prices and movie are fixed; SHOW_CANCELLED", body = ErrorBody),
        (status = 422, description = "INVALID_CATALOG: every value at fault in `details.issues`", body = ErrorBody),
    ),
)]
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

/// Cancel a show
///
/// Fails its undecided requests, releases its holds, cancels its unpaid orders and refunds its
/// paid ones; the reason (optional) is shown to its buyers. Repeatable: a second call keeps the
/// first reason and finishes what is left.
#[utoipa::path(
    post,
    path = "/api/v1/admin/shows/{showId}/cancel",
    tag = "catalog administration",
    security(("bearerAuth" = ["admin"])),
    params(("showId" = ShowId, Path)),
    request_body(content = Option<super::admin::ReasonBody>, description = "Optional: no body, or a reason"),
    responses(
        (status = 200, description = "The show, CANCELLED, and what its wind-up ended", body = CancelledView),
        (status = 403, description = "FORBIDDEN: not an admin", body = ErrorBody),
        (status = 404, description = "SHOW_NOT_FOUND: no such show", body = ErrorBody),
        (status = 422, description = "INVALID_REASON: `reason` is too long or has control characters", body = ErrorBody),
    ),
)]
async fn cancel_show(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(raw): Segment,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CancelledView>, ApiError> {
    let reason = super::admin::optional_reason(body)?;
    let (show, wound_up) = state.catalog.cancel_show(&raw, reason.as_deref()).await?;
    Ok(Json(CancelledView {
        show: ShowView::from(&show),
        wound_up,
    }))
}

/// Import a catalog file
///
/// Halls, movies and shows, written all or nothing (the format of `seatbook import`); answers
/// what it created, changed and found unchanged. At most 4 MiB over HTTP.
#[utoipa::path(
    post,
    path = "/api/v1/admin/catalog",
    tag = "catalog administration",
    security(("bearerAuth" = ["admin"])),
    request_body = CatalogFile,
    responses(
        (status = 200, description = "What the import wrote", body = CatalogWrite),
        (status = 403, description = "FORBIDDEN: not an admin", body = ErrorBody),
        (status = 409, description = "SHOW_ON_SALE, SHOW_CANCELLED: a show of the file can no longer change", body = ErrorBody),
        (status = 422, description = "INVALID_CATALOG: every value at fault in `details.issues`", body = ErrorBody),
    ),
)]
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
