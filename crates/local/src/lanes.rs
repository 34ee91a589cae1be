//! In-process FIFO lanes, one per show: the local stand-in for SQS FIFO with
//! `MessageGroupId = showId`.
//!
//! The durable queue is the request store itself (every request is QUEUED in it before the client
//! hears 202); a lane is only the in-memory order of what is waiting, rebuilt from the store on
//! start. Each lane runs one task that drains whatever is waiting (up to a batch limit), hands it
//! to the [`BatchProcessor`] and measures its own rate for queue-time estimates. Lanes of different
//! shows are independent tasks and never wait for each other.
//!
//! A batch that keeps failing is retried with backoff; after `max_attempts` failures that count
//! (an unreachable store does not), its requests are decided one by one, and one that still
//! cannot be decided is set aside as a dead letter, so its show goes on. An operator redrives or
//! discards it (`/api/v1/admin/dead-letters`).
//!
//! On shutdown ([`RequestQueue::drain`]) the lanes stop taking requests, decide what they hold
//! (a paused lane keeps its requests for the operator), and end; whatever the grace period does
//! not cover stays QUEUED in the store and is recovered on the next start.

use async_trait::async_trait;
use booking_app::processor::BatchProcessor;
use booking_core::ports::{QueueError, QueueTicket, RequestQueue};
use booking_core::{BookingRequest, Chain, ShowId};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

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
        // Arrivals are almost always the newest waiting request: count only the ones behind
        // (usually none) instead of the ones ahead, which a paused backlog makes many.
        let behind = state
            .waiting
            .range((Bound::Excluded(seq), Bound::Unbounded))
            .count();
        let position = state.in_flight + (state.waiting.len() - behind) as u64;
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
    /// Longest pause between retries of a batch that failed.
    pub max_backoff: Duration,
    /// Failed tries (that count) before a request is set aside as a dead letter (`MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// Fault injection for tests and the load tool (`FAULT_DELIVER_TWICE`): every decided batch
    /// is handed to the decider a second time, as SQS delivers a message again when its delete
    /// was lost. The second delivery must decide nothing and only repeat the stored outcomes.
    pub deliver_twice: bool,
}

impl Default for LaneOptions {
    fn default() -> Self {
        Self {
            max_batch: 512,
            max_backoff: Duration::from_secs(5),
            max_attempts: 5,
            deliver_twice: false,
        }
    }
}

/// The set of lanes; cheap to clone.
#[derive(Clone)]
pub struct LocalLanes {
    shared: Arc<Shared>,
    processor: Arc<BatchProcessor>,
    options: LaneOptions,
}

#[derive(Default)]
struct Shared {
    lanes: Mutex<HashMap<ShowId, Arc<Lane>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Set by `drain`: lanes take no more requests and end once they hold nothing to decide.
    draining: AtomicBool,
    /// Woken after every batch, for [`LocalLanes::until_idle`].
    progress: Notify,
}

impl LocalLanes {
    pub fn new(processor: Arc<BatchProcessor>, options: LaneOptions) -> Self {
        Self {
            shared: Arc::default(),
            processor,
            options,
        }
    }

    fn lane(&self, show: ShowId) -> Arc<Lane> {
        let mut lanes = self.shared.lanes.lock().expect("lanes poisoned");
        lanes
            .entry(show)
            .or_insert_with(|| {
                let lane = Arc::new(Lane {
                    show,
                    state: Mutex::default(),
                    wake: Notify::new(),
                });
                let task = tokio::spawn(run_lane(
                    lane.clone(),
                    self.shared.clone(),
                    self.processor.clone(),
                    self.options.clone(),
                ));
                self.shared.tasks.lock().expect("lanes poisoned").push(task);
                lane
            })
            .clone()
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

    fn lanes(&self) -> Vec<Arc<Lane>> {
        self.shared
            .lanes
            .lock()
            .expect("lanes poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// Whether every lane is idle: no batch being decided, and nothing waiting in a lane that is
    /// not paused.
    pub fn is_idle(&self) -> bool {
        self.lanes().iter().all(|l| {
            let s = l.state.lock().expect("lane poisoned");
            s.in_flight == 0 && (s.paused || s.waiting.is_empty())
        })
    }

    /// Waits until [`LocalLanes::is_idle`]: everything that can be decided now has been.
    pub async fn until_idle(&self) {
        loop {
            // Created before the check, so a batch finishing in between still wakes it.
            let progress = self.shared.progress.notified();
            if self.is_idle() {
                return;
            }
            progress.await;
        }
    }

    /// Requests waiting or being decided, over every lane.
    fn undecided(&self) -> usize {
        self.lanes()
            .iter()
            .map(|l| {
                let s = l.state.lock().expect("lane poisoned");
                s.waiting.len() + s.in_flight as usize
            })
            .sum()
    }
}

async fn run_lane(
    lane: Arc<Lane>,
    shared: Arc<Shared>,
    processor: Arc<BatchProcessor>,
    options: LaneOptions,
) {
    loop {
        let batch: Vec<BookingRequest> = {
            let mut state = lane.state.lock().expect("lane poisoned");
            if state.paused || state.waiting.is_empty() {
                if shared.draining.load(Ordering::SeqCst) {
                    return;
                }
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
        let decided = decide(&processor, lane.show, &batch, &options).await;
        if decided.is_ok() && options.deliver_twice {
            deliver_again(&processor, lane.show, &batch).await;
        }
        if let Err(exhausted) = decided {
            if let [request] = &batch[..] {
                set_aside(&processor, request, &exhausted, &options).await;
            } else {
                // One of them (or more) cannot be decided, and the batch fails as a whole: decide
                // each alone, in arrival order, so that only what is at fault is set aside.
                tracing::warn!(show_id = %lane.show, size = batch.len(), reason = %exhausted.reason, "batch cannot be decided; deciding its requests one by one");
                for request in &batch {
                    if let Err(exhausted) = decide(
                        &processor,
                        lane.show,
                        std::slice::from_ref(request),
                        &options,
                    )
                    .await
                    {
                        set_aside(&processor, request, &exhausted, &options).await;
                    }
                }
            }
        }

        let elapsed = started.elapsed().as_secs_f64().max(1e-6);
        let mut state = lane.state.lock().expect("lane poisoned");
        let batch_rate = batch.len() as f64 / elapsed;
        state.rate = Some(state.rate.map_or(batch_rate, |r| {
            r * (1.0 - RATE_ALPHA) + batch_rate * RATE_ALPHA
        }));
        state.in_flight = 0;
        drop(state);
        shared.progress.notify_waiters();
    }
}

/// `deliver_twice`: the decided batch once more, right after its first delivery. What it
/// decides (it must be nothing) is logged; a failure is only logged, since the first delivery
/// already decided the batch.
async fn deliver_again(processor: &BatchProcessor, show: ShowId, batch: &[BookingRequest]) {
    match processor.process(show, batch).await {
        Ok(report) if report.duplicates == batch.len() => {}
        Ok(report) => tracing::error!(
            show_id = %show,
            size = batch.len(),
            duplicates = report.duplicates,
            "a second delivery of a decided batch was not recognised as a duplicate"
        ),
        Err(e) => {
            tracing::warn!(show_id = %show, error = %Chain(&e), "second delivery of a batch failed")
        }
    }
}

/// Why a batch was given up on: the last failure, after this many tries that count.
struct Exhausted {
    reason: String,
    attempts: u32,
}

/// Decides `batch`, retrying failures with backoff, until it is decided or `max_attempts`
/// failures that count ([`booking_app::processor::ProcessError::counts_as_attempt`]) have
/// happened. A store that does
/// not answer is waited for, however long: nothing can be decided or set aside meanwhile.
async fn decide(
    processor: &BatchProcessor,
    show: ShowId,
    batch: &[BookingRequest],
    options: &LaneOptions,
) -> Result<(), Exhausted> {
    let mut backoff = Duration::from_millis(50);
    let mut attempts = 0;
    loop {
        let e = match processor.process(show, batch).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if e.counts_as_attempt() {
            attempts += 1;
        }
        if attempts >= options.max_attempts {
            return Err(Exhausted {
                reason: Chain(&e).to_string(),
                attempts,
            });
        }
        tracing::warn!(show_id = %show, error = %Chain(&e), attempts, ?backoff, "batch failed; will retry");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(options.max_backoff);
    }
}

/// Sets a request aside as a dead letter; keeps trying while the store cannot record it (the
/// request is durable meanwhile, and blocking the lane is better than losing its place).
async fn set_aside(
    processor: &BatchProcessor,
    request: &BookingRequest,
    exhausted: &Exhausted,
    options: &LaneOptions,
) {
    while let Err(e) = processor
        .dead_letter(request, &exhausted.reason, exhausted.attempts)
        .await
    {
        tracing::error!(request_id = %request.request_id, error = %Chain(&e), "dead letter not recorded; will retry");
        tokio::time::sleep(options.max_backoff).await;
    }
}

#[async_trait]
impl RequestQueue for LocalLanes {
    async fn enqueue(&self, request: &BookingRequest) -> Result<QueueTicket, QueueError> {
        if self.shared.draining.load(Ordering::SeqCst) {
            return Err(QueueError::unavailable("the server is shutting down"));
        }
        Ok(self.push(request.clone()))
    }

    async fn position(&self, request: &BookingRequest) -> Option<QueueTicket> {
        let lane = self
            .shared
            .lanes
            .lock()
            .expect("lanes poisoned")
            .get(&request.show_id)
            .cloned()?;
        let state = lane.state.lock().expect("lane poisoned");
        Lane::ticket(&state, request.seq)
    }

    async fn pause(&self, show: ShowId) -> Result<(), QueueError> {
        self.lane(show).state.lock().expect("lane poisoned").paused = true;
        Ok(())
    }

    async fn resume(&self, show: ShowId) -> Result<(), QueueError> {
        let lane = self.lane(show);
        lane.state.lock().expect("lane poisoned").paused = false;
        lane.wake.notify_one();
        Ok(())
    }

    async fn drain(&self, grace: Duration) -> usize {
        self.shared.draining.store(true, Ordering::SeqCst);
        for lane in self.lanes() {
            lane.wake.notify_one();
        }
        let tasks = std::mem::take(&mut *self.shared.tasks.lock().expect("lanes poisoned"));
        let lanes = tasks.len();
        if tokio::time::timeout(grace, futures_util::future::join_all(tasks))
            .await
            .is_err()
        {
            tracing::warn!(?grace, "lanes still deciding when the grace period ran out");
        }
        let undecided = self.undecided();
        tracing::info!(lanes, undecided, "lanes drained");
        undecided
    }
}
