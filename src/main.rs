//! `seatbook`: the whole booking system in one process, with nothing else installed.
//!
//! `cargo run --release` serves the HTTP API and WebSocket on 127.0.0.1:3000 over an embedded
//! SQLite file, in-process per-show lanes and a local WebSocket hub: the same router, decision
//! engine and batch processor the Lambda functions run. With `DATABASE_URL` and `REDIS_URL` it
//! runs on PostgreSQL and Redis instead, as deployed. `seatbook token <user> [--admin]` mints a
//! development token. This file only dispatches; `serve.rs` wires the adapters.

// Unit tests are built with every dev-dependency of the package; each uses only some.
#![cfg_attr(test, allow(unused_crate_dependencies))]

use booking_app::error::BookingError;
use booking_app::{App, Authenticator};
use booking_core::{Chain, UserId};
use booking_postgres::{PgOptions, PgStore};
use std::error::Error;
use std::process::ExitCode;

mod config;
mod serve;
mod watch;

/// glibc's allocator was ~15 % of the server's CPU in a flash sale (`perf`, see
/// docs/PERFORMANCE.md): many threads allocating and freeing small buffers per request, and
/// `malloc_consolidate` sweeping its fast bins whenever a large buffer was freed. mimalloc's
/// per-thread free lists avoid both.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
usage:
  seatbook                         serve (same as `seatbook serve`)
  seatbook token <user> [--admin] [--ttl-seconds N]
                                   print a development JWT for <user>, signed with JWT_SECRET
  seatbook watch --token <JWT> [--show <showId>]... [--url ws://127.0.0.1:3000]
                                                                      print the WebSocket pushes this user receives
  seatbook migrate                 apply the PostgreSQL migrations to DATABASE_URL
  seatbook import FILE             load a catalog file (halls, movies, shows; JSON, see
                                   docs/OPERATIONS.md) into the configured store, all or nothing

environment: BIND (127.0.0.1:3000), DATA_DIR (./data), JWT_SECRET (at least 32 bytes; unset:
  a development secret, loopback only), JWT_ISSUER, JWT_AUDIENCE,
  JWT_MAX_LIFETIME_SECONDS (86400), HOLD_TTL_SECONDS (300),
  REQUEST_TTL_SECONDS (120), ORDER_PAYMENT_TTL_SECONDS (600), PAYMENT_TIMEOUT_SECONDS (10),
  IDEMPOTENCY_TTL_SECONDS (86400),
  MAX_SEATS_PER_REQUEST (10), MAX_BODY_BYTES (16384),
  MAX_BATCH (512), MAX_ATTEMPTS (5), QUEUE_BASED_BOOKING (true),
  SWEEP_INTERVAL_MS (1000), SHUTDOWN_GRACE_SECONDS (10),
  SQLITE_SYNCHRONOUS (full|normal), RUST_LOG (info,sqlx=warn),
  DATABASE_URL (PostgreSQL instead of the embedded store), REDIS_URL (Redis seat mirror)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None | Some("serve") => serve(),
        Some("token") => token(&args[1..]),
        Some("watch") => watch::run(&args[1..]).map_err(Into::into),
        Some("migrate") => migrate(),
        Some("import") => import(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n{USAGE}").into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("seatbook: {}", Chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

type Failure = Box<dyn Error + Send + Sync>;

fn token(args: &[String]) -> Result<(), Failure> {
    let user: UserId = args
        .first()
        .ok_or_else(|| format!("token needs a user id\n{USAGE}"))?
        .parse()
        .map_err(|e| format!("invalid user id: {e}"))?;
    let mut admin = false;
    let mut ttl = 3600i64;
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--admin" => admin = true,
            "--ttl-seconds" => {
                ttl = rest
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|v| *v > 0)
                    .ok_or("--ttl-seconds needs a positive number")?
            }
            other => return Err(format!("unknown option {other:?}\n{USAGE}").into()),
        }
    }
    let (secret, _) = config::jwt_secret();
    // The server's own rules: its issuer and audience, and no longer than it accepts.
    let rules = booking_app::auth::TokenRules::from_env()?;
    let ttl = chrono::Duration::seconds(ttl);
    if ttl > rules.max_lifetime {
        return Err(format!(
            "--ttl-seconds {} is longer than the server accepts (JWT_MAX_LIFETIME_SECONDS={})",
            ttl.num_seconds(),
            rules.max_lifetime.num_seconds()
        )
        .into());
    }
    println!(
        "{}",
        Authenticator::hs256_with(secret.as_bytes(), rules).mint(&user, admin, ttl)
    );
    Ok(())
}

/// `seatbook migrate`: applies the PostgreSQL migrations to `DATABASE_URL` and exits. Deployed
/// functions never migrate at start-up; this (or `sqlx migrate run`) is the step that does.
fn migrate() -> Result<(), Failure> {
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .ok_or("migrate needs DATABASE_URL")?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let store = PgStore::connect(&url, PgOptions::default()).await?;
        store.migrate().await?;
        println!("migrated {}", config::redact(&url));
        Ok(())
    })
}

/// `seatbook import FILE`: checks a catalog file and writes it into the store the environment
/// names (`DATABASE_URL`, or the embedded store in `DATA_DIR`), in one transaction. Safe to
/// repeat: a second import of the same file changes nothing.
fn import(args: &[String]) -> Result<(), Failure> {
    let [path] = args else {
        return Err(format!("import needs exactly one FILE\n{USAGE}").into());
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let config = config::ServerConfig::from_env()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let (stores, description, _) = serve::open_stores(&config).await?;
        let app = App::builder(stores, config.booking.clone()).build();
        match app.catalog().import(&text).await {
            Ok(written) => {
                println!(
                    "imported {path} into {description}: movies {} new, {} changed, {} unchanged; \
                     shows {} new, {} changed, {} unchanged",
                    written.movies_created,
                    written.movies_updated,
                    written.movies_unchanged,
                    written.shows_created,
                    written.shows_updated,
                    written.shows_unchanged
                );
                Ok(())
            }
            Err(BookingError::InvalidCatalog(issues)) => {
                for issue in &issues {
                    eprintln!("{path}: {issue}");
                }
                Err(format!("{path}: {} problem(s); nothing was written", issues.len()).into())
            }
            Err(e) => Err(Box::new(e) as Failure),
        }
    })
}

fn serve() -> Result<(), Failure> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match config::log_format()? {
        // One JSON object per line, with the request span's fields (request_id, user_id,
        // show_id), for log collectors.
        config::LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        config::LogFormat::Text => logs.init(),
    }
    let config = config::ServerConfig::from_env()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(serve::run(config))?;
    Ok(())
}
