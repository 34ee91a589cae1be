//! [`ShowLocks`] across processes: a transaction-scoped advisory lock per show
//! (`pg_advisory_xact_lock`), held in a transaction of its own for as long as the decider holds
//! the guard. Every process deciding on the same database (Lambda workers, api functions in
//! direct mode, a local server) waits for the same lock. A decider that dies lets go with its
//! connection: the database ends the transaction, and with it the lock.

use crate::{PgStore, codec};
use async_trait::async_trait;
use booking_core::ShowId;
use booking_core::ports::{HeldLock, ShowLockGuard, ShowLocks, StoreError};
use sqlx::{Postgres, Transaction};

/// The lock key of a show: its id folded into the 64 bits an advisory lock takes.
fn key(show: ShowId) -> i64 {
    let id = show.as_uuid().as_u128();
    ((id >> 64) as u64 ^ id as u64) as i64
}

/// The transaction holding a show's lock. Released by rolling it back (awaited); dropped
/// unreleased, it is rolled back in the background at once (not when the pooled connection is
/// next used), so the next decider does not wait on an idle connection.
struct Held(Option<Transaction<'static, Postgres>>);

#[async_trait]
impl HeldLock for Held {
    async fn release(mut self: Box<Self>) {
        if let Some(tx) = self.0.take()
            && let Err(e) = tx.rollback().await
        {
            tracing::warn!(error = %e, "releasing a show lock failed; the connection is dropped");
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            tokio::spawn(async move {
                if let Err(e) = tx.rollback().await {
                    tracing::warn!(error = %e, "releasing a show lock failed; the connection is dropped");
                }
            });
        }
    }
}

#[async_trait]
impl ShowLocks for PgStore {
    #[tracing::instrument(skip_all, fields(show_id = %show))]
    async fn lock(&self, show: ShowId) -> Result<ShowLockGuard, StoreError> {
        let mut tx = self.pool().begin().await.map_err(codec::store_error)?;
        // A backstop for a holder that is frozen or gone without closing its connection: the
        // server ends a transaction left idle this long, and with it the lock. A decision holds
        // it for milliseconds.
        sqlx::query("SET LOCAL idle_in_transaction_session_timeout = '60s'")
            .execute(&mut *tx)
            .await
            .map_err(codec::store_error)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(key(show))
            .execute(&mut *tx)
            .await
            .map_err(codec::store_error)?;
        Ok(ShowLockGuard::new(Held(Some(tx))))
    }
}
