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

use crate::ids::{HoldId, RequestId, SeatId, UserId};
use crate::layout::SeatLayout;
use crate::model::SeatStatus;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::sync::Arc;

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

const FREE: u32 = 0;
const BLOCKED: u32 = u32::MAX;
const BOOKED: u32 = u32::MAX - 1;

#[derive(Debug)]
struct HoldSlot {
    hold_id: HoldId,
    user_id: UserId,
    seats: Vec<u32>,
    expires_at: DateTime<Utc>,
    live: bool,
}

/// Seat state of one show plus the rules to change it.
#[derive(Debug)]
pub struct DecisionEngine {
    layout: Arc<SeatLayout>,
    hold_ttl: Duration,
    /// Per dense seat index: FREE, BLOCKED, BOOKED, or `hold index + 1`.
    slots: Vec<u32>,
    holds: Vec<HoldSlot>,
    /// Each user's live hold on this show (at most one: a new one releases the old).
    user_hold: HashMap<UserId, u32>,
    free_count: usize,
    /// Earliest expiry among live holds; before it, no hold can have expired.
    next_expiry: Option<DateTime<Utc>>,
    /// Per seat: whether it changed in the current batch (for coalesced change lists).
    dirty: Vec<bool>,
    dirty_list: Vec<u32>,
}

impl DecisionEngine {
    /// Builds the engine from a layout and the stored state of the show.
    ///
    /// Snapshot entries that overlap (which the stores' constraints make impossible) are resolved
    /// conservatively: a seat stays taken by whoever claimed it first, so nothing is double-held.
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
        let mut engine = Self {
            layout,
            hold_ttl,
            slots,
            holds: Vec::with_capacity(snapshot.holds.len() + 64),
            user_hold: HashMap::with_capacity(snapshot.holds.len() + 64),
            free_count,
            next_expiry: None,
            dirty: vec![false; n],
            dirty_list: Vec::new(),
        };
        for seat in snapshot.booked {
            if let Some(i) = engine.layout.index_of(seat)
                && engine.slots[i] == FREE
            {
                engine.slots[i] = BOOKED;
                engine.free_count -= 1;
            }
        }
        for hold in snapshot.holds {
            let seats: Vec<u32> = hold
                .seat_ids
                .iter()
                .filter_map(|s| engine.layout.index_of(*s))
                .filter(|&i| engine.slots[i] == FREE)
                .map(|i| i as u32)
                .collect();
            engine.insert_hold(hold.hold_id, hold.user_id, seats, hold.expires_at);
        }
        engine
    }

    pub fn layout(&self) -> &SeatLayout {
        &self.layout
    }

    fn insert_hold(
        &mut self,
        hold_id: HoldId,
        user_id: UserId,
        seats: Vec<u32>,
        expires_at: DateTime<Utc>,
    ) -> u32 {
        let index = self.holds.len() as u32;
        for &s in &seats {
            debug_assert_eq!(self.slots[s as usize], FREE);
            self.slots[s as usize] = index + 1;
        }
        self.free_count -= seats.len();
        if let Some(previous) = self.user_hold.insert(user_id.clone(), index) {
            // Only reachable from a malformed snapshot (two live holds of one user): keep both
            // seat sets taken, but only the newest is "the" user's hold.
            let _ = previous;
        }
        self.next_expiry = Some(self.next_expiry.map_or(expires_at, |e| e.min(expires_at)));
        self.holds.push(HoldSlot {
            hold_id,
            user_id,
            seats,
            expires_at,
            live: true,
        });
        index
    }

    fn mark_dirty(&mut self, seat: u32) {
        if !self.dirty[seat as usize] {
            self.dirty[seat as usize] = true;
            self.dirty_list.push(seat);
        }
    }

    fn free_hold(&mut self, index: u32, track: bool) {
        let hold = &mut self.holds[index as usize];
        hold.live = false;
        let seats = std::mem::take(&mut hold.seats);
        if self.user_hold.get(&hold.user_id) == Some(&index) {
            self.user_hold.remove(&hold.user_id);
        }
        for &s in &seats {
            if self.slots[s as usize] == index + 1 {
                self.slots[s as usize] = FREE;
                self.free_count += 1;
                if track {
                    self.mark_dirty(s);
                }
            }
        }
        self.holds[index as usize].seats = seats;
    }

    /// Frees every hold that has expired by `now`. Cheap unless an expiry has actually passed.
    fn expire_until(&mut self, now: DateTime<Utc>) {
        let Some(next) = self.next_expiry else { return };
        if now < next {
            return;
        }
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
        self.user_hold
            .get(user)
            .map(|&i| self.holds[i as usize].hold_id)
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

    /// Decides one request as of `now`, updating the seat state.
    pub fn decide(&mut self, request: PendingRequest, now: DateTime<Utc>) -> Decision {
        let PendingRequest {
            request_id,
            user_id,
            seat_ids,
            expires_at,
        } = request;
        if expires_at <= now {
            return Decision::Expired { request_id };
        }
        self.expire_until(now);

        let mut indices: Vec<u32> = Vec::with_capacity(seat_ids.len());
        if seat_ids.is_empty() {
            return Decision::Invalid {
                request_id,
                reason: "no seats requested".into(),
            };
        }
        for seat in &seat_ids {
            let Some(i) = self.layout.index_of(*seat) else {
                return Decision::Invalid {
                    request_id,
                    reason: format!("seat {seat} is not in this show's layout"),
                };
            };
            if self.slots[i] == BLOCKED {
                return Decision::Invalid {
                    request_id,
                    reason: format!("seat {seat} cannot be booked"),
                };
            }
            if indices.contains(&(i as u32)) {
                return Decision::Invalid {
                    request_id,
                    reason: format!("seat {seat} is requested twice"),
                };
            }
            indices.push(i as u32);
        }

        // Seats of the user's own live hold are theirs to move into: the new hold replaces it.
        let previous = self.user_hold.get(&user_id).copied();
        let own = previous.map_or(u32::MAX, |p| p + 1);
        let unavailable: Vec<SeatId> = indices
            .iter()
            .zip(&seat_ids)
            .filter(|&(&i, _)| {
                let slot = self.slots[i as usize];
                slot != FREE && slot != own
            })
            .map(|(_, &s)| s)
            .collect();

        if !unavailable.is_empty() {
            let alternatives = self.alternatives(&indices, own);
            return Decision::Rejected {
                request_id,
                unavailable,
                alternatives,
            };
        }

        let released = previous.map(|p| {
            self.free_hold(p, true);
            self.holds[p as usize].hold_id
        });
        for &i in &indices {
            self.mark_dirty(i);
        }
        let hold_id = HoldId::for_request(request_id);
        let hold_expires_at = now + self.hold_ttl;
        self.insert_hold(hold_id, user_id.clone(), indices, hold_expires_at);
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
        seat_changes.sort_by_key(|c| c.seat_id);
        BatchOutcome {
            decisions,
            seat_changes,
        }
    }

    /// Free seats to offer instead of `wanted`: the same count, one adjacent block in one row if
    /// any exists (nearest first), else the nearest free seats one by one.
    fn alternatives(&self, wanted: &[u32], own: u32) -> Vec<SeatId> {
        let n = wanted.len();
        let usable = |slot: u32| slot == FREE || slot == own;
        let own_count = if own == u32::MAX {
            0
        } else {
            self.holds[(own - 1) as usize].seats.len()
        };
        if self.free_count + own_count < n {
            return Vec::new();
        }
        // Reference point: the average row position and seat number of what was asked for.
        let (row_sum, num_sum) = wanted.iter().fold((0u32, 0u32), |(r, c), &i| {
            (
                r + self.layout.row_position_of_index(i as usize) as u32,
                c + self.layout.seat_at(i as usize).number() as u32,
            )
        });
        // Distances in half-seat units so that the centre of an even block compares exactly.
        let ref_row2 = (2 * row_sum) / n as u32;
        let ref_num2 = (2 * num_sum) / n as u32;
        // A row away costs as much as this many seats sideways (rows are further apart than seats).
        const ROW_WEIGHT: u32 = 3;
        let distance2 = |row_pos: u32, num2: u32| {
            ROW_WEIGHT * row_pos.abs_diff(ref_row2 / 2) * 2 + num2.abs_diff(ref_num2)
        };

        let rows = self.layout.rows();
        let mut best: Option<(u32, usize)> = None; // (distance, first index of block)
        let mut row_start = 0usize;
        for (row_pos, row) in rows.iter().enumerate() {
            let len = row.seats as usize;
            if best
                .is_some_and(|(d, _)| ROW_WEIGHT * (row_pos as u32).abs_diff(ref_row2 / 2) * 2 > d)
            {
                row_start += len;
                continue;
            }
            let mut run = 0usize;
            for k in 0..len {
                let idx = row_start + k;
                if usable(self.slots[idx]) {
                    run += 1;
                } else {
                    run = 0;
                }
                if run >= n {
                    let first = idx + 1 - n;
                    // Centre of the block, doubled: first number + last number.
                    let centre2 = self.layout.seat_at(first).number() as u32
                        + self.layout.seat_at(idx).number() as u32;
                    let d = distance2(row_pos as u32, centre2);
                    if best.is_none_or(|(bd, _)| d < bd) {
                        best = Some((d, first));
                    }
                }
            }
            row_start += len;
        }
        if let Some((_, first)) = best {
            return (first..first + n).map(|i| self.layout.seat_at(i)).collect();
        }
        let mut candidates: Vec<(u32, usize)> = (0..self.slots.len())
            .filter(|&i| usable(self.slots[i]))
            .map(|i| {
                let num2 = 2 * self.layout.seat_at(i).number() as u32;
                (
                    distance2(self.layout.row_position_of_index(i) as u32, num2),
                    i,
                )
            })
            .collect();
        candidates.sort_unstable();
        let mut chosen: Vec<SeatId> = candidates
            .into_iter()
            .take(n)
            .map(|(_, i)| self.layout.seat_at(i))
            .collect();
        chosen.sort();
        chosen
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
}
