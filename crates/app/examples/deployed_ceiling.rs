//! The deployed per-show ceiling, simulated: how many decisions per second one hot show gets from
//! the SQS FIFO worker, and what deciding from PostgreSQL (a "doorbell" message) changes.
//!
//! ```text
//! cargo run --release -p booking-app --example deployed_ceiling
//! cargo run --release -p booking-app --example deployed_ceiling -- --esm-ms 80 --rtt-ms 1.0
//! ```
//!
//! Why a simulation: the deployed cycle cannot be measured on the development machine (no SQS,
//! Lambda or RDS here), and the ceiling follows from a few per-batch costs, some measured
//! (docs/PERFORMANCE.md, "The worker's cycle") and some assumed (the event source mapping's
//! cycle, round trips to RDS, the pushes). This puts them together the way the queue does: one
//! batch of the show's message group in flight at a time. It also checks, as it runs, what the
//! designs promise: every request decided exactly once, never before its insert committed, and
//! never after a request that provably came later (whose INSERT began after this one's 202).
//!
//! - `today`: a message per request, at most 10 per invocation, each request loaded by id and
//!   decided in message order (`crates/lambda/src/worker.rs`).
//! - `doorbell-each`: a message per request, but the worker decides all of the show's pending
//!   requests from PostgreSQL in `seq` order (at most `--sweep-limit` a sweep, again while a
//!   sweep comes back full) and acknowledges the messages.
//! - `doorbell`: the same, and the api function sends a message only when no doorbell is pending
//!   for the show: a Redis flag set with NX after the insert commits, which the worker clears
//!   before it reads the pending requests.
//!
//! The figures and the reasoning around them: docs/PERFORMANCE.md, "The deployed per-show ceiling".
//!
//! Times are milliseconds from a request's INSERT (where `seq` is given out) to the end of the
//! batch that decided it (its result pushed). Nothing is timed, so the output is the same anywhere.

// Every example of a package gets all its dependencies; this one uses none of them.
#![allow(unused_crate_dependencies)]

use K::*;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

/// Declares the knobs: the enum `K` naming them and `KNOBS`, each knob's flag, default (in
/// milliseconds unless the flag says otherwise) and where that default comes from.
macro_rules! knobs {
    ($($k:ident $flag:literal $default:literal $why:literal,)*) => {
        #[derive(Clone, Copy)]
        enum K { $($k,)* }
        const KNOBS: &[(K, &str, f64, &str)] = &[$((K::$k, $flag, $default, $why),)*];
    };
}

knobs! {
    LocalFixed "local-fixed-ms" 3.0 "measured: worker cycle per batch a + b*n: a (PERFORMANCE.md)",
    LocalPer "local-per-request-ms" 0.17 "measured: b (10 a batch: 4.6-4.8 ms, 100: 18-22 ms)",
    LocalRtt "local-rtt-ms" 0.05 "assumed: a localhost round trip, inside a + b*n",
    Rtt "rtt-ms" 0.5 "assumed 0.3-1.0: a round trip Lambda -> RDS PostgreSQL",
    Flush "flush-ms" 1.0 "assumed 0.5-3: RDS commit flush beyond the local one, per batch",
    RedisRtt "redis-rtt-ms" 0.3 "assumed 0.2-0.5: a round trip to ElastiCache",
    Push "push-ms" 30.0 "assumed 15-60: results, then SEATS_CHANGED, per batch",
    ExtraPer "extra-per-request-ms" 0.2 "assumed 0.1-0.4: the 512 MB worker's CPU per result",
    Esm "esm-ms" 40.0 "assumed 20-80: return -> DeleteMessageBatch -> Receive -> invoke",
    Pickup "pickup-ms" 20.0 "assumed 10-40: a message visible on an idle group -> invoke",
    Commit "commit-ms" 1.5 "assumed: the api's INSERT (seq given out) -> COMMIT (visible)",
    CommitJitter "commit-jitter-ms" 2.0 "assumed: more commit delay, uniform 0..this",
    Send "send-ms" 8.0 "assumed 4-12: SendMessage, uniform 0.5x..1.5x this",
    SendTps "send-tps" 300.0 "AWS quota: SendMessage calls/s per FIFO partition (a group: one)",
    SqsBatch "sqs-batch" 10.0 "template.yaml: the worker's BatchSize (the FIFO maximum)",
    SweepLimit "sweep-limit" 512.0 "doorbell: most requests a sweep decides (lanes' MAX_BATCH)",
    Budget "budget-ms" 5000.0 "doorbell: after sweeping this long, it rings itself, returns",
    DurationS "duration-s" 10.0 "seconds of arrivals per run",
    Seed "seed" 7.0 "PRNG seed",
}

#[derive(Clone, Default)]
struct P(Vec<f64>);
impl std::ops::Index<K> for P {
    type Output = f64;
    fn index(&self, k: K) -> &f64 {
        &self.0[k as usize]
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Design {
    Today,
    DoorbellEach,
    Doorbell,
}
const DESIGNS: [(Design, &str); 3] = [
    (Design::Today, "today"),
    (Design::DoorbellEach, "doorbell-each"),
    (Design::Doorbell, "doorbell"),
];

/// Round trips of the measured cycle (`examples/worker_throughput.rs`), made on localhost there:
/// get_show 1, the claim 3 (BEGIN ...; UPDATE; COMMIT), the show's state 1, the commit 4 (BEGIN
/// ...; two statements; COMMIT). Deployed, each costs `rtt` instead of `local_rtt`.
const MEASURED_RTS: f64 = 9.0;
/// Round trips the deployed worker adds around it: the pause flag, the show lock (BEGIN, SET
/// LOCAL, pg_advisory_xact_lock) and its release (ROLLBACK).
const WORKER_RTS: f64 = 5.0;

/// One invocation's (today) or one sweep's (doorbell) time for `n` requests.
fn batch_cost(p: &P, n: usize, design: Design) -> f64 {
    let n = n as f64;
    let rtts = MEASURED_RTS * (p[Rtt] - p[LocalRtt]) + WORKER_RTS * p[Rtt];
    let fixed = p[LocalFixed] + rtts + p[Flush] + p[Push];
    let per = p[LocalPer] + p[ExtraPer];
    match design {
        // The mirror and the decided counter (Redis); a get_request per message, one by one.
        Design::Today => fixed + 2.0 * p[RedisRtt] + n * (per + p[Rtt]),
        // Nothing pending: pause flag, flag cleared, lock, the read, release.
        _ if n == 0.0 => (WORKER_RTS + 1.0) * p[Rtt] + p[RedisRtt],
        // One read of the pending requests instead of one per message; the flag cleared too.
        _ => fixed + p[Rtt] + 3.0 * p[RedisRtt] + n * per,
    }
}

/// splitmix64: small, fixed-seed, good enough for arrivals and jitter.
#[derive(Default)]
struct Rng(u64);
impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One run: one show, one design, one offered rate. Requests are indexed by `seq`.
#[derive(Default)]
struct Sim {
    p: P,
    rng: Rng,
    insert: Vec<f64>,
    commit: Vec<f64>,
    /// When the api answered 202 (infinite until known), and when the batch that decided the
    /// request ended (NaN until then).
    ack: Vec<f64>,
    result: Vec<f64>,
    by_commit: Vec<usize>,
    undecided: BTreeSet<usize>,
    /// Decisions made while a lower `seq` was still undecided (concurrent arrivals only).
    out_of_seq: usize,
    /// SendMessage: when the partition takes the next call, and how many were made.
    next_send: f64,
    sent: usize,
    /// Arrivals (in commit order) done with the api, the doorbell flag, and the messages waiting
    /// in the group (when visible, which request).
    rung: usize,
    flag: bool,
    messages: BinaryHeap<Reverse<(u64, usize)>>,
    /// Which request's doorbell each request relies on (its own if it sent one), and when the
    /// first sweep started by each doorbell read (a doorbell is named by the request that sent it).
    relies_on: Vec<usize>,
    read_at: Vec<f64>,
    holder: usize,
    /// When the group's last invocation returned; invocations, non-empty batches, requests.
    ret: f64,
    counts: [usize; 3],
}

impl Sim {
    fn new(p: &P, rate: f64) -> Self {
        let mut rng = Rng(p[Seed] as u64 ^ (rate as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let (mut insert, mut commit, mut t) = (Vec::new(), Vec::new(), 0.0);
        loop {
            t += -(1.0 - rng.unit()).ln() / rate * 1000.0; // Poisson arrivals
            if t >= p[DurationS] * 1000.0 {
                break;
            }
            insert.push(t);
            commit.push(t + p[Commit] + p[CommitJitter] * rng.unit());
        }
        let n = insert.len();
        let mut by_commit: Vec<usize> = (0..n).collect();
        by_commit.sort_by(|&x, &y| commit[x].total_cmp(&commit[y]));
        let (ack, result) = (vec![f64::INFINITY; n], vec![f64::NAN; n]);
        let (relies_on, read_at) = ((0..n).collect(), vec![f64::NAN; n]);
        let (undecided, ret) = ((0..n).collect(), f64::NEG_INFINITY);
        let (p, rest) = (p.clone(), Sim::default());
        Sim {
            p,
            rng,
            insert,
            commit,
            ack,
            result,
            relies_on,
            read_at,
            by_commit,
            undecided,
            ret,
            ..rest
        }
    }

    /// SendMessage into the show's group, at most `send-tps` a second (a throttled send is
    /// modelled as retried until the partition takes it); returns when the message is visible.
    fn send(&mut self, at: f64) -> f64 {
        let start = at.max(self.next_send);
        self.next_send = start + 1000.0 / self.p[SendTps];
        self.sent += 1;
        start + self.p[Send] * (0.5 + self.rng.unit())
    }

    /// Records a decision, and checks it: once, after the commit, and never after a request whose
    /// 202 came back before this one's INSERT began.
    fn decide(&mut self, i: usize, at: f64) {
        assert!(self.result[i].is_nan(), "{i} decided twice");
        assert!(at >= self.commit[i], "{i} decided before its commit");
        self.undecided.remove(&i);
        let mut earlier = self.undecided.range(..i).peekable();
        self.out_of_seq += usize::from(earlier.peek().is_some());
        for &j in earlier {
            assert!(self.ack[j] >= self.insert[i], "{i} decided before {j}");
        }
        self.result[i] = at;
    }

    /// When the group's next invocation starts and the latest message it can get: at once if
    /// messages wait when the mapping receives again, else its long poll wakes for the first.
    fn next_start(&self, first_visible: f64) -> (f64, f64) {
        let receive = self.ret + self.p[Esm] / 2.0;
        match first_visible <= receive {
            true => (self.ret + self.p[Esm], receive),
            false => (first_visible + self.p[Pickup], first_visible),
        }
    }

    /// The api side, up to `until`: each committed arrival sends its message (today: then takes
    /// its ticket), or asks Redis for its ticket and, debounced, sets the flag with NX, and sends
    /// a doorbell only if it set it. Messages are keyed by when they become visible.
    fn send_until(&mut self, until: f64, design: Design) {
        let asks_first = if design == Design::Today {
            0.0
        } else {
            self.p[RedisRtt]
        };
        while let Some(&i) = self.by_commit.get(self.rung) {
            let asked = self.commit[i] + asks_first;
            if asked >= until {
                break;
            }
            self.ack[i] = asked;
            self.relies_on[i] = self.holder;
            if design != Design::Doorbell || !self.flag {
                (self.flag, self.holder, self.relies_on[i]) = (true, i, i);
                let visible = self.send(asked);
                self.ack[i] = visible + self.p[RedisRtt] - asks_first;
                self.messages.push(Reverse(((visible * 1e6) as u64, i)));
            }
            self.rung += 1;
        }
    }

    /// The show's message group: one batch in flight at a time, each batch decided (today) or
    /// starting sweeps of the show's pending requests (doorbell) before the next is delivered.
    fn run(&mut self, design: Design) {
        let (n, mut committed, mut pending) = (self.insert.len(), 0, BTreeSet::new());
        loop {
            self.send_until(self.ret + self.p[Esm] / 2.0, design);
            // Nothing waiting: the next arrival sends (a doorbell's flag is clear by now).
            while self.messages.is_empty() && self.rung < n {
                let i = self.by_commit[self.rung];
                self.send_until(self.commit[i] + self.p[RedisRtt] + 1e-9, design);
            }
            let Some(&Reverse((first, _))) = self.messages.peek() else {
                break;
            };
            let (start, cutoff) = self.next_start(first as f64 / 1e6);
            self.send_until(cutoff, design);
            let mut delivered = Vec::new();
            while let Some(&Reverse((visible, i))) = self.messages.peek() {
                if delivered.len() == self.p[SqsBatch] as usize || visible as f64 / 1e6 > cutoff {
                    break;
                }
                self.messages.pop();
                delivered.push(i);
            }
            let mut t = start;
            if design == Design::Today {
                // Each message's request, in message order.
                t += batch_cost(&self.p, delivered.len(), design);
                self.decided(&delivered, t);
            } else {
                t = self.sweep(start, design, &mut committed, &mut pending, &delivered);
            }
            (self.ret, self.counts[0]) = (t, self.counts[0] + 1);
        }
    }

    /// Sweeps from `start`: pause flag, doorbell flag cleared, lock, the pending requests read
    /// in seq order and decided; again while a sweep comes back full. Returns when it ends.
    fn sweep(
        &mut self,
        start: f64,
        design: Design,
        committed: &mut usize,
        pending: &mut BTreeSet<usize>,
        delivered: &[usize],
    ) -> f64 {
        let (n, limit, mut t) = (self.insert.len(), self.p[SweepLimit] as usize, start);
        loop {
            let cleared = t + self.p[Rtt];
            self.send_until(cleared, design);
            self.flag = false;
            let read = cleared + self.p[RedisRtt] + 4.0 * self.p[Rtt];
            self.send_until(read, design);
            for &m in delivered.iter().filter(|&&m| m != usize::MAX) {
                self.read_at[m] = self.read_at[m].min(read); // NaN.min(read) is read
            }
            while *committed < n && self.commit[self.by_commit[*committed]] <= read {
                pending.insert(self.by_commit[*committed]);
                *committed += 1;
            }
            let batch: Vec<usize> = pending.iter().take(limit).copied().collect();
            batch.iter().for_each(|i| _ = pending.remove(i));
            t += batch_cost(&self.p, batch.len(), design);
            self.decided(&batch, t);
            if batch.len() < limit {
                return t;
            }
            if t - start > self.p[Budget] {
                // Out of time with work left: it rings for itself, and the next one goes on.
                let visible = self.send(t);
                self.messages
                    .push(Reverse(((visible * 1e6) as u64, usize::MAX)));
                return t;
            }
        }
    }

    /// Records `batch` as decided at `end`: one batch of today's, or one sweep.
    fn decided(&mut self, batch: &[usize], end: f64) {
        batch.iter().for_each(|&i| self.decide(i, end));
        self.counts[1] += usize::from(!batch.is_empty());
        self.counts[2] += batch.len();
    }
}

/// Percentile `q` of sorted `v`.
fn pct(v: &[f64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// One line of the table.
fn run(p: &P, design: Design, rate: f64) -> String {
    let mut sim = Sim::new(p, rate);
    sim.run(design);
    assert!(sim.undecided.is_empty(), "requests left undecided");
    // The doorbell's promise, checked directly: whoever sent no doorbell relied on one whose
    // sweep read the pending requests after it committed.
    for i in (0..sim.insert.len()).filter(|_| design != Design::Today) {
        let read = sim.read_at[sim.relies_on[i]];
        assert!(
            read >= sim.commit[i],
            "{i} relied on a doorbell read before it committed"
        );
    }
    let window = p[DurationS] * 1000.0;
    let decided = sim.result.iter().filter(|&&r| r <= window).count() as f64 / p[DurationS];
    let since_insert = |times: &[f64]| {
        let mut v: Vec<f64> = times.iter().zip(&sim.insert).map(|(t, i)| t - i).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (latency, acks) = (since_insert(&sim.result), since_insert(&sim.ack));
    let (p50, p99, ack) = (pct(&latency, 0.5), pct(&latency, 0.99), pct(&acks, 0.99));
    let span = sim.ret.max(window) / 1000.0; // the drain after the arrivals included
    let [invocations, batches, requests] = sim.counts.map(|c| c as f64);
    let (batch, invoked) = (requests / batches.max(1.0), invocations / span);
    let (sent, out_of_seq) = (sim.sent as f64 / span, sim.out_of_seq);
    format!(
        "{rate:>9.0} {decided:>9.0} {p50:>10.0} {p99:>9.0} {ack:>10.0} {batch:>7.1} {invoked:>8.1} {sent:>8.1} {out_of_seq:>10}"
    )
}

fn main() {
    let mut p = P(KNOBS.iter().map(|k| k.2).collect());
    let mut rates = vec![50.0, 100.0, 200.0, 300.0, 500.0, 1000.0, 2000.0, 3000.0];
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let (flag, value) = (pair[0].trim_start_matches("--"), pair.get(1));
        let number = |v: &str| v.parse::<f64>().unwrap_or_else(|_| panic!("--{flag} {v}?"));
        match (KNOBS.iter().find(|k| k.1 == flag), value) {
            (_, Some(v)) if flag == "rates" => rates = v.split(',').map(number).collect(),
            (Some(k), Some(v)) => p.0[k.0 as usize] = number(v),
            _ => {
                println!("usage: deployed_ceiling [--rates 50,100,...] [--<knob> <value>]...");
                for &(k, name, _, why) in KNOBS {
                    println!("  --{name:<22} {:>7}  {why}", p[k]);
                }
                std::process::exit(if flag == "help" { 0 } else { 2 });
            }
        }
    }
    let (batch, limit) = (p[SqsBatch] as usize, p[SweepLimit] as usize);
    let today = batch_cost(&p, batch, Design::Today);
    let sweep = batch_cost(&p, limit, Design::Doorbell);
    let (at_most_today, at_most_sweep) = (batch as f64 / (today + p[Esm]), limit as f64 / sweep);
    println!(
        "== one hot show, deployed: {} s of Poisson arrivals a rate, seed {}",
        p[DurationS], p[Seed]
    );
    println!(
        "today: {today:.1} ms a batch of {batch} + {:.0} ms between invocations: at most {:.0}/s",
        p[Esm],
        at_most_today * 1000.0
    );
    println!(
        "doorbell: {sweep:.1} ms a sweep of {limit}, back to back: at most {:.0}/s",
        at_most_sweep * 1000.0
    );
    println!(
        "design         offered/s decided/s result p50    p99 ms 202 p99 ms   batch  invoc/s   msgs/s out of seq"
    );
    for (design, name) in DESIGNS {
        for &rate in &rates {
            println!("{name:<14} {}", run(&p, design, rate));
        }
    }
    println!("checked: every request decided once, after its commit, never after a later arrival");
}
