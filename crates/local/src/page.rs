//! The seat-selector page at `/`: what a cinema-goer (or a developer trying the system) opens in a
//! browser. Plain HTML, CSS, one JavaScript module and an icon, embedded in the binary so that the run
//! command needs no build step and no files beside it; the page talks to the same public API and
//! WebSocket as any other client, so it shows nothing a client could not see.
//!
//! `PAGE_DIR` makes the server read the files from a directory on every request instead, so that
//! the page can be edited without rebuilding the server.
//!
//! Locally, with the development secret only, `POST /dev/tokens` mints a user's token: the page's
//! user switcher, which lets one person play several users in several tabs. With a real
//! `JWT_SECRET` the route does not exist; a deployment signs in through its identity provider.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use booking_app::Authenticator;
use booking_app::error::ApiError;
use booking_app::http::ApiJson;
use booking_core::UserId;
use std::path::PathBuf;
use std::sync::Arc;

/// The page's files: name under `/page/`, content type, embedded bytes.
const FILES: [(&str, &str, &str); 4] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../page/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../page/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../page/style.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../page/favicon.svg"),
    ),
];

/// Scripts and styles from this origin only, no inline code, no framing: a page that holds a
/// bearer token must not run anything it did not ship. `connect-src 'self'` covers the same
/// origin's WebSocket.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
     form-action 'none'";

/// How long a token from the user switcher lives.
const DEV_TOKEN_TTL: chrono::Duration = chrono::Duration::hours(1);

/// Where the page comes from, and whether the user switcher may mint tokens.
#[derive(Clone, Default)]
pub struct PageOptions {
    /// `PAGE_DIR`: read the files from here on every request instead of the embedded copies.
    pub dir: Option<PathBuf>,
    /// Set only when the server signs with the development secret.
    pub dev_tokens: Option<Arc<Authenticator>>,
}

/// `/`, `/page/{file}` and, with development tokens, `POST /dev/tokens`.
pub fn routes(options: PageOptions) -> Router {
    let dev_tokens = options.dev_tokens.clone();
    let options = Arc::new(options);
    let mut router = Router::new()
        .route("/", get(index))
        .route("/page/{file}", get(file))
        .with_state(options);
    if let Some(auth) = dev_tokens {
        router = router.merge(
            Router::new()
                .route("/dev/tokens", post(mint_dev_token))
                .with_state(auth),
        );
    }
    router
}

async fn index(State(options): State<Arc<PageOptions>>) -> Response {
    serve(&options, "index.html").await
}

async fn file(State(options): State<Arc<PageOptions>>, Path(name): Path<String>) -> Response {
    serve(&options, &name).await
}

async fn serve(options: &PageOptions, name: &str) -> Response {
    // Only the listed names: a request can never name a path of its own choosing.
    let Some((name, content_type, embedded)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return ApiError::not_found("NOT_FOUND", "No such page file").into_response();
    };
    let body = match &options.dir {
        None => (*embedded).to_owned(),
        Some(dir) => match tokio::fs::read_to_string(dir.join(name)).await {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(error = %e, file = name, "PAGE_DIR file unreadable");
                return ApiError::not_found("NOT_FOUND", "No such page file").into_response();
            }
        },
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Revalidated on every load, so a new binary's page is never mixed with an old one's.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
        .into_response()
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DevTokenRequest {
    user_id: String,
}

async fn mint_dev_token(
    State(auth): State<Arc<Authenticator>>,
    ApiJson(request): ApiJson<DevTokenRequest>,
) -> Result<Response, ApiError> {
    let user: UserId = request
        .user_id
        .parse()
        .map_err(|e| ApiError::bad_request("INVALID_REQUEST", format!("invalid userId: {e}")))?;
    let token = auth.mint(&user, false, DEV_TOKEN_TTL);
    let expires_at = chrono::Utc::now() + DEV_TOKEN_TTL;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(serde_json::json!({
            "userId": user.to_string(),
            "token": token,
            "expiresAt": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })),
    )
        .into_response())
}
