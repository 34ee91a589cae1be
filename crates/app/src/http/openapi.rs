//! The API described for integrators: an OpenAPI 3.1 document generated from the handlers' own
//! annotations (`#[utoipa::path]` beside each handler, `ToSchema` on each view), so it cannot
//! drift from the routes: the router and the document are split from one `OpenApiRouter`.
//! Served at `GET /api/v1/openapi.json`, and fuzzed against the running server in the test suite
//! (schemathesis: no 5xx, no answer the document does not allow).
//!
//! What every route shares is added here once, by `Conventions`, instead of on each handler:
//! the errors any request can meet (401 without a valid token, 400/413/415 for a body that is
//! not acceptable JSON, 503 while a dependency is down or the server sheds load, 500), the
//! `Idempotency-Key` header and its errors on every `POST`, and the error body's shape.

use utoipa::openapi::path::{Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, OpenApi, RefOr, Required, Response,
    ResponseBuilder, Schema, Type,
};
use utoipa::{Modify, PartialSchema, ToSchema};

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";

/// The document as served: `docs/openapi.json`, generated from the routes by
/// [`document`](super::document) and committed, so that the binaries carry its text instead of
/// the code that builds and serializes it (which made the api Lambda function 0.5 MB larger).
/// The test `the_committed_document_is_the_one_the_routes_describe` keeps the two equal;
/// `SEATBOOK_WRITE_OPENAPI=1 cargo test -p booking-app --lib committed_document` writes it anew
/// after a change to a route or a view.
pub const DOCUMENT: &[u8] = include_bytes!("../../../../docs/openapi.json");

/// Every error code the HTTP API answers with, and when. The `code` of every error body is one
/// of these (the document's `ErrorCode` enum is made from this list, and a test checks the
/// server's sources name no other).
pub const ERROR_CODES: &[(&str, &str)] = &[
    ("MALFORMED_JSON", "400: the body is not JSON (or not UTF-8)"),
    (
        "INVALID_REQUEST",
        "400: the JSON is not of the documented shape (a missing field, a wrong type, an unknown field)",
    ),
    (
        "INVALID_QUERY",
        "400: a query parameter is not of the documented shape",
    ),
    ("INVALID_DATE", "400: `date` is not YYYY-MM-DD"),
    (
        "INVALID_CURSOR",
        "400: `cursor` is not one this API handed out",
    ),
    (
        "INVALID_LIMIT",
        "400: `limit` is out of range (`details.max`)",
    ),
    (
        "INVALID_IDEMPOTENCY_KEY",
        "400: `Idempotency-Key` is not 1 to 128 visible ASCII characters",
    ),
    ("UNAUTHORIZED", "401: no valid bearer token"),
    (
        "PAYMENT_DECLINED",
        "402: the provider declined the charge; the order is FAILED, its seats free",
    ),
    (
        "FORBIDDEN",
        "403: the token lacks the admin role this endpoint needs",
    ),
    ("NOT_FOUND", "404: no such endpoint"),
    ("MOVIE_NOT_FOUND", "404: no such movie"),
    ("SHOW_NOT_FOUND", "404: no such show"),
    (
        "REQUEST_NOT_FOUND",
        "404: no such booking request, or not the caller's",
    ),
    ("HOLD_NOT_FOUND", "404: no such hold, or not the caller's"),
    ("ORDER_NOT_FOUND", "404: no such order, or not the caller's"),
    (
        "DEAD_LETTER_NOT_FOUND",
        "404: the request is not a dead letter",
    ),
    (
        "METHOD_NOT_ALLOWED",
        "405: the endpoint does not take this method",
    ),
    (
        "REQUEST_TIMEOUT",
        "408: the body did not arrive in time (local server)",
    ),
    (
        "HOLD_NOT_ACTIVE",
        "409: the hold is not HELD any more (`details.status`)",
    ),
    (
        "ORDER_EXPIRED",
        "409: the order's payment deadline has passed",
    ),
    (
        "ORDER_NOT_PENDING",
        "409: the order is not PAYMENT_PENDING (`details.status`)",
    ),
    (
        "ORDER_NOT_CANCELLABLE",
        "409: the order cannot be cancelled in its state (`details.status`)",
    ),
    (
        "PAYMENT_IN_PROGRESS",
        "409: a payment of this order is in progress; retry shortly",
    ),
    (
        "SHOW_ON_SALE",
        "409: the show has taken hold requests; its seats, prices and movie are fixed",
    ),
    ("SHOW_CANCELLED", "409: the show was cancelled"),
    (
        "SEATS_UNAVAILABLE",
        "409: direct mode: the seats were not all free (`details.unavailable`, `details.alternatives`)",
    ),
    (
        "REQUEST_EXPIRED",
        "409: direct mode: the request expired before it was decided",
    ),
    (
        "IDEMPOTENCY_KEY_IN_FLIGHT",
        "409: a request with this Idempotency-Key is still being handled; retry shortly",
    ),
    (
        "PAYLOAD_TOO_LARGE",
        "413: the body is larger than the server takes",
    ),
    (
        "UNSUPPORTED_MEDIA_TYPE",
        "415: the body is not sent as application/json",
    ),
    ("NO_SEATS", "422: `seatIds` is empty"),
    (
        "TOO_MANY_SEATS",
        "422: more seats than one request may ask for (`details.max`)",
    ),
    (
        "INVALID_SEAT_ID",
        "422: a seat id is not of the form A12 (`details.seatId`)",
    ),
    (
        "SEAT_NOT_IN_LAYOUT",
        "422: a seat is not in the show's layout (`details.seatId`)",
    ),
    (
        "SEAT_BLOCKED",
        "422: a seat cannot be booked (`details.seatId`)",
    ),
    (
        "DUPLICATE_SEATS",
        "422: a seat is listed twice (`details.seatId`)",
    ),
    (
        "SEATS_NOT_PRICED",
        "422: the seats cannot be sold together (different currencies)",
    ),
    (
        "INVALID_PAYMENT_TOKEN",
        "422: `paymentToken` is not 1 to 255 visible ASCII characters",
    ),
    (
        "INVALID_CATALOG",
        "422: a catalog write was refused; every value at fault in `details.issues`",
    ),
    (
        "INVALID_WAITING_ROOM",
        "422: a waiting-room setting is out of bounds (the message says which)",
    ),
    (
        "INVALID_REASON",
        "422: `reason` is over 500 characters or has control characters",
    ),
    (
        "IDEMPOTENCY_KEY_REUSED",
        "422: this Idempotency-Key was used for a different request",
    ),
    (
        "ADMISSION_REQUIRED",
        "403: the show's waiting room is on and no valid admission token of the caller's place was sent (`details.reason`)",
    ),
    (
        "WAITING_ROOM_NOT_FOUND",
        "404: the show has no waiting room",
    ),
    (
        "NOT_IN_WAITING_ROOM",
        "404: the caller has no place in the show's waiting room",
    ),
    (
        "RATE_LIMITED",
        "429: too many requests; `Retry-After` says when to try again",
    ),
    (
        "TOO_MANY_OPEN_REQUESTS",
        "429: the caller has too many undecided requests for the show (`details.max`)",
    ),
    (
        "INTERNAL_ERROR",
        "500: a defect; nothing partial was written",
    ),
    (
        "SERVICE_UNAVAILABLE",
        "503: a backing service is down; retry shortly",
    ),
    (
        "PAYMENT_PROVIDER_UNAVAILABLE",
        "503: the payment provider did not answer; retry with the same Idempotency-Key",
    ),
    (
        "NO_SHARED_ADMISSION_KEY",
        "503: a waiting room cannot be switched on: the deployment's instances share no admission key",
    ),
    (
        "OVERLOADED",
        "503: the server is shedding load; `Retry-After` says when to try again",
    ),
];

/// The body of every error answer.
#[derive(ToSchema)]
#[allow(dead_code)] // describes the JSON `ApiError` writes; never built as a value
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong: a code to branch on, a message for people, and details for some codes.
#[derive(ToSchema)]
#[allow(dead_code)]
struct ErrorDetail {
    code: ErrorCode,
    /// For people; may change between versions. Branch on `code`.
    message: String,
    /// Facts about this error, by code (see each code's description).
    #[schema(value_type = Option<Object>)]
    details: Option<()>,
}

/// The machine-readable error code: one of [`ERROR_CODES`].
struct ErrorCode;

impl PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        let meanings: Vec<String> = ERROR_CODES
            .iter()
            .map(|(code, when)| format!("- `{code}`: {when}"))
            .collect();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(ERROR_CODES.iter().map(|(code, _)| *code)))
            .description(Some(format!(
                "What went wrong, for clients to branch on:\n\n{}",
                meanings.join("\n")
            )))
            .into()
    }
}

impl ToSchema for ErrorCode {}

/// The document's fixed parts; the paths come from the routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "seatbook",
        description = "Seat booking for flash sales: browse the catalog, ask for seats (answered \
            202 and decided in arrival order per show; the result arrives over the WebSocket \
            and at the request's status URL), then order and pay. Errors are always \
            `{\"error\":{\"code\",\"message\",\"details\"}}`; `code` is one of `ErrorCode`. \
            The WebSocket's messages are described by `docs/websocket-messages.schema.json`.",
    ),
    paths(openapi_document),
    components(schemas(ErrorBody)),
    tags(
        (name = "catalog", description = "Movies, shows and seat maps (no token needed)"),
        (name = "holds", description = "Asking for seats, and the holds that result"),
        (name = "orders", description = "Orders, payment and tickets"),
        (name = "operations", description = "Health, queues, pauses and dead letters"),
        (name = "catalog administration", description = "Writing movies and shows (admin role)"),
    )
)]
pub(super) struct ApiDoc;

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)),
)]
#[allow(dead_code)] // documents the route `router` serves with the document itself
fn openapi_document() {}

/// The document of the routes, with what they all share added.
pub(super) fn finish(mut doc: OpenApi) -> OpenApi {
    Conventions.modify(&mut doc);
    doc
}

/// Adds what every operation shares (see the module docs). Applied once every route is in: a
/// modifier on [`ApiDoc`] would run before the routers' paths are merged in.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT signed with the deployment's key: `sub` is the user; admin \
                         endpoints need the admin claim as well",
                    ))
                    .build(),
            ),
        );
        components
            .schemas
            .insert(ErrorCode::name().into_owned(), ErrorCode::schema());
        for (path, item) in doc.paths.paths.iter_mut() {
            let has_path_id = path.contains('{');
            let operations = [
                (&mut item.get, false),
                (&mut item.put, false),
                (&mut item.post, true),
                (&mut item.delete, false),
            ];
            for (operation, is_post) in operations {
                if let Some(operation) = operation {
                    add_shared(operation, is_post, has_path_id);
                }
            }
        }
    }
}

/// The name of the bearer-token security scheme.
pub(super) const BEARER: &str = "bearerAuth";

fn add_shared(operation: &mut Operation, is_post: bool, has_path_id: bool) {
    let authenticated = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());
    if authenticated {
        add_error(operation, 401, "UNAUTHORIZED: no valid bearer token");
    }
    if operation.request_body.is_some() {
        add_error(
            operation,
            400,
            "MALFORMED_JSON or INVALID_REQUEST: the body is not JSON of the documented shape",
        );
        add_error(operation, 413, "PAYLOAD_TOO_LARGE: the body is too large");
        add_error(
            operation,
            415,
            "UNSUPPORTED_MEDIA_TYPE: the body is not sent as application/json",
        );
        add_error(
            operation,
            408,
            "REQUEST_TIMEOUT: the body did not arrive in time (local server)",
        );
    }
    if is_post {
        operation
            .parameters
            .get_or_insert_with(Vec::new)
            .push(RefOr::T(idempotency_key()));
        add_error(
            operation,
            400,
            "INVALID_IDEMPOTENCY_KEY: `Idempotency-Key` is not 1 to 128 visible ASCII characters",
        );
        add_error(
            operation,
            409,
            "IDEMPOTENCY_KEY_IN_FLIGHT: an earlier request with this key is still being handled",
        );
        add_error(
            operation,
            422,
            "IDEMPOTENCY_KEY_REUSED: this key was used for a different request",
        );
    }
    if has_path_id {
        add_error(operation, 404, "NOT_FOUND: no such resource");
    }
    add_error(
        operation,
        500,
        "INTERNAL_ERROR: a defect; nothing partial was written",
    );
    add_error(
        operation,
        503,
        "SERVICE_UNAVAILABLE (a backing service is down) or OVERLOADED (the server sheds load): \
         retry after `Retry-After` seconds",
    );
}

/// Adds an error answer, or, when the operation already documents that status, adds this
/// reason to its description.
fn add_error(operation: &mut Operation, status: u16, reason: &str) {
    let responses = &mut operation.responses.responses;
    match responses.get_mut(&status.to_string()) {
        Some(RefOr::T(existing)) => {
            if !existing.description.contains(reason) {
                existing.description = format!("{}; {reason}", existing.description);
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            responses.insert(status.to_string(), RefOr::T(error_response(status, reason)));
        }
    }
}

fn error_response(status: u16, description: &str) -> Response {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                ErrorBody::name(),
            ))))
            .build(),
    );
    if matches!(status, 429 | 503) {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1)),
                ))
                .description(Some("Seconds to wait before trying again"))
                .build(),
        );
    }
    response.build()
}

fn idempotency_key() -> Parameter {
    ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Makes the POST safe to retry: a retry with the same key and body gets the first \
             answer again (with `Idempotency-Replayed: true`) instead of running twice",
        ))
        // The key's own schema, as the core parses it.
        .schema(Some(booking_core::IdempotencyKey::schema()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    fn repository_file(path: &str) -> String {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Every `(METHOD, path)` the document describes.
    fn operations(doc: &OpenApi) -> BTreeSet<(String, String)> {
        let json = serde_json::to_value(doc).unwrap();
        let mut found = BTreeSet::new();
        for (path, item) in json["paths"].as_object().unwrap() {
            for method in ["get", "put", "post", "delete", "patch"] {
                if item.get(method).is_some() {
                    found.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        found
    }

    #[test]
    fn the_committed_document_is_the_one_the_routes_describe() {
        let generated = crate::http::document()
            .to_pretty_json()
            .expect("the document serializes")
            + "\n";
        let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
        if std::env::var_os("SEATBOOK_WRITE_OPENAPI").is_some_and(|v| v == "1") {
            std::fs::write(&committed, &generated).expect("docs/openapi.json is writable");
        }
        // Read from disk rather than `DOCUMENT`: the bytes compiled in are the file's, and
        // after a write the file is what the next build serves.
        let on_disk = std::fs::read(&committed).unwrap_or_default();
        assert!(
            generated.as_bytes() == on_disk,
            "docs/openapi.json is not the document the routes describe: after changing a route \
             or a view, write it anew with `SEATBOOK_WRITE_OPENAPI=1 cargo test -p booking-app \
             --lib committed_document` and commit it"
        );
    }

    #[test]
    fn the_document_describes_exactly_the_routes_of_the_api_reference() {
        // The reference's routes table, less the local server's own transport routes (the
        // WebSocket, the page, metrics, the management emulator), which are not the HTTP API
        // that Lambda serves too.
        let reference = repository_file("docs/API.md");
        let mut listed = BTreeSet::new();
        for line in reference.lines().filter(|l| {
            ["| GET", "| P", "| DELETE"]
                .iter()
                .any(|m| l.starts_with(m))
        }) {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let path = cells[2].split('`').nth(1).unwrap_or_default();
            let path = path.split('?').next().unwrap_or_default();
            if !(path.starts_with("/api/") || path == "/health") {
                continue;
            }
            for method in cells[1].split(',') {
                listed.insert((method.trim().to_owned(), path.to_owned()));
            }
        }
        assert!(
            listed.len() > 25,
            "the routes table was not found: {listed:?}"
        );
        let doc = crate::http::document();
        assert_eq!(operations(&doc), listed);
        let json = serde_json::to_value(&doc).unwrap();
        assert!(json["openapi"].as_str().unwrap().starts_with("3.1."));
    }

    #[test]
    fn every_operation_documents_its_errors_with_the_error_body() {
        let json = serde_json::to_value(crate::http::document()).unwrap();
        for (path, item) in json["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = operation["responses"].as_object().unwrap();
                for status in ["500", "503"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path}: no {status}"
                    );
                }
                let secured = operation
                    .get("security")
                    .is_some_and(|s| !s.as_array().unwrap().is_empty());
                assert_eq!(responses.contains_key("401"), secured, "{method} {path}");
                if method == "post" {
                    let header = operation["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header");
                    assert!(header, "{method} {path}: no Idempotency-Key");
                }
                for (status, response) in responses {
                    if status.starts_with('4') {
                        let schema = &response["content"]["application/json"]["schema"];
                        assert_eq!(
                            schema["$ref"], "#/components/schemas/ErrorBody",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }

    /// The SAM template's HTTP API routes: each path, and whether its operations ask for the
    /// JWT authorizer.
    fn deployed_routes() -> Vec<(String, bool)> {
        let template = repository_file("template.yaml");
        let mut routes: Vec<(String, bool)> = Vec::new();
        for line in template.lines() {
            if let Some(path) = line
                .strip_prefix("          /")
                .and_then(|l| l.strip_suffix(':'))
            {
                routes.push((path.to_owned(), false));
            } else if line.starts_with("        components:") {
                break;
            } else if line.trim_start().starts_with("security:")
                && let Some(route) = routes.last_mut()
            {
                route.1 = true;
            }
        }
        routes
    }

    /// The route API Gateway picks for `path` (without its leading `/`): an exact one (path
    /// parameters named as in the document) before the longest `{proxy+}` prefix.
    fn deployed_route_of<'a>(routes: &'a [(String, bool)], path: &str) -> &'a (String, bool) {
        routes
            .iter()
            .find(|(route, _)| route == path)
            .or_else(|| {
                routes
                    .iter()
                    .filter(|(route, _)| {
                        route
                            .strip_suffix("{proxy+}")
                            .is_some_and(|prefix| path.starts_with(prefix))
                    })
                    .max_by_key(|(route, _)| route.len())
            })
            .unwrap_or_else(|| panic!("/{path} has no route in template.yaml"))
    }

    #[test]
    fn the_deployed_http_api_asks_for_a_token_where_the_api_does() {
        // The SAM template's HTTP API routes what needs no token around the JWT authorizer, by
        // exact path or by a `{proxy+}` under a prefix. A public route sent through the
        // authorizer would answer 401 deployed (in authorizer mode) while it answers locally;
        // a secured one routed around it would reach the function without the claims it reads
        // the caller from.
        let routes = deployed_routes();
        let json = serde_json::to_value(crate::http::document()).unwrap();
        let (mut public, mut secured) = (0, 0);
        for (path, item) in json["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let (route, behind_authorizer) = deployed_route_of(&routes, &path[1..]);
                if operation.get("security").is_some() {
                    secured += 1;
                    assert!(
                        *behind_authorizer,
                        "{method} {path} needs a token, but /{route} does not ask for one"
                    );
                } else {
                    public += 1;
                    assert_eq!(method, "get", "{path}: a public route that writes");
                    assert!(
                        !behind_authorizer,
                        "{path} is public, but /{route} sends it through the authorizer"
                    );
                }
            }
        }
        assert!(
            public >= 6 && secured >= 20,
            "{public} public, {secured} secured"
        );
    }

    /// The code of each `ApiError` the sources build, and each `BookingError::code` arm.
    fn codes_in_sources() -> BTreeSet<String> {
        let mut codes = BTreeSet::new();
        let mut literal_after = |text: &str, start: usize| {
            let rest = &text[start..];
            let open = rest.find('"').unwrap();
            let close = rest[open + 1..].find('"').unwrap();
            codes.insert(rest[open + 1..open + 1 + close].to_owned());
        };
        let mut files: Vec<String> =
            std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http"))
                .unwrap()
                .map(|e| {
                    format!(
                        "crates/app/src/http/{}",
                        e.unwrap().file_name().to_string_lossy()
                    )
                })
                .filter(|file| !file.ends_with("openapi.rs"))
                .collect();
        files.extend(
            [
                "crates/app/src/error.rs",
                "crates/app/src/limits.rs",
                "crates/local/src/http.rs",
            ]
            .map(String::from),
        );
        for file in files {
            let text = repository_file(&file);
            // `Self::new` builds an `ApiError` in its own impl only.
            let own = if file.ends_with("error.rs") {
                "Self::new("
            } else {
                "ApiError::new("
            };
            for call in [
                "ApiError::new(",
                "ApiError::bad_request(",
                "ApiError::not_found(",
                own,
            ] {
                for (at, _) in text.match_indices(call) {
                    literal_after(&text, at);
                }
            }
            if let Some(start) = text.find("pub fn code(&self)") {
                let end = start + text[start..].find("pub fn public_message").unwrap();
                for (at, _) in text[start..end].match_indices("=> \"") {
                    literal_after(&text, start + at);
                }
            }
        }
        codes
    }

    #[test]
    fn every_error_code_the_server_answers_with_is_documented() {
        let documented: BTreeSet<String> = ERROR_CODES
            .iter()
            .map(|(code, _)| (*code).to_owned())
            .collect();
        let used = codes_in_sources();
        assert!(
            used.len() > 40,
            "too few codes found in the sources: {used:?}"
        );
        assert_eq!(
            used.difference(&documented).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "codes the server answers with but the document does not list"
        );
        assert_eq!(
            documented.difference(&used).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "codes the document lists but no source uses"
        );
    }
}
