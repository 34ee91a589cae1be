//! The seat state of one show and the bookkeeping that keeps it consistent.
//!
//! This is the engine's data model: the slot constants, the [`DecisionEngine`] struct with its
//! flat per-seat and per-row vectors, its construction from a [`ShowSnapshot`], and the small
//! operations every other part of the engine builds on (setting a slot while keeping the row
//! bit masks in step, interning users, inserting and freeing holds, expiring holds by time), plus
//! the public read accessors. Slots, holds and row masks change only through the functions here
//! (the other files write nothing but their own scratch space and caches), so the invariants
//! that tie them together (free counts, row masks, hold links) are kept in one place.

use super::ShowSnapshot;
use super::hasher::UserHasherBuilder;
use crate::ids::{HoldId, SeatId, UserId};
use crate::layout::SeatLayout;
use crate::model::SeatStatus;
use chrono::{DateTime, Duration, Utc};
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::Arc;
use uuid::Uuid;

/// Slot values: FREE, BLOCKED, BOOKED, or `hold index + 1`.
pub(super) const FREE: u32 = 0;
pub(super) const BLOCKED: u32 = u32::MAX;
const BOOKED: u32 = u32::MAX - 1;
/// "None" for seat-list links, hold indices and user indices.
pub(super) const NONE: u32 = u32::MAX;

#[derive(Debug)]
pub(super) struct HoldSlot {
    pub(super) hold_id: HoldId,
    /// Index into `user_hold`, or NONE for the stand-in hold of a seat a malformed snapshot lists
    /// in several holds.
    user: u32,
    /// First seat of the hold; the rest are linked through `DecisionEngine::next_seat`.
    pub(super) first_seat: u32,
    pub(super) seat_count: u32,
    pub(super) expires_at: DateTime<Utc>,
    live: bool,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct RowInfo {
    /// Dense index of the row's first seat (seat number 1).
    pub(super) start: u32,
    pub(super) len: u32,
}

/// Seat state of one show plus the rules to change it.
///
/// Internals are laid out so that deciding a request allocates nothing beyond what the returned
/// [`Decision`] carries: per-seat state lives in flat vectors indexed by the layout's dense seat
/// index, a hold's seats are linked through `next_seat` (a seat is in at most one live hold), user
/// ids are interned once, and per-decision scratch space is reused.
///
/// [`Decision`]: super::Decision
#[derive(Debug)]
pub struct DecisionEngine {
    pub(super) layout: Arc<SeatLayout>,
    pub(super) hold_ttl: Duration,
    /// Per dense seat index: FREE, BLOCKED, BOOKED, or `hold index + 1`.
    pub(super) slots: Vec<u32>,
    /// Per seat: the next seat of the same hold, or NONE.
    pub(super) next_seat: Vec<u32>,
    pub(super) holds: Vec<HoldSlot>,
    /// Indices of dead holds, reused for new ones.
    dead_holds: Vec<u32>,
    /// User id -> user index (never removed: a user seen once is likely to come back).
    pub(super) users: HashMap<UserId, u32, UserHasherBuilder>,
    /// Per user index: their live hold on this show, or NONE (a new one releases the old).
    pub(super) user_hold: Vec<u32>,
    pub(super) free_count: usize,
    /// Earliest expiry among live holds; before it, no hold can have expired.
    next_expiry: Option<DateTime<Utc>>,
    /// Per seat: whether it changed in the current batch (for coalesced change lists).
    pub(super) dirty: Vec<bool>,
    pub(super) dirty_list: Vec<u32>,
    pub(super) rows: Vec<RowInfo>,
    /// Per row of at most 64 seats: bit `k` set iff seat number `k + 1` is FREE.
    pub(super) row_free: Vec<u64>,
    /// Per row: how many of its seats are FREE.
    row_free_count: Vec<u32>,
    /// Bit set over rows: bit `r` set iff row `r` has a FREE seat.
    pub(super) rows_with_free: Vec<u64>,
    /// Whether any row has more than 64 seats.
    pub(super) has_long_rows: bool,
    /// Per longer row: the longest run of FREE seats, valid unless `row_run_stale`.
    pub(super) row_run: Vec<u32>,
    pub(super) row_run_stale: Vec<bool>,
    /// Scratch, while finding alternatives: per row, the seats of the requesting user's own hold
    /// (bits as in `row_free`; for longer rows just non-zero), and the bit set of those rows.
    pub(super) own_bits: Vec<u64>,
    pub(super) own_rows: Vec<u64>,
    /// Scratch: the bit set of rows worth searching (some FREE or own seat).
    pub(super) search_rows: Vec<u64>,
    /// Scratch: the dense indices of the request being decided.
    pub(super) indices: Vec<u32>,
    /// Scratch: per seat, the number of the last decision that asked for it (duplicate check).
    pub(super) seen: Vec<u32>,
    pub(super) epoch: u32,
}

impl DecisionEngine {
    /// Builds the engine from a layout and the stored state of the show.
    ///
    /// Snapshot entries that overlap (which the stores' constraints make impossible) are resolved
    /// conservatively: a booked seat stays booked, and a seat listed in several holds stays taken
    /// until the last of them expires, whichever is released first, so nothing is double-held.
    pub fn new(layout: Arc<SeatLayout>, snapshot: ShowSnapshot, hold_ttl: Duration) -> Self {
        let n = layout.len();
        let mut slots = vec![FREE; n];
        let mut free_count = 0;
        for (i, slot) in slots.iter_mut().enumerate() {
            if layout.is_blocked_index(i) {
                *slot = BLOCKED;
            } else {
                free_count += 1;
            }
        }
        let mut rows = Vec::with_capacity(layout.rows().len());
        let mut start = 0u32;
        for row in layout.rows() {
            rows.push(RowInfo {
                start,
                len: row.seats as u32,
            });
            start += row.seats as u32;
        }
        let seed = RandomState::new().hash_one(0x5ea7_b00c_u64);
        let mut engine = Self {
            layout,
            hold_ttl,
            slots,
            next_seat: vec![NONE; n],
            holds: Vec::with_capacity(snapshot.holds.len() + 64),
            dead_holds: Vec::new(),
            users: HashMap::with_capacity_and_hasher(
                snapshot.holds.len() + 64,
                UserHasherBuilder(seed),
            ),
            user_hold: Vec::with_capacity(snapshot.holds.len() + 64),
            free_count,
            next_expiry: None,
            dirty: vec![false; n],
            dirty_list: Vec::new(),
            row_free: vec![0; rows.len()],
            row_free_count: vec![0; rows.len()],
            rows_with_free: vec![0; rows.len().div_ceil(64)],
            has_long_rows: rows.iter().any(|r| r.len > 64),
            row_run: vec![0; rows.len()],
            row_run_stale: vec![true; rows.len()],
            own_bits: vec![0; rows.len()],
            own_rows: vec![0; rows.len().div_ceil(64)],
            search_rows: vec![0; rows.len().div_ceil(64)],
            rows,
            indices: Vec::new(),
            seen: vec![0; n],
            epoch: 0,
        };
        for (row, info) in engine.rows.iter().enumerate() {
            for k in 0..info.len {
                if engine.slots[(info.start + k) as usize] == FREE {
                    engine.row_free_count[row] += 1;
                    if info.len <= 64 {
                        engine.row_free[row] |= 1 << k;
                    }
                }
            }
            if engine.row_free_count[row] > 0 {
                engine.rows_with_free[row / 64] |= 1 << (row % 64);
            }
        }
        for seat in snapshot.booked {
            if let Some(i) = engine.layout.index_of(seat)
                && engine.slots[i] == FREE
            {
                engine.set_slot(i, BOOKED);
                engine.free_count -= 1;
            }
        }
        // A store never lists a seat in two live holds, but if a snapshot does, no single claimant
        // may free it (the claimant that expires or is released first would hand the seat out
        // while another claim still stands). Such a seat goes to an ownerless hold that lasts
        // until the last claim expires; the claimants keep only their uncontested seats.
        let mut claims: Vec<u8> = vec![0; n];
        let claimed: Vec<Vec<u32>> = snapshot
            .holds
            .iter()
            .map(|hold| {
                let mut seats: Vec<u32> = hold
                    .seat_ids
                    .iter()
                    .filter_map(|s| engine.layout.index_of(*s))
                    .filter(|&i| engine.slots[i] == FREE)
                    .map(|i| i as u32)
                    .collect();
                seats.sort_unstable();
                seats.dedup();
                for &i in &seats {
                    claims[i as usize] = claims[i as usize].saturating_add(1);
                }
                seats
            })
            .collect();
        let mut contested: BTreeMap<u32, DateTime<Utc>> = BTreeMap::new();
        for (hold, mut seats) in snapshot.holds.into_iter().zip(claimed) {
            seats.retain(|&i| {
                if claims[i as usize] == 1 {
                    return true;
                }
                let until = contested.entry(i).or_insert(hold.expires_at);
                *until = (*until).max(hold.expires_at);
                false
            });
            // A malformed snapshot can list two live holds of one user: both keep their seats
            // taken, but only the later one is "the" user's hold.
            let user = engine.intern(&hold.user_id);
            engine.insert_hold(hold.hold_id, user, &seats, hold.expires_at);
        }
        for (i, until) in contested {
            engine.insert_hold(HoldId::from_uuid(Uuid::nil()), NONE, &[i], until);
        }
        engine
    }

    pub fn layout(&self) -> &SeatLayout {
        &self.layout
    }

    #[inline]
    fn set_slot(&mut self, seat: usize, value: u32) {
        let was_free = std::mem::replace(&mut self.slots[seat], value) == FREE;
        let is_free = value == FREE;
        if was_free == is_free {
            return;
        }
        let row = self.layout.row_position_of_index(seat) as usize;
        let RowInfo { start, len } = self.rows[row];
        let (word, row_bit) = (row / 64, 1u64 << (row % 64));
        if is_free {
            self.row_free_count[row] += 1;
            self.rows_with_free[word] |= row_bit;
        } else {
            self.row_free_count[row] -= 1;
            if self.row_free_count[row] == 0 {
                self.rows_with_free[word] &= !row_bit;
            }
        }
        if len <= 64 {
            let bit = 1u64 << (seat as u32 - start);
            if is_free {
                self.row_free[row] |= bit;
            } else {
                self.row_free[row] &= !bit;
            }
        } else {
            self.row_run_stale[row] = true;
        }
    }

    pub(super) fn intern(&mut self, user: &UserId) -> u32 {
        if let Some(&u) = self.users.get(user) {
            return u;
        }
        let u = self.user_hold.len() as u32;
        self.user_hold.push(NONE);
        self.users.insert(user.clone(), u);
        u
    }

    /// The live hold (index) of a user, as far as expiry has been applied.
    #[inline]
    fn hold_of(&self, user: &UserId) -> Option<u32> {
        let u = *self.users.get(user)?;
        let h = self.user_hold[u as usize];
        (h != NONE).then_some(h)
    }

    pub(super) fn insert_hold(
        &mut self,
        hold_id: HoldId,
        user: u32,
        seats: &[u32],
        expires_at: DateTime<Utc>,
    ) -> u32 {
        let slot = HoldSlot {
            hold_id,
            user,
            first_seat: NONE,
            seat_count: seats.len() as u32,
            expires_at,
            live: true,
        };
        let index = match self.dead_holds.pop() {
            Some(index) => {
                self.holds[index as usize] = slot;
                index
            }
            None => {
                self.holds.push(slot);
                (self.holds.len() - 1) as u32
            }
        };
        let mut first = NONE;
        for &s in seats {
            debug_assert_eq!(self.slots[s as usize], FREE);
            self.set_slot(s as usize, index + 1);
            self.next_seat[s as usize] = first;
            first = s;
        }
        self.holds[index as usize].first_seat = first;
        self.free_count -= seats.len();
        if user != NONE {
            self.user_hold[user as usize] = index;
        }
        self.next_expiry = Some(self.next_expiry.map_or(expires_at, |e| e.min(expires_at)));
        index
    }

    #[inline]
    pub(super) fn mark_dirty(&mut self, seat: u32) {
        if !self.dirty[seat as usize] {
            self.dirty[seat as usize] = true;
            self.dirty_list.push(seat);
        }
    }

    pub(super) fn free_hold(&mut self, index: u32, track: bool) {
        let hold = &mut self.holds[index as usize];
        hold.live = false;
        hold.seat_count = 0;
        let mut s = std::mem::replace(&mut hold.first_seat, NONE);
        let user = hold.user;
        if user != NONE && self.user_hold[user as usize] == index {
            self.user_hold[user as usize] = NONE;
        }
        while s != NONE {
            let next = std::mem::replace(&mut self.next_seat[s as usize], NONE);
            if self.slots[s as usize] == index + 1 {
                self.set_slot(s as usize, FREE);
                self.free_count += 1;
                if track {
                    self.mark_dirty(s);
                }
            }
            s = next;
        }
        self.dead_holds.push(index);
    }

    /// Frees every hold that has expired by `now`. Cheap unless an expiry has actually passed.
    #[inline]
    pub(super) fn expire_until(&mut self, now: DateTime<Utc>) {
        if self.next_expiry.is_some_and(|next| now >= next) {
            self.expire_holds(now);
        }
    }

    #[cold]
    fn expire_holds(&mut self, now: DateTime<Utc>) {
        let mut new_next: Option<DateTime<Utc>> = None;
        for i in 0..self.holds.len() {
            let h = &self.holds[i];
            if !h.live {
                continue;
            }
            if h.expires_at <= now {
                // Expired seats already read AVAILABLE to every reader (expiry is by time), so
                // they are not reported as a change of this batch.
                self.free_hold(i as u32, false);
            } else {
                new_next = Some(new_next.map_or(h.expires_at, |e| e.min(h.expires_at)));
            }
        }
        self.next_expiry = new_next;
    }

    /// The live hold a user has on this show as of `now`.
    pub fn live_hold_of(&mut self, user: &UserId, now: DateTime<Utc>) -> Option<HoldId> {
        self.expire_until(now);
        self.hold_of(user).map(|i| self.holds[i as usize].hold_id)
    }

    /// Status of one seat as of `now`.
    pub fn seat_status(&mut self, seat: SeatId, now: DateTime<Utc>) -> Option<SeatStatus> {
        self.expire_until(now);
        let i = self.layout.index_of(seat)?;
        Some(slot_status(self.slots[i]))
    }

    /// Number of seats that can be held as of `now`.
    pub fn available_count(&mut self, now: DateTime<Utc>) -> usize {
        self.expire_until(now);
        self.free_count
    }
}

pub(super) fn slot_status(slot: u32) -> SeatStatus {
    match slot {
        FREE => SeatStatus::Available,
        BLOCKED => SeatStatus::Blocked,
        BOOKED => SeatStatus::Booked,
        _ => SeatStatus::Held,
    }
}
