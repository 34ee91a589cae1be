//! Holds: asking for seats (`POST /holds`, answered 202 once the request is durable and queued),
//! reading a hold, releasing it. The caller must own what they read or release.

use super::AppState;
use super::extract::{ApiJson, HoldWrites, Limited, Segment};
use super::idempotency::KeyUse;
use super::requests::status_url;
use crate::auth::Caller;
use crate::error::{ApiError, BookingError};
use crate::service::{Accepted, HoldRequestInput};
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use booking_core::{
    BookingRequest, Hold, HoldId, HoldStatus, RequestId, RequestOutcome, RequestStatus, SeatId,
    Show, ShowId,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/holds", post(create_hold))
        .route("/api/v1/holds/{hold_id}", get(get_hold))
        .route("/api/v1/holds/{hold_id}/release", post(release_hold))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AcceptedView {
    request_id: RequestId,
    status: RequestStatus,
    queue_position: Option<u64>,
    estimated_wait_seconds: Option<u64>,
    message: String,
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HoldView {
    hold_id: HoldId,
    request_id: RequestId,
    show_id: ShowId,
    seat_ids: Vec<SeatId>,
    status: HoldStatus,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ended_at: Option<DateTime<Utc>>,
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HoldBody {
    show_id: String,
    seat_ids: Vec<String>,
}

async fn create_hold(
    State(state): State<AppState>,
    Limited(caller, _): Limited<HoldWrites>,
    key_use: Option<Extension<KeyUse>>,
    ApiJson(body): ApiJson<HoldBody>,
) -> Result<Response, ApiError> {
    // Only a well-formed id goes into the logs: the body's string is the caller's.
    if let Ok(show) = body.show_id.parse::<ShowId>() {
        tracing::Span::current().record("show_id", tracing::field::display(show));
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

async fn get_hold(
    State(state): State<AppState>,
    caller: Caller,
    Segment(id): Segment,
) -> Result<Json<HoldView>, ApiError> {
    let (hold, show) = state.service.hold(&caller.user_id, &id).await?;
    Ok(Json(HoldView::new(&hold, &show)))
}

async fn release_hold(
    State(state): State<AppState>,
    caller: Caller,
    Segment(id): Segment,
) -> Result<Json<HoldView>, ApiError> {
    let (hold, show) = state.service.release_hold(&caller.user_id, &id).await?;
    Ok(Json(HoldView::new(&hold, &show)))
}
