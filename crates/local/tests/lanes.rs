//! The lanes when deciding fails: a failure worth retrying (the store is down) is retried with
//! backoff until it succeeds, and one that retrying cannot fix (the store returns invalid data)
//! does not drop the batch either: it is retried at the longest backoff, so the requests,
//! durable all along, are decided once an operator repairs the data. Either way nothing is lost
//! and nothing is decided twice. The faults are injected in front of the real embedded store.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

use async_trait::async_trait;
use booking_app::Stores;
use booking_core::ports::StoreError;
use booking_core::{RequestStatus, ShowId};
use booking_local::LaneOptions;
use booking_testkit::app::{Backend, TestApp, TestAppOptions};
use booking_testkit::faults::{HoldsHook, HookedHolds};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Fails the first `failures` loads of the show's state with `error`, then lets them through.
struct FailingLoads {
    failures: usize,
    error: fn() -> StoreError,
    loads: Arc<AtomicUsize>,
}

#[async_trait]
impl HoldsHook for FailingLoads {
    async fn before_load(&self, _show: ShowId) -> Result<(), StoreError> {
        if self.loads.fetch_add(1, Ordering::SeqCst) < self.failures {
            return Err((self.error)());
        }
        Ok(())
    }
}

async fn app_failing(failures: usize, error: fn() -> StoreError) -> (TestApp, Arc<AtomicUsize>) {
    let loads = Arc::new(AtomicUsize::new(0));
    let hook = FailingLoads {
        failures,
        error,
        loads: loads.clone(),
    };
    let mut options = TestAppOptions::on(Backend::Embedded);
    options.lanes = LaneOptions {
        max_batch: 512,
        max_backoff: Duration::from_millis(40),
        max_attempts: 5,
        ..LaneOptions::default()
    };
    options.wrap_stores = Some(Box::new(move |mut stores: Stores| {
        stores.holds = Arc::new(HookedHolds::new(stores.holds, hook));
        stores
    }));
    (TestApp::start_with(options).await, loads)
}

/// Submits one hold for the studio show through the use case and waits until the lanes are idle.
async fn hold_one(app: &TestApp, user: &str, seat: &str) -> booking_core::BookingRequest {
    let accepted = app
        .app
        .service()
        .submit_hold(
            &user.parse().unwrap(),
            booking_app::service::HoldRequestInput {
                show_id: booking_app::demo::PREMIERE_STUDIO.to_string(),
                seat_ids: vec![seat.to_owned()],
                idempotency_key: None,
            },
        )
        .await
        .expect("accepted");
    tokio::time::timeout(Duration::from_secs(60), app.drain())
        .await
        .expect("the lane finished");
    app.requests()
        .get_request(accepted.request.request_id)
        .await
        .unwrap()
        .expect("stored")
}

#[tokio::test]
async fn a_store_outage_is_retried_until_the_batch_is_decided() {
    let (app, loads) = app_failing(3, || StoreError::unavailable("injected outage")).await;
    let decided = hold_one(&app, "patient", "C3").await;
    assert_eq!(decided.status, RequestStatus::Success, "{decided:?}");
    assert_eq!(
        loads.load(Ordering::SeqCst),
        4,
        "three failures, then the decision"
    );
    // Decided once: the hold is the request's.
    let holds = app.holds();
    let hold = holds
        .get_hold(booking_core::HoldId::for_request(decided.request_id))
        .await
        .unwrap()
        .expect("the granted hold");
    assert_eq!(hold.request_id, decided.request_id);
}

#[tokio::test]
async fn invalid_data_keeps_its_requests_until_repaired_then_decides_them() {
    let (app, loads) = app_failing(2, || StoreError::corrupt("injected bad row")).await;
    let decided = hold_one(&app, "stubborn", "D4").await;
    assert_eq!(decided.status, RequestStatus::Success, "{decided:?}");
    assert_eq!(
        loads.load(Ordering::SeqCst),
        3,
        "two refusals, then the repair"
    );
}
