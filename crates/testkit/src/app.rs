//! The in-process test harness: the whole local server (router, lanes, WebSocket hub, store,
//! mirror) in the test's own process, on a free port, with a clock the test moves.
//!
//! Most end-to-end tests need no separate process: they talk HTTP and WebSocket to the app as
//! clients do, and what they check is the app's behaviour, not the binary's. In process they are
//! faster (no process start, no binary build dependency), and deterministic where the real binary
//! cannot be: time is a [`ManualClock`] the test advances instead of sleeping, the expiry sweep
//! runs when the test calls [`TestApp::sweep`], and [`TestApp::drain`] waits until the lanes have
//! decided everything they can. The real-binary harness (`tests/support` of the workspace root)
//! stays for what needs a process: crashes, restarts, signals and the command line.
//!
//! Both backends are available, as for the binary: the embedded store on a fresh directory, or a
//! fresh PostgreSQL database with a private Redis.

use crate::postgres::TestDatabase;
use crate::redis::PrivateRedis;
use booking_app::auth::{Authenticator, DEV_JWT_SECRET};
use booking_app::limits::{MemoryRateLimiter, RateLimits};
use booking_app::show_locks::InProcessShowLocks;
use booking_app::sweeper::SweepReport;
use booking_app::{App, BookingConfig, MockPaymentProvider, QueueAdapter, Stores};
use booking_core::ports::{
    HoldStore, PaymentProvider, RateLimiter, RequestQueue, RequestStore, SeatMirror, ShowLocks,
};
use booking_core::{Clock, ManualClock};
use booking_local::{LaneOptions, LocalLanes, MemoryMirror, WsHub};
use booking_redis::RedisMirror;
use booking_sqlite::{SqliteOptions, SqliteStore};
use chrono::{Duration, Utc};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// What a test app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The default: embedded SQLite on a fresh directory, in-process seat mirror.
    Embedded,
    /// As deployed: a fresh PostgreSQL database and a private Redis.
    PostgresRedis,
}

/// Wraps the store ports the app runs on, to inject faults or gates between the app and a real
/// store (a test of the lanes' retries, of a slow show).
pub type StoreWrap = Box<dyn FnOnce(Stores) -> Stores + Send>;

/// How to start a [`TestApp`].
pub struct TestAppOptions {
    pub backend: Backend,
    pub config: BookingConfig,
    pub lanes: LaneOptions,
    /// Applied to the real stores before the app is built.
    pub wrap_stores: Option<StoreWrap>,
    /// The payment provider (default: [`TestApp::payments`], a fresh mock).
    pub payments: Option<Arc<dyn PaymentProvider>>,
}

impl TestAppOptions {
    pub fn on(backend: Backend) -> Self {
        Self {
            backend,
            config: BookingConfig {
                // Out of the way of tests about something else (tests/hardening.rs proves it).
                max_open_requests_per_user: 100,
                rate_limits: RateLimits::OFF,
                ..BookingConfig::default()
            },
            lanes: LaneOptions::default(),
            wrap_stores: None,
            payments: None,
        }
    }
}

/// What keeps the backend alive for the app's lifetime.
enum Guard {
    Embedded {
        store: SqliteStore,
        dir: tempfile::TempDir,
    },
    PostgresRedis(Box<(TestDatabase, PrivateRedis)>),
}

/// The app, served on a free loopback port.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// `ws://127.0.0.1:<port>`
    pub ws_base: String,
    pub clock: Arc<ManualClock>,
    pub app: App,
    pub lanes: LocalLanes,
    pub hub: Arc<WsHub>,
    /// The stores as the app sees them (wrapped, if the options wrapped them).
    pub stores: Stores,
    /// The mock provider the app charges, unless the options named another one.
    pub payments: Arc<MockPaymentProvider>,
    server: JoinHandle<()>,
    guard: Guard,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestApp {
    /// The app on `backend`, with the default rules, the demo catalog, and the clock at now.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(TestAppOptions::on(backend)).await
    }

    pub async fn start_with(options: TestAppOptions) -> Self {
        let clock = Arc::new(ManualClock::new(Utc::now()));
        // Where several deciders could meet (direct mode), they are serialised the way the
        // production wiring does: by the database on PostgreSQL, in process on the embedded store.
        let show_locks: Arc<dyn ShowLocks>;
        let rate_limiter: Arc<dyn RateLimiter>;
        let (stores, mirror, guard): (Stores, Arc<dyn SeatMirror>, Guard) = match options.backend {
            Backend::Embedded => {
                let dir = tempfile::tempdir().expect("temp dir");
                let store =
                    SqliteStore::open(&dir.path().join("seatbook.db"), SqliteOptions::default())
                        .await
                        .expect("open the embedded store");
                show_locks = Arc::new(InProcessShowLocks::new());
                rate_limiter = Arc::new(MemoryRateLimiter::new());
                (
                    Stores::of(Arc::new(store.clone())),
                    Arc::new(MemoryMirror::new()),
                    Guard::Embedded { store, dir },
                )
            }
            Backend::PostgresRedis => {
                let database = TestDatabase::create().await;
                let redis = PrivateRedis::start();
                let mirror = RedisMirror::connect(&redis.url())
                    .await
                    .expect("connect to the private Redis");
                rate_limiter = Arc::new(mirror.rate_limiter());
                show_locks = Arc::new(InProcessShowLocks::in_front_of(Arc::new(
                    database.store().clone(),
                )));
                (
                    Stores::of(Arc::new(database.store().clone())),
                    Arc::new(mirror),
                    Guard::PostgresRedis(Box::new((database, redis))),
                )
            }
        };
        booking_app::demo::seed_if_empty(stores.catalog.as_ref(), clock.now())
            .await
            .expect("seed the demo catalog");
        let stores = match options.wrap_stores {
            Some(wrap) => wrap(stores),
            None => stores,
        };
        // Out of the way of tests about something else (tests/hardening.rs proves the limits).
        let hub = Arc::new(WsHub::with_limits(booking_local::hub::SocketLimits {
            per_user: 1_000,
            total: 100_000,
            ..booking_local::hub::SocketLimits::default()
        }));
        let lane_options = options.lanes;
        let (lanes_tx, lanes_rx) = std::sync::mpsc::channel();
        let payments = Arc::new(MockPaymentProvider::new());
        let direct = !options.config.queue_based;
        let mut builder = App::builder(stores.clone(), options.config);
        if direct {
            builder = builder.show_locks(show_locks);
        }
        let app = builder
            .payments(options.payments.unwrap_or_else(|| payments.clone()))
            .clock(clock.clone())
            .notifier(hub.clone())
            .mirror(mirror)
            .rate_limiter(rate_limiter)
            .queue(QueueAdapter::in_process(move |processor| {
                let lanes = LocalLanes::new(processor, lane_options);
                let _ = lanes_tx.send(lanes.clone());
                Arc::new(lanes) as Arc<dyn RequestQueue>
            }))
            .authenticator(Authenticator::hs256(DEV_JWT_SECRET.as_bytes()))
            .build();
        let lanes = lanes_rx.recv().expect("the builder built the lanes");
        let router = app.router().merge(booking_local::websocket::routes(
            hub.clone(),
            app.service().clone(),
            app.authenticator().clone(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let addr = listener.local_addr().expect("local address");
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .expect("serve the test app");
        });
        Self {
            base: format!("http://{addr}"),
            ws_base: format!("ws://{addr}"),
            clock,
            app,
            lanes,
            hub,
            stores,
            payments,
            server,
            guard,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Waits until the lanes have decided everything they can (nothing in flight, nothing
    /// waiting in a lane that is not paused), and the pushes of those decisions are queued.
    pub async fn drain(&self) {
        self.lanes.until_idle().await;
    }

    /// Moves the app's clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// One expiry sweep at the app's current time.
    pub async fn sweep(&self) -> SweepReport {
        self.app.sweeper().sweep_once().await.expect("sweep")
    }

    /// The request store the app runs on (the real one, unwrapped by any test wrapper).
    pub fn requests(&self) -> Arc<dyn RequestStore> {
        match &self.guard {
            Guard::Embedded { store, .. } => Arc::new(store.clone()),
            Guard::PostgresRedis(backend) => Arc::new(backend.0.store().clone()),
        }
    }

    pub fn holds(&self) -> Arc<dyn HoldStore> {
        match &self.guard {
            Guard::Embedded { store, .. } => Arc::new(store.clone()),
            Guard::PostgresRedis(backend) => Arc::new(backend.0.store().clone()),
        }
    }

    /// The private Redis of a PostgreSQL + Redis app (to flush, stop or restart it).
    pub fn redis(&mut self) -> Option<&mut PrivateRedis> {
        match &mut self.guard {
            Guard::PostgresRedis(backend) => Some(&mut backend.1),
            Guard::Embedded { .. } => None,
        }
    }

    /// How many booking requests the store holds, counted in its table (not through a port, so
    /// that "nothing was written" is checked where writes land).
    pub async fn stored_request_count(&self) -> i64 {
        let sql = "SELECT count(*) FROM booking_requests";
        match &self.guard {
            Guard::Embedded { dir, .. } => {
                use sqlx::Connection;
                let url = format!("sqlite://{}", dir.path().join("seatbook.db").display());
                let mut raw = sqlx::SqliteConnection::connect(&url)
                    .await
                    .expect("open the embedded store");
                sqlx::query_scalar(sql)
                    .fetch_one(&mut raw)
                    .await
                    .expect("count requests")
            }
            Guard::PostgresRedis(backend) => {
                let mut raw = backend.0.raw_connection().await;
                sqlx::query_scalar(sql)
                    .fetch_one(&mut raw)
                    .await
                    .expect("count requests")
            }
        }
    }

    /// Closes the real store under the app (an outage that does not heal).
    pub async fn close_store(&self) {
        match &self.guard {
            Guard::Embedded { store, .. } => store.close().await,
            Guard::PostgresRedis(backend) => backend.0.store().close().await,
        }
    }
}
