//! The reads after a run that the checks in [`crate::verify`] judge: every accepted request
//! polled (or a sample, with `--verify-polls`), every hold a result named read back by its
//! owner, and the seat map once more. The load is over by then, so these reads cost the
//! measurement nothing.

use crate::run::{Ctx, Rng, SeatMapInfo, User, fetch_seat_map};
use crate::stats::{Book, LateResults, Outcome, Record, Stats};
use crate::verify::{self, Evidence, HoldState, Polled, Verification, terminal};
use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// GETs in flight at once while checking.
const PARALLELISM: usize = 32;
/// Polls of a still-undecided request, a pause apart, before it counts as undecided.
const UNDECIDED_RETRIES: usize = 10;
const UNDECIDED_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);
/// How long pushes of requests that polling found decided are waited for.
const LATE_RESULT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestBody {
    status: String,
    #[serde(default)]
    hold_id: Option<Uuid>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HoldBody {
    status: String,
    seat_ids: Vec<String>,
}

pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: String,
    auth: &HeaderValue,
) -> Result<T, String> {
    let resp = client
        .get(&url)
        .header(AUTHORIZATION, auth.clone())
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "GET {url}: {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET {url}: {e}"))
}

/// Which records to poll: all of them, or a seeded sample of `limit` plus every record whose
/// result never arrived (only a poll can say what became of those).
fn to_poll(book: &Book, limit: usize, seed: u64) -> Vec<usize> {
    let n = book.records.len();
    if limit == 0 || limit >= n {
        return (0..n).collect();
    }
    let mut all: Vec<usize> = (0..n).collect();
    let mut rng = Rng::new(seed ^ 0x5EED_CAFE);
    for i in 0..limit {
        let j = i + rng.below(n - i);
        all.swap(i, j);
    }
    let mut chosen: Vec<usize> = all[..limit].to_vec();
    chosen.extend(
        all[limit..]
            .iter()
            .filter(|&&i| book.records[i].pushes == 0),
    );
    chosen.sort_unstable();
    chosen
}

/// Reads what the checks need and runs them.
pub async fn verify(
    ctx: &Ctx,
    book: &Book,
    start_map: &SeatMapInfo,
    sole_client: bool,
) -> Result<Verification, String> {
    let base = &ctx.opts.base;
    let records = &book.records;
    let chosen = to_poll(book, ctx.opts.verify_polls, ctx.opts.seed);
    if !ctx.opts.common.quiet {
        eprintln!(
            "loadgen: checking: polling {} of {} accepted requests",
            chosen.len(),
            records.len()
        );
    }
    let polled = poll_requests(&ctx.client, base, &ctx.users, records, chosen).await;
    let late = await_late_results(&ctx.stats, records, &polled).await;

    // Every hold a result named, with its owner.
    let mut holds_to_read: Vec<(Uuid, u32)> = Vec::new();
    let mut seen = HashSet::new();
    for (r, p) in records.iter().zip(&polled) {
        let pushed = r
            .pushed
            .filter(|p| p.outcome == Outcome::Success)
            .and_then(|p| p.hold_id)
            .or_else(|| {
                late.get(&r.id)
                    .and_then(|l| l.iter().find(|(o, _)| *o == Outcome::Success))
                    .and_then(|&(_, hold)| hold)
            });
        let polled = match p {
            Some(Ok(p)) if p.status == "SUCCESS" => p.hold_id,
            _ => None,
        };
        for id in pushed.into_iter().chain(polled) {
            if seen.insert(id) {
                holds_to_read.push((id, r.user));
            }
        }
    }
    if !ctx.opts.common.quiet {
        eprintln!(
            "loadgen: checking: reading back {} holds",
            holds_to_read.len()
        );
    }
    let index: HashMap<&str, u32> = start_map
        .seats
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i as u32))
        .collect();
    let read = futures_util::stream::iter(holds_to_read)
        .map(|(id, user)| async move {
            let url = format!("{base}/api/v1/holds/{id}");
            let auth = &ctx.users[user as usize].auth;
            (id, user, get_json::<HoldBody>(&ctx.client, url, auth).await)
        })
        .buffer_unordered(PARALLELISM)
        .collect::<Vec<_>>()
        .await;
    let mut holds = Vec::new();
    let mut hold_errors = Vec::new();
    for (hold_id, user, answer) in read {
        match answer {
            Ok(h) => {
                let mut seats = Vec::with_capacity(h.seat_ids.len());
                for s in &h.seat_ids {
                    match index.get(s.as_str()) {
                        Some(&i) => seats.push(i),
                        None => hold_errors.push((hold_id, format!("unknown seat {s}"))),
                    }
                }
                holds.push(HoldState {
                    hold_id,
                    user,
                    status: h.status,
                    seats,
                });
            }
            Err(e) => hold_errors.push((hold_id, e)),
        }
    }

    let end_map = fetch_seat_map(&ctx.client, base, &ctx.opts.show).await?;
    let mut held_at_end = vec![false; start_map.seats.len()];
    for (id, status) in end_map.seats.iter().zip(&end_map.status) {
        if let Some(&i) = index.get(id.as_str()) {
            held_at_end[i as usize] = status == "HELD";
        }
    }
    let evidence = Evidence {
        records,
        polled,
        holds,
        hold_errors,
        available_at_start: start_map.status.iter().map(|s| s == "AVAILABLE").collect(),
        held_at_end,
        sole_client,
        unanswered: &book.unanswered,
        late,
        restarts: ctx.opts.faults.kills > 0,
        redelivered: ctx.opts.faults.deliver_twice,
    };
    Ok(verify::check(&evidence))
}

/// Polls `GET /api/v1/booking-requests/{id}` of `chosen` records, each as its owner (`users`
/// by the record's user): per record (same index), `None` when not chosen, else the answer.
pub(crate) async fn poll_requests(
    client: &reqwest::Client,
    base: &str,
    users: &[User],
    records: &[Record],
    chosen: Vec<usize>,
) -> Vec<Option<Result<Polled, String>>> {
    let mut polled: Vec<Option<Result<Polled, String>>> = vec![None; records.len()];
    let mut pending = chosen;
    // A request may still be deciding when its poll comes (after a crash, recovery decides the
    // backlog); those are asked again a few times before "undecided" stands.
    for round in 0..=UNDECIDED_RETRIES {
        if round > 0 {
            tokio::time::sleep(UNDECIDED_PAUSE).await;
        }
        let answers = futures_util::stream::iter(pending)
            .map(|i| async move {
                let r = &records[i];
                let url = format!("{base}/api/v1/booking-requests/{}", r.id);
                let auth = &users[r.user as usize].auth;
                let answer = get_json::<RequestBody>(client, url, auth)
                    .await
                    .map(|b| Polled {
                        status: b.status,
                        hold_id: b.hold_id,
                    });
                (i, answer)
            })
            .buffer_unordered(PARALLELISM)
            .collect::<Vec<_>>()
            .await;
        pending = Vec::new();
        for (i, answer) in answers {
            if matches!(&answer, Ok(p) if !terminal(&p.status)) {
                pending.push(i);
            }
            polled[i] = Some(answer);
        }
        if pending.is_empty() {
            break;
        }
    }
    polled
}

/// The BOOKING_RESULTs that came after the book was taken, once those of every request that
/// polling found decided have come (or a bounded wait is over). Such a request's push left the
/// server after the commit the poll read, so it is on its way unless a crash took its socket;
/// a missing push is judged only after this.
pub(crate) async fn await_late_results(
    stats: &Stats,
    records: &[Record],
    polled: &[Option<Result<Polled, String>>],
) -> LateResults {
    let late_wait_ends = std::time::Instant::now() + LATE_RESULT_WAIT;
    let awaited: Vec<Uuid> = records
        .iter()
        .zip(polled)
        .filter(|(r, p)| r.pushes == 0 && matches!(p, Some(Ok(p)) if terminal(&p.status)))
        .map(|(r, _)| r.id)
        .collect();
    while !stats.late_results_for_all(&awaited) && std::time::Instant::now() < late_wait_ends {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stats.late_results()
}
