//! The embedded source of truth: every port of `booking_core::ports` that holds durable state
//! (catalog, booking requests, holds and seat claims) in one SQLite file.
//!
//! It exists so the whole system runs on one machine with nothing to install, with the same
//! guarantees the PostgreSQL adapter gives in production: an accepted request is on disk before
//! the client hears 202, and a seat can never be claimed by two live holds because the
//! `seat_claims` primary key refuses it, whatever the workers above believe.
//!
//! How it is put together, and why:
//!
//! - **One writer connection.** SQLite allows one writer at a time; several connections competing
//!   for that lock only add `SQLITE_BUSY` retries and lock hand-offs. All writes therefore go
//!   through a pool of exactly one connection, so they queue in the pool instead of in SQLite.
//!   Reads use a separate small pool (WAL mode lets them run while the writer commits).
//! - **Group commit for intake.** `insert_request` must be durable before it returns, and a
//!   durable commit costs an fsync. Concurrent callers hand their request to one task that takes
//!   everything waiting, writes it in one transaction and answers each caller after the commit:
//!   one fsync for hundreds of requests during a flash sale (`booking_sql::group_commit`, with
//!   this store's writer in `intake.rs`).
//! - **The commit plan is the core's.** What a decided batch writes (outcomes, released holds,
//!   new holds, claims) is worked out by `booking_core::commit::CommitPlan`, exactly as for
//!   PostgreSQL; `holds.rs` only executes it, statement by statement, inside one transaction.
//! - **Expiry by time.** Holds and claims carry `expires_at`; every read compares it with `now`,
//!   and a new claim may take over a seat whose claim has expired. Sweepers only tidy up.
//! - Timestamps are stored as unix milliseconds, so values come back truncated to the
//!   millisecond; the store also truncates what it returns from writes, so a request reads back
//!   exactly as `insert_request` returned it.

// Unit tests are built with every dev-dependency of the package; each uses only some.
#![cfg_attr(test, allow(unused_crate_dependencies))]

mod catalog;
mod codec;
mod holds;
mod idempotency;
mod intake;
mod orders;
mod requests;
mod waiting_rooms;

pub use booking_sql::IntakeStats;

use booking_core::NewBookingRequest;
use booking_core::ports::Inserted;
use booking_core::ports::StoreError;
use booking_sql::{GroupCommit, IntakeCounters};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a connection waits for a lock held by someone else (another process on the same
/// file, or a checkpoint) before giving up with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How hard a commit insists on reaching the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// Every commit is fsynced: an accepted request survives a power cut. The default, because
    /// "no accepted request is lost" is an invariant.
    #[default]
    Full,
    /// Commits survive a crash of the process but the last ones may be lost on power failure
    /// (WAL is fsynced only at checkpoints). For benchmarks and throwaway demos.
    Normal,
}

/// Tuning of [`SqliteStore::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    /// Connections of the read pool (at least one is always opened).
    pub max_readers: u32,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            synchronous: Synchronous::Full,
            max_readers: 4,
        }
    }
}

/// The SQLite store. Cheap to clone: clones share the connections and the intake writer.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Exactly one connection: every write, so writers never contend for SQLite's lock.
    writer: SqlitePool,
    readers: SqlitePool,
    intake: GroupCommit<NewBookingRequest, Inserted>,
    intake_counters: Arc<IntakeCounters>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it if missing) the database file at `path` and brings its schema up to
    /// date. Must be called inside a Tokio runtime: it starts the intake writer task.
    #[tracing::instrument(skip_all, fields(path = %path.display()))]
    pub async fn open(path: &Path, options: SqliteOptions) -> Result<Self, StoreError> {
        let base = SqliteConnectOptions::new()
            .filename(path)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);

        let writer_options = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match options.synchronous {
                Synchronous::Full => SqliteSynchronous::Full,
                Synchronous::Normal => SqliteSynchronous::Normal,
            });
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // A local file cannot silently drop a connection; a ping per acquire would only add
            // a round trip to the connection's worker thread on every write.
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(writer_options)
            .await
            .map_err(codec::store_error)?;

        sqlx::migrate!("../../migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => codec::store_error(e),
                other => StoreError::corrupt(format!("database schema: {other}")),
            })?;

        // Readers never set the journal mode (WAL is a property of the file, set by the writer)
        // and refuse writes, so a read path can never take the write lock by accident.
        let reader_options = base.pragma("query_only", "ON");
        let readers = SqlitePoolOptions::new()
            .max_connections(options.max_readers.max(1))
            .min_connections(1)
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(reader_options)
            .await
            .map_err(codec::store_error)?;

        let intake_counters = Arc::new(IntakeCounters::default());
        let pool = writer.clone();
        let intake = GroupCommit::spawn(
            move |group| {
                let pool = pool.clone();
                async move { intake::write_group(&pool, &group).await }
            },
            intake::MAX_GROUP,
            intake_counters.clone(),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer,
                readers,
                intake,
                intake_counters,
            }),
        })
    }

    /// `t` as this store keeps it: instants are whole unix milliseconds here, so what is written
    /// reads back truncated to the millisecond (and every write returns it that way too).
    pub fn stored_instant(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
        codec::truncate_millis(t)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Closes every connection (for every clone), waiting for them to finish. Later calls fail
    /// with an unavailable [`StoreError`]. Dropping the last clone also closes, in the background.
    pub async fn close(&self) {
        self.inner.writer.close().await;
        self.inner.readers.close().await;
    }

    /// How many commits the intake writer has made for how many requests, since `open`.
    pub fn intake_stats(&self) -> IntakeStats {
        self.inner.intake_counters.snapshot()
    }

    fn writer(&self) -> &SqlitePool {
        &self.inner.writer
    }

    fn readers(&self) -> &SqlitePool {
        &self.inner.readers
    }
}
