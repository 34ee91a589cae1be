//! The HTTP API as one axum [`Router`]: served by `axum::serve` locally and by `lambda_http` on
//! AWS, so both run exactly the same routes, validation and error mapping.
//!
//! One module per resource, each with its own routes and the JSON views of what it returns
//! (`catalog`, `holds`, `orders`, `requests`, `admin`, `admin_catalog`, `health`); [`extract`] holds the extractors
//! that turn every rejection axum itself can produce (bad JSON, wrong content type, oversized
//! body, unknown route, wrong method, missing token) into the same `{"error":{code,message}}`
//! body as our own errors, so clients parse exactly one error shape. The WebSocket endpoint is not
//! here: API Gateway serves it deployed, and the local server adds its own (`booking-local`).

mod admin;
mod admin_catalog;
mod catalog;
pub mod extract;
mod health;
mod holds;
pub mod idempotency;
pub mod openapi;
mod orders;
pub mod request_id;
mod requests;
pub mod waiting_rooms;

pub use admin_catalog::MAX_CATALOG_BYTES;
pub use extract::{Admin, ApiJson, ApiQuery, AuthorizedCaller, Limited, Segment};

use crate::auth::Authenticator;
use crate::catalog::CatalogAdmin;
use crate::error::ApiError;
use crate::limits::Limits;
use crate::orders::OrderService;
use crate::service::BookingService;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use std::sync::Arc;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

/// Everything a handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<BookingService>,
    pub orders: Arc<OrderService>,
    pub catalog: Arc<CatalogAdmin>,
    pub auth: Arc<Authenticator>,
    pub limits: Arc<Limits>,
    pub waiting_rooms: Arc<crate::waiting_rooms::WaitingRooms>,
}

/// The route a request matched, as the router's pattern (`/api/v1/holds/{hold_id}`), or
/// `unmatched`: what logs and metrics name a request by, never the raw path, so that ids in paths
/// (or a hostile client's paths) do not make a distinct value each.
pub fn route_of(request: &axum::extract::Request) -> &str {
    request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", axum::extract::MatchedPath::as_str)
}

/// Every documented route, with the catalog's routes passed through `catalog_layer` (the
/// per-address limit, which needs the state; the document does not).
fn documented(
    catalog_layer: impl FnOnce(OpenApiRouter<AppState>) -> OpenApiRouter<AppState>,
) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(health::routes())
        .merge(catalog_layer(catalog::routes()))
        .merge(holds::routes())
        .merge(orders::routes())
        .merge(requests::routes())
        .merge(admin::routes())
        .merge(admin_catalog::routes())
        .merge(waiting_rooms::routes())
}

/// The OpenAPI document of the router's routes (what `GET /api/v1/openapi.json` serves).
pub fn document() -> utoipa::openapi::OpenApi {
    openapi::finish(documented(|routes| routes).into_openapi())
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let body_limit = state.service.config().max_body_bytes;
    let (routes, document) = documented(|routes| {
        routes.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            extract::limit_by_address,
        ))
    })
    .split_for_parts();
    let document = axum::body::Bytes::from(
        openapi::finish(document)
            .to_json()
            .expect("the document serializes"),
    );
    routes
        .route(
            openapi::DOCUMENT_PATH,
            axum::routing::get(move || async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    document,
                )
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::idempotent,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        // Every answer is JSON about this moment, for this caller: never sniffed as something
        // else, never stored by a cache between here and the client.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("NOT_FOUND", "No such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "Method not allowed on this endpoint",
    )
}
