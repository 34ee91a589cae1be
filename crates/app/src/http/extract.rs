//! Extractors that speak the API's error format.
//!
//! axum's own extractors reject bad input with plain-text bodies; these wrap them so that every
//! rejection a client can provoke (bad JSON, wrong content type, oversized body, a malformed path
//! or query, a missing or bad token, a missing role) comes back as the one
//! `{"error":{code,message}}` body, with a machine-readable code.

use super::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::limits::{ClientAddress, LimitKind};
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use std::marker::PhantomData;
use std::net::SocketAddr;

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

/// A raw body (`Bytes`) that could not be read: too large, or broken off.
impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "Request body is too large",
            )
        } else {
            ApiError::bad_request("INVALID_REQUEST", r.body_text())
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
        let caller = match parts.extensions.get::<AuthorizedCaller>() {
            Some(AuthorizedCaller(caller)) => caller.clone(),
            None => {
                let header = parts
                    .headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                state.auth.verify_header(header)?
            }
        };
        // Every later log line of this request names its user (the request span's field).
        tracing::Span::current().record("user_id", caller.user_id.as_str());
        Ok(caller)
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

/// Which bucket a [`Limited`] route counts against.
pub trait LimitedRoute {
    const KIND: LimitKind;
}

/// `POST /holds`.
pub struct HoldWrites;
impl LimitedRoute for HoldWrites {
    const KIND: LimitKind = LimitKind::Holds;
}

/// `POST /orders`.
pub struct OrderWrites;
impl LimitedRoute for OrderWrites {
    const KIND: LimitKind = LimitKind::Orders;
}

/// The routes that move money: confirming and cancelling an order.
pub struct PaymentWrites;
impl LimitedRoute for PaymentWrites {
    const KIND: LimitKind = LimitKind::Payments;
}

/// An authenticated caller within their rate limit for `R`'s routes (429 `RATE_LIMITED`
/// otherwise). Checked before the body is read, so a script over its limit costs a token check,
/// not a parse.
pub struct Limited<R>(pub Caller, pub PhantomData<R>);

impl<R: LimitedRoute> FromRequestParts<AppState> for Limited<R> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        state.limits.check(R::KIND, caller.user_id.as_str()).await?;
        Ok(Limited(caller, PhantomData))
    }
}

/// A caller joining a waiting room within their join limits, per user and per client address
/// (429 `RATE_LIMITED` otherwise): one machine cannot farm places with many accounts.
pub struct JoinLimited(pub Caller);

impl FromRequestParts<AppState> for JoinLimited {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let address = client_address(&parts.extensions);
        state
            .limits
            .check_join(caller.user_id.as_str(), address)
            .await?;
        Ok(JoinLimited(caller))
    }
}

/// The client's address: as the api function's gateway saw it, else the socket's peer.
fn client_address(extensions: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    extensions.get::<ClientAddress>().map(|a| a.0).or_else(|| {
        extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
    })
}

/// Middleware for the routes anyone may call: each client address within its rate limit.
pub async fn limit_by_address(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(address) = client_address(request.extensions()) {
        state.limits.check_address(address).await?;
    }
    Ok(next.run(request).await)
}
