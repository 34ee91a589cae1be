//! Operations, for the admin role: per-show queue statistics (read from the store, so they
//! survive restarts and agree across processes), and pausing or resuming a show's lane (its
//! requests keep queueing, in order, while it is paused; the pause is kept in the store), and
//! the dead letters: requests set aside after `MAX_ATTEMPTS` failed tries, listed, redriven (one,
//! or all of a show's, in arrival order) or discarded (the request ends FAILED, its owner told).

use super::AppState;
use super::extract::{Admin, ApiQuery, Segment};
use super::openapi::ErrorBody;
use crate::error::ApiError;
use crate::service::QueueStats;
use axum::Json;
use axum::extract::State;
use booking_core::ports::DeadLetteredRequest;
use booking_core::{BookingRequest, RequestId, RequestStatus, SeatId, ShowId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;

pub(super) fn routes<const DESCRIBE: bool>() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(route!(DESCRIBE, queue_stats))
        .routes(route!(DESCRIBE, pause_show))
        .routes(route!(DESCRIBE, resume_show))
        .routes(route!(DESCRIBE, list_dead_letters))
        .routes(route!(DESCRIBE, redrive_dead_letter))
        .routes(route!(DESCRIBE, discard_dead_letter))
        .routes(route!(DESCRIBE, redrive_show))
}

/// Every show's queue, as of `generatedAt`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Queues)]
struct QueuesView {
    generated_at: DateTime<Utc>,
    shows: Vec<QueueStats>,
}

/// Whether a show's lane is paused now.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = PauseState)]
struct PauseView {
    show_id: ShowId,
    paused: bool,
}

/// The dead letters, oldest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DeadLetters)]
struct DeadLettersView {
    dead_letters: Vec<DeadLetterView>,
}

/// The requests a redrive put back in the queue, in arrival order.
#[derive(Serialize, ToSchema)]
#[schema(as = Redriven)]
struct RedrivenView {
    redriven: Vec<RequestId>,
}

/// A discarded dead letter: FAILED, its owner told why.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DiscardedDeadLetter)]
struct DiscardedView {
    request_id: RequestId,
    status: RequestStatus,
    message: Option<String>,
}

/// A dead letter as operators see it: the request, why it was set aside, after how many tries.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DeadLetter)]
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

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DeadLettersQuery {
    /// Only this show's.
    #[param(value_type = Option<ShowId>)]
    show_id: Option<String>,
}

/// List dead letters
///
/// Requests set aside after `MAX_ATTEMPTS` failed tries, waiting for an operator.
#[utoipa::path(
    get,
    path = "/api/v1/admin/dead-letters",
    tag = "operations",
    security(("bearerAuth" = ["admin"])),
    params(DeadLettersQuery),
    responses(
        (status = 200, description = "The dead letters", body = DeadLettersView),
        (status = 400, description = "INVALID_QUERY", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: not an admin", body = ErrorBody),
        (status = 404, description = "SHOW_NOT_FOUND: `showId` names no show", body = ErrorBody),
    ),
)]
async fn list_dead_letters(
    State(state): State<AppState>,
    _admin: Admin,
    ApiQuery(q): ApiQuery<DeadLettersQuery>,
) -> Result<Json<DeadLettersView>, ApiError> {
    let letters = state.service.dead_letters(q.show_id.as_deref()).await?;
    let dead_letters = letters.into_iter().map(DeadLetterView::from).collect();
    Ok(Json(DeadLettersView { dead_letters }))
}

/// What a redrive put back in the queue.
fn redriven(requests: &[BookingRequest]) -> Json<RedrivenView> {
    let redriven = requests.iter().map(|r| r.request_id).collect();
    Json(RedrivenView { redriven })
}

/// Redrive a dead letter
///
/// Puts the request back in its show's queue, to be decided again.
#[utoipa::path(
    post,
    path = "/api/v1/admin/dead-letters/{requestId}/redrive",
    tag = "operations",
    security(("bearerAuth" = ["admin"])),
    params(("requestId" = RequestId, Path)),
    responses(
        (status = 200, description = "The request, queued again", body = RedrivenView),
        (status = 403, description = "FORBIDDEN: not an admin", body = ErrorBody),
        (status = 404, description = "DEAD_LETTER_NOT_FOUND: the request is not a dead letter", body = ErrorBody),
    ),
)]
async fn redrive_dead_letter(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(id): Segment,
) -> Result<Json<RedrivenView>, ApiError> {
    let request = state.service.redrive_dead_letter(&id).await?;
    Ok(redriven(std::slice::from_ref(&request)))
}

/// Redrive a show's dead letters
///
/// Puts every dead letter of the show back in its queue, in arrival order.
#[utoipa::path(
    post,
    path = "/api/v1/admin/shows/{showId}/dead-letters/redrive",
    tag = "operations",
    security(("bearerAuth" = ["admin"])),
    params(("showId" = ShowId, Path)),
    responses(
        (status = 200, description = "The requests queued again", body = RedrivenView),
        (status = 403, description = "FORBIDDEN: not an admin", body = ErrorBody),
        (status = 404, description = "SHOW_NOT_FOUND: no such show", body = ErrorBody),
    ),
)]
async fn redrive_show(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(id): Segment,
) -> Result<Json<RedrivenView>, ApiError> {
    Ok(redriven(&state.service.redrive_show(&id).await?))
}

/// Why an operator acts (optional).
#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Reason)]
pub(super) struct ReasonBody {
    /// At most 500 characters, no control characters.
    #[schema(max_length = 500)]
    reason: Option<String>,
}

/// The reason of an operator's action, from a body that is optional: none (no body, or JSON
/// `null`), or `{"reason": "..."}`.
pub(super) fn optional_reason(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Option<String>, ApiError> {
    let body = body?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    Ok(serde_json::from_slice::<Option<ReasonBody>>(&body)
        .map_err(|e| {
            if e.is_syntax() || e.is_eof() {
                ApiError::bad_request("MALFORMED_JSON", "Request body is not valid JSON")
            } else {
                ApiError::bad_request("INVALID_REQUEST", e.to_string())
            }
        })?
        .and_then(|body| body.reason))
}

/// Discard a dead letter
///
/// Ends the request FAILED and tells its owner (with the reason, if one is given).
#[utoipa::path(
    post,
    path = "/api/v1/admin/dead-letters/{requestId}/discard",
    tag = "operations",
    security(("bearerAuth" = ["admin"])),
    params(("requestId" = RequestId, Path)),
    request_body(content = Option<ReasonBody>, description = "Optional: no body, or a reason"),
    responses(
        (status = 200, description = "The request, FAILED", body = DiscardedView),
        (status = 403, description = "FORBIDDEN: not an admin", body = ErrorBody),
        (status = 404, description = "DEAD_LETTER_NOT_FOUND: the request is not a dead letter", body = ErrorBody),
        (status = 422, description = "INVALID_REASON: `reason` is too long or has control characters", body = ErrorBody),
    ),
)]
async fn discard_dead_letter(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(id): Segment,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<DiscardedView>, ApiError> {
    let reason = optional_reason(body)?;
    let request = state
        .service
        .discard_dead_letter(&id, reason.as_deref())
        .await?;
    Ok(Json(DiscardedView {
        request_id: request.request_id,
        status: request.status,
        message: request.outcome.as_ref().map(|o| o.message()),
    }))
}

/// Read every show's queue
#[utoipa::path(
    get,
    path = "/api/v1/admin/queues",
    tag = "operations",
    security(("bearerAuth" = ["admin"])),
    responses(
        (status = 200, description = "Each show's queue: waiting, in flight, decided, rates", body = QueuesView),
        (status = 403, description = "FORBIDDEN: not an admin", body = ErrorBody),
    ),
)]
async fn queue_stats(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<QueuesView>, ApiError> {
    let shows = state.service.queue_stats().await?;
    let generated_at = state.service.ports().clock.now();
    Ok(Json(QueuesView {
        generated_at,
        shows,
    }))
}

/// Pause a show's lane
///
/// Its requests keep queueing, in order, and are decided once it is resumed.
#[utoipa::path(
    post,
    path = "/api/v1/admin/shows/{showId}/pause",
    tag = "operations",
    security(("bearerAuth" = ["admin"])),
    params(("showId" = ShowId, Path)),
    responses(
        (status = 200, description = "Paused", body = PauseView),
        (status = 403, description = "FORBIDDEN: not an admin", body = ErrorBody),
        (status = 404, description = "SHOW_NOT_FOUND: no such show", body = ErrorBody),
    ),
)]
async fn pause_show(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(id): Segment,
) -> Result<Json<PauseView>, ApiError> {
    let show_id = state.service.set_paused(&id, true).await?;
    Ok(Json(PauseView {
        show_id,
        paused: true,
    }))
}

/// Resume a show's lane
#[utoipa::path(
    post,
    path = "/api/v1/admin/shows/{showId}/resume",
    tag = "operations",
    security(("bearerAuth" = ["admin"])),
    params(("showId" = ShowId, Path)),
    responses(
        (status = 200, description = "Resumed", body = PauseView),
        (status = 403, description = "FORBIDDEN: not an admin", body = ErrorBody),
        (status = 404, description = "SHOW_NOT_FOUND: no such show", body = ErrorBody),
    ),
)]
async fn resume_show(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(id): Segment,
) -> Result<Json<PauseView>, ApiError> {
    let show_id = state.service.set_paused(&id, false).await?;
    Ok(Json(PauseView {
        show_id,
        paused: false,
    }))
}
