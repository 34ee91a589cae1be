//! The local HTTP transport over real TCP, around a router whose handler the test holds: past the
//! concurrency bound a request is shed at once with 503, and a client trickling its body does not
//! hold a slot while it does (the body timeout ends it with 408).

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use axum::Router;
use axum::routing::{get, post};
use booking_local::http::{HttpLimits, guarded, serve};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// Serves `router` behind the transport with one slot; returns its address.
async fn start(router: Router) -> String {
    let limits = HttpLimits {
        max_concurrent_requests: 1,
        body_read_timeout: Duration::from_secs(2),
        header_read_timeout: Duration::from_secs(5),
        ..HttpLimits::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let router = guarded(router, &limits);
        serve(listener, router, &limits, std::future::pending()).await;
    });
    addr
}

#[tokio::test]
async fn past_the_bound_a_request_is_shed_at_once() {
    let (entered, gate) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (e, g) = (entered.clone(), gate.clone());
    let router = Router::new()
        .route(
            "/slow",
            get(move || async move {
                e.notify_one();
                g.notified().await;
                "done"
            }),
        )
        .route("/fast", get(|| async { "ok" }));
    let addr = start(router).await;
    let c = reqwest::Client::new();
    let slow = tokio::spawn({
        let (c, url) = (c.clone(), format!("http://{addr}/slow"));
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    });
    entered.notified().await;
    let shed = c.get(format!("http://{addr}/fast")).send().await.unwrap();
    assert_eq!(shed.status(), 503);
    assert_eq!(
        shed.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let body: serde_json::Value = shed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "OVERLOADED");
    gate.notify_one();
    assert_eq!(slow.await.unwrap(), 200);
    let served = c.get(format!("http://{addr}/fast")).send().await.unwrap();
    assert_eq!(served.status(), 200, "the slot is free again");
}

#[tokio::test]
async fn a_trickling_body_holds_no_slot_and_times_out() {
    let router = Router::new()
        .route("/echo", post(|body: String| async move { body }))
        .route("/fast", get(|| async { "ok" }));
    let addr = start(router).await;
    let mut hog = tokio::net::TcpStream::connect(&addr).await.unwrap();
    hog.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = reqwest::Client::new();
    let served = c.get(format!("http://{addr}/fast")).send().await.unwrap();
    assert_eq!(served.status(), 200, "the trickling body holds no slot");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), hog.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}
