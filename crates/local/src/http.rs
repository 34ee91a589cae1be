//! The local server's HTTP transport: the router served over TCP with the defences a server
//! facing the open internet needs, which `axum::serve` leaves out.
//!
//! - **Timeouts.** A client gets `header_read_timeout` to send its first request head (hyper
//!   closes the connection on a head that stops half-way; a connection that sends nothing at all
//!   is closed by the same bound here) and `body_read_timeout` to send its body (408
//!   `REQUEST_TIMEOUT`); a kept-alive connection with no request in flight and no bytes moving
//!   for `idle_timeout` is closed. A slow-loris client holds a connection for seconds, not
//!   minutes.
//! - **Load shedding.** At most `max_concurrent_requests` requests are handled at once; one more is
//!   answered 503 `OVERLOADED` with `Retry-After` at once, rather than queued without bound while
//!   every request's latency grows. A WebSocket holds a slot only for its handshake.
//! - **Bodies over the limit** are answered 413 the client can read: the rest of the body is read
//!   and thrown away (up to [`DRAIN_CAP`], within the body timeout) before the answer, because a
//!   server that closes while the client is still sending makes the client's kernel see a reset
//!   instead of the 413 (the lingering close of classic web servers, done at the request level).
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
use booking_app::http::MAX_CATALOG_BYTES;
use futures_util::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
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
    /// `HTTP_IDLE_TIMEOUT_SECONDS` (default 60).
    pub idle_timeout: Duration,
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
            idle_timeout: Duration::from_secs(60),
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

impl Guard {
    /// The largest body `path` takes (the catalog import takes a whole catalog).
    fn body_limit(&self, path: &str) -> usize {
        if path == "/api/v1/admin/catalog" {
            MAX_CATALOG_BYTES
        } else {
            self.max_body_bytes
        }
    }
}

/// The router with the shedding, body and CORS defences around it.
pub fn guarded(router: Router, limits: &HttpLimits) -> Router {
    let guard = Arc::new(Guard {
        permits: Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1))),
        body_read_timeout: limits.body_read_timeout,
        max_body_bytes: limits.max_body_bytes,
    });
    let router = router.layer(axum::middleware::from_fn_with_state(guard, guard_request));
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
            ])
            .expose_headers([
                header::LOCATION,
                header::RETRY_AFTER,
                HeaderName::from_static("idempotency-replayed"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

async fn guard_request(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let Ok(_permit) = guard.permits.clone().try_acquire_owned() else {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "OVERLOADED",
            "The server is handling as many requests as it can; retry shortly",
        );
        e.retry_after = Some(1);
        return e.into_response();
    };
    let limit = guard.body_limit(request.uri().path());
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
    match read {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(Read::TooLarge)) => {
            drain(&mut stream, guard.body_read_timeout).await;
            too_large()
        }
        Ok(Err(Read::Broken)) => closing(ApiError::bad_request(
            "INVALID_REQUEST",
            "The request body could not be read",
        )),
        Err(_) => closing(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
            "The request body did not arrive in time",
        )),
    }
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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
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
        let activity = Activity::default();
        let stream = Watched {
            inner: stream,
            activity: activity.clone(),
        };
        let router = router.clone();
        let in_flight = activity.clone();
        let service =
            hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                let router = router.clone();
                let in_flight = in_flight.clone();
                async move {
                    in_flight.requests.fetch_add(1, Ordering::Relaxed);
                    let response = router.oneshot(request.map(Body::new)).await;
                    in_flight.requests.fetch_sub(1, Ordering::Relaxed);
                    in_flight.touch();
                    response
                }
            });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = connections.watch(connection);
        let (first_byte, idle) = (limits.header_read_timeout, limits.idle_timeout);
        tokio::spawn(async move {
            tokio::select! {
                ended = connection => if let Err(e) = ended {
                    tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                },
                // Dropping the connection closes it. (Once upgraded to a WebSocket, the
                // connection has ended here and the socket lives on in its own task.)
                () = activity.idle_for(first_byte, idle) => {
                    tracing::debug!(peer = %peer, "idle connection closed");
                }
            }
        });
    }
    connections.shutdown().await;
}

/// What a connection is doing: requests in flight, and when bytes last moved (ms since `start`;
/// 0 until the first byte).
#[derive(Clone)]
struct Activity {
    start: tokio::time::Instant,
    last_ms: Arc<AtomicU64>,
    requests: Arc<AtomicUsize>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
            requests: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let ms = (self.start.elapsed().as_millis() as u64).max(1);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once the connection has been idle too long: nothing sent within `first_byte` of
    /// opening, or, later, no request in flight and no bytes moving for `idle`.
    async fn idle_for(&self, first_byte: Duration, idle: Duration) {
        loop {
            let last = self.last_ms.load(Ordering::Relaxed);
            let (since, limit) = if last == 0 {
                (self.start.elapsed(), first_byte)
            } else {
                (
                    self.start
                        .elapsed()
                        .saturating_sub(Duration::from_millis(last)),
                    idle,
                )
            };
            let busy = self.requests.load(Ordering::Relaxed) > 0;
            if since >= limit && !busy {
                return;
            }
            tokio::time::sleep(limit.saturating_sub(since).max(Duration::from_millis(100))).await;
        }
    }
}

/// A TCP stream that notes when bytes move on it, for [`Activity::idle_for`].
struct Watched {
    inner: tokio::net::TcpStream,
    activity: Activity,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.touch();
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
