//! `loadgen waiting-room`: a premiere's crowd arriving at a show's waiting room: part of it
//! before the sale opens (the pre-queue, drawn fairly at the opening), the rest after it
//! (arrival order), all let in at the room's rate. Then the checks a waiting room must never
//! get wrong: every arrival got one place and was let in exactly once, never faster than the
//! rate allows, later arrivals in arrival order, the whole pre-queue before any later arrival,
//! and the pre-queue's order independent of who arrived first in it.
//!
//! The crowd joins over HTTP; a sample of it (the observers) also holds a WebSocket and hears
//! its admission pushed, with the admission's deadline, from which the instant of the tick that
//! let it in follows exactly (the deadline less the room's admission time): the order checks
//! compare those instants, not arrival times of messages. The rate is read from the admin's view
//! of the room, sampled every second (`SAMPLE_EVERY`).

use crate::args::RoomOptions;
use crate::sockets::open;
use crate::{server, token};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

/// How often the admin's view is read for the rate.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How long an admission waits for its first use in the run (the room's longest): nobody
/// shops here, and an admission must not lapse before the checks read it.
const ADMISSION_TTL_SECONDS: u32 = 3_600;
/// How long a place lasts without a poll (the room's longest): the crowd does not poll.
const GRACE_SECONDS: u32 = 600;

/// What an observer saw.
#[derive(Debug, Clone)]
struct Observed {
    /// Its index among the arrivals (its arrival order).
    arrival: usize,
    ticket: u64,
    pre_queue: bool,
    /// The instant of the tick that let it in.
    admitted_at: Option<DateTime<Utc>>,
}

/// What the run found.
#[derive(Debug)]
pub struct RoomOutcome {
    pub arrivals: usize,
    pub pre_queue: usize,
    pub joined: usize,
    pub join_time: Duration,
    pub join_failures: usize,
    /// Admissions by the end, from the admin's view.
    pub admitted: u64,
    pub waiting_left: u64,
    pub abandoned: u64,
    /// Seconds from the opening to the last admission, and the mean rate over them.
    pub admission_seconds: f64,
    pub mean_rate: f64,
    /// The most admitted in any sampled window beyond what the rate allows (0 = never).
    pub over_rate: u64,
    pub observers: usize,
    pub observers_admitted: usize,
    /// Pairs of later arrivals let in out of arrival order.
    pub order_violations: usize,
    /// Pre-queue observers let in after a later arrival.
    pub pre_queue_violations: usize,
    /// Spearman's rank correlation between arrival and admission order in the pre-queue (0 =
    /// independent: arriving first bought nothing).
    pub pre_queue_correlation: Option<f64>,
    pub started: Option<String>,
}

impl RoomOutcome {
    /// Every check passed.
    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }

    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if self.joined != self.arrivals {
            failures.push(format!(
                "{} of {} arrivals got a place",
                self.joined, self.arrivals
            ));
        }
        if self.admitted != self.arrivals as u64 || self.waiting_left > 0 {
            failures.push(format!(
                "{} admitted, {} still waiting, of {}",
                self.admitted, self.waiting_left, self.arrivals
            ));
        }
        if self.abandoned > 0 {
            failures.push(format!("{} places given up", self.abandoned));
        }
        if self.over_rate > 0 {
            failures.push(format!(
                "{} admissions beyond the rate in one window",
                self.over_rate
            ));
        }
        if self.observers_admitted != self.observers {
            failures.push(format!(
                "{} of {} observers heard their admission",
                self.observers_admitted, self.observers
            ));
        }
        if self.order_violations > 0 {
            failures.push(format!(
                "{} pairs of later arrivals let in out of arrival order",
                self.order_violations
            ));
        }
        if self.pre_queue_violations > 0 {
            failures.push(format!(
                "{} of the pre-queue let in after a later arrival",
                self.pre_queue_violations
            ));
        }
        // With n observers a uniform draw gives |rho| above 5/sqrt(n-1) about once in 1.7 million
        // runs; a queue kept in arrival order gives 1.
        if let Some(rho) = self.pre_queue_correlation {
            let observers = self.pre_queue_observers();
            if observers >= 30 && rho.abs() > 5.0 / ((observers - 1) as f64).sqrt() {
                failures.push(format!(
                    "the pre-queue's order follows arrival order (rho {rho:.3} over {observers})"
                ));
            }
        }
        failures
    }

    fn pre_queue_observers(&self) -> usize {
        (self.observers * self.pre_queue).div_ceil(self.arrivals.max(1))
    }
}

/// An admin call; fails the run on anything but a success.
pub(crate) async fn admin_call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    admin: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let mut request = client.request(method.clone(), url).bearer_auth(admin);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request
        .send()
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(format!("{method} {url}: {status} {body}"));
    }
    Ok(body)
}

fn admitted_total(room: &Value) -> u64 {
    ["admitted", "shopping", "done", "expired"]
        .iter()
        .map(|k| room[*k].as_u64().unwrap_or(0))
        .sum()
}

/// Joins `users[range]` over HTTP, `concurrency` at a time: the tickets, in arrival order.
async fn join_all(
    client: &reqwest::Client,
    url: &str,
    tokens: &[String],
    concurrency: usize,
) -> Vec<Option<u64>> {
    futures_util::stream::iter(tokens.iter())
        .map(|token| async move {
            let answer = client.post(url).bearer_auth(token).send().await.ok()?;
            if answer.status().as_u16() != 201 {
                return None;
            }
            let body: Value = answer.json().await.ok()?;
            body["ticket"].as_u64()
        })
        .buffered(concurrency)
        .collect()
        .await
}

pub async fn run(mut o: RoomOptions) -> Result<RoomOutcome, String> {
    let server;
    (o.base, o.ws_base, server) = server::reach(&mut o.common, o.observers).await?;
    let started = server.as_ref().map(|s| format!("pid {}", s.pid));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(o.concurrency)
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let ttl = chrono::Duration::hours(2);
    let admin = token::mint(&o.common.secret, "loadgen-admin", true, ttl);
    let admin_url = format!("{}/api/v1/admin/shows/{}/waiting-room", o.base, o.show);
    let room_url = format!("{}/api/v1/shows/{}/waiting-room", o.base, o.show);
    let settings = |opens_at: DateTime<Utc>| {
        json!({ "opensAt": opens_at, "admitPerSecond": o.rate,
                "admissionTtlSeconds": ADMISSION_TTL_SECONDS, "graceSeconds": GRACE_SECONDS })
    };
    // A room from an earlier run against the same server goes first: its places would count.
    let _ = client.delete(&admin_url).bearer_auth(&admin).send().await;
    admin_call(
        &client,
        reqwest::Method::PUT,
        &admin_url,
        &admin,
        Some(settings(Utc::now() + chrono::Duration::hours(1))),
    )
    .await?;

    let tokens: Vec<String> = (0..o.arrivals)
        .map(|i| {
            token::mint(
                &o.common.secret,
                &format!("{}{}", o.user_prefix, i + 1),
                false,
                ttl,
            )
        })
        .collect();
    let pre_queue = ((o.arrivals as f64) * o.pre_queue_share).round() as usize;
    // Every `stride`-th arrival observes, over a WebSocket opened before it joins.
    let stride = (o.arrivals / o.observers.max(1)).max(1);
    let observer_indexes: Vec<usize> = (0..o.arrivals).step_by(stride).take(o.observers).collect();
    let observed: Arc<Mutex<Vec<Observed>>> = Arc::new(Mutex::new(Vec::new()));
    let mut listeners = Vec::new();
    let admission_ttl = chrono::Duration::seconds(ADMISSION_TTL_SECONDS.into());
    for (slot, &arrival) in observer_indexes.iter().enumerate() {
        let who = format!("{}{}", o.user_prefix, arrival + 1);
        let mut ws = open(&o.ws_base, &tokens[arrival], &who, None).await?;
        observed.lock().await.push(Observed {
            arrival,
            ticket: 0,
            pre_queue: arrival < pre_queue,
            admitted_at: None,
        });
        let observed = observed.clone();
        listeners.push(tokio::spawn(async move {
            while let Some(Ok(message)) = ws.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                if v["type"] == "WAITING_ROOM_POSITION" && v["state"] == "ADMITTED" {
                    let until = v["admittedUntil"]
                        .as_str()
                        .and_then(|t| t.parse::<DateTime<Utc>>().ok());
                    let mut observed = observed.lock().await;
                    observed[slot].admitted_at = until.map(|u| u - admission_ttl);
                    observed[slot].ticket = v["ticket"].as_u64().unwrap_or(0);
                    break;
                }
            }
        }));
    }
    if !o.common.quiet {
        eprintln!(
            "loadgen: {} observers listening; {} arrivals join the pre-queue, then the sale opens",
            observer_indexes.len(),
            pre_queue
        );
    }

    let began = Instant::now();
    let mut tickets = join_all(&client, &room_url, &tokens[..pre_queue], o.concurrency).await;
    // Opening: in a second from now; the ticker draws the pre-queue's order then.
    let opens_at = Utc::now() + chrono::Duration::seconds(1);
    admin_call(
        &client,
        reqwest::Method::PUT,
        &admin_url,
        &admin,
        Some(settings(opens_at)),
    )
    .await?;
    // Whoever joins before the room has opened (its first tick after `opens_at`) is in the
    // pre-queue, whatever the clock says: the later arrivals wait for the opening.
    let opening_deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let room = admin_call(&client, reqwest::Method::GET, &admin_url, &admin, None).await?;
        if room["opened"] == true {
            break;
        }
        if Instant::now() > opening_deadline {
            return Err("the room did not open within a minute of its opening time".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The rest arrive while the room lets people in; the admin's view is sampled meanwhile.
    let samples: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    let sampling = {
        let client = client.clone();
        let admin_url = admin_url.clone();
        let admin = admin.clone();
        let samples = samples.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SAMPLE_EVERY);
            loop {
                every.tick().await;
                if let Ok(room) =
                    admin_call(&client, reqwest::Method::GET, &admin_url, &admin, None).await
                {
                    samples
                        .lock()
                        .await
                        .push((Instant::now(), admitted_total(&room)));
                }
            }
        })
    };
    tickets.extend(join_all(&client, &room_url, &tokens[pre_queue..], o.concurrency).await);
    let join_time = began.elapsed();
    let joined = tickets.iter().filter(|t| t.is_some()).count();
    if !o.common.quiet {
        eprintln!(
            "loadgen: {joined} of {} joined in {:.1} s; waiting for every admission",
            o.arrivals,
            join_time.as_secs_f64()
        );
    }
    // Until nobody waits (or the room stalls: nothing let in for 30 s).
    let mut last = (Instant::now(), 0u64);
    let room = loop {
        let room = admin_call(&client, reqwest::Method::GET, &admin_url, &admin, None).await?;
        let admitted = admitted_total(&room);
        if room["waiting"] == 0 && room["opened"] == true {
            break room;
        }
        if admitted > last.1 {
            last = (Instant::now(), admitted);
        } else if last.0.elapsed() > Duration::from_secs(30) {
            break room;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    sampling.abort();
    let samples = samples.lock().await.clone();
    for listener in &listeners {
        listener.abort();
    }

    let outcome = evaluate(
        &o,
        pre_queue,
        joined,
        join_time,
        tickets.iter().filter(|t| t.is_none()).count(),
        &room,
        &samples,
        observed.lock().await.clone(),
        opens_at,
        started,
    );
    let _ = client.delete(&admin_url).bearer_auth(&admin).send().await;
    server::stop(server).await;
    Ok(outcome)
}

#[allow(clippy::too_many_arguments)]
fn evaluate(
    o: &RoomOptions,
    pre_queue: usize,
    joined: usize,
    join_time: Duration,
    join_failures: usize,
    room: &Value,
    samples: &[(Instant, u64)],
    observed: Vec<Observed>,
    opens_at: DateTime<Utc>,
    started: Option<String>,
) -> RoomOutcome {
    let admitted = admitted_total(room);
    // The rate: in any window between two samples, at most the rate for its length plus the
    // bucket's one second's worth (and a tick's rounding).
    let rate = f64::from(o.rate);
    let mut over_rate = 0u64;
    for (i, &(t0, a0)) in samples.iter().enumerate() {
        for &(t1, a1) in &samples[i + 1..] {
            let allowed = rate * (t1 - t0).as_secs_f64() + rate * 1.25 + 1.0;
            over_rate = over_rate.max((a1.saturating_sub(a0) as f64 - allowed).max(0.0) as u64);
        }
    }
    let heard: Vec<&Observed> = observed
        .iter()
        .filter(|x| x.admitted_at.is_some())
        .collect();
    let last_admission = heard.iter().filter_map(|x| x.admitted_at).max();
    let admission_seconds = last_admission
        .map(|last| (last - opens_at).num_milliseconds().max(1) as f64 / 1e3)
        .unwrap_or(0.0);
    let mean_rate = if admission_seconds > 0.0 {
        admitted as f64 / admission_seconds
    } else {
        0.0
    };
    // Later arrivals: a ticket before another's is let in no later.
    let mut later: Vec<&&Observed> = heard.iter().filter(|x| !x.pre_queue).collect();
    later.sort_by_key(|x| x.ticket);
    let mut order_violations = 0;
    let mut latest: Option<DateTime<Utc>> = None;
    for x in &later {
        if latest.is_some_and(|l| x.admitted_at.unwrap() < l) {
            order_violations += 1;
        }
        latest = latest.max(x.admitted_at);
    }
    // The whole pre-queue before any later arrival.
    let first_later = later.iter().filter_map(|x| x.admitted_at).min();
    let pre: Vec<&&Observed> = heard.iter().filter(|x| x.pre_queue).collect();
    let pre_queue_violations = pre
        .iter()
        .filter(|x| first_later.is_some_and(|f| x.admitted_at.unwrap() > f))
        .count();
    // Spearman's rho between arrival order and admission order in the pre-queue (admission
    // instants tie within a tick: ties take their mean rank).
    let pre_queue_correlation = (pre.len() >= 3)
        .then(|| {
            let arrival: Vec<f64> =
                ranks(&pre.iter().map(|x| x.arrival as f64).collect::<Vec<_>>());
            let admission: Vec<f64> = ranks(
                &pre.iter()
                    .map(|x| x.admitted_at.unwrap().timestamp_micros() as f64)
                    .collect::<Vec<_>>(),
            );
            pearson(&arrival, &admission)
        })
        .flatten();
    RoomOutcome {
        arrivals: o.arrivals,
        pre_queue,
        joined,
        join_time,
        join_failures,
        admitted,
        waiting_left: room["waiting"].as_u64().unwrap_or(0),
        abandoned: room["abandoned"].as_u64().unwrap_or(0),
        admission_seconds,
        mean_rate,
        over_rate,
        observers: observed.len(),
        observers_admitted: heard.len(),
        order_violations,
        pre_queue_violations,
        pre_queue_correlation,
        started,
    }
}

/// Ranks (1-based; ties get their mean rank).
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = mean;
        }
        i = j + 1;
    }
    ranks
}

/// Pearson's correlation; `None` when either side does not vary (a pre-queue let in by one tick
/// has no order to measure).
fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    (vx > 0.0 && vy > 0.0).then(|| cov / (vx * vy).sqrt())
}

/// The report on stdout.
pub fn print(o: &RoomOutcome) {
    println!(
        "waiting room: {} arrivals ({} before the opening)",
        o.arrivals, o.pre_queue
    );
    if let Some(s) = &o.started {
        println!("  server: started for the run ({s})");
    }
    println!(
        "  joined:   {} in {:.1} s ({:.0}/s), {} failed",
        o.joined,
        o.join_time.as_secs_f64(),
        o.joined as f64 / o.join_time.as_secs_f64().max(1e-9),
        o.join_failures
    );
    println!(
        "  admitted: {} over {:.1} s from the opening ({:.0}/s); {} waiting, {} given up",
        o.admitted, o.admission_seconds, o.mean_rate, o.waiting_left, o.abandoned
    );
    println!(
        "  observers: {} of {} heard their admission; order violations {}, pre-queue after a later arrival {}, pre-queue rho {}",
        o.observers_admitted,
        o.observers,
        o.order_violations,
        o.pre_queue_violations,
        o.pre_queue_correlation
            .map_or("-".to_owned(), |r| format!("{r:.3}"))
    );
    let failures = o.failures();
    if failures.is_empty() {
        println!("  checks: passed");
    } else {
        for f in failures {
            println!("  check FAILED: {f}");
        }
    }
}

/// The one-line JSON summary.
pub fn json_line(o: &RoomOutcome) -> String {
    json!({
        "scenario": "waiting-room",
        "arrivals": o.arrivals,
        "preQueue": o.pre_queue,
        "joined": o.joined,
        "joinSeconds": o.join_time.as_secs_f64(),
        "admitted": o.admitted,
        "admissionSeconds": o.admission_seconds,
        "meanRate": o.mean_rate,
        "overRate": o.over_rate,
        "observers": o.observers,
        "observersAdmitted": o.observers_admitted,
        "orderViolations": o.order_violations,
        "preQueueViolations": o.pre_queue_violations,
        "preQueueCorrelation": o.pre_queue_correlation,
        "passed": o.passed(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome() -> RoomOutcome {
        RoomOutcome {
            arrivals: 2_000,
            pre_queue: 1_000,
            joined: 2_000,
            join_time: Duration::from_secs(1),
            join_failures: 0,
            admitted: 2_000,
            waiting_left: 0,
            abandoned: 0,
            admission_seconds: 10.0,
            mean_rate: 200.0,
            over_rate: 0,
            observers: 200,
            observers_admitted: 200,
            order_violations: 0,
            pre_queue_violations: 0,
            pre_queue_correlation: Some(0.05),
            started: None,
        }
    }

    #[test]
    fn the_checks_fail_on_what_they_guard() {
        assert!(outcome().passed());
        for (broken, what) in [
            (
                RoomOutcome {
                    order_violations: 1,
                    ..outcome()
                },
                "order",
            ),
            (
                RoomOutcome {
                    pre_queue_violations: 1,
                    ..outcome()
                },
                "pre-queue first",
            ),
            (
                RoomOutcome {
                    over_rate: 3,
                    ..outcome()
                },
                "rate",
            ),
            (
                RoomOutcome {
                    admitted: 1_999,
                    ..outcome()
                },
                "everyone admitted",
            ),
            (
                RoomOutcome {
                    abandoned: 1,
                    ..outcome()
                },
                "abandoned",
            ),
            // A pre-queue kept in arrival order: rho near 1 over 100 observers.
            (
                RoomOutcome {
                    pre_queue_correlation: Some(0.9),
                    ..outcome()
                },
                "fair draw",
            ),
        ] {
            assert!(!broken.passed(), "{what}");
        }
    }

    #[test]
    fn ranks_share_ties_and_rho_sees_order() {
        assert_eq!(ranks(&[10.0, 30.0, 20.0, 20.0]), vec![1.0, 4.0, 2.5, 2.5]);
        let x = [1.0, 2.0, 3.0, 4.0];
        assert!((pearson(&x, &x).unwrap() - 1.0).abs() < 1e-12);
        assert!((pearson(&x, &[4.0, 3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(
            pearson(&x, &[2.0; 4]),
            None,
            "one instant: nothing to measure"
        );
    }
}
