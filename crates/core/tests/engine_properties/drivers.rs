//! Drivers: run a world through the engine, the model and the ledger side by side, and the
//! checks several properties share.
//!
//! [`drive`] decides one request at a time and hands each property a [`Step`] with everything
//! known about that decision (seat maps and ledger before and after, the model's verdict), so
//! each property states only what it checks.

use crate::ledger::Ledger;
use crate::model::{Expected, Model};
use crate::world::World;
use booking_core::{Decision, DecisionEngine, HoldId, PendingRequest, SeatId, SeatStatus};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::{BTreeMap, BTreeSet};

pub type Statuses = BTreeMap<SeatId, SeatStatus>;

pub fn statuses(engine: &mut DecisionEngine, world: &World, now: DateTime<Utc>) -> Statuses {
    world
        .seats()
        .iter()
        .map(|&s| (s, engine.seat_status(s, now).expect("layout seat")))
        .collect()
}

/// Everything known about one decision, for the properties to check.
pub struct Step<'a> {
    pub world: &'a World,
    pub engine: &'a mut DecisionEngine,
    pub now: DateTime<Utc>,
    pub request: &'a PendingRequest,
    pub decision: &'a Decision,
    pub expected: &'a Expected,
    pub model_before: &'a Model,
    pub ledger_before: &'a Ledger,
    pub ledger_after: &'a Ledger,
    pub before: &'a Statuses,
    pub after: &'a Statuses,
    /// `engine.live_hold_of(user)` just before the decision.
    pub live_before: Option<HoldId>,
}

/// Decides every request of the world one at a time and hands each decision to `check`.
pub fn drive(
    world: &World,
    mut check: impl FnMut(Step<'_>) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let mut engine = world.engine();
    let mut model = Model::new(world);
    let mut ledger = Ledger::new(world);
    for (now, requests) in &world.batches {
        let now = *now;
        for request in requests {
            let before = statuses(&mut engine, world, now);
            let live_before = engine.live_hold_of(&request.user_id, now);
            let model_before = model.clone();
            let ledger_before = ledger.clone();
            let decision = engine.decide(request.clone(), now);
            let expected = model.decide(request, now);
            ledger.record(&decision, now);
            let after = statuses(&mut engine, world, now);
            check(Step {
                world,
                engine: &mut engine,
                now,
                request,
                decision: &decision,
                expected: &expected,
                model_before: &model_before,
                ledger_before: &ledger_before,
                ledger_after: &ledger,
                before: &before,
                after: &after,
                live_before,
            })?;
        }
    }
    Ok(())
}

pub fn kind(d: &Decision) -> &'static str {
    match d {
        Decision::Granted { .. } => "Granted",
        Decision::Rejected { .. } => "Rejected",
        Decision::Expired { .. } => "Expired",
        Decision::Invalid { .. } => "Invalid",
    }
}

pub fn expected_kind(e: &Expected) -> &'static str {
    match e {
        Expected::Granted { .. } => "Granted",
        Expected::Rejected { .. } => "Rejected",
        Expected::Expired => "Expired",
        Expected::Invalid => "Invalid",
    }
}

/// The engine's seat map agrees with the holds it reported, and no seat is in two live holds.
pub fn check_exclusive(
    world: &World,
    engine: &mut DecisionEngine,
    ledger: &Ledger,
    statuses: &Statuses,
    now: DateTime<Utc>,
) -> Result<(), TestCaseError> {
    let booked: BTreeSet<SeatId> = world.snapshot.booked.iter().copied().collect();
    let mut owner: BTreeMap<SeatId, HoldId> = BTreeMap::new();
    for h in ledger.holds.iter().filter(|h| h.live(now)) {
        for &s in &h.seats {
            prop_assert!(
                !booked.contains(&s) && !world.blocked.contains(&s),
                "seat {s} is booked or blocked but in live hold {}",
                h.id
            );
            if let Some(other) = owner.insert(s, h.id) {
                prop_assert!(false, "seat {s} is in two live holds: {other} and {}", h.id);
            }
        }
    }
    for (&seat, &status) in statuses {
        let want = if world.blocked.contains(&seat) {
            SeatStatus::Blocked
        } else if booked.contains(&seat) {
            SeatStatus::Booked
        } else if owner.contains_key(&seat) {
            SeatStatus::Held
        } else {
            SeatStatus::Available
        };
        prop_assert_eq!(status, want, "status of {} at {}", seat, now);
    }
    let available = statuses
        .values()
        .filter(|s| **s == SeatStatus::Available)
        .count();
    prop_assert_eq!(engine.available_count(now), available, "available_count");
    Ok(())
}
