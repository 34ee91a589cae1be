//! Test harness for the local server: spawns the real `seatbook` binary on port 0 with a fresh
//! data directory, and talks to it the way clients do (HTTP with reqwest, WebSocket with
//! tokio-tungstenite). Nothing is faked: tests see exactly what a user would.
#![allow(dead_code, unused_imports)]

use booking_app::Authenticator;
use booking_app::auth::DEV_JWT_SECRET;
use booking_testkit::postgres::TestDatabase;
use booking_testkit::redis::PrivateRedis;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

/// Liveness bound for waits on the server (not a performance assertion: generous on purpose).
pub const WAIT: Duration = Duration::from_secs(60);

/// The 500-seat demo show and the smaller ones, by their fixed ids.
pub const GRAND_HALL: &str = "5e0c1a6e-8f1e-4c3a-9b2d-000000000001";
pub const STUDIO: &str = "5e0c1a6e-8f1e-4c3a-9b2d-000000000002";
pub const MATINEE_EARLY: &str = "5e0c1a6e-8f1e-4c3a-9b2d-000000000003";
pub const MATINEE_LATE: &str = "5e0c1a6e-8f1e-4c3a-9b2d-000000000004";
pub const PREMIERE_MOVIE: &str = "6d0c1a6e-8f1e-4c3a-9b2d-000000000001";

/// What a test server runs on: the embedded store, or PostgreSQL (a fresh database per server)
/// and Redis (a private server per test server: the demo show ids are fixed, so servers must not
/// share a Redis). The same choice for the real binary and the in-process app.
pub use booking_testkit::app::{Backend, TestApp, TestAppOptions};

/// Runs each named `async fn(Backend)` test once per backend, as `<name>::embedded` and
/// `<name>::postgres_redis`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn embedded() {
                super::$name($crate::support::Backend::Embedded).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres_redis() {
                super::$name($crate::support::Backend::PostgresRedis).await
            }
        }
    )+};
}

/// Most lines of a server's output a test keeps.
pub const KEPT_LINES: usize = 10_000;

pub struct Server {
    child: Option<Child>,
    pub base: String,
    pub ws_base: String,
    pub data_dir: PathBuf,
    env: Vec<(String, String)>,
    /// The server's standard output so far (its logs), at most [`KEPT_LINES`] lines.
    output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _tmp: Option<tempfile::TempDir>,
    _database: Option<TestDatabase>,
    _redis: Option<PrivateRedis>,
}

impl Server {
    /// Starts a server on `backend`, with fresh state.
    pub async fn start_on(backend: Backend, env: &[(&str, &str)]) -> Server {
        match backend {
            Backend::Embedded => Self::start(env),
            Backend::PostgresRedis => {
                let database = TestDatabase::create().await;
                let redis = PrivateRedis::start();
                let (database_url, redis_url) = (database.url(), redis.url());
                let mut env = env.to_vec();
                env.push(("DATABASE_URL", database_url));
                env.push(("REDIS_URL", &redis_url));
                let mut server = Self::start(&env);
                server._database = Some(database);
                server._redis = Some(redis);
                server
            }
        }
    }

    /// Starts a server on a fresh data directory.
    pub fn start(env: &[(&str, &str)]) -> Server {
        Self::start_in(tempfile::tempdir().expect("tempdir"), env)
    }

    /// Starts a server on the data directory `tmp` (prepared by the test), kept until it ends.
    pub fn start_in(tmp: tempfile::TempDir, env: &[(&str, &str)]) -> Server {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut server = Self::spawn(tmp.path(), env);
        server._tmp = Some(tmp);
        server
    }

    fn spawn(data_dir: &Path, env: Vec<(String, String)>) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_seatbook"));
        cmd.env("BIND", "127.0.0.1:0")
            .env("DATA_DIR", data_dir)
            .env_remove("JWT_SECRET")
            .env("RUST_LOG", "warn")
            // Out of the way of tests about something else (tests/hardening.rs proves it).
            .env("MAX_OPEN_REQUESTS_PER_USER", "100")
            .env("MAX_SOCKETS_PER_USER", "1000")
            .env("RATE_LIMIT_HOLDS", "off")
            .env("RATE_LIMIT_ORDERS", "off")
            .env("RATE_LIMIT_PAYMENTS", "off")
            .env("RATE_LIMIT_PER_IP", "off")
            .env("RATE_LIMIT_JOINS", "off")
            .env("RATE_LIMIT_JOINS_PER_IP", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn seatbook");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = output.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                {
                    let mut kept = kept.lock().unwrap();
                    if kept.len() < KEPT_LINES {
                        kept.push(line.clone());
                    }
                }
                if let Some(rest) = line.strip_prefix("seatbook listening on http://") {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(WAIT)
            .expect("server did not print its address");
        Server {
            child: Some(child),
            base: format!("http://{addr}"),
            ws_base: format!("ws://{addr}"),
            data_dir: data_dir.to_path_buf(),
            env,
            output,
            _tmp: None,
            _database: None,
            _redis: None,
        }
    }

    /// What the server has written to its standard output so far, line by line.
    pub fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// The server's process id (to read its memory from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    /// kill -9: no shutdown hook runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill");
            child.wait().expect("wait");
        }
    }

    /// SIGTERM, as an orchestrator stops a service, then waits (at most `within`) for the
    /// process to exit; returns its exit status.
    pub async fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the server") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the server did not exit within {within:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The server's store, opened directly (once the server has stopped: SQLite allows one
    /// writer), to check what it recorded rather than what the API says.
    pub async fn open_store(&self) -> std::sync::Arc<dyn booking_core::ports::RequestStore> {
        match &self._database {
            Some(database) => std::sync::Arc::new(
                booking_postgres::PgStore::connect(
                    database.url(),
                    booking_postgres::PgOptions::default(),
                )
                .await
                .expect("connect to the server's database"),
            ),
            None => std::sync::Arc::new(
                booking_sqlite::SqliteStore::open(
                    &self.data_dir.join("seatbook.db"),
                    booking_sqlite::SqliteOptions::default(),
                )
                .await
                .expect("open the server's store"),
            ),
        }
    }

    /// The server's private Redis, when it runs on PostgreSQL + Redis.
    pub fn redis(&self) -> Option<&PrivateRedis> {
        self._redis.as_ref()
    }

    /// Kills the process and starts a new one on the same data directory.
    pub fn crash_and_restart(&mut self) {
        self.kill();
        let mut next = Self::spawn(&self.data_dir.clone(), self.env.clone());
        next._tmp = self._tmp.take();
        next._database = self._database.take();
        next._redis = self._redis.take();
        *self = next;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Something the tests talk to as clients do: the real binary ([`Server`]) or the in-process app
/// ([`TestApp`]).
pub trait Target {
    /// `http://host:port`
    fn base(&self) -> &str;
    /// `ws://host:port`
    fn ws_base(&self) -> &str;
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base(), path)
    }
}

impl Target for Server {
    fn base(&self) -> &str {
        &self.base
    }
    fn ws_base(&self) -> &str {
        &self.ws_base
    }
}

impl Target for TestApp {
    fn base(&self) -> &str {
        &self.base
    }
    fn ws_base(&self) -> &str {
        &self.ws_base
    }
}

pub fn token(user: &str) -> String {
    Authenticator::hs256(DEV_JWT_SECRET.as_bytes()).mint(
        &user.parse().unwrap(),
        false,
        chrono::Duration::hours(1),
    )
}

pub fn admin_token(user: &str) -> String {
    Authenticator::hs256(DEV_JWT_SECRET.as_bytes()).mint(
        &user.parse().unwrap(),
        true,
        chrono::Duration::hours(1),
    )
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()
        .expect("client")
}

/// A response as status + JSON (Null when the body is not JSON).
pub async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub async fn get(
    c: &reqwest::Client,
    server: &impl Target,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let mut req = c.get(server.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    json_of(req.send().await.expect("GET")).await
}

pub async fn post(
    c: &reqwest::Client,
    server: &impl Target,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    send_json(c.post(server.url(path)), token, body).await
}

pub async fn put(
    c: &reqwest::Client,
    server: &impl Target,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    send_json(c.put(server.url(path)), token, body).await
}

/// Sends `body` as JSON, with `token` if given; returns (status, body).
async fn send_json(req: reqwest::RequestBuilder, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = req.json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    json_of(req.send().await.expect("send")).await
}

/// One show's entry in the admin queue statistics (`GET /api/v1/admin/queues`).
pub async fn queue_of(c: &reqwest::Client, server: &impl Target, admin: &str, show: &str) -> Value {
    let (status, stats) = get(c, server, "/api/v1/admin/queues", Some(admin)).await;
    assert_eq!(status, 200, "{stats}");
    stats["shows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["showId"] == show)
        .unwrap_or_else(|| panic!("show {show} is listed: {stats}"))
        .clone()
}

/// Stops deciding a show's requests (admin API); they keep queueing.
pub async fn pause_show(c: &reqwest::Client, server: &impl Target, show: &str, admin: &str) {
    let (status, body) = post(
        c,
        server,
        &format!("/api/v1/admin/shows/{show}/pause"),
        Some(admin),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "pause {show}: {body}");
}

/// Resumes deciding a show's requests (admin API).
pub async fn resume_show(c: &reqwest::Client, server: &impl Target, show: &str, admin: &str) {
    let (status, body) = post(
        c,
        server,
        &format!("/api/v1/admin/shows/{show}/resume"),
        Some(admin),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "resume {show}: {body}");
}

/// POST /api/v1/holds; returns (status, body).
pub async fn hold(
    c: &reqwest::Client,
    server: &impl Target,
    token: &str,
    show: &str,
    seats: &[&str],
) -> (u16, Value) {
    post(
        c,
        server,
        "/api/v1/holds",
        Some(token),
        json!({ "showId": show, "seatIds": seats }),
    )
    .await
}

/// Holds `seats` of `show` for `token`'s user and returns the hold id.
pub async fn held(
    c: &reqwest::Client,
    server: &TestApp,
    token: &str,
    show: &str,
    seats: &[&str],
) -> String {
    let (status, accepted) = hold(c, server, token, show, seats).await;
    assert_eq!(status, 202, "{accepted}");
    server.drain().await;
    let result = wait_terminal(c, server, token, accepted["requestId"].as_str().unwrap()).await;
    assert_eq!(result["status"], "SUCCESS", "{result}");
    result["holdId"].as_str().unwrap().to_owned()
}

pub async fn order(c: &reqwest::Client, server: &TestApp, token: &str, hold_id: &str) -> Value {
    let (status, order) = post(
        c,
        server,
        "/api/v1/orders",
        Some(token),
        json!({ "holdId": hold_id }),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    order
}

pub async fn pay(
    c: &reqwest::Client,
    server: &TestApp,
    token: &str,
    order_id: &str,
    card: &str,
) -> (u16, Value) {
    post(
        c,
        server,
        &format!("/api/v1/orders/{order_id}/confirm-payment"),
        Some(token),
        json!({ "paymentToken": card }),
    )
    .await
}

/// Polls a request until it is terminal.
pub async fn wait_terminal(
    c: &reqwest::Client,
    server: &impl Target,
    token: &str,
    request_id: &str,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = get(
            c,
            server,
            &format!("/api/v1/booking-requests/{request_id}"),
            Some(token),
        )
        .await;
        assert_eq!(status, 200, "polling {request_id}: {body}");
        if matches!(
            body["status"].as_str(),
            Some("SUCCESS" | "FAILED" | "EXPIRED")
        ) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "request {request_id} not decided in time: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn seat_status(
    c: &reqwest::Client,
    server: &impl Target,
    show: &str,
) -> std::collections::HashMap<String, String> {
    let (status, map) = get(c, server, &format!("/api/v1/shows/{show}/seatmap"), None).await;
    assert_eq!(status, 200, "{map}");
    map["rows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["seats"].as_array().unwrap().iter())
        .map(|s| {
            (
                s["seatId"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A WebSocket client connected as one user.
pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Connects and completes a ping/pong round trip, so the server has registered the
    /// connection before the test goes on.
    pub async fn connect(server: &impl Target, token: &str) -> WsClient {
        let (stream, _) =
            tokio_tungstenite::connect_async(format!("{}/ws?token={token}", server.ws_base()))
                .await
                .expect("ws connect");
        let mut ws = WsClient { stream };
        ws.send(json!({"action":"ping"})).await;
        let pong = ws.next_json().await;
        assert_eq!(pong, json!({"type":"pong"}));
        ws
    }

    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("ws send");
    }

    /// The next JSON text message.
    pub async fn next_json(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("no WebSocket message in time")
                .expect("WebSocket closed")
                .expect("WebSocket error");
            if let Message::Text(t) = msg {
                return serde_json::from_str(t.as_str()).expect("server sent JSON");
            }
        }
    }

    /// Waits for the first message with `type` == `kind`, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let v = self.next_json().await;
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Messages that arrive within `window` (for asserting that something did NOT arrive).
    pub async fn drain_for(&mut self, window: Duration) -> Vec<Value> {
        let mut out = Vec::new();
        let end = Instant::now() + window;
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(end.into(), self.stream.next()).await
        {
            if let Message::Text(t) = msg {
                out.push(serde_json::from_str(t.as_str()).expect("json"));
            }
        }
        out
    }

    /// Every JSON message until the server closes the connection, and the close frame's code
    /// (`None` if the connection ended without one).
    pub async fn until_closed(&mut self) -> (Vec<Value>, Option<u16>) {
        let mut messages = Vec::new();
        loop {
            let next = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("the server neither sent nor closed in time");
            match next {
                Some(Ok(Message::Text(t))) => {
                    messages.push(serde_json::from_str(t.as_str()).expect("server sent JSON"))
                }
                Some(Ok(Message::Close(frame))) => {
                    return (messages, frame.map(|f| u16::from(f.code)));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return (messages, None),
            }
        }
    }

    pub async fn subscribe(&mut self, show: &str) {
        self.send(json!({"action":"subscribe","showId":show})).await;
        let ack = self.next_of("SUBSCRIBED").await;
        assert_eq!(ack["showId"], show);
    }
}

/// Every seat of the demo shows is as the demo made it: nothing held, nothing sold.
pub async fn assert_no_seat_taken(c: &reqwest::Client, server: &impl Target) {
    for show in [GRAND_HALL, STUDIO] {
        let seats = seat_status(c, server, show).await;
        assert!(
            seats.values().all(|s| s == "AVAILABLE" || s == "BLOCKED"),
            "{show} changed"
        );
    }
}
