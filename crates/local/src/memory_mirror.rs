//! The embedded seat mirror and queue counters: the same contract as the Redis adapter, in
//! process memory, for the local server when no `REDIS_URL` is set.
//!
//! It keeps the seat map's read path off the database exactly as Redis does in production, so
//! the local server exercises the same code path (cold → rebuild from the store → hot reads,
//! generation-guarded rebuilds) that runs deployed.

use async_trait::async_trait;
use booking_core::ports::{MirrorError, QueueCounters, SeatLock, SeatMirror};
use booking_core::{HoldId, RequestId, SeatId, SeatStatus, ShowId};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
struct ShowMirror {
    complete: bool,
    generation: u64,
    locks: HashMap<SeatId, SeatLock>,
    tickets: u64,
    /// The ticket each request took (never forgotten: the in-memory counters live only as long
    /// as the process, and serve tests and the local server).
    ticket_of: HashMap<RequestId, u64>,
    decided: u64,
}

#[derive(Default)]
pub struct MemoryMirror {
    shows: Mutex<HashMap<ShowId, ShowMirror>>,
}

impl MemoryMirror {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, show: ShowId, f: impl FnOnce(&mut ShowMirror) -> T) -> T {
        f(self
            .shows
            .lock()
            .expect("mirror poisoned")
            .entry(show)
            .or_default())
    }
}

#[async_trait]
impl SeatMirror for MemoryMirror {
    async fn apply(
        &self,
        show: ShowId,
        locks: &[SeatLock],
        freed: &[(SeatId, HoldId)],
    ) -> Result<(), MirrorError> {
        self.with(show, |m| {
            m.generation += 1;
            for (seat, hold) in freed {
                if m.locks.get(seat).is_some_and(|l| l.hold_id == *hold) {
                    m.locks.remove(seat);
                }
            }
            for lock in locks {
                m.locks.insert(lock.seat_id, lock.clone());
            }
            // Writers prune what has run out (readers must not: their clocks may differ).
            let now = Utc::now();
            m.locks.retain(|_, l| l.expires_at > now);
        });
        Ok(())
    }

    async fn taken_seats(
        &self,
        show: ShowId,
        layout: &[SeatId],
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<(SeatId, SeatStatus)>>, MirrorError> {
        Ok(self.with(show, |m| {
            m.complete.then(|| {
                layout
                    .iter()
                    .filter_map(|s| {
                        m.locks
                            .get(s)
                            .filter(|l| l.expires_at > now)
                            .map(|l| (*s, l.status))
                    })
                    .collect()
            })
        }))
    }

    async fn generation(&self, show: ShowId) -> Result<u64, MirrorError> {
        Ok(self.with(show, |m| m.generation))
    }

    async fn rebuild(
        &self,
        show: ShowId,
        _layout: &[SeatId],
        locks: &[SeatLock],
        generation: u64,
    ) -> Result<bool, MirrorError> {
        Ok(self.with(show, |m| {
            if m.generation != generation {
                return false;
            }
            m.locks = locks.iter().map(|l| (l.seat_id, l.clone())).collect();
            m.complete = true;
            true
        }))
    }

    async fn invalidate(&self, show: ShowId) -> Result<(), MirrorError> {
        self.with(show, |m| m.complete = false);
        Ok(())
    }
}

#[async_trait]
impl QueueCounters for MemoryMirror {
    async fn take_ticket(
        &self,
        show: ShowId,
        request: RequestId,
        _keep_until: DateTime<Utc>,
    ) -> Result<u64, MirrorError> {
        Ok(self.with(show, |m| {
            if let Some(&ticket) = m.ticket_of.get(&request) {
                return ticket;
            }
            m.tickets += 1;
            m.ticket_of.insert(request, m.tickets);
            m.tickets
        }))
    }

    async fn ticket_of(
        &self,
        show: ShowId,
        request: RequestId,
    ) -> Result<Option<u64>, MirrorError> {
        Ok(self.with(show, |m| m.ticket_of.get(&request).copied()))
    }

    async fn add_decided(&self, show: ShowId, count: u64) -> Result<(), MirrorError> {
        self.with(show, |m| m.decided += count);
        Ok(())
    }

    async fn decided(&self, show: ShowId) -> Result<u64, MirrorError> {
        Ok(self.with(show, |m| m.decided))
    }
}
