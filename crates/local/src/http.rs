//! The local server's HTTP transport: the router served over TCP with the defences a server
//! facing the open internet needs, which `axum::serve` leaves out.
//!
//! - **Timeouts.** A client gets `header_read_timeout` to send a request head: hyper closes a
//!   connection whose head stops half-way, and restarts that bound whenever a kept-alive
//!   connection waits for its next request; a new connection that sends nothing at all is closed
//!   by the same bound here (hyper's timer starts only at a first byte). A body must arrive within
//!   `body_read_timeout` (408 `REQUEST_TIMEOUT`). A slow-loris client holds a connection for
//!   seconds, not minutes. HTTP/1.1 only: browsers speak HTTP/2 only over TLS, which a proxy in
//!   front terminates, and cleartext HTTP/2's own pings would keep idle connections alive.
//! - **Load shedding.** At most `max_concurrent_requests` requests are handled at once; one more is
//!   answered 503 `OVERLOADED` with `Retry-After` at once, rather than queued without bound while
//!   every request's latency grows. A request takes its slot only once its body has arrived, so
//!   clients trickling bodies cannot hold the slots (the body timeout bounds them instead); a
//!   WebSocket holds one only for its handshake.
//! - **Bodies over the limit** are answered 413 the client can read: the rest of the body is read
//!   and thrown away (up to [`DRAIN_CAP`], within the body timeout) before the answer, because a
//!   server that closes while the client is still sending makes the client's kernel see a reset
//!   instead of the 413 (the lingering close of classic web servers, done at the request level).
//!   Bodies are read before the handler, at most `max_body_bytes` each; the catalog import
//!   (4 MiB) is the exception: its body is left to the route, which checks the admin role first.
//! - **CORS**: preflights answered and responses marked for the listed origins only.
//!
//! The Lambda function needs none of this: API Gateway reads whole requests before invoking it,
//! bounds them, and answers CORS preflights itself.

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use booking_app::error::ApiError;
use futures_util::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Most bytes of an oversized body read (and thrown away) so that its 413 reaches the client.
pub const DRAIN_CAP: usize = 16 * 1024 * 1024;

/// The transport's limits, from the environment (see `src/config.rs`).
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// `HTTP_HEADER_TIMEOUT_SECONDS` (default 10).
    pub header_read_timeout: Duration,
    /// `HTTP_BODY_TIMEOUT_SECONDS` (default 10).
    pub body_read_timeout: Duration,
    /// `MAX_CONCURRENT_REQUESTS` (default 512).
    pub max_concurrent_requests: usize,
    /// Largest body of every route but the catalog import (`MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// `CORS_ALLOWED_ORIGINS`: the origins a browser may call the API from (none by default: the
    /// API is then same-origin only).
    pub cors_allowed_origins: Vec<HeaderValue>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_concurrent_requests: 512,
            max_body_bytes: 16 * 1024,
            cors_allowed_origins: Vec::new(),
        }
    }
}

/// What the guard middleware reaches.
struct Guard {
    permits: Arc<Semaphore>,
    body_read_timeout: Duration,
    max_body_bytes: usize,
}

/// The one route whose body is not read here: a whole catalog (up to `MAX_CATALOG_BYTES`), for
/// admins only. Its route checks the role before it reads the body, so an anonymous client cannot
/// make the server buffer megabytes.
const CATALOG_IMPORT: &str = "/api/v1/admin/catalog";

/// The router with the shedding, body and CORS defences around it, and the request id, span and
/// HTTP metrics of every request (the ones those defences refuse included).
pub fn guarded(router: Router, limits: &HttpLimits) -> Router {
    let guard = Arc::new(Guard {
        permits: Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1))),
        body_read_timeout: limits.body_read_timeout,
        max_body_bytes: limits.max_body_bytes,
    });
    let router = router.layer(axum::middleware::from_fn_with_state(guard, guard_request));
    // Outside the guard, so that its 503s and 413s carry a request id and are counted too.
    let router = router.layer(axum::middleware::from_fn(booking_app::metrics::record_http));
    let router = booking_app::http::request_id::traced(router);
    if limits.cors_allowed_origins.is_empty() {
        return router;
    }
    // Outside the guard, so that a 503 or a 413 carries the CORS headers a browser needs to let
    // the page read it.
    router.layer(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(limits.cors_allowed_origins.clone()))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static(booking_app::http::waiting_rooms::ADMISSION_HEADER),
                HeaderName::from_static(booking_app::http::request_id::REQUEST_ID),
            ])
            .expose_headers([
                header::LOCATION,
                header::RETRY_AFTER,
                HeaderName::from_static("idempotency-replayed"),
                HeaderName::from_static(booking_app::http::request_id::REQUEST_ID),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

async fn guard_request(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    if request.uri().path() == CATALOG_IMPORT {
        return match guard.permits.clone().try_acquire_owned() {
            Ok(_permit) => next.run(request).await,
            Err(_) => overloaded(),
        };
    }
    let limit = guard.max_body_bytes;
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|n| n > limit as u64) {
        drain(&mut stream, guard.body_read_timeout).await;
        return too_large();
    }
    // The body is read here, whole and within the timeout, so that no handler waits on a slow
    // client and an oversized chunked body is drained like a declared one.
    let read = tokio::time::timeout(guard.body_read_timeout, async {
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| Read::Broken)?;
            if bytes.len() + chunk.len() > limit {
                return Err(Read::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    })
    .await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(Read::TooLarge)) => {
            drain(&mut stream, guard.body_read_timeout).await;
            return too_large();
        }
        Ok(Err(Read::Broken)) => {
            return closing(ApiError::bad_request(
                "INVALID_REQUEST",
                "The request body could not be read",
            ));
        }
        Err(_) => {
            return closing(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                "The request body did not arrive in time",
            ));
        }
    };
    let Ok(_permit) = guard.permits.clone().try_acquire_owned() else {
        return overloaded();
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn overloaded() -> Response {
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "OVERLOADED",
        "The server is handling as many requests as it can; retry shortly",
    );
    e.retry_after = Some(1);
    e.into_response()
}

enum Read {
    TooLarge,
    Broken,
}

/// Reads and discards what is left of a body, up to [`DRAIN_CAP`] and `within`.
async fn drain(stream: &mut axum::body::BodyDataStream, within: Duration) {
    let _ = tokio::time::timeout(within, async {
        let mut drained = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            drained += chunk.len();
            if drained > DRAIN_CAP {
                break;
            }
        }
    })
    .await;
}

fn too_large() -> Response {
    closing(ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        "Request body is too large",
    ))
}

/// An answer after which the connection is not reused: what is left of the request on it is
/// not worth reading.
fn closing(e: ApiError) -> Response {
    let mut response = e.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Serves `router` (already [`guarded`]) on `listener` until `shutdown` resolves, then waits for
/// the requests in flight (the caller bounds that wait). Each request carries its peer's address
/// as `ConnectInfo<SocketAddr>`, as with `axum::serve`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let connections = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: wait a little rather than spin.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service =
            hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                router.clone().oneshot(request.map(Body::new))
            });
        let (builder, watcher) = (builder.clone(), connections.watcher());
        let silent_for = limits.header_read_timeout;
        tokio::spawn(async move {
            // hyper's header timer starts at the first byte: a connection that sends nothing is
            // closed here, by dropping it.
            let mut first = [0u8; 1];
            match tokio::time::timeout(silent_for, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => {
                    tracing::debug!(peer = %peer, "connection sent nothing; closed");
                    return;
                }
            }
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    connections.shutdown().await;
}
