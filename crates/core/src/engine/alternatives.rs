//! Finding alternatives for a rejected request.
//!
//! The only part of the engine that searches rather than looks up: the nearest block of free
//! seats in one row, else the nearest free seats one by one, found on the per-row bit masks that
//! `seats.rs` keeps up to date. It is the most intricate code in the engine and only runs on a
//! rejection, so it lives on its own.

use super::DecisionEngine;
use super::seats::{FREE, NONE, RowInfo};
use crate::ids::SeatId;

/// In alternatives, a row away costs as much as this many seats sideways (rows are further apart
/// than seats).
const ROW_WEIGHT: u32 = 3;

impl DecisionEngine {
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
    pub(super) fn alternatives(&mut self, wanted: &[u32], own: u32) -> Vec<SeatId> {
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
