//! Operations, for the admin role: per-show queue statistics (read from the store, so they
//! survive restarts and agree across processes), and pausing or resuming a show's lane (its
//! requests keep queueing, in order, while it is paused; the pause is kept in the store).

use super::AppState;
use super::extract::{Admin, Segment};
use crate::error::ApiError;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/queues", get(queue_stats))
        .route("/api/v1/admin/shows/{show_id}/pause", post(pause_show))
        .route("/api/v1/admin/shows/{show_id}/resume", post(resume_show))
}

async fn queue_stats(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let shows = state.service.queue_stats().await?;
    let now = state.service.ports().clock.now();
    Ok(Json(json!({ "generatedAt": now, "shows": shows })))
}

async fn pause_show(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(id): Segment,
) -> Result<Json<serde_json::Value>, ApiError> {
    let show = state.service.set_paused(&id, true).await?;
    Ok(Json(json!({ "showId": show, "paused": true })))
}

async fn resume_show(
    State(state): State<AppState>,
    _admin: Admin,
    Segment(id): Segment,
) -> Result<Json<serde_json::Value>, ApiError> {
    let show = state.service.set_paused(&id, false).await?;
    Ok(Json(json!({ "showId": show, "paused": false })))
}
