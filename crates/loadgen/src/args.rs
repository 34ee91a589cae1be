//! The command line (clap): the scenarios as subcommands, and their options resolved into the
//! plain [`Options`] the runs work from (defaults filled in, `--quick` applied, the base URL
//! checked), so that the runs never look at clap's types.

use crate::faults::Faults;
use crate::token::{DEV_JWT_SECRET, GRAND_HALL};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "The flash-sale tool: drives a seatbook server the way a sale's crowd does, measures \
             it, and verifies afterwards that no seat was held twice, every accepted request was \
             decided exactly once and contested seats went to the earliest request.",
    after_help = "Exit status: 0 when the run completed and every check passed, 1 when a check \
                  failed or the run could not be made, 2 for a bad command line."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One hot show: many users, each with a WebSocket, most asking for the same best seats,
    /// single and multi-seat; POST → BOOKING_RESULT latency, throughput, server CPU per request,
    /// then the checks.
    FlashSale(Box<FlashSaleArgs>),
    /// Many idle WebSockets: the server's resident memory per socket.
    Sockets(SocketsArgs),
    /// A premiere's crowd at a show's waiting room: arrivals before and after the opening, let
    /// in at the room's rate; then the checks of admission order, rate and the pre-queue's fair
    /// draw.
    WaitingRoom(WaitingRoomArgs),
    /// Ordinary traffic over many shows, the complement of a flash sale: users reading seat
    /// maps, holding a few free seats and buying, releasing or keeping them, beside open-loop
    /// seat-map readers; then the checks of results, holds, orders, tickets and seat maps.
    Steady(Box<SteadyArgs>),
}

/// Where the server is: a URL, or one this tool starts.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// Server base URL; only loopback hosts (127.0.0.1, localhost, `[::1]`) unless --allow-remote.
    #[arg(
        long,
        default_value = "http://127.0.0.1:3000",
        conflicts_with = "start"
    )]
    pub base: String,
    /// Allow a --base whose host is not loopback.
    #[arg(long)]
    pub allow_remote: bool,
    /// Start a server for the run (fresh data directory, limits that are about something else
    /// turned off) and stop it afterwards: `embedded`, or `postgres` (with --database-url, and
    /// --redis-url or a Redis of the tool's own).
    #[arg(long, value_enum)]
    pub start: Option<StartBackend>,
    /// The `seatbook` binary --start runs (default: `seatbook` next to this program).
    #[arg(long, requires = "start")]
    pub server_bin: Option<PathBuf>,
    /// PostgreSQL for `--start postgres` (use a database of its own: the run writes to it).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Redis for `--start postgres` (default: a `redis-server` of the tool's own, in memory).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Processes whose CPU (or, for `sockets`, memory) counts as the server's: the server, and
    /// PostgreSQL's and Redis's processes to count the databases too (repeat or comma-separate).
    /// --start adds the server it starts.
    #[arg(long = "server-pid", value_delimiter = ',')]
    pub server_pids: Vec<u32>,
    /// HS256 secret for the minted JWTs (default: JWT_SECRET from the environment, else the
    /// local server's development secret).
    #[arg(long)]
    pub secret: Option<String>,
    /// Tokio worker threads (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// No progress display on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Print a one-line JSON summary as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StartBackend {
    Embedded,
    Postgres,
}

#[derive(Debug, Clone, Args)]
pub struct FlashSaleArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Show to load (default: the demo's 500-seat Grand Hall premiere).
    #[arg(long, default_value = GRAND_HALL)]
    pub show: String,
    /// A short run that checks the invariants (300 users, 3 s closed loop, every request
    /// polled); options given explicitly still win. Timings are reported, not judged.
    #[arg(long)]
    pub quick: bool,
    /// Requests/s offered, open loop (sends at fixed intervals whatever the answers); 0 = closed
    /// loop: --concurrency workers send back to back [default: 0].
    #[arg(long, value_parser = rate)]
    pub rate: Option<f64>,
    /// Length of the send window, seconds [default: 10].
    #[arg(long, value_parser = window_seconds)]
    pub duration: Option<f64>,
    /// Distinct users, one WebSocket each [default: 10000].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub users: Option<u32>,
    /// Seats in a single-seat request (default 1); see --multi-share for the others.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub seats: u16,
    /// Share of requests asking for 2 to --max-seats seats [default: 0.2].
    #[arg(long, value_parser = share)]
    pub multi_share: Option<f64>,
    /// Most seats in a multi-seat request.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(2..=1000))]
    pub max_seats: u16,
    /// Share of requests that ask only for the best seats [default: 0.8].
    #[arg(long, value_parser = share)]
    pub hot_share: Option<f64>,
    /// How many seats are "the best seats": the most central ones [default: 50].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub hot_seats: Option<u32>,
    /// Most POSTs in flight; in open loop a send that finds the limit reached is skipped and
    /// counted, not delayed [default: 256].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub concurrency: Option<u32>,
    /// After sending stops, wait at most this long for outstanding answers and results, seconds
    /// [default: 10].
    #[arg(long, value_parser = drain_seconds)]
    pub drain: Option<f64>,
    /// Hard cap on requests sent.
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub max_requests: u64,
    /// Per-POST timeout, seconds.
    #[arg(long, default_value_t = 30.0, value_parser = window_seconds)]
    pub timeout: f64,
    /// User id prefix.
    #[arg(long, default_value = "load-")]
    pub user_prefix: String,
    /// Also subscribe every WebSocket to the show (SEATS_CHANGED traffic).
    #[arg(long)]
    pub subscribe: bool,
    /// Random seed for user and seat picks (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Crash the started server (kill -9) this many times during the send window, evenly
    /// spaced, each time starting it again on the same port and data; the checks then also
    /// prove that nothing accepted was lost.
    #[arg(long, default_value_t = 0, requires = "start", value_parser = clap::value_parser!(u16).range(0..=100))]
    pub kill: u16,
    /// Flush the started server's Redis (FLUSHDB) this many times during the window: every
    /// seat lock and cached seat map gone at once (needs --start postgres).
    #[arg(long, default_value_t = 0, requires = "start", value_parser = clap::value_parser!(u16).range(0..=100))]
    pub redis_flush: u16,
    /// Stop the tool's own Redis (kill -9) this many times during the window, each for
    /// --outage seconds, then start it again, empty (needs --start postgres without
    /// --redis-url).
    #[arg(long, default_value_t = 0, requires = "start", value_parser = clap::value_parser!(u16).range(0..=100))]
    pub redis_stop: u16,
    /// Cut the started server off from PostgreSQL this many times during the window, each for
    /// --outage seconds, as a database restart does: new connections to the run's database
    /// refused, every open one terminated (needs --start postgres, psql, and a role that may
    /// alter the database).
    #[arg(long, default_value_t = 0, requires = "start", value_parser = clap::value_parser!(u16).range(0..=100))]
    pub postgres_outage: u16,
    /// How long each --redis-stop and --postgres-outage lasts, seconds.
    #[arg(long, default_value_t = 2.0, value_parser = outage_seconds)]
    pub outage: f64,
    /// Have the started server deliver every batch to its decider twice, as SQS redelivers a
    /// message whose delete was lost (FAULT_DELIVER_TWICE): the checks then prove that each
    /// request is still decided once (repeated results must agree).
    #[arg(long, requires = "start")]
    pub deliver_twice: bool,
    /// Skip the checks after the run.
    #[arg(long)]
    pub no_verify: bool,
    /// Poll at most this many accepted requests (a random sample) to compare with their
    /// WebSocket results; 0 = every one [default: 0 with --quick, else 20000].
    #[arg(long)]
    pub verify_polls: Option<usize>,
    /// Write the full report (figures, per-second timeline, checks) as JSON to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write an SVG plot of throughput and latency over time to this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct SocketsArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Idle WebSockets to open, one user each.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub count: u32,
    /// Keep them open this long before measuring, seconds (the server settles its buffers).
    #[arg(long, default_value_t = 1.0, value_parser = drain_seconds)]
    pub hold: f64,
    /// User id prefix.
    #[arg(long, default_value = "idle-")]
    pub user_prefix: String,
}

#[derive(Debug, Clone, Args)]
pub struct WaitingRoomArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// People arriving at the room, one user each (default 100,000; --quick 2,000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub arrivals: Option<u32>,
    /// Admissions per second the room is set to (default 2,000; --quick 200): below the
    /// pre-queue's size, so that its draw is let in over several ticks and can be measured.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: Option<u32>,
    /// Share of the arrivals that join before the opening.
    #[arg(long, default_value_t = 0.5, value_parser = share)]
    pub pre_queue: f64,
    /// Arrivals that also hold a WebSocket and hear their admission (default 1,000; --quick
    /// 200): the sample the order checks read.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub observers: Option<u32>,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// The show (default: the demo's Grand Hall premiere).
    #[arg(long, default_value = GRAND_HALL)]
    pub show: String,
    /// User id prefix.
    #[arg(long, default_value = "crowd-")]
    pub user_prefix: String,
    /// A short run, for CI: fewer arrivals and observers.
    #[arg(long)]
    pub quick: bool,
}

#[derive(Debug, Clone, Args)]
pub struct SteadyArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// A short run, for CI: 8 shows of 120 seats, 50 users for 5 s, 50 reads/s; options given
    /// explicitly still win.
    #[arg(long)]
    pub quick: bool,
    /// Shows the run creates, all of one new movie (default 20; --quick 8).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub shows: Option<u32>,
    /// Seats of each show, in rows of 25 (default 300; --quick 120).
    #[arg(long, value_parser = clap::value_parser!(u32).range(3..=20_000))]
    pub seats_per_show: Option<u32>,
    /// Users, each with its own token and WebSocket, each making one journey after another
    /// (default 200; --quick 50).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub users: Option<u32>,
    /// How long journeys are begun, seconds (default 20; --quick 5).
    #[arg(long, value_parser = window_seconds)]
    pub duration: Option<f64>,
    /// Mean pause between one user's journeys, seconds, drawn evenly from nothing to twice it
    /// (default 1; --quick 0.2).
    #[arg(long, value_parser = drain_seconds)]
    pub think: Option<f64>,
    /// Seat-map reads per second of random shows, open loop, besides the journeys' own
    /// (default 200; --quick 50).
    #[arg(long, value_parser = rate)]
    pub reads_per_sec: Option<f64>,
    /// Share of granted holds that are bought: an order, then its payment.
    #[arg(long, default_value_t = 0.6, value_parser = share)]
    pub pay: f64,
    /// Share of those payments made with the card the mock provider declines (`tok_decline`).
    #[arg(long, default_value_t = 0.1, value_parser = share)]
    pub decline: f64,
    /// Share of granted holds released at once; the rest (1 - pay - release) are kept.
    #[arg(long, default_value_t = 0.25, value_parser = share)]
    pub release: f64,
    /// Random seed for shows, seats and choices (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// User id prefix.
    #[arg(long, default_value = "steady-")]
    pub user_prefix: String,
    /// Write the full report (figures and checks) as JSON to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

fn number(value: &str) -> Result<f64, String> {
    let v: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("needs a number, got {value:?}"))?;
    if !v.is_finite() {
        return Err("must be a finite number".into());
    }
    Ok(v)
}

fn between(value: &str, lo: f64, hi: f64) -> Result<f64, String> {
    let v = number(value)?;
    if v < lo || v > hi {
        return Err(format!("must be between {lo} and {hi}, got {v}"));
    }
    Ok(v)
}

fn rate(value: &str) -> Result<f64, String> {
    between(value, 0.0, 1_000_000.0)
}
fn window_seconds(value: &str) -> Result<f64, String> {
    between(value, 0.1, 3600.0)
}
fn drain_seconds(value: &str) -> Result<f64, String> {
    between(value, 0.0, 600.0)
}
fn outage_seconds(value: &str) -> Result<f64, String> {
    between(value, 0.0, 60.0)
}
fn share(value: &str) -> Result<f64, String> {
    between(value, 0.0, 1.0)
}

/// Where the run goes: a URL, or a server to start.
#[derive(Debug, Clone)]
pub enum Target {
    Url { base: String, ws_base: String },
    Start(StartOptions),
}

/// What `--start` needs.
#[derive(Debug, Clone)]
pub struct StartOptions {
    pub backend: StartBackend,
    pub server_bin: PathBuf,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    /// Extra environment for the server (used by tests; not on the command line).
    pub env: Vec<(String, String)>,
}

/// The shared options, resolved.
#[derive(Debug, Clone)]
pub struct Common {
    pub target: Target,
    pub server_pids: Vec<u32>,
    pub secret: String,
    pub secret_source: &'static str,
    pub threads: Option<usize>,
    pub quiet: bool,
    pub json: bool,
}

/// A flash sale, resolved.
#[derive(Debug, Clone)]
pub struct Options {
    pub common: Common,
    /// Filled in once the target is known (after --start).
    pub base: String,
    pub ws_base: String,
    pub show: String,
    /// Requests/s offered; 0 = closed loop.
    pub rate: f64,
    pub duration: Duration,
    pub users: usize,
    pub seats: usize,
    pub multi_share: f64,
    pub max_seats: usize,
    pub hot_share: f64,
    pub hot_seats: usize,
    pub concurrency: usize,
    pub drain: Duration,
    pub max_requests: u64,
    pub timeout: Duration,
    pub user_prefix: String,
    pub subscribe: bool,
    pub seed: u64,
    /// What goes wrong during the window (kill -9, Redis, PostgreSQL) and during the whole run
    /// (batches delivered twice).
    pub faults: Faults,
    pub verify: bool,
    /// 0 = every accepted request.
    pub verify_polls: usize,
    pub report: Option<PathBuf>,
    pub plot: Option<PathBuf>,
}

/// Idle sockets, resolved.
#[derive(Debug, Clone)]
pub struct SocketOptions {
    pub common: Common,
    pub base: String,
    pub ws_base: String,
    pub count: usize,
    pub hold: Duration,
    pub user_prefix: String,
}

/// A waiting room's crowd, resolved.
#[derive(Debug, Clone)]
pub struct RoomOptions {
    pub common: Common,
    pub base: String,
    pub ws_base: String,
    pub show: String,
    pub arrivals: usize,
    pub rate: u32,
    pub pre_queue_share: f64,
    pub observers: usize,
    pub concurrency: usize,
    pub user_prefix: String,
}

/// Steady traffic, resolved.
#[derive(Debug, Clone)]
pub struct SteadyOptions {
    pub common: Common,
    pub base: String,
    pub ws_base: String,
    pub shows: usize,
    pub seats_per_show: usize,
    pub users: usize,
    pub duration: Duration,
    pub think: Duration,
    pub reads_per_sec: f64,
    pub pay: f64,
    pub decline: f64,
    pub release: f64,
    pub seed: u64,
    pub user_prefix: String,
    pub report: Option<PathBuf>,
}

/// A scenario, ready to run.
#[derive(Debug, Clone)]
pub enum Scenario {
    FlashSale(Box<Options>),
    Sockets(Box<SocketOptions>),
    WaitingRoom(Box<RoomOptions>),
    Steady(Box<SteadyOptions>),
}

/// Parses a whole command line (program name first). `env_secret` is `JWT_SECRET`, if set.
pub fn parse_from<I, T>(argv: I, env_secret: Option<String>) -> Result<Scenario, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(argv)?;
    resolve(cli, env_secret).map_err(|message| {
        clap::Error::raw(
            clap::error::ErrorKind::ValueValidation,
            format!("{message}\n"),
        )
    })
}

fn resolve(cli: Cli, env_secret: Option<String>) -> Result<Scenario, String> {
    Ok(match cli.command {
        Command::FlashSale(a) => Scenario::FlashSale(Box::new(flash_sale(*a, env_secret)?)),
        Command::Sockets(a) => {
            let common = common(a.target, env_secret)?;
            Scenario::Sockets(Box::new(SocketOptions {
                common,
                base: String::new(),
                ws_base: String::new(),
                count: a.count as usize,
                hold: Duration::from_secs_f64(a.hold),
                user_prefix: a.user_prefix,
            }))
        }
        Command::WaitingRoom(a) => {
            let common = common(a.target, env_secret)?;
            let arrivals = a.arrivals.unwrap_or(if a.quick { 2_000 } else { 100_000 }) as usize;
            let observers = a.observers.unwrap_or(if a.quick { 200 } else { 1_000 }) as usize;
            Scenario::WaitingRoom(Box::new(RoomOptions {
                common,
                base: String::new(),
                ws_base: String::new(),
                show: a.show,
                arrivals,
                rate: a.rate.unwrap_or(if a.quick { 200 } else { 2_000 }),
                pre_queue_share: a.pre_queue,
                observers: observers.min(arrivals),
                concurrency: a.concurrency as usize,
                user_prefix: a.user_prefix,
            }))
        }
        Command::Steady(a) => Scenario::Steady(Box::new(steady(*a, env_secret)?)),
    })
}

fn steady(a: SteadyArgs, env_secret: Option<String>) -> Result<SteadyOptions, String> {
    if a.pay + a.release > 1.0 {
        return Err(format!(
            "--pay {} and --release {} add up to more than 1",
            a.pay, a.release
        ));
    }
    let q = a.quick;
    let secs = |given: Option<f64>, quick: f64, normal: f64| {
        Duration::from_secs_f64(given.unwrap_or(if q { quick } else { normal }))
    };
    let count = |given: Option<u32>, quick: usize, normal: usize| {
        given.map_or(if q { quick } else { normal }, |n| n as usize)
    };
    Ok(SteadyOptions {
        common: common(a.target, env_secret)?,
        base: String::new(),
        ws_base: String::new(),
        shows: count(a.shows, 8, 20),
        seats_per_show: count(a.seats_per_show, 120, 300),
        users: count(a.users, 50, 200),
        duration: secs(a.duration, 5.0, 20.0),
        think: secs(a.think, 0.2, 1.0),
        reads_per_sec: a.reads_per_sec.unwrap_or(if q { 50.0 } else { 200.0 }),
        pay: a.pay,
        decline: a.decline,
        release: a.release,
        seed: a.seed.unwrap_or_else(clock_seed),
        user_prefix: a.user_prefix,
        report: a.report,
    })
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

fn common(t: TargetArgs, env_secret: Option<String>) -> Result<Common, String> {
    let (secret, secret_source) = match (t.secret, env_secret) {
        (Some(s), _) => (s, "--secret"),
        (None, Some(s)) if !s.is_empty() => (s, "JWT_SECRET"),
        _ => (DEV_JWT_SECRET.to_owned(), "development default"),
    };
    if secret.is_empty() {
        return Err("--secret must not be empty".into());
    }
    let target = match t.start {
        None => {
            let (base, ws_base) = check_base(&t.base, t.allow_remote)?;
            Target::Url { base, ws_base }
        }
        Some(backend) => {
            if backend == StartBackend::Postgres && t.database_url.is_none() {
                return Err("--start postgres needs --database-url (or DATABASE_URL)".into());
            }
            let server_bin = match t.server_bin {
                Some(p) => p,
                None => sibling_server_binary()?,
            };
            Target::Start(StartOptions {
                backend,
                server_bin,
                database_url: t.database_url,
                redis_url: t.redis_url.filter(|u| !u.is_empty()),
                env: Vec::new(),
            })
        }
    };
    Ok(Common {
        target,
        server_pids: t.server_pids,
        secret,
        secret_source,
        threads: t.threads.map(usize::from),
        quiet: t.quiet,
        json: t.json,
    })
}

/// `seatbook` in this program's directory (where cargo puts both).
fn sibling_server_binary() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let bin = me.with_file_name("seatbook");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "--start: no server binary at {} (build it, or pass --server-bin)",
            bin.display()
        ))
    }
}

fn flash_sale(a: FlashSaleArgs, env_secret: Option<String>) -> Result<Options, String> {
    let common = common(a.target, env_secret)?;
    let q = a.quick;
    let pick = |given: Option<f64>, quick: f64, normal: f64| {
        given.unwrap_or(if q { quick } else { normal })
    };
    let seed = a.seed.unwrap_or_else(clock_seed);
    let faults = Faults {
        kills: usize::from(a.kill),
        redis_flushes: usize::from(a.redis_flush),
        redis_stops: usize::from(a.redis_stop),
        postgres_outages: usize::from(a.postgres_outage),
        outage: Duration::from_secs_f64(a.outage),
        deliver_twice: a.deliver_twice,
    };
    check_faults(&faults, &common.target)?;
    let duration = Duration::from_secs_f64(pick(a.duration, 3.0, 10.0));
    faults.schedule(duration)?;
    let seats = usize::from(a.seats);
    let max_seats = usize::from(a.max_seats);
    let multi_share = pick(a.multi_share, 0.3, 0.2);
    if multi_share > 0.0 && max_seats < 2 {
        return Err("--max-seats must be at least 2".into());
    }
    Ok(Options {
        common,
        base: String::new(),
        ws_base: String::new(),
        show: a.show,
        rate: pick(a.rate, 0.0, 0.0),
        duration,
        users: a.users.map_or(if q { 300 } else { 10_000 }, |u| u as usize),
        seats,
        multi_share,
        max_seats,
        hot_share: pick(a.hot_share, 0.8, 0.8),
        hot_seats: a.hot_seats.map_or(if q { 40 } else { 50 }, |h| h as usize),
        concurrency: a
            .concurrency
            .map_or(if q { 64 } else { 256 }, |c| c as usize),
        drain: Duration::from_secs_f64(pick(a.drain, 60.0, 10.0)),
        max_requests: a.max_requests,
        timeout: Duration::from_secs_f64(a.timeout),
        user_prefix: a.user_prefix,
        subscribe: a.subscribe,
        seed,
        faults,
        verify: !a.no_verify,
        verify_polls: a.verify_polls.unwrap_or(if q { 0 } else { 20_000 }),
        report: a.report,
        plot: a.plot,
    })
}

/// Faults that the started server's backend cannot have are refused on the command line, not
/// mid-run.
fn check_faults(f: &Faults, target: &Target) -> Result<(), String> {
    let Target::Start(start) = target else {
        return Ok(());
    };
    let postgres = start.backend == StartBackend::Postgres;
    if !postgres && (f.redis_flushes > 0 || f.redis_stops > 0 || f.postgres_outages > 0) {
        return Err(
            "--redis-flush, --redis-stop and --postgres-outage need --start postgres".into(),
        );
    }
    if f.redis_stops > 0 && start.redis_url.is_some() {
        return Err(
            "--redis-stop stops the tool's own Redis: leave out --redis-url (and REDIS_URL)".into(),
        );
    }
    Ok(())
}

/// Validates the base URL; returns it without a trailing slash and its `ws://` twin.
pub fn check_base(base: &str, allow_remote: bool) -> Result<(String, String), String> {
    let url =
        reqwest::Url::parse(base).map_err(|e| format!("--base {base:?} is not a URL: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "--base must be an http:// URL (this build has no TLS), got {base:?}"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "--base must not have a query or fragment, got {base:?}"
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("--base {base:?} has no host"))?;
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback && !allow_remote {
        return Err(format!(
            "--base host {host:?} is not loopback (127.0.0.1, localhost, [::1]); pass --allow-remote to load a remote server"
        ));
    }
    let http = url.as_str().trim_end_matches('/').to_owned();
    let ws = format!("ws://{}", &http["http://".len()..]);
    Ok((http, ws))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flash(a: &[&str]) -> Result<Options, String> {
        let argv = ["loadgen", "flash-sale"].iter().chain(a).copied();
        match parse_from(argv, None).map_err(|e| e.to_string())? {
            Scenario::FlashSale(o) => Ok(*o),
            _ => Err("another scenario".into()),
        }
    }

    fn base_of(o: &Options) -> (&str, &str) {
        match &o.common.target {
            Target::Url { base, ws_base } => (base, ws_base),
            Target::Start(_) => panic!("a started server"),
        }
    }

    #[test]
    fn defaults_are_a_flash_sale_of_ten_thousand_users() {
        let o = flash(&[]).unwrap();
        assert_eq!(
            base_of(&o),
            ("http://127.0.0.1:3000", "ws://127.0.0.1:3000")
        );
        assert_eq!(o.show, "5e0c1a6e-8f1e-4c3a-9b2d-000000000001");
        assert_eq!(o.users, 10_000);
        assert_eq!((o.seats, o.max_seats), (1, 4));
        assert_eq!((o.hot_share, o.hot_seats, o.multi_share), (0.8, 50, 0.2));
        assert_eq!(o.rate, 0.0);
        assert_eq!(o.concurrency, 256);
        assert_eq!(o.drain, Duration::from_secs(10));
        assert_eq!(o.common.secret, DEV_JWT_SECRET);
        assert!(o.verify && !o.common.json);
        assert_eq!(o.verify_polls, 20_000);
    }

    #[test]
    fn quick_shrinks_the_run_and_explicit_options_still_win() {
        let o = flash(&["--quick"]).unwrap();
        assert_eq!(
            (o.users, o.duration, o.verify_polls),
            (300, Duration::from_secs(3), 0)
        );
        let o = flash(&["--quick", "--users", "20", "--duration=1.5"]).unwrap();
        assert_eq!((o.users, o.duration), (20, Duration::from_millis(1500)));
    }

    #[test]
    fn server_processes_are_listed_or_repeated() {
        assert!(flash(&[]).unwrap().common.server_pids.is_empty());
        let o = flash(&["--server-pid", "10,11", "--server-pid=12"]).unwrap();
        assert_eq!(o.common.server_pids, [10, 11, 12]);
        assert!(flash(&["--server-pid", "ten"]).is_err());
    }

    #[test]
    fn values_are_checked() {
        let o = flash(&[
            "--rate",
            "0",
            "--users",
            "3",
            "--json",
            "--base",
            "http://localhost:1234/",
        ])
        .unwrap();
        assert_eq!((o.rate, o.users), (0.0, 3));
        assert!(o.common.json);
        assert_eq!(
            base_of(&o),
            ("http://localhost:1234", "ws://localhost:1234")
        );
        for bad in [
            &["--rate"][..],
            &["--bogus"],
            &["--users", "0"],
            &["--hot-share", "1.5"],
            &["--duration", "NaN"],
            &["--json=1"],
            &["--server-bin", "x"],
            &["--kill", "5"],
            &["--start", "embedded", "--base", "http://127.0.0.1:1"],
        ] {
            assert!(flash(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn postgres_start_needs_a_database_and_may_bring_its_own_redis() {
        let err = flash(&["--start", "postgres", "--server-bin", "/bin/true"]);
        // DATABASE_URL may be set in the environment running the tests.
        if std::env::var_os("DATABASE_URL").is_none() {
            assert!(err.unwrap_err().contains("--database-url"));
        }
        let own = flash(&POSTGRES_OWN_REDIS).unwrap();
        assert!(matches!(own.common.target, Target::Start(ref s) if s.redis_url.is_none()));
        let mut given = POSTGRES_OWN_REDIS;
        given[6] = "--redis-url=redis://x";
        let o = flash(&given).unwrap();
        assert!(
            matches!(o.common.target, Target::Start(ref s) if s.backend == StartBackend::Postgres && s.redis_url.as_deref() == Some("redis://x"))
        );
    }

    /// `--start postgres` with a Redis of the tool's own (`--redis-url` given empty, so that a
    /// REDIS_URL in the environment running the tests does not count).
    const POSTGRES_OWN_REDIS: [&str; 7] = [
        "--start",
        "postgres",
        "--server-bin",
        "/bin/true",
        "--database-url",
        "postgres://x/y",
        "--redis-url=",
    ];

    #[test]
    fn faults_are_checked_against_the_backend() {
        let pg = POSTGRES_OWN_REDIS;
        let with = |extra: &[&str], base: &[&str]| {
            flash(&[base, extra].concat()).map(|o| o.faults.clone())
        };
        let f = with(
            &[
                "--kill=1",
                "--redis-flush=2",
                "--redis-stop=3",
                "--postgres-outage=4",
                "--outage=0.5",
                "--deliver-twice",
            ],
            &pg,
        )
        .unwrap();
        assert_eq!(
            (f.kills, f.redis_flushes, f.redis_stops, f.postgres_outages),
            (1, 2, 3, 4)
        );
        assert_eq!(f.outage, Duration::from_millis(500));
        assert!(f.deliver_twice);
        let embedded = ["--start", "embedded", "--server-bin", "/bin/true"];
        assert!(with(&["--deliver-twice", "--kill=2"], &embedded).is_ok());
        for bad in ["--redis-flush=1", "--redis-stop=1", "--postgres-outage=1"] {
            assert!(
                with(&[bad], &embedded).is_err(),
                "{bad} on the embedded store"
            );
            assert!(flash(&[bad]).is_err(), "{bad} without --start");
        }
        let mut given_redis = pg.to_vec();
        given_redis[6] = "--redis-url=redis://x";
        assert!(with(&["--redis-stop=1"], &given_redis).is_err());
        assert!(with(&["--redis-flush=1"], &given_redis).is_ok());
        assert!(with(&["--outage=61"], &pg).is_err());
        assert!(
            with(&["--postgres-outage=2", "--outage=3", "--duration=6"], &pg).is_err(),
            "6 s of outages in a 6 s window"
        );
    }

    #[test]
    fn secret_precedence() {
        let argv = ["loadgen", "sockets"];
        let Scenario::Sockets(o) = parse_from(argv, Some("env".into())).unwrap() else {
            panic!()
        };
        assert_eq!(
            (o.common.secret.as_str(), o.common.secret_source),
            ("env", "JWT_SECRET")
        );
        let argv = ["loadgen", "sockets", "--secret", "flag"];
        let Scenario::Sockets(o) = parse_from(argv, Some("env".into())).unwrap() else {
            panic!()
        };
        assert_eq!(o.common.secret, "flag");
    }

    #[test]
    fn only_loopback_without_allow_remote() {
        assert!(flash(&["--base", "http://[::1]:3000"]).is_ok());
        assert!(flash(&["--base", "http://127.0.0.1"]).is_ok());
        assert!(flash(&["--base", "http://example.com"]).is_err());
        assert!(flash(&["--base", "http://10.0.0.1:3000"]).is_err());
        assert!(flash(&["--base", "http://example.com", "--allow-remote"]).is_ok());
        assert!(flash(&["--base", "https://127.0.0.1"]).is_err());
    }

    #[test]
    fn steady_defaults_quick_and_shares() {
        let steady = |a: &[&str]| {
            let argv = ["loadgen", "steady"].iter().chain(a).copied();
            match parse_from(argv, None).map_err(|e| e.to_string())? {
                Scenario::Steady(o) => Ok(*o),
                _ => Err("another scenario".to_owned()),
            }
        };
        let o = steady(&[]).unwrap();
        assert_eq!((o.shows, o.seats_per_show, o.users), (20, 300, 200));
        assert_eq!(
            (o.duration, o.reads_per_sec),
            (Duration::from_secs(20), 200.0)
        );
        assert_eq!((o.pay, o.decline, o.release), (0.6, 0.1, 0.25));
        let o = steady(&["--quick", "--users", "7"]).unwrap();
        assert_eq!(
            (o.shows, o.users, o.duration),
            (8, 7, Duration::from_secs(5))
        );
        assert!(steady(&["--pay", "0.8", "--release", "0.3"]).is_err());
        assert!(steady(&["--seats-per-show", "2"]).is_err());
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
