//! Deciding requests: the rules that turn a request into a [`Decision`].
//!
//! This is the engine's reason to exist, kept apart from the state it works on (`seats.rs`) and
//! from the search for alternatives (`alternatives.rs`) so that the rules read in one place:
//! validate the request, all of its seats or none, a user's new hold replaces their old one
//! (without restarting the clock of the basket it replaces), and a batch reports each changed
//! seat once.

use super::seats::{BLOCKED, FREE, NONE, slot_status};
use super::{BatchOutcome, Decision, DecisionEngine, PendingRequest, SeatChange};
use crate::ids::{HoldId, SeatId};
use chrono::{DateTime, Utc};

impl DecisionEngine {
    /// Checks the requested seats and leaves their dense indices in `self.indices`.
    fn validate(&mut self, seat_ids: &[SeatId]) -> Result<(), String> {
        if seat_ids.is_empty() {
            return Err("no seats requested".into());
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.seen.fill(0);
            self.epoch = 1;
        }
        self.indices.clear();
        for seat in seat_ids {
            let Some(i) = self.layout.index_of(*seat) else {
                return Err(format!("seat {seat} is not in this show's layout"));
            };
            if self.slots[i] == BLOCKED {
                return Err(format!("seat {seat} cannot be booked"));
            }
            if self.seen[i] == self.epoch {
                return Err(format!("seat {seat} is requested twice"));
            }
            self.seen[i] = self.epoch;
            self.indices.push(i as u32);
        }
        Ok(())
    }

    /// Decides one request as of `now`, updating the seat state.
    pub fn decide(&mut self, request: PendingRequest, now: DateTime<Utc>) -> Decision {
        let PendingRequest {
            request_id,
            user_id,
            mut seat_ids,
            expires_at,
        } = request;
        if expires_at <= now {
            return Decision::Expired { request_id };
        }
        self.expire_until(now);
        if let Err(reason) = self.validate(&seat_ids) {
            return Decision::Invalid { request_id, reason };
        }
        let indices = std::mem::take(&mut self.indices);

        // Seats of the user's own live hold are theirs to move into: the new hold replaces it.
        let user = self.users.get(&user_id).copied();
        let previous = user
            .map(|u| self.user_hold[u as usize])
            .filter(|&h| h != NONE);
        // FREE when the user has no live hold: never `u32::MAX`, which is BLOCKED.
        let own = previous.map_or(FREE, |p| p + 1);
        let usable = |slot: u32| slot == FREE || slot == own;

        if !indices.iter().all(|&i| usable(self.slots[i as usize])) {
            let alternatives = self.alternatives(&indices, own);
            // The request's own vector becomes the list of unavailable seats (in request order).
            if seat_ids.len() > 1 {
                let mut kept = 0;
                for k in 0..seat_ids.len() {
                    if !usable(self.slots[indices[k] as usize]) {
                        seat_ids[kept] = seat_ids[k];
                        kept += 1;
                    }
                }
                seat_ids.truncate(kept);
            }
            self.indices = indices;
            return Decision::Rejected {
                request_id,
                unavailable: seat_ids,
                alternatives,
            };
        }

        // The basket's clock does not restart: a new hold that replaces the user's live hold on
        // this show ends when that hold would have, whichever seats it keeps. Otherwise
        // re-asking for one's own seats every few minutes, or swapping to another seat and back
        // ({A1}, then {Z9}, then {A1}), would keep them from everyone else forever; this way a
        // user holds seats of a show at most one hold TTL without a break, however they re-ask.
        // The clock starts afresh only once they hold nothing there (the hold ended, was
        // released or became an order), and the seats went back to whoever asked first.
        let mut hold_expires_at = now + self.hold_ttl;
        if let Some(p) = previous {
            hold_expires_at = hold_expires_at.min(self.holds[p as usize].expires_at);
        }
        let released = previous.map(|p| {
            let id = self.holds[p as usize].hold_id;
            self.free_hold(p, true);
            id
        });
        for &i in &indices {
            self.mark_dirty(i);
        }
        let user = match user {
            Some(u) => u,
            None => self.intern(&user_id),
        };
        let hold_id = HoldId::for_request(request_id);
        self.insert_hold(hold_id, user, &indices, hold_expires_at);
        self.indices = indices;
        Decision::Granted {
            request_id,
            user_id,
            hold_id,
            seat_ids,
            expires_at: hold_expires_at,
            released,
        }
    }

    /// Decides a batch in order and reports the seats whose status changed.
    pub fn decide_batch(
        &mut self,
        requests: Vec<PendingRequest>,
        now: DateTime<Utc>,
    ) -> BatchOutcome {
        let decisions = requests.into_iter().map(|r| self.decide(r, now)).collect();
        let mut seat_changes = Vec::with_capacity(self.dirty_list.len());
        for &i in &self.dirty_list {
            self.dirty[i as usize] = false;
            seat_changes.push(SeatChange {
                seat_id: self.layout.seat_at(i as usize),
                status: slot_status(self.slots[i as usize]),
            });
        }
        self.dirty_list.clear();
        seat_changes.sort_unstable_by_key(|c| c.seat_id);
        BatchOutcome {
            decisions,
            seat_changes,
        }
    }
}
