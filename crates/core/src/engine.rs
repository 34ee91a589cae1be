//! The per-show decision engine.
//!
//! Given a show's seat state and an ordered batch of hold requests, decide each request in order:
//! all of its seats or none of them, earlier requests win, a user's new hold releases their
//! previous live hold on the show, and a request that cannot be granted is told which seats were
//! taken and offered the nearest alternatives. Expiry is decided by comparing the `now` it is
//! given with each hold's `expires_at`: no timer, no sweeper needed for correctness.
//!
//! The engine keeps one `u32` slot per seat (dense layout index), so a single-seat decision is a
//! few array reads and writes; the expensive part of the system is persistence, not this.
//! Deciding allocates nothing beyond what the returned decision carries (a rejection even reuses
//! the request's seat vector for its `unavailable` list), and alternatives are found on per-row
//! bit masks of free seats, visiting only rows that have one, nearest first.
//! `benches/engine.rs` measures it; `tests/engine_properties.rs` checks it against a plain
//! reference model.

use crate::ids::{HoldId, RequestId, SeatId, UserId};
use crate::layout::SeatLayout;
use crate::model::SeatStatus;
use chrono::{DateTime, Duration, Utc};
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use uuid::Uuid;

/// A request waiting to be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRequest {
    pub request_id: RequestId,
    pub user_id: UserId,
    pub seat_ids: Vec<SeatId>,
    /// Deadline: a request still undecided at this instant ends EXPIRED.
    pub expires_at: DateTime<Utc>,
}

/// A hold that was live (HELD) when the snapshot was taken. It may have expired by time since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotHold {
    pub hold_id: HoldId,
    pub user_id: UserId,
    pub seat_ids: Vec<SeatId>,
    pub expires_at: DateTime<Utc>,
}

/// The stored seat state of one show, as loaded once per batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShowSnapshot {
    pub holds: Vec<SnapshotHold>,
    /// Seats sold or reserved by orders; never available.
    pub booked: Vec<SeatId>,
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Granted {
        request_id: RequestId,
        user_id: UserId,
        hold_id: HoldId,
        seat_ids: Vec<SeatId>,
        expires_at: DateTime<Utc>,
        /// The user's previous live hold on this show, released by this grant.
        released: Option<HoldId>,
    },
    Rejected {
        request_id: RequestId,
        /// The requested seats that were not available.
        unavailable: Vec<SeatId>,
        /// Same number of free seats, adjacent in one row where possible, nearest those asked for;
        /// empty when the show has fewer free seats than were asked for.
        alternatives: Vec<SeatId>,
    },
    /// Not decided before its deadline.
    Expired { request_id: RequestId },
    /// A request that should never have been accepted (unknown or blocked seat, duplicates, no
    /// seats). Validation at intake prevents these; the engine refuses them anyway because a
    /// queue message can come from anywhere.
    Invalid {
        request_id: RequestId,
        reason: String,
    },
}

impl Decision {
    pub fn request_id(&self) -> RequestId {
        match self {
            Self::Granted { request_id, .. }
            | Self::Rejected { request_id, .. }
            | Self::Expired { request_id }
            | Self::Invalid { request_id, .. } => *request_id,
        }
    }
}

/// A seat whose status differs after the batch from before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeatChange {
    pub seat_id: SeatId,
    pub status: SeatStatus,
}

/// The decisions of one batch, in request order, and the seats they changed (coalesced: each
/// changed seat once, with its final status).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub decisions: Vec<Decision>,
    pub seat_changes: Vec<SeatChange>,
}

/// The message a rejected request carries.
pub fn rejection_message(unavailable: &[SeatId]) -> String {
    let list: Vec<String> = unavailable.iter().map(ToString::to_string).collect();
    if list.len() == 1 {
        format!("Seat {} is no longer available", list[0])
    } else {
        format!("Seats {} are no longer available", list.join(", "))
    }
}

/// Slot values: FREE, BLOCKED, BOOKED, or `hold index + 1`.
const FREE: u32 = 0;
const BLOCKED: u32 = u32::MAX;
const BOOKED: u32 = u32::MAX - 1;
/// "None" for seat-list links, hold indices and user indices.
const NONE: u32 = u32::MAX;
/// In alternatives, a row away costs as much as this many seats sideways (rows are further apart
/// than seats).
const ROW_WEIGHT: u32 = 3;

/// FxHash-style hasher for user ids: one multiply per 8 bytes instead of SipHash's rounds. It is
/// seeded per engine, which makes precomputed collisions unlikely to carry over, but it is no
/// defence against a determined attacker; that is acceptable because user ids are the subjects
/// of authenticated tokens, not strings a client picks freely, and a show has few of them.
#[derive(Debug, Clone, Copy)]
struct UserHasher(u64);

const FX_K: u64 = 0xf135_7aea_2e62_a9c5;

impl UserHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_K);
    }
}

impl Hasher for UserHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.add(byte as u64);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits weak; the table indexes with them.
        let x = self.0;
        (x ^ (x >> 32)).wrapping_mul(FX_K) ^ (x >> 29)
    }
}

#[derive(Debug, Clone, Copy)]
struct UserHasherBuilder(u64);

impl BuildHasher for UserHasherBuilder {
    type Hasher = UserHasher;
    #[inline]
    fn build_hasher(&self) -> UserHasher {
        UserHasher(self.0)
    }
}

#[derive(Debug)]
struct HoldSlot {
    hold_id: HoldId,
    /// Index into `user_hold`, or NONE for the stand-in hold of a seat a malformed snapshot lists
    /// in several holds.
    user: u32,
    /// First seat of the hold; the rest are linked through `DecisionEngine::next_seat`.
    first_seat: u32,
    seat_count: u32,
    expires_at: DateTime<Utc>,
    live: bool,
}

#[derive(Debug, Clone, Copy)]
struct RowInfo {
    /// Dense index of the row's first seat (seat number 1).
    start: u32,
    len: u32,
}

/// Seat state of one show plus the rules to change it.
///
/// Internals are laid out so that deciding a request allocates nothing beyond what the returned
/// [`Decision`] carries: per-seat state lives in flat vectors indexed by the layout's dense seat
/// index, a hold's seats are linked through `next_seat` (a seat is in at most one live hold), user
/// ids are interned once, and per-decision scratch space is reused.
#[derive(Debug)]
pub struct DecisionEngine {
    layout: Arc<SeatLayout>,
    hold_ttl: Duration,
    /// Per dense seat index: FREE, BLOCKED, BOOKED, or `hold index + 1`.
    slots: Vec<u32>,
    /// Per seat: the next seat of the same hold, or NONE.
    next_seat: Vec<u32>,
    holds: Vec<HoldSlot>,
    /// Indices of dead holds, reused for new ones.
    dead_holds: Vec<u32>,
    /// User id -> user index (never removed: a user seen once is likely to come back).
    users: HashMap<UserId, u32, UserHasherBuilder>,
    /// Per user index: their live hold on this show, or NONE (a new one releases the old).
    user_hold: Vec<u32>,
    free_count: usize,
    /// Earliest expiry among live holds; before it, no hold can have expired.
    next_expiry: Option<DateTime<Utc>>,
    /// Per seat: whether it changed in the current batch (for coalesced change lists).
    dirty: Vec<bool>,
    dirty_list: Vec<u32>,
    rows: Vec<RowInfo>,
    /// Per row of at most 64 seats: bit `k` set iff seat number `k + 1` is FREE.
    row_free: Vec<u64>,
    /// Per row: how many of its seats are FREE.
    row_free_count: Vec<u32>,
    /// Bit set over rows: bit `r` set iff row `r` has a FREE seat.
    rows_with_free: Vec<u64>,
    /// Whether any row has more than 64 seats.
    has_long_rows: bool,
    /// Per longer row: the longest run of FREE seats, valid unless `row_run_stale`.
    row_run: Vec<u32>,
    row_run_stale: Vec<bool>,
    /// Scratch, while finding alternatives: per row, the seats of the requesting user's own hold
    /// (bits as in `row_free`; for longer rows just non-zero), and the bit set of those rows.
    own_bits: Vec<u64>,
    own_rows: Vec<u64>,
    /// Scratch: the bit set of rows worth searching (some FREE or own seat).
    search_rows: Vec<u64>,
    /// Scratch: the dense indices of the request being decided.
    indices: Vec<u32>,
    /// Scratch: per seat, the number of the last decision that asked for it (duplicate check).
    seen: Vec<u32>,
    epoch: u32,
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

    fn intern(&mut self, user: &UserId) -> u32 {
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

    fn insert_hold(
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
    fn mark_dirty(&mut self, seat: u32) {
        if !self.dirty[seat as usize] {
            self.dirty[seat as usize] = true;
            self.dirty_list.push(seat);
        }
    }

    fn free_hold(&mut self, index: u32, track: bool) {
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
    fn expire_until(&mut self, now: DateTime<Utc>) {
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
        let hold_expires_at = now + self.hold_ttl;
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

    /// Brings the cached longest free run of every longer row up to date.
    fn refresh_long_rows(&mut self) {
        for row in 0..self.rows.len() {
            let RowInfo { start, len } = self.rows[row];
            if len <= 64 || !self.row_run_stale[row] {
                continue;
            }
            let (mut best, mut run) = (0, 0);
            for &slot in &self.slots[start as usize..(start + len) as usize] {
                run = if slot == FREE { run + 1 } else { 0 };
                best = best.max(run);
            }
            self.row_run[row] = best;
            self.row_run_stale[row] = false;
        }
    }

    /// Marks (or unmarks) the seats of hold `own - 1` in `own_bits` and `own_rows`.
    fn mark_own_seats(&mut self, own: u32, mark: bool) {
        if own == FREE {
            return;
        }
        let mut s = self.holds[(own - 1) as usize].first_seat;
        while s != NONE {
            let row = self.layout.row_position_of_index(s as usize) as usize;
            let RowInfo { start, len } = self.rows[row];
            if len <= 64 {
                let bit = 1u64 << (s - start);
                if mark {
                    self.own_bits[row] |= bit;
                } else {
                    self.own_bits[row] &= !bit;
                }
            } else {
                self.own_bits[row] = u64::from(mark);
            }
            if mark {
                self.own_rows[row / 64] |= 1 << (row % 64);
            } else {
                self.own_rows[row / 64] &= !(1 << (row % 64));
            }
            s = self.next_seat[s as usize];
        }
    }

    /// Free seats to offer instead of `wanted`: the same count, one adjacent block in one row if
    /// any exists (nearest first), else the nearest free seats one by one. Seats of the user's own
    /// hold (`own`, FREE if none) count as free.
    ///
    /// Distance, in half-seat units so that the centre of an even block compares exactly:
    /// `ROW_WEIGHT * 2 * |row - ref row| + |2 * number - 2 * ref number|` against the average row
    /// and seat number of what was asked for; ties go to the lower dense index. Only rows with a
    /// usable seat are visited, outwards from the reference row, and the search stops as soon as
    /// a row is too far to beat what was found; within a row of at most 64 seats the usable seats
    /// are a bit mask, so the nearest block is a few shifts away instead of a scan.
    fn alternatives(&mut self, wanted: &[u32], own: u32) -> Vec<SeatId> {
        let n = wanted.len();
        let own_count = if own == FREE {
            0
        } else {
            self.holds[(own - 1) as usize].seat_count as usize
        };
        if self.free_count + own_count < n {
            return Vec::new();
        }
        let (row_sum, num_sum) = wanted.iter().fold((0u32, 0u32), |(r, c), &i| {
            (
                r + self.layout.row_position_of_index(i as usize) as u32,
                c + self.layout.seat_at(i as usize).number() as u32,
            )
        });
        let reference = Reference {
            row: ((2 * row_sum) / n as u32 / 2).min(self.rows.len() as u32 - 1) as usize,
            num2: (2 * num_sum) / n as u32,
        };
        if self.has_long_rows {
            self.refresh_long_rows();
        }
        self.mark_own_seats(own, true);
        let mut search_rows = std::mem::take(&mut self.search_rows);
        for (w, word) in search_rows.iter_mut().enumerate() {
            *word = self.rows_with_free[w] | self.own_rows[w];
        }

        let mut best: Option<(u32, u32)> = None; // (distance, first index of block)
        for row in Outward::new(&search_rows, reference.row) {
            let cost = reference.row_cost(row);
            if best.is_some_and(|(d, _)| cost > d) {
                break;
            }
            if let Some(key) = self.block_in_row(row, n as u32, own, cost, reference.num2)
                && best.is_none_or(|b| key < b)
            {
                best = Some(key);
            }
        }
        let chosen = if let Some((_, first)) = best {
            (first..first + n as u32)
                .map(|i| self.layout.seat_at(i as usize))
                .collect()
        } else {
            self.nearest_seats(n, own, reference, &search_rows)
        };
        self.search_rows = search_rows;
        self.mark_own_seats(own, false);
        chosen
    }

    /// The nearest block of `n` usable seats in one row, as `(distance, first index)`.
    #[inline]
    fn block_in_row(
        &self,
        row: usize,
        n: u32,
        own: u32,
        cost: u32,
        ref_num2: u32,
    ) -> Option<(u32, u32)> {
        let RowInfo { start, len } = self.rows[row];
        if len < n {
            return None;
        }
        // A block of seats k+1 ..= k+n has its centre, doubled, at 2k + n + 1.
        let key = |k: u32| (cost + (2 * k + n + 1).abs_diff(ref_num2), start + k);
        if len <= 64 {
            // Bit k of `starts`: seats k+1 ..= k+n are all usable.
            let mut starts = self.row_free[row] | self.own_bits[row];
            for _ in 1..n {
                starts &= starts >> 1;
            }
            if starts == 0 {
                return None;
            }
            // Distance falls with k up to the reference and rises after it: the best start is
            // the highest one at or before the reference or the lowest one after it.
            let upto = match (ref_num2 > n).then(|| (ref_num2 - n - 1) / 2) {
                None => 0,
                Some(k) if k >= 63 => u64::MAX,
                Some(k) => (2u64 << k) - 1,
            };
            let before = starts & upto;
            let after = starts & !upto;
            let a = (before != 0).then(|| key(63 - before.leading_zeros()));
            let b = (after != 0).then(|| key(after.trailing_zeros()));
            return match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        if self.own_bits[row] == 0 && self.row_run[row] < n {
            return None;
        }
        let mut best: Option<(u32, u32)> = None;
        let mut run = 0;
        for k in 0..len {
            let slot = self.slots[(start + k) as usize];
            run = if slot == FREE || slot == own {
                run + 1
            } else {
                0
            };
            if run >= n {
                let candidate = key(k + 1 - n);
                if best.is_none_or(|b| candidate < b) {
                    best = Some(candidate);
                }
            }
        }
        best
    }

    /// The `n` usable seats nearest the reference point, one by one (there are at least `n`).
    fn nearest_seats(
        &self,
        n: usize,
        own: u32,
        reference: Reference,
        search_rows: &[u64],
    ) -> Vec<SeatId> {
        let ref_num2 = reference.num2;
        let mut top: Vec<(u32, u32)> = Vec::with_capacity(n + 1); // (distance, index), ascending
        let offer = |top: &mut Vec<(u32, u32)>, key: (u32, u32)| {
            if top.len() < n || key < top[n - 1] {
                let at = top.partition_point(|&e| e < key);
                top.insert(at, key);
                top.truncate(n);
            }
        };
        for row in Outward::new(search_rows, reference.row) {
            let cost = reference.row_cost(row);
            if top.len() == n && cost > top[n - 1].0 {
                break;
            }
            let RowInfo { start, len } = self.rows[row];
            if len > 64 {
                for k in 0..len {
                    let slot = self.slots[(start + k) as usize];
                    if slot == FREE || slot == own {
                        offer(
                            &mut top,
                            (cost + (2 * (k + 1)).abs_diff(ref_num2), start + k),
                        );
                    }
                }
                continue;
            }
            // Walk the row's usable seats outwards from the reference number (nearest first on
            // each side) and stop once neither side can make the cut.
            let bits = self.row_free[row] | self.own_bits[row];
            let split = ref_num2 / 2; // seats k with 2(k + 1) <= ref_num2 are "left"
            let left_mask = if split >= 64 {
                u64::MAX
            } else {
                (1u64 << split) - 1
            };
            let (mut left, mut right) = (bits & left_mask, bits & !left_mask);
            let key = |k: u32| (cost + (2 * (k + 1)).abs_diff(ref_num2), start + k);
            loop {
                let l = (left != 0).then(|| 63 - left.leading_zeros());
                let r = (right != 0).then(|| right.trailing_zeros());
                let (k, from_left) = match (l, r) {
                    (None, None) => break,
                    (Some(l), None) => (l, true),
                    (None, Some(r)) => (r, false),
                    (Some(l), Some(r)) => {
                        if key(l) < key(r) {
                            (l, true)
                        } else {
                            (r, false)
                        }
                    }
                };
                if top.len() == n && key(k) >= top[n - 1] {
                    break;
                }
                offer(&mut top, key(k));
                if from_left {
                    left &= !(1u64 << k);
                } else {
                    right &= !(1u64 << k);
                }
            }
        }
        let mut chosen: Vec<SeatId> = top
            .into_iter()
            .map(|(_, i)| self.layout.seat_at(i as usize))
            .collect();
        chosen.sort_unstable();
        chosen
    }
}

/// The point alternatives are measured from: the average row position and (doubled) seat number
/// of the seats asked for.
#[derive(Debug, Clone, Copy)]
struct Reference {
    row: usize,
    num2: u32,
}

impl Reference {
    /// The distance a row adds: a row away costs as much as `ROW_WEIGHT` seats sideways.
    #[inline]
    fn row_cost(self, row: usize) -> u32 {
        ROW_WEIGHT * 2 * row.abs_diff(self.row) as u32
    }
}

/// The rows set in a bit set, in order of distance from `centre` (the lower row first on a tie).
struct Outward<'a> {
    bits: &'a [u64],
    centre: usize,
    below: Option<usize>,
    above: Option<usize>,
}

impl<'a> Outward<'a> {
    fn new(bits: &'a [u64], centre: usize) -> Self {
        Self {
            bits,
            centre,
            below: prev_set(bits, centre),
            above: next_set(bits, centre + 1),
        }
    }
}

impl Iterator for Outward<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        let take_below = match (self.below, self.above) {
            (None, None) => return None,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(b), Some(a)) => self.centre - b <= a - self.centre,
        };
        if take_below {
            let b = self.below?;
            self.below = b.checked_sub(1).and_then(|x| prev_set(self.bits, x));
            Some(b)
        } else {
            let a = self.above?;
            self.above = next_set(self.bits, a + 1);
            Some(a)
        }
    }
}

/// The highest set bit at or below `from`.
#[inline]
fn prev_set(bits: &[u64], from: usize) -> Option<usize> {
    let mut w = from / 64;
    let mut word = *bits.get(w)? & (u64::MAX >> (63 - from % 64));
    loop {
        if word != 0 {
            return Some(w * 64 + 63 - word.leading_zeros() as usize);
        }
        w = w.checked_sub(1)?;
        word = bits[w];
    }
}

/// The lowest set bit at or above `from`.
#[inline]
fn next_set(bits: &[u64], from: usize) -> Option<usize> {
    let mut w = from / 64;
    let mut word = *bits.get(w)? & (u64::MAX << (from % 64));
    loop {
        if word != 0 {
            return Some(w * 64 + word.trailing_zeros() as usize);
        }
        w += 1;
        word = *bits.get(w)?;
    }
}

fn slot_status(slot: u32) -> SeatStatus {
    match slot {
        FREE => SeatStatus::Available,
        BLOCKED => SeatStatus::Blocked,
        BOOKED => SeatStatus::Booked,
        _ => SeatStatus::Held,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::LayoutSpec;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn seats(list: &[&str]) -> Vec<SeatId> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn user(name: &str) -> UserId {
        name.parse().unwrap()
    }

    fn req(u: &str, s: &[&str]) -> PendingRequest {
        PendingRequest {
            request_id: RequestId::new_random(),
            user_id: user(u),
            seat_ids: seats(s),
            expires_at: t0() + Duration::minutes(2),
        }
    }

    fn engine(rows: u16, per_row: u16) -> DecisionEngine {
        DecisionEngine::new(
            Arc::new(SeatLayout::rectangular(rows, per_row, 1000)),
            ShowSnapshot::default(),
            Duration::minutes(5),
        )
    }

    #[test]
    fn earlier_request_wins_and_loser_gets_alternatives() {
        let mut e = engine(3, 10);
        let out = e.decide_batch(
            vec![req("alice", &["B5", "B6"]), req("bob", &["B6", "B7"])],
            t0(),
        );
        assert!(
            matches!(&out.decisions[0], Decision::Granted { seat_ids, .. } if *seat_ids == seats(&["B5", "B6"]))
        );
        match &out.decisions[1] {
            Decision::Rejected {
                unavailable,
                alternatives,
                ..
            } => {
                assert_eq!(unavailable, &seats(&["B6"]));
                // Same row, adjacent, nearest to B6-B7: B7-B8.
                assert_eq!(alternatives, &seats(&["B7", "B8"]));
            }
            other => panic!("expected rejection, got {other:?}"),
        }
        assert_eq!(out.seat_changes.len(), 2);
        assert!(
            out.seat_changes
                .iter()
                .all(|c| c.status == SeatStatus::Held)
        );
    }

    #[test]
    fn multi_seat_request_is_all_or_nothing() {
        let mut e = engine(1, 5);
        e.decide(req("a", &["A3"]), t0());
        let d = e.decide(req("b", &["A2", "A3", "A4"]), t0());
        assert!(matches!(d, Decision::Rejected { .. }));
        assert_eq!(
            e.seat_status(seats(&["A2"])[0], t0()),
            Some(SeatStatus::Available)
        );
        assert_eq!(
            e.seat_status(seats(&["A4"])[0], t0()),
            Some(SeatStatus::Available)
        );
    }

    #[test]
    fn new_hold_releases_the_users_previous_hold() {
        let mut e = engine(1, 6);
        let first = e.decide(req("a", &["A1", "A2"]), t0());
        let Decision::Granted { hold_id: h1, .. } = first else {
            panic!()
        };
        let out = e.decide_batch(vec![req("a", &["A2", "A3"])], t0());
        let Decision::Granted { released, .. } = &out.decisions[0] else {
            panic!("{:?}", out.decisions)
        };
        assert_eq!(*released, Some(h1));
        assert_eq!(
            e.seat_status(seats(&["A1"])[0], t0()),
            Some(SeatStatus::Available)
        );
        // A1 freed, A3 taken; A2 stays held (coalesced: not reported as changed... it is dirty
        // but its final status is HELD).
        let a1 = out
            .seat_changes
            .iter()
            .find(|c| c.seat_id == seats(&["A1"])[0])
            .unwrap();
        assert_eq!(a1.status, SeatStatus::Available);
    }

    #[test]
    fn expired_holds_free_their_seats_by_time() {
        let mut e = engine(1, 2);
        e.decide(req("a", &["A1"]), t0());
        let mut r = req("b", &["A1"]);
        r.expires_at = t0() + Duration::hours(1);
        assert!(matches!(
            e.decide(r.clone(), t0() + Duration::minutes(4)),
            Decision::Rejected { .. }
        ));
        r.request_id = RequestId::new_random();
        assert!(matches!(
            e.decide(r, t0() + Duration::minutes(5)),
            Decision::Granted { .. }
        ));
    }

    #[test]
    fn requests_past_their_deadline_expire() {
        let mut e = engine(1, 2);
        let d = e.decide(req("a", &["A1"]), t0() + Duration::minutes(3));
        assert!(matches!(d, Decision::Expired { .. }));
        assert_eq!(e.available_count(t0()), 2);
    }

    #[test]
    fn invalid_requests_are_refused_without_changing_state() {
        let mut spec = LayoutSpec::from(SeatLayout::rectangular(1, 3, 100));
        spec.blocked = seats(&["A3"]);
        let mut e = DecisionEngine::new(
            Arc::new(SeatLayout::new(spec).unwrap()),
            ShowSnapshot::default(),
            Duration::minutes(5),
        );
        for bad in [&["A3"][..], &["A9"], &["A1", "A1"], &[]] {
            assert!(
                matches!(e.decide(req("a", bad), t0()), Decision::Invalid { .. }),
                "{bad:?}"
            );
        }
        assert_eq!(e.available_count(t0()), 2);
    }

    #[test]
    fn alternatives_fall_back_to_scattered_seats_and_to_none() {
        let mut e = engine(2, 3);
        // Take A2 and B2: no row has 2 adjacent... A1 A3 B1 B3 free, none adjacent.
        e.decide(req("x", &["A2"]), t0());
        e.decide(req("y", &["B2"]), t0());
        let Decision::Rejected { alternatives, .. } = e.decide(req("z", &["A2", "A3"]), t0())
        else {
            panic!()
        };
        assert_eq!(alternatives.len(), 2);
        assert!(
            alternatives
                .iter()
                .all(|s| e.seat_status(*s, t0()) == Some(SeatStatus::Available))
        );
        let Decision::Rejected { alternatives, .. } =
            e.decide(req("w", &["A1", "A2", "A3", "B1", "B3"]), t0())
        else {
            panic!()
        };
        assert_eq!(alternatives.len(), 0, "only 4 seats free, 5 wanted");
    }

    #[test]
    fn snapshot_state_is_respected() {
        let layout = Arc::new(SeatLayout::rectangular(1, 4, 100));
        let snapshot = ShowSnapshot {
            holds: vec![SnapshotHold {
                hold_id: HoldId::new_random(),
                user_id: user("a"),
                seat_ids: seats(&["A1"]),
                expires_at: t0() + Duration::minutes(1),
            }],
            booked: seats(&["A2"]),
        };
        let mut e = DecisionEngine::new(layout, snapshot, Duration::minutes(5));
        assert!(matches!(
            e.decide(req("b", &["A1"]), t0()),
            Decision::Rejected { .. }
        ));
        assert!(matches!(
            e.decide(req("b", &["A2"]), t0()),
            Decision::Rejected { .. }
        ));
        assert_eq!(
            e.seat_status(seats(&["A2"])[0], t0()),
            Some(SeatStatus::Booked)
        );
        assert!(e.live_hold_of(&user("a"), t0()).is_some());
        assert!(
            e.live_hold_of(&user("a"), t0() + Duration::minutes(1))
                .is_none()
        );
    }

    #[test]
    fn alternatives_never_offer_blocked_seats() {
        // Regression: "no own hold" used to be encoded as u32::MAX, the BLOCKED marker, so for a
        // user without a hold blocked seats counted as free when looking for alternatives.
        let mut spec = LayoutSpec::from(SeatLayout::rectangular(1, 3, 100));
        spec.blocked = seats(&["A2"]);
        let mut e = DecisionEngine::new(
            Arc::new(SeatLayout::new(spec).unwrap()),
            ShowSnapshot {
                holds: vec![],
                booked: seats(&["A3"]),
            },
            Duration::minutes(5),
        );
        let Decision::Rejected { alternatives, .. } = e.decide(req("a", &["A3"]), t0()) else {
            panic!()
        };
        assert_eq!(alternatives, seats(&["A1"]), "A2 is nearer but blocked");
    }

    #[test]
    fn a_seat_listed_twice_in_a_snapshot_hold_is_counted_once() {
        // Regression: the seat was taken twice, so the free count stayed one too low for good.
        let snapshot = ShowSnapshot {
            holds: vec![SnapshotHold {
                hold_id: HoldId::new_random(),
                user_id: user("a"),
                seat_ids: seats(&["A1", "A1"]),
                expires_at: t0() + Duration::minutes(1),
            }],
            booked: vec![],
        };
        let layout = Arc::new(SeatLayout::rectangular(1, 2, 100));
        let mut e = DecisionEngine::new(layout, snapshot, Duration::minutes(5));
        assert_eq!(e.available_count(t0()), 1);
        assert_eq!(e.available_count(t0() + Duration::minutes(1)), 2);
    }

    #[test]
    fn a_seat_in_two_snapshot_holds_stays_taken_until_the_last_one_ends() {
        // Regression: the first claimant kept the seat and freed it when it expired, although
        // the second claim was still live.
        let hold = |u: &str, minutes: i64| SnapshotHold {
            hold_id: HoldId::new_random(),
            user_id: user(u),
            seat_ids: seats(&["A1", if u == "a" { "A2" } else { "A3" }]),
            expires_at: t0() + Duration::minutes(minutes),
        };
        let layout = Arc::new(SeatLayout::rectangular(1, 4, 100));
        let snapshot = ShowSnapshot {
            holds: vec![hold("a", 1), hold("b", 3)],
            booked: vec![],
        };
        let mut e = DecisionEngine::new(layout, snapshot, Duration::minutes(5));
        let at = t0() + Duration::minutes(2);
        assert!(matches!(
            e.decide(req_at("c", &["A1"], at), at),
            Decision::Rejected { .. }
        ));
        // Neither claimant can take it over either, nor free it by moving on.
        assert!(matches!(
            e.decide(req_at("b", &["A1"], at), at),
            Decision::Rejected { .. }
        ));
        assert!(matches!(
            e.decide(req_at("b", &["A4"], at), at),
            Decision::Granted { .. }
        ));
        assert_eq!(e.seat_status(seats(&["A1"])[0], at), Some(SeatStatus::Held));
        let later = t0() + Duration::minutes(3);
        assert!(matches!(
            e.decide(req_at("c", &["A1"], later), later),
            Decision::Granted { .. }
        ));
    }

    fn req_at(u: &str, s: &[&str], now: DateTime<Utc>) -> PendingRequest {
        PendingRequest {
            expires_at: now + Duration::minutes(2),
            ..req(u, s)
        }
    }
}
