//! `GET /health`: liveness, and whether the store answers (503 when it does not), so a load
//! balancer stops sending traffic to an instance that cannot make a request durable. Nothing
//! about demand: queue depths are for operators (`GET /api/v1/admin/queues`), not the public.

use super::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

pub(super) fn routes<const DESCRIBE: bool>() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(route!(DESCRIBE, health))
}

/// Whether this instance can take requests.
#[derive(Serialize, ToSchema)]
struct Health {
    /// `ok`, or `degraded` when a check fails.
    #[schema(pattern = "^(ok|degraded)$")]
    status: &'static str,
    checks: Checks,
}

/// Each dependency: `ok` or `unavailable`.
#[derive(Serialize, ToSchema)]
struct Checks {
    #[schema(pattern = "^(ok|unavailable)$")]
    store: &'static str,
}

/// Check health
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "The store does not answer", body = Health),
    ),
)]
async fn health(State(state): State<AppState>) -> Response {
    let ports = state.service.ports();
    let store = ports.holds.ping().await;
    let ok = store.is_ok();
    let body = Health {
        status: if ok { "ok" } else { "degraded" },
        checks: Checks {
            store: if ok { "ok" } else { "unavailable" },
        },
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
