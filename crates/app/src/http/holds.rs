//! Holds: asking for seats (`POST /holds`, answered 202 once the request is durable and queued),
//! reading a hold, releasing it. The caller must own what they read or release.

use super::AppState;
use super::extract::{ApiJson, HoldWrites, Limited, Segment};
use super::idempotency::KeyUse;
use super::openapi::ErrorBody;
use super::requests::status_url;
use super::waiting_rooms::ADMISSION_HEADER;
use crate::auth::Caller;
use crate::error::{ApiError, BookingError};
use crate::service::{Accepted, HoldRequestInput};
use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use booking_core::{
    BookingRequest, Hold, HoldId, HoldStatus, RequestId, RequestOutcome, RequestStatus, SeatId,
    Show, ShowId,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

pub(super) fn routes<const DESCRIBE: bool>() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(route!(DESCRIBE, create_hold))
        .routes(route!(DESCRIBE, get_hold))
        .routes(route!(DESCRIBE, release_hold))
}

/// A hold request accepted: durable and queued, to be decided in arrival order.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Accepted)]
struct AcceptedView {
    request_id: RequestId,
    status: RequestStatus,
    /// Requests ahead of this one in the show's queue, counting itself (null when decided).
    queue_position: Option<u64>,
    /// About how long until it is decided (null when decided).
    estimated_wait_seconds: Option<u64>,
    message: String,
    /// Where the request's status and result are polled.
    status_url: String,
}

impl From<&Accepted> for AcceptedView {
    fn from(a: &Accepted) -> Self {
        let message = match (a.created, a.request.status) {
            (true, _) => {
                "Your request is queued; the result arrives over the WebSocket or at statusUrl"
            }
            (false, s) if s.is_terminal() => {
                "This Idempotency-Key was already used; the request is decided"
            }
            (false, _) => {
                "This Idempotency-Key was already used; the earlier request is still queued"
            }
        };
        Self {
            request_id: a.request.request_id,
            status: a.request.status,
            queue_position: a.ticket.map(|t| t.position),
            estimated_wait_seconds: a.ticket.map(|t| t.estimated_wait_seconds),
            message: message.to_owned(),
            status_url: status_url(a.request.request_id),
        }
    }
}

/// Seats held for the caller until `expiresAt`, to be ordered and paid before then.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Hold)]
struct HoldView {
    hold_id: HoldId,
    request_id: RequestId,
    show_id: ShowId,
    seat_ids: Vec<SeatId>,
    status: HoldStatus,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    /// When it stopped being HELD (released, expired or converted).
    #[serde(skip_serializing_if = "Option::is_none")]
    ended_at: Option<DateTime<Utc>>,
    /// The seats' price, in the currency's minor unit.
    amount_cents: i64,
    currency: String,
}

impl HoldView {
    fn new(h: &Hold, show: &Show) -> Self {
        let amount_cents = h
            .seat_ids
            .iter()
            .filter_map(|s| show.layout.category_of(*s))
            .map(|c| c.price_cents)
            .sum();
        let currency = h
            .seat_ids
            .first()
            .and_then(|s| show.layout.category_of(*s))
            .map(|c| c.currency.clone())
            .unwrap_or_default();
        Self {
            hold_id: h.hold_id,
            request_id: h.request_id,
            show_id: h.show_id,
            seat_ids: h.seat_ids.clone(),
            status: h.status,
            created_at: h.created_at,
            expires_at: h.expires_at,
            ended_at: h.ended_at,
            amount_cents,
            currency,
        }
    }
}

/// The seats asked for.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = HoldRequest)]
struct HoldBody {
    #[schema(value_type = ShowId)]
    show_id: String,
    /// One to `MAX_SEATS_PER_REQUEST` (default 10) distinct seats of the show.
    #[schema(value_type = Vec<SeatId>, min_items = 1)]
    seat_ids: Vec<String>,
}

/// Ask for seats
///
/// Answered 202 once the request is durable and queued; it is decided in arrival order per show
/// and its result arrives over the WebSocket and at `statusUrl`. In direct mode
/// (`QUEUE_BASED_BOOKING=false`) it is decided at once: 201 with the hold, or 409.
#[utoipa::path(
    post,
    path = "/api/v1/holds",
    tag = "holds",
    security(("bearerAuth" = [])),
    params(("Admission-Token" = Option<String>, Header, description = "The admission token of the caller's place in the show's waiting room, when the room is on")),
    request_body = HoldBody,
    responses(
        (status = 202, description = "Accepted and queued (or, for a reused Idempotency-Key, the earlier request as it stands)", body = AcceptedView,
            headers(("Location" = String, description = "The request's status URL"))),
        (status = 201, description = "Direct mode: the seats are held", body = HoldView,
            headers(("Location" = String, description = "The hold's URL"))),
        (status = 403, description = "ADMISSION_REQUIRED: the show's waiting room is on and the `Admission-Token` header carries no valid admission of the caller's place (`details.reason`)", body = ErrorBody),
        (status = 404, description = "SHOW_NOT_FOUND: no such show", body = ErrorBody),
        (status = 409, description = "SHOW_CANCELLED: the show was cancelled; direct mode: SEATS_UNAVAILABLE (with alternatives), REQUEST_EXPIRED", body = ErrorBody),
        (status = 422, description = "NO_SEATS, TOO_MANY_SEATS, INVALID_SEAT_ID, SEAT_NOT_IN_LAYOUT, SEAT_BLOCKED, DUPLICATE_SEATS: the seats asked for are not a valid choice", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED, or TOO_MANY_OPEN_REQUESTS: the caller already waits on too many requests for the show", body = ErrorBody),
    ),
)]
async fn create_hold(
    State(state): State<AppState>,
    Limited(caller, _): Limited<HoldWrites>,
    key_use: Option<Extension<KeyUse>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<HoldBody>,
) -> Result<Response, ApiError> {
    // Only a well-formed id goes into the logs: the body's string is the caller's.
    if let Ok(show) = body.show_id.parse::<ShowId>() {
        tracing::Span::current().record("show_id", tracing::field::display(show));
        // A show whose waiting room is on takes requests from those it let in only.
        let token = headers
            .get(ADMISSION_HEADER)
            .and_then(|value| value.to_str().ok());
        state
            .waiting_rooms
            .admit_hold(&caller.user_id, show, token)
            .await?;
    }
    // Under an Idempotency-Key, the request is stored with the key's use id: a retry after a
    // crash (the first attempt's answer never kept) finds the request the first attempt made.
    let accepted = state
        .service
        .submit_hold(
            &caller.user_id,
            HoldRequestInput {
                show_id: body.show_id,
                seat_ids: body.seat_ids,
                idempotency_key: key_use.map(|Extension(KeyUse(id))| id),
            },
        )
        .await?;
    if !state.service.config().queue_based && accepted.request.status.is_terminal() {
        return decided(&state, &caller, &accepted.request).await;
    }
    let view = AcceptedView::from(&accepted);
    let location = HeaderValue::from_str(&view.status_url).expect("status URLs are ASCII");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response())
}

/// Direct mode's answer: the request was decided at once. 201 with the hold, or 409 with what
/// was taken and the alternatives offered (as a queued request's result would say).
async fn decided(
    state: &AppState,
    caller: &Caller,
    request: &BookingRequest,
) -> Result<Response, ApiError> {
    match &request.outcome {
        Some(RequestOutcome::Granted { hold_id, .. }) => {
            let (hold, show) = state
                .service
                .hold(&caller.user_id, &hold_id.to_string())
                .await?;
            let location =
                HeaderValue::from_str(&format!("/api/v1/holds/{hold_id}")).expect("ASCII");
            Ok((
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(HoldView::new(&hold, &show)),
            )
                .into_response())
        }
        Some(RequestOutcome::Rejected {
            unavailable,
            alternatives,
            message,
        }) => Err(BookingError::SeatsUnavailable {
            request_id: request.request_id,
            unavailable: unavailable.clone(),
            alternatives: alternatives.clone(),
            message: message.clone(),
        }
        .into()),
        Some(RequestOutcome::Expired { .. }) | None => Err(BookingError::RequestExpired {
            request_id: request.request_id,
        }
        .into()),
    }
}

/// Read a hold
#[utoipa::path(
    get,
    path = "/api/v1/holds/{holdId}",
    tag = "holds",
    security(("bearerAuth" = [])),
    params(("holdId" = HoldId, Path)),
    responses(
        (status = 200, description = "The hold", body = HoldView),
        (status = 404, description = "HOLD_NOT_FOUND: no such hold, or not the caller's", body = ErrorBody),
    ),
)]
async fn get_hold(
    State(state): State<AppState>,
    caller: Caller,
    Segment(id): Segment,
) -> Result<Json<HoldView>, ApiError> {
    let (hold, show) = state.service.hold(&caller.user_id, &id).await?;
    Ok(Json(HoldView::new(&hold, &show)))
}

/// Release a hold
///
/// Ends a live hold at once, so its seats go back on sale before it would have expired.
#[utoipa::path(
    post,
    path = "/api/v1/holds/{holdId}/release",
    tag = "holds",
    security(("bearerAuth" = [])),
    params(("holdId" = HoldId, Path)),
    responses(
        (status = 200, description = "The hold, RELEASED", body = HoldView),
        (status = 404, description = "HOLD_NOT_FOUND: no such hold, or not the caller's", body = ErrorBody),
        (status = 409, description = "HOLD_NOT_ACTIVE: the hold is already RELEASED, EXPIRED or CONVERTED (`details.status`)", body = ErrorBody),
    ),
)]
async fn release_hold(
    State(state): State<AppState>,
    caller: Caller,
    Segment(id): Segment,
) -> Result<Json<HoldView>, ApiError> {
    let (hold, show) = state.service.release_hold(&caller.user_id, &id).await?;
    Ok(Json(HoldView::new(&hold, &show)))
}
