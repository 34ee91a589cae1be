//! The production source of truth: every port of `booking_core::ports` that holds durable state
//! (catalog, booking requests, holds and seat claims, orders and payments) in PostgreSQL, with the
//! same semantics as the embedded SQLite store, proven by the same contract suite
//! (`booking-testkit`).
//!
//! How it is put together, and why:
//!
//! - **No implicit migrations.** [`PgStore::connect`] only opens a pool; the schema is applied by
//!   an explicit [`PgStore::migrate`] (a deploy step). A Lambda cold start must never race other
//!   cold starts to alter a production schema, nor pay for the check.
//! - **The database is the last guard.** Two workers may decide the same show at once
//!   (redelivery, an expired visibility timeout). `seat_claims` has one row per seat, and a batch
//!   may take a row over only when its claim has expired; every grant must also find its request
//!   still undecided. Those are guarded writes, which PostgreSQL re-checks against the newest
//!   committed row after waiting for a concurrent writer, so READ COMMITTED is enough (see
//!   `holds.rs`). Orders add row locks: each order operation locks its order (or hold) before
//!   it reads what it decides on, so the checks SQLite's single writer keeps true stay true here
//!   (see `orders.rs`).
//! - **Few round trips.** A batch is committed with two bulk statements (arrays bound once and
//!   expanded with `UNNEST`) inside one transaction, whatever its size: the cost of a decision is
//!   the share of a commit, not a statement per seat.
//! - **Group commit for intake.** `insert_request` is durable before it returns. Concurrent
//!   callers hand their request to one task that inserts everything waiting with one statement
//!   (one commit, one WAL flush) and answers each caller after the commit (see `intake.rs`,
//!   which also records the measurement that chose it over one statement per request).
//! - **Compile-time checked SQL.** Every query is a `sqlx::query!` family macro checked against
//!   the schema in `migrations/postgres`; the metadata lives in `.sqlx/` at the workspace root,
//!   so builds need no database (`SQLX_OFFLINE=true` in `.cargo/config.toml`).
//! - **Expiry by time.** Holds and claims carry `expires_at`; every read compares it with `now`,
//!   and a new claim may take over a seat whose claim has expired. Sweepers only tidy up.
//! - Timestamps are `TIMESTAMPTZ` (microseconds); values the store returns from writes are
//!   truncated the same way, so a request reads back exactly as `insert_request` returned it.

// Unit tests are built with every dev-dependency of the package; each uses only some.
#![cfg_attr(test, allow(unused_crate_dependencies))]

mod batch;
mod catalog;
mod codec;
mod holds;
mod idempotency;
mod intake;
mod orders;
mod requests;
mod show_locks;
mod waiting_rooms;

pub use booking_sql::IntakeStats;

use booking_core::NewBookingRequest;
use booking_core::ports::Inserted;
use booking_core::ports::StoreError;
use booking_sql::{GroupCommit, IntakeCounters};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::sync::Arc;
use std::time::Duration;

/// The migrations [`PgStore::migrate`] applies (embedded at build time).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// How `insert_request` reaches the database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IntakeMode {
    /// Concurrent requests are written together by one task: one statement and one commit per
    /// group of up to 512 requests. The default: about four times the throughput of `Direct`
    /// under load, and no slower for a lone caller (figures in `intake.rs`).
    #[default]
    Grouped,
    /// Each caller writes its own request with one statement on a pooled connection.
    Direct,
}

/// Tuning of [`PgStore::connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgOptions {
    /// Most connections of the pool. On Lambda keep it small (one invocation at a time per
    /// instance, many instances): 2-4.
    pub max_connections: u32,
    /// Connections kept open while idle.
    pub min_connections: u32,
    /// How long a caller waits for a free connection before an unavailable `StoreError`.
    pub acquire_timeout: Duration,
    /// Idle connections are closed after this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Server-side limit on one statement, including time spent waiting for row locks held by
    /// a stuck writer (`None`: the server's default, usually unlimited). Sent as a startup
    /// option; set `None` behind a pooler that refuses startup options.
    pub statement_timeout: Option<Duration>,
    pub intake: IntakeMode,
    /// Ping a pooled connection before handing it out (one round trip per use). Catches
    /// connections that died while idle (a frozen Lambda instance, a failover) before a query
    /// does; turn off where a failed call is retried anyway and latency matters more.
    pub test_before_acquire: bool,
    /// Reported in `pg_stat_activity`.
    pub application_name: String,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            statement_timeout: Some(Duration::from_secs(30)),
            intake: IntakeMode::Grouped,
            test_before_acquire: true,
            application_name: "booking-postgres".to_owned(),
        }
    }
}

/// The PostgreSQL store. Cheap to clone: clones share the pool and the intake writer.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// The group-commit writer, in [`IntakeMode::Grouped`].
    intake: Option<GroupCommit<NewBookingRequest, Inserted>>,
    intake_counters: Arc<IntakeCounters>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options = self.inner.pool.connect_options();
        f.debug_struct("PgStore")
            .field("host", &options.get_host())
            .field("database", &options.get_database())
            .field("grouped_intake", &self.inner.intake.is_some())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Opens a pool to the database at `url` (`postgres://user:pass@host:5432/db`). Does not
    /// touch the schema: run [`PgStore::migrate`] as a deploy step. Must be called inside a
    /// Tokio runtime (in `Grouped` intake mode it starts the intake writer task).
    #[tracing::instrument(skip_all)]
    pub async fn connect(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        let connect_options: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::unavailable(format!("invalid database URL: {e}")))?;
        Self::connect_with(connect_options, options).await
    }

    /// [`PgStore::connect`] with parsed connection options.
    pub async fn connect_with(
        connect_options: PgConnectOptions,
        options: PgOptions,
    ) -> Result<Self, StoreError> {
        // Durability of an answered insert relies on the server's `synchronous_commit = on` (its
        // default; Aurora is always durable). It is not forced here because poolers such as RDS
        // Proxy and PgBouncer refuse or pin connections with startup options.
        let mut connect_options = connect_options.application_name(&options.application_name);
        if let Some(timeout) = options.statement_timeout {
            connect_options = connect_options
                .options([("statement_timeout", format!("{}ms", timeout.as_millis()))]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .min_connections(options.min_connections)
            .acquire_timeout(options.acquire_timeout)
            .idle_timeout(options.idle_timeout)
            .test_before_acquire(options.test_before_acquire)
            .connect_with(connect_options)
            .await
            .map_err(codec::store_error)?;
        Ok(Self::from_pool(pool, options.intake))
    }

    /// Wraps an existing pool.
    pub fn from_pool(pool: PgPool, intake: IntakeMode) -> Self {
        let intake_counters = Arc::new(IntakeCounters::default());
        let intake = match intake {
            IntakeMode::Grouped => {
                let pool = pool.clone();
                Some(GroupCommit::spawn(
                    move |group| {
                        let pool = pool.clone();
                        async move { intake::write_group(&pool, &group).await }
                    },
                    intake::MAX_GROUP,
                    intake_counters.clone(),
                ))
            }
            IntakeMode::Direct => None,
        };
        Self {
            inner: Arc::new(Inner {
                pool,
                intake,
                intake_counters,
            }),
        }
    }

    /// Brings the schema up to date (the embedded `migrations/postgres`). Idempotent, and safe
    /// to run from several processes at once: sqlx serialises migrators with an advisory lock.
    #[tracing::instrument(skip_all)]
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.inner.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => codec::store_error(e),
            other => StoreError::corrupt(format!("database schema: {other}")),
        })
    }

    /// `t` as this store keeps it: `TIMESTAMPTZ` has microseconds, so what is written reads back
    /// truncated to the microsecond (and every write returns it that way too).
    pub fn stored_instant(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
        codec::truncate_micros(t)
    }

    /// The pool, for operations and tests that need SQL the ports do not offer.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// Closes every connection (for every clone), waiting for them to finish. Later calls fail
    /// with an unavailable [`StoreError`].
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    /// How many commits the intake writer has made for how many requests, since `connect`.
    pub fn intake_stats(&self) -> IntakeStats {
        self.inner.intake_counters.snapshot()
    }
}
