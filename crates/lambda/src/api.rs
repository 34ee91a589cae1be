//! The api function: the same axum router as the local server, behind API Gateway's HTTP API.
//!
//! Requests are made durable in PostgreSQL and enqueued on SQS FIFO; the worker decides them.
//! With `AUTH_MODE=authorizer` the caller comes from the HTTP API JWT authorizer's claims
//! (`sub`, and the admin claim `JWT_ADMIN_CLAIM`, e.g. `cognito:groups`) that `lambda_http`
//! hands over in the request context, and no shared key is loaded; otherwise the bearer token is
//! verified here. Stage prefixes are stripped by `lambda_http` when
//! `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH=true` (the template sets it).

use crate::config::{self, AuthMode};
use crate::wiring::{Shared, WiringError};
use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use booking_app::QueueAdapter;
use booking_app::auth::{AdminClaim, Caller};
use booking_app::http::AuthorizedCaller;
use booking_app::limits::ClientAddress;
use booking_aws::SqsQueue;
use booking_core::ports::{QueueCounters, RequestQueue};
use lambda_http::RequestExt;
use lambda_http::request::RequestContext;
use std::sync::Arc;

/// The api function: `lambda_http` serving the router.
pub async fn serve() -> Result<(), lambda_runtime::Error> {
    let app = app_from_env().await?;
    metrics_cloudwatch_embedded::lambda::service::run_http(crate::metrics(), app).await
}

/// The router with every adapter wired from the environment.
pub async fn app_from_env() -> Result<Router, WiringError> {
    let mode = AuthMode::from_env()?;
    let shared = Shared::from_env(mode.token_key()).await?;
    let queue_url = config::required("BOOKING_QUEUE_URL")?;
    let counters: Arc<dyn QueueCounters> = shared.mirror.clone();
    let queue: Arc<dyn RequestQueue> = Arc::new(SqsQueue::new(
        aws_sdk_sqs::Client::new(&shared.sdk),
        queue_url,
        counters,
    ));
    let mut builder = shared.app()?.queue(QueueAdapter::External(queue));
    builder = shared.with_admission_key(builder).await?;
    // In authorizer mode the identity provider's tokens, checked by the gateway, are the only
    // way in: no shared key is loaded, so none can mint an identity (the builder's default key
    // is random and verifies no bearer token).
    let admin = match mode {
        AuthMode::Bearer => {
            builder = builder.authenticator(shared.authenticator()?);
            None
        }
        AuthMode::Authorizer => Some(Arc::new(
            AdminClaim::from_env().map_err(config::ConfigError::from)?,
        )),
    };
    let app = builder
        .build()
        .router()
        .layer(axum::middleware::from_fn(client_address_from_context))
        .layer(axum::middleware::from_fn(booking_app::metrics::record_http));
    let app = match admin {
        None => app,
        Some(admin) => app.layer(axum::middleware::from_fn(move |request, next| {
            caller_from_authorizer(admin.clone(), request, next)
        })),
    };
    Ok(booking_app::http::request_id::traced(app))
}

/// Moves the caller's address, as API Gateway saw it, into the request as a [`ClientAddress`]
/// (for the per-address rate limit). The gateway's `sourceIp` is the peer of its own connection,
/// so a client cannot choose it by sending `X-Forwarded-For`.
pub async fn client_address_from_context(mut request: Request, next: Next) -> Response {
    let source = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.http.source_ip.clone(),
        Some(RequestContext::ApiGatewayV1(context)) => context.identity.source_ip.clone(),
        _ => None,
    };
    if let Some(address) = source.and_then(|ip| ip.parse().ok()) {
        request.extensions_mut().insert(ClientAddress(address));
    }
    next.run(request).await
}

/// Moves the JWT authorizer's verified claims into the request as an [`AuthorizedCaller`],
/// an admin if `admin` (the identity provider's claim) says so.
pub async fn caller_from_authorizer(
    admin: Arc<AdminClaim>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(caller) = authorizer_caller(&request, &admin) {
        request.extensions_mut().insert(AuthorizedCaller(caller));
    }
    next.run(request).await
}

/// The caller named by the request context's JWT claims, if there are any and they are valid.
pub fn authorizer_caller(request: &Request, admin: &AdminClaim) -> Option<Caller> {
    let Some(RequestContext::ApiGatewayV2(context)) = request.request_context_ref() else {
        return None;
    };
    let claims = &context.authorizer.as_ref()?.jwt.as_ref()?.claims;
    let sub = claims.get("sub")?;
    let is_admin = admin.granted_by_text(claims.get(&admin.name).map(String::as_str));
    match Caller::from_verified_claims(sub, is_admin) {
        Ok(caller) => Some(caller),
        Err(_) => {
            tracing::warn!("authorizer claims carry an invalid subject; treated as anonymous");
            None
        }
    }
}
