//! Decision-engine throughput on a 500-seat show (20 rows x 25 seats).
//!
//! Every scenario decides 10,000 requests, fed as the worker feeds them: `decide_batch` calls of
//! 10 requests (one SQS FIFO batch), all at one instant, each outcome dropped once decided (the
//! worker commits it, then drops it). Building the engine and the requests is setup and not
//! measured. Throughput is reported in decisions per second (`Throughput::Elements` = requests
//! decided).
//!
//! - `single_seat/uniform`: a flash sale. 10,000 different users each ask for one seat picked at
//!   random; the hall is full after a few thousand requests, so most requests are rejections
//!   (with alternatives while any seat is left, without once none is).
//! - `single_seat/hot_centre`: the same, but people aim at the middle of the hall, so collisions
//!   start at once while the rest of the hall is still free (every rejection searches for
//!   alternatives).
//! - `churn/single_seat`: 1,000 users keep changing their minds: each new grant releases the
//!   user's previous hold, so seats are freed and taken all the time.
//! - `four_seats/adjacent`: groups of 10,000 different users ask for 4 adjacent seats in a
//!   random row.
//!
//! `cargo bench -p booking-core --bench engine -- --warm-up-time 1 --measurement-time 3`

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use booking_core::{
    BatchOutcome, Decision, DecisionEngine, PendingRequest, RequestId, SeatId, SeatLayout,
    ShowSnapshot, UserId,
};
use chrono::{DateTime, Duration, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use uuid::Uuid;

const ROWS: u16 = 20;
const PER_ROW: u16 = 25;
const REQUESTS: usize = 10_000;
/// Requests per `decide_batch` call: one SQS FIFO batch.
const BATCH: usize = 10;

/// A small deterministic generator, so every run decides the same requests.
type Rng = booking_core::rng::SplitMix64;

/// Roughly normal around `centre` (sum of four uniforms), clamped to `1..=max`.
fn around(rng: &mut Rng, centre: u64, spread: u64, max: u64) -> u64 {
    let sum: u64 = (0..4).map(|_| rng.below(2 * spread + 1)).sum();
    (centre + sum / 2).saturating_sub(spread * 2).clamp(1, max)
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn layout() -> Arc<SeatLayout> {
    Arc::new(SeatLayout::rectangular(ROWS, PER_ROW, 1200))
}

/// Users look like JWT `sub` claims (`auth0|` + 24 hex digits).
fn user(n: u64) -> UserId {
    format!("auth0|{n:024x}").parse().unwrap()
}

fn request(k: usize, user: UserId, seat_ids: Vec<SeatId>) -> PendingRequest {
    PendingRequest {
        request_id: RequestId::from_uuid(Uuid::from_u128(0x1234_5678_0000 + k as u128)),
        user_id: user,
        seat_ids,
        expires_at: now() + Duration::minutes(2),
    }
}

fn seat(row: u64, number: u64) -> SeatId {
    SeatId::new(row as u16, number as u16).unwrap()
}

fn uniform_single_seat() -> Vec<PendingRequest> {
    let mut rng = Rng::new(1);
    (0..REQUESTS)
        .map(|k| {
            let s = seat(rng.below(ROWS as u64), 1 + rng.below(PER_ROW as u64));
            request(k, user(k as u64), vec![s])
        })
        .collect()
}

fn hot_centre_single_seat() -> Vec<PendingRequest> {
    let mut rng = Rng::new(2);
    (0..REQUESTS)
        .map(|k| {
            let row = around(&mut rng, ROWS as u64 / 2, 4, ROWS as u64) - 1;
            let number = around(&mut rng, PER_ROW as u64 / 2 + 1, 5, PER_ROW as u64);
            request(k, user(k as u64), vec![seat(row, number)])
        })
        .collect()
}

fn churn_single_seat() -> Vec<PendingRequest> {
    let mut rng = Rng::new(3);
    (0..REQUESTS)
        .map(|k| {
            let s = seat(rng.below(ROWS as u64), 1 + rng.below(PER_ROW as u64));
            request(k, user(rng.below(1_000)), vec![s])
        })
        .collect()
}

fn four_adjacent_seats() -> Vec<PendingRequest> {
    let mut rng = Rng::new(4);
    (0..REQUESTS)
        .map(|k| {
            let row = rng.below(ROWS as u64);
            let first = 1 + rng.below(PER_ROW as u64 - 3);
            let seats = (first..first + 4).map(|n| seat(row, n)).collect();
            request(k, user(k as u64), seats)
        })
        .collect()
}

fn chunks(requests: &[PendingRequest]) -> Vec<Vec<PendingRequest>> {
    requests.chunks(BATCH).map(<[_]>::to_vec).collect()
}

/// Decides the batches in order and hands each outcome to `sink` (the worker would commit it and
/// then drop it; the benchmark drops it at once, so memory is reused as in the worker).
fn decide_all(
    engine: &mut DecisionEngine,
    batches: Vec<Vec<PendingRequest>>,
    mut sink: impl FnMut(BatchOutcome),
) {
    let at = now();
    for batch in batches {
        sink(engine.decide_batch(batch, at));
    }
}

/// Prints what the scenario's decisions are (once, outside any measurement).
fn describe(layout: &Arc<SeatLayout>, group: &str, name: &str, requests: &[PendingRequest]) {
    let mut engine = DecisionEngine::new(
        layout.clone(),
        ShowSnapshot::default(),
        Duration::minutes(5),
    );
    let mut out = Vec::new();
    decide_all(&mut engine, chunks(requests), |o| out.push(o));
    let (mut granted, mut released, mut with_alternatives, mut without) = (0, 0, 0, 0);
    for d in out.iter().flat_map(|o| &o.decisions) {
        match d {
            Decision::Granted { released: r, .. } => {
                granted += 1;
                released += usize::from(r.is_some());
            }
            Decision::Rejected { alternatives, .. } if alternatives.is_empty() => without += 1,
            Decision::Rejected { .. } => with_alternatives += 1,
            _ => {}
        }
    }
    eprintln!(
        "{group}/{name}: {} requests: {granted} granted ({released} releasing a previous hold), \
         {with_alternatives} rejected with alternatives, {without} rejected without",
        requests.len()
    );
}

fn bench_engine(c: &mut Criterion) {
    let layout = layout();
    let scenarios: [(&str, &str, Vec<PendingRequest>); 4] = [
        ("single_seat", "uniform", uniform_single_seat()),
        ("single_seat", "hot_centre", hot_centre_single_seat()),
        ("churn", "single_seat", churn_single_seat()),
        ("four_seats", "adjacent", four_adjacent_seats()),
    ];
    for (group_name, name, requests) in scenarios {
        describe(&layout, group_name, name, &requests);
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(requests.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let engine = DecisionEngine::new(
                        layout.clone(),
                        ShowSnapshot::default(),
                        Duration::minutes(5),
                    );
                    (engine, chunks(&requests))
                },
                |(mut engine, batches)| {
                    decide_all(&mut engine, black_box(batches), |o| drop(black_box(o)));
                    engine
                },
                BatchSize::PerIteration,
            );
        });
        group.finish();
    }
}

criterion_group!(benches, bench_engine);
criterion_main!(benches);
