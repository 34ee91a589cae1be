//! [`ShowLocks`] within one process: a mutex per show. Enough where one process decides
//! everything (the local server on its embedded store). Where several processes share a store,
//! it stands in front of the store's own lock (PostgreSQL's advisory locks, `booking-postgres`):
//! the deciders of a process queue here, and only one of them at a time waits for (and holds) the
//! database's lock and a connection for it, so a crowd of concurrent requests cannot take every
//! pooled connection to wait on a lock whose holder then needs one.

use async_trait::async_trait;
use booking_core::ShowId;
use booking_core::ports::{HeldLock, ShowLockGuard, ShowLocks, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct InProcessShowLocks {
    shows: Mutex<HashMap<ShowId, Arc<tokio::sync::Mutex<()>>>>,
    /// Taken next, once this process's lock is held.
    then: Option<Arc<dyn ShowLocks>>,
}

impl InProcessShowLocks {
    pub fn new() -> Self {
        Self::default()
    }

    /// This process's lock of a show, then `shared`'s (the database's).
    pub fn in_front_of(shared: Arc<dyn ShowLocks>) -> Self {
        Self {
            shows: Mutex::default(),
            then: Some(shared),
        }
    }
}

#[async_trait]
impl ShowLocks for InProcessShowLocks {
    async fn lock(&self, show: ShowId) -> Result<ShowLockGuard, StoreError> {
        let mutex = self
            .shows
            .lock()
            .expect("show locks poisoned")
            .entry(show)
            .or_default()
            .clone();
        let local = Local(mutex.lock_owned().await);
        match &self.then {
            Some(shared) => Ok(ShowLockGuard::new(Layered {
                shared: Some(shared.lock(show).await?),
                local,
            })),
            None => Ok(ShowLockGuard::new(local)),
        }
    }
}

/// This process's lock of a show.
struct Local(#[allow(dead_code, reason = "held for its drop")] tokio::sync::OwnedMutexGuard<()>);

#[async_trait]
impl HeldLock for Local {
    async fn release(self: Box<Self>) {}
}

/// The shared lock, held under this process's. Released in that order: the shared one first
/// (awaited), then this process's, so the next decider here finds the shared one free.
struct Layered {
    shared: Option<ShowLockGuard>,
    local: Local,
}

#[async_trait]
impl HeldLock for Layered {
    async fn release(mut self: Box<Self>) {
        if let Some(shared) = self.shared.take() {
            shared.release().await;
        }
        drop(self.local);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_per_show_at_a_time() {
        let locks = Arc::new(InProcessShowLocks::new());
        let (a, b) = (ShowId::new_random(), ShowId::new_random());
        let held = locks.lock(a).await.unwrap();
        let _other_show = locks.lock(b).await.unwrap();
        let waiting = {
            let locks = locks.clone();
            tokio::spawn(async move { locks.lock(a).await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the second holder of show a waits");
        held.release().await;
        waiting.await.unwrap().unwrap();
    }
}
