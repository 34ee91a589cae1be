//! One load run: fetch the seat map, connect every user's WebSocket (ping/pong verified), send
//! POST /api/v1/holds open- or closed-loop for the send window, drain, and collect the numbers.

use crate::args::Options;
use crate::cpu::{self, CpuUse};
use crate::sockets::connect_user;
use crate::stats::{Book, Snapshot, Stats};
use crate::token;
use booking_core::UserId;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub(crate) type WsSink = SplitSink<Ws, Message>;

/// Bound on each set-up step (seat map, one WebSocket connect, one ping/pong).
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
/// WebSockets opened at once during set-up.
const CONNECT_PARALLELISM: usize = 32;

/// Small, fast PRNG (SplitMix64); quality is ample for picking users and seats.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// The show's seats as the seat map reported them at start.
#[derive(Debug, Default)]
pub struct SeatMapInfo {
    /// Seats that may be requested (everything but BLOCKED).
    pub seats: Vec<String>,
    pub by_status: BTreeMap<String, u64>,
}

struct User {
    auth: HeaderValue,
}

/// Everything the senders and readers share.
pub struct Ctx {
    pub opts: Options,
    client: reqwest::Client,
    holds_url: String,
    queues_url: String,
    admin_auth: HeaderValue,
    users: Vec<User>,
    seats: Vec<String>,
    /// Pre-rendered `{"showId":"…","seatIds":[` prefix of every body.
    body_prefix: String,
    pub stats: Stats,
    /// Time origin of every instant-to-offset conversion.
    pub origin: Instant,
    /// Set once the run is over, so WebSocket closes are not counted as failures.
    pub(crate) finished: AtomicBool,
    /// Set when the drain is over: progress stops.
    stopped: AtomicBool,
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
    pub ws_unparsed: u64,
    /// The show's lane from GET /api/v1/admin/queues after the drain, if readable.
    pub lane: Option<serde_json::Value>,
    pub drained_fully: bool,
    /// Host and own CPU over the send window (Linux only).
    pub cpu: Option<CpuUse>,
    /// CPU seconds the `--server-pid` processes used from the start of the load to the end of
    /// the drain (every request sent was also decided in that span).
    pub server_cpu_seconds: Option<f64>,
}

/// Runs the whole thing. Errors are set-up failures; load-time failures are counted.
pub async fn run(opts: Options) -> Result<Outcomes, String> {
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

    let seat_map = fetch_seat_map(&client, &opts).await?;
    if seat_map.seats.is_empty() {
        return Err(format!("show {} has no bookable seats", opts.show));
    }
    if opts.seats > seat_map.seats.len() {
        return Err(format!(
            "--seats {} is more than the show's {} seats",
            opts.seats,
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
        let token = token::mint(&opts.secret, id.as_str(), false, ttl);
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
        token::mint(&opts.secret, admin.as_str(), true, ttl)
    ))
    .map_err(|e| format!("token header: {e}"))?;

    let show_json = serde_json::to_string(&opts.show).map_err(|e| e.to_string())?;
    let ctx = Arc::new(Ctx {
        holds_url: format!("{}/api/v1/holds", opts.base),
        queues_url: format!("{}/api/v1/admin/queues", opts.base),
        body_prefix: format!("{{\"showId\":{show_json},\"seatIds\":["),
        seats: seat_map.seats.clone(),
        client,
        admin_auth,
        users,
        stats: Stats::new(),
        origin: Instant::now(),
        finished: AtomicBool::new(false),
        stopped: AtomicBool::new(false),
        opts,
    });

    // Every user's WebSocket: connected, ping → pong done, reader running.
    let connects = futures_util::stream::iter(tokens.into_iter().enumerate())
        .map(|(i, token)| connect_user(ctx.clone(), i, token))
        .buffer_unordered(CONNECT_PARALLELISM)
        .collect::<Vec<_>>()
        .await;
    let mut sinks = Vec::with_capacity(connects.len());
    let mut failures = Vec::new();
    for c in connects {
        match c {
            Ok(s) => sinks.push(s),
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
        sinks.len(),
        setup_time.as_secs_f64() * 1e3
    );

    let server_at_start = cpu::processes_ticks(&ctx.opts.server_pids);
    let cpu_at_start = cpu::sample();
    let start = Instant::now();
    let end = start + ctx.opts.duration;
    let progress = (!ctx.opts.quiet).then(|| tokio::spawn(progress(ctx.clone(), start)));

    if ctx.opts.rate > 0.0 {
        open_loop(ctx.clone(), start, end).await;
    } else {
        closed_loop(ctx.clone(), end).await;
    }
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
        if Instant::now() >= drain_deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let drain_end = Instant::now();
    let server_at_end = cpu::processes_ticks(&ctx.opts.server_pids);
    let server_cpu_seconds = (!ctx.opts.server_pids.is_empty())
        .then(|| cpu::processes_seconds(&server_at_start, &server_at_end))
        .flatten();
    ctx.stopped.store(true, Ordering::Relaxed);
    ctx.finished.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        p.abort();
    }
    let at_end = ctx.stats.snapshot();
    let lane = lane_stats(&ctx).await;

    // Close politely, bounded.
    let closes = sinks.into_iter().map(|mut s| async move {
        let _ = tokio::time::timeout(Duration::from_secs(1), s.close()).await;
    });
    futures_util::future::join_all(closes).await;

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
        book: ctx.stats.take_book(),
        by_outcome: std::array::from_fn(|i| ctx.stats.by_outcome[i].load(Ordering::Relaxed)),
        rejected_by_code: ctx.stats.rejected_by_code.lock().expect("poisoned").clone(),
        transport_by_kind: ctx
            .stats
            .transport_by_kind
            .lock()
            .expect("poisoned")
            .clone(),
        ws_closed: ctx.stats.ws_closed.load(Ordering::Relaxed),
        ws_unparsed: ctx.stats.ws_unparsed.load(Ordering::Relaxed),
        lane,
        drained_fully,
        cpu,
        server_cpu_seconds,
    })
}

async fn fetch_seat_map(client: &reqwest::Client, opts: &Options) -> Result<SeatMapInfo, String> {
    let url = format!("{}/api/v1/shows/{}/seatmap", opts.base, opts.show);
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
    for seat in rows.iter().filter_map(|r| r["seats"].as_array()).flatten() {
        let (Some(id), Some(status)) = (seat["seatId"].as_str(), seat["status"].as_str()) else {
            return Err(format!("GET {url}: seat without seatId/status: {seat}"));
        };
        *info.by_status.entry(status.to_owned()).or_default() += 1;
        if status != "BLOCKED" {
            info.seats.push(id.to_owned());
        }
    }
    Ok(info)
}

impl Ctx {
    /// A random user and a body with `--seats` distinct random seats.
    fn pick(&self, rng: &mut Rng) -> (usize, String) {
        let user = rng.below(self.users.len());
        let k = self.opts.seats;
        let n = self.seats.len();
        let mut chosen: Vec<usize> = Vec::with_capacity(k);
        if k * 2 <= n {
            while chosen.len() < k {
                let s = rng.below(n);
                if !chosen.contains(&s) {
                    chosen.push(s);
                }
            }
        } else {
            let mut all: Vec<usize> = (0..n).collect();
            for i in 0..k {
                let j = i + rng.below(n - i);
                all.swap(i, j);
            }
            chosen.extend_from_slice(&all[..k]);
        }
        let mut body = String::with_capacity(self.body_prefix.len() + 8 * k + 2);
        body.push_str(&self.body_prefix);
        for (i, s) in chosen.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            let _ = write!(body, "\"{}\"", self.seats[*s]);
        }
        body.push_str("]}");
        (user, body)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AcceptedBody {
    request_id: Uuid,
}

fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "(no error code)".to_owned())
}

fn transport_kind(e: &reqwest::Error) -> &'static str {
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
async fn send_one(ctx: Arc<Ctx>, user: usize, body: String, _permit: Option<OwnedSemaphorePermit>) {
    let stats = &ctx.stats;
    let request = ctx
        .client
        .post(&ctx.holds_url)
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
            Ok(a) => stats.accepted(a.request_id, sent, answered),
            Err(_) => stats.rejected("202 (body without requestId)".to_owned()),
        },
        Ok((status, body)) => stats.rejected(format!("{status} {}", error_code(&body))),
        Err(e) => stats.transport_error(transport_kind(&e)),
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
                    let (user, body) = ctx.pick(&mut rng);
                    tokio::spawn(send_one(ctx.clone(), user, body, Some(permit)));
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
                let (user, body) = ctx.pick(&mut rng);
                send_one(ctx.clone(), user, body, None).await;
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

/// One line per second on stderr: what happened in that second, from this tool's own counts. (The
/// server's queue statistics are read once, after the drain: counted from its store, they would
/// cost the server under measurement a full count every second.)
async fn progress(ctx: Arc<Ctx>, start: Instant) {
    let mut tick = tokio::time::interval_at(
        (start + Duration::from_secs(1)).into(),
        Duration::from_secs(1),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Snapshot::default();
    let mut last_at = start;
    loop {
        tick.tick().await;
        if ctx.stopped.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        let s = ctx.stats.snapshot();
        let dt = (now - last_at).as_secs_f64().max(1e-9);
        eprintln!(
            "[{:6.1}s] sent {:6.0}/s accepted {:6.0}/s rejected {:5.0}/s decided {:6.0}/s | in-flight POSTs {:4} awaiting results {:6}{}",
            (now - start).as_secs_f64(),
            (s.sent - last.sent) as f64 / dt,
            (s.accepted - last.accepted) as f64 / dt,
            (s.rejected - last.rejected) as f64 / dt,
            (s.decided - last.decided) as f64 / dt,
            s.in_flight,
            s.waiting_result,
            if s.skipped > last.skipped {
                format!(" skipped +{}", s.skipped - last.skipped)
            } else {
                String::new()
            },
        );
        last = s;
        last_at = now;
    }
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
    }
}
