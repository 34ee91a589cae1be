//! Shared counters and the request ↔ result matcher.
//!
//! A BOOKING_RESULT may reach the requester's WebSocket before the POST's 202 body has been read,
//! so both sides meet in one map keyed by request id: whichever arrives first leaves its instant
//! there, the second one computes the latency and removes the entry.

use hdrhistogram::Histogram;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Longest latency the histograms track (larger values are clamped): one hour, in µs.
const MAX_TRACKED_US: u64 = 3_600_000_000;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_US, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The decided states of a BOOKING_RESULT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failed,
    Expired,
    Other,
}

impl Outcome {
    pub fn parse(s: &str) -> Self {
        match s {
            "SUCCESS" => Self::Success,
            "FAILED" => Self::Failed,
            "EXPIRED" => Self::Expired,
            _ => Self::Other,
        }
    }
    fn index(self) -> usize {
        self as usize
    }
    pub const NAMES: [&'static str; 4] = ["SUCCESS", "FAILED", "EXPIRED", "other"];
}

enum Slot {
    /// The 202 came back first: when the POST was sent.
    Sent(Instant),
    /// The BOOKING_RESULT came first: when it was received.
    Arrived(Instant),
}

/// The matcher and the latency histograms, under one lock (every critical section is a hash map
/// operation and a histogram increment).
pub struct Book {
    slots: HashMap<Uuid, Slot>,
    /// POST sent → BOOKING_RESULT received, µs.
    pub e2e: Histogram<u64>,
    /// POST sent → 202 body read, µs.
    pub post: Histogram<u64>,
    /// Accepted requests still waiting for their result.
    pub waiting_result: u64,
    /// Results whose 202 has not (yet) been seen.
    pub early: u64,
    pub matched: u64,
    pub duplicate_results: u64,
}

#[derive(Default)]
pub struct Stats {
    /// POSTs handed to the client.
    pub sent: AtomicU64,
    /// Open loop: scheduled sends skipped because --concurrency POSTs were already in flight.
    pub skipped: AtomicU64,
    /// 202 answers with a request id.
    pub accepted: AtomicU64,
    /// Non-202 answers (and 202s without a usable request id).
    pub rejected: AtomicU64,
    pub transport_errors: AtomicU64,
    /// POSTs sent and not yet answered (or failed).
    pub in_flight: AtomicU64,
    /// BOOKING_RESULT messages received, all of them.
    pub decided: AtomicU64,
    pub by_outcome: [AtomicU64; 4],
    /// Nanoseconds after `start` of the latest BOOKING_RESULT.
    pub last_result_ns: AtomicU64,
    pub ws_closed: AtomicU64,
    pub ws_unparsed: AtomicU64,
    pub rejected_by_code: Mutex<BTreeMap<String, u64>>,
    pub transport_by_kind: Mutex<BTreeMap<String, u64>>,
    pub book: Mutex<Option<Book>>,
}

/// The counters at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub sent: u64,
    pub skipped: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub transport_errors: u64,
    pub in_flight: u64,
    pub decided: u64,
    pub waiting_result: u64,
}

impl Stats {
    pub fn new() -> Self {
        let s = Self::default();
        *s.book.lock().expect("book poisoned") = Some(Book {
            slots: HashMap::with_capacity(1 << 16),
            e2e: histogram(),
            post: histogram(),
            waiting_result: 0,
            early: 0,
            matched: 0,
            duplicate_results: 0,
        });
        s
    }

    fn with_book<R>(&self, f: impl FnOnce(&mut Book) -> R) -> R {
        let mut guard = self.book.lock().expect("book poisoned");
        f(guard.as_mut().expect("book present"))
    }

    /// A 202 for `id`, whose POST was sent at `sent` and answered at `answered`.
    pub fn accepted(&self, id: Uuid, sent: Instant, answered: Instant) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.with_book(|b| {
            b.post.saturating_record(micros(answered - sent));
            match b.slots.remove(&id) {
                Some(Slot::Arrived(received)) => {
                    b.early -= 1;
                    b.matched += 1;
                    b.e2e
                        .saturating_record(micros(received.saturating_duration_since(sent)));
                }
                Some(Slot::Sent(earlier)) => {
                    // The same id accepted twice: cannot happen without Idempotency-Key; keep the first.
                    b.slots.insert(id, Slot::Sent(earlier));
                }
                None => {
                    b.waiting_result += 1;
                    b.slots.insert(id, Slot::Sent(sent));
                }
            }
        });
    }

    /// A BOOKING_RESULT for `id` received at `received` (`start` is the run's time origin).
    pub fn result(&self, id: Uuid, outcome: Outcome, received: Instant, start: Instant) {
        self.decided.fetch_add(1, Ordering::Relaxed);
        self.by_outcome[outcome.index()].fetch_add(1, Ordering::Relaxed);
        let at =
            u64::try_from(received.saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX);
        self.last_result_ns.fetch_max(at, Ordering::Relaxed);
        self.with_book(|b| match b.slots.remove(&id) {
            Some(Slot::Sent(sent)) => {
                b.waiting_result -= 1;
                b.matched += 1;
                b.e2e
                    .saturating_record(micros(received.saturating_duration_since(sent)));
            }
            Some(Slot::Arrived(first)) => {
                b.duplicate_results += 1;
                b.slots.insert(id, Slot::Arrived(first));
            }
            None => {
                b.early += 1;
                b.slots.insert(id, Slot::Arrived(received));
            }
        });
    }

    pub fn rejected(&self, key: String) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        *self
            .rejected_by_code
            .lock()
            .expect("poisoned")
            .entry(key)
            .or_default() += 1;
    }

    pub fn transport_error(&self, kind: &str) {
        self.transport_errors.fetch_add(1, Ordering::Relaxed);
        *self
            .transport_by_kind
            .lock()
            .expect("poisoned")
            .entry(kind.to_owned())
            .or_default() += 1;
    }

    pub fn snapshot(&self) -> Snapshot {
        let waiting_result = self.with_book(|b| b.waiting_result);
        Snapshot {
            sent: self.sent.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            transport_errors: self.transport_errors.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            decided: self.decided.load(Ordering::Relaxed),
            waiting_result,
        }
    }

    /// Takes the matcher out for the final report.
    pub fn take_book(&self) -> Book {
        self.book
            .lock()
            .expect("book poisoned")
            .take()
            .expect("book taken once")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_in_either_order() {
        let s = Stats::new();
        let t0 = Instant::now();
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        // a: 202 first, result later.
        s.accepted(a, t0, t0 + Duration::from_millis(1));
        s.result(a, Outcome::Success, t0 + Duration::from_millis(5), t0);
        // b: result before the 202 body was read.
        s.result(b, Outcome::Failed, t0 + Duration::from_millis(3), t0);
        s.accepted(
            b,
            t0 + Duration::from_millis(1),
            t0 + Duration::from_millis(4),
        );
        // c: a result for nothing we sent.
        s.result(Uuid::new_v4(), Outcome::Expired, t0, t0);
        let snap = s.snapshot();
        assert_eq!(snap.accepted, 2);
        assert_eq!(snap.decided, 3);
        assert_eq!(snap.waiting_result, 0);
        let book = s.take_book();
        assert_eq!(book.matched, 2);
        assert_eq!(book.early, 1);
        assert_eq!(book.e2e.len(), 2);
        assert!(
            book.e2e.max() >= 4_990 && book.e2e.max() <= 5_010,
            "{}",
            book.e2e.max()
        );
        assert!(
            book.e2e.min() >= 1_990 && book.e2e.min() <= 2_010,
            "{}",
            book.e2e.min()
        );
    }
}
