//! `GET /booking-requests/{id}`: the polling path, always correct whatever happened to the
//! pushes. Only the owner sees a request (anyone else's reads as not found).

use super::AppState;
use super::extract::Segment;
use super::openapi::ErrorBody;
use crate::auth::Caller;
use crate::error::ApiError;
use axum::Json;
use axum::extract::State;
use booking_core::ports::QueueTicket;
use booking_core::{
    BookingRequest, HoldId, RequestId, RequestOutcome, RequestStatus, SeatId, ShowId,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

pub(super) fn routes<const DESCRIBE: bool>() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(route!(DESCRIBE, get_booking_request))
}

/// Where a request's status is polled.
pub(super) fn status_url(id: RequestId) -> String {
    format!("/api/v1/booking-requests/{id}")
}

/// A hold request: where it is, and once decided, its result.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = BookingRequest)]
struct RequestView {
    request_id: RequestId,
    status: RequestStatus,
    show_id: ShowId,
    seat_ids: Vec<SeatId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hold_id: Option<HoldId>,
    /// When the granted hold expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unavailable_seat_ids: Option<Vec<SeatId>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    available_alternatives: Option<Vec<SeatId>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue_position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    estimated_wait_seconds: Option<u64>,
    created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    processed_at: Option<DateTime<Utc>>,
}

impl RequestView {
    fn new(r: &BookingRequest, ticket: Option<QueueTicket>) -> Self {
        let mut view = Self {
            request_id: r.request_id,
            status: r.status,
            show_id: r.show_id,
            seat_ids: r.seat_ids.clone(),
            hold_id: None,
            expires_at: None,
            message: None,
            unavailable_seat_ids: None,
            available_alternatives: None,
            queue_position: ticket.map(|t| t.position),
            estimated_wait_seconds: ticket.map(|t| t.estimated_wait_seconds),
            created_at: r.created_at,
            processed_at: r.processed_at,
        };
        match &r.outcome {
            Some(RequestOutcome::Granted {
                hold_id,
                hold_expires_at,
            }) => {
                view.hold_id = Some(*hold_id);
                view.expires_at = Some(*hold_expires_at);
                view.message = Some("Seats held".into());
            }
            Some(RequestOutcome::Rejected {
                unavailable,
                alternatives,
                message,
            }) => {
                view.message = Some(message.clone());
                view.unavailable_seat_ids = Some(unavailable.clone());
                view.available_alternatives = Some(alternatives.clone());
            }
            Some(RequestOutcome::Expired { message }) => view.message = Some(message.clone()),
            None => view.message = Some("Waiting to be processed".into()),
        }
        view
    }
}

/// Poll a hold request
///
/// Always correct, whatever happened to the WebSocket pushes: QUEUED or PROCESSING with the
/// queue position, then SUCCESS with the hold, FAILED with the seats taken and alternatives, or
/// EXPIRED.
#[utoipa::path(
    get,
    path = "/api/v1/booking-requests/{requestId}",
    tag = "holds",
    security(("bearerAuth" = [])),
    params(("requestId" = RequestId, Path)),
    responses(
        (status = 200, description = "The request", body = RequestView),
        (status = 404, description = "REQUEST_NOT_FOUND: no such request, or not the caller's", body = ErrorBody),
    ),
)]
async fn get_booking_request(
    State(state): State<AppState>,
    caller: Caller,
    Segment(id): Segment,
) -> Result<Json<RequestView>, ApiError> {
    let (request, ticket) = state.service.booking_request(&caller.user_id, &id).await?;
    Ok(Json(RequestView::new(&request, ticket)))
}
