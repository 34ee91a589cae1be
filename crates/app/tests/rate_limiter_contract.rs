//! The rate-limiter contract, run against the in-process adapter (Redis runs the same cases).

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use booking_app::limits::MemoryRateLimiter;

#[tokio::test]
async fn the_memory_rate_limiter_meets_the_contract() {
    booking_testkit::rate::run_all(std::sync::Arc::new(MemoryRateLimiter::new())).await;
}
