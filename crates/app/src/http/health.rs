//! `GET /health`: liveness, and whether the store answers (503 when it does not), so a load
//! balancer stops sending traffic to an instance that cannot make a request durable. Nothing
//! about demand: queue depths are for operators (`GET /api/v1/admin/queues`), not the public.

use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

async fn health(State(state): State<AppState>) -> Response {
    let ports = state.service.ports();
    let store = ports.holds.ping().await;
    let ok = store.is_ok();
    let body = json!({
        "status": if ok { "ok" } else { "degraded" },
        "checks": { "store": if ok { "ok" } else { "unavailable" } },
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
