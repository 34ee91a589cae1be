//! A local stand-in for the deployed stack: the function binaries served by cargo-lambda's
//! Lambda runtime emulator (`cargo lambda watch --only-lambda-apis`), moto for SQS and DynamoDB,
//! a fresh PostgreSQL database, the machine's Redis, and an in-process "gateway" (the local
//! server's router with its WebSocket hub) that answers the management API's
//! `POST /@connections/{id}` for real WebSocket clients.
//!
//! Each function is its real binary, started with the environment Lambda would give it
//! (`AWS_LAMBDA_RUNTIME_API` pointing at the emulator); invocations go through the emulator's
//! Lambda Invoke API and function URLs, as `cargo lambda invoke` sends them.

#![allow(dead_code)]

use booking_app::auth::{Authenticator, DEV_JWT_SECRET};
use booking_app::config::BookingConfig;
use booking_app::{App, Stores};
use booking_core::UserId;
use booking_local::{MemoryMirror, WsHub};
use booking_postgres::PgStore;
use booking_testkit::aws::{Moto, Process, free_port, tools_bin, wait_for_port};
use booking_testkit::idp::TestIdentityProvider;
use booking_testkit::postgres::TestDatabase;
use booking_testkit::redis::PrivateRedis;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const FUNCTIONS: [&str; 4] = ["api", "worker", "websocket", "expirer"];

/// The admission key every function instance is given (as `AdmissionSecretArn` gives them).
pub const ADMISSION_SECRET: &str = "an admission key for the lambda tests, 32+ bytes";

/// A function binary: the ones cargo built for these tests, or those in `LAMBDA_BIN_DIR` (to
/// measure release builds: `LAMBDA_BIN_DIR=target/release`).
pub fn binary(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("LAMBDA_BIN_DIR") {
        return booking_testkit::aws::workspace_root().join(dir).join(name);
    }
    let path = match name {
        "api" => env!("CARGO_BIN_EXE_api"),
        "worker" => env!("CARGO_BIN_EXE_worker"),
        "websocket" => env!("CARGO_BIN_EXE_websocket"),
        "expirer" => env!("CARGO_BIN_EXE_expirer"),
        "authorizer" => env!("CARGO_BIN_EXE_authorizer"),
        other => panic!("no function {other}"),
    };
    PathBuf::from(path)
}

pub async fn sdk(moto: &Moto) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto.url())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

/// The AWS resources the template declares, created in moto.
pub struct Resources {
    pub queue_url: String,
    pub dead_letter_queue_url: String,
    pub table: String,
}

impl Resources {
    pub async fn create(sdk: &aws_config::SdkConfig) -> Self {
        use aws_sdk_sqs::types::QueueAttributeName;
        let sqs = aws_sdk_sqs::Client::new(sdk);
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let create = |name: String| {
            let sqs = sqs.clone();
            async move {
                sqs.create_queue()
                    .queue_name(name)
                    .attributes(QueueAttributeName::FifoQueue, "true")
                    .attributes(QueueAttributeName::VisibilityTimeout, "180")
                    .send()
                    .await
                    .expect("create a queue")
                    .queue_url
                    .expect("queue url")
            }
        };
        let dead_letter_queue_url = create(format!("dlq-{suffix}.fifo")).await;
        let queue_url = create(format!("booking-{suffix}.fifo")).await;
        let table = format!("connections-{suffix}");
        booking_aws::create_connections_table(&aws_sdk_dynamodb::Client::new(sdk), &table)
            .await
            .expect("create the connections table");
        Self {
            queue_url,
            dead_letter_queue_url,
            table,
        }
    }
}

/// The local server's router with its WebSocket hub, serving `/ws` and `/@connections/{id}`.
pub struct Gateway {
    pub url: String,
    pub hub: Arc<WsHub>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Gateway {
    pub async fn start(store: Arc<PgStore>) -> Self {
        let hub = Arc::new(WsHub::new());
        // The gateway only holds sockets: nothing is enqueued here (the api function enqueues
        // on SQS), so its app needs no queue.
        let app = App::builder(Stores::of(store), BookingConfig::default())
            .notifier(hub.clone())
            .mirror(Arc::new(MemoryMirror::new()))
            .authenticator(Authenticator::hs256(DEV_JWT_SECRET.as_bytes()))
            .build();
        let app = booking_local::websocket::routes(
            hub.clone(),
            app.service().clone(),
            app.authenticator().clone(),
        )
        .merge(booking_local::websocket::management_routes(
            hub.clone(),
            app.service().config().max_body_bytes,
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Self { url, hub, task }
    }
}

/// The whole local stack.
pub struct Stack {
    pub moto: Moto,
    pub db: TestDatabase,
    /// The stack's own Redis: the demo show ids are fixed, so stacks (and other suites) must not
    /// share one.
    pub redis: PrivateRedis,
    pub store: Arc<PgStore>,
    pub sdk: aws_config::SdkConfig,
    pub resources: Resources,
    pub gateway: Gateway,
    pub runtime_port: u16,
    /// The emulator of the api function in direct mode.
    pub direct_api_port: u16,
    /// The emulator of an api function whose orders wait 1 s for payment
    /// (`ORDER_PAYMENT_TTL_SECONDS=1`) and a worker whose holds last 1 s (`HOLD_TTL_SECONDS=1`),
    /// for what happens at those deadlines.
    pub short_port: u16,
    /// The identity provider of `AUTH_MODE=authorizer`.
    pub idp: TestIdentityProvider,
    /// The emulator of the authorizer function and of a websocket function in
    /// `AUTH_MODE=authorizer`, both trusting [`Stack::idp`].
    pub authorized_port: u16,
    pub http: reqwest::Client,
    /// Milliseconds from each function's process start to its first handled invocation.
    pub startup_ms: HashMap<&'static str, f64>,
    /// What each of [`FUNCTIONS`] printed on stdout.
    pub outputs: HashMap<&'static str, Output>,
    _runtime: Process,
    _functions: Vec<Process>,
}

pub fn token(user: &str, admin: bool) -> String {
    let user: UserId = user.parse().expect("valid user id");
    Authenticator::hs256(DEV_JWT_SECRET.as_bytes()).mint(&user, admin, chrono::Duration::hours(1))
}

/// What a function printed on stdout (its logs and its embedded-metric documents), line by line.
pub type Output = Arc<std::sync::Mutex<Vec<String>>>;

/// Starts a function's binary with exactly `env` (and `PATH`), as Lambda would; later entries
/// of `env` win over earlier ones. Its stdout is kept, as CloudWatch keeps it; `LAMBDA_LOG`
/// shows it too.
fn spawn_function(name: &str, env: Vec<(String, String)>) -> (Process, Output) {
    let mut child = Command::new(binary(name))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let output = Output::default();
    let stdout = child.stdout.take().expect("piped stdout");
    let kept = output.clone();
    let show = std::env::var_os("LAMBDA_LOG").is_some();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if show {
                println!("{line}");
            }
            kept.lock().unwrap().push(line);
        }
    });
    (Process(child), output)
}

/// Starts cargo-lambda's emulator of the Lambda APIs on a free port, once it listens.
fn start_emulator() -> (u16, Process) {
    let port = free_port();
    let emulator = Command::new(tools_bin().join("cargo-lambda"))
        .args([
            "lambda",
            "watch",
            "--only-lambda-apis",
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
        ])
        .current_dir(booking_testkit::aws::workspace_root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cargo lambda watch");
    let emulator = Process(emulator);
    wait_for_port(port, "cargo lambda watch", Duration::from_secs(60));
    (port, emulator)
}

impl Stack {
    pub async fn start() -> Self {
        let moto = Moto::start();
        let db = TestDatabase::create().await;
        let redis = PrivateRedis::start();
        let store = Arc::new(db.store().clone());
        booking_app::demo::seed_if_empty(store.as_ref(), chrono::Utc::now())
            .await
            .expect("seed the demo catalog");
        let sdk = sdk(&moto).await;
        let resources = Resources::create(&sdk).await;
        let gateway = Gateway::start(store.clone()).await;

        let (runtime_port, runtime) = start_emulator();

        let mut stack = Self {
            moto,
            db,
            redis,
            store,
            sdk,
            resources,
            gateway,
            runtime_port,
            direct_api_port: 0,
            short_port: 0,
            idp: TestIdentityProvider::start().await,
            authorized_port: 0,
            // Every call through the emulator ends: once, a function-URL request was never
            // answered (every function idle, waiting for its next invocation) and the suite hung
            // until CI's limit. A stuck call now fails within a minute, naming its URL.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("HTTP client"),
            startup_ms: HashMap::new(),
            outputs: HashMap::new(),
            _runtime: runtime,
            _functions: Vec::new(),
        };
        for name in FUNCTIONS {
            stack.start_function(name).await;
        }
        // A second api function in direct mode, on the same database and queue: the rollback
        // switch, and both modes running at once as during a switch-over. It needs an emulator of
        // its own (one emulator serves each binary once, by its name).
        let (direct_port, direct_runtime) = start_emulator();
        stack._functions.push(direct_runtime);
        let mut env = stack.env("api");
        env.push((
            "AWS_LAMBDA_RUNTIME_API".to_owned(),
            format!("http://127.0.0.1:{direct_port}/.rt/api"),
        ));
        env.push(("QUEUE_BASED_BOOKING".to_owned(), "false".to_owned()));
        stack._functions.push(spawn_function("api", env).0);
        stack.direct_api_port = direct_port;

        let (short_port, short_runtime) = start_emulator();
        stack._functions.push(short_runtime);
        let mut env = stack.env("api");
        env.push((
            "AWS_LAMBDA_RUNTIME_API".to_owned(),
            format!("http://127.0.0.1:{short_port}/.rt/api"),
        ));
        env.push(("ORDER_PAYMENT_TTL_SECONDS".to_owned(), "1".to_owned()));
        stack._functions.push(spawn_function("api", env).0);
        let mut env = stack.env("worker");
        env.push((
            "AWS_LAMBDA_RUNTIME_API".to_owned(),
            format!("http://127.0.0.1:{short_port}/.rt/worker"),
        ));
        env.push(("HOLD_TTL_SECONDS".to_owned(), "1".to_owned()));
        stack._functions.push(spawn_function("worker", env).0);
        stack.short_port = short_port;

        // `AUTH_MODE=authorizer`: the `$connect` authorizer and a websocket function that trusts
        // it, with the identity provider's tokens and no shared key at all.
        let (authorized_port, authorized_runtime) = start_emulator();
        stack._functions.push(authorized_runtime);
        stack.authorized_port = authorized_port;
        for name in ["authorizer", "websocket"] {
            let (function, _) = spawn_function(name, stack.authorized_env(name));
            stack._functions.push(function);
        }
        stack
    }

    /// The audience the identity provider's tokens are for.
    pub const AUDIENCE: &'static str = "seatbook-web";

    /// The environment of a function in `AUTH_MODE=authorizer` on the authorizer emulator.
    fn authorized_env(&self, name: &str) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .env(name)
            .into_iter()
            .filter(|(k, _)| k != "JWT_SECRET" && k != "AWS_LAMBDA_RUNTIME_API")
            .collect();
        for (k, v) in [
            (
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt/{name}", self.authorized_port),
            ),
            ("AUTH_MODE", "authorizer".to_owned()),
            ("JWT_ISSUER", self.idp.issuer().to_owned()),
            ("JWT_AUDIENCE", Self::AUDIENCE.to_owned()),
            ("JWT_ADMIN_CLAIM", "cognito:groups".to_owned()),
        ] {
            env.push((k.to_owned(), v));
        }
        env
    }

    /// A URL of the api function running in direct mode (`QUEUE_BASED_BOOKING=false`).
    pub fn direct_api_url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/lambda-url/api{path}",
            self.direct_api_port
        )
    }

    /// A URL of the api function whose orders wait 1 s for payment.
    pub fn short_api_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/lambda-url/api{path}", self.short_port)
    }

    fn env(&self, name: &str) -> Vec<(String, String)> {
        let env: Vec<(&str, String)> = vec![
            (
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt/{name}", self.runtime_port),
            ),
            ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "1".to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("AWS_ENDPOINT_URL", self.moto.url()),
            ("DATABASE_URL", self.db.url().to_owned()),
            ("REDIS_URL", self.redis.url()),
            ("JWT_SECRET", DEV_JWT_SECRET.to_owned()),
            ("BOOKING_QUEUE_URL", self.resources.queue_url.clone()),
            (
                "DEAD_LETTER_QUEUE_URL",
                self.resources.dead_letter_queue_url.clone(),
            ),
            ("CONNECTIONS_TABLE", self.resources.table.clone()),
            ("WEBSOCKET_ENDPOINT", self.gateway.url.clone()),
            ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", "true".to_owned()),
            // `LAMBDA_LOG=info` shows each function's cold start, part by part.
            (
                "RUST_LOG",
                std::env::var("LAMBDA_LOG").unwrap_or_else(|_| "warn".to_owned()),
            ),
            // Out of the way of the other cases (each user writes a few times at most, and the
            // catalog is read from one address); `rate_limits_hold_deployed` proves them.
            ("RATE_LIMIT_HOLDS", "off".to_owned()),
            ("RATE_LIMIT_ORDERS", "off".to_owned()),
            ("RATE_LIMIT_PAYMENTS", "2/h,burst=2".to_owned()),
            ("RATE_LIMIT_PER_IP", "1/h,burst=50".to_owned()),
            // Every instance signs admissions with the one key, as AdmissionSecretArn gives them.
            ("ADMISSION_SECRET", ADMISSION_SECRET.to_owned()),
            // The expirer ticks the rooms that are on for 2 s of an invocation, not most of a
            // minute (only it reads this).
            ("WAITING_ROOM_TICKER_SECONDS", "2".to_owned()),
        ];
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// Starts a function's binary and times its first handled invocation (a cheap one for each
    /// function), which includes its cold start: config, pools, clients.
    async fn start_function(&mut self, name: &'static str) {
        let started = Instant::now();
        let (function, output) = spawn_function(name, self.env(name));
        self._functions.push(function);
        self.outputs.insert(name, output);
        let probe = match name {
            "api" => crate::support::load_event("api/health.json"),
            "worker" => json!({ "Records": [] }),
            "websocket" => crate::support::load_event("websocket/disconnect.json"),
            _ => crate::support::load_event("expirer/schedule.json"),
        };
        let response = self.invoke(name, &probe).await;
        self.startup_ms
            .insert(name, started.elapsed().as_secs_f64() * 1_000.0);
        assert!(
            response.get("errorType").is_none(),
            "{name}'s first invocation failed: {response}"
        );
    }

    /// Invokes a function through the emulator's Lambda Invoke API and returns its answer.
    pub async fn invoke(&self, function: &str, event: &Value) -> Value {
        self.invoke_on(self.runtime_port, function, event).await
    }

    /// Invokes a function of the `AUTH_MODE=authorizer` emulator.
    pub async fn invoke_authorized(&self, function: &str, event: &Value) -> Value {
        self.invoke_on(self.authorized_port, function, event).await
    }

    async fn invoke_on(&self, port: u16, function: &str, event: &Value) -> Value {
        let url = format!("http://127.0.0.1:{port}/2015-03-31/functions/{function}/invocations");
        let response = self
            .http
            .post(url)
            .json(event)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke {function}: {e}"));
        let text = response.text().await.expect("invocation body");
        serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }))
    }

    /// The api function's URL (the emulator wraps the request in a function-URL event).
    pub fn api_url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/lambda-url/api{path}",
            self.runtime_port
        )
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk)
    }

    /// Receives up to ten messages of `queue_url` and turns them into the SQS event Lambda
    /// would deliver, keeping the receipt handles to delete with.
    pub async fn receive_batch(&self, queue_url: &str) -> (Value, HashMap<String, String>) {
        use aws_sdk_sqs::types::MessageSystemAttributeName;
        let received = self
            .sqs()
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive");
        let arn = format!(
            "arn:aws:sqs:us-east-1:123456789012:{}",
            queue_url.rsplit('/').next().unwrap()
        );
        let mut handles = HashMap::new();
        let records: Vec<Value> = received
            .messages()
            .iter()
            .map(|m| {
                let id = m.message_id().unwrap().to_owned();
                handles.insert(id.clone(), m.receipt_handle().unwrap().to_owned());
                let attributes: serde_json::Map<String, Value> = m
                    .attributes()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
                            .collect()
                    })
                    .unwrap_or_default();
                json!({
                    "messageId": id,
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": attributes,
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        (json!({ "Records": records }), handles)
    }

    /// What Lambda's SQS poller does with a batch: invoke the worker, then delete every message
    /// it did not report failed. Returns the failed message ids.
    pub async fn deliver_to_worker(
        &self,
        event: &Value,
        handles: &HashMap<String, String>,
    ) -> Vec<String> {
        self.deliver_on(self.runtime_port, event, handles).await
    }

    /// [`Stack::deliver_to_worker`] to the worker whose holds last 1 s.
    pub async fn deliver_to_short_hold_worker(
        &self,
        event: &Value,
        handles: &HashMap<String, String>,
    ) -> Vec<String> {
        self.deliver_on(self.short_port, event, handles).await
    }

    async fn deliver_on(
        &self,
        port: u16,
        event: &Value,
        handles: &HashMap<String, String>,
    ) -> Vec<String> {
        let response = self.invoke_on(port, "worker", event).await;
        let failed: Vec<String> = response["batchItemFailures"]
            .as_array()
            .unwrap_or_else(|| panic!("the worker answers with batchItemFailures: {response}"))
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
            .collect();
        for (id, handle) in handles {
            if !failed.contains(id) {
                self.sqs()
                    .delete_message()
                    .queue_url(&self.resources.queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .expect("delete");
            }
        }
        failed
    }
}

/// A sample event of `events/`, its tokens minted afresh: the samples' own are signed with the
/// development secret and expire in 2100, longer than any token the functions accept
/// (`JWT_MAX_LIFETIME_SECONDS`), so they stand for "a token of this user" (and role).
pub fn load_event(relative: &str) -> Value {
    let path = booking_testkit::aws::workspace_root()
        .join("events")
        .join(relative);
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    for sample in sample_tokens(&text) {
        #[derive(serde::Deserialize)]
        struct Named {
            sub: String,
            role: Option<String>,
        }
        let named: Named = jsonwebtoken::dangerous::insecure_decode_claims(&sample)
            .unwrap_or_else(|e| panic!("a sample token in {}: {e}", path.display()));
        let fresh = token(&named.sub, named.role.as_deref() == Some("admin"));
        text = text.replace(&sample, &fresh);
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The JWTs in `text`: every `eyJ…` run of base64url characters with two dots.
fn sample_tokens(text: &str) -> Vec<String> {
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let mut tokens = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("eyJ") {
        let candidate: String = rest[start..]
            .chars()
            .take_while(|&c| is_token_char(c))
            .collect();
        rest = &rest[start + candidate.len().max(3)..];
        if candidate.matches('.').count() == 2 && !tokens.contains(&candidate) {
            tokens.push(candidate);
        }
    }
    tokens
}
