//! Operations, for the admin role: per-show queue statistics (read from the store, so they
//! survive restarts and agree across processes), and pausing or resuming a show's lane (its
//! requests keep queueing, in order, while it is paused; the pause is kept in the store), and
//! the dead letters: requests set aside after `MAX_ATTEMPTS` failed tries, listed, redriven (one,
//! or all of a show's, in arrival order) or discarded (the request ends FAILED, its owner told).

use super::AppState;
use super::extract::{Admin, ApiQuery, Segment};
use crate::error::ApiError;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use booking_core::ports::DeadLetteredRequest;
use booking_core::{BookingRequest, RequestId, RequestStatus, SeatId, ShowId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/queues", get(queue_stats))
        .route("/api/v1/admin/shows/{show_id}/pause", post(pause_show))
        .route("/api/v1/admin/shows/{show_id}/resume", post(resume_show))
        .route("/api/v1/admin/dead-letters", get(list_dead_letters))
        .route(
            "/api/v1/admin/dead-letters/{request_id}/redrive",
            post(redrive_dead_letter),
        )
        .route(
            "/api/v1/admin/dead-letters/{request_id}/discard",
            post(discard_dead_letter),
        )
        .route(
            "/api/v1/admin/shows/{show_id}/dead-letters/redrive",
            post(redrive_show),
        )
}

/// A dead letter as operators see it: the request, why it was set aside, after how many tries.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeadLetterView {
    request_id: RequestId,
    show_id: ShowId,
    user_id: UserId,
    seat_ids: Vec<SeatId>,
    status: RequestStatus,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    reason: String,
    attempts: u32,
    dead_lettered_at: DateTime<Utc>,
}

impl From<DeadLetteredRequest> for DeadLetterView {
    fn from(d: DeadLetteredRequest) -> Self {
        let r = d.request;
        Self {
            request_id: r.request_id,
            show_id: r.show_id,
            user_id: r.user_id,
            seat_ids: r.seat_ids,
            status: r.status,
            created_at: r.created_at,
            expires_at: r.expires_at,
            reason: d.reason,
            attempts: d.attempts,
            dead_lettered_at: d.dead_lettered_at,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeadLettersQuery {
    show_id: Option<String>,
}

async fn list_dead_letters(
    State(state): State<AppState>,
    _admin: Admin,
    ApiQuery(q): ApiQuery<DeadLettersQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let letters = state.service.dead_letters(q.show_id.as_deref()).await?;
    let views: Vec<DeadLetterView> = letters.into_iter().map(DeadLetterView::from).collect();
    Ok(Json(json!({ "deadLetters": views })))
}

/// What a redrive put back in the queue.
fn redriven(requests: &[BookingRequest]) -> Json<serde_json::Value> {
    let ids: Vec<RequestId> = requests.iter().map(|r| r.request_id).collect();
    Json(json!({ "redriven": ids }))
}

async fn redrive_dead_letter(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(id): Segment,
) -> Result<Json<serde_json::Value>, ApiError> {
    let request = state.service.redrive_dead_letter(&id).await?;
    Ok(redriven(std::slice::from_ref(&request)))
}

async fn redrive_show(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(id): Segment,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(redriven(&state.service.redrive_show(&id).await?))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReasonBody {
    reason: Option<String>,
}

/// The reason of an operator's action, from a body that is optional: none, or
/// `{"reason": "..."}`.
pub(super) fn optional_reason(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Option<String>, ApiError> {
    let body = body?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    Ok(serde_json::from_slice::<ReasonBody>(&body)
        .map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                ApiError::bad_request("MALFORMED_JSON", "Request body is not valid JSON")
            } else {
                ApiError::bad_request("INVALID_REQUEST", e.to_string())
            }
        })?
        .reason)
}

async fn discard_dead_letter(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(id): Segment,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let reason = optional_reason(body)?;
    let request = state
        .service
        .discard_dead_letter(&id, reason.as_deref())
        .await?;
    Ok(Json(json!({
        "requestId": request.request_id,
        "status": request.status,
        "message": request.outcome.as_ref().map(|o| o.message()),
    })))
}

async fn queue_stats(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let shows = state.service.queue_stats().await?;
    let now = state.service.ports().clock.now();
    Ok(Json(json!({ "generatedAt": now, "shows": shows })))
}

async fn pause_show(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(id): Segment,
) -> Result<Json<serde_json::Value>, ApiError> {
    let show = state.service.set_paused(&id, true).await?;
    Ok(Json(json!({ "showId": show, "paused": true })))
}

async fn resume_show(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(id): Segment,
) -> Result<Json<serde_json::Value>, ApiError> {
    let show = state.service.set_paused(&id, false).await?;
    Ok(Json(json!({ "showId": show, "paused": false })))
}
