//! The local server's WebSocket endpoint and API Gateway's management API for it.
//!
//! Deployed, API Gateway holds the sockets: clients connect to its WebSocket API, and the
//! backend pushes with `POST /@connections/{id}`. Locally this process holds them, so it speaks
//! both sides of that arrangement:
//!
//! - `GET /ws?token=<JWT>`: the client side, the same messages as API Gateway's routes
//!   (`subscribe`, `unsubscribe`, `ping`); the upgrade answer names the connection in
//!   [`CONNECTION_ID_HEADER`], as API Gateway names it to its backend;
//! - `POST` / `DELETE /@connections/{id}`: the management API ([`management_routes`]), served
//!   only when asked for and to loopback callers only, so the AWS notifier adapter can be run
//!   against real WebSocket clients on one machine.

use crate::hub::{self, AdmitError, SubscribeError, WsHub};
use axum::extract::ws::{
    CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code,
    rejection::WebSocketUpgradeRejection,
};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use booking_app::auth::Authenticator;
use booking_app::error::{ApiError, BookingError};
use booking_app::http::ApiQuery;
use booking_app::service::BookingService;
use booking_core::protocol::{ClientMessage, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

/// The response header of a WebSocket upgrade that names the connection.
pub const CONNECTION_ID_HEADER: &str = "x-connection-id";

/// The close code of a socket whose token expired (an application code, 4000–4999): reconnect
/// with a fresh token.
pub const TOKEN_EXPIRED_CLOSE_CODE: u16 = 4001;

/// Largest client message; the protocol's messages are a few dozen bytes. A bigger one closes
/// the socket with 1009 (message too big).
pub const MAX_CLIENT_MESSAGE: usize = 4 * 1024;

/// The socket's read buffer. tungstenite's default is 128 KiB per socket, which made an idle
/// socket cost ~133 KB: 100,000 waiting fans would need 13 GB. Client messages are tiny, so a
/// small buffer costs nothing in speed.
const READ_BUFFER: usize = 4 * 1024;

/// Bytes gathered before a write is flushed to the socket; pushes are small and go out at once.
const WRITE_BUFFER: usize = 0;

/// How long a closing socket may take to send what is queued and its close frame.
const WRITER_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// What the WebSocket routes reach.
#[derive(Clone)]
struct SocketState {
    hub: Arc<WsHub>,
    service: Arc<BookingService>,
    auth: Arc<Authenticator>,
}

/// What the management API reaches.
#[derive(Clone)]
struct ManagementState {
    hub: Arc<WsHub>,
    max_body_bytes: usize,
}

/// `/ws`, to merge into the app's router.
pub fn routes(hub: Arc<WsHub>, service: Arc<BookingService>, auth: Arc<Authenticator>) -> Router {
    Router::new()
        .route("/ws", get(websocket))
        .with_state(SocketState { hub, service, auth })
}

/// `/@connections/{id}`, API Gateway's management API for the hub's sockets: anyone who can call
/// it can push any message to any client or close it, so the local server serves it only when
/// asked to (`LOCAL_MANAGEMENT_API=true`, for running the Lambda functions against it), and then
/// to loopback callers only.
pub fn management_routes(hub: Arc<WsHub>, max_body_bytes: usize) -> Router {
    Router::new()
        .route(
            "/@connections/{connection_id}",
            post(post_to_connection).delete(delete_connection),
        )
        .with_state(ManagementState {
            hub,
            max_body_bytes,
        })
}

#[derive(Deserialize)]
struct WsParams {
    token: Option<String>,
}

async fn websocket(
    State(state): State<SocketState>,
    ApiQuery(params): ApiQuery<WsParams>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let token = params
        .token
        .ok_or_else(|| ApiError::unauthorized("pass the token as ?token="))?;
    let (caller, token_expires_at) = state.auth.verify_until(&token)?;
    let upgrade =
        upgrade.map_err(|r| ApiError::bad_request("WEBSOCKET_UPGRADE_REQUIRED", r.body_text()))?;
    // The slot is taken before the handshake answers, so a refusal is a plain HTTP answer; if
    // the handshake then fails, the admission is dropped and frees it.
    let admission = state.hub.admit(caller.user_id).map_err(|e| match e {
        AdmitError::TooManyForUser { max } => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_CONNECTIONS",
            format!("At most {max} WebSocket connections per user; close one first"),
        )
        .with_details(json!({ "max": max })),
        AdmitError::Full => {
            let mut full = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "CONNECTIONS_FULL",
                "The server holds as many WebSocket connections as it can; poll, or retry later",
            );
            full.retry_after = Some(5);
            full
        }
    })?;
    let header_value = HeaderValue::from_str(admission.id()).expect("connection ids are hex");
    let SocketState { hub, service, .. } = state;
    let mut response = upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| serve_socket(socket, hub, service, admission, token_expires_at));
    // The id the management API (`/@connections/{id}`) knows this connection by, as API Gateway
    // gives it to the backend; locally the client may want it too (tests do).
    response
        .headers_mut()
        .insert(CONNECTION_ID_HEADER, header_value);
    Ok(response)
}

/// Refuses callers not on this machine. The management API has no authentication of its own
/// (on AWS, IAM guards it), so the local server answers it for loopback callers only.
fn local_only(request: &Request) -> Result<(), ApiError> {
    let loopback = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
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
    State(state): State<ManagementState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    if let Err(refused) = local_only(&request) {
        return refused.into_response();
    }
    let limit = state.max_body_bytes;
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
    if state.hub.send_to(&id, Message::Text(text.into())) {
        StatusCode::OK.into_response()
    } else {
        gone(&id)
    }
}

/// The management API's `DELETE /@connections/{id}`: closes the connection.
async fn delete_connection(
    State(state): State<ManagementState>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    if let Err(refused) = local_only(&request) {
        return refused.into_response();
    }
    if state.hub.send_to(&id, Message::Close(None)) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        gone(&id)
    }
}

async fn serve_socket(
    socket: WebSocket,
    hub: Arc<WsHub>,
    service: Arc<BookingService>,
    mut admission: hub::Admission,
    token_expires_at: chrono::DateTime<chrono::Utc>,
) {
    let id = admission.id().clone();
    // A socket lives no longer than the token that opened it: a revoked or stolen token's
    // sockets end when it does, and the client reconnects with a fresh one.
    let token_left = (token_expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    let token_expiry = tokio::time::sleep(token_left);
    tokio::pin!(token_expiry);
    // Registered (admitted) before the first read: once the client has had any reply, pushes
    // reach it.
    let mut outbox = admission.take_outbox();
    let (mut sink, mut stream) = socket.split();
    let (stop_writing, mut stop) = tokio::sync::oneshot::channel::<()>();
    let mut writer = tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                next = outbox.recv() => match next {
                    Some(message) => message,
                    None => break,
                },
                // The reader is done: what is already queued goes out, then the close.
                _ = &mut stop => {
                    while let Ok(message) = outbox.try_recv() {
                        if sink.send(message).await.is_err() {
                            return;
                        }
                    }
                    break;
                }
            };
            if sink.send(message).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    // Pinged every interval; a peer not heard from for two is gone.
    let ping_every = hub.limits().ping_interval;
    let mut pings = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = tokio::time::Instant::now();
    loop {
        let message = tokio::select! {
            next = stream.next() => match next {
                Some(Ok(message)) => {
                    last_heard = tokio::time::Instant::now();
                    message
                }
                // A frame over the limit, or one that breaks the protocol: tungstenite refuses it
                // but sends no close frame, so the client is told why here. (For a connection
                // that broke, the frame just goes nowhere.)
                Some(Err(e)) => {
                    hub.send_to(&id, refusal(&e));
                    break;
                }
                None => break,
            },
            _ = pings.tick() => {
                if last_heard.elapsed() >= ping_every * 2 {
                    tracing::debug!(connection = %id, "peer silent for two ping intervals; dropping its socket");
                    break;
                }
                hub.send_to(&id, Message::Ping(Default::default()));
                continue;
            }
            () = &mut token_expiry => {
                hub.send_to(
                    &id,
                    Message::Close(Some(CloseFrame {
                        code: TOKEN_EXPIRED_CLOSE_CODE,
                        reason: "token expired".into(),
                    })),
                );
                break;
            }
        };
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
    // The writer sends what is queued and closes; a peer that does not read gets WRITER_GRACE for
    // that, then the socket is dropped. Only then does the slot go back: a client that stops
    // reading cannot free its slot while its connection lives on.
    let _ = stop_writing.send(());
    if tokio::time::timeout(WRITER_GRACE, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
        let _ = writer.await;
    }
    drop(admission);
}

/// The close frame for a frame the socket could not take. axum hides tungstenite's error type,
/// so its capacity error is told by its text ("Space limit exceeded: Message too long: …").
fn refusal(e: &axum::Error) -> Message {
    let (code, reason) = if e.to_string().contains("too long") {
        (close_code::SIZE, "message too big")
    } else {
        (close_code::PROTOCOL, "protocol error")
    };
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// A use case's error as the socket tells it: the same code and message as over HTTP.
fn booking_error(e: &BookingError) -> ServerMessage {
    ws_error(e.code(), &e.public_message())
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
            Ok(None) => booking_error(&BookingError::ShowNotFound),
            Err(e) => {
                e.log();
                booking_error(&e)
            }
        },
        ClientMessage::Unsubscribe { show_id } => {
            hub.unsubscribe(id, show_id);
            return None;
        }
    })
}
