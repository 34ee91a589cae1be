//! The seat-mirror contract, run against the in-process adapter (Redis runs the same cases).

use booking_app::memory_mirror::MemoryMirror;
use booking_contract::mirror;

#[tokio::test]
async fn memory_mirror_meets_the_contract() {
    mirror::run_all(&MemoryMirror::new()).await;
}
