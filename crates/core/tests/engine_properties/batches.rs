//! Batches: deciding many requests at once is only an optimisation.
//!
//! `decide_batch` must decide exactly as deciding the requests one by one would, and the seat
//! changes it reports (what the notifier tells seat watchers) must name each changed seat once,
//! sorted, with its final status.

use crate::drivers::statuses;
use crate::strategies::scenario;
use crate::world::{build, users};
use booking_core::Decision;
use proptest::prelude::*;

// 256 cases each by default: see the crate docs in `main.rs` for a longer hunt.
proptest! {
    /// The seat changes of a batch: each seat at most once, sorted, with the status the engine
    /// reports after the batch, and every seat whose status changed during the batch included.
    #[test]
    fn seat_changes_are_coalesced_sorted_and_final(sc in scenario()) {
        let world = build(&sc, true);
        let mut engine = world.engine();
        for (now, requests) in &world.batches {
            let before = statuses(&mut engine, &world, *now);
            let out = engine.decide_batch(requests.clone(), *now);
            let after = statuses(&mut engine, &world, *now);
            prop_assert_eq!(out.decisions.len(), requests.len());
            prop_assert!(
                out.seat_changes.windows(2).all(|w| w[0].seat_id < w[1].seat_id),
                "not strictly sorted: {:?}", out.seat_changes
            );
            for change in &out.seat_changes {
                prop_assert_eq!(Some(change.status), after.get(&change.seat_id).copied(), "change {:?}", change);
            }
            for (seat, status) in &after {
                if before[seat] != *status {
                    prop_assert!(
                        out.seat_changes.iter().any(|c| c.seat_id == *seat),
                        "{} went {:?} -> {:?} but is not in {:?}", seat, before[seat], status, out.seat_changes
                    );
                }
            }
        }
    }

    /// `decide_batch` decides exactly as deciding the same requests one by one would.
    #[test]
    fn batch_decisions_equal_one_by_one_decisions(sc in scenario()) {
        let world = build(&sc, true);
        let mut batched = world.engine();
        let mut single = world.engine();
        for (now, requests) in &world.batches {
            let out = batched.decide_batch(requests.clone(), *now);
            let one_by_one: Vec<Decision> = requests.iter().map(|r| single.decide(r.clone(), *now)).collect();
            prop_assert_eq!(&out.decisions, &one_by_one);
            prop_assert_eq!(statuses(&mut batched, &world, *now), statuses(&mut single, &world, *now));
            for u in users() {
                prop_assert_eq!(batched.live_hold_of(&u, *now), single.live_hold_of(&u, *now));
            }
        }
    }
}
