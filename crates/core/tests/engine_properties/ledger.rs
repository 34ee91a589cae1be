//! The ledger: holds as the engine reported them.
//!
//! Built *only* from the engine's own word (snapshot holds, grants, releases, expiry times) and
//! never from its seat map, so the invariants can check one against the other: what the engine
//! says it granted must be what its seat map shows.

use crate::world::World;
use booking_core::{Decision, HoldId, SeatId, UserId};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

#[derive(Debug, Clone)]
pub struct LedgerHold {
    pub id: HoldId,
    pub user: UserId,
    pub seats: BTreeSet<SeatId>,
    pub expires_at: DateTime<Utc>,
    pub released: bool,
    pub from_snapshot: bool,
    /// Turned into an order (see `orders`): its seats are the order's now, and it is no longer
    /// a hold, so no grant may release it. Never set outside the order properties.
    pub converted: bool,
}

impl LedgerHold {
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        !self.released && !self.converted && self.expires_at > now
    }
}

#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub holds: Vec<LedgerHold>,
    /// Released hold ids the engine reported that were not live holds of the user (a converted
    /// hold, one that ran out, another user's).
    pub bad_releases: Vec<HoldId>,
}

impl Ledger {
    pub fn new(world: &World) -> Self {
        let holds = world
            .snapshot
            .holds
            .iter()
            .map(|h| LedgerHold {
                id: h.hold_id,
                user: h.user_id.clone(),
                seats: h.seat_ids.iter().copied().collect(),
                expires_at: h.expires_at,
                released: false,
                from_snapshot: true,
                converted: false,
            })
            .collect();
        Self {
            holds,
            bad_releases: vec![],
        }
    }

    pub fn live_of<'a>(
        &'a self,
        user: &'a UserId,
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = &'a LedgerHold> + 'a {
        self.holds
            .iter()
            .filter(move |h| h.live(now) && &h.user == user)
    }

    pub fn record(&mut self, decision: &Decision, now: DateTime<Utc>) {
        if let Decision::Granted {
            user_id,
            hold_id,
            seat_ids,
            expires_at,
            released,
            ..
        } = decision
        {
            if let Some(r) = released {
                match self
                    .holds
                    .iter_mut()
                    .find(|h| h.id == *r && h.live(now) && &h.user == user_id)
                {
                    Some(h) => h.released = true,
                    None => self.bad_releases.push(*r),
                }
            }
            self.holds.push(LedgerHold {
                id: *hold_id,
                user: user_id.clone(),
                seats: seat_ids.iter().copied().collect(),
                expires_at: *expires_at,
                released: false,
                from_snapshot: false,
                converted: false,
            });
        }
    }
}
