//! The human-readable report, the one-line JSON summary and the full JSON report (the summary,
//! the per-second timeline and the checks).

use crate::args::Options;
use crate::faults::FaultKind;
use crate::run::Outcomes;
use crate::stats::Outcome;
use crate::verify::Verification;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;

const QUANTILES: [(&str, f64); 4] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
];

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

pub(crate) fn per_s(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

pub(crate) fn latency_line(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "  (no samples)".to_owned();
    }
    let mut line = String::from(" ");
    for (name, q) in QUANTILES {
        let _ = write!(line, " {name} {:.3}", ms(h.value_at_quantile(q)));
    }
    let _ = write!(
        line,
        "  max {:.3}  (min {:.3}, mean {:.3})",
        ms(h.max()),
        ms(h.min()),
        h.mean() / 1000.0
    );
    line
}

pub(crate) fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({ "n": 0 });
    }
    let mut m = serde_json::Map::new();
    m.insert("n".into(), json!(h.len()));
    for (name, q) in QUANTILES {
        m.insert(name.replace('.', ""), json!(ms(h.value_at_quantile(q))));
    }
    m.insert("max".into(), json!(ms(h.max())));
    m.insert("mean".into(), json!(h.mean() / 1000.0));
    Value::Object(m)
}

pub(crate) fn counts(map: &BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn mode(opts: &Options) -> String {
    if opts.rate > 0.0 {
        format!(
            "open loop: {} req/s offered for {:.1} s (at most {} POSTs in flight; a send finding the limit is skipped)",
            opts.rate,
            opts.duration.as_secs_f64(),
            opts.concurrency
        )
    } else {
        format!(
            "closed loop: {} workers sending back to back for {:.1} s",
            opts.concurrency,
            opts.duration.as_secs_f64()
        )
    }
}

pub fn print(opts: &Options, threads: usize, o: &Outcomes) {
    let w = o.window.as_secs_f64();
    let end = &o.at_end;
    let win = &o.at_window_end;
    let b = &o.book;
    println!("== loadgen report ==");
    println!("config");
    println!(
        "  target          {}  show {}{}",
        o.base,
        opts.show,
        o.started
            .as_ref()
            .map(|s| format!("  (started by loadgen: {s})"))
            .unwrap_or_default()
    );
    println!(
        "  seat map        {} requestable seats at start ({})",
        o.seat_map.seats.len(),
        counts(&o.seat_map.by_status)
    );
    println!("  mode            {}", mode(opts));
    println!(
        "  users           {} ({}N, one WebSocket each; all connected + ping/pong in {:.0} ms{})",
        opts.users,
        opts.user_prefix,
        o.setup_time.as_secs_f64() * 1e3,
        if opts.subscribe {
            ", subscribed to the show"
        } else {
            ""
        },
    );
    println!("  requests        {}", workload(opts));
    println!(
        "  drain           {:.1} s; POST timeout {:.1} s; JWT secret: {}; seed {}; tokio worker threads {} on {} cores (shared with the server)",
        opts.drain.as_secs_f64(),
        opts.timeout.as_secs_f64(),
        opts.common.secret_source,
        opts.seed,
        threads,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!("requests");
    println!(
        "  sent                 {:>9}   (open-loop sends skipped at the in-flight limit: {})",
        end.sent, end.skipped
    );
    println!("  accepted (202)       {:>9}", end.accepted);
    let line = format!(
        "  rejected (non-202)   {:>9}   {}",
        end.rejected,
        counts(&o.rejected_by_code)
    );
    println!("{}", line.trim_end());
    let line = format!(
        "  transport errors     {:>9}   {}",
        end.transport_errors,
        counts(&o.transport_by_kind)
    );
    println!("{}", line.trim_end());
    println!(
        "  unanswered POSTs     {:>9}   (still in flight when the drain ended)",
        end.in_flight
    );
    println!("results (BOOKING_RESULT over WebSocket)");
    let [success, failed, expired, other] = o.by_outcome;
    println!(
        "  decided              {:>9}   SUCCESS {success}, FAILED {failed}, EXPIRED {expired}, other {other}",
        end.decided
    );
    println!("  matched to our 202s  {:>9}", b.matched);
    println!(
        "  never arrived        {:>9}   (accepted, no BOOKING_RESULT before the drain ended)",
        b.waiting_result
    );
    println!(
        "  unmatched results    {:>9}   (request ids this run never got a 202 for)",
        b.unmatched()
    );
    if !o.outages.is_empty() {
        let outages: Vec<String> = o
            .outages
            .iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect();
        println!(
            "  kill -9 restarts     {:>9}   server away (kill to listening) s: {}; WebSockets reconnected {}; accepted after the last restart {}",
            o.outages.len(),
            outages.join(", "),
            o.ws_reconnects,
            o.accepted_after_last_restart.unwrap_or(0)
        );
    }
    for f in o.faults.iter().filter(|f| f.kind != FaultKind::Kill) {
        println!(
            "  fault                {:>9}   at {:.2} s for {:.2} s: accepted meanwhile {}, accepting again {} after it",
            f.kind.name(),
            f.at_s,
            f.lasted_s,
            f.accepted_during,
            f.accepting_again_after_s
                .map_or("never".to_owned(), |s| format!("{:.3} s", s)),
        );
    }
    if opts.faults.deliver_twice {
        println!(
            "  delivered twice      {:>9}   repeated results (the stored outcome pushed again)",
            b.duplicate_results
        );
    } else if b.duplicate_results > 0 || o.ws_closed > 0 || o.ws_unparsed > 0 {
        println!(
            "  anomalies            duplicate results {}, WebSockets closed during the run {}, unparsable messages {}",
            b.duplicate_results, o.ws_closed, o.ws_unparsed
        );
    }
    println!("rates over the send window ({w:.3} s)");
    println!(
        "  sent {:.1}/s   accepted {:.1}/s   decided {:.1}/s   accepted+decided {:.1}/s",
        per_s(win.sent, w),
        per_s(win.accepted, w),
        per_s(win.decided, w),
        per_s(win.accepted + win.decided, w)
    );
    match o.last_result_after {
        Some(t) => println!(
            "  all results: {} decided by the last result at {:.3} s = {:.1}/s; drain {} after {:.3} s",
            end.decided,
            t.as_secs_f64(),
            per_s(end.decided, t.as_secs_f64()),
            if o.drained_fully {
                "complete"
            } else {
                "INCOMPLETE (bound reached)"
            },
            o.total_time.as_secs_f64()
        ),
        None => println!("  no results arrived"),
    }
    if let Some(c) = &o.cpu {
        println!(
            "  host CPU in the window: {:.2} of {} cores busy = loadgen {:.2} + server and every other process {:.2}",
            c.host_busy_cores,
            c.cores,
            c.loadgen_cores,
            c.others_cores()
        );
    }
    if let Some(seconds) = o.loadgen_cpu_seconds {
        match server_us_per_request(seconds, end.sent) {
            Some(us) => println!(
                "  loadgen CPU (load and drain): {seconds:.2} s = {us:.0} us per request sent"
            ),
            None => println!("  loadgen CPU (load and drain): {seconds:.2} s"),
        }
    }
    if let Some(seconds) = o.server_cpu_seconds {
        match server_us_per_request(seconds, end.decided) {
            Some(us) => println!(
                "  server CPU (--server-pid, load and drain): {seconds:.2} s = {us:.0} us per decided request"
            ),
            None => println!("  server CPU (--server-pid, load and drain): {seconds:.2} s"),
        }
    }
    println!(
        "latency POST sent -> BOOKING_RESULT received (ms, n={})",
        b.e2e.len()
    );
    println!("{}", latency_line(&b.e2e));
    println!(
        "latency POST sent -> 202 body read (ms, n={})",
        b.post.len()
    );
    println!("{}", latency_line(&b.post));
    match &o.lane {
        Some(l) => println!(
            "server lane after the drain: waiting {}, decided {} (all time, from the store), decisionsPerSecond {:.0} (last minute), paused {}",
            l["waiting"],
            l["decided"],
            l["decisionsPerSecond"].as_f64().unwrap_or(0.0),
            l["paused"]
        ),
        None => println!("server lane after the drain: (GET /api/v1/admin/queues not readable)"),
    }
    match &o.verification {
        Some(v) => print_checks(v),
        None => println!("checks: skipped (--no-verify)"),
    }
}

/// What the requests ask for, in words.
pub fn workload(opts: &Options) -> String {
    let mut text = format!("{} seat(s) each", opts.seats);
    if opts.multi_share > 0.0 {
        let _ = write!(
            text,
            ", {:.0}% for 2 to {} seats",
            opts.multi_share * 100.0,
            opts.max_seats
        );
    }
    if opts.hot_share > 0.0 {
        let _ = write!(
            text,
            "; {:.0}% only among the {} best seats",
            opts.hot_share * 100.0,
            opts.hot_seats
        );
    }
    text
}

fn print_checks(v: &Verification) {
    println!("checks: {}", if v.passed() { "PASSED" } else { "FAILED" });
    println!(
        "  exactly one result   {} accepted ({} more unanswered or answered 5xx, maybe accepted): results missing {}, duplicated {}, conflicting {}, lost to restarts {}, pushed after the drain {}; polled {} (errors {}, undecided {}, disagreeing {})",
        v.accepted,
        v.unanswered_posts,
        v.results_missing,
        v.results_duplicated,
        v.results_conflicting,
        v.results_lost_to_restarts,
        v.results_after_the_drain,
        v.polled,
        v.poll_errors,
        v.poll_not_terminal,
        v.poll_disagrees
    );
    println!(
        "  no seat held twice   {} holds read back ({} errors), {} live: seats in two live holds {}, users with two live holds {}, live seats not HELD on the map {}, HELD seats without a live hold {}{}",
        v.holds_read,
        v.hold_read_errors,
        v.live_holds,
        v.seats_held_twice,
        v.users_with_two_live_holds,
        v.live_seats_not_held_on_map,
        v.held_on_map_without_hold,
        if v.sole_client {
            ""
        } else {
            " (not judged: others may book on this server)"
        }
    );
    let f = &v.fairness;
    println!(
        "  fairness             {} FAILED requests on seats free at the start: {} lost to a proven-earlier request, {} order not provable, {} VIOLATIONS",
        f.failed_checked, f.explained, f.order_unknown, f.violations,
    );
    for p in &v.problems {
        println!("  problem: {p}");
    }
}

/// The one-line JSON summary (`--json`).
pub fn json_line(opts: &Options, threads: usize, o: &Outcomes) -> String {
    summary(opts, threads, o).to_string()
}

/// The full report (`--report FILE`): the summary, the timeline and the checks.
pub fn full(opts: &Options, threads: usize, o: &Outcomes) -> Value {
    let mut v = summary(opts, threads, o);
    let timeline: Vec<Value> = o
        .book
        .timeline
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "second": i,
                "accepted": s.accepted,
                "rejected": s.rejected,
                "decided": s.decided,
                "latencyMs": latency_json(&s.latency),
            })
        })
        .collect();
    v["timeline"] = Value::Array(timeline);
    v
}

fn summary(opts: &Options, threads: usize, o: &Outcomes) -> Value {
    let w = o.window.as_secs_f64();
    let end = &o.at_end;
    let win = &o.at_window_end;
    let b = &o.book;
    let [success, failed, expired, other] = o.by_outcome;
    let names = Outcome::NAMES;
    json!({
        "base": o.base,
        "show": opts.show,
        "mode": if opts.rate > 0.0 { "open" } else { "closed" },
        "rateOffered": opts.rate,
        "durationS": opts.duration.as_secs_f64(),
        "users": opts.users,
        "seatsPerRequest": opts.seats,
        "multiShare": opts.multi_share,
        "maxSeats": opts.max_seats,
        "hotShare": opts.hot_share,
        "hotSeats": opts.hot_seats,
        "seed": opts.seed,
        "started": o.started,
        "concurrency": opts.concurrency,
        "threads": threads,
        "sent": end.sent,
        "skipped": end.skipped,
        "accepted": end.accepted,
        "rejected": end.rejected,
        "rejectedByCode": o.rejected_by_code,
        "transportErrors": end.transport_errors,
        "transportByKind": o.transport_by_kind,
        "unansweredPosts": end.in_flight,
        "decided": end.decided,
        "decidedByStatus": { names[0]: success, names[1]: failed, names[2]: expired, names[3]: other },
        "matched": b.matched,
        "resultsMissing": b.waiting_result,
        "unmatchedResults": b.unmatched(),
        "duplicateResults": b.duplicate_results,
        "wsClosed": o.ws_closed,
        "wsReconnects": o.ws_reconnects,
        "kills": opts.faults.kills,
        "faults": o.faults,
        "deliveredTwice": opts.faults.deliver_twice,
        "outagesS": o.outages.iter().map(|d| d.as_secs_f64()).collect::<Vec<_>>(),
        "acceptedAfterLastRestart": o.accepted_after_last_restart,
        "windowS": w,
        "sentPerS": per_s(win.sent, w),
        "acceptedPerS": per_s(win.accepted, w),
        "decidedPerS": per_s(win.decided, w),
        "lastResultS": o.last_result_after.map(|t| t.as_secs_f64()),
        "drainedFully": o.drained_fully,
        "latencyMs": latency_json(&b.e2e),
        "postLatencyMs": latency_json(&b.post),
        "hostBusyCores": o.cpu.map(|c| c.host_busy_cores),
        "loadgenCores": o.cpu.map(|c| c.loadgen_cores),
        "serverCpuSeconds": o.server_cpu_seconds,
        "serverCpuUsPerDecided": o.server_cpu_seconds.and_then(|s| server_us_per_request(s, end.decided)),
        "loadgenCpuSeconds": o.loadgen_cpu_seconds,
        "loadgenCpuUsPerRequest": o.loadgen_cpu_seconds.and_then(|s| server_us_per_request(s, end.sent)),
        "checks": o.verification,
        "checksPassed": o.verification.as_ref().map(Verification::passed),
    })
}

/// CPU microseconds per request (`None` when there were none).
pub fn server_us_per_request(cpu_seconds: f64, decided: u64) -> Option<f64> {
    (decided > 0).then(|| cpu_seconds * 1e6 / decided as f64)
}
