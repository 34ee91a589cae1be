//! The HTTP API of DESIGN.md section 3 as one axum [`Router`]: served by `axum::serve` locally
//! and by `lambda_http` on AWS.
//!
//! Every rejection axum itself can produce (bad JSON, wrong content type, oversized body, unknown
//! route, wrong method) is turned into the same `{"error":{code,message}}` body as our own errors,
//! so clients parse exactly one error shape.

use crate::auth::{Authenticator, Caller};
use crate::error::ApiError;
use crate::hub::{self, SubscribeError, WsHub};
use crate::service::{Accepted, BookingService, HoldRequestInput, SeatMap};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use booking_core::ports::QueueTicket;
use booking_core::protocol::{ClientMessage, ServerMessage};
use booking_core::{
    BookingRequest, Category, Hold, HoldId, HoldStatus, Movie, MovieId, RequestId, RequestOutcome,
    RequestStatus, SeatId, SeatStatus, Show, ShowId, UserId,
};
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

/// Everything a handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<BookingService>,
    pub auth: Arc<Authenticator>,
    /// Present when this process serves WebSocket clients itself (the local server).
    pub hub: Option<Arc<WsHub>>,
}

/// Builds the router. The `/ws` route exists only when a hub is given.
pub fn router(state: AppState) -> Router {
    let body_limit = state.service.config().max_body_bytes;
    let mut api = Router::new()
        .route("/health", get(health))
        .route("/api/v1/movies", get(list_movies))
        .route("/api/v1/movies/{movie_id}", get(get_movie))
        .route("/api/v1/movies/{movie_id}/shows", get(list_shows))
        .route("/api/v1/shows/{show_id}/seatmap", get(seat_map))
        .route("/api/v1/holds", post(create_hold))
        .route("/api/v1/holds/{hold_id}", get(get_hold))
        .route("/api/v1/holds/{hold_id}/release", post(release_hold))
        .route(
            "/api/v1/booking-requests/{request_id}",
            get(get_booking_request),
        )
        .route("/api/v1/admin/queues", get(queue_stats))
        .route("/api/v1/admin/shows/{show_id}/pause", post(pause_show))
        .route("/api/v1/admin/shows/{show_id}/resume", post(resume_show));
    if state.hub.is_some() {
        api = api.route("/ws", get(websocket)).route(
            "/@connections/{connection_id}",
            post(post_to_connection).delete(delete_connection),
        );
    }
    api.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("NOT_FOUND", "No such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "Method not allowed on this endpoint",
    )
}

// ---------------------------------------------------------------------------------------------
// Extractors with our error body

/// `axum::Json` whose rejections speak our error format.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonSyntaxError(_) => {
                ApiError::bad_request("MALFORMED_JSON", "Request body is not valid JSON")
            }
            JsonRejection::JsonDataError(e) => {
                ApiError::bad_request("INVALID_REQUEST", e.body_text())
            }
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "Send the body as Content-Type: application/json",
            ),
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "Request body is too large",
            ),
            other => ApiError::bad_request("INVALID_REQUEST", other.body_text()),
        }
    }
}

/// `axum::extract::Query` whose rejections speak our error format.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request("INVALID_QUERY", r.body_text())
    }
}

/// A single path segment as text; ids are parsed by the service (a bad id reads as not found).
pub struct Segment(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(s)| Segment(s))
            .map_err(|_| ApiError::not_found("NOT_FOUND", "No such resource"))
    }
}

/// A caller already authenticated in front of this router (API Gateway's JWT authorizer on AWS),
/// put into the request's extensions by the process that serves the router. Extensions never
/// come from the wire, so a client cannot forge one; without it the bearer token is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedCaller(pub Caller);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(AuthorizedCaller(caller)) = parts.extensions.get::<AuthorizedCaller>() {
            return Ok(caller.clone());
        }
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        state.auth.verify_header(header)
    }
}

/// A caller with the admin role.
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.is_admin {
            return Err(ApiError::forbidden("This endpoint needs the admin role"));
        }
        Ok(Admin(caller))
    }
}

// ---------------------------------------------------------------------------------------------
// Views: the JSON shapes of the contract

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

fn status_url(id: RequestId) -> String {
    format!("/api/v1/booking-requests/{id}")
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ShowView {
    show_id: ShowId,
    movie_id: MovieId,
    starts_at: DateTime<Utc>,
    auditorium: String,
    total_seats: usize,
    categories: Vec<Category>,
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

// ---------------------------------------------------------------------------------------------
// Handlers

async fn health(State(state): State<AppState>) -> Response {
    let ports = state.service.ports();
    let store = ports.holds.ping().await;
    let lanes = ports.queue.stats().await;
    let waiting: u64 = lanes.iter().map(|l| l.waiting).sum();
    let ok = store.is_ok();
    let body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "checks": { "store": if ok { "ok" } else { "unavailable" } },
        "queue": { "lanes": lanes.len(), "waiting": waiting },
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HoldBody {
    show_id: String,
    seat_ids: Vec<String>,
}

async fn create_hold(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<HoldBody>,
) -> Result<Response, ApiError> {
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    ApiError::bad_request(
                        "INVALID_IDEMPOTENCY_KEY",
                        "Idempotency-Key must be visible ASCII",
                    )
                })?
                .to_owned(),
        ),
    };
    let accepted = state
        .service
        .submit_hold(
            &caller.user_id,
            HoldRequestInput {
                show_id: body.show_id,
                seat_ids: body.seat_ids,
                idempotency_key,
            },
        )
        .await?;
    let view = AcceptedView::from(&accepted);
    let location = HeaderValue::from_str(&view.status_url).expect("status URLs are ASCII");
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response())
}

async fn get_booking_request(
    State(state): State<AppState>,
    caller: Caller,
    Segment(id): Segment,
) -> Result<Json<RequestView>, ApiError> {
    let (request, ticket) = state.service.booking_request(&caller.user_id, &id).await?;
    Ok(Json(RequestView::new(&request, ticket)))
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

async fn queue_stats(State(state): State<AppState>, _admin: Admin) -> Json<serde_json::Value> {
    let lanes = state.service.ports().queue.stats().await;
    Json(json!({ "shows": lanes }))
}

async fn pause_show(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(id): Segment,
) -> Result<Json<serde_json::Value>, ApiError> {
    let show = state.service.existing_show_id(&id).await?;
    state.service.ports().queue.pause(show).await;
    Ok(Json(json!({ "showId": show, "paused": true })))
}

async fn resume_show(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(id): Segment,
) -> Result<Json<serde_json::Value>, ApiError> {
    let show = state.service.existing_show_id(&id).await?;
    state.service.ports().queue.resume(show).await;
    Ok(Json(json!({ "showId": show, "paused": false })))
}

// ---------------------------------------------------------------------------------------------
// WebSocket

#[derive(Deserialize)]
struct WsParams {
    token: Option<String>,
}

/// Largest client message; the protocol's messages are a few dozen bytes.
const MAX_CLIENT_MESSAGE: usize = 4 * 1024;

async fn websocket(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<WsParams>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let token = params
        .token
        .ok_or_else(|| ApiError::unauthorized("pass the token as ?token="))?;
    let caller = state.auth.verify(&token)?;
    let upgrade =
        upgrade.map_err(|r| ApiError::bad_request("WEBSOCKET_UPGRADE_REQUIRED", r.body_text()))?;
    let hub = state
        .hub
        .clone()
        .ok_or_else(|| ApiError::not_found("NOT_FOUND", "No such endpoint"))?;
    let id = WsHub::new_connection_id();
    let header_value = HeaderValue::from_str(&id).expect("connection ids are hex");
    let mut response = upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| serve_socket(socket, hub, state.service, caller.user_id, id));
    // The id the management API (`/@connections/{id}`) knows this connection by, as API Gateway
    // gives it to the backend; locally the client may want it too (tests do).
    response
        .headers_mut()
        .insert(CONNECTION_ID_HEADER, header_value);
    Ok(response)
}

/// The response header of a WebSocket upgrade that names the connection.
pub const CONNECTION_ID_HEADER: &str = "x-connection-id";

/// Refuses callers not on this machine. The management API has no authentication of its own
/// (on AWS, IAM guards it), so the local server answers it for loopback callers only.
fn local_only(request: &axum::extract::Request) -> Result<(), ApiError> {
    let loopback = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|info| info.0.ip().is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "The management API answers local callers only",
        ))
    }
}

/// API Gateway's error for a connection that is no longer there, as its SDKs recognise it.
fn gone(id: &str) -> Response {
    (
        StatusCode::GONE,
        [("x-amzn-errortype", "GoneException")],
        Json(json!({ "message": format!("connection {id} is gone") })),
    )
        .into_response()
}

/// The management API's `POST /@connections/{id}`: the body goes to that connection as one text
/// message. Lets the AWS notifier adapter run against real WebSocket clients locally.
async fn post_to_connection(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: axum::extract::Request,
) -> Response {
    if let Err(refused) = local_only(&request) {
        return refused.into_response();
    }
    let Some(hub) = state.hub.as_ref() else {
        return gone(&id);
    };
    let limit = state.service.config().max_body_bytes;
    let body = match axum::body::to_bytes(request.into_body(), limit).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "Message too large",
            )
            .into_response();
        }
    };
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return ApiError::bad_request("INVALID_MESSAGE", "Messages are UTF-8 text").into_response();
    };
    if hub.send_to(&id, Message::Text(text.into())) {
        StatusCode::OK.into_response()
    } else {
        gone(&id)
    }
}

/// The management API's `DELETE /@connections/{id}`: closes the connection.
async fn delete_connection(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: axum::extract::Request,
) -> Response {
    if let Err(refused) = local_only(&request) {
        return refused.into_response();
    }
    match state.hub.as_ref() {
        Some(hub) if hub.send_to(&id, Message::Close(None)) => {
            StatusCode::NO_CONTENT.into_response()
        }
        _ => gone(&id),
    }
}

async fn serve_socket(
    socket: WebSocket,
    hub: Arc<WsHub>,
    service: Arc<BookingService>,
    user: UserId,
    id: hub::ConnectionId,
) {
    // Registered before the first read: once the client has had any reply, pushes reach it.
    let mut outbox = hub.connect(id.clone(), user);
    let (mut sink, mut stream) = socket.split();
    let writer = tokio::spawn(async move {
        while let Some(message) = outbox.recv().await {
            if sink.send(message).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    while let Some(Ok(message)) = stream.next().await {
        let reply = match message {
            Message::Text(text) => client_message(&hub, &service, &id, text.as_str()).await,
            Message::Binary(_) => Some(ws_error("UNSUPPORTED_MESSAGE", "send JSON text messages")),
            Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => None,
        };
        if let Some(reply) = reply {
            hub.send_to(&id, hub::encode(&reply));
        }
    }
    hub.disconnect(&id);
    let _ = writer.await;
}

fn ws_error(code: &str, message: &str) -> ServerMessage {
    ServerMessage::Error {
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

async fn client_message(
    hub: &WsHub,
    service: &BookingService,
    id: &str,
    text: &str,
) -> Option<ServerMessage> {
    let message: ClientMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(_) => {
            return Some(ws_error(
                "INVALID_MESSAGE",
                "expected {\"action\":\"subscribe\",\"showId\":...}, {\"action\":\"unsubscribe\",...} or {\"action\":\"ping\"}",
            ));
        }
    };
    Some(match message {
        ClientMessage::Ping => ServerMessage::Pong,
        ClientMessage::Subscribe { show_id } => match service.show(show_id).await {
            Ok(Some(_)) => match hub.subscribe(id, show_id) {
                Ok(()) => ServerMessage::Subscribed { show_id },
                Err(SubscribeError::TooManySubscriptions) => ws_error(
                    "TOO_MANY_SUBSCRIPTIONS",
                    "unsubscribe from a show before subscribing to another",
                ),
                Err(SubscribeError::UnknownConnection) => return None,
            },
            Ok(None) => ws_error("SHOW_NOT_FOUND", "No such show"),
            Err(_) => ws_error("SERVICE_UNAVAILABLE", "try again shortly"),
        },
        ClientMessage::Unsubscribe { show_id } => {
            hub.unsubscribe(id, show_id);
            return None;
        }
    })
}
