//! The safety invariants: what must hold after every single decision, whatever was asked.
//!
//! No seat is ever in two live holds (nor held while booked or blocked), a request changes all
//! of its seats or none, a user has at most one live hold and a grant releases exactly the
//! previous one, and even a malformed snapshot never leads to a seat granted twice. These are
//! the promises a double booking would break, checked against the engine's own reports (the
//! ledger) rather than the model, so they hold even where the model does not apply.

use crate::drivers::{check_exclusive, drive, kind, statuses};
use crate::ledger::Ledger;
use crate::strategies::scenario;
use crate::world::{build, t0, users};
use booking_core::{Decision, HoldId, SeatId, SeatStatus};
use proptest::prelude::*;
use std::collections::BTreeSet;

// 256 cases each by default: see the crate docs in `main.rs` for a longer hunt.
proptest! {
    /// After every decision, no seat is in two live holds nor in a hold while booked or blocked,
    /// and the engine's seat map (and free count) is exactly what its reported holds imply.
    #[test]
    fn no_seat_is_ever_in_two_live_holds(sc in scenario()) {
        let world = build(&sc, true);
        {
            let mut engine = world.engine();
            let st = statuses(&mut engine, &world, t0());
            check_exclusive(&world, &mut engine, &Ledger::new(&world), &st, t0())?;
        }
        drive(&world, |s| {
            prop_assert!(s.ledger_after.bad_releases.is_empty(), "released a hold that was not live");
            check_exclusive(s.world, s.engine, s.ledger_after, s.after, s.now)
        })?;
    }

    /// A granted request holds exactly its seats (and frees the rest of the user's previous
    /// hold); any other outcome changes nothing at all.
    #[test]
    fn requests_are_all_or_nothing(sc in scenario()) {
        let world = build(&sc, true);
        drive(&world, |s| {
            let live_after = s.engine.live_hold_of(&s.request.user_id, s.now);
            match s.decision {
                Decision::Granted { hold_id, seat_ids, .. } => {
                    prop_assert_eq!(seat_ids, &s.request.seat_ids);
                    prop_assert_eq!(live_after, Some(*hold_id));
                    let previous: BTreeSet<SeatId> = s
                        .ledger_before
                        .live_of(&s.request.user_id, s.now)
                        .flat_map(|h| h.seats.iter().copied())
                        .collect();
                    for (seat, before) in s.before {
                        let after = s.after[seat];
                        if s.request.seat_ids.contains(seat) {
                            prop_assert_eq!(after, SeatStatus::Held, "requested seat {}", seat);
                        } else if previous.contains(seat) {
                            prop_assert_eq!(after, SeatStatus::Available, "released seat {}", seat);
                        } else {
                            prop_assert_eq!(after, *before, "unrelated seat {}", seat);
                        }
                    }
                }
                _ => {
                    prop_assert_eq!(s.after, s.before, "{} changed seats", kind(s.decision));
                    prop_assert_eq!(live_after, s.live_before, "{} changed the user's hold", kind(s.decision));
                }
            }
            Ok(())
        })?;
    }

    /// A user has at most one live hold on the show, `live_hold_of` names it, and a grant
    /// reports as `released` exactly the user's previous live hold.
    #[test]
    fn one_live_hold_per_user_and_grants_release_the_previous(sc in scenario()) {
        let world = build(&sc, true);
        drive(&world, |s| {
            let previous: Vec<HoldId> = s.ledger_before.live_of(&s.request.user_id, s.now).map(|h| h.id).collect();
            prop_assert_eq!(s.live_before, previous.first().copied());
            if let Decision::Granted { released, .. } = s.decision {
                prop_assert_eq!(*released, previous.first().copied(), "released");
            }
            prop_assert!(s.ledger_after.bad_releases.is_empty(), "released a hold that was not the user's live hold");
            for u in users() {
                let live: Vec<HoldId> = s.ledger_after.live_of(&u, s.now).map(|h| h.id).collect();
                prop_assert!(live.len() <= 1, "{} has live holds {:?}", u, live);
                prop_assert_eq!(s.engine.live_hold_of(&u, s.now), live.first().copied(), "live hold of {}", u);
            }
            Ok(())
        })?;
    }

    /// Snapshots a store should never produce (seats claimed twice, by holds with different
    /// expiries or by a hold and an order; a seat listed twice in one hold; unknown or blocked
    /// seats) are resolved conservatively: while any live claim on a seat remains, the seat reads
    /// HELD or BOOKED and is never granted to anyone else, and the free count stays exact.
    #[test]
    fn malformed_snapshots_never_lead_to_double_holds(sc in scenario()) {
        let world = build(&sc, false);
        let booked: BTreeSet<SeatId> = world.snapshot.booked.iter().copied().filter(|s| world.layout.contains(*s)).collect();
        let mut engine = world.engine();
        let mut ledger = Ledger::new(&world);
        for (now, requests) in &world.batches {
            let now = *now;
            for request in requests {
                let decision = engine.decide(request.clone(), now);
                ledger.record(&decision, now);
                let after = statuses(&mut engine, &world, now);
                for (i, h) in ledger.holds.iter().enumerate().filter(|(_, h)| h.live(now)) {
                    for seat in h.seats.iter().filter(|s| world.layout.contains(**s) && !world.blocked.contains(s)) {
                        let want = if booked.contains(seat) { SeatStatus::Booked } else { SeatStatus::Held };
                        prop_assert_eq!(after[seat], want, "seat {} claimed by live hold {}", seat, h.id);
                        if h.from_snapshot {
                            continue;
                        }
                        // A hold the engine granted shares no seat with any other live claim.
                        prop_assert!(!booked.contains(seat), "granted booked seat {}", seat);
                        for (j, o) in ledger.holds.iter().enumerate() {
                            prop_assert!(
                                i == j || !o.live(now) || !o.seats.contains(seat),
                                "seat {} is in granted hold {} and live hold {}", seat, h.id, o.id
                            );
                        }
                    }
                }
                let available = after.values().filter(|s| **s == SeatStatus::Available).count();
                prop_assert_eq!(engine.available_count(now), available, "available_count");
            }
        }
    }
}
