//! `loadgen steady`: ordinary traffic over many shows, the complement of the flash sale. A sale
//! loads one show's lane with a crowd; most of a cinema's day is the opposite: many shows, few
//! people each, and most of the work in seat-map reads, orders and payments. Defects in the
//! paths a sale barely touches would show here: a hold turned into an order, a declined card
//! freeing seats, a release, a hold replaced by its owner's next one.
//!
//! The run creates its own shows (one new movie, through the admin catalog routes), so that it
//! starts from known, empty halls. Each user has its own token and WebSocket and makes one
//! journey after another: a random show's seat map, one to three of its free seats asked for
//! under an `Idempotency-Key`, the result awaited on its own socket (polled when no push has
//! come within three seconds), and a granted hold bought (order and payment, some cards
//! declined), released, or kept. Open-loop readers fetch seat maps meanwhile.
//!
//! The checks work from what a client knows for certain. A hold is certainly live from the
//! moment its result was received until a request that could end it (its release, its order,
//! its owner's next hold request on the show) was sent, or until its `expiresAt`; an order
//! waiting for payment likewise; a confirmed order owns its seats from the moment its
//! confirmation was received, for good. Two such claims on one seat at one instant are a seat
//! held or sold twice, whatever the server's timing was.

use crate::args::SteadyOptions;
use crate::collect::{await_late_results, get_json, poll_requests};
use crate::cpu::{self, CpuUse};
use crate::progress::Progress;
use crate::report::{counts, latency_json, latency_line, per_s, server_us_per_request};
use crate::room::admin_call;
use crate::run::{AcceptedBody, CONNECT_PARALLELISM, Rng, SeatMapInfo, User, Ws};
use crate::run::{error_code, fetch_seat_map, transport_kind};
use crate::sockets::{self, on_message};
use crate::stats::{Book, Outcome, Snapshot, Stats, histogram};
use crate::verify::{self, Evidence, Verification};
use crate::{server, token};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

/// Seats in a row of the created halls.
const ROW: usize = 25;
/// How long a journey waits for its result's push before it polls: the fallback a client
/// needs when a push is lost, not expected to be used.
const PUSH_WAIT: Duration = Duration::from_secs(3);
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Polling gives up after this (the server's request deadline is 120 s by default).
const POLL_FOR: Duration = Duration::from_secs(30);
/// Tries of a POST under one key: a lost answer, a 5xx or the key's first use still in flight
/// are retried, which the key makes safe.
const ATTEMPTS: u32 = 3;
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Open-loop seat-map reads in flight at most; a read due beyond it is skipped and counted.
const READS_IN_FLIGHT: usize = 64;
/// Journeys begun before the window's end are given this long to finish.
const DRAIN: Duration = Duration::from_secs(60);
const PARALLELISM: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimKind {
    Hold,
    /// An order waiting for its payment.
    Order,
    /// A confirmed order.
    Sold,
}

/// Seats certainly someone's over an interval (nanoseconds after the run's origin).
#[derive(Debug, Clone)]
pub struct Claim {
    pub kind: ClaimKind,
    /// The hold's or the order's.
    pub id: Uuid,
    pub user: u32,
    /// Run-wide seat indices: show × seats per show + the seat's place on its seat map.
    pub seats: Box<[u32]>,
    pub from_ns: u64,
    /// `u64::MAX` while nothing the run did could have ended it.
    pub until_ns: u64,
}

/// An order the run made, and what its payment did.
#[derive(Debug, Clone)]
pub struct Order {
    pub id: Uuid,
    pub user: u32,
    pub seats: Box<[u32]>,
    pub paid: Paid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paid {
    Confirmed {
        ticket: String,
    },
    Declined,
    /// No answer, or one that says neither: the order may or may not be confirmed.
    Unknown,
}

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        #[derive(Default)]
        struct Counters { $($name: AtomicU64),* }
        /// The run's counts.
        #[derive(Debug, Default, Clone, Copy, Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct Counted { $(pub $name: u64),* }
        impl Counters {
            fn now(&self) -> Counted { Counted { $($name: self.$name.load(Relaxed)),* } }
        }
    };
}

counters! {
    journeys, sold_out, map_errors, lost, expired, undecided, held, poll_fallbacks, orders,
    confirmed, declined, released, kept,
    // Every seat map read (the journeys' and the readers'), and the readers' alone.
    maps_read, reads, reads_skipped,
    // HTTP requests of the load (not of the set-up or the checks).
    http,
}

fn add(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

type Answer = Result<(u16, Vec<u8>), &'static str>;

struct Ctx {
    o: SteadyOptions,
    client: reqwest::Client,
    shows: Vec<String>,
    /// Per show, its seat ids in seat-map order.
    seat_ids: Vec<Vec<String>>,
    users: Vec<User>,
    /// Per user: a message arrived on its WebSocket.
    wake: Vec<Notify>,
    /// The hold requests: 202s met with their pushes, as in the flash sale.
    stats: Stats,
    origin: Instant,
    origin_wall: DateTime<Utc>,
    claims: Mutex<Vec<Claim>>,
    orders: Mutex<Vec<Order>>,
    n: Counters,
    /// Failed calls other than the hold request, by call and answer.
    errors: Mutex<BTreeMap<String, u64>>,
    seat_map_latency: Mutex<Histogram<u64>>,
    /// POST /orders sent → confirm-payment answered.
    buy_latency: Mutex<Histogram<u64>>,
    /// The journeys are over: the readers stop.
    done: AtomicBool,
}

fn record(h: &Mutex<Histogram<u64>>, from: Instant, to: Instant) {
    let us = to.saturating_duration_since(from).as_micros() as u64;
    h.lock().expect("histogram").saturating_record(us);
}

impl Ctx {
    fn ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_nanos() as u64
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1/{path}", self.o.base)
    }

    fn claim(&self, kind: ClaimKind, id: Uuid, u: usize, seats: &[u32], from_ns: u64) -> usize {
        let mut claims = self.claims.lock().expect("claims");
        claims.push(Claim {
            kind,
            id,
            user: u as u32,
            seats: seats.into(),
            from_ns,
            until_ns: u64::MAX,
        });
        claims.len() - 1
    }

    fn end_claim(&self, i: usize, at: Instant) {
        let c = &mut self.claims.lock().expect("claims")[i];
        c.until_ns = c.until_ns.min(self.ns(at));
    }

    fn failed(&self, call: &str, answer: &Answer) {
        let what = match answer {
            Ok((status, body)) => format!("{call}: {status} {}", error_code(body)),
            Err(kind) => format!("{call}: {kind}"),
        };
        *self.errors.lock().expect("errors").entry(what).or_default() += 1;
    }

    /// A POST under an `Idempotency-Key`, tried again under the same key while that may help.
    /// Returns the last answer, when the first try was sent and when the last was answered.
    async fn post(&self, u: usize, url: &str, body: Option<&Value>) -> (Answer, Instant, Instant) {
        let key = Uuid::new_v4().to_string();
        let first = Instant::now();
        let mut attempt = 1;
        loop {
            let mut request = self
                .client
                .post(url)
                .header("Idempotency-Key", key.as_str());
            request = request.header(AUTHORIZATION, self.users[u].auth.clone());
            if let Some(body) = body {
                request = request.json(body);
            }
            add(&self.n.http);
            let answer = match request.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body = resp.bytes().await.map_err(|e| transport_kind(&e));
                    body.map(|b| (status, b.to_vec()))
                }
                Err(e) => Err(transport_kind(&e)),
            };
            let again = answer.as_ref().map_or(true, |(status, body)| {
                *status >= 500 || error_code(body) == "IDEMPOTENCY_KEY_IN_FLIGHT"
            });
            if !again || attempt == ATTEMPTS {
                return (answer, first, Instant::now());
            }
            attempt += 1;
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    async fn read_map(&self, show: usize) -> Option<SeatMapInfo> {
        add(&self.n.http);
        let sent = Instant::now();
        let map = fetch_seat_map(&self.client, &self.o.base, &self.shows[show]).await;
        if map.is_ok() {
            add(&self.n.maps_read);
            record(&self.seat_map_latency, sent, Instant::now());
        } else {
            add(&self.n.map_errors);
        }
        map.ok()
    }

    /// The request's result, and when it was known: its push, or polling once no push has
    /// come within [`PUSH_WAIT`] of the 202.
    async fn result_of(
        &self,
        u: usize,
        id: Uuid,
        answered: Instant,
    ) -> Option<(Outcome, Option<Uuid>, u64)> {
        let pushed = || {
            self.stats
                .pushed(id)
                .map(|p| (p.outcome, p.hold_id, p.received_ns))
        };
        let push_by = answered + PUSH_WAIT;
        while Instant::now() < push_by {
            if let Some(result) = pushed() {
                return Some(result);
            }
            tokio::select! {
                _ = self.wake[u].notified() => {}
                _ = tokio::time::sleep_until(push_by.into()) => {}
            }
        }
        add(&self.n.poll_fallbacks);
        let give_up = Instant::now() + POLL_FOR;
        let url = self.url(&format!("booking-requests/{id}"));
        while Instant::now() < give_up {
            if let Some(result) = pushed() {
                return Some(result);
            }
            add(&self.n.http);
            if let Ok(v) = get_json::<Value>(&self.client, url.clone(), &self.users[u].auth).await
                && let Some(status) = v["status"].as_str().filter(|s| verify::terminal(s))
            {
                let hold = v["holdId"].as_str().and_then(|h| h.parse().ok());
                return Some((Outcome::parse(status), hold, self.ns(Instant::now())));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        None
    }
}

/// What the run found.
pub struct SteadyOutcome {
    pub opts: SteadyOptions,
    pub started: Option<String>,
    pub setup_time: Duration,
    /// From the start of the load until the last journey ended.
    pub load_time: Duration,
    pub counts: Counted,
    pub hold_requests: Snapshot,
    pub rejected_by_code: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    /// POST /holds sent → BOOKING_RESULT received, and → 202 read.
    pub result_latency: Histogram<u64>,
    pub post_latency: Histogram<u64>,
    pub seat_map_latency: Histogram<u64>,
    pub buy_latency: Histogram<u64>,
    pub cpu: Option<CpuUse>,
    pub server_cpu_seconds: Option<f64>,
    pub loadgen_cpu_seconds: Option<f64>,
    pub checks: Checks,
}

impl SteadyOutcome {
    pub fn passed(&self) -> bool {
        self.checks.passed()
    }
}

/// The checks' figures, by check; a figure that must be 0 and is not is a problem.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    pub groups: Vec<(&'static str, Vec<(&'static str, u64)>)>,
    pub problems: Vec<String>,
}

impl Checks {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// A figure of a check (0 if there is none of that name).
    pub fn get(&self, group: &str, figure: &str) -> u64 {
        let figures = self.groups.iter().filter(|(g, _)| *g == group);
        let mut all = figures.flat_map(|(_, f)| f.iter());
        all.find(|(f, _)| *f == figure).map_or(0, |&(_, n)| n)
    }

    /// Adds a check: its figures, each with whether it must be 0.
    fn add(&mut self, group: &'static str, figures: &[(&'static str, u64, bool)]) {
        for &(what, n, must_be_zero) in figures {
            if must_be_zero && n > 0 {
                self.problems.push(format!("{group}: {what} {n}"));
            }
        }
        let figures = figures.iter().map(|&(what, n, _)| (what, n)).collect();
        self.groups.push((group, figures));
    }
}

pub async fn run(mut o: SteadyOptions) -> Result<SteadyOutcome, String> {
    let server;
    (o.base, o.ws_base, server) = server::reach(&mut o.common, o.users).await?;
    let started = server.as_ref().map(|s| format!("pid {}", s.pid));
    if let Some(s) = &started {
        eprintln!("loadgen: started a server ({s}) on {}", o.base);
    }
    let outcome = run_against(o, started).await;
    server::stop(server).await;
    outcome
}

fn row_label(r: usize) -> String {
    let letter = |i: usize| char::from(b'A' + i as u8);
    match r {
        0..26 => letter(r).to_string(),
        _ => format!("{}{}", letter(r / 26 - 1), letter(r % 26)),
    }
}

/// One new movie and its shows, through the admin catalog routes: the shows' ids.
async fn create_shows(
    client: &reqwest::Client,
    o: &SteadyOptions,
    admin: &str,
) -> Result<Vec<String>, String> {
    let url = |path: &str| format!("{}/api/v1/admin/{path}", o.base);
    let movie = json!({ "title": format!("loadgen steady {}", o.seed), "durationMinutes": 100,
                        "language": "en" });
    let movie = admin_call(client, Method::POST, &url("movies"), admin, Some(movie)).await?;
    let rows = o.seats_per_show.div_ceil(ROW);
    let rows: Vec<Value> = (0..rows)
        .map(|r| {
            let category = if r < rows / 2 { "STALLS" } else { "CIRCLE" };
            let seats = ROW.min(o.seats_per_show - r * ROW);
            json!({ "row": row_label(r), "seats": seats, "category": category })
        })
        .collect();
    let category = |code: &str, name: &str, cents: u32| json!({ "code": code, "name": name, "priceCents": cents, "currency": "EUR" });
    let categories = [
        category("STALLS", "Stalls", 950),
        category("CIRCLE", "Circle", 1350),
    ];
    let layout = json!({ "categories": categories, "rows": rows });
    let mut shows = Vec::with_capacity(o.shows);
    for i in 0..o.shows {
        let starts = Utc::now() + chrono::Duration::days(7) + chrono::Duration::hours(i as i64);
        let show = json!({ "movieId": movie["movieId"], "startsAt": starts.to_rfc3339(),
                           "auditorium": format!("Screen {}", i + 1), "layout": layout });
        let show = admin_call(client, Method::POST, &url("shows"), admin, Some(show)).await?;
        let id = show["showId"].as_str().ok_or("a show without showId")?;
        shows.push(id.to_owned());
    }
    Ok(shows)
}

async fn run_against(o: SteadyOptions, started: Option<String>) -> Result<SteadyOutcome, String> {
    let setup_started = Instant::now();
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(o.users + READS_IN_FLIGHT)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let ttl = chrono::Duration::seconds(o.duration.as_secs() as i64 + 3600);
    let admin = format!("{}admin", o.user_prefix);
    let admin = token::mint(&o.common.secret, &admin, true, ttl);
    let shows = create_shows(&client, &o, &admin).await?;
    let mut seat_ids = Vec::with_capacity(shows.len());
    for show in &shows {
        let map = fetch_seat_map(&client, &o.base, show).await?;
        if map.seats.len() != o.seats_per_show || map.status.iter().any(|s| s != "AVAILABLE") {
            return Err(format!(
                "show {show} was not made {} free seats",
                o.seats_per_show
            ));
        }
        seat_ids.push(map.seats);
    }
    let mut users = Vec::with_capacity(o.users);
    let mut sockets = Vec::with_capacity(o.users);
    let opened = futures_util::stream::iter(1..=o.users)
        .map(|n| {
            let who = format!("{}{n}", o.user_prefix);
            let token = token::mint(&o.common.secret, &who, false, ttl);
            let ws_base = &o.ws_base;
            async move { (sockets::open(ws_base, &token, &who, None).await, token) }
        })
        .buffered(CONNECT_PARALLELISM)
        .collect::<Vec<_>>()
        .await;
    for (ws, token) in opened {
        sockets.push(ws?);
        let auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())?;
        users.push(User { auth });
    }
    let origin = Instant::now();
    let ctx = Arc::new(Ctx {
        client,
        wake: (0..o.users).map(|_| Notify::new()).collect(),
        shows,
        seat_ids,
        users,
        stats: Stats::new(origin),
        origin,
        origin_wall: Utc::now(),
        claims: Mutex::default(),
        orders: Mutex::default(),
        n: Counters::default(),
        errors: Mutex::default(),
        seat_map_latency: Mutex::new(histogram()),
        buy_latency: Mutex::new(histogram()),
        done: AtomicBool::new(false),
        o,
    });
    let (closing, _) = watch::channel(false);
    let listeners: Vec<_> = (sockets.into_iter().enumerate())
        .map(|(u, ws)| tokio::spawn(listen(ctx.clone(), u, ws, closing.subscribe())))
        .collect();
    let setup_time = setup_started.elapsed();
    if !ctx.o.common.quiet {
        eprintln!(
            "loadgen: {} shows made and {} WebSockets connected in {:.0} ms; starting load",
            ctx.shows.len(),
            ctx.users.len(),
            setup_time.as_secs_f64() * 1e3
        );
    }

    let pids = &ctx.o.common.server_pids;
    let server_before = cpu::processes_ticks(pids);
    let (own_before, cpu_before) = (cpu::process_ticks(std::process::id()), cpu::sample());
    let start = Instant::now();
    ctx.stats.load_starts(start);
    let end = start + ctx.o.duration;
    let progress = progress(&ctx, start);
    let readers = tokio::spawn(read_maps(ctx.clone()));
    let journeys: Vec<_> = (0..ctx.o.users)
        .map(|u| tokio::spawn(user(ctx.clone(), u, end)))
        .collect();
    let (mut cut_off, drained_by) = (0, end + DRAIN);
    for j in journeys {
        let abort = j.abort_handle();
        if tokio::time::timeout_at(drained_by.into(), j).await.is_err() {
            abort.abort();
            cut_off += 1;
        }
    }
    ctx.done.store(true, Relaxed);
    let load_end = Instant::now();
    let server_after = cpu::processes_ticks(pids);
    let server_cpu_seconds = (!pids.is_empty())
        .then(|| cpu::processes_seconds(&server_before, &server_after))
        .flatten();
    let own_after = cpu::process_ticks(std::process::id());
    let loadgen_cpu_seconds = cpu::processes_seconds(&[own_before], &[own_after]);
    let cpu = cpu::between(cpu_before, cpu::sample(), (load_end - start).as_secs_f64());
    progress.finish();
    readers.abort();
    let hold_requests = ctx.stats.snapshot();
    let book = ctx.stats.take_book();

    let mut checks = check(&ctx, &book, started.is_some()).await?;
    checks.add("journeys", &[("cut off by the drain's end", cut_off, true)]);
    let _ = closing.send(true);
    let closed = futures_util::future::join_all(listeners);
    let _ = tokio::time::timeout(Duration::from_secs(2), closed).await;
    let taken = |h: &Mutex<Histogram<u64>>| h.lock().expect("histogram").clone();
    Ok(SteadyOutcome {
        started,
        setup_time,
        load_time: load_end - start,
        counts: ctx.n.now(),
        hold_requests,
        rejected_by_code: ctx.stats.rejected_by_code.lock().expect("poisoned").clone(),
        errors: ctx.errors.lock().expect("errors").clone(),
        result_latency: book.e2e,
        post_latency: book.post,
        seat_map_latency: taken(&ctx.seat_map_latency),
        buy_latency: taken(&ctx.buy_latency),
        cpu,
        server_cpu_seconds,
        loadgen_cpu_seconds,
        checks,
        opts: ctx.o.clone(),
    })
}

async fn listen(ctx: Arc<Ctx>, u: usize, mut ws: Ws, mut closing: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    on_message(&ctx.stats, text.as_str(), Instant::now());
                    ctx.wake[u].notify_one();
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return add(&ctx.stats.ws_closed),
                Some(Ok(_)) => {}
            },
            _ = closing.wait_for(|c| *c) => break,
        }
    }
    sockets::close(&mut ws).await;
}

/// One user: journeys, a pause around `--think` apart, until `end`.
async fn user(ctx: Arc<Ctx>, u: usize, end: Instant) {
    let mut rng = Rng::new(ctx.o.seed ^ (u as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    // Per show, the claim of the hold this user keeps there.
    let mut kept: HashMap<usize, usize> = HashMap::new();
    while Instant::now() < end {
        journey(&ctx, u, &mut rng, &mut kept).await;
        add(&ctx.n.journeys);
        let pause = ctx.o.think.mul_f64(2.0 * rng.unit());
        tokio::time::sleep_until((Instant::now() + pause).min(end).into()).await;
    }
}

async fn journey(ctx: &Ctx, u: usize, rng: &mut Rng, kept: &mut HashMap<usize, usize>) {
    let show = rng.below(ctx.shows.len());
    let Some(map) = ctx.read_map(show).await else {
        return;
    };
    let mut free: Vec<u32> = (0..map.status.len() as u32)
        .filter(|&i| map.status[i as usize] == "AVAILABLE")
        .collect();
    if free.is_empty() {
        return add(&ctx.n.sold_out);
    }
    let k = (1 + rng.below(3)).min(free.len());
    for i in 0..k {
        let j = i + rng.below(free.len() - i);
        free.swap(i, j);
    }
    let first_seat = (show * ctx.o.seats_per_show) as u32;
    let seats: Box<[u32]> = free[..k].iter().map(|&i| first_seat + i).collect();
    let names: Vec<&str> = free[..k]
        .iter()
        .map(|&i| map.seats[i as usize].as_str())
        .collect();
    let body = json!({ "showId": ctx.shows[show], "seatIds": names });
    // Granted, this request replaces the user's kept hold on the show: from the moment it may
    // arrive, that hold is no longer certainly live.
    let replaced = kept.remove(&show);
    let stats = &ctx.stats;
    add(&stats.sent);
    add(&stats.in_flight);
    let (answer, sent, answered) = ctx.post(u, &ctx.url("holds"), Some(&body)).await;
    stats.in_flight.fetch_sub(1, Relaxed);
    if let Some(c) = replaced {
        ctx.end_claim(c, sent);
    }
    let id = match answer {
        Ok((202, body)) => match serde_json::from_slice::<AcceptedBody>(&body) {
            Ok(a) => a.request_id,
            Err(_) => return stats.rejected("202 (body without requestId)".into(), answered),
        },
        Ok((status, body)) => {
            // After a 5xx, even retried under its key, the request may have been stored.
            if status >= 500 {
                stats.maybe_accepted(seats, sent);
            }
            return stats.rejected(format!("{status} {}", error_code(&body)), answered);
        }
        Err(kind) => {
            stats.maybe_accepted(seats, sent);
            return stats.transport_error(kind);
        }
    };
    stats.accepted(id, u as u32, seats.clone(), sent, answered);
    let (hold, claim) = match ctx.result_of(u, id, answered).await {
        Some((Outcome::Success, Some(hold), at)) => {
            add(&ctx.n.held);
            (hold, ctx.claim(ClaimKind::Hold, hold, u, &seats, at))
        }
        Some((Outcome::Failed, ..)) => return add(&ctx.n.lost),
        Some((Outcome::Expired, ..)) => return add(&ctx.n.expired),
        // No decision, SUCCESS without a hold, or a status the API does not have: the checks
        // say which.
        _ => return add(&ctx.n.undecided),
    };
    let choice = rng.unit();
    if choice < ctx.o.pay {
        buy(ctx, u, (hold, claim), seats, rng.unit() < ctx.o.decline).await;
    } else if choice < ctx.o.pay + ctx.o.release {
        let url = ctx.url(&format!("holds/{hold}/release"));
        let (answer, sent, _) = ctx.post(u, &url, None).await;
        ctx.end_claim(claim, sent);
        match answer {
            Ok((200, _)) => add(&ctx.n.released),
            other => ctx.failed("POST /holds/{id}/release", &other),
        }
    } else {
        add(&ctx.n.kept);
        kept.insert(show, claim);
    }
}

/// The hold turned into an order, and the order paid with `tok_visa`, or, when `decline`,
/// with the card the mock provider declines.
async fn buy(ctx: &Ctx, u: usize, (hold, claim): (Uuid, usize), seats: Box<[u32]>, decline: bool) {
    let body = json!({ "holdId": hold });
    let (answer, sent, answered) = ctx.post(u, &ctx.url("orders"), Some(&body)).await;
    ctx.end_claim(claim, sent);
    let field = |answer: &Answer, status: u16, field: &str| match answer {
        Ok((s, body)) if *s == status => serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v[field].as_str().map(str::to_owned)),
        _ => None,
    };
    let Some(order) = field(&answer, 201, "orderId").and_then(|id| id.parse::<Uuid>().ok()) else {
        return ctx.failed("POST /orders", &answer);
    };
    add(&ctx.n.orders);
    let pending = ctx.claim(ClaimKind::Order, order, u, &seats, ctx.ns(answered));
    let body = json!({ "paymentToken": if decline { "tok_decline" } else { "tok_visa" } });
    let url = ctx.url(&format!("orders/{order}/confirm-payment"));
    let (answer, paid_sent, paid_at) = ctx.post(u, &url, Some(&body)).await;
    ctx.end_claim(pending, paid_sent);
    let confirmed = field(&answer, 200, "status").filter(|s| s == "CONFIRMED");
    let paid = match (confirmed.and(field(&answer, 200, "ticketCode")), &answer) {
        (Some(ticket), _) => {
            add(&ctx.n.confirmed);
            ctx.claim(ClaimKind::Sold, order, u, &seats, ctx.ns(paid_at));
            Paid::Confirmed { ticket }
        }
        (None, Ok((402, _))) => {
            add(&ctx.n.declined);
            Paid::Declined
        }
        (None, other) => {
            ctx.failed("POST /orders/{id}/confirm-payment", other);
            Paid::Unknown
        }
    };
    if paid != Paid::Unknown {
        record(&ctx.buy_latency, sent, paid_at);
    }
    let order = Order {
        id: order,
        user: u as u32,
        seats,
        paid,
    };
    ctx.orders.lock().expect("orders").push(order);
}

/// Seat maps of random shows at `--reads-per-sec`, open loop: a read is due at its time
/// whatever became of the earlier ones, and one due while [`READS_IN_FLIGHT`] are in flight
/// is skipped and counted, so the offered rate stays what it says.
async fn read_maps(ctx: Arc<Ctx>) {
    if ctx.o.reads_per_sec <= 0.0 {
        return;
    }
    let limit = Arc::new(Semaphore::new(READS_IN_FLIGHT));
    let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / ctx.o.reads_per_sec));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut rng = Rng::new(ctx.o.seed ^ 0x5EA7_4EAD);
    while !ctx.done.load(Relaxed) {
        every.tick().await;
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            add(&ctx.n.reads_skipped);
            continue;
        };
        let (ctx, show) = (ctx.clone(), rng.below(ctx.shows.len()));
        tokio::spawn(async move {
            if ctx.read_map(show).await.is_some() {
                add(&ctx.n.reads);
            }
            drop(permit);
        });
    }
}

fn progress(ctx: &Arc<Ctx>, start: Instant) -> Progress {
    let ctx = ctx.clone();
    let (quiet, window) = (ctx.o.common.quiet, ctx.o.duration);
    let mut last = Counted::default();
    Progress::lines(quiet, window, start, move |dt| {
        let n = ctx.n.now();
        let rate = |now: u64, then: u64| (now - then) as f64 / dt;
        let text = format!(
            "journeys {:5.0}/s holds {:5.0}/s orders confirmed {:5.0}/s seat maps {:5.0}/s | hold requests in flight {:4}",
            rate(n.journeys, last.journeys),
            rate(n.held, last.held),
            rate(n.confirmed, last.confirmed),
            rate(n.maps_read, last.maps_read),
            ctx.stats.in_flight.load(Relaxed),
        );
        last = n;
        (!ctx.done.load(Relaxed)).then_some(text)
    })
}

/// Reads what the checks need (every request polled, kept holds and confirmed orders read
/// back, every show's seat map) and judges it.
async fn check(ctx: &Ctx, book: &Book, sole_client: bool) -> Result<Checks, String> {
    let records = &book.records;
    if !ctx.o.common.quiet {
        eprintln!(
            "loadgen: checking: polling {} accepted requests",
            records.len()
        );
    }
    let every = (0..records.len()).collect();
    let polled = poll_requests(&ctx.client, &ctx.o.base, &ctx.users, records, every).await;
    let late = await_late_results(&ctx.stats, records, &polled).await;
    let per_show = ctx.o.seats_per_show;
    let seats = ctx.shows.len() * per_show;
    let evidence = Evidence {
        records,
        polled,
        late,
        // The shows are the run's own: every seat was free when it began.
        available_at_start: vec![true; seats],
        unanswered: &book.unanswered,
        sole_client,
        ..Evidence::default()
    };
    let mut v = Verification::default();
    verify::exactly_once(&evidence, &mut v);
    let f = verify::fairness(&evidence);
    let mut c = Checks::default();
    c.add(
        "exactly one result",
        &[
            ("accepted", records.len() as u64, false),
            ("results missing", v.results_missing, true),
            ("duplicated", v.results_duplicated, true),
            ("conflicting", v.results_conflicting, true),
            ("pushed after the drain", v.results_after_the_drain, false),
            ("polled", v.polled, false),
            ("poll errors", v.poll_errors, true),
            ("undecided", v.poll_not_terminal, true),
            ("polls disagreeing", v.poll_disagrees, true),
        ],
    );
    c.add(
        "fairness",
        &[
            ("FAILED requests", f.failed_checked, false),
            ("lost to an earlier one", f.explained, false),
            ("order not provable", f.order_unknown, false),
            ("lost to a later one", f.violations, true),
        ],
    );

    let mut claims = ctx.claims.lock().expect("claims").clone();
    let orders = ctx.orders.lock().expect("orders").clone();
    // Kept holds end at their expiry, which only the server knows.
    let kept: Vec<usize> = (0..claims.len())
        .filter(|&i| claims[i].kind == ClaimKind::Hold && claims[i].until_ns == u64::MAX)
        .collect();
    let paths = kept
        .iter()
        .map(|&i| (format!("holds/{}", claims[i].id), claims[i].user));
    let read = read_back(ctx, paths.collect()).await;
    // Every read was made before this instant: a hold expiring after it was read as it was.
    let read_by = ctx.ns(Instant::now());
    let (mut read_errors, mut not_held) = (0, 0);
    for (&i, answer) in kept.iter().zip(read) {
        let hold = answer.ok().and_then(|h| {
            let at = h["expiresAt"].as_str()?.parse::<DateTime<Utc>>().ok()?;
            let ns = (at - ctx.origin_wall).num_nanoseconds().unwrap_or(i64::MAX);
            Some((ns.max(0) as u64, h["status"] == "HELD"))
        });
        match hold {
            Some((expires_ns, held)) => {
                claims[i].until_ns = expires_ns;
                not_held += u64::from(!held && expires_ns > read_by);
            }
            None => read_errors += 1,
        }
    }
    c.add(
        "kept holds",
        &[
            ("read back", kept.len() as u64, false),
            ("read errors", read_errors, true),
            ("not HELD before their expiry", not_held, true),
        ],
    );

    let confirmed: Vec<(&Order, &str)> = (orders.iter())
        .filter_map(|o| match &o.paid {
            Paid::Confirmed { ticket } => Some((o, ticket.as_str())),
            _ => None,
        })
        .collect();
    let paths = confirmed
        .iter()
        .map(|(o, _)| (format!("orders/{}", o.id), o.user));
    let read = read_back(ctx, paths.collect()).await;
    let name = |s: u32| ctx.seat_ids[s as usize / per_show][s as usize % per_show].as_str();
    let (mut read_errors, mut otherwise) = (0, 0);
    for ((o, ticket), answer) in confirmed.iter().zip(read) {
        let Ok(v) = answer else {
            read_errors += 1;
            continue;
        };
        let ours: HashSet<&str> = o.seats.iter().map(|&s| name(s)).collect();
        let seats = v["seatIds"].as_array().into_iter().flatten();
        let read: HashSet<&str> = seats.filter_map(Value::as_str).collect();
        let as_confirmed = v["status"] == "CONFIRMED" && v["ticketCode"] == *ticket;
        otherwise += u64::from(!as_confirmed || ours != read);
    }
    c.add(
        "confirmed orders",
        &[
            ("read back", confirmed.len() as u64, false),
            ("read errors", read_errors, true),
            ("read otherwise (status, seats, ticket)", otherwise, true),
        ],
    );

    let mut booked = vec![false; seats];
    for (s, show) in ctx.shows.iter().enumerate() {
        let map = fetch_seat_map(&ctx.client, &ctx.o.base, show).await?;
        for (i, status) in map.status.iter().enumerate().take(per_show) {
            booked[s * per_show + i] = status == "BOOKED";
        }
    }
    judge(&mut c, &claims, &orders, &booked, sole_client);
    Ok(c)
}

/// Judges the claims, the orders and the final seat maps (`booked_at_end`: per run-wide seat,
/// BOOKED). A BOOKED seat of no confirmed order counts only for a `sole_client`, and never
/// for an order whose payment's outcome the run did not learn.
pub fn judge(
    c: &mut Checks,
    claims: &[Claim],
    orders: &[Order],
    booked_at_end: &[bool],
    sole_client: bool,
) {
    let mut by_seat: HashMap<u32, Vec<(u64, u64)>> = HashMap::new();
    for claim in claims.iter().filter(|c| c.from_ns < c.until_ns) {
        for &s in claim.seats.iter() {
            by_seat
                .entry(s)
                .or_default()
                .push((claim.from_ns, claim.until_ns));
        }
    }
    let mut claimed_twice = 0;
    for spans in by_seat.values_mut() {
        spans.sort_unstable();
        let mut until = 0;
        let twice = spans.iter().any(|&(from, to)| {
            let overlaps = from < until;
            until = until.max(to);
            overlaps
        });
        claimed_twice += u64::from(twice);
    }
    let mut sold: HashMap<u32, u32> = HashMap::new();
    let mut maybe_sold = vec![false; booked_at_end.len()];
    let (mut tickets, mut tickets_twice, mut not_booked) = (HashSet::new(), 0, 0);
    for o in orders {
        match &o.paid {
            Paid::Confirmed { ticket } => {
                tickets_twice += u64::from(!tickets.insert(ticket.as_str()));
                for &s in o.seats.iter() {
                    *sold.entry(s).or_default() += 1;
                    not_booked +=
                        u64::from(!booked_at_end.get(s as usize).copied().unwrap_or(false));
                }
            }
            Paid::Unknown => o.seats.iter().for_each(|&s| maybe_sold[s as usize] = true),
            Paid::Declined => {}
        }
    }
    let booked_without = (0..booked_at_end.len())
        .filter(|&s| booked_at_end[s] && !sold.contains_key(&(s as u32)) && !maybe_sold[s])
        .count() as u64;
    c.add(
        "no seat twice",
        &[
            ("certain claims", claims.len() as u64, false),
            ("seats claimed twice at once", claimed_twice, true),
            (
                "seats in two confirmed orders",
                sold.values().filter(|&&n| n > 1).count() as u64,
                true,
            ),
            ("ticket codes given twice", tickets_twice, true),
        ],
    );
    c.add(
        "final seat maps",
        &[
            ("sold seats not BOOKED", not_booked, true),
            // Judged only when nobody else books on the server.
            (
                "BOOKED seats of no confirmed order",
                booked_without,
                sole_client,
            ),
        ],
    );
}

/// Reads each `(path, user)` as its user, in order.
async fn read_back(ctx: &Ctx, paths: Vec<(String, u32)>) -> Vec<Result<Value, String>> {
    futures_util::stream::iter(paths)
        .map(|(path, user)| get_json(&ctx.client, ctx.url(&path), &ctx.users[user as usize].auth))
        .buffered(PARALLELISM)
        .collect()
        .await
}

/// The report on stdout.
pub fn print(o: &SteadyOutcome) {
    let (opts, n, t) = (&o.opts, &o.counts, o.load_time.as_secs_f64());
    let keep = (1.0 - opts.pay - opts.release).max(0.0);
    println!("== loadgen steady ==");
    println!(
        "config: {}{}; {} new shows of {} seats; {} users, a WebSocket each, set up in {:.0} ms",
        opts.base,
        o.started
            .as_ref()
            .map(|s| format!(" (started by loadgen: {s})"))
            .unwrap_or_default(),
        opts.shows,
        opts.seats_per_show,
        opts.users,
        o.setup_time.as_secs_f64() * 1e3
    );
    println!(
        "  journeys begun for {:.1} s, {:.2} s apart on average; holds bought {:.0}% ({:.0}% declined), released {:.0}%, kept {:.0}%; {}/s seat-map reads; seed {}",
        opts.duration.as_secs_f64(),
        opts.think.as_secs_f64(),
        opts.pay * 100.0,
        opts.decline * 100.0,
        opts.release * 100.0,
        keep * 100.0,
        opts.reads_per_sec,
        opts.seed
    );
    println!("load: {t:.3} s, from the first journey to the end of the last");
    let rates = [
        ("journeys", n.journeys),
        ("holds granted", n.held),
        ("orders confirmed", n.confirmed),
        ("seat maps read", n.maps_read),
        ("HTTP requests", n.http),
    ];
    let rates: Vec<String> = (rates.iter())
        .map(|(what, k)| format!("{what} {:.1}/s", per_s(*k, t)))
        .collect();
    println!("  {}", rates.join(", "));
    let all = serde_json::to_value(n).unwrap_or_default();
    let all = all
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k} {v}"));
    println!("  counts: {}", all.collect::<Vec<_>>().join(", "));
    let h = &o.hold_requests;
    let by_code = if o.rejected_by_code.is_empty() {
        String::new()
    } else {
        format!(" ({})", counts(&o.rejected_by_code))
    };
    println!(
        "  hold requests: sent {}, accepted {}, rejected {}{by_code}, transport errors {}",
        h.sent, h.accepted, h.rejected, h.transport_errors
    );
    if !o.errors.is_empty() {
        println!("  errors: {}", counts(&o.errors));
    }
    println!("latency, ms");
    for (what, h) in [
        ("POST /holds -> BOOKING_RESULT", &o.result_latency),
        ("POST /holds -> 202", &o.post_latency),
        ("seat map GET", &o.seat_map_latency),
        ("order + payment", &o.buy_latency),
    ] {
        println!("  {what} (n={})\n  {}", h.len(), latency_line(h));
    }
    println!("cpu");
    if let Some(c) = &o.cpu {
        println!(
            "  host: {:.2} of {} cores busy = loadgen {:.2} + server and every other process {:.2}",
            c.host_busy_cores,
            c.cores,
            c.loadgen_cores,
            c.others_cores()
        );
    }
    for (who, seconds) in [
        ("server (--server-pid)", o.server_cpu_seconds),
        ("loadgen", o.loadgen_cpu_seconds),
    ] {
        if let Some(s) = seconds {
            let us = server_us_per_request(s, n.http).unwrap_or(0.0);
            println!("  {who}: {s:.2} s = {us:.0} us per HTTP request");
        }
    }
    println!("checks: {}", if o.passed() { "PASSED" } else { "FAILED" });
    for (group, figures) in &o.checks.groups {
        let figures: Vec<String> = figures
            .iter()
            .map(|(what, n)| format!("{what} {n}"))
            .collect();
        println!("  {group:<20} {}", figures.join(", "));
    }
    for p in &o.checks.problems {
        println!("  problem: {p}");
    }
}

/// The printed report, then the `--report` file and the `--json` line (the same summary).
pub fn publish(o: &SteadyOutcome) -> Result<(), String> {
    print(o);
    let (opts, n, t) = (&o.opts, &o.counts, o.load_time.as_secs_f64());
    let checks: BTreeMap<&str, BTreeMap<&str, u64>> = (o.checks.groups.iter())
        .map(|(group, figures)| (*group, figures.iter().copied().collect()))
        .collect();
    let us = |s: Option<f64>| s.and_then(|s| server_us_per_request(s, n.http));
    let h = &o.hold_requests;
    let summary = json!({
        "scenario": "steady", "base": opts.base, "started": o.started, "seed": opts.seed,
        "shows": opts.shows, "seatsPerShow": opts.seats_per_show, "users": opts.users,
        "durationS": opts.duration.as_secs_f64(), "thinkS": opts.think.as_secs_f64(),
        "readsPerSecOffered": opts.reads_per_sec, "pay": opts.pay, "decline": opts.decline,
        "release": opts.release, "loadS": t, "counts": n,
        "journeysPerS": per_s(n.journeys, t), "holdsPerS": per_s(n.held, t),
        "ordersConfirmedPerS": per_s(n.confirmed, t), "seatMapReadsPerS": per_s(n.maps_read, t),
        "holdRequests": { "sent": h.sent, "accepted": h.accepted, "rejected": h.rejected,
                          "byCode": o.rejected_by_code, "transportErrors": h.transport_errors },
        "errors": o.errors,
        "latencyMs": { "resultPushed": latency_json(&o.result_latency),
                       "accepted": latency_json(&o.post_latency),
                       "seatMap": latency_json(&o.seat_map_latency),
                       "orderAndPayment": latency_json(&o.buy_latency) },
        "hostBusyCores": o.cpu.map(|c| c.host_busy_cores),
        "loadgenCores": o.cpu.map(|c| c.loadgen_cores),
        "serverCpuSeconds": o.server_cpu_seconds,
        "serverCpuUsPerRequest": us(o.server_cpu_seconds),
        "loadgenCpuSeconds": o.loadgen_cpu_seconds,
        "loadgenCpuUsPerRequest": us(o.loadgen_cpu_seconds),
        "checks": checks, "checksPassed": o.passed(), "problems": o.checks.problems,
    });
    if let Some(path) = &opts.report {
        let text = serde_json::to_string_pretty(&summary).map_err(|e| format!("--report: {e}"))?;
        std::fs::write(path, text).map_err(|e| format!("--report {}: {e}", path.display()))?;
        println!("report written to {}", path.display());
    }
    if opts.common.json {
        println!("{summary}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(kind: ClaimKind, seats: &[u32], from_ns: u64, until_ns: u64) -> Claim {
        Claim {
            kind,
            id: Uuid::new_v4(),
            user: 0,
            seats: seats.into(),
            from_ns,
            until_ns,
        }
    }

    fn confirmed(seats: &[u32], ticket: &str) -> Order {
        let paid = Paid::Confirmed {
            ticket: ticket.into(),
        };
        Order {
            id: Uuid::new_v4(),
            user: 0,
            seats: seats.into(),
            paid,
        }
    }

    fn judged(claims: &[Claim], orders: &[Order], booked: &[bool], sole_client: bool) -> Checks {
        let mut c = Checks::default();
        judge(&mut c, claims, orders, booked, sole_client);
        c
    }

    #[test]
    fn claims_that_follow_each_other_pass_and_overlapping_ones_do_not() {
        use ClaimKind::*;
        // Held to 20 and released; seat 2 held again 25..29, its order 30..40, sold from 45.
        let ok = [
            claim(Hold, &[1, 2], 10, 20),
            claim(Hold, &[2], 25, 29),
            claim(Order, &[2], 30, 40),
            claim(Sold, &[2], 45, u64::MAX),
            // Empty: its result was known only after its release had been sent.
            claim(Hold, &[2], 50, 50),
        ];
        let (booked, sold) = ([false, false, true], [confirmed(&[2], "TKT-A")]);
        assert!(judged(&ok, &sold, &booked, true).passed());
        let twice = |c: &Checks| c.get("no seat twice", "seats claimed twice at once");
        let mut claims = ok.to_vec();
        claims.push(claim(Hold, &[1], 15, 16));
        assert_eq!(twice(&judged(&claims, &sold, &booked, true)), 1);
        claims.push(claim(Hold, &[2], 60, 70));
        assert_eq!(
            twice(&judged(&claims, &sold, &booked, true)),
            2,
            "after the sale"
        );
        assert!(!judged(&claims, &sold, &booked, true).passed());
    }

    #[test]
    fn orders_tickets_and_seat_maps_are_judged() {
        let booked = [true, true, false];
        let orders = [confirmed(&[0], "TKT-A"), confirmed(&[0, 1], "TKT-A")];
        let c = judged(&[], &orders, &booked, true);
        assert_eq!(c.get("no seat twice", "seats in two confirmed orders"), 1);
        assert_eq!(c.get("no seat twice", "ticket codes given twice"), 1);
        let orders = [confirmed(&[2], "TKT-B")];
        let c = judged(&[], &orders, &booked, true);
        assert_eq!(c.get("final seat maps", "sold seats not BOOKED"), 1);
        assert_eq!(
            c.get("final seat maps", "BOOKED seats of no confirmed order"),
            2
        );
        assert_eq!(c.problems.len(), 2, "{:?}", c.problems);
        // Against a server others use too, their BOOKED seats are not ours to judge.
        assert_eq!(judged(&[], &orders, &booked, false).problems.len(), 1);
        // A payment whose outcome is unknown may have booked its seats.
        let unknown = Order {
            paid: Paid::Unknown,
            ..confirmed(&[0, 1], "")
        };
        assert!(judged(&[], &[unknown], &booked, true).passed());
    }

    #[test]
    fn row_labels_run_past_z() {
        let labels = [0, 25, 26, 27, 51, 52, 701].map(row_label);
        assert_eq!(labels, ["A", "Z", "AA", "AB", "AZ", "BA", "ZZ"]);
    }
}
