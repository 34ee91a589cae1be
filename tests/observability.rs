//! What an on-call engineer reads off the running server: a request id on every answer, and logs
//! as JSON lines whose request span names the request, its route, its user and its show.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::*;

#[tokio::test]
async fn every_answer_carries_a_request_id_and_a_usable_one_from_the_caller_is_kept() {
    let server = Server::start(&[]);
    let c = client();
    let id_of = |resp: &reqwest::Response| {
        resp.headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned())
    };

    let fresh = c.get(server.url("/api/v1/movies")).send().await.unwrap();
    let fresh = id_of(&fresh).expect("an id without asking");
    assert!(uuid::Uuid::parse_str(&fresh).is_ok(), "{fresh}");
    let again = c.get(server.url("/api/v1/movies")).send().await.unwrap();
    assert_ne!(id_of(&again).unwrap(), fresh, "one id per request");

    let kept = c
        .get(server.url("/api/v1/movies"))
        .header("x-request-id", "trace-42.a:b_c")
        .send()
        .await
        .unwrap();
    assert_eq!(id_of(&kept).as_deref(), Some("trace-42.a:b_c"));

    // Errors, unknown routes and the page get one too.
    for path in ["/api/v1/holds/not-a-uuid", "/no/such/route", "/"] {
        let resp = c.get(server.url(path)).send().await.unwrap();
        assert!(id_of(&resp).is_some(), "{path}");
    }

    // An id that would be written into the logs verbatim is replaced, not trusted.
    let long = "a".repeat(129);
    for hostile in ["bad id", "x\"}{\"level\":\"ERROR", long.as_str()] {
        let resp = c
            .get(server.url("/api/v1/movies"))
            .header("x-request-id", hostile)
            .send()
            .await
            .unwrap();
        let id = id_of(&resp).unwrap();
        assert_ne!(id, hostile);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }
}

#[tokio::test]
async fn json_logs_name_the_request_its_route_user_and_show() {
    let server = Server::start(&[
        ("LOG_FORMAT", "json"),
        // The per-request line is at DEBUG; warn and above as usual elsewhere.
        ("RUST_LOG", "warn,tower_http=debug"),
    ]);
    let c = client();
    let token = token("log-reader");
    let resp = c
        .post(server.url("/api/v1/holds"))
        .bearer_auth(&token)
        .header("x-request-id", "hold-for-the-logs")
        .json(&json!({"showId": GRAND_HALL, "seatIds": ["F4"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);

    let line = wait_for_line(&server, |line| {
        line["span"]["request_id"] == "hold-for-the-logs"
    });
    assert_eq!(line["span"]["route"], "/api/v1/holds", "{line}");
    assert_eq!(line["span"]["method"], "POST", "{line}");
    assert_eq!(line["span"]["user_id"], "log-reader", "{line}");
    assert_eq!(line["span"]["show_id"], GRAND_HALL, "{line}");
    assert_eq!(line["fields"]["status"], 202, "{line}");
    assert_eq!(line["level"], "DEBUG", "{line}");

    // A path with an id in it is logged as its route, not as the path.
    let resp = c
        .get(server.url("/api/v1/shows/5e0c1a6e-8f1e-4c3a-9b2d-00000000beef/seatmap"))
        .header("x-request-id", "unknown-show")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let line = wait_for_line(&server, |line| line["span"]["request_id"] == "unknown-show");
    assert_eq!(
        line["span"]["route"], "/api/v1/shows/{showId}/seatmap",
        "{line}"
    );

    // Every line the server logged is JSON (the banner lines are not logs: printed, not traced).
    for line in server.output() {
        if line.starts_with('{') {
            serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        }
    }
}

#[test]
fn an_unknown_log_format_is_refused_at_start() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_seatbook"))
        .env("BIND", "127.0.0.1:0")
        .env("DATA_DIR", tempfile::tempdir().unwrap().path())
        .env("LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("LOG_FORMAT") && stderr.contains("json or text"),
        "{stderr}"
    );
}

/// The first JSON log line of the server for which `matches` holds.
fn wait_for_line(server: &Server, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = server
            .output()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|line| matches(line));
        if let Some(line) = found {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no such log line; the server wrote:\n{}",
            server.output().join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
