//! The seat-mirror contract, run against the in-process adapter (Redis runs the same cases).

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use booking_local::MemoryMirror;
use booking_testkit::mirror;

#[tokio::test]
async fn memory_mirror_meets_the_contract() {
    mirror::run_all(&MemoryMirror::new()).await;
}
