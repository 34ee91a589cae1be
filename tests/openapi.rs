//! The OpenAPI document against the running server: served at `/api/v1/openapi.json`, and
//! fuzzed with schemathesis (from PyPI, `scripts/api-fuzz-tools.sh`) over every operation it
//! describes: generated valid and invalid requests, boundary values, unknown methods, requests
//! without or with broken credentials, and chains of calls. The run must find no server error and
//! no answer the document does not allow (status, content type, headers, body schema).
//!
//! Known ids (a show, a hold, an order, a request, a movie) are handed to the fuzzer for most of
//! its draws, so that its requests reach the handlers' logic instead of stopping at 404.
//! `positive_data_acceptance` is the one check left out: the API refuses some schema-valid
//! requests on purpose (a layout without rows, a title that is empty, an `Idempotency-Key` used
//! for another request, `1139.0` where JSON Schema's "integer" allows it but an integer is
//! wanted), with a 4xx and its code, which that check counts as a failure.

#![allow(unused_crate_dependencies)]

mod support;

use serde_json::{Value, json};
use std::process::Command;
use support::*;

#[tokio::test]
async fn the_document_is_served_and_names_every_operation_once() {
    let server = Server::start(&[]);
    let c = client();
    let resp = c
        .get(format!("{}/api/v1/openapi.json", server.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let doc: Value = resp.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    let mut ids = Vec::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            ids.push(operation["operationId"].as_str().unwrap().to_owned());
        }
    }
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "operation ids repeat");
    // The page's and the WebSocket's routes are the local server's own, not the API's.
    assert!(doc["paths"].get("/ws").is_none());
    assert!(doc["paths"]["/api/v1/holds"]["post"]["security"].is_array());
}

/// The router is built from the routes' paths and methods alone, the document from their full
/// descriptions (crates/app/src/http/mod.rs, `route!`): every operation the served document
/// names must reach a handler, not the router's fallbacks ("No such endpoint", 405). An admin
/// token with ids that exist nowhere: each handler answers its own error (a 404 of its
/// resource, 400 for the body), never the fallback's.
#[tokio::test]
async fn every_operation_the_document_names_is_routed() {
    let server = Server::start(&[]);
    let c = client();
    let doc: Value = c
        .get(format!("{}/api/v1/openapi.json", server.base()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = admin_token("router-check");
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        // Any id: a well-formed UUID that names nothing.
        let concrete: String = path
            .split('/')
            .map(|part| {
                if part.starts_with('{') {
                    "00000000-0000-4000-8000-000000000000"
                } else {
                    part
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in item.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = c
                .request(method.clone(), format!("{}{concrete}", server.base()))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            assert_ne!(status, 405, "{method} {path} is not routed: {body}");
            assert_ne!(
                body["error"]["message"], "No such endpoint",
                "{method} {path} is not routed: {status} {body}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 28, "only {checked} operations in the document");
}

/// Makes the records the fuzzer is pointed at: a decided request and its hold, and an order of
/// another hold. Returns (request id, hold id, order id).
async fn fixtures(server: &Server, token: &str) -> (String, String, String) {
    let c = client();
    let mut holds = Vec::new();
    for seat in ["J1", "J2"] {
        let (status, accepted) = hold(&c, server, token, GRAND_HALL, &[seat]).await;
        assert_eq!(status, 202, "{accepted}");
        let request_id = accepted["requestId"].as_str().unwrap().to_owned();
        let result = wait_terminal(&c, server, token, &request_id).await;
        assert_eq!(result["status"], "SUCCESS", "{result}");
        holds.push((request_id, result["holdId"].as_str().unwrap().to_owned()));
    }
    let (status, order) = post(
        &c,
        server,
        "/api/v1/orders",
        Some(token),
        json!({ "holdId": holds[1].1 }),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    let order_id = order["orderId"].as_str().unwrap().to_owned();
    let (request_id, hold_id) = holds.swap_remove(0);
    (request_id, hold_id, order_id)
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let bin = booking_testkit::tools::bin_dir_of("api-fuzz-tools.sh", "schemathesis");
    let server = Server::start(&[]);
    // An admin, so that the operators' routes are fuzzed beyond their 403 too (the fuzzer's
    // `ignored_auth` check sends every secured request without and with broken credentials).
    let token = admin_token("fuzzer");
    let (request_id, hold_id, order_id) = fixtures(&server, &token).await;

    let work = tempfile::tempdir().unwrap();
    let report = work.path().join("report.json");
    // Each known id for 90% of the draws of its parameter; the rest are generated.
    let config = format!(
        r#"
[cache]
enabled = false

[dictionaries]
shows = {{ values = ["{GRAND_HALL}", "{STUDIO}"] }}
movies = {{ values = ["{PREMIERE_MOVIE}"] }}
holds = {{ values = ["{hold_id}"] }}
orders = {{ values = ["{order_id}"] }}
requests = {{ values = ["{request_id}"] }}

[parameters]
"path.showId" = {{ dictionary = "shows", probability = 0.9 }}
"path.movieId" = {{ dictionary = "movies", probability = 0.9 }}
"path.holdId" = {{ dictionary = "holds", probability = 0.9 }}
"path.orderId" = {{ dictionary = "orders", probability = 0.9 }}
"path.requestId" = {{ dictionary = "requests", probability = 0.9 }}
"body.showId" = {{ dictionary = "shows", probability = 0.9 }}
"body.movieId" = {{ dictionary = "movies", probability = 0.9 }}
"body.holdId" = {{ dictionary = "holds", probability = 0.9 }}
"query.showId" = {{ dictionary = "shows", probability = 0.9 }}
"#
    );
    let config_file = work.path().join("schemathesis.toml");
    std::fs::write(&config_file, config).unwrap();

    let base = server.base().to_owned();
    let out = tokio::task::spawn_blocking({
        let report = report.clone();
        let work = work.path().to_owned();
        move || {
            Command::new(bin.join("st"))
                .current_dir(&work)
                .arg("--config-file")
                .arg(&config_file)
                .args(["--no-color", "run"])
                .arg(format!("{base}/api/v1/openapi.json"))
                .args(["--url", &base])
                .args(["--header", &format!("Authorization: Bearer {token}")])
                .args(["--exclude-checks", "positive_data_acceptance"])
                .args(["--max-examples", "60", "--seed", "7"])
                .args(["--generation-database", "none"])
                .args(["--request-timeout", "20"])
                .args(["--report", "json", "--report-json-path"])
                .arg(&report)
                .output()
                .expect("run st")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = &stdout[stdout.find("SUMMARY").map_or(0, |at| at.saturating_sub(40))..];
    println!("{summary}");
    assert!(
        out.status.success(),
        "schemathesis found failures (exit {:?}):\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let cases = &report["test_cases"];
    println!("cases: {cases}");
    assert_eq!(
        report["operations"]["tested"], report["operations"]["total"],
        "{report}"
    );
    assert!(
        report["operations"]["total"].as_u64().unwrap() >= 28,
        "{report}"
    );
    assert!(cases["generated"].as_u64().unwrap() >= 2_000, "{cases}");
    assert_eq!(cases["with_failures"], 0, "{report}");
    assert_eq!(cases["errored"], 0, "{report}");

    // And the server is still whole: healthy, nothing held twice.
    let (status, health) = get(&client(), &server, "/health", None).await;
    assert_eq!(status, 200, "{health}");
}
