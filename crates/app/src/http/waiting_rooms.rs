//! Waiting rooms over HTTP: an admin switches a show's room on, changes it, reads it and
//! switches it off; a user joins it, polls their place (which keeps it, and hands out the
//! admission token once they are let in) and leaves it.

use super::AppState;
use super::extract::{Admin, ApiJson, JoinLimited, Segment};
use super::openapi::ErrorBody;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::waiting_rooms::{PlaceInfo, RoomSettings};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use booking_core::ShowId;
use booking_core::ports::RoomSummary;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

/// The header `POST /api/v1/holds` reads the admission token from (`Admission-Token`; header
/// names are case-insensitive, and `HeaderName` keeps them in lower case).
pub const ADMISSION_HEADER: &str = "admission-token";

pub(super) fn routes<const DESCRIBE: bool>() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(route!(DESCRIBE, put_room, get_room, delete_room))
        .routes(route!(DESCRIBE, join_room, poll_place, leave_room))
}

/// A show's waiting room as its admin sees it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = WaitingRoom)]
struct RoomView {
    show_id: ShowId,
    opens_at: DateTime<Utc>,
    admit_per_second: u32,
    max_active: Option<u32>,
    admission_ttl_seconds: i64,
    shopping_ttl_seconds: i64,
    grace_seconds: i64,
    /// Set: the room was set to switch itself on above this many hold requests a second.
    switch_on_above: Option<u32>,
    /// Waiting for demand to switch it on: holds need no admission yet, and `opensAt` (the
    /// setting, until then) becomes the instant it does.
    armed: bool,
    /// The pre-queue's order is drawn and admission has started.
    opened: bool,
    /// Admissions a second over the last 10 s in which people waited (what wait estimates
    /// use); absent before a first measure.
    measured_admissions_per_second: Option<f64>,
    waiting: u64,
    admitted: u64,
    shopping: u64,
    /// Bought, or left.
    done: u64,
    abandoned: u64,
    expired: u64,
}

impl RoomView {
    fn new(show_id: ShowId, room: RoomSummary) -> Self {
        let p = room.policy;
        let c = room.counts;
        Self {
            show_id,
            opens_at: p.opens_at,
            admit_per_second: p.admit_per_second,
            max_active: p.max_active,
            admission_ttl_seconds: p.admission_ttl.num_seconds(),
            shopping_ttl_seconds: p.shopping_ttl.num_seconds(),
            grace_seconds: p.grace.num_seconds(),
            switch_on_above: p.switch_on_above,
            armed: room.armed,
            opened: room.opened,
            measured_admissions_per_second: room
                .pace
                .measured_milli
                .map(|milli| milli as f64 / 1_000.0),
            waiting: c.waiting,
            admitted: c.admitted,
            shopping: c.shopping,
            done: c.done,
            abandoned: c.abandoned,
            expired: c.expired,
        }
    }
}

/// How a show's waiting room lets people in.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = WaitingRoomSettings)]
struct SettingsBody {
    /// When the sale opens: who joins before is shuffled fairly at this instant. Default: now.
    opens_at: Option<DateTime<Utc>>,
    /// Admissions per second, 1 to 100,000.
    #[schema(minimum = 1, maximum = 100_000)]
    admit_per_second: u32,
    /// At most this many admitted or shopping at once (1 to 1,000,000); none if absent.
    #[schema(minimum = 1, maximum = 1_000_000)]
    max_active: Option<u32>,
    /// How long an admission waits for its first hold, 10 to 3,600 (default 120).
    #[schema(minimum = 10, maximum = 3_600)]
    admission_ttl_seconds: Option<u32>,
    /// How long a shopper counts as active at most, 60 to 7,200 (default 900).
    #[schema(minimum = 60, maximum = 7_200)]
    shopping_ttl_seconds: Option<u32>,
    /// How long a waiting place lasts without a poll, 5 to 600 (default 60).
    #[schema(minimum = 5, maximum = 600)]
    grace_seconds: Option<u32>,
    /// Arm the room instead of switching it on: holds need no admission until the show's hold
    /// requests go over this many a second (1 to 1,000,000), then it switches itself on and
    /// opens at that instant (`opensAt` is not used while it is armed). A room already on stays
    /// on.
    #[schema(minimum = 1, maximum = 1_000_000)]
    switch_on_above: Option<u32>,
}

/// The caller's place in a show's waiting room.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = WaitingRoomPlace)]
struct PlaceView {
    show_id: ShowId,
    /// The place's number, in arrival order.
    ticket: u64,
    /// WAITING, ADMITTED, SHOPPING, DONE, ABANDONED or EXPIRED.
    state: &'static str,
    /// While waiting, once the order is drawn (at the opening): 1 = next.
    position: Option<u64>,
    /// About how long until the place is let in, at the pace the room measured over its last
    /// 10 s (its set rate before a first measure); absent while the room lets nobody in.
    estimated_wait_seconds: Option<u64>,
    /// When the room opens (or opened): who joined before is shuffled fairly then. Absent
    /// while the room is armed (it opens when demand switches it on).
    opens_at: Option<DateTime<Utc>>,
    /// Once let in: send it as the `Admission-Token` header of `POST /api/v1/holds`.
    admission_token: Option<String>,
    /// When the token stops working (the end of the longest shopping session it may start).
    admission_expires_at: Option<DateTime<Utc>>,
    /// While ADMITTED: ask for seats before this, or the admission lapses and the place goes
    /// to the next in line.
    admitted_until: Option<DateTime<Utc>>,
    /// Poll again within this many seconds to keep a waiting place.
    poll_within_seconds: u32,
}

impl From<PlaceInfo> for PlaceView {
    fn from(place: PlaceInfo) -> Self {
        let (admission_token, admission_expires_at) = place.admission.unzip();
        Self {
            show_id: place.show,
            ticket: place.ticket,
            state: place.state.name(),
            position: place.position,
            estimated_wait_seconds: place.estimated_wait_seconds,
            opens_at: place.opens_at,
            admission_token,
            admission_expires_at,
            admitted_until: place.admitted_until,
            poll_within_seconds: place.poll_within_seconds,
        }
    }
}

/// Switch a show's waiting room on, or change it
///
/// From now on `POST /api/v1/holds` for the show needs an admission token from the room (with
/// `switchOnAbove`: once demand has switched the armed room on). A change keeps the room's
/// places and order.
#[utoipa::path(
    put,
    path = "/api/v1/admin/shows/{showId}/waiting-room",
    tag = "waiting room",
    security(("bearerAuth" = ["admin"])),
    params(("showId" = ShowId, Path)),
    request_body = SettingsBody,
    responses(
        (status = 200, description = "The room as it is now", body = RoomView),
        (status = 403, description = "FORBIDDEN: not an admin", body = ErrorBody),
        (status = 404, description = "SHOW_NOT_FOUND: no such show", body = ErrorBody),
        (status = 409, description = "SHOW_CANCELLED: the show was cancelled", body = ErrorBody),
        (status = 422, description = "INVALID_WAITING_ROOM: a setting is out of bounds", body = ErrorBody),
        (status = 503, description = "NO_SHARED_ADMISSION_KEY: deployed without AdmissionSecretArn, the instances could not honour each other's admissions", body = ErrorBody),
    ),
)]
async fn put_room(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(show): Segment,
    ApiJson(body): ApiJson<SettingsBody>,
) -> Result<Json<RoomView>, ApiError> {
    let settings = RoomSettings {
        opens_at: body.opens_at,
        admit_per_second: body.admit_per_second,
        max_active: body.max_active,
        admission_ttl_seconds: body.admission_ttl_seconds,
        shopping_ttl_seconds: body.shopping_ttl_seconds,
        grace_seconds: body.grace_seconds,
        switch_on_above: body.switch_on_above,
    };
    let room = state.waiting_rooms.configure(&show, &settings).await?;
    Ok(Json(RoomView::new(show.parse().expect("found"), room)))
}

/// Read a show's waiting room
///
/// Its settings and how many places are in each state.
#[utoipa::path(
    get,
    path = "/api/v1/admin/shows/{showId}/waiting-room",
    tag = "waiting room",
    security(("bearerAuth" = ["admin"])),
    params(("showId" = ShowId, Path)),
    responses(
        (status = 200, description = "The room", body = RoomView),
        (status = 403, description = "FORBIDDEN: not an admin", body = ErrorBody),
        (status = 404, description = "SHOW_NOT_FOUND, WAITING_ROOM_NOT_FOUND", body = ErrorBody),
    ),
)]
async fn get_room(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(show): Segment,
) -> Result<Json<RoomView>, ApiError> {
    let room = state.waiting_rooms.summary(&show).await?;
    Ok(Json(RoomView::new(show.parse().expect("found"), room)))
}

/// Switch a show's waiting room off
///
/// Anyone may ask for the show's seats again; the room's places are forgotten.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/shows/{showId}/waiting-room",
    tag = "waiting room",
    security(("bearerAuth" = ["admin"])),
    params(("showId" = ShowId, Path)),
    responses(
        (status = 204, description = "Switched off"),
        (status = 403, description = "FORBIDDEN: not an admin", body = ErrorBody),
        (status = 404, description = "SHOW_NOT_FOUND, WAITING_ROOM_NOT_FOUND", body = ErrorBody),
    ),
)]
async fn delete_room(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(show): Segment,
) -> Result<StatusCode, ApiError> {
    state.waiting_rooms.switch_off(&show).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Join a show's waiting room
///
/// Gives the caller a place, or answers with their live one (one place per user and room).
/// Who joins before the opening is shuffled fairly at the opening; later arrivals queue in
/// arrival order. Poll the place (`GET`) within `pollWithinSeconds` to keep it.
#[utoipa::path(
    post,
    path = "/api/v1/shows/{showId}/waiting-room",
    tag = "waiting room",
    security(("bearerAuth" = [])),
    params(("showId" = ShowId, Path)),
    responses(
        (status = 201, description = "A new place", body = PlaceView),
        (status = 200, description = "The caller's live place", body = PlaceView),
        (status = 404, description = "SHOW_NOT_FOUND, WAITING_ROOM_NOT_FOUND: the show has no waiting room on", body = ErrorBody),
        (status = 429, description = "RATE_LIMITED: too many joins from this user or this address", body = ErrorBody),
    ),
)]
async fn join_room(
    State(state): State<AppState>,
    JoinLimited(caller): JoinLimited,
    Segment(show): Segment,
) -> Result<Response, ApiError> {
    let place = state.waiting_rooms.join(&caller.user_id, &show).await?;
    let status = if place.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(PlaceView::from(place))).into_response())
}

/// Poll one's place in a show's waiting room
///
/// Keeps a waiting place (a place not polled within the room's grace period is given up), and
/// once it is let in, carries the admission token for `POST /api/v1/holds`.
#[utoipa::path(
    get,
    path = "/api/v1/shows/{showId}/waiting-room",
    tag = "waiting room",
    security(("bearerAuth" = [])),
    params(("showId" = ShowId, Path)),
    responses(
        (status = 200, description = "The caller's place (their latest, if it has ended)", body = PlaceView),
        (status = 404, description = "SHOW_NOT_FOUND, WAITING_ROOM_NOT_FOUND, NOT_IN_WAITING_ROOM", body = ErrorBody),
    ),
)]
async fn poll_place(
    State(state): State<AppState>,
    caller: Caller,
    Segment(show): Segment,
) -> Result<Json<PlaceView>, ApiError> {
    let place = state.waiting_rooms.poll(&caller.user_id, &show).await?;
    Ok(Json(PlaceView::from(place)))
}

/// Leave a show's waiting room
///
/// Gives up the caller's place, or ends their shopping session: the capacity goes to the next
/// in line at once.
#[utoipa::path(
    delete,
    path = "/api/v1/shows/{showId}/waiting-room",
    tag = "waiting room",
    security(("bearerAuth" = [])),
    params(("showId" = ShowId, Path)),
    responses(
        (status = 204, description = "Left (also when the caller had no live place)"),
        (status = 404, description = "SHOW_NOT_FOUND, WAITING_ROOM_NOT_FOUND", body = ErrorBody),
    ),
)]
async fn leave_room(
    State(state): State<AppState>,
    caller: Caller,
    Segment(show): Segment,
) -> Result<StatusCode, ApiError> {
    state.waiting_rooms.leave(&caller.user_id, &show).await?;
    Ok(StatusCode::NO_CONTENT)
}
