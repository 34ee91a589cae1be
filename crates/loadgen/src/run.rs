//! One flash sale: start the server if asked, fetch the seat map, connect every user's WebSocket
//! (ping/pong verified), send POST /api/v1/holds open- or closed-loop for the send window (most
//! requests for the show's best seats, some for several seats), drain, run the checks and
//! collect the numbers.

use crate::args::{Options, Target};
use crate::cpu::{self, CpuUse};
use crate::faults::{self, FaultKind, Injected, Shared};
use crate::progress::Progress;
use crate::sockets::connect_user;
use crate::stats::{Book, Snapshot, Stats};
use crate::verify::Verification;
use crate::{collect, server, token};
use booking_core::UserId;
use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Bound on each set-up step (seat map, one WebSocket connect, one ping/pong).
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
/// With `--kill`, the drain ends once no result has arrived for this long.
const QUIET_AFTER_CRASHES: Duration = Duration::from_secs(3);
/// WebSockets opened at once during set-up.
pub(crate) const CONNECT_PARALLELISM: usize = 32;

/// Small, fast PRNG (the core's SplitMix64); quality is ample for picking users and seats.
pub struct Rng(booking_core::rng::SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(booking_core::rng::SplitMix64::new(seed))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The show's seats as the seat map reported them.
#[derive(Debug, Default)]
pub struct SeatMapInfo {
    /// Seats that may be requested (everything but BLOCKED), in seat-map order: a seat's index
    /// here is its index everywhere in the run.
    pub seats: Vec<String>,
    /// Per seat: its status.
    pub status: Vec<String>,
    /// The seats nearest the middle of the hall (a little behind the centre row), best first.
    pub best: Vec<u32>,
    pub by_status: BTreeMap<String, u64>,
}

pub(crate) struct User {
    pub(crate) auth: HeaderValue,
}

/// Everything the senders and readers share.
pub struct Ctx {
    pub opts: Options,
    pub(crate) client: reqwest::Client,
    /// Parsed once: a `&str` would be parsed again (and its host IDNA-checked) for every POST.
    holds_url: reqwest::Url,
    queues_url: String,
    admin_auth: HeaderValue,
    pub(crate) users: Vec<User>,
    pub(crate) seats: Vec<String>,
    /// The pool the hot share of requests picks from.
    hot: Vec<u32>,
    /// Pre-rendered `{"showId":"…","seatIds":[` prefix of every body.
    body_prefix: String,
    pub stats: Stats,
    /// Time origin of every instant-to-offset conversion.
    pub origin: Instant,
    /// Set once the run is over, so WebSocket closes are not counted as failures.
    pub(crate) finished: AtomicBool,
    /// Set when the drain is over: progress stops.
    pub(crate) stopped: AtomicBool,
    /// Set to true when the sockets are to close.
    pub(crate) closing: tokio::sync::watch::Sender<bool>,
}

/// What the report needs.
pub struct Outcomes {
    pub seat_map: SeatMapInfo,
    pub setup_time: Duration,
    pub window: Duration,
    pub at_window_end: Snapshot,
    pub at_end: Snapshot,
    /// From load start to the end of the drain.
    pub total_time: Duration,
    /// From load start to the last BOOKING_RESULT (None if none arrived).
    pub last_result_after: Option<Duration>,
    pub book: Book,
    pub by_outcome: [u64; 4],
    pub rejected_by_code: BTreeMap<String, u64>,
    pub transport_by_kind: BTreeMap<String, u64>,
    pub ws_closed: u64,
    pub ws_reconnects: u64,
    pub ws_unparsed: u64,
    /// The show's lane from GET /api/v1/admin/queues after the drain, if readable.
    pub lane: Option<serde_json::Value>,
    pub drained_fully: bool,
    /// Host and own CPU over the send window (Linux only).
    pub cpu: Option<CpuUse>,
    /// CPU seconds the `--server-pid` processes used from the start of the load to the end of
    /// the drain (every request sent was also decided in that span).
    pub server_cpu_seconds: Option<f64>,
    /// CPU seconds this tool used over the same span.
    pub loadgen_cpu_seconds: Option<f64>,
    /// The checks (None with --no-verify).
    pub verification: Option<Verification>,
    /// What --start ran, if anything.
    pub started: Option<String>,
    /// The server's base URL (the one --start picked, or --base).
    pub base: String,
    /// `--kill`: how long each crash kept the server away (kill -9 to listening again).
    pub outages: Vec<Duration>,
    /// `--kill`: requests sent after the last restart and accepted.
    pub accepted_after_last_restart: Option<u64>,
    /// Every fault injected during the window, in order.
    pub faults: Vec<FaultReport>,
}

/// One injected fault and how the server took it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultReport {
    pub kind: FaultKind,
    /// When it began, seconds after the load started.
    pub at_s: f64,
    /// Until what it took away was back (the server, Redis, the database), seconds.
    pub lasted_s: f64,
    /// 202s answered while it lasted.
    pub accepted_during: u64,
    /// From its end to the first 202 answered after it, seconds (None: no 202 after it).
    pub accepting_again_after_s: Option<f64>,
}

impl FaultReport {
    /// `origin` is the time origin of the book's nanoseconds.
    fn of(f: &Injected, origin: Instant, load_start: Instant, book: &Book) -> Self {
        let ns = |at: Instant| (at - origin).as_nanos() as u64;
        let (began_ns, restored_ns) = (ns(f.began), ns(f.restored));
        let answered = || book.records.iter().map(|r| r.answered_ns);
        let first_after = answered().filter(|&a| a >= restored_ns).min();
        Self {
            kind: f.kind,
            at_s: (f.began - load_start).as_secs_f64(),
            lasted_s: (f.restored - f.began).as_secs_f64(),
            accepted_during: answered()
                .filter(|&a| a >= began_ns && a < restored_ns)
                .count() as u64,
            accepting_again_after_s: first_after.map(|a| (a - restored_ns) as f64 / 1e9),
        }
    }
}

/// Runs the whole thing. Errors are set-up failures; load-time failures are counted.
pub async fn run(mut opts: Options) -> Result<Outcomes, String> {
    let mut backend = None;
    if let Target::Start(start) = &mut opts.common.target {
        if opts.faults.deliver_twice {
            start
                .env
                .push(("FAULT_DELIVER_TWICE".to_owned(), "true".to_owned()));
        }
        backend = Some(start.backend);
    }
    let (base, ws_base, started_server) = server::reach(&mut opts.common, opts.users).await?;
    (opts.base, opts.ws_base) = (base, ws_base);
    let started = started_server.as_ref().zip(backend).map(|(s, backend)| {
        let what = format!("{backend:?} server, pid {}", s.pid).to_lowercase();
        eprintln!("loadgen: started an {what} on {}", s.base);
        what
    });
    // Shared with the fault injector, which kills and restarts it mid-run.
    let server = started_server.map(|s| Arc::new(std::sync::Mutex::new(s)));
    let outcome = run_against(opts, started, server.clone()).await;
    if let Some(s) = server {
        tokio::task::spawn_blocking(move || s.lock().expect("server lock").stop())
            .await
            .ok();
    }
    outcome
}

async fn run_against(
    opts: Options,
    started: Option<String>,
    server: Option<Shared>,
) -> Result<Outcomes, String> {
    let setup_started = Instant::now();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(opts.concurrency.max(64) * 2)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(opts.timeout)
        .connect_timeout(SETUP_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;

    let seat_map = fetch_seat_map(&client, &opts.base, &opts.show).await?;
    if seat_map.seats.is_empty() {
        return Err(format!("show {} has no bookable seats", opts.show));
    }
    let most = opts.seats.max(if opts.multi_share > 0.0 {
        opts.max_seats
    } else {
        0
    });
    if most > seat_map.seats.len() {
        return Err(format!(
            "requests of {most} seats are more than the show's {} seats",
            seat_map.seats.len()
        ));
    }

    let ttl = chrono::Duration::seconds((opts.duration + opts.drain).as_secs() as i64 + 3600);
    let mut tokens = Vec::with_capacity(opts.users);
    let mut users = Vec::with_capacity(opts.users);
    for n in 1..=opts.users {
        let name = format!("{}{n}", opts.user_prefix);
        let id: UserId = name
            .parse()
            .map_err(|e| format!("user id {name:?} is invalid: {e}"))?;
        let token = token::mint(&opts.common.secret, id.as_str(), false, ttl);
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| format!("token header: {e}"))?;
        users.push(User { auth: value });
        tokens.push(token);
    }
    let admin: UserId = format!("{}admin", opts.user_prefix)
        .parse()
        .map_err(|e| format!("admin user id: {e}"))?;
    let admin_auth = HeaderValue::from_str(&format!(
        "Bearer {}",
        token::mint(&opts.common.secret, admin.as_str(), true, ttl)
    ))
    .map_err(|e| format!("token header: {e}"))?;

    let show_json = serde_json::to_string(&opts.show).map_err(|e| e.to_string())?;
    let hot: Vec<u32> = seat_map.best.iter().take(opts.hot_seats).copied().collect();
    let origin = Instant::now();
    let ctx = Arc::new(Ctx {
        holds_url: reqwest::Url::parse(&format!("{}/api/v1/holds", opts.base))
            .map_err(|e| format!("bad base URL {}: {e}", opts.base))?,
        queues_url: format!("{}/api/v1/admin/queues", opts.base),
        body_prefix: format!("{{\"showId\":{show_json},\"seatIds\":["),
        seats: seat_map.seats.clone(),
        hot,
        client,
        admin_auth,
        users,
        stats: Stats::new(origin),
        origin,
        finished: AtomicBool::new(false),
        stopped: AtomicBool::new(false),
        closing: tokio::sync::watch::channel(false).0,
        opts,
    });

    // Every user's WebSocket: connected, ping → pong done, reader running.
    let connects = futures_util::stream::iter(tokens.into_iter().enumerate())
        .map(|(i, token)| connect_user(ctx.clone(), i, token))
        .buffer_unordered(CONNECT_PARALLELISM)
        .collect::<Vec<_>>()
        .await;
    let mut sockets = Vec::with_capacity(connects.len());
    let mut failures = Vec::new();
    for c in connects {
        match c {
            Ok(s) => sockets.push(s),
            Err(e) => failures.push(e),
        }
    }
    if !failures.is_empty() {
        ctx.finished.store(true, Ordering::Relaxed);
        return Err(format!(
            "{} of {} WebSockets failed to connect/ping; first error: {}",
            failures.len(),
            ctx.opts.users,
            failures[0]
        ));
    }
    let setup_time = setup_started.elapsed();
    eprintln!(
        "loadgen: {} WebSockets connected and answered ping in {:.0} ms; starting load",
        sockets.len(),
        setup_time.as_secs_f64() * 1e3
    );

    let server_at_start = cpu::processes_ticks(&ctx.opts.common.server_pids);
    let own_at_start = cpu::process_ticks(std::process::id());
    let cpu_at_start = cpu::sample();
    let start = Instant::now();
    ctx.stats.load_starts(start);
    let end = start + ctx.opts.duration;
    let progress = Progress::start(&ctx, start);
    let schedule = ctx.opts.faults.schedule(ctx.opts.duration)?;
    let faults = match &server {
        Some(server) if !schedule.is_empty() => Some(tokio::spawn(faults::inject(
            server.clone(),
            schedule,
            ctx.opts.faults.outage,
            start,
        ))),
        _ => None,
    };

    if ctx.opts.rate > 0.0 {
        open_loop(ctx.clone(), start, end).await;
    } else {
        closed_loop(ctx.clone(), end).await;
    }
    let injected = match faults {
        Some(task) => task.await.map_err(|e| format!("faults: {e}"))??,
        None => Vec::new(),
    };
    let window_end = Instant::now();
    let at_window_end = ctx.stats.snapshot();
    let cpu = cpu::between(
        cpu_at_start,
        cpu::sample(),
        (window_end - start).as_secs_f64(),
    );

    // Drain: outstanding POST answers and BOOKING_RESULTs, bounded.
    let drain_deadline = window_end + ctx.opts.drain;
    let drained_fully = loop {
        let s = ctx.stats.snapshot();
        if s.in_flight == 0 && s.waiting_result == 0 {
            break true;
        }
        let now = Instant::now();
        if now >= drain_deadline {
            break false;
        }
        // After crashes some pushes are lost for good, so waiting for all of them would only
        // run out the drain: once results stop coming, polling settles the rest.
        let last_result =
            ctx.origin + Duration::from_nanos(ctx.stats.last_result_ns.load(Ordering::Relaxed));
        if ctx.opts.faults.kills > 0
            && s.in_flight == 0
            && now > last_result.max(window_end) + QUIET_AFTER_CRASHES
        {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let drain_end = Instant::now();
    let server_at_end = cpu::processes_ticks(&ctx.opts.common.server_pids);
    let own_at_end = cpu::process_ticks(std::process::id());
    let server_cpu_seconds = (!ctx.opts.common.server_pids.is_empty())
        .then(|| cpu::processes_seconds(&server_at_start, &server_at_end))
        .flatten();
    let loadgen_cpu_seconds = cpu::processes_seconds(&[own_at_start], &[own_at_end]);
    ctx.stopped.store(true, Ordering::Relaxed);
    progress.finish();
    let at_end = ctx.stats.snapshot();
    let lane = lane_stats(&ctx).await;

    let book = ctx.stats.take_book();
    let kills: Vec<_> = injected
        .iter()
        .filter(|f| f.kind == FaultKind::Kill)
        .collect();
    let accepted_after_last_restart = kills.last().map(|f| {
        let back_ns = (f.restored - ctx.origin).as_nanos() as u64;
        book.records.iter().filter(|r| r.sent_ns > back_ns).count() as u64
    });
    let outages = kills.iter().map(|f| f.restored - f.began).collect();
    let faults = injected
        .iter()
        .map(|f| FaultReport::of(f, ctx.origin, start, &book))
        .collect();
    let verification = if ctx.opts.verify {
        let sole_client = started.is_some();
        Some(collect::verify(&ctx, &book, &seat_map, sole_client).await?)
    } else {
        None
    };
    ctx.finished.store(true, Ordering::Relaxed);

    // Close politely, bounded: each socket's task sends its close and waits for the answer.
    let _ = ctx.closing.send(true);
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        futures_util::future::join_all(sockets),
    )
    .await;

    let last_ns = ctx.stats.last_result_ns.load(Ordering::Relaxed);
    let load_start_ns = (start - ctx.origin).as_nanos() as u64;
    let last_result_after = (at_end.decided > 0 && last_ns > load_start_ns)
        .then(|| Duration::from_nanos(last_ns - load_start_ns));
    Ok(Outcomes {
        seat_map,
        setup_time,
        window: window_end - start,
        at_window_end,
        at_end,
        total_time: drain_end - start,
        last_result_after,
        book,
        by_outcome: std::array::from_fn(|i| ctx.stats.by_outcome[i].load(Ordering::Relaxed)),
        rejected_by_code: ctx.stats.rejected_by_code.lock().expect("poisoned").clone(),
        transport_by_kind: ctx
            .stats
            .transport_by_kind
            .lock()
            .expect("poisoned")
            .clone(),
        ws_closed: ctx.stats.ws_closed.load(Ordering::Relaxed),
        ws_reconnects: ctx.stats.ws_reconnects.load(Ordering::Relaxed),
        ws_unparsed: ctx.stats.ws_unparsed.load(Ordering::Relaxed),
        lane,
        drained_fully,
        cpu,
        server_cpu_seconds,
        loadgen_cpu_seconds,
        verification,
        started,
        base: ctx.opts.base.clone(),
        outages,
        accepted_after_last_restart,
        faults,
    })
}

/// The show's seat map: every seat's status, and the best seats.
pub(crate) async fn fetch_seat_map(
    client: &reqwest::Client,
    base: &str,
    show: &str,
) -> Result<SeatMapInfo, String> {
    let url = format!("{base}/api/v1/shows/{show}/seatmap");
    let resp = tokio::time::timeout(SETUP_TIMEOUT, client.get(&url).send())
        .await
        .map_err(|_| format!("GET {url}: no answer within {SETUP_TIMEOUT:?}"))?
        .map_err(|e| format!("GET {url}: {e} (is the server running?)"))?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("GET {url}: {status}: {body}"));
    }
    let map: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("GET {url}: not JSON: {e}"))?;
    let rows = map["rows"]
        .as_array()
        .ok_or_else(|| format!("GET {url}: no rows in {body:.200}"))?;
    let mut info = SeatMapInfo::default();
    // (distance from the sweet spot, seat index) of every requestable seat.
    let mut by_distance: Vec<(f64, u32)> = Vec::new();
    let row_count = rows.len().max(2) as f64;
    for (r, row) in rows.iter().enumerate() {
        let seats = row["seats"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let seat_count = seats.len().max(2) as f64;
        for (c, seat) in seats.iter().enumerate() {
            let (Some(id), Some(status)) = (seat["seatId"].as_str(), seat["status"].as_str())
            else {
                return Err(format!("GET {url}: seat without seatId/status: {seat}"));
            };
            *info.by_status.entry(status.to_owned()).or_default() += 1;
            if status != "BLOCKED" {
                let (y, x) = (r as f64 / (row_count - 1.0), c as f64 / (seat_count - 1.0));
                let distance = (y - 0.6).powi(2) + (x - 0.5).powi(2);
                by_distance.push((distance, info.seats.len() as u32));
                info.seats.push(id.to_owned());
                info.status.push(status.to_owned());
            }
        }
    }
    by_distance.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    info.best = by_distance.into_iter().map(|(_, i)| i).collect();
    Ok(info)
}

impl Ctx {
    /// A random user, a request's seats and its body: `--hot-share` of requests pick among the
    /// best seats, `--multi-share` ask for 2 to `--max-seats` seats, the rest for `--seats`.
    fn pick(&self, rng: &mut Rng) -> (usize, Box<[u32]>, String) {
        let user = rng.below(self.users.len());
        let o = &self.opts;
        let k = if o.multi_share > 0.0 && rng.unit() < o.multi_share {
            2 + rng.below(o.max_seats - 1)
        } else {
            o.seats
        };
        let hot = !self.hot.is_empty() && k <= self.hot.len() && rng.unit() < o.hot_share;
        let n = if hot {
            self.hot.len()
        } else {
            self.seats.len()
        };
        let k = k.min(n);
        let mut chosen: Vec<u32> = Vec::with_capacity(k);
        if k * 2 <= n {
            while chosen.len() < k {
                let s = rng.below(n) as u32;
                if !chosen.contains(&s) {
                    chosen.push(s);
                }
            }
        } else {
            let mut all: Vec<u32> = (0..n as u32).collect();
            for i in 0..k {
                let j = i + rng.below(n - i);
                all.swap(i, j);
            }
            chosen.extend_from_slice(&all[..k]);
        }
        if hot {
            for s in &mut chosen {
                *s = self.hot[*s as usize];
            }
        }
        let mut body = String::with_capacity(self.body_prefix.len() + 8 * k + 2);
        body.push_str(&self.body_prefix);
        for (i, s) in chosen.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            let _ = write!(body, "\"{}\"", self.seats[*s as usize]);
        }
        body.push_str("]}");
        (user, chosen.into_boxed_slice(), body)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AcceptedBody {
    pub(crate) request_id: Uuid,
}

pub(crate) fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "(no error code)".to_owned())
}

pub(crate) fn transport_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else if e.is_request() {
        "request"
    } else {
        "other"
    }
}

/// Sends one POST and books its answer. `_permit` holds an in-flight slot until it returns.
async fn send_one(
    ctx: Arc<Ctx>,
    (user, seats, body): (usize, Box<[u32]>, String),
    _permit: Option<OwnedSemaphorePermit>,
) {
    let stats = &ctx.stats;
    let request = ctx
        .client
        .post(ctx.holds_url.clone())
        .header(AUTHORIZATION, ctx.users[user].auth.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(body);
    stats.sent.fetch_add(1, Ordering::Relaxed);
    stats.in_flight.fetch_add(1, Ordering::Relaxed);
    let sent = Instant::now();
    let answer = match request.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            resp.bytes().await.map(|b| (status, b))
        }
        Err(e) => Err(e),
    };
    let answered = Instant::now();
    match answer {
        Ok((202, body)) => match serde_json::from_slice::<AcceptedBody>(&body) {
            Ok(a) => stats.accepted(a.request_id, user as u32, seats, sent, answered),
            Err(_) => stats.rejected("202 (body without requestId)".to_owned(), answered),
        },
        Ok((status, body)) => {
            // A server error may come after the request was stored (a commit whose answer the
            // database connection lost): like a lost answer, it may have been accepted.
            if status >= 500 {
                stats.maybe_accepted(seats, sent);
            }
            stats.rejected(format!("{status} {}", error_code(&body)), answered)
        }
        Err(e) => {
            // Refused at connect: it never reached the server. Anything else may have been
            // accepted before the answer was lost (a server killed mid-request).
            if !e.is_connect() {
                stats.maybe_accepted(seats, sent);
            }
            stats.transport_error(transport_kind(&e));
        }
    }
    stats.in_flight.fetch_sub(1, Ordering::Relaxed);
}

/// Open loop: request i is due at `start + i / rate`, sent whatever happened to earlier ones.
async fn open_loop(ctx: Arc<Ctx>, start: Instant, end: Instant) {
    let rate = ctx.opts.rate;
    let total =
        ((rate * ctx.opts.duration.as_secs_f64()).round() as u64).min(ctx.opts.max_requests);
    let limit = Arc::new(Semaphore::new(ctx.opts.concurrency));
    let mut rng = Rng::new(ctx.opts.seed);
    let mut i: u64 = 0;
    while i < total {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let due = (((now - start).as_secs_f64() * rate) as u64 + 1).min(total);
        while i < due {
            match limit.clone().try_acquire_owned() {
                Ok(permit) => {
                    let picked = ctx.pick(&mut rng);
                    tokio::spawn(send_one(ctx.clone(), picked, Some(permit)));
                }
                Err(_) => {
                    ctx.stats.skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
            i += 1;
        }
        let next = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(next.min(end).into()).await;
    }
}

/// Closed loop: `--concurrency` workers, each sending its next POST as soon as the last is answered.
async fn closed_loop(ctx: Arc<Ctx>, end: Instant) {
    let reserved = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = Vec::with_capacity(ctx.opts.concurrency);
    for w in 0..ctx.opts.concurrency {
        let ctx = ctx.clone();
        let reserved = reserved.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = Rng::new(ctx.opts.seed ^ (w as u64).wrapping_mul(0xA24B_AED4_963E_E407));
            while Instant::now() < end
                && reserved.fetch_add(1, Ordering::Relaxed) < ctx.opts.max_requests
            {
                let picked = ctx.pick(&mut rng);
                send_one(ctx.clone(), picked, None).await;
            }
        }));
    }
    // Sending stops at `end`; the POSTs still in flight are the drain's business.
    tokio::time::sleep_until(end.into()).await;
    drop(workers);
}

/// The show's lane from the admin queue stats (best effort, bounded).
async fn lane_stats(ctx: &Ctx) -> Option<serde_json::Value> {
    let req = ctx
        .client
        .get(&ctx.queues_url)
        .header(AUTHORIZATION, ctx.admin_auth.clone());
    let resp = tokio::time::timeout(Duration::from_millis(800), req.send())
        .await
        .ok()?
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let v: serde_json::Value = tokio::time::timeout(Duration::from_millis(800), resp.json())
        .await
        .ok()?
        .ok()?;
    v["shows"]
        .as_array()?
        .iter()
        .find(|l| l["showId"].as_str() == Some(ctx.opts.show.as_str()))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_below_is_in_range_and_spread() {
        let mut rng = Rng::new(7);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[rng.below(10)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800 && c < 1200), "{seen:?}");
        let units: Vec<f64> = (0..1000).map(|_| rng.unit()).collect();
        assert!(units.iter().all(|u| (0.0..1.0).contains(u)));
        let low = units.iter().filter(|&&u| u < 0.5).count();
        assert!((400..600).contains(&low), "{low}");
    }
}
