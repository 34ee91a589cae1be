//! A request id on every HTTP request, and one tracing span per request that carries it.
//!
//! The id is the caller's `x-request-id` when it sent a usable one (a proxy or a client that
//! correlates its own logs), otherwise a fresh UUID; either way it is echoed in the answer's
//! `x-request-id`, so a user who reports a problem can quote it and an operator can find every
//! log line of that request. A caller's id is kept only if it is 1 to 128 characters of
//! letters, digits and `-_.:=`: anything else (control characters, quotes, megabytes) would be
//! written into the logs verbatim, so it is replaced rather than trusted.
//!
//! The span (`request`, target `http`, from tower-http's trace layer) has the fields `request_id`, `method`,
//! `route` ([`route_of`](super::route_of): the matched route template, never the raw path), and `user_id` and `show_id`, filled in by the handlers once known.

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

/// The request id's header.
pub const REQUEST_ID: &str = "x-request-id";

/// Longest caller-chosen request id kept.
const MAX_LEN: usize = 128;

/// Wraps every route of `router` (its fallback included) in the request id and the span.
pub fn traced(router: Router) -> Router {
    // Innermost first: the span sees the id that the two outer layers settled.
    router
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                .on_failure(DefaultOnFailure::new().level(Level::WARN)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(axum::middleware::from_fn(drop_unusable_request_id))
}

fn request_span(request: &Request) -> tracing::Span {
    let id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("");
    let route = super::route_of(request);
    // At ERROR level, so that the span is on at any `RUST_LOG` that logs anything: a warning
    // logged during a request under `RUST_LOG=warn` still names its request. `http=off` in
    // `RUST_LOG` turns it off.
    tracing::error_span!(
        target: "http",
        "request",
        request_id = id,
        method = %request.method(),
        route,
        user_id = tracing::field::Empty,
        show_id = tracing::field::Empty,
    )
}

/// Removes a caller's `x-request-id` that is not [`usable`], so that a fresh one is made.
async fn drop_unusable_request_id(mut request: Request, next: Next) -> Response {
    let headers = request.headers_mut();
    let keep = {
        let mut ids = headers.get_all(REQUEST_ID).iter();
        matches!((ids.next(), ids.next()), (Some(id), None) if usable(id))
    };
    if !keep {
        headers.remove(REQUEST_ID);
    }
    next.run(request).await
}

/// 1 to [`MAX_LEN`] characters of `A-Z a-z 0-9 - _ . : =` (the `=` for trace ids such as
/// `Root=1-…` that proxies forward).
fn usable(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    (1..=MAX_LEN).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:=".contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_kept() {
        for good in [
            "abc",
            "0f5b6c1e-3a47-4d2b-9c1f-6e2a8d4b7a10",
            "Root=1-67a:b.c_d",
        ] {
            assert!(usable(&HeaderValue::from_static(good)), "{good}");
        }
        let long = "a".repeat(MAX_LEN + 1);
        for bad in ["", "a b", "x\"y", "<script>", "a;b", long.as_str()] {
            assert!(!usable(&HeaderValue::from_str(bad).unwrap()), "{bad}");
        }
        assert!(usable(
            &HeaderValue::from_str(&"a".repeat(MAX_LEN)).unwrap()
        ));
    }
}
