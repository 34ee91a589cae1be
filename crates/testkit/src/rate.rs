//! The contract of rate limiters, run against every adapter (Redis, process memory). Each case
//! uses fresh keys, so cases can share one server.

use booking_core::ports::RateLimiter;
use booking_core::rate::{RateRule, RateVerdict};
use std::sync::Arc;
use std::time::Duration;

fn key() -> String {
    format!("contract:{}", uuid::Uuid::new_v4())
}

/// So slow that no token comes back while a case runs.
fn slow(burst: u32) -> RateRule {
    RateRule::new(1, Duration::from_secs(3600), burst)
}

async fn allowed<L: RateLimiter + ?Sized>(l: &L, key: &str, rule: &RateRule, n: usize) -> usize {
    let mut allowed = 0;
    for _ in 0..n {
        if l.acquire(key, rule).await.expect("limiter answers") == RateVerdict::Allowed {
            allowed += 1;
        }
    }
    allowed
}

/// A fresh key allows exactly its burst, then says how long to wait (at most one interval).
pub async fn burst_then_limited<L: RateLimiter + ?Sized>(l: &L) {
    let k = key();
    let rule = slow(5);
    assert_eq!(allowed(l, &k, &rule, 5).await, 5, "the burst is allowed");
    match l.acquire(&k, &rule).await.unwrap() {
        RateVerdict::Limited { retry_after } => {
            assert!(
                retry_after > Duration::ZERO && retry_after <= rule.period,
                "retry after {retry_after:?}"
            );
        }
        RateVerdict::Allowed => panic!("allowed past the burst"),
    }
}

/// One caller's bucket is not another's.
pub async fn keys_are_independent<L: RateLimiter + ?Sized>(l: &L) {
    let (a, b) = (key(), key());
    let rule = slow(2);
    assert_eq!(allowed(l, &a, &rule, 10).await, 2);
    assert_eq!(allowed(l, &b, &rule, 10).await, 2, "b has its own burst");
}

/// Tokens come back at the rule's rate, and a caller hammering while limited does not push its
/// next token further away.
pub async fn tokens_come_back_and_refusals_cost_nothing<L: RateLimiter + ?Sized>(l: &L) {
    let k = key();
    // One token every 100 ms, burst 1.
    let rule = RateRule::new(10, Duration::from_secs(1), 1);
    assert_eq!(allowed(l, &k, &rule, 1).await, 1);
    assert_eq!(
        allowed(l, &k, &rule, 10).await,
        0,
        "limited until a token is back"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        allowed(l, &k, &rule, 1).await,
        1,
        "a token is back: the refusals took none"
    );
}

/// Concurrent requests of one caller share one bucket: exactly the burst gets through.
pub async fn concurrent_callers_take_each_token_once<L: RateLimiter + ?Sized>(l: Arc<L>) {
    let k = key();
    let rule = slow(10);
    let tasks: Vec<_> = (0..60)
        .map(|_| {
            let (l, k) = (l.clone(), k.clone());
            tokio::spawn(async move { l.acquire(&k, &rule).await.unwrap() })
        })
        .collect();
    let mut granted = 0;
    for t in tasks {
        granted += usize::from(t.await.unwrap() == RateVerdict::Allowed);
    }
    assert_eq!(granted, 10);
}

/// Every case, one after the other.
pub async fn run_all<L: RateLimiter>(l: Arc<L>) {
    burst_then_limited(l.as_ref()).await;
    keys_are_independent(l.as_ref()).await;
    tokens_come_back_and_refusals_cost_nothing(l.as_ref()).await;
    concurrent_callers_take_each_token_once(l).await;
}
