//! `Idempotency-Key` on every POST: a retried request is answered from the first attempt's
//! response instead of being run again.
//!
//! The key is the client's, per user, kept `IDEMPOTENCY_TTL_SECONDS` (default one day). What it
//! is bound to is the request's *fingerprint*: a SHA-256 of its method, path and body (JSON
//! bodies in a canonical form, so key order and spacing do not matter). Then:
//!
//! - the first attempt runs; its answer (status, body, `Location`) is kept, unless it is a 5xx,
//!   which says nothing happened that a retry should not redo, or says "not now"
//!   ([`NotReplayable`]: a payment in progress, a wrong content type);
//! - a retry with the same fingerprint gets the kept answer, with `Idempotency-Replayed: true`;
//!   while the first attempt is still running it gets 409 `IDEMPOTENCY_KEY_IN_FLIGHT`;
//! - the same key with a different fingerprint is 422 `IDEMPOTENCY_KEY_REUSED`.
//!
//! An attempt holds the key for a lease (one payment window, longer than any request takes); if
//! its process dies, the next attempt gets the key again under the same *use id*. Handlers that
//! write make their writes findable by that id (`POST /holds` stores it as the request's
//! idempotency key), so a retry after a crash finds the first write instead of making a second.

use super::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, BookingError, NotReplayable};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use booking_core::ports::{KeyAttempt, KeyClaim, StoredResponse};
use booking_core::{Chain, IdempotencyKey, UserId};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The header that marks a replayed answer.
pub const REPLAYED: &str = "idempotency-replayed";

/// Largest response kept for replay; the API's answers are far smaller.
const MAX_KEPT_RESPONSE: usize = 1 << 20;

/// The use of an idempotency key this request runs under, for handlers that write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse(pub String);

/// The middleware: applies to POST requests that carry an `Idempotency-Key`.
pub async fn idempotent(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(raw) = request.headers().get("idempotency-key") else {
        return next.run(request).await;
    };
    let Some(key) = raw
        .to_str()
        .ok()
        .and_then(|k| k.parse::<IdempotencyKey>().ok())
    else {
        return ApiError::from(BookingError::InvalidIdempotencyKey).into_response();
    };
    let (mut parts, body) = request.into_parts();
    let caller = match Caller::from_request_parts(&mut parts, &state).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let limit = if parts.uri.path() == super::admin_catalog::CATALOG_IMPORT_PATH {
        super::admin_catalog::MAX_CATALOG_BYTES
    } else {
        state.service.config().max_body_bytes
    };
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "Request body is too large",
        )
        .into_response();
    };
    let fingerprint = fingerprint(&parts.method, parts.uri.path(), &bytes);
    let ports = state.service.ports();
    let config = state.service.config();
    let now = ports.clock.now();
    let new_use_id = uuid::Uuid::new_v4().to_string();
    let claim = ports
        .idempotency
        .claim_key(&KeyAttempt {
            user: &caller.user_id,
            key: &key,
            fingerprint: &fingerprint,
            new_use_id: &new_use_id,
            now,
            lease_until: now + config.payment_window(),
            expires_at: now + config.idempotency_ttl,
        })
        .await;
    match claim {
        Err(e) => ApiError::from(BookingError::Store(e)).into_response(),
        Ok(KeyClaim::Done(kept)) => replay(kept),
        Ok(KeyClaim::InFlight) => {
            ApiError::from(BookingError::IdempotencyKeyInFlight).into_response()
        }
        Ok(KeyClaim::Reused) => ApiError::from(BookingError::IdempotencyKeyReused).into_response(),
        Ok(KeyClaim::Claimed { use_id }) => {
            parts.extensions.insert(KeyUse(use_id.clone()));
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            keep(&state, &caller.user_id, &key, &use_id, response).await
        }
    }
}

/// Keeps the answer of a claimed attempt (or lets the key go again after a 5xx).
async fn keep(
    state: &AppState,
    user: &UserId,
    key: &IdempotencyKey,
    use_id: &str,
    response: Response,
) -> Response {
    let store = &state.service.ports().idempotency;
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_KEPT_RESPONSE).await {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(error = %e, "could not read a response to keep for replay");
            Bytes::new()
        }
    };
    let now = state.service.ports().clock.now();
    let kept =
        if parts.status.is_server_error() || parts.extensions.get::<NotReplayable>().is_some() {
            store.release_key(user, key, use_id, now).await
        } else {
            store
                .complete_key(
                    user,
                    key,
                    use_id,
                    &StoredResponse {
                        status: parts.status.as_u16(),
                        body: bytes.to_vec(),
                        location: parts
                            .headers
                            .get(header::LOCATION)
                            .and_then(|l| l.to_str().ok())
                            .map(str::to_owned),
                    },
                )
                .await
        };
    if let Err(e) = kept {
        // The answer still goes out; a retry finds the key leased until the lease runs out, and
        // then runs again under the same use (writes made under it are found, not repeated).
        tracing::warn!(error = %Chain(&e), "could not keep the answer of an idempotent request");
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn replay(kept: StoredResponse) -> Response {
    let status = StatusCode::from_u16(kept.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, kept.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(REPLAYED, HeaderValue::from_static("true"));
    if let Some(location) = kept.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, location);
    }
    response
}

/// SHA-256 (hex) of the method, the path and the body; a JSON body in canonical form (keys
/// sorted, no spacing), so that two encodings of the same request are the same request.
fn fingerprint(method: &Method, path: &str, body: &[u8]) -> String {
    let canonical = serde_json::from_slice::<Value>(body)
        .map(|v| serde_json::to_vec(&sorted(v)).expect("JSON values serialise"))
        .unwrap_or_else(|_| body.to_vec());
    let mut hash = Sha256::new();
    hash.update(method.as_str().as_bytes());
    hash.update(b"\n");
    hash.update(path.as_bytes());
    hash.update(b"\n");
    hash.update(&canonical);
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The value with every object's keys in sorted order.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_ignore_encoding_but_not_content() {
        let a = fingerprint(
            &Method::POST,
            "/api/v1/holds",
            br#"{"showId":"s","seatIds":["A1"]}"#,
        );
        let b = fingerprint(
            &Method::POST,
            "/api/v1/holds",
            b"{ \"seatIds\": [\"A1\"],\n  \"showId\": \"s\" }",
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        let other_seat = fingerprint(
            &Method::POST,
            "/api/v1/holds",
            br#"{"showId":"s","seatIds":["A2"]}"#,
        );
        let other_path = fingerprint(
            &Method::POST,
            "/api/v1/orders",
            br#"{"showId":"s","seatIds":["A1"]}"#,
        );
        let seat_order = fingerprint(
            &Method::POST,
            "/api/v1/holds",
            br#"{"showId":"s","seatIds":["A1","A2"]}"#,
        );
        let swapped = fingerprint(
            &Method::POST,
            "/api/v1/holds",
            br#"{"showId":"s","seatIds":["A2","A1"]}"#,
        );
        for different in [other_seat, other_path, swapped.clone()] {
            assert_ne!(a, different);
        }
        assert_ne!(seat_order, swapped, "array order is content");
        assert_eq!(
            fingerprint(&Method::POST, "/x", b"not json"),
            fingerprint(&Method::POST, "/x", b"not json")
        );
    }
}
