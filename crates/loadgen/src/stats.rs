//! Shared counters, the request ↔ result matcher and the record of every accepted request.
//!
//! A BOOKING_RESULT may reach the requester's WebSocket before the POST's 202 body has been read,
//! so both sides meet keyed by request id: whichever arrives first is kept, the second one
//! completes the request's [`Record`]. The records (who asked for which seats, when it was sent
//! and answered, what was pushed, how often) are what the checks after the run work from.

use hdrhistogram::Histogram;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use uuid::Uuid;

/// Longest latency the histograms track (larger values are clamped): one hour, in µs.
const MAX_TRACKED_US: u64 = 3_600_000_000;

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_US, 3).expect("valid histogram bounds")
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
    /// The status as the API spells it (`other` for anything unexpected).
    pub fn name(self) -> &'static str {
        Self::NAMES[self.index()]
    }
    pub const NAMES: [&'static str; 4] = ["SUCCESS", "FAILED", "EXPIRED", "other"];
}

/// When a BOOKING_RESULT arrived, and what it said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    pub outcome: Outcome,
    pub hold_id: Option<Uuid>,
    /// Nanoseconds after the run's time origin.
    pub received_ns: u64,
}

/// One accepted request, as the checks after the run need it.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: Uuid,
    /// Index of the user (0-based) that sent it.
    pub user: u32,
    /// Indices into the run's seat list.
    pub seats: Box<[u32]>,
    /// Nanoseconds after the run's time origin: POST sent, 202 read.
    pub sent_ns: u64,
    pub answered_ns: u64,
    /// The first BOOKING_RESULT, and how many arrived in all (more than one is a defect unless
    /// deliveries were duplicated on purpose, and even then they must agree).
    pub pushed: Option<Pushed>,
    pub pushes: u32,
    /// Later BOOKING_RESULTs whose outcome or hold differ from the first: always a defect.
    pub pushes_disagreeing: u32,
}

/// Results that arrived after the drain, by request: (outcome, hold) of each.
pub type LateResults = HashMap<Uuid, Vec<(Outcome, Option<Uuid>)>>;

/// Whether two results for one request say the same thing.
fn agree(a: &Pushed, b: &Pushed) -> bool {
    a.outcome == b.outcome && a.hold_id == b.hold_id
}

/// Results whose 202 has not been seen yet: the first, how many in all, how many disagreed.
#[derive(Debug)]
struct Early {
    first: Pushed,
    pushes: u32,
    disagreeing: u32,
}

/// One second of the load, for the timeline and the plot.
pub struct Second {
    pub accepted: u64,
    pub rejected: u64,
    pub decided: u64,
    /// POST sent → BOOKING_RESULT received of the results that arrived in this second, µs.
    pub latency: Histogram<u64>,
}

/// The matcher, the records and the latency histograms, under one lock (every critical section
/// is a hash map operation, a push and a histogram increment).
pub struct Book {
    origin: Instant,
    /// Nanoseconds after `origin` at which the load started (the timeline's zero).
    load_start_ns: u64,
    pub records: Vec<Record>,
    index: HashMap<Uuid, u32>,
    /// Results whose 202 has not (yet) been seen.
    early: HashMap<Uuid, Early>,
    /// POST sent → BOOKING_RESULT received, µs.
    pub e2e: Histogram<u64>,
    /// POST sent → 202 body read, µs.
    pub post: Histogram<u64>,
    /// Accepted requests still waiting for their result.
    pub waiting_result: u64,
    pub matched: u64,
    pub duplicate_results: u64,
    pub timeline: Vec<Second>,
    /// POSTs that got no answer but may have reached the server (not refused at connect), or a
    /// server error that may have come after the request was stored: their seats, and when
    /// they were sent. The checks must allow for them.
    pub unanswered: Vec<(Box<[u32]>, u64)>,
}

impl Book {
    fn ns(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    fn second(&mut self, at_ns: u64) -> &mut Second {
        let i = (at_ns.saturating_sub(self.load_start_ns) / 1_000_000_000) as usize;
        while self.timeline.len() <= i {
            self.timeline.push(Second {
                accepted: 0,
                rejected: 0,
                decided: 0,
                latency: Histogram::new_with_bounds(1, MAX_TRACKED_US, 2)
                    .expect("valid histogram bounds"),
            });
        }
        &mut self.timeline[i]
    }

    fn matched_latency(&mut self, sent_ns: u64, received_ns: u64) {
        self.matched += 1;
        let us = received_ns.saturating_sub(sent_ns) / 1000;
        self.e2e.saturating_record(us);
        self.second(received_ns).latency.saturating_record(us);
    }

    /// Results for request ids this run never got a 202 for.
    pub fn unmatched(&self) -> u64 {
        self.early.len() as u64
    }
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
    /// Nanoseconds after the time origin of the latest BOOKING_RESULT.
    pub last_result_ns: AtomicU64,
    pub ws_closed: AtomicU64,
    /// WebSockets connected again after a `--kill` restart dropped them.
    pub ws_reconnects: AtomicU64,
    pub ws_unparsed: AtomicU64,
    pub rejected_by_code: Mutex<BTreeMap<String, u64>>,
    pub transport_by_kind: Mutex<BTreeMap<String, u64>>,
    pub book: Mutex<Option<Book>>,
    /// BOOKING_RESULTs that arrived after the drain, by request: (outcome, hold).
    late_results: Mutex<LateResults>,
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
    /// Counters whose instants are measured from `origin`.
    pub fn new(origin: Instant) -> Self {
        let s = Self::default();
        *s.book.lock().expect("book poisoned") = Some(Book {
            origin,
            load_start_ns: 0,
            records: Vec::with_capacity(1 << 16),
            index: HashMap::with_capacity(1 << 16),
            early: HashMap::new(),
            e2e: histogram(),
            post: histogram(),
            waiting_result: 0,
            matched: 0,
            duplicate_results: 0,
            timeline: Vec::new(),
            unanswered: Vec::new(),
        });
        s
    }

    /// Runs `f` on the book; once the book has been taken for the report, late events (a POST
    /// answered after the drain gave up on it) are not counted.
    fn with_book<R: Default>(&self, f: impl FnOnce(&mut Book) -> R) -> R {
        let mut guard = self.book.lock().expect("book poisoned");
        guard.as_mut().map(f).unwrap_or_default()
    }

    /// The load starts now: the timeline's second 0.
    pub fn load_starts(&self, at: Instant) {
        self.with_book(|b| b.load_start_ns = b.ns(at));
    }

    /// A 202 for `id` from `user` for `seats`, whose POST was sent at `sent` and answered at
    /// `answered`.
    pub fn accepted(
        &self,
        id: Uuid,
        user: u32,
        seats: Box<[u32]>,
        sent: Instant,
        answered: Instant,
    ) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.with_book(|b| {
            let (sent_ns, answered_ns) = (b.ns(sent), b.ns(answered));
            b.post
                .saturating_record(answered_ns.saturating_sub(sent_ns) / 1000);
            b.second(answered_ns).accepted += 1;
            if b.index.contains_key(&id) {
                // The same id accepted twice: cannot happen without Idempotency-Key; keep the first.
                return;
            }
            let (pushed, pushes, pushes_disagreeing) = match b.early.remove(&id) {
                Some(e) => {
                    b.matched_latency(sent_ns, e.first.received_ns);
                    (Some(e.first), e.pushes, e.disagreeing)
                }
                None => {
                    b.waiting_result += 1;
                    (None, 0, 0)
                }
            };
            b.index.insert(id, b.records.len() as u32);
            b.records.push(Record {
                id,
                user,
                seats,
                sent_ns,
                answered_ns,
                pushed,
                pushes,
                pushes_disagreeing,
            });
        });
    }

    /// A BOOKING_RESULT for `id` received at `received`.
    pub fn result(&self, id: Uuid, outcome: Outcome, hold_id: Option<Uuid>, received: Instant) {
        self.decided.fetch_add(1, Ordering::Relaxed);
        self.by_outcome[outcome.index()].fetch_add(1, Ordering::Relaxed);
        let booked = self.with_book(|b| {
            let received_ns = b.ns(received);
            self.last_result_ns
                .fetch_max(received_ns, Ordering::Relaxed);
            b.second(received_ns).decided += 1;
            let pushed = Pushed {
                outcome,
                hold_id,
                received_ns,
            };
            match b.index.get(&id).copied() {
                Some(i) => {
                    let r = &mut b.records[i as usize];
                    r.pushes += 1;
                    if r.pushes > 1 {
                        if r.pushed
                            .as_ref()
                            .is_some_and(|first| !agree(first, &pushed))
                        {
                            r.pushes_disagreeing += 1;
                        }
                        b.duplicate_results += 1;
                        return true;
                    }
                    r.pushed = Some(pushed);
                    let sent_ns = r.sent_ns;
                    b.waiting_result -= 1;
                    b.matched_latency(sent_ns, received_ns);
                }
                None => {
                    let entry = b.early.entry(id).or_insert(Early {
                        first: pushed,
                        pushes: 0,
                        disagreeing: 0,
                    });
                    entry.pushes += 1;
                    if entry.pushes > 1 {
                        if !agree(&entry.first, &pushed) {
                            entry.disagreeing += 1;
                        }
                        b.duplicate_results += 1;
                    }
                }
            }
            true
        });
        if !booked {
            // After the drain: the report's figures are fixed, but the checks still want it.
            self.late_results
                .lock()
                .expect("poisoned")
                .entry(id)
                .or_default()
                .push((outcome, hold_id));
        }
    }

    /// The first BOOKING_RESULT of `id` so far, whether or not its 202 has been booked yet.
    pub fn pushed(&self, id: Uuid) -> Option<Pushed> {
        self.with_book(|b| match b.index.get(&id) {
            Some(&i) => b.records[i as usize].pushed,
            None => b.early.get(&id).map(|e| e.first),
        })
    }

    /// Whether a late BOOKING_RESULT has arrived for every one of `ids`.
    pub fn late_results_for_all(&self, ids: &[Uuid]) -> bool {
        let late = self.late_results.lock().expect("poisoned");
        ids.iter().all(|id| late.contains_key(id))
    }

    /// The BOOKING_RESULTs that arrived after the book was taken (during the checks).
    pub fn late_results(&self) -> LateResults {
        self.late_results.lock().expect("poisoned").clone()
    }

    pub fn rejected(&self, key: String, answered: Instant) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.with_book(|b| {
            let at = b.ns(answered);
            b.second(at).rejected += 1;
        });
        *self
            .rejected_by_code
            .lock()
            .expect("poisoned")
            .entry(key)
            .or_default() += 1;
    }

    /// A POST sent at `sent` for `seats` that got no answer (or a 5xx), though it may have been
    /// accepted.
    pub fn maybe_accepted(&self, seats: Box<[u32]>, sent: Instant) {
        self.with_book(|b| {
            let at = b.ns(sent);
            b.unanswered.push((seats, at));
        });
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

    /// Takes the book out for the checks and the final report.
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
    use std::time::Duration;

    #[test]
    fn matches_in_either_order_and_counts_duplicates() {
        let t0 = Instant::now();
        let s = Stats::new(t0);
        s.load_starts(t0);
        let ms = Duration::from_millis;
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let hold = Some(Uuid::new_v4());
        // a: 202 first, result later.
        s.accepted(a, 0, Box::new([3]), t0, t0 + ms(1));
        s.result(a, Outcome::Success, hold, t0 + ms(5));
        // b: result before the 202 body was read.
        s.result(b, Outcome::Failed, None, t0 + ms(3));
        s.accepted(b, 1, Box::new([3, 4]), t0 + ms(1), t0 + ms(4));
        // a again: a second result for one request, the same; then a third that disagrees.
        s.result(a, Outcome::Success, hold, t0 + ms(6));
        s.result(a, Outcome::Failed, None, t0 + ms(7));
        // b: a second result, before the 202 too, that disagrees.
        s.result(b, Outcome::Success, hold, t0 + ms(3));
        // c: a result for nothing we sent.
        s.result(Uuid::new_v4(), Outcome::Expired, None, t0);
        let snap = s.snapshot();
        assert_eq!(
            (snap.accepted, snap.decided, snap.waiting_result),
            (2, 6, 0)
        );
        let book = s.take_book();
        assert_eq!(
            (book.matched, book.unmatched(), book.duplicate_results),
            (2, 1, 3)
        );
        assert_eq!(
            (book.records[0].pushes, book.records[0].pushes_disagreeing),
            (3, 1)
        );
        assert_eq!(
            (book.records[1].pushes, book.records[1].pushes_disagreeing),
            (2, 1)
        );
        assert_eq!(book.records[0].pushed.unwrap().hold_id, hold);
        assert_eq!(book.records[1].pushed.unwrap().outcome, Outcome::Failed);
        assert_eq!(&*book.records[1].seats, &[3, 4]);
        assert_eq!(book.e2e.len(), 2);
        assert!(
            (4_990..=5_010).contains(&book.e2e.max()),
            "{}",
            book.e2e.max()
        );
        assert!(
            (1_990..=2_010).contains(&book.e2e.min()),
            "{}",
            book.e2e.min()
        );
        assert_eq!(book.timeline.len(), 1);
        assert_eq!(
            (book.timeline[0].accepted, book.timeline[0].decided),
            (2, 6)
        );
    }
}
