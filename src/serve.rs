//! `seatbook serve`: wires the local server's adapters into the app and runs it until a stop
//! signal, then stops without losing what it accepted.
//!
//! Adapters: the embedded SQLite file, or PostgreSQL when `DATABASE_URL` is set; the in-memory
//! seat mirror, or Redis when `REDIS_URL` is set; always the in-process lanes (the local SQS) and
//! the WebSocket hub (the local API Gateway).
//!
//! Stopping (SIGTERM or Ctrl-C), in the order that loses nothing: stop accepting connections and
//! finish the HTTP requests in progress (each one that got its 202 is durable and in its lane);
//! let every lane decide what it holds; send the resulting pushes; close each WebSocket with a
//! close frame 1001; exit 0. The whole stop takes at most `SHUTDOWN_GRACE_SECONDS`; whatever it
//! did not get to stays QUEUED in the store and is decided first on the next start.

use crate::config::{ServerConfig, redact};
use booking_app::admission::AdmissionKey;
use booking_app::limits::MemoryRateLimiter;
use booking_app::show_locks::InProcessShowLocks;
use booking_app::{App, Authenticator, MockPaymentProvider, QueueAdapter, Stores};
use booking_core::ports::{
    CatalogError, MirrorError, RateLimiter, RequestQueue, SeatMirror, ShowLocks, StoreError,
};
use booking_core::{Clock, SystemClock};
use booking_local::page::PageOptions;
use booking_local::{LaneOptions, LocalLanes, MemoryMirror, WsHub};
use booking_postgres::{PgOptions, PgStore};
use booking_redis::RedisMirror;
use booking_sqlite::{SqliteOptions, SqliteStore};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create DATA_DIR {0}")]
    DataDir(String, #[source] std::io::Error),
    #[error("cannot open the mock payment ledger at {0}")]
    Ledger(String, #[source] std::io::Error),
    #[error("cannot open the store at {0}")]
    Store(String, #[source] StoreError),
    #[error("cannot seed the demo catalog into {0}")]
    Seed(String, #[source] CatalogError),
    #[error("cannot reach Redis at {0}")]
    Redis(String, #[source] MirrorError),
    #[error("cannot read or create the admission key at {0}")]
    AdmissionKey(String, #[source] std::io::Error),
    #[error("cannot listen on {0}")]
    Listen(SocketAddr, #[source] std::io::Error),
}

/// The store the configuration names, how to describe it, and how its deciders are serialised
/// per show when they decide requests as they arrive (by the database where several processes
/// may share it, in process on the embedded store).
pub async fn open_stores(
    config: &ServerConfig,
) -> Result<(Stores, String, Arc<dyn ShowLocks>), ServeError> {
    if let Some(url) = &config.database_url {
        let where_ = redact(url);
        let store = PgStore::connect(url, PgOptions::default())
            .await
            .map_err(|e| ServeError::Store(where_.clone(), e))?;
        // The local server is its own deploy step: it brings the schema up to date.
        store
            .migrate()
            .await
            .map_err(|e| ServeError::Store(where_.clone(), e))?;
        let store = Arc::new(store);
        return Ok((
            Stores::of(store.clone()),
            format!("PostgreSQL at {where_}"),
            Arc::new(InProcessShowLocks::in_front_of(store)),
        ));
    }
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| ServeError::DataDir(config.data_dir.display().to_string(), e))?;
    let path = config.data_dir.join("seatbook.db");
    let store = SqliteStore::open(
        &path,
        SqliteOptions {
            synchronous: config.synchronous,
            ..SqliteOptions::default()
        },
    )
    .await
    .map_err(|e| ServeError::Store(path.display().to_string(), e))?;
    Ok((
        Stores::of(Arc::new(store)),
        format!("embedded SQLite at {}", path.display()),
        Arc::new(InProcessShowLocks::new()),
    ))
}

/// The seat map's hot read path and the rate-limit buckets: Redis when configured, process
/// memory otherwise.
async fn open_mirror(
    config: &ServerConfig,
) -> Result<(Arc<dyn SeatMirror>, Arc<dyn RateLimiter>), ServeError> {
    Ok(match &config.redis_url {
        Some(url) => {
            let redis = RedisMirror::connect_trusting(url, config.redis_ca.as_deref())
                .await
                .map_err(|e| ServeError::Redis(redact(url), e))?;
            let limiter = Arc::new(redis.rate_limiter());
            (Arc::new(redis), limiter)
        }
        None => (
            Arc::new(MemoryMirror::new()),
            Arc::new(MemoryRateLimiter::new()),
        ),
    })
}

/// The waiting rooms' admission key: `ADMISSION_SECRET`, or the one kept in
/// `DATA_DIR/admission.key` (made at the first start, readable by its owner only), so that an
/// admission handed out before a restart still admits after it.
fn admission_key(config: &ServerConfig) -> Result<AdmissionKey, ServeError> {
    if let Some(secret) = &config.admission_secret {
        return Ok(AdmissionKey::new(secret.as_bytes()).expect("checked by the configuration"));
    }
    let path = config.data_dir.join("admission.key");
    let failed = |e| ServeError::AdmissionKey(path.display().to_string(), e);
    let secret = match std::fs::read_to_string(&path) {
        Ok(secret) => secret,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Written whole to a file of its own, then linked into place: a crash midway
            // leaves no half-written key, and of two servers starting at once the second
            // finds the first's key (the link refuses to replace it) and uses that.
            let secret = booking_app::admission::random_secret();
            let draft = config
                .data_dir
                .join(format!("admission.key.{}", std::process::id()));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&draft).map_err(failed)?;
            std::io::Write::write_all(&mut file, secret.as_bytes()).map_err(failed)?;
            file.sync_all().map_err(failed)?;
            let linked = std::fs::hard_link(&draft, &path);
            let _ = std::fs::remove_file(&draft);
            match linked {
                Ok(()) => secret,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    std::fs::read_to_string(&path).map_err(failed)?
                }
                Err(e) => return Err(failed(e)),
            }
        }
        Err(e) => return Err(failed(e)),
    };
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(&path)
        && std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the admission key can be read by others than its owner: chmod 600 it");
    }
    AdmissionKey::new(secret.trim().as_bytes())
        .map_err(|e| failed(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

pub async fn run(config: ServerConfig) -> Result<(), ServeError> {
    let (stores, description, show_locks) = open_stores(&config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match booking_app::demo::seed_if_empty(stores.catalog.as_ref(), clock.now()).await {
        Ok(true) => tracing::info!("seeded the demo catalog"),
        Ok(false) => {}
        Err(e) => return Err(ServeError::Seed(description, e)),
    }
    let hub = Arc::new(WsHub::with_limits(config.socket_limits));
    let lanes = LaneOptions {
        max_batch: config.max_batch,
        max_attempts: config.booking.max_attempts,
        deliver_twice: config.deliver_twice,
        ..LaneOptions::default()
    };
    if config.deliver_twice {
        tracing::warn!("FAULT_DELIVER_TWICE=true: every batch is delivered twice (a test setting)");
    }
    // The mock provider keeps its ledger beside the data, so that, like a real provider, it
    // remembers across a crash what it charged (recovery after a restart asks it).
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| ServeError::DataDir(config.data_dir.display().to_string(), e))?;
    let ledger = config.data_dir.join("mock-payments.jsonl");
    let payments = MockPaymentProvider::open(&ledger)
        .map_err(|e| ServeError::Ledger(ledger.display().to_string(), e))?;
    let mut builder =
        App::builder(stores, config.booking.clone()).admission_key(admission_key(&config)?);
    if !config.booking.queue_based {
        tracing::info!("QUEUE_BASED_BOOKING=false: hold requests are decided as they arrive");
        builder = builder.show_locks(show_locks);
    }
    let (mirror, rate_limiter) = open_mirror(&config).await?;
    let app = builder
        .payments(Arc::new(payments))
        .clock(clock)
        .notifier(hub.clone())
        .mirror(mirror)
        .rate_limiter(rate_limiter)
        .queue(QueueAdapter::in_process(move |processor| {
            Arc::new(LocalLanes::new(processor, lanes)) as Arc<dyn RequestQueue>
        }))
        .authenticator(Authenticator::hs256_with(
            config.jwt_secret.as_bytes(),
            config.token_rules.clone(),
        ))
        .build();
    // Everything accepted before the last stop is decided first, in its original order.
    let recovered = app
        .recover()
        .await
        .map_err(|e| ServeError::Store(description.clone(), e))?;
    if recovered > 0 {
        tracing::info!(
            recovered,
            "re-queued requests accepted before the last stop"
        );
    }
    app.spawn_sweeper(config.sweep_interval);
    let mut router = app.router().merge(booking_local::websocket::routes(
        hub.clone(),
        app.service().clone(),
        app.authenticator().clone(),
    ));
    router = router.merge(booking_local::page::routes(PageOptions {
        dir: config.page_dir.clone(),
        // The user switcher's tokens, only while the secret is the public development one: with
        // it anyone can mint tokens anyway, and the server only accepts it on loopback.
        dev_tokens: config.dev_secret.then(|| app.authenticator().clone()),
    }));
    router = router.merge(booking_local::metrics::routes(
        app.service().clone(),
        app.waiting_rooms().clone(),
        hub.clone(),
    ));
    if config.local_management_api {
        router = router.merge(booking_local::websocket::management_routes(
            hub,
            config.booking.max_body_bytes,
        ));
    }

    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| ServeError::Listen(config.bind, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Listen(config.bind, e))?;
    println!("seatbook listening on http://{addr}  (WebSocket: ws://{addr}/ws?token=<JWT>)");
    println!("store: {description}");
    if config.dev_secret {
        println!("JWT_SECRET: not set, using the development default (never use it in production)");
    } else {
        println!("JWT_SECRET: from the environment");
    }
    if config.local_management_api {
        println!("LOCAL_MANAGEMENT_API: /@connections is served to loopback callers");
    }
    println!("the page: http://{addr}/");
    println!("get a token: cargo run --release -- token alice   (add --admin for the admin role)");

    // When the stop was asked for: the grace period counts from there.
    let (stopping, stop_requested) = watch::channel(None::<Instant>);
    tokio::spawn(async move {
        stop_signal().await;
        tracing::info!("stop requested; finishing what was accepted");
        let _ = stopping.send(Some(Instant::now()));
    });
    let grace = config.shutdown_grace;
    let asked = |rx: &watch::Receiver<Option<Instant>>| {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(Option::is_some).await;
        }
    };
    let router = booking_local::http::guarded(router, &config.http);
    let server = booking_local::http::serve(listener, router, &config.http, asked(&stop_requested));
    let overdue = asked(&stop_requested);
    tokio::select! {
        () = server => {}
        // A client that keeps a request open must not hold the stop beyond the grace period.
        () = async { overdue.await; tokio::time::sleep(grace).await } => {
            tracing::warn!(?grace, "HTTP requests still open when the grace period ran out");
        }
    }
    let since = stop_requested.borrow().unwrap_or_else(Instant::now);
    let left = grace.saturating_sub(since.elapsed());
    let report = app.shutdown(left).await;
    if report.undecided > 0 {
        tracing::warn!(
            undecided = report.undecided,
            "stopped with requests undecided; they are decided after the next start"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM (what orchestrators send) or Ctrl-C.
async fn stop_signal() {
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
}
