//! The decisions themselves: the engine decides each request as the rules say.
//!
//! Every decision matches the reference model in arrival order; expiry is by time alone (a hold
//! at or past its `expires_at` never blocks, a request at or past its deadline expires); and the
//! alternatives offered with a rejection are free, distinct and adjacent whenever adjacent seats
//! exist. Where the invariants say nothing bad happens, these say the right thing does.

use crate::drivers::{drive, expected_kind, kind};
use crate::model::Expected;
use crate::strategies::scenario;
use crate::world::build;
use booking_core::{Decision, HoldId, SeatId, SeatStatus};
use proptest::prelude::*;
use std::collections::BTreeSet;

// 256 cases each by default: see the crate docs in `main.rs` for a longer hunt.
proptest! {
    /// Decisions match the reference model in arrival order: same kind, same seats granted,
    /// same hold id and expiry, and a rejection names exactly the requested seats that are taken.
    #[test]
    fn decisions_follow_arrival_order_like_the_model(sc in scenario()) {
        let world = build(&sc, true);
        drive(&world, |s| {
            prop_assert_eq!(
                kind(s.decision), expected_kind(s.expected),
                "request {:?} at {}: engine {:?}, model {:?}", s.request, s.now, s.decision, s.expected
            );
            prop_assert_eq!(s.decision.request_id(), s.request.request_id);
            match (s.decision, s.expected) {
                (
                    Decision::Granted { user_id, hold_id, seat_ids, expires_at, released, .. },
                    Expected::Granted { released: want_released, expires_at: want_expiry },
                ) => {
                    prop_assert_eq!(user_id, &s.request.user_id);
                    prop_assert_eq!(seat_ids, &s.request.seat_ids);
                    prop_assert_eq!(*hold_id, HoldId::for_request(s.request.request_id));
                    prop_assert_eq!(expires_at, want_expiry, "a replaced basket keeps its clock");
                    prop_assert_eq!(released, want_released);
                }
                (Decision::Rejected { unavailable, .. }, Expected::Rejected { taken }) => {
                    prop_assert_eq!(unavailable, taken);
                }
                _ => {}
            }
            Ok(())
        })?;
    }

    /// A hold whose `expires_at <= now` never blocks a request (its seats read AVAILABLE and a
    /// request for them is granted), and a request whose own deadline is `<= now` is EXPIRED.
    #[test]
    fn expired_holds_never_block_and_overdue_requests_expire(sc in scenario()) {
        let world = build(&sc, true);
        drive(&world, |s| {
            if s.request.expires_at <= s.now {
                prop_assert_eq!(kind(s.decision), "Expired");
                return Ok(());
            }
            prop_assert_ne!(kind(s.decision), "Expired", "request deadline is in the future");
            // Seats of holds that have run out read AVAILABLE unless held again by a live hold.
            for h in &s.ledger_before.holds {
                if h.released || h.expires_at > s.now {
                    continue;
                }
                for seat in &h.seats {
                    let retaken = s.ledger_before.holds.iter().any(|o| o.live(s.now) && o.seats.contains(seat));
                    if !retaken {
                        prop_assert_eq!(s.before[seat], SeatStatus::Available, "seat {} of expired hold {}", seat, h.id);
                    }
                }
            }
            let blocks = |seat: &SeatId| {
                s.world.snapshot.booked.contains(seat)
                    || s.ledger_before.holds.iter().any(|h| {
                        h.live(s.now) && h.user != s.request.user_id && h.seats.contains(seat)
                    })
            };
            if let Decision::Rejected { unavailable, .. } = s.decision {
                for seat in unavailable {
                    prop_assert!(blocks(seat), "{} reported unavailable but no live hold has it", seat);
                }
            }
            let valid = !s.request.seat_ids.is_empty()
                && s.request.seat_ids.iter().enumerate().all(|(k, seat)| {
                    s.world.layout.contains(*seat)
                        && !s.world.blocked.contains(seat)
                        && !s.request.seat_ids[..k].contains(seat)
                });
            if valid && !s.request.seat_ids.iter().any(blocks) {
                prop_assert_eq!(kind(s.decision), "Granted", "nothing live blocks {:?}", s.request.seat_ids);
            }
            Ok(())
        })?;
    }

    /// Alternatives offered with a rejection: none only when the user cannot be given that many
    /// seats at all; otherwise exactly as many distinct seats, all available to the user (never
    /// blocked), and one run of adjacent seats in one row whenever such a run exists.
    #[test]
    fn alternatives_are_free_distinct_and_adjacent_when_possible(sc in scenario()) {
        let world = build(&sc, true);
        drive(&world, |s| {
            let Decision::Rejected { alternatives, .. } = s.decision else { return Ok(()) };
            let n = s.request.seat_ids.len();
            let usable = s.model_before.usable_for(&s.request.user_id, s.now);
            if usable.len() < n {
                prop_assert!(alternatives.is_empty(), "{} usable seats, {} wanted, offered {:?}", usable.len(), n, alternatives);
                return Ok(());
            }
            prop_assert_eq!(alternatives.len(), n, "offered {:?} with {} usable", alternatives, usable.len());
            let distinct: BTreeSet<SeatId> = alternatives.iter().copied().collect();
            prop_assert_eq!(distinct.len(), n, "duplicates in {:?}", alternatives);
            for seat in alternatives {
                prop_assert!(!s.world.blocked.contains(seat), "blocked seat {} offered", seat);
                prop_assert!(usable.contains(seat), "seat {} offered but not available ({:?})", seat, s.before.get(seat));
            }
            let run_exists = s.world.layout.rows().iter().any(|row| {
                let code = SeatId::parse_row_label(&row.row).unwrap();
                let mut run = 0;
                (1..=row.seats).any(|num| {
                    run = if usable.contains(&SeatId::new(code, num).unwrap()) { run + 1 } else { 0 };
                    run >= n
                })
            });
            let near = Nearness::new(s.world, &s.request.seat_ids);
            if run_exists {
                let sorted: Vec<SeatId> = distinct.into_iter().collect();
                let one_row = sorted.iter().all(|x| x.row_code() == sorted[0].row_code());
                let consecutive = sorted.windows(2).all(|w| w[1].number() == w[0].number() + 1);
                prop_assert!(one_row && consecutive, "a run of {} exists but {:?} was offered", n, alternatives);
                // And no other run of usable seats is nearer to what was asked for.
                let offered = near.block(sorted[0], n);
                let best = near.best_block(&usable, n).expect("a run exists");
                prop_assert_eq!(offered, best, "{:?} offered for {:?}; a nearer run exists", alternatives, s.request.seat_ids);
            } else {
                // Scattered: the n usable seats nearest to what was asked for.
                let mut offered: Vec<u32> = alternatives.iter().map(|&x| near.seat(x)).collect();
                offered.sort_unstable();
                let mut all: Vec<u32> = usable.iter().map(|&x| near.seat(x)).collect();
                all.sort_unstable();
                prop_assert_eq!(&offered[..], &all[..n], "{:?} offered for {:?}; nearer seats are free", alternatives, s.request.seat_ids);
            }
            Ok(())
        })?;
    }
}

/// The distance alternatives are ranked by, as the engine documents it: measured from the
/// average row position and seat number of the seats asked for, in half-seat units, a row away
/// costing as much as three seats sideways; a block is measured at its centre.
struct Nearness {
    /// Row label code → position of the row in the layout.
    position: std::collections::HashMap<u16, u32>,
    ref_row: u32,
    ref_num2: u32,
}

impl Nearness {
    const ROW_WEIGHT: u32 = 3;

    fn new(world: &crate::world::World, asked: &[SeatId]) -> Self {
        let position: std::collections::HashMap<u16, u32> = world
            .layout
            .rows()
            .iter()
            .enumerate()
            .map(|(i, row)| (SeatId::parse_row_label(&row.row).unwrap(), i as u32))
            .collect();
        let n = asked.len() as u32;
        let row_sum: u32 = asked.iter().map(|x| position[&x.row_code()]).sum();
        let num_sum: u32 = asked.iter().map(|x| x.number() as u32).sum();
        let rows = world.layout.rows().len() as u32;
        Self {
            position,
            ref_row: ((2 * row_sum) / n / 2).min(rows - 1),
            ref_num2: (2 * num_sum) / n,
        }
    }

    fn row_cost(&self, seat: SeatId) -> u32 {
        Self::ROW_WEIGHT * 2 * self.position[&seat.row_code()].abs_diff(self.ref_row)
    }

    /// One seat's distance.
    fn seat(&self, seat: SeatId) -> u32 {
        self.row_cost(seat) + (2 * seat.number() as u32).abs_diff(self.ref_num2)
    }

    /// The distance of the block of `n` seats starting at `first`.
    fn block(&self, first: SeatId, n: usize) -> u32 {
        let centre2 = 2 * first.number() as u32 + n as u32 - 1;
        self.row_cost(first) + centre2.abs_diff(self.ref_num2)
    }

    /// The smallest distance of any run of `n` usable seats in one row.
    fn best_block(&self, usable: &BTreeSet<SeatId>, n: usize) -> Option<u32> {
        usable
            .iter()
            .filter(|first| {
                (0..n as u16).all(|k| {
                    SeatId::new(first.row_code(), first.number() + k)
                        .is_some_and(|x| usable.contains(&x))
                })
            })
            .map(|first| self.block(*first, n))
            .min()
    }
}
