//! The store contract: the guarantees every store adapter must give, written once against the
//! port traits.
//!
//! The embedded SQLite store and PostgreSQL promise the same: no seat held twice, no accepted
//! request lost, one decision per request, expiry by time, no money kept without a ticket. A
//! guarantee is only as good as the test that proves it, and two hand-written test suites drift
//! apart; so each case here is a `pub async fn` generic over any store that implements
//! [`CatalogStore`], [`RequestStore`], [`HoldStore`] and [`OrderStore`], and each adapter runs
//! all of them:
//!
//! ```text
//! // crates/<adapter>/tests/contract.rs
//! async fn fresh_store() -> (MyStore, impl Sized) { /* store, and a guard kept until the end */ }
//! booking_testkit::contract_tests!(fresh_store);
//! ```
//!
//! [`contract_tests!`](crate::contract_tests!) makes one `#[tokio::test]` per case (the calling
//! crate needs `tokio` with its `macros` feature); [`run_all`] runs every case in turn on one
//! store, [`run_all_concurrently`] all of them at once.
//!
//! The cases are grouped by what they cover: `intake` (insert, idempotency, arrival order),
//! `batches` (claiming requests and committing fresh decisions), `conflicts` (batches decided
//! against stale state), `holds` (expiry by time, release rules), `sweeps` (the global expiry
//! sweeps), `orders` (converting a hold, the order's seat claims, listing, `expire_orders`),
//! `charges` (starting and settling charges), `refunds` (cancels, refunds, unsettled payments),
//! `cancellations` (a cancelled show's mark, queue and open orders), `keys` (idempotency keys),
//! `waiting_rooms` (a stored room against the pure rules) and `catalog` (movies, shows, ping), and all re-exported here. Every runner expands
//! the one list of case names in `__with_cases!` below, so a new case goes in its topic's file,
//! in that `pub use`, and in that list.
//!
//! Cases may share one database, even concurrently and across runs: each creates its own movie
//! and show with fresh ids, uses fresh user ids, looks only at its own rows in global listings,
//! and the cases that call global sweeps or listings (`expire_holds`, `expire_overdue_requests`,
//! `expire_orders`, `unsettled_payments`, `purge_keys`) place their data hundreds of days in the
//! past, each on a time range no other case touches (500, 400, 320, 300 and 200 days back).

mod batches;
mod cancellations;
mod catalog;
mod charges;
mod conflicts;
mod holds;
mod intake;
mod keys;
mod orders;
mod refunds;
mod sweeps;
mod waiting_rooms;

pub use batches::{
    begin_processing_skips_decided, commit_batch_records_every_outcome,
    grant_releases_previous_hold, one_batch_builds_on_its_own_grants_and_releases,
    start_deciding_leaves_the_guard_to_the_commit,
};
pub use cancellations::{
    a_show_is_cancelled_once_and_for_good, fail_undecided_ends_a_shows_queue,
    open_orders_are_listed_and_cancelled_with_their_reason,
};
pub use catalog::{
    a_show_on_sale_keeps_what_is_on_sale, catalog_listing_and_date_filter,
    catalog_write_is_all_or_nothing, ping_answers, queue_counts_and_pauses_come_from_the_store,
};
pub use charges::{
    a_charge_sent_again_is_not_written_off, begin_charge_refusals,
    begin_charge_while_in_flight_returns_the_same_charge, charge_confirms_the_order_once,
    charge_not_made_leaves_the_order_pending, declined_charge_fails_the_order_and_frees_its_seats,
};
pub use conflicts::{
    seat_conflict_writes_nothing, stale_claim_before_a_release_in_the_batch_is_refused,
    stale_duplicate_grant_is_refused,
};
pub use holds::{
    expired_claim_is_taken_without_sweeper, reads_honour_expiry_by_time, release_hold_rules,
};
pub use intake::{
    concurrent_inserts_are_durable, dead_letters_are_set_aside_redriven_once_and_discarded,
    idempotency_key_returns_existing, insert_and_get_round_trip,
    open_request_cap_is_counted_by_the_insert, pending_requests_in_arrival_order,
    undecided_before_lists_the_older_waiting_requests,
};
pub use keys::{
    a_failed_or_abandoned_use_is_claimed_again_under_its_id,
    a_key_is_claimed_once_and_replays_its_answer, keys_are_kept_for_their_time_only,
};
pub use orders::{
    create_order_converts_a_live_hold, create_order_refuses_a_hold_that_is_not_live,
    expire_orders_sweeps_overdue, late_charge_confirms_when_nobody_took_the_seats,
    order_keeps_its_seats_after_its_hold_expires, order_seats_free_by_time_at_seats_until,
    orders_of_pages_newest_first,
};
pub use refunds::{
    cancel_paid_order_refunds_before_freeing_seats, cancel_unpaid_order,
    unsettled_payments_lists_old_pending_calls,
};
pub use sweeps::{
    expire_holds_sweeps_overdue, expire_overdue_requests_sweeps_queued,
    purge_history_removes_old_history_and_keeps_sales,
};
pub use waiting_rooms::{
    a_room_is_switched_on_changed_and_off, a_stored_room_follows_the_pure_rules,
    an_armed_room_switches_itself_on_with_demand, one_live_place_per_user_whatever_the_race,
};

use booking_core::ports::{
    CatalogStore, HoldStore, IdempotencyStore, OrderStore, RequestStore, WaitingRoomStore,
};
use chrono::{DateTime, Utc};

/// The message of a request that was not decided before its deadline.
pub use booking_core::model::REQUEST_EXPIRED_MESSAGE as EXPIRED_MESSAGE;

/// What the cases need of a store: all four state ports, how it keeps instants, and `Clone`
/// so that concurrent cases can hand it to spawned tasks (adapters are handles around a pool,
/// cheap to clone).
pub trait ContractStore:
    CatalogStore
    + RequestStore
    + HoldStore
    + OrderStore
    + IdempotencyStore
    + WaitingRoomStore
    + StoredInstants
    + Clone
{
}
impl<T> ContractStore for T where
    T: CatalogStore
        + RequestStore
        + HoldStore
        + OrderStore
        + IdempotencyStore
        + WaitingRoomStore
        + StoredInstants
        + Clone
{
}

/// How a store keeps instants: what a written instant reads back as. The cases write real
/// (nanosecond) instants, as the app does, and expect what the store says it keeps: exact
/// equality with a truncated value, not equality that only holds for instants chosen to be
/// whole milliseconds.
pub trait StoredInstants {
    fn as_stored(&self, t: DateTime<Utc>) -> DateTime<Utc>;
}

impl StoredInstants for booking_sqlite::SqliteStore {
    fn as_stored(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        booking_sqlite::SqliteStore::stored_instant(t)
    }
}

impl StoredInstants for booking_postgres::PgStore {
    fn as_stored(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        booking_postgres::PgStore::stored_instant(t)
    }
}

/// The one list of cases, from which [`contract_tests!`](crate::contract_tests!), [`run_all`],
/// [`run_all_concurrently`] and [`case_names`] are all generated: forwards its arguments and
/// every case name to `__expand_cases!`, which calls each case as `$crate::stores::<case>`.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_cases {
    ($($args:tt)*) => {
        $crate::__expand_cases! { ($($args)*)
            insert_and_get_round_trip,
            idempotency_key_returns_existing,
            concurrent_inserts_are_durable,
            open_request_cap_is_counted_by_the_insert,
            dead_letters_are_set_aside_redriven_once_and_discarded,
            pending_requests_in_arrival_order,
            undecided_before_lists_the_older_waiting_requests,
            begin_processing_skips_decided,
            start_deciding_leaves_the_guard_to_the_commit,
            commit_batch_records_every_outcome,
            grant_releases_previous_hold,
            seat_conflict_writes_nothing,
            expired_claim_is_taken_without_sweeper,
            stale_duplicate_grant_is_refused,
            one_batch_builds_on_its_own_grants_and_releases,
            stale_claim_before_a_release_in_the_batch_is_refused,
            reads_honour_expiry_by_time,
            release_hold_rules,
            expire_holds_sweeps_overdue,
            expire_overdue_requests_sweeps_queued,
            purge_history_removes_old_history_and_keeps_sales,
            create_order_converts_a_live_hold,
            create_order_refuses_a_hold_that_is_not_live,
            order_keeps_its_seats_after_its_hold_expires,
            order_seats_free_by_time_at_seats_until,
            late_charge_confirms_when_nobody_took_the_seats,
            orders_of_pages_newest_first,
            expire_orders_sweeps_overdue,
            charge_confirms_the_order_once,
            begin_charge_while_in_flight_returns_the_same_charge,
            declined_charge_fails_the_order_and_frees_its_seats,
            charge_not_made_leaves_the_order_pending,
            begin_charge_refusals,
            cancel_unpaid_order,
            cancel_paid_order_refunds_before_freeing_seats,
            unsettled_payments_lists_old_pending_calls,
            catalog_listing_and_date_filter,
            catalog_write_is_all_or_nothing,
            a_show_on_sale_keeps_what_is_on_sale,
            queue_counts_and_pauses_come_from_the_store,
            a_key_is_claimed_once_and_replays_its_answer,
            a_charge_sent_again_is_not_written_off,
            a_failed_or_abandoned_use_is_claimed_again_under_its_id,
            keys_are_kept_for_their_time_only,
            ping_answers,
            a_show_is_cancelled_once_and_for_good,
            fail_undecided_ends_a_shows_queue,
            open_orders_are_listed_and_cancelled_with_their_reason,
            a_stored_room_follows_the_pure_rules,
            one_live_place_per_user_whatever_the_race,
            a_room_is_switched_on_changed_and_off,
            an_armed_room_switches_itself_on_with_demand,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __expand_cases {
    ((tests $make:path) $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (store, _guard) = $make().await;
                $crate::stores::$case(&store).await;
            }
        )*
    };
    ((run $store:ident) $($case:ident),* $(,)?) => {
        $( $crate::stores::$case($store).await; )*
    };
    ((spawn $store:ident) $($case:ident),* $(,)?) => {
        ::std::vec![$(
            (::std::stringify!($case), {
                let store = $store.clone();
                ::tokio::spawn(async move { $crate::stores::$case(&store).await })
            }),
        )*]
    };
    ((names) $($case:ident),* $(,)?) => {
        &[$(stringify!($case)),*]
    };
}

/// Generates one `#[tokio::test]` per contract case. `$make` names an `async fn` (no arguments)
/// returning `(store, guard)`: the guard (a temp dir, a connection, `()`) lives until the case
/// ends.
#[macro_export]
macro_rules! contract_tests {
    ($make:path) => {
        $crate::__with_cases!(tests $make);
    };
}

/// Every case, one after another, on one store.
pub async fn run_all<S: ContractStore>(store: &S) {
    __with_cases!(run store);
}

/// Every case at the same time on one store, as concurrent test runs against one shared
/// PostgreSQL would: proves that the cases do not get in each other's way. Panics (after all
/// have finished) naming every case that failed.
pub async fn run_all_concurrently<S: ContractStore>(store: &S) {
    let tasks: Vec<(&str, tokio::task::JoinHandle<()>)> = __with_cases!(spawn store);
    let mut failed = Vec::new();
    for (name, task) in tasks {
        if task.await.is_err() {
            failed.push(name);
        }
    }
    assert!(failed.is_empty(), "contract cases failed: {failed:?}");
}

/// The names of every case, in the order [`run_all`] runs them.
pub fn case_names() -> &'static [&'static str] {
    __with_cases!(names)
}
