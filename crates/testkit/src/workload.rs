//! The hot-show workload the benchmarks and concurrency tests share: deterministic, so every run
//! decides the same requests.

use booking_core::ports::{Inserted, RequestStore};
use booking_core::{BookingRequest, NewBookingRequest, RequestId, SeatId, Show, UserId};
use chrono::{DateTime, Duration, Utc};

/// A small deterministic PRNG (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) % n
    }
}

/// `count` requests for 1-4 adjacent seats of a 20 × 25 hall from `users`, made at `t0`, with a
/// deadline far away.
pub fn hot_show_requests(
    show: &Show,
    users: &[UserId],
    count: usize,
    t0: DateTime<Utc>,
    seed: u64,
) -> Vec<NewBookingRequest> {
    let mut rng = Rng(seed);
    (0..count)
        .map(|_| {
            let len = 1 + rng.below(4) as u16;
            let row = rng.below(20) as u16;
            let first = 1 + rng.below(u64::from(26 - len)) as u16;
            NewBookingRequest {
                request_id: RequestId::new_random(),
                user_id: users[rng.below(users.len() as u64) as usize].clone(),
                show_id: show.show_id,
                seat_ids: (first..first + len)
                    .map(|n| SeatId::new(row, n).expect("in range"))
                    .collect(),
                idempotency_key: None,
                created_at: t0,
                expires_at: t0 + Duration::days(30),
                max_open: None,
            }
        })
        .collect()
}

/// Inserts `requests` from concurrent callers and returns them in arrival order.
pub async fn insert_all<S>(store: &S, requests: Vec<NewBookingRequest>) -> Vec<BookingRequest>
where
    S: RequestStore + Clone,
{
    let mut tasks = Vec::with_capacity(requests.len());
    for new in requests {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.insert_request(new).await }));
    }
    let mut stored = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await.expect("task").expect("insert_request") {
            Inserted::New(r) => stored.push(r),
            other => panic!("expected a new request: {other:?}"),
        }
    }
    stored.sort_by_key(|r| r.seq);
    stored
}
