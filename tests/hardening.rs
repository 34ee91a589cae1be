//! Hardening of the real binary: it refuses to start with a secret anyone could know or guess
//! (the public development secret on a non-loopback address, a short secret); configured with an
//! issuer and an audience, it accepts the tokens `seatbook token` mints under the same
//! configuration and refuses tokens that lack them, name another issuer or audience, or live too
//! long; the `/@connections` management emulator (push any message to any socket) is not served
//! unless asked for; one user cannot queue more than `MAX_OPEN_REQUESTS_PER_USER` undecided
//! requests for a show; and a user over their rate (holds, orders, payments) or an address over
//! its rate (the catalog) is answered 429 `RATE_LIMITED` with `Retry-After`, on both backends.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

#[macro_use]
mod support;

use booking_app::auth::{Authenticator, TokenRules};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const SECRET: &str = "a-test-secret-of-more-than-thirty-two-bytes";
const ISSUER: &str = "https://id.seatbook.test";
const AUDIENCE: &str = "seatbook-api";

/// Runs `seatbook serve` with `env` and expects it to refuse to start: returns its stderr. A
/// server that starts instead is killed and fails the test.
fn refused_start(env: &[(&str, &str)]) -> String {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seatbook"));
    cmd.env("DATA_DIR", data.path())
        .env_remove("JWT_SECRET")
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn seatbook");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "it must not start: {status}");
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            return stderr;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("seatbook started with {env:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_server_refuses_a_secret_anyone_could_know() {
    let public = refused_start(&[("BIND", "0.0.0.0:0")]);
    assert!(
        public.contains("JWT_SECRET") && public.contains("development secret"),
        "{public}"
    );
    let short = refused_start(&[("BIND", "127.0.0.1:0"), ("JWT_SECRET", "hunter2")]);
    assert!(
        short.contains("JWT_SECRET") && short.contains("32 bytes"),
        "{short}"
    );
    let lifetime = refused_start(&[("BIND", "127.0.0.1:0"), ("JWT_MAX_LIFETIME_SECONDS", "5")]);
    assert!(lifetime.contains("JWT_MAX_LIFETIME_SECONDS"), "{lifetime}");
    let exposed = refused_start(&[
        ("BIND", "0.0.0.0:0"),
        ("JWT_SECRET", SECRET),
        ("LOCAL_MANAGEMENT_API", "true"),
    ]);
    assert!(exposed.contains("LOCAL_MANAGEMENT_API"), "{exposed}");
}

/// `seatbook token` under the server's environment.
fn minted(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seatbook"));
    cmd.arg("token").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run seatbook token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_audience_and_lifetime_are_enforced() {
    let env = [
        ("JWT_SECRET", SECRET),
        ("JWT_ISSUER", ISSUER),
        ("JWT_AUDIENCE", AUDIENCE),
        ("JWT_MAX_LIFETIME_SECONDS", "3600"),
    ];
    let server = Server::start(&env);
    let c = client();
    let status_with = |token: String| {
        let c = c.clone();
        let url = server.url("/api/v1/me/orders");
        async move {
            c.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };

    let out = minted(&env, &["alice"]);
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(
        status_with(token).await,
        200,
        "the server's own tokens pass"
    );
    let too_long = minted(&env, &["alice", "--ttl-seconds", "7200"]);
    assert!(!too_long.status.success());
    assert!(
        String::from_utf8_lossy(&too_long.stderr).contains("JWT_MAX_LIFETIME_SECONDS"),
        "{too_long:?}"
    );

    let alice = "alice".parse().unwrap();
    let bare =
        Authenticator::hs256(SECRET.as_bytes()).mint(&alice, true, chrono::Duration::minutes(5));
    assert_eq!(status_with(bare).await, 401, "no issuer, no audience");
    let rules = |issuer: &str, audience: &str| TokenRules {
        issuer: Some(issuer.to_owned()),
        audience: Some(audience.to_owned()),
        max_lifetime: chrono::Duration::days(30),
        ..TokenRules::default()
    };
    let mint = |rules: TokenRules, ttl: chrono::Duration| {
        Authenticator::hs256_with(SECRET.as_bytes(), rules).mint(&alice, false, ttl)
    };
    assert_eq!(
        status_with(mint(
            rules("https://evil.test", AUDIENCE),
            chrono::Duration::minutes(5)
        ))
        .await,
        401,
        "another issuer"
    );
    assert_eq!(
        status_with(mint(
            rules(ISSUER, "another-api"),
            chrono::Duration::minutes(5)
        ))
        .await,
        401,
        "another audience"
    );
    assert_eq!(
        status_with(mint(rules(ISSUER, AUDIENCE), chrono::Duration::days(10))).await,
        401,
        "longer than the server's hour"
    );
    assert_eq!(
        status_with(mint(rules(ISSUER, AUDIENCE), chrono::Duration::minutes(30))).await,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_management_api_is_served_only_when_asked_for() {
    let c = client();
    let push = |server: &Server| {
        c.post(server.url("/@connections/0123456789abcdef"))
            .body(r#"{"type":"BOOKING_RESULT"}"#)
            .send()
    };
    let default = Server::start(&[]);
    let answer = push(&default).await.unwrap();
    assert_eq!(answer.status(), 404, "not served by default");
    let asked = Server::start(&[("LOCAL_MANAGEMENT_API", "true")]);
    let answer = push(&asked).await.unwrap();
    assert_eq!(
        answer.status(),
        410,
        "served: an unknown connection is gone, as API Gateway says"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_cannot_queue_more_than_a_few_requests_for_a_show() {
    let server = Server::start(&[("MAX_OPEN_REQUESTS_PER_USER", "2")]);
    let c = client();
    let admin = admin_token("operator");
    let (script, fan) = (token("script"), token("fan"));
    pause_show(&c, &server, GRAND_HALL, &admin).await;
    let mut waiting = Vec::new();
    for seat in ["A1", "A2"] {
        let (status, body) = hold(&c, &server, &script, GRAND_HALL, &[seat]).await;
        assert_eq!(status, 202, "{body}");
        waiting.push(body["requestId"].as_str().unwrap().to_owned());
    }
    let refused = c
        .post(server.url("/api/v1/holds"))
        .bearer_auth(&script)
        .json(&serde_json::json!({ "showId": GRAND_HALL, "seatIds": ["A3"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("2")
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TOO_MANY_OPEN_REQUESTS", "{body}");
    assert_eq!(body["error"]["details"]["max"], 2);
    // Per user and show: another show, and another user, are not affected.
    let (status, body) = hold(&c, &server, &script, STUDIO, &["A3"]).await;
    assert!(status == 202, "{status} {body}");
    let (status, body) = hold(&c, &server, &fan, GRAND_HALL, &["A3"]).await;
    assert_eq!(status, 202, "{body}");
    // Once its requests are decided, the user may ask again.
    resume_show(&c, &server, GRAND_HALL, &admin).await;
    for id in &waiting {
        wait_terminal(&c, &server, &script, id).await;
    }
    let (status, body) = hold(&c, &server, &script, GRAND_HALL, &["A4"]).await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_neither_sniffed_nor_cached() {
    let server = Server::start(&[]);
    let c = client();
    for request in [
        c.get(server.url("/api/v1/movies")),
        c.get(server.url("/health")),
        c.get(server.url("/api/v1/no-such-route")),
        c.post(server.url("/api/v1/holds")).body("{}"),
    ] {
        let answer = request.send().await.unwrap();
        let header = |name: &str| {
            answer
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(
            (header("x-content-type-options"), header("cache-control")),
            (Some("nosniff".to_owned()), Some("no-store".to_owned())),
            "{} {}",
            answer.status(),
            answer.url()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_is_closed_when_its_token_expires() {
    let server = Server::start(&[]);
    let short = Authenticator::hs256(booking_app::auth::DEV_JWT_SECRET.as_bytes()).mint(
        &"brief".parse().unwrap(),
        false,
        chrono::Duration::seconds(2),
    );
    let opened = Instant::now();
    let mut ws = WsClient::connect(&server, &short).await;
    ws.subscribe(GRAND_HALL).await;
    let (_, code) = ws.until_closed().await;
    assert_eq!(
        code,
        Some(booking_local::websocket::TOKEN_EXPIRED_CLOSE_CODE),
        "closed as expired"
    );
    assert!(
        opened.elapsed() < Duration::from_secs(10),
        "{:?}",
        opened.elapsed()
    );
    // A socket with a longer-lived token stays open meanwhile.
    let mut lasting = WsClient::connect(&server, &token("lasting")).await;
    lasting.subscribe(GRAND_HALL).await;
    lasting.send(serde_json::json!({ "action": "ping" })).await;
    assert_eq!(lasting.next_of("pong").await["type"], "pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_capped_per_user_and_in_all() {
    let server = Server::start(&[("MAX_SOCKETS_PER_USER", "2"), ("MAX_SOCKETS", "3")]);
    let c = client();
    let upgrade = |who: &str| {
        // A real handshake's headers, so that only the caps can refuse it.
        c.get(server.url(&format!("/ws?token={}", token(who))))
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
    };
    let first = WsClient::connect(&server, &token("greedy")).await;
    let _second = WsClient::connect(&server, &token("greedy")).await;
    let refused = upgrade("greedy").await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TOO_MANY_CONNECTIONS", "{body}");
    assert_eq!(body["error"]["details"]["max"], 2);
    let _other = WsClient::connect(&server, &token("other")).await;
    let full = upgrade("newcomer").await.unwrap();
    assert_eq!(full.status(), 503);
    assert_eq!(
        full.headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("5")
    );
    let body: serde_json::Value = full.json().await.unwrap();
    assert_eq!(body["error"]["code"], "CONNECTIONS_FULL", "{body}");
    // A socket that closes frees its slot.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = upgrade("greedy").await.unwrap();
        if answer.status() == 101 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot was not freed: {}",
            answer.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A retry of a request already made (the same key: its first answer was lost, or its enqueue
/// failed) is not a new request: the cap lets it through to find the earlier one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_not_counted_against_the_open_request_cap() {
    let mut options = TestAppOptions::on(Backend::Embedded);
    options.config.max_open_requests_per_user = 1;
    let server = TestApp::start_with(options).await;
    let c = client();
    pause_show(&c, &server, GRAND_HALL, &admin_token("operator")).await;
    let service = server.app.service();
    let user: booking_core::UserId = "retrier".parse().unwrap();
    let input = |key: &str, seat: &str| booking_app::service::HoldRequestInput {
        show_id: GRAND_HALL.to_owned(),
        seat_ids: vec![seat.to_owned()],
        idempotency_key: Some(key.to_owned()),
    };
    let first = service
        .submit_hold(&user, input("k-1", "A1"))
        .await
        .unwrap();
    assert!(first.created);
    let again = service
        .submit_hold(&user, input("k-1", "A1"))
        .await
        .unwrap();
    assert!(!again.created, "the earlier request, found again");
    assert_eq!(again.request.request_id, first.request.request_id);
    let refused = service.submit_hold(&user, input("k-2", "A2")).await;
    assert!(
        matches!(
            refused,
            Err(booking_app::error::BookingError::TooManyOpenRequests { max: 1 })
        ),
        "{refused:?}"
    );
}

fn retry_after(answer: &reqwest::Response) -> Option<u64> {
    answer
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// A script firing holds is stopped after its burst; a fan beside it is not; a refused request
/// left no trace, so its `Idempotency-Key` works once the bucket has a token again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_firing_holds_is_rate_limited_and_others_are_not() {
    let server = Server::start(&[("RATE_LIMIT_HOLDS", "60/min,burst=3")]);
    let c = client();
    let (script, fan) = (token("script"), token("fan"));
    let send = |who: &str, seat: &str, key: &str| {
        c.post(server.url("/api/v1/holds"))
            .bearer_auth(who)
            .header("idempotency-key", key)
            .json(&serde_json::json!({ "showId": GRAND_HALL, "seatIds": [seat] }))
            .send()
    };
    // A token a second comes back, so on a slow machine a fourth or fifth may pass; the script
    // is refused within a few more.
    // The script's next request after `n` accepted ones: its own seat and key.
    let script_next = |n: usize| send(&script, &format!("A{}", n + 1), &format!("k{n}"));
    let mut accepted = 0;
    let refused = loop {
        let answer = script_next(accepted).await.unwrap();
        if answer.status() == 429 {
            break answer;
        }
        assert_eq!(answer.status(), 202);
        accepted += 1;
        assert!(accepted <= 8, "never limited");
    };
    assert!(accepted >= 3, "the burst of 3 is served first: {accepted}");
    let wait = retry_after(&refused).expect("Retry-After");
    assert!((1..=1).contains(&wait), "one token a second: {wait}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");
    let answer = send(&fan, "B1", "fan-1").await.unwrap();
    assert_eq!(answer.status(), 202, "another user has their own bucket");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let answer = script_next(accepted).await.unwrap();
    assert_eq!(
        answer.status(),
        202,
        "the refusal was not kept as the key's answer"
    );
}

/// Reads anyone may make are limited per address; `/health` (the load balancer's) is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_reading_too_fast_is_rate_limited() {
    // One token an hour: however slowly the requests run, exactly the burst is served.
    let server = Server::start(&[("RATE_LIMIT_PER_IP", "1/h,burst=5")]);
    let c = client();
    for _ in 0..5 {
        let answer = c.get(server.url("/api/v1/movies")).send().await.unwrap();
        assert_eq!(answer.status(), 200);
    }
    let refused = c
        .get(server.url(&format!("/api/v1/shows/{GRAND_HALL}/seatmap")))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429, "one bucket for every catalog read");
    assert!(retry_after(&refused).is_some());
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
    for _ in 0..20 {
        let answer = c.get(server.url("/health")).send().await.unwrap();
        assert_eq!(answer.status(), 200, "health checks are not limited");
    }
}

/// Orders and payments have their own buckets, enforced alike on the embedded store (process
/// memory) and on PostgreSQL + Redis (buckets in Redis).
async fn orders_and_payments_are_rate_limited_on(backend: Backend) {
    let mut options = TestAppOptions::on(backend);
    options.config.rate_limits.orders = Some("1/h,burst=2".parse().unwrap());
    options.config.rate_limits.payments = Some("1/h,burst=1".parse().unwrap());
    let server = TestApp::start_with(options).await;
    let c = client();
    let buyer = token("buyer");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (status, body) = post(
            &c,
            &server,
            "/api/v1/orders",
            Some(&buyer),
            serde_json::json!({ "holdId": booking_core::HoldId::new_random() }),
        )
        .await;
        statuses.push((status, body["error"]["code"].as_str().unwrap().to_owned()));
    }
    assert_eq!(
        statuses,
        [
            (404, "HOLD_NOT_FOUND".to_owned()),
            (404, "HOLD_NOT_FOUND".to_owned()),
            (429, "RATE_LIMITED".to_owned())
        ]
    );
    let cancel = format!(
        "/api/v1/orders/{}/cancel",
        booking_core::OrderId::new_random()
    );
    let (first, _) = post(&c, &server, &cancel, Some(&buyer), serde_json::json!({})).await;
    let (second, body) = post(&c, &server, &cancel, Some(&buyer), serde_json::json!({})).await;
    assert_eq!((first, second), (404, 429), "{body}");
}

on_every_backend!(orders_and_payments_are_rate_limited_on);

/// A user cannot keep seats forever by asking for them again before their hold ends, nor by
/// swapping to another seat and back: the new hold keeps the old one's end, so once it passes,
/// the seat is anyone's.
async fn re_asking_for_held_seats_never_extends_them_on(backend: Backend) {
    let server = TestApp::start(backend).await;
    let c = client();
    let (hoarder, fan) = (token("hoarder"), token("fan"));
    let first = held(&c, &server, &hoarder, GRAND_HALL, &["C1"]).await;
    let (_, first) = get(
        &c,
        &server,
        &format!("/api/v1/holds/{first}"),
        Some(&hoarder),
    )
    .await;
    let mut latest = String::new();
    for _ in 0..3 {
        server.advance(chrono::Duration::seconds(90));
        latest = held(&c, &server, &hoarder, GRAND_HALL, &["C1", "C2"]).await;
        let (_, renewed) = get(
            &c,
            &server,
            &format!("/api/v1/holds/{latest}"),
            Some(&hoarder),
        )
        .await;
        assert_eq!(renewed["expiresAt"], first["expiresAt"], "{renewed}");
    }
    for seats in [["D9"], ["C1"]] {
        latest = held(&c, &server, &hoarder, GRAND_HALL, &seats).await;
        let (_, swapped) = get(
            &c,
            &server,
            &format!("/api/v1/holds/{latest}"),
            Some(&hoarder),
        )
        .await;
        assert_eq!(
            swapped["expiresAt"], first["expiresAt"],
            "{seats:?}: {swapped}"
        );
    }
    // 4.5 minutes in: the basket's end (5 minutes after the first hold) comes, and the seat is
    // free for the next one to ask.
    server.advance(chrono::Duration::seconds(31));
    let (_, ended) = get(
        &c,
        &server,
        &format!("/api/v1/holds/{latest}"),
        Some(&hoarder),
    )
    .await;
    assert_eq!(ended["status"], "EXPIRED", "{ended}");
    held(&c, &server, &fan, GRAND_HALL, &["C1"]).await;
}

on_every_backend!(re_asking_for_held_seats_never_extends_them_on);

/// The server pings every socket; one whose peer stopped answering (a phone that lost its
/// network) is dropped after two silent intervals and its slot freed, while a peer that answers
/// stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_dropped_and_an_answering_one_is_not() {
    let server = Server::start(&[
        ("WS_PING_INTERVAL_SECONDS", "1"),
        ("MAX_SOCKETS_PER_USER", "1"),
    ]);
    let url = |user: &str| format!("{}/ws?token={}", server.ws_base, token(user));
    // Connected, then never read again: pings go unanswered.
    let (_ghost, _) = tokio_tungstenite::connect_async(url("ghost"))
        .await
        .unwrap();
    let mut alive = WsClient::connect(&server, &token("alive")).await;
    let started = Instant::now();
    loop {
        match tokio_tungstenite::connect_async(url("ghost")).await {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(15),
                    "the silent socket still holds its slot: {e}"
                );
                // Reading answers the server's pings.
                let quiet = alive.drain_for(Duration::from_millis(200)).await;
                assert!(quiet.is_empty(), "{quiet:?}");
            }
        }
    }
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "dropped before two pings went unanswered: {:?}",
        started.elapsed()
    );
    let _ = alive.drain_for(Duration::from_millis(2500)).await;
    alive.send(serde_json::json!({ "action": "ping" })).await;
    assert_eq!(
        alive.next_of("pong").await["type"],
        "pong",
        "the answering socket stayed"
    );
}

/// A client message over the small limit closes the socket with 1009 (message too big).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_closes_the_socket_with_1009() {
    let server = Server::start(&[]);
    let mut ws = WsClient::connect(&server, &token("big-talker")).await;
    ws.send(serde_json::json!(
        "x".repeat(booking_local::websocket::MAX_CLIENT_MESSAGE + 1)
    ))
    .await;
    let (_, code) = ws.until_closed().await;
    assert_eq!(code, Some(1009));
}

/// Server memory, from `/proc`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// An idle socket costs the server at most 20 KB (docs/PERFORMANCE.md has the 10,000-socket
/// figure): small read and write buffers, two small tasks. Measured over 2,000 sockets after
/// 200 that warm the allocator up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_socket_costs_the_server_little_memory() {
    const SOCKETS: usize = 2_000;
    let server = Server::start(&[("MAX_SOCKETS_PER_USER", "100000"), ("MAX_SOCKETS", "20000")]);
    let t = token("crowd");
    let url = format!("{}/ws?token={t}", server.ws_base);
    let mut open = Vec::new();
    for _ in 0..200 {
        open.push(tokio_tungstenite::connect_async(&url).await.unwrap().0);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(server.pid());
    for _ in 0..SOCKETS {
        open.push(tokio_tungstenite::connect_async(&url).await.unwrap().0);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(server.pid());
    let per_socket = (after.saturating_sub(before) * 1024) / SOCKETS as u64;
    eprintln!(
        "[measure] {per_socket} bytes of server RSS per idle socket ({before} → {after} KiB)"
    );
    assert!(
        per_socket <= 20 * 1024,
        "{per_socket} bytes per idle socket"
    );
}

/// Reads what the server sends on `stream` until it closes (or `within` passes): the bytes, and
/// whether it closed in time.
async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    within: Duration,
) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

fn addr(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// A client that sends its request head slowly, opens a connection and sends nothing, or keeps a
/// connection open after its answer without asking again, is cut off after the header timeout;
/// one that sends its body slowly gets 408. (Shedding past the concurrency bound is proven on the
/// transport itself, `crates/local/tests/http_transport.rs`, with a handler the test holds.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start(&[
        ("HTTP_HEADER_TIMEOUT_SECONDS", "1"),
        ("HTTP_BODY_TIMEOUT_SECONDS", "1"),
    ]);
    // Silent from the start.
    let mut idle = tokio::net::TcpStream::connect(addr(&server)).await.unwrap();
    // A head that never ends.
    let mut slow_head = tokio::net::TcpStream::connect(addr(&server)).await.unwrap();
    slow_head
        .write_all(b"GET /api/v1/movies HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Kept alive after one request, then silent.
    let mut kept = tokio::net::TcpStream::connect(addr(&server)).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    for (name, stream) in [
        ("idle", &mut idle),
        ("slow head", &mut slow_head),
        ("kept alive", &mut kept),
    ] {
        let (_, closed) = read_until_closed(stream, Duration::from_secs(10)).await;
        assert!(closed, "{name}: still open after 10 s");
    }
    // A body that never ends.
    let mut slow_body = tokio::net::TcpStream::connect(addr(&server)).await.unwrap();
    slow_body
        .write_all(
            format!(
                "POST /api/v1/holds HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"showId\"",
                token("slow")
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut slow_body, Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(closed, "slow body: still open after 10 s");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}");
}

/// A body over the limit gets a 413 the client can read, every time, even when the client sends
/// all of it before reading (the reset a plain close causes is what this guards against).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_gets_a_readable_413() {
    let server = Server::start(&[]);
    let c = client();
    let body = vec![b' '; 3 * 1024 * 1024];
    for _ in 0..10 {
        let answer = c
            .post(server.url("/api/v1/holds"))
            .bearer_auth(token("uploader"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("the 413 arrives, not a reset");
        assert_eq!(answer.status(), 413);
        let error: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(error["error"]["code"], "PAYLOAD_TOO_LARGE");
    }
    // Chunked (no Content-Length): the same.
    use tokio::io::AsyncWriteExt;
    let mut raw = tokio::net::TcpStream::connect(addr(&server)).await.unwrap();
    raw.write_all(
        format!(
            "POST /api/v1/holds HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            token("uploader")
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let chunk = vec![b' '; 32 * 1024];
    for _ in 0..64 {
        raw.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        raw.write_all(&chunk).await.unwrap();
        raw.write_all(b"\r\n").await.unwrap();
    }
    raw.write_all(b"0\r\n\r\n").await.unwrap();
    let (answer, _) = read_until_closed(&mut raw, Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

/// Browsers may call the API from the listed origins only: a preflight from one is answered
/// with what it may send, a response to one names it, and any other origin gets no CORS grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_grants_only_the_listed_origins() {
    let listed = "https://tickets.example.com";
    let server = Server::start(&[(
        "CORS_ALLOWED_ORIGINS",
        &format!("{listed}, https://box.example.com"),
    )]);
    let c = client();
    let preflight = |origin: &str| {
        c.request(reqwest::Method::OPTIONS, server.url("/api/v1/holds"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, idempotency-key",
            )
            .send()
    };
    let granted = preflight(listed).await.unwrap();
    assert!(granted.status().is_success(), "{}", granted.status());
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_lowercase())
    };
    assert_eq!(
        header(&granted, "access-control-allow-origin").as_deref(),
        Some(listed)
    );
    let allowed_headers = header(&granted, "access-control-allow-headers").unwrap();
    assert!(
        allowed_headers.contains("idempotency-key"),
        "{allowed_headers}"
    );
    let refused = preflight("https://evil.example.net").await.unwrap();
    assert_eq!(header(&refused, "access-control-allow-origin"), None);
    let read = c
        .get(server.url("/api/v1/movies"))
        .header("origin", listed)
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&read, "access-control-allow-origin").as_deref(),
        Some(listed)
    );
    assert!(
        header(&read, "access-control-expose-headers").is_some_and(|h| h.contains("retry-after"))
    );
    // `*` is not an allow-list.
    let stderr = refused_start(&[("CORS_ALLOWED_ORIGINS", "*")]);
    assert!(stderr.contains("CORS_ALLOWED_ORIGINS"), "{stderr}");
}

/// The server on PostgreSQL and a TLS-only Redis (`rediss://`, its certificate signed by a CA
/// named in `REDIS_CA_FILE`) holds seats end to end, the seat map read through the mirror; not
/// trusting that CA, it refuses to start rather than run without its mirror.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_speaks_tls_to_redis_and_verifies_it() {
    let ca = booking_testkit::tls::TestCa::new();
    let redis = booking_testkit::redis::PrivateRedis::start_tls(&ca);
    let database = booking_testkit::postgres::TestDatabase::create().await;
    let ca_file = ca.ca_pem().display().to_string();
    let redis_url = redis.url();
    let server = Server::start(&[
        ("DATABASE_URL", database.url()),
        ("REDIS_URL", &redis_url),
        ("REDIS_CA_FILE", &ca_file),
    ]);
    let c = client();
    let alice = token("alice");
    let (status, accepted) = hold(&c, &server, &alice, GRAND_HALL, &["D4"]).await;
    assert_eq!(status, 202, "{accepted}");
    let result = wait_terminal(&c, &server, &alice, accepted["requestId"].as_str().unwrap()).await;
    assert_eq!(result["status"], "SUCCESS", "{result}");
    let seats = seat_status(&c, &server, GRAND_HALL).await;
    assert_eq!(seats["D4"], "HELD");
    drop(server);
    let stderr = refused_start(&[("DATABASE_URL", database.url()), ("REDIS_URL", &redis_url)]);
    assert!(stderr.contains("Redis"), "{stderr}");
}
