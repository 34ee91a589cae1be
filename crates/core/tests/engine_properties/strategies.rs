//! The proptest generators: random scenarios, drawn before any layout exists.
//!
//! A [`Scenario`] is a hall (1-4 rows of 1-8 seats, now and then a row of 62-70 seats, which the
//! engine handles on a separate path), some blocked seats, stored state (booked seats, holds,
//! some already expired), and batches of requests from a small pool of users. Seats are drawn as
//! [`SeatPick`]s and resolved against the layout later, in `world`, so a generated request can
//! name seats outside the hall, blocked seats or one seat twice, and the clock advance can land
//! exactly on hold-TTL boundaries: the rare cases the rules must get right.

use crate::USERS;
use proptest::prelude::*;

/// A seat as generated, before the layout is known.
#[derive(Debug, Clone)]
pub enum SeatPick {
    /// The seat at this dense index (modulo the layout size); may be blocked.
    In(u16),
    /// A blocked seat, if the layout has any (else like `In`).
    Blocked(u16),
    /// A seat guaranteed not to be in any generated layout (row code, number).
    Outside(u16, u16),
}

#[derive(Debug, Clone)]
pub struct RawRequest {
    pub user: usize,
    /// Resolved to distinct seats where the layout allows; see
    /// [`resolve_request`](crate::world::resolve_request).
    pub seats: Vec<SeatPick>,
    /// Ask for the first seat a second time.
    pub duplicate: bool,
    /// Request deadline, seconds relative to the batch's `now`.
    pub deadline: i64,
}

#[derive(Debug, Clone)]
pub struct RawBatch {
    /// Seconds the clock moves forward before this batch.
    pub advance: i64,
    pub requests: Vec<RawRequest>,
}

#[derive(Debug, Clone)]
pub struct RawHold {
    pub user: usize,
    pub seats: Vec<SeatPick>,
    /// Expiry, seconds relative to the start time (may already be past).
    pub expires: i64,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub rows: Vec<u16>,
    pub blocked: Vec<u16>,
    pub booked: Vec<SeatPick>,
    pub holds: Vec<RawHold>,
    pub batches: Vec<RawBatch>,
}

pub fn seat_pick() -> impl Strategy<Value = SeatPick> {
    prop_oneof![
        60 => any::<u16>().prop_map(SeatPick::In),
        1 => any::<u16>().prop_map(SeatPick::Blocked),
        1 => (4u16..=8, 1u16..=8).prop_map(|(r, n)| SeatPick::Outside(r, n)),
        1 => (0u16..4, 9u16..=12).prop_map(|(r, n)| SeatPick::Outside(r, n)),
    ]
}

pub fn request_seats() -> impl Strategy<Value = Vec<SeatPick>> {
    prop_oneof![
        1 => Just(vec![]),
        40 => prop::collection::vec(seat_pick(), 1..=4),
    ]
}

pub fn raw_request() -> impl Strategy<Value = RawRequest> {
    let deadline = prop_oneof![
        1 => Just(0i64),
        1 => -60i64..0,
        20 => 1i64..=600,
    ];
    (
        0..USERS,
        request_seats(),
        prop::bool::weighted(0.03),
        deadline,
    )
        .prop_map(|(user, seats, duplicate, deadline)| RawRequest {
            user,
            seats,
            duplicate,
            deadline,
        })
}

pub fn raw_batch() -> impl Strategy<Value = RawBatch> {
    let advance = prop_oneof![
        3 => Just(0i64),
        4 => 1i64..=200,
        // Land exactly on (and next to) TTL boundaries now and then.
        3 => prop::sample::select(vec![50i64, 100, 150, 299, 300, 301]),
    ];
    (advance, prop::collection::vec(raw_request(), 0..=6))
        .prop_map(|(advance, requests)| RawBatch { advance, requests })
}

pub fn raw_hold() -> impl Strategy<Value = RawHold> {
    (
        0..USERS,
        prop::collection::vec(seat_pick(), 0..=4),
        -60i64..=400,
    )
        .prop_map(|(user, seats, expires)| RawHold {
            user,
            seats,
            expires,
        })
}

pub fn scenario() -> impl Strategy<Value = Scenario> {
    (
        // Now and then a row longer than 64 seats: the engine handles those on a separate path.
        prop::collection::vec(prop_oneof![30 => 1u16..=8, 1 => 62u16..=70], 1..=4),
        prop_oneof![Just(vec![]), prop::collection::vec(any::<u16>(), 1..=2)],
        prop::collection::vec(seat_pick(), 0..=4),
        prop::collection::vec(raw_hold(), 0..=4),
        prop::collection::vec(raw_batch(), 1..=8),
    )
        .prop_map(|(rows, blocked, booked, holds, batches)| Scenario {
            rows,
            blocked,
            booked,
            holds,
            batches,
        })
}
