//! Seat layouts: rows of numbered seats, price categories and blocked seats.
//!
//! A [`SeatLayout`] is validated when it is built and carries a dense index (`seat → 0..len`)
//! so that the decision engine can keep per-seat state in a flat vector.

use crate::ids::SeatId;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// A price category (e.g. PREMIUM at 18.00 EUR).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Category {
    pub code: String,
    pub name: String,
    /// Price per seat in the currency's minor unit (cents); money is never a float.
    pub price_cents: i64,
    pub currency: String,
}

/// One row: seats numbered `1..=seats`, all of one category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RowSpec {
    pub row: String,
    #[schema(minimum = 1, maximum = 999)]
    pub seats: u16,
    pub category: String,
}

/// The wire/storage form of a layout, before validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LayoutSpec {
    pub categories: Vec<Category>,
    pub rows: Vec<RowSpec>,
    #[serde(default)]
    pub blocked: Vec<SeatId>,
}

/// Why a layout was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("row label {0:?} is not one or two letters")]
    BadRowLabel(String),
    #[error("row {0} appears twice")]
    DuplicateRow(String),
    #[error("row {0} must have 1 to 999 seats")]
    BadSeatCount(String),
    #[error("row {row} uses unknown category {category:?}")]
    UnknownCategory { row: String, category: String },
    #[error("category {0:?} is defined twice or has a negative price")]
    BadCategory(String),
    #[error("blocked seat {0} is not in the layout")]
    BlockedSeatOutsideLayout(SeatId),
    #[error("a layout needs at least one row")]
    Empty,
}

/// A validated seat layout with a dense seat index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "LayoutSpec", into = "LayoutSpec")]
pub struct SeatLayout {
    spec: LayoutSpec,
    /// For each row code, `(first dense index, seat count, category index)`; `count == 0` if absent.
    by_row_code: Vec<(u32, u16, u16)>,
    /// For each dense index, its seat.
    seats: Vec<SeatId>,
    /// For each dense index, whether it is blocked (never sellable).
    blocked: Vec<bool>,
    /// For each dense index, its position within its row in the layout order (for adjacency).
    row_position: Vec<u16>,
}

impl SeatLayout {
    pub fn new(spec: LayoutSpec) -> Result<Self, LayoutError> {
        if spec.rows.is_empty() {
            return Err(LayoutError::Empty);
        }
        let mut codes = HashSet::new();
        for c in &spec.categories {
            if !codes.insert(c.code.as_str()) || c.price_cents < 0 {
                return Err(LayoutError::BadCategory(c.code.clone()));
            }
        }
        let mut by_row_code = vec![(0u32, 0u16, 0u16); SeatId::MAX_ROW_CODE as usize + 1];
        let mut seats = Vec::new();
        let mut row_position = Vec::new();
        for (row_index, row) in spec.rows.iter().enumerate() {
            let code = SeatId::parse_row_label(&row.row)
                .filter(|_| row.row.bytes().all(|b| b.is_ascii_uppercase()))
                .ok_or_else(|| LayoutError::BadRowLabel(row.row.clone()))?;
            if by_row_code[code as usize].1 != 0 {
                return Err(LayoutError::DuplicateRow(row.row.clone()));
            }
            if row.seats == 0 || row.seats > SeatId::MAX_NUMBER {
                return Err(LayoutError::BadSeatCount(row.row.clone()));
            }
            let category = spec
                .categories
                .iter()
                .position(|c| c.code == row.category)
                .ok_or_else(|| LayoutError::UnknownCategory {
                    row: row.row.clone(),
                    category: row.category.clone(),
                })?;
            by_row_code[code as usize] = (seats.len() as u32, row.seats, category as u16);
            for number in 1..=row.seats {
                seats.push(SeatId::new(code, number).expect("validated above"));
                row_position.push(row_index as u16);
            }
        }
        let mut layout = Self {
            blocked: vec![false; seats.len()],
            spec,
            by_row_code,
            seats,
            row_position,
        };
        for seat in layout.spec.blocked.clone() {
            let idx = layout
                .index_of(seat)
                .ok_or(LayoutError::BlockedSeatOutsideLayout(seat))?;
            layout.blocked[idx] = true;
        }
        Ok(layout)
    }

    /// Dense index of a seat, if it is in the layout.
    #[inline]
    pub fn index_of(&self, seat: SeatId) -> Option<usize> {
        let (first, count, _) = *self.by_row_code.get(seat.row_code() as usize)?;
        (seat.number() <= count).then(|| first as usize + seat.number() as usize - 1)
    }

    /// The seat at a dense index.
    #[inline]
    pub fn seat_at(&self, index: usize) -> SeatId {
        self.seats[index]
    }

    #[inline]
    pub fn is_blocked_index(&self, index: usize) -> bool {
        self.blocked[index]
    }

    pub fn contains(&self, seat: SeatId) -> bool {
        self.index_of(seat).is_some()
    }

    pub fn is_blocked(&self, seat: SeatId) -> bool {
        self.index_of(seat).is_some_and(|i| self.blocked[i])
    }

    /// Position of the seat's row in the layout (0 = first row listed), for distances.
    #[inline]
    pub fn row_position_of_index(&self, index: usize) -> u16 {
        self.row_position[index]
    }

    /// Number of seats, blocked ones included.
    pub fn len(&self) -> usize {
        self.seats.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seats.is_empty()
    }

    pub fn spec(&self) -> &LayoutSpec {
        &self.spec
    }

    pub fn categories(&self) -> &[Category] {
        &self.spec.categories
    }

    pub fn rows(&self) -> &[RowSpec] {
        &self.spec.rows
    }

    /// The category a seat is sold in.
    pub fn category_of(&self, seat: SeatId) -> Option<&Category> {
        let (_, count, cat) = *self.by_row_code.get(seat.row_code() as usize)?;
        (count > 0 && seat.number() <= count).then(|| &self.spec.categories[cat as usize])
    }

    /// All seats in layout order.
    pub fn seats(&self) -> &[SeatId] {
        &self.seats
    }

    /// A plain rectangular hall: `rows` rows of `per_row` seats, one category; for demos and tests.
    pub fn rectangular(rows: u16, per_row: u16, price_cents: i64) -> Self {
        let spec = LayoutSpec {
            categories: vec![Category {
                code: "STANDARD".into(),
                name: "Standard".into(),
                price_cents,
                currency: "EUR".into(),
            }],
            rows: (0..rows)
                .map(|r| RowSpec {
                    row: SeatId::row_label(r),
                    seats: per_row,
                    category: "STANDARD".into(),
                })
                .collect(),
            blocked: vec![],
        };
        Self::new(spec).expect("a rectangular layout is valid")
    }
}

impl TryFrom<LayoutSpec> for SeatLayout {
    type Error = LayoutError;
    fn try_from(spec: LayoutSpec) -> Result<Self, LayoutError> {
        Self::new(spec)
    }
}

impl From<SeatLayout> for LayoutSpec {
    fn from(layout: SeatLayout) -> Self {
        layout.spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seat(s: &str) -> SeatId {
        s.parse().unwrap()
    }

    #[test]
    fn dense_index_covers_every_seat_once() {
        let layout = SeatLayout::rectangular(3, 4, 1000);
        assert_eq!(layout.len(), 12);
        for (i, s) in layout.seats().iter().enumerate() {
            assert_eq!(layout.index_of(*s), Some(i));
        }
        assert_eq!(layout.index_of(seat("A5")), None);
        assert_eq!(layout.index_of(seat("D1")), None);
    }

    #[test]
    fn invalid_layouts_are_rejected() {
        let mut spec = LayoutSpec::from(SeatLayout::rectangular(2, 2, 100));
        spec.blocked.push(seat("C1"));
        assert_eq!(
            SeatLayout::new(spec.clone()),
            Err(LayoutError::BlockedSeatOutsideLayout(seat("C1")))
        );
        spec.blocked.clear();
        spec.rows[1].row = "A".into();
        assert_eq!(
            SeatLayout::new(spec.clone()),
            Err(LayoutError::DuplicateRow("A".into()))
        );
        spec.rows[1].row = "B".into();
        spec.rows[1].category = "VIP".into();
        assert!(matches!(
            SeatLayout::new(spec),
            Err(LayoutError::UnknownCategory { .. })
        ));
    }

    #[test]
    fn layout_round_trips_through_json() {
        let mut spec = LayoutSpec::from(SeatLayout::rectangular(2, 3, 100));
        spec.blocked.push(seat("B2"));
        let layout = SeatLayout::new(spec).unwrap();
        let json = serde_json::to_string(&layout).unwrap();
        let back: SeatLayout = serde_json::from_str(&json).unwrap();
        assert_eq!(back, layout);
        assert!(back.is_blocked(seat("B2")));
    }
}
