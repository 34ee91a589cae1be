//! Bad and hostile input: every case gets a clear 4xx with a machine-readable code, never a 5xx,
//! and nothing is written.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

#[macro_use]
mod support;

use serde_json::{Value, json};
use support::*;

struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    token: Option<String>,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
    status: u16,
    code: &'static str,
}

fn case(
    name: &'static str,
    method: &'static str,
    path: &str,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.to_owned(),
        token: Some(token("alice")),
        content_type: None,
        headers: vec![],
        body: None,
        status,
        code,
    }
}

fn hold_case(name: &'static str, body: Value, status: u16, code: &'static str) -> Case {
    Case {
        content_type: Some("application/json"),
        body: Some(body.to_string()),
        ..case(name, "POST", "/api/v1/holds", status, code)
    }
}

async fn bad_input_gets_a_clear_4xx_and_writes_nothing(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let unknown_show = "0b7f6a6e-1111-4222-8333-444455556666";
    let eleven: Vec<String> = (1..=11).map(|n| format!("E{n}")).collect();
    let many: Vec<String> = (0..1000).map(|n| format!("E{}", n % 25 + 1)).collect();
    let expired = booking_app::Authenticator::hs256(booking_app::auth::DEV_JWT_SECRET.as_bytes())
        .mint(
            &"alice".parse().unwrap(),
            false,
            chrono::Duration::minutes(-10),
        );
    let wrong_key = booking_app::Authenticator::hs256(b"not-the-secret").mint(
        &"alice".parse().unwrap(),
        true,
        chrono::Duration::hours(1),
    );

    let mut cases = vec![
        Case {
            token: None,
            ..hold_case(
                "no token",
                json!({"showId": GRAND_HALL, "seatIds": ["A1"]}),
                401,
                "UNAUTHORIZED",
            )
        },
        Case {
            token: Some("garbage".into()),
            ..hold_case(
                "garbage token",
                json!({"showId": GRAND_HALL, "seatIds": ["A1"]}),
                401,
                "UNAUTHORIZED",
            )
        },
        Case {
            token: Some(expired),
            ..hold_case(
                "expired token",
                json!({"showId": GRAND_HALL, "seatIds": ["A1"]}),
                401,
                "UNAUTHORIZED",
            )
        },
        Case {
            token: Some(wrong_key.clone()),
            ..hold_case(
                "token signed with another key",
                json!({"showId": GRAND_HALL, "seatIds": ["A1"]}),
                401,
                "UNAUTHORIZED",
            )
        },
        Case {
            body: Some("{\"showId\":".into()),
            ..hold_case("truncated JSON", json!(null), 400, "MALFORMED_JSON")
        },
        Case {
            body: Some("[".repeat(5000)),
            ..hold_case("deeply nested JSON", json!(null), 400, "INVALID_REQUEST")
        },
        hold_case(
            "wrong types",
            json!({"showId": 5, "seatIds": "A1"}),
            400,
            "INVALID_REQUEST",
        ),
        hold_case(
            "missing seatIds",
            json!({"showId": GRAND_HALL}),
            400,
            "INVALID_REQUEST",
        ),
        hold_case(
            "null seat",
            json!({"showId": GRAND_HALL, "seatIds": [null]}),
            400,
            "INVALID_REQUEST",
        ),
        hold_case("body is an array", json!([1, 2, 3]), 400, "INVALID_REQUEST"),
        Case {
            content_type: Some("text/plain"),
            ..hold_case(
                "not JSON content type",
                json!({"showId": GRAND_HALL, "seatIds": ["A1"]}),
                415,
                "UNSUPPORTED_MEDIA_TYPE",
            )
        },
        Case {
            content_type: None,
            ..hold_case(
                "no content type",
                json!({"showId": GRAND_HALL, "seatIds": ["A1"]}),
                415,
                "UNSUPPORTED_MEDIA_TYPE",
            )
        },
        hold_case(
            "unknown show",
            json!({"showId": unknown_show, "seatIds": ["A1"]}),
            404,
            "SHOW_NOT_FOUND",
        ),
        hold_case(
            "injection as show id",
            json!({"showId": "' OR 1=1; --", "seatIds": ["A1"]}),
            404,
            "SHOW_NOT_FOUND",
        ),
        hold_case(
            "seat outside the layout",
            json!({"showId": GRAND_HALL, "seatIds": ["Z99"]}),
            422,
            "SEAT_NOT_IN_LAYOUT",
        ),
        hold_case(
            "row outside the layout",
            json!({"showId": STUDIO, "seatIds": ["J1"]}),
            422,
            "SEAT_NOT_IN_LAYOUT",
        ),
        hold_case(
            "seat zero",
            json!({"showId": GRAND_HALL, "seatIds": ["A0"]}),
            422,
            "INVALID_SEAT_ID",
        ),
        hold_case(
            "injection as seat",
            json!({"showId": GRAND_HALL, "seatIds": ["A1'; DROP TABLE holds; --"]}),
            422,
            "INVALID_SEAT_ID",
        ),
        hold_case(
            "unicode seat",
            json!({"showId": GRAND_HALL, "seatIds": ["Ä1"]}),
            422,
            "INVALID_SEAT_ID",
        ),
        hold_case(
            "blocked seat",
            json!({"showId": STUDIO, "seatIds": ["A1"]}),
            422,
            "SEAT_BLOCKED",
        ),
        hold_case(
            "duplicate seats",
            json!({"showId": GRAND_HALL, "seatIds": ["B1", "B1"]}),
            422,
            "DUPLICATE_SEATS",
        ),
        hold_case(
            "no seats",
            json!({"showId": GRAND_HALL, "seatIds": []}),
            422,
            "NO_SEATS",
        ),
        hold_case(
            "eleven seats",
            json!({"showId": GRAND_HALL, "seatIds": eleven}),
            422,
            "TOO_MANY_SEATS",
        ),
        hold_case(
            "a thousand seats",
            json!({"showId": GRAND_HALL, "seatIds": many}),
            422,
            "TOO_MANY_SEATS",
        ),
        Case {
            body: Some(format!(
                "{{\"showId\":\"{GRAND_HALL}\",\"seatIds\":[\"A1\"],\"pad\":\"{}\"}}",
                "x".repeat(20_000)
            )),
            ..hold_case("body over the limit", json!(null), 413, "PAYLOAD_TOO_LARGE")
        },
        Case {
            headers: vec![("Idempotency-Key", "k".repeat(200))],
            ..hold_case(
                "idempotency key too long",
                json!({"showId": GRAND_HALL, "seatIds": ["A1"]}),
                400,
                "INVALID_IDEMPOTENCY_KEY",
            )
        },
        case(
            "request id not a uuid",
            "GET",
            "/api/v1/booking-requests/not-a-uuid",
            404,
            "REQUEST_NOT_FOUND",
        ),
        case(
            "unknown request",
            "GET",
            &format!("/api/v1/booking-requests/{unknown_show}"),
            404,
            "REQUEST_NOT_FOUND",
        ),
        case(
            "unknown hold",
            "GET",
            &format!("/api/v1/holds/{unknown_show}"),
            404,
            "HOLD_NOT_FOUND",
        ),
        case(
            "release unknown hold",
            "POST",
            &format!("/api/v1/holds/{unknown_show}/release"),
            404,
            "HOLD_NOT_FOUND",
        ),
        case(
            "unknown movie",
            "GET",
            "/api/v1/movies/x",
            404,
            "MOVIE_NOT_FOUND",
        ),
        case(
            "bad date",
            "GET",
            &format!("/api/v1/movies/{PREMIERE_MOVIE}/shows?date=yesterday"),
            400,
            "INVALID_DATE",
        ),
        case(
            "seat map of unknown show",
            "GET",
            &format!("/api/v1/shows/{unknown_show}/seatmap"),
            404,
            "SHOW_NOT_FOUND",
        ),
        case(
            "path traversal",
            "GET",
            "/api/v1/shows/..%2F..%2Fetc%2Fpasswd/seatmap",
            404,
            "SHOW_NOT_FOUND",
        ),
        case(
            "unknown route",
            "GET",
            "/api/v2/everything",
            404,
            "NOT_FOUND",
        ),
        case(
            "wrong method",
            "DELETE",
            "/api/v1/holds",
            405,
            "METHOD_NOT_ALLOWED",
        ),
        case(
            "admin endpoint as a user",
            "POST",
            &format!("/api/v1/admin/shows/{GRAND_HALL}/pause"),
            403,
            "FORBIDDEN",
        ),
        Case {
            token: Some(wrong_key),
            ..case(
                "admin role in a forged token",
                "GET",
                "/api/v1/admin/queues",
                401,
                "UNAUTHORIZED",
            )
        },
        Case {
            token: None,
            ..case("websocket without token", "GET", "/ws", 401, "UNAUTHORIZED")
        },
        Case {
            token: None,
            ..case(
                "websocket with bad token",
                "GET",
                "/ws?token=abc",
                401,
                "UNAUTHORIZED",
            )
        },
    ];

    for case in cases.drain(..) {
        let mut req = c.request(case.method.parse().unwrap(), server.url(&case.path));
        if let Some(t) = &case.token {
            req = req.bearer_auth(t);
        }
        if let Some(ct) = case.content_type {
            req = req.header("content-type", ct);
        }
        for (k, v) in &case.headers {
            req = req.header(*k, v);
        }
        if let Some(b) = case.body.clone() {
            req = req.body(b);
        }
        let (status, body) = json_of(
            req.send()
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", case.name)),
        )
        .await;
        assert_eq!(status, case.status, "{}: {body}", case.name);
        assert_eq!(body["error"]["code"], case.code, "{}: {body}", case.name);
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}: {body}",
            case.name
        );
    }

    // Nothing was written: the request table is empty, no show has a request, and every
    // seat is as it started.
    assert_eq!(
        server.stored_request_count().await,
        0,
        "a rejected request was stored"
    );
    let (_, stats) = get(
        &c,
        &server,
        "/api/v1/admin/queues",
        Some(&admin_token("ops")),
    )
    .await;
    let shows = stats["shows"].as_array().unwrap();
    assert!(!shows.is_empty(), "every show to come is listed: {stats}");
    for lane in shows {
        assert_eq!(
            (
                lane["waiting"].as_u64(),
                lane["inFlight"].as_u64(),
                lane["decided"].as_u64()
            ),
            (Some(0), Some(0), Some(0)),
            "a rejected request reached a queue: {lane}"
        );
    }
    assert_no_seat_taken(&c, &server).await;
}

async fn websocket_rejects_nonsense_and_keeps_the_connection(backend: Backend) {
    let server = TestApp::start(backend).await;
    let mut ws = WsClient::connect(&server, &token("alice")).await;
    ws.send(json!({"action": "dance"})).await;
    assert_eq!(ws.next_json().await["code"], "INVALID_MESSAGE");
    ws.send(json!({"action": "subscribe", "showId": "0b7f6a6e-1111-4222-8333-444455556666"}))
        .await;
    assert_eq!(ws.next_json().await["code"], "SHOW_NOT_FOUND");
    ws.send(json!({"action": "subscribe", "showId": "'; DROP TABLE shows"}))
        .await;
    assert_eq!(ws.next_json().await["code"], "INVALID_MESSAGE");
    ws.send(json!({"action": "ping"})).await;
    assert_eq!(ws.next_json().await, json!({"type": "pong"}));
}

on_every_backend!(
    bad_input_gets_a_clear_4xx_and_writes_nothing,
    websocket_rejects_nonsense_and_keeps_the_connection,
);
