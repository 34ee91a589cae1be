//! `--start`: a `seatbook` server of the tool's own for one run, on a free loopback port and a
//! fresh data directory, with the limits that are about something else (per-user request caps
//! and rate limits, the socket cap) turned out of the way, so that the run measures the booking
//! path and the checks see every request that reached it. `--kill N` crashes it (kill -9) and
//! starts it again on the same port and data, mid-sale; the other faults ([`crate::faults`])
//! work on its Redis and PostgreSQL.
//!
//! `--start postgres` without `--redis-url` runs a Redis of the tool's own (an in-memory
//! `redis-server` on a free loopback port), which `--redis-stop` may then stop and start again.

use crate::args::{Common, StartBackend, StartOptions, Target};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a server may take to print its address (migrations and the demo seed included).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a scenario's run goes: the URL given, or a server of the tool's own started for it
/// (which then counts first among the `--server-pid` processes). `sockets` is how many
/// WebSockets the run opens. Returns the HTTP and WebSocket bases and the server, for [`stop`].
pub(crate) async fn reach(
    common: &mut Common,
    sockets: usize,
) -> Result<(String, String, Option<StartedServer>), String> {
    match common.target.clone() {
        Target::Url { base, ws_base } => Ok((base, ws_base, None)),
        Target::Start(start) => {
            let s = tokio::task::spawn_blocking(move || StartedServer::start(&start, sockets))
                .await
                .map_err(|e| format!("--start: {e}"))??;
            common.server_pids.insert(0, s.pid);
            Ok((s.base.clone(), s.ws_base.clone(), Some(s)))
        }
    }
}

/// Stops what [`reach`] started, off the runtime's threads (it waits for the process).
pub(crate) async fn stop(server: Option<StartedServer>) {
    if let Some(mut s) = server {
        tokio::task::spawn_blocking(move || s.stop()).await.ok();
    }
}

/// A running server; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct StartedServer {
    child: Child,
    pub base: String,
    pub ws_base: String,
    pub pid: u32,
    opts: StartOptions,
    sockets: usize,
    /// `127.0.0.1:port`, kept across restarts so that clients find the server again.
    addr: String,
    /// Removed when the server is dropped, after it has stopped.
    data_dir: tempfile::TempDir,
    /// The Redis the tool runs for `--start postgres` without `--redis-url`.
    pub own_redis: Option<OwnRedis>,
}

impl StartedServer {
    /// Starts the server and waits until it listens. `sockets` is how many WebSockets the run
    /// will open (the server's cap is raised above it).
    pub fn start(opts: &StartOptions, sockets: usize) -> Result<Self, String> {
        let data_dir = tempfile::Builder::new()
            .prefix("loadgen-server-")
            .tempdir()
            .map_err(|e| format!("--start: cannot make a data directory: {e}"))?;
        let own_redis = match (opts.backend, &opts.redis_url) {
            (StartBackend::Postgres, None) => Some(OwnRedis::start()?),
            _ => None,
        };
        let mut opts = opts.clone();
        if let Some(r) = &own_redis {
            opts.redis_url = Some(r.url());
        }
        let (child, addr) = spawn(&opts, data_dir.path(), "127.0.0.1:0", sockets)?;
        Ok(Self {
            pid: child.id(),
            child,
            base: format!("http://{addr}"),
            ws_base: format!("ws://{addr}"),
            opts,
            sockets,
            addr,
            data_dir,
            own_redis,
        })
    }

    /// kill -9, then the same server again on the same port and data: returns how long it was
    /// gone (kill to listening again).
    pub fn crash_and_restart(&mut self) -> Result<Duration, String> {
        let killed = std::time::Instant::now();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The port may be briefly unavailable; a bounded retry covers it.
        let mut last = String::new();
        for _ in 0..50 {
            match spawn(&self.opts, self.data_dir.path(), &self.addr, self.sockets) {
                Ok((child, _)) => {
                    self.pid = child.id();
                    self.child = child;
                    return Ok(killed.elapsed());
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "the server did not come back after kill -9: {last}"
        ))
    }

    /// What the server was started with (`redis_url` filled in with the tool's own Redis).
    pub fn options(&self) -> &StartOptions {
        &self.opts
    }

    /// Stops the server: SIGTERM (its clean shutdown), then SIGKILL after a few seconds.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for StartedServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An in-memory `redis-server` of the tool's own on a free loopback port; killed when dropped.
pub struct OwnRedis {
    child: Option<Child>,
    port: u16,
}

impl OwnRedis {
    fn start() -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("--start: no free port for Redis: {e}"))?
            .port();
        let mut redis = Self { child: None, port };
        redis.run()?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// kill -9: connections refused until [`OwnRedis::run`]; it keeps nothing, so it comes
    /// back empty.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs the server (again) on the same port and waits until it takes connections.
    pub fn run(&mut self) -> Result<(), String> {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("--start postgres without --redis-url runs redis-server, which failed: {e}")
            })?;
        self.child = Some(child);
        for _ in 0..250 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "redis-server did not listen on port {} within 5 s",
            self.port
        ))
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the server binary on `data_dir`, bound to `bind`, and waits for its address.
fn spawn(
    opts: &StartOptions,
    data_dir: &Path,
    bind: &str,
    sockets: usize,
) -> Result<(Child, String), String> {
    let log_path = data_dir.join("server.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("--start: cannot open {}: {e}", log_path.display()))?;
    let mut cmd = Command::new(&opts.server_bin);
    cmd.env("BIND", bind)
        .env("DATA_DIR", data_dir)
        .env_remove("JWT_SECRET")
        .env("RUST_LOG", "warn")
        .env("MAX_OPEN_REQUESTS_PER_USER", "100")
        .env("RATE_LIMIT_HOLDS", "off")
        .env("RATE_LIMIT_ORDERS", "off")
        .env("RATE_LIMIT_PAYMENTS", "off")
        .env("RATE_LIMIT_PER_IP", "off")
        .env("RATE_LIMIT_JOINS", "off")
        .env("RATE_LIMIT_JOINS_PER_IP", "off")
        .env("MAX_SOCKETS", (sockets + 1000).to_string())
        .env("MAX_CONCURRENT_REQUESTS", "4096")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    if opts.backend == StartBackend::Postgres {
        let (Some(db), Some(redis)) = (&opts.database_url, &opts.redis_url) else {
            return Err("--start postgres needs --database-url and --redis-url".into());
        };
        cmd.env("DATABASE_URL", db).env("REDIS_URL", redis);
    }
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("--start: cannot run {}: {e}", opts.server_bin.display()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads stdout to its end, so that the server never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("seatbook listening on http://") {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(addr) => Ok((child, addr)),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            Err(format!(
                "--start: the server did not listen within {START_TIMEOUT:?} (or exited); its last log lines, newest first:\n{}",
                tail.join("\n")
            ))
        }
    }
}
