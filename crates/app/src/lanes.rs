//! In-process FIFO lanes, one per show: the local stand-in for SQS FIFO with
//! `MessageGroupId = showId`.
//!
//! The durable queue is the request store itself (every request is QUEUED in it before the client
//! hears 202); a lane is only the in-memory order of what is waiting, rebuilt from the store on
//! start. Each lane runs one task that drains whatever is waiting (up to a batch limit), hands it
//! to the [`BatchProcessor`] and measures its own rate for queue-time estimates. Lanes of different
//! shows are independent tasks and never wait for each other.

use crate::processor::{BatchProcessor, ProcessError};
use async_trait::async_trait;
use booking_core::ports::{LaneStats, QueueError, QueueTicket, RequestQueue};
use booking_core::{BookingRequest, ShowId};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Decisions per second assumed before a lane has measured its own rate.
const DEFAULT_RATE: f64 = 1_000.0;
/// Weight of the newest batch in the rate's moving average.
const RATE_ALPHA: f64 = 0.2;

#[derive(Default)]
struct LaneState {
    /// Waiting requests by arrival sequence: concurrent accepts may enqueue slightly out of
    /// order, the lane always drains in sequence order.
    waiting: BTreeMap<i64, BookingRequest>,
    /// Requests taken for the batch being decided right now (still ahead of everyone waiting).
    in_flight: u64,
    paused: bool,
    decided: u64,
    rate: Option<f64>,
}

struct Lane {
    show: ShowId,
    state: Mutex<LaneState>,
    wake: Notify,
}

impl Lane {
    fn ticket(state: &LaneState, seq: i64) -> Option<QueueTicket> {
        if !state.waiting.contains_key(&seq) {
            return None;
        }
        let position = state.in_flight + state.waiting.range(..=seq).count() as u64;
        let rate = state.rate.unwrap_or(DEFAULT_RATE).max(1.0);
        Some(QueueTicket {
            position,
            estimated_wait_seconds: (position as f64 / rate).ceil() as u64,
        })
    }
}

/// Tuning of the local lanes.
#[derive(Debug, Clone)]
pub struct LaneOptions {
    /// Most requests decided in one batch (one transaction).
    pub max_batch: usize,
    /// Longest pause between retries of a batch that failed for a transient reason.
    pub max_backoff: Duration,
}

impl Default for LaneOptions {
    fn default() -> Self {
        Self {
            max_batch: 512,
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// The set of lanes; cheap to clone.
#[derive(Clone)]
pub struct LocalLanes {
    lanes: Arc<Mutex<HashMap<ShowId, Arc<Lane>>>>,
    processor: Arc<BatchProcessor>,
    options: LaneOptions,
}

impl LocalLanes {
    pub fn new(processor: Arc<BatchProcessor>, options: LaneOptions) -> Self {
        Self {
            lanes: Arc::default(),
            processor,
            options,
        }
    }

    fn lane(&self, show: ShowId) -> Arc<Lane> {
        let mut lanes = self.lanes.lock().expect("lanes poisoned");
        lanes
            .entry(show)
            .or_insert_with(|| {
                let lane = Arc::new(Lane {
                    show,
                    state: Mutex::default(),
                    wake: Notify::new(),
                });
                tokio::spawn(run_lane(
                    lane.clone(),
                    self.processor.clone(),
                    self.options.clone(),
                ));
                lane
            })
            .clone()
    }

    /// Puts back every request that was waiting when the process last stopped, in arrival order.
    pub fn recover(&self, pending: Vec<BookingRequest>) -> usize {
        let n = pending.len();
        for request in pending {
            self.push(request);
        }
        n
    }

    fn push(&self, request: BookingRequest) -> QueueTicket {
        let lane = self.lane(request.show_id);
        let seq = request.seq;
        let ticket = {
            let mut state = lane.state.lock().expect("lane poisoned");
            state.waiting.insert(seq, request);
            Lane::ticket(&state, seq).expect("just inserted")
        };
        lane.wake.notify_one();
        ticket
    }

    /// Whether every lane is idle (nothing waiting, nothing being decided).
    pub fn is_idle(&self) -> bool {
        self.lanes
            .lock()
            .expect("lanes poisoned")
            .values()
            .all(|l| {
                let s = l.state.lock().expect("lane poisoned");
                s.waiting.is_empty() && s.in_flight == 0
            })
    }
}

async fn run_lane(lane: Arc<Lane>, processor: Arc<BatchProcessor>, options: LaneOptions) {
    loop {
        let batch: Vec<BookingRequest> = {
            let mut state = lane.state.lock().expect("lane poisoned");
            if state.paused || state.waiting.is_empty() {
                None
            } else {
                let take = state.waiting.len().min(options.max_batch);
                let batch: Vec<_> = (0..take)
                    .filter_map(|_| state.waiting.pop_first().map(|(_, r)| r))
                    .collect();
                state.in_flight = batch.len() as u64;
                Some(batch)
            }
        }
        .unwrap_or_default();
        if batch.is_empty() {
            lane.wake.notified().await;
            continue;
        }

        let started = Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            match processor.process(lane.show, &batch).await {
                Ok(_) => break,
                Err(ProcessError::Retryable(e)) => {
                    tracing::warn!(show_id = %lane.show, error = %e, ?backoff, "batch failed; will retry");
                }
                Err(ProcessError::Fatal(e)) => {
                    // Nothing was committed and retrying the same input cannot succeed, but the
                    // requests are durable as QUEUED/PROCESSING: keep retrying slowly so an
                    // operator can repair the data without losing them.
                    tracing::error!(show_id = %lane.show, error = %e, "batch cannot be decided; retrying slowly");
                    backoff = options.max_backoff;
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(options.max_backoff);
        }

        let elapsed = started.elapsed().as_secs_f64().max(1e-6);
        let mut state = lane.state.lock().expect("lane poisoned");
        let batch_rate = batch.len() as f64 / elapsed;
        state.rate = Some(state.rate.map_or(batch_rate, |r| {
            r * (1.0 - RATE_ALPHA) + batch_rate * RATE_ALPHA
        }));
        state.decided += batch.len() as u64;
        state.in_flight = 0;
    }
}

#[async_trait]
impl RequestQueue for LocalLanes {
    async fn enqueue(&self, request: &BookingRequest) -> Result<QueueTicket, QueueError> {
        Ok(self.push(request.clone()))
    }

    async fn position(&self, request: &BookingRequest) -> Option<QueueTicket> {
        let lane = self
            .lanes
            .lock()
            .expect("lanes poisoned")
            .get(&request.show_id)
            .cloned()?;
        let state = lane.state.lock().expect("lane poisoned");
        Lane::ticket(&state, request.seq)
    }

    async fn stats(&self) -> Vec<LaneStats> {
        let lanes: Vec<_> = self
            .lanes
            .lock()
            .expect("lanes poisoned")
            .values()
            .cloned()
            .collect();
        let mut stats: Vec<LaneStats> = lanes
            .iter()
            .map(|l| {
                let s = l.state.lock().expect("lane poisoned");
                LaneStats {
                    show_id: l.show,
                    waiting: s.waiting.len() as u64 + s.in_flight,
                    decided: s.decided,
                    paused: s.paused,
                    decisions_per_second: s.rate.unwrap_or(0.0),
                }
            })
            .collect();
        stats.sort_by_key(|s| s.show_id);
        stats
    }

    async fn pause(&self, show: ShowId) {
        self.lane(show).state.lock().expect("lane poisoned").paused = true;
    }

    async fn resume(&self, show: ShowId) {
        let lane = self.lane(show);
        lane.state.lock().expect("lane poisoned").paused = false;
        lane.wake.notify_one();
    }
}
