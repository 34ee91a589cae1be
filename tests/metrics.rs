//! `/metrics` on the real server: what a Prometheus scrape reads after real traffic. Each test
//! starts its own server, so every count starts at zero and can be asserted exactly.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

mod support;

use std::time::{Duration, Instant};
use support::*;

const SHOW: &str = "5e0c1a6e-8f1e-4c3a-9b2d-000000000001";

/// Reads `/metrics` as text, checking it is Prometheus' text format.
async fn scrape(server: &Server) -> String {
    let resp = client()
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    resp.text().await.expect("body")
}

/// The value of the sample `series` (a name and its labels, as rendered), if there is one.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().expect("a number"))
}

/// Scrapes until `series` reads `want` (counters recorded after an answer may lag it a little).
async fn wait_for(server: &Server, series: &str, want: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(server).await;
        if sample(&text, series) == Some(want) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {:?}, not {want}:\n{text}",
            sample(&text, series)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn requests_decisions_and_rate_limit_refusals_are_counted_by_route_status_and_outcome() {
    // A burst of one hold request per user: alice's second is refused.
    let server = Server::start(&[("RATE_LIMIT_HOLDS", "60/min,burst=1")]);
    let c = client();
    let (alice, bob) = (token("alice"), token("bob"));
    let (status, first) = hold(&c, &server, &alice, SHOW, &["C7"]).await;
    assert_eq!(status, 202, "{first}");
    let (status, second) = hold(&c, &server, &bob, SHOW, &["C7"]).await;
    assert_eq!(status, 202, "{second}");
    let (status, refused) = hold(&c, &server, &alice, SHOW, &["D1"]).await;
    assert_eq!(status, 429, "{refused}");
    for (user, accepted) in [(&alice, &first), (&bob, &second)] {
        wait_terminal(&c, &server, user, accepted["requestId"].as_str().unwrap()).await;
    }
    // A path nobody routes, with something in it that must not become a label.
    let (status, _) = get(&c, &server, "/api/v1/holds/x/../../evil", None).await;
    assert_eq!(status, 404);

    let text = wait_for(
        &server,
        r#"seatbook_requests_decided_total{outcome="failed"}"#,
        1.0,
    )
    .await;
    let holds = |status: &str| {
        sample(
            &text,
            &format!(
                r#"seatbook_http_requests_total{{method="POST",route="/api/v1/holds",status="{status}"}}"#
            ),
        )
    };
    assert_eq!(holds("202"), Some(2.0), "{text}");
    assert_eq!(holds("429"), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, r#"seatbook_rate_limited_total{limit="holds"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"seatbook_requests_decided_total{outcome="success"}"#
        ),
        Some(1.0)
    );
    // The poll route is counted by its pattern, never by the id in the path.
    let polled = r#"seatbook_http_requests_total{method="GET",route="/api/v1/booking-requests/{requestId}",status="200"}"#;
    assert!(sample(&text, polled).unwrap_or(0.0) >= 2.0, "{text}");
    assert!(!text.contains("evil"), "a raw path became a label:\n{text}");
    assert!(
        sample(
            &text,
            r#"seatbook_http_requests_total{method="GET",route="unmatched",status="404"}"#
        ) >= Some(1.0),
        "{text}"
    );
    // Two requests decided, in one batch or two; each batch timed.
    assert_eq!(sample(&text, "seatbook_decision_batch_size_sum"), Some(2.0));
    let batches = sample(&text, "seatbook_decision_batch_size_count").expect("batches");
    assert!((1.0..=2.0).contains(&batches), "{text}");
    assert_eq!(
        sample(&text, "seatbook_decision_batch_duration_seconds_count"),
        Some(batches)
    );
    assert!(
        text.contains("# HELP seatbook_requests_decided_total"),
        "{text}"
    );
}

#[tokio::test]
async fn queue_gauges_follow_a_paused_show_and_expiries_and_sockets_are_counted() {
    let server = Server::start(&[("HOLD_TTL_SECONDS", "2"), ("SWEEP_INTERVAL_MS", "100")]);
    let c = client();
    let admin = admin_token("ops");
    let alice = token("alice");
    let waiting = format!(r#"seatbook_queue_waiting{{show_id="{SHOW}"}}"#);
    let oldest = format!(r#"seatbook_queue_oldest_waiting_age_seconds{{show_id="{SHOW}"}}"#);

    // While the show is paused its requests wait, and the gauges say so.
    pause_show(&c, &server, SHOW, &admin).await;
    let (status, accepted) = hold(&c, &server, &alice, SHOW, &["E5"]).await;
    assert_eq!(status, 202, "{accepted}");
    wait_for(&server, &waiting, 1.0).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let text = scrape(&server).await;
    assert!(sample(&text, &oldest) >= Some(1.0), "{text}");

    // Resumed, it is decided; the hold then runs out and the sweep ends it.
    resume_show(&c, &server, SHOW, &admin).await;
    let result = wait_terminal(&c, &server, &alice, accepted["requestId"].as_str().unwrap()).await;
    assert_eq!(result["status"], "SUCCESS", "{result}");
    let text = wait_for(&server, "seatbook_holds_expired_total", 1.0).await;
    assert_eq!(sample(&text, &waiting), Some(0.0), "{text}");
    assert_eq!(sample(&text, &oldest), Some(0.0), "{text}");

    // Open sockets, at the moment of the scrape.
    let socket = WsClient::connect(&server, &alice).await;
    wait_for(&server, "seatbook_websocket_connections", 1.0).await;
    drop(socket);
    wait_for(&server, "seatbook_websocket_connections", 0.0).await;
}
