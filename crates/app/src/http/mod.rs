//! The HTTP API as one axum [`Router`]: served by `axum::serve` locally and by `lambda_http` on
//! AWS, so both run exactly the same routes, validation and error mapping.
//!
//! One module per resource, each with its own routes and the JSON views of what it returns
//! (`catalog`, `holds`, `orders`, `requests`, `admin`, `admin_catalog`, `health`); [`extract`] holds the extractors
//! that turn every rejection axum itself can produce (bad JSON, wrong content type, oversized
//! body, unknown route, wrong method, missing token) into the same `{"error":{code,message}}`
//! body as our own errors, so clients parse exactly one error shape. The WebSocket endpoint is not
//! here: API Gateway serves it deployed, and the local server adds its own (`booking-local`).

/// A route's handlers, as [`utoipa_axum::routes!`] hands them to an [`OpenApiRouter`]: described
/// (operation, schemas, tags) when `describe` is true, for [`document`]; with their path and
/// methods only when it is false, for [`router`]. Each resource module's `routes` takes
/// `describe` as a const parameter, so the router's instance of it never reaches the code that
/// describes operations and schemas, and a binary that only serves (the api Lambda function,
/// which serves the committed document) leaves that code out.
macro_rules! route {
    ($describe:expr, $($handler:ident),+ $(,)?) => {
        if $describe {
            utoipa_axum::routes!($($handler),+)
        } else {
            use utoipa::Path as _;
            use utoipa_axum::PathItemExt as _;
            let mut paths = utoipa::openapi::path::Paths::new();
            let mut method_router = axum::routing::MethodRouter::new();
            $(
                utoipa_axum::paste! {
                    for method in [<__path_ $handler>]::methods() {
                        method_router = method_router.on(method.to_method_filter(), $handler);
                    }
                    paths.paths.insert([<__path_ $handler>]::path(), Default::default());
                }
            )+
            (Vec::new(), paths, method_router)
        }
    };
}

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

/// Everything a handler can reach, behind one reference count: axum clones the state for every
/// extractor and middleware of every request, and a clone of six `Arc`s was six atomic
/// increments and six decrements each time (visible in a profile of a flash sale).
#[derive(Clone)]
pub struct AppState(Arc<Handlers>);

/// What [`AppState`] holds.
pub struct Handlers {
    pub service: Arc<BookingService>,
    pub orders: Arc<OrderService>,
    pub catalog: Arc<CatalogAdmin>,
    pub auth: Arc<Authenticator>,
    pub limits: Arc<Limits>,
    pub waiting_rooms: Arc<crate::waiting_rooms::WaitingRooms>,
}

impl AppState {
    pub fn new(handlers: Handlers) -> Self {
        Self(Arc::new(handlers))
    }
}

impl std::ops::Deref for AppState {
    type Target = Handlers;

    fn deref(&self) -> &Handlers {
        &self.0
    }
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

/// Every documented route, on top of `base`, with the catalog's routes passed through
/// `catalog_layer` (the per-address limit, which needs the state; the document does not).
fn documented<const DESCRIBE: bool>(
    base: OpenApiRouter<AppState>,
    catalog_layer: impl FnOnce(OpenApiRouter<AppState>) -> OpenApiRouter<AppState>,
) -> OpenApiRouter<AppState> {
    base.merge(health::routes::<DESCRIBE>())
        .merge(catalog_layer(catalog::routes::<DESCRIBE>()))
        .merge(holds::routes::<DESCRIBE>())
        .merge(orders::routes::<DESCRIBE>())
        .merge(requests::routes::<DESCRIBE>())
        .merge(admin::routes::<DESCRIBE>())
        .merge(admin_catalog::routes::<DESCRIBE>())
        .merge(waiting_rooms::routes::<DESCRIBE>())
}

/// The OpenAPI document of the router's routes, generated from their annotations: what
/// `GET /api/v1/openapi.json` serves, as the committed [`openapi::DOCUMENT`] a test keeps equal
/// to this.
pub fn document() -> utoipa::openapi::OpenApi {
    openapi::finish(
        documented::<true>(
            OpenApiRouter::with_openapi(openapi::ApiDoc::openapi()),
            |routes| routes,
        )
        .into_openapi(),
    )
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    let body_limit = state.service.config().max_body_bytes;
    // The served document is the committed text, not one generated here: the code that builds
    // and serializes it is then left out of the binaries (it put the api function over its
    // size goal).
    let (routes, _) = documented::<false>(OpenApiRouter::new(), |routes| {
        routes.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            extract::limit_by_address,
        ))
    })
    .split_for_parts();
    let document = axum::body::Bytes::from_static(openapi::DOCUMENT);
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
