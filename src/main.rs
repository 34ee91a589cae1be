//! `seatbook`: the whole booking system in one process, with nothing else installed.
//!
//! `cargo run --release` serves the HTTP API and WebSocket on 127.0.0.1:3000 over an embedded
//! SQLite file, in-process per-show lanes and a local WebSocket hub: the same router, decision
//! engine and batch processor the Lambda functions run. With `DATABASE_URL` and `REDIS_URL` it
//! runs on PostgreSQL and Redis instead, as deployed. `seatbook token <user> [--admin]` mints a
//! development token. This file only reads configuration and wires adapters together.

use booking_app::auth::DEV_JWT_SECRET;
use booking_app::config::env_or;
use booking_app::http::{AppState, router};
use booking_app::hub::WsHub;
use booking_app::lanes::{LaneOptions, LocalLanes};
use booking_app::memory_mirror::MemoryMirror;
use booking_app::sweeper::Sweeper;
use booking_app::{Authenticator, BatchProcessor, BookingConfig, BookingService, Ports};
use booking_core::ports::{
    CatalogStore, HoldStore, Notifier, RequestQueue, RequestStore, SeatMirror,
};
use booking_core::{Clock, SystemClock, UserId};
use booking_postgres::{PgOptions, PgStore};
use booking_redis::RedisMirror;
use booking_sqlite::{SqliteOptions, SqliteStore, Synchronous};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

mod watch;

const USAGE: &str = "\
usage:
  seatbook                         serve (same as `seatbook serve`)
  seatbook token <user> [--admin] [--ttl-seconds N]
                                   print a development JWT for <user>, signed with JWT_SECRET
  seatbook watch --token <JWT> [--show <showId>]... [--url ws://127.0.0.1:3000]
                                                                      print the WebSocket pushes this user receives
  seatbook migrate                 apply the PostgreSQL migrations to DATABASE_URL

environment: BIND (127.0.0.1:3000), DATA_DIR (./data), JWT_SECRET, HOLD_TTL_SECONDS (300),
  REQUEST_TTL_SECONDS (120), MAX_SEATS_PER_REQUEST (10), MAX_BODY_BYTES (16384),
    MAX_BATCH (512), SWEEP_INTERVAL_MS (1000), SQLITE_SYNCHRONOUS (full|normal), RUST_LOG (info),
  DATABASE_URL (PostgreSQL instead of the embedded store), REDIS_URL (Redis seat mirror)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        None | Some("serve") => serve(),
        Some("token") => token(&args[1..]),
        Some("watch") => watch::run(&args[1..]),
        Some("migrate") => migrate(),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("seatbook: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The secret and whether it is the development default.
fn jwt_secret() -> (String, bool) {
    match std::env::var("JWT_SECRET") {
        Ok(s) if !s.is_empty() => (s, false),
        _ => (DEV_JWT_SECRET.to_owned(), true),
    }
}

fn token(args: &[String]) -> Result<(), String> {
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
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    let (secret, _) = jwt_secret();
    println!(
        "{}",
        Authenticator::hs256(secret.as_bytes()).mint(&user, admin, chrono::Duration::seconds(ttl))
    );
    Ok(())
}

/// The three store ports, all served by one adapter.
struct Stores {
    catalog: Arc<dyn CatalogStore>,
    requests: Arc<dyn RequestStore>,
    holds: Arc<dyn HoldStore>,
    description: String,
}

impl Stores {
    fn of<S: CatalogStore + RequestStore + HoldStore>(store: Arc<S>, description: String) -> Self {
        Self {
            catalog: store.clone(),
            requests: store.clone(),
            holds: store,
            description,
        }
    }
}

/// PostgreSQL when `DATABASE_URL` is set (migrated first: this is the app's own migrate step),
/// the embedded SQLite file otherwise.
async fn open_stores(
    data_dir: &std::path::Path,
    synchronous: Synchronous,
) -> Result<Stores, String> {
    if let Some(url) = database_url() {
        let store = PgStore::connect(&url, PgOptions::default())
            .await
            .map_err(|e| format!("cannot connect to DATABASE_URL ({}): {e}", redact(&url)))?;
        store
            .migrate()
            .await
            .map_err(|e| format!("cannot migrate {}: {e}", redact(&url)))?;
        return Ok(Stores::of(
            Arc::new(store),
            format!("PostgreSQL at {}", redact(&url)),
        ));
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create DATA_DIR {}: {e}", data_dir.display()))?;
    let path = data_dir.join("seatbook.db");
    let store = SqliteStore::open(
        &path,
        SqliteOptions {
            synchronous,
            ..SqliteOptions::default()
        },
    )
    .await
    .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    Ok(Stores::of(
        Arc::new(store),
        format!("embedded SQLite at {}", path.display()),
    ))
}

fn database_url() -> Option<String> {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
}

/// A connection URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// `seatbook migrate`: applies the PostgreSQL migrations to `DATABASE_URL` and exits. Deployed
/// functions never migrate at start-up; this (or `sqlx migrate run`) is the step that does.
fn migrate() -> Result<(), String> {
    let url = database_url().ok_or("migrate needs DATABASE_URL")?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let store = PgStore::connect(&url, PgOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        store.migrate().await.map_err(|e| e.to_string())?;
        println!("migrated {}", redact(&url));
        Ok(())
    })
}

fn serve() -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(run())
}

async fn run() -> Result<(), String> {
    let config = BookingConfig::from_env().map_err(|e| e.to_string())?;
    let bind: SocketAddr =
        env_or("BIND", SocketAddr::from(([127, 0, 0, 1], 3000))).map_err(|e| e.to_string())?;
    let data_dir: PathBuf = env_or("DATA_DIR", PathBuf::from("data")).map_err(|e| e.to_string())?;
    let max_batch: usize = env_or("MAX_BATCH", 512usize)
        .map_err(|e| e.to_string())?
        .max(1);
    let sweep_ms: u64 = env_or("SWEEP_INTERVAL_MS", 1000u64)
        .map_err(|e| e.to_string())?
        .max(10);
    let synchronous = match env_or("SQLITE_SYNCHRONOUS", "full".to_owned())
        .map_err(|e| e.to_string())?
        .as_str()
    {
        "full" => Synchronous::Full,
        "normal" => Synchronous::Normal,
        other => {
            return Err(format!(
                "SQLITE_SYNCHRONOUS={other:?} is invalid: use full or normal"
            ));
        }
    };
    let (secret, dev_secret) = jwt_secret();

    let stores = open_stores(&data_dir, synchronous).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    if booking_app::demo::seed_if_empty(stores.catalog.as_ref(), clock.now())
        .await
        .map_err(|e| e.to_string())?
    {
        tracing::info!("seeded the demo catalog");
    }

    let Stores {
        catalog,
        requests,
        holds,
        description,
    } = stores;
    let hub = Arc::new(WsHub::new());
    let notifier: Arc<dyn Notifier> = hub.clone();
    // The seat map's hot read path: Redis when configured, process memory otherwise.
    let mirror: Arc<dyn SeatMirror> = match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => Arc::new(
            RedisMirror::connect(&url)
                .await
                .map_err(|e| format!("REDIS_URL: {e}"))?,
        ),
        _ => Arc::new(MemoryMirror::new()),
    };
    let processor = Arc::new(
        BatchProcessor::new(
            catalog.clone(),
            requests.clone(),
            holds.clone(),
            notifier.clone(),
            clock.clone(),
            config.hold_ttl,
        )
        .with_mirror(mirror.clone()),
    );
    let lanes = LocalLanes::new(
        processor,
        LaneOptions {
            max_batch,
            ..LaneOptions::default()
        },
    );
    // Everything accepted before the last stop is decided first, in its original order.
    let recovered = lanes.recover(
        requests
            .pending_requests()
            .await
            .map_err(|e| e.to_string())?,
    );
    if recovered > 0 {
        tracing::info!(
            recovered,
            "re-queued requests accepted before the last stop"
        );
    }
    let queue: Arc<dyn RequestQueue> = Arc::new(lanes);

    let sweeper = Sweeper {
        requests: requests.clone(),
        holds: holds.clone(),
        notifier: notifier.clone(),
        clock: clock.clone(),
        mirror: Some(mirror.clone()),
    };
    tokio::spawn(sweeper.run(std::time::Duration::from_millis(sweep_ms)));

    let service = Arc::new(BookingService::new(
        Ports {
            catalog,
            requests,
            holds,
            queue,
            notifier,
            clock,
            mirror: Some(mirror),
        },
        config,
    ));
    let auth = Arc::new(Authenticator::hs256(secret.as_bytes()));
    let app = router(AppState {
        service,
        auth,
        hub: Some(hub),
    });

    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("seatbook listening on http://{addr}  (WebSocket: ws://{addr}/ws?token=<JWT>)");
    println!("store: {description}");
    if dev_secret {
        println!("JWT_SECRET: not set, using the development default (never use it in production)");
    } else {
        println!("JWT_SECRET: from the environment");
    }
    println!("get a token: cargo run --release -- token alice   (add --admin for the admin role)");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = terminate => {} }
    tracing::info!("shutting down");
}
