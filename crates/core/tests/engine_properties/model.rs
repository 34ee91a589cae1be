//! The reference model: the decision rules written down as plainly as possible.
//!
//! A map `seat -> (hold, user, expires_at)` plus the booked and blocked seats, and each request
//! decided with plain loops over it: nothing clever, so that it can be read against the rules
//! and trusted as the oracle the engine is compared with.

use crate::world::{World, ttl};
use booking_core::{HoldId, PendingRequest, SeatId, UserId};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// What the model says should happen to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    Granted {
        released: Option<HoldId>,
        expires_at: DateTime<Utc>,
    },
    Rejected {
        taken: Vec<SeatId>,
    },
    Expired,
    Invalid,
}

/// The decision rules, written as plainly as possible. Only meaningful for well-formed snapshots.
#[derive(Debug, Clone)]
pub struct Model {
    layout_seats: BTreeSet<SeatId>,
    blocked: BTreeSet<SeatId>,
    booked: BTreeSet<SeatId>,
    /// Seat -> (hold, user, expires_at). Entries past their expiry are simply ignored.
    held: BTreeMap<SeatId, (HoldId, UserId, DateTime<Utc>)>,
}

impl Model {
    pub fn new(world: &World) -> Self {
        let mut held = BTreeMap::new();
        for h in &world.snapshot.holds {
            for &s in &h.seat_ids {
                held.insert(s, (h.hold_id, h.user_id.clone(), h.expires_at));
            }
        }
        Self {
            layout_seats: world.seats().iter().copied().collect(),
            blocked: world.blocked.clone(),
            booked: world.snapshot.booked.iter().copied().collect(),
            held,
        }
    }

    /// The user's live hold, if any.
    fn live_hold(&self, user: &UserId, now: DateTime<Utc>) -> Option<HoldId> {
        let mut found = None;
        for (hold, u, expires_at) in self.held.values() {
            if u == user && *expires_at > now {
                assert!(found.is_none() || found == Some(*hold), "model broken");
                found = Some(*hold);
            }
        }
        found
    }

    /// Whether `seat` is taken for `user` (booked, or in a live hold that is not theirs).
    fn taken_for(&self, seat: SeatId, user: &UserId, now: DateTime<Utc>) -> bool {
        if self.booked.contains(&seat) {
            return true;
        }
        match self.held.get(&seat) {
            Some((_, u, expires_at)) => *expires_at > now && u != user,
            None => false,
        }
    }

    /// Seats the user could be given now: in the layout, not blocked, not taken by someone else.
    pub fn usable_for(&self, user: &UserId, now: DateTime<Utc>) -> BTreeSet<SeatId> {
        self.layout_seats
            .iter()
            .copied()
            .filter(|s| !self.blocked.contains(s) && !self.taken_for(*s, user, now))
            .collect()
    }

    pub fn decide(&mut self, req: &PendingRequest, now: DateTime<Utc>) -> Expected {
        if req.expires_at <= now {
            return Expected::Expired;
        }
        if req.seat_ids.is_empty() {
            return Expected::Invalid;
        }
        for (k, seat) in req.seat_ids.iter().enumerate() {
            if !self.layout_seats.contains(seat)
                || self.blocked.contains(seat)
                || req.seat_ids[..k].contains(seat)
            {
                return Expected::Invalid;
            }
        }
        let mut taken = Vec::new();
        for &seat in &req.seat_ids {
            if self.taken_for(seat, &req.user_id, now) {
                taken.push(seat);
            }
        }
        if !taken.is_empty() {
            return Expected::Rejected { taken };
        }
        let previous = self.live_hold(&req.user_id, now);
        // A new hold replacing the live one ends when the live one would have.
        let live_until = self
            .held
            .values()
            .find(|(h, _, _)| Some(*h) == previous)
            .map(|(_, _, until)| *until);
        let expires_at = live_until.map_or(now + ttl(), |until| until.min(now + ttl()));
        if let Some(p) = previous {
            self.held.retain(|_, (h, _, _)| *h != p);
        }
        let hold = HoldId::for_request(req.request_id);
        for &seat in &req.seat_ids {
            self.held
                .insert(seat, (hold, req.user_id.clone(), expires_at));
        }
        Expected::Granted {
            released: previous,
            expires_at,
        }
    }
}
