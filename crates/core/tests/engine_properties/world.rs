//! Concrete worlds: a [`Scenario`] turned into the layout, snapshot and timed request batches
//! the engine is fed, plus the fixed clock, TTL and user pool every module shares.
//!
//! [`build`] can make a well-formed snapshot (what a store can return) or a deliberately
//! malformed one (overlapping claims, unknown and blocked seats, one user with two holds), so the
//! properties can check both the rules and the engine's defence against bad input.

use crate::strategies::{RawRequest, Scenario, SeatPick};
use crate::{TTL_SECS, USERS};
use booking_core::layout::{Category, LayoutSpec, RowSpec};
use booking_core::{
    DecisionEngine, HoldId, PendingRequest, RequestId, SeatId, SeatLayout, ShowSnapshot,
    SnapshotHold, UserId,
};
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeSet;
use std::sync::Arc;
use uuid::Uuid;

pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

pub fn ttl() -> Duration {
    Duration::seconds(TTL_SECS)
}

pub fn user(i: usize) -> UserId {
    format!("user-{i}").parse().unwrap()
}

pub fn users() -> Vec<UserId> {
    (0..USERS).map(user).collect()
}

pub struct World {
    pub layout: Arc<SeatLayout>,
    pub blocked: BTreeSet<SeatId>,
    pub snapshot: ShowSnapshot,
    /// `(now, requests)` per batch, `now` non-decreasing.
    pub batches: Vec<(DateTime<Utc>, Vec<PendingRequest>)>,
}

impl World {
    pub fn seats(&self) -> &[SeatId] {
        self.layout.seats()
    }

    pub fn engine(&self) -> DecisionEngine {
        DecisionEngine::new(self.layout.clone(), self.snapshot.clone(), ttl())
    }
}

fn resolve(layout: &SeatLayout, pick: &SeatPick) -> SeatId {
    match *pick {
        SeatPick::In(i) => layout.seat_at(i as usize % layout.len()),
        SeatPick::Blocked(i) => {
            let blocked = &layout.spec().blocked;
            if blocked.is_empty() {
                layout.seat_at(i as usize % layout.len())
            } else {
                blocked[i as usize % blocked.len()]
            }
        }
        SeatPick::Outside(r, n) => SeatId::new(r, n).unwrap(),
    }
}

/// The seats of a request: `In` picks move on to the next seat until they hit one that is neither
/// blocked nor already asked for (random picks in a small hall would collide most of the time), so
/// invalid requests come from `Outside`, `Blocked` and `duplicate` picks, or from asking for more
/// seats than the hall has.
fn resolve_request(layout: &SeatLayout, r: &RawRequest) -> Vec<SeatId> {
    let mut seats: Vec<SeatId> = Vec::new();
    for pick in &r.seats {
        let mut seat = resolve(layout, pick);
        if let SeatPick::In(i) = *pick {
            for step in 1..layout.len() {
                if !seats.contains(&seat) && !layout.is_blocked(seat) {
                    break;
                }
                seat = layout.seat_at((i as usize + step) % layout.len());
            }
        }
        seats.push(seat);
    }
    if r.duplicate && !seats.is_empty() {
        seats.push(seats[0]);
    }
    seats
}

/// Builds the world of a scenario. With `well_formed`, the snapshot is what a store can return
/// (holds and booked seats disjoint, in the layout, not blocked, one hold per user); otherwise the
/// raw picks go in unfiltered (overlaps, duplicates, unknown and blocked seats, one user twice).
pub fn build(sc: &Scenario, well_formed: bool) -> World {
    let spec = LayoutSpec {
        categories: vec![Category {
            code: "STD".into(),
            name: "Standard".into(),
            price_cents: 1000,
            currency: "EUR".into(),
        }],
        rows: sc
            .rows
            .iter()
            .enumerate()
            .map(|(r, &seats)| RowSpec {
                row: SeatId::row_label(r as u16),
                seats,
                category: "STD".into(),
            })
            .collect(),
        blocked: vec![],
    };
    let plain = SeatLayout::new(spec.clone()).unwrap();
    let blocked: BTreeSet<SeatId> = sc
        .blocked
        .iter()
        .map(|&i| plain.seat_at(i as usize % plain.len()))
        .collect();
    let layout = Arc::new(
        SeatLayout::new(LayoutSpec {
            blocked: blocked.iter().copied().collect(),
            ..spec
        })
        .unwrap(),
    );

    let mut snapshot = ShowSnapshot::default();
    let mut claimed = BTreeSet::new();
    for pick in &sc.booked {
        let seat = resolve(&layout, pick);
        if !well_formed
            || (layout.contains(seat) && !blocked.contains(&seat) && claimed.insert(seat))
        {
            snapshot.booked.push(seat);
        }
    }
    let mut holders = BTreeSet::new();
    for (k, raw) in sc.holds.iter().enumerate() {
        let mut seats: Vec<SeatId> = raw.seats.iter().map(|p| resolve(&layout, p)).collect();
        if well_formed {
            seats.retain(|s| layout.contains(*s) && !blocked.contains(s) && claimed.insert(*s));
            if seats.is_empty() || !holders.insert(raw.user) {
                continue;
            }
        }
        snapshot.holds.push(SnapshotHold {
            hold_id: HoldId::from_uuid(Uuid::from_u128(0x5_0000 + k as u128)),
            user_id: user(raw.user),
            seat_ids: seats,
            expires_at: t0() + Duration::seconds(raw.expires),
        });
    }

    let mut now = t0();
    let mut next_request = 0u128;
    let batches = sc
        .batches
        .iter()
        .map(|b| {
            now += Duration::seconds(b.advance);
            let requests = b
                .requests
                .iter()
                .map(|r| {
                    next_request += 1;
                    PendingRequest {
                        request_id: RequestId::from_uuid(Uuid::from_u128(next_request)),
                        user_id: user(r.user),
                        seat_ids: resolve_request(&layout, r),
                        expires_at: now + Duration::seconds(r.deadline),
                    }
                })
                .collect();
            (now, requests)
        })
        .collect();
    World {
        layout,
        blocked,
        snapshot,
        batches,
    }
}
