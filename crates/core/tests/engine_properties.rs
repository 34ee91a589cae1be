//! Property tests of the decision engine against a deliberately simple reference model.
//!
//! The model ([`Model`]) writes the decision rules down as plainly as possible: a map
//! `seat -> (hold, user, expires_at)` plus the booked and blocked seats, and each request decided
//! with plain loops over it. Random small halls (1-4 rows of 1-8 seats, now and then a row of
//! 62-70 seats, some blocked), random
//! stored state, and random batches of requests from a small pool of users (1-4 seats, sometimes
//! unknown, duplicated or blocked ones, sometimes already past their deadline) are fed to both,
//! while the clock jumps forward across hold-TTL boundaries.
//!
//! Besides the model, every run keeps a [`Ledger`] built *only from what the engine reported*
//! (snapshot holds, grants, releases, expiry times), so the invariants can be checked against the
//! engine's own word: what it says it granted must be what its seat map shows.

use booking_core::layout::{Category, LayoutSpec, RowSpec};
use booking_core::{
    Decision, DecisionEngine, HoldId, PendingRequest, RequestId, SeatId, SeatLayout, SeatStatus,
    ShowSnapshot, SnapshotHold, UserId,
};
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use uuid::Uuid;

const TTL_SECS: i64 = 300;
const USERS: usize = 5;

// ---------------------------------------------------------------------------------------------
// Random scenarios
// ---------------------------------------------------------------------------------------------

/// A seat as generated, before the layout is known.
#[derive(Debug, Clone)]
enum SeatPick {
    /// The seat at this dense index (modulo the layout size); may be blocked.
    In(u16),
    /// A blocked seat, if the layout has any (else like `In`).
    Blocked(u16),
    /// A seat guaranteed not to be in any generated layout (row code, number).
    Outside(u16, u16),
}

#[derive(Debug, Clone)]
struct RawRequest {
    user: usize,
    /// Resolved to distinct seats where the layout allows; see [`resolve_request`].
    seats: Vec<SeatPick>,
    /// Ask for the first seat a second time.
    duplicate: bool,
    /// Request deadline, seconds relative to the batch's `now`.
    deadline: i64,
}

#[derive(Debug, Clone)]
struct RawBatch {
    /// Seconds the clock moves forward before this batch.
    advance: i64,
    requests: Vec<RawRequest>,
}

#[derive(Debug, Clone)]
struct RawHold {
    user: usize,
    seats: Vec<SeatPick>,
    /// Expiry, seconds relative to the start time (may already be past).
    expires: i64,
}

#[derive(Debug, Clone)]
struct Scenario {
    rows: Vec<u16>,
    blocked: Vec<u16>,
    booked: Vec<SeatPick>,
    holds: Vec<RawHold>,
    batches: Vec<RawBatch>,
}

fn seat_pick() -> impl Strategy<Value = SeatPick> {
    prop_oneof![
        60 => any::<u16>().prop_map(SeatPick::In),
        1 => any::<u16>().prop_map(SeatPick::Blocked),
        1 => (4u16..=8, 1u16..=8).prop_map(|(r, n)| SeatPick::Outside(r, n)),
        1 => (0u16..4, 9u16..=12).prop_map(|(r, n)| SeatPick::Outside(r, n)),
    ]
}

fn request_seats() -> impl Strategy<Value = Vec<SeatPick>> {
    prop_oneof![
        1 => Just(vec![]),
        40 => prop::collection::vec(seat_pick(), 1..=4),
    ]
}

fn raw_request() -> impl Strategy<Value = RawRequest> {
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

fn raw_batch() -> impl Strategy<Value = RawBatch> {
    let advance = prop_oneof![
        3 => Just(0i64),
        4 => 1i64..=200,
        // Land exactly on (and next to) TTL boundaries now and then.
        3 => prop::sample::select(vec![50i64, 100, 150, 299, 300, 301]),
    ];
    (advance, prop::collection::vec(raw_request(), 0..=6))
        .prop_map(|(advance, requests)| RawBatch { advance, requests })
}

fn raw_hold() -> impl Strategy<Value = RawHold> {
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

fn scenario() -> impl Strategy<Value = Scenario> {
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

// ---------------------------------------------------------------------------------------------
// Concrete worlds
// ---------------------------------------------------------------------------------------------

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn ttl() -> Duration {
    Duration::seconds(TTL_SECS)
}

fn user(i: usize) -> UserId {
    format!("user-{i}").parse().unwrap()
}

fn users() -> Vec<UserId> {
    (0..USERS).map(user).collect()
}

struct World {
    layout: Arc<SeatLayout>,
    blocked: BTreeSet<SeatId>,
    snapshot: ShowSnapshot,
    /// `(now, requests)` per batch, `now` non-decreasing.
    batches: Vec<(DateTime<Utc>, Vec<PendingRequest>)>,
}

impl World {
    fn seats(&self) -> &[SeatId] {
        self.layout.seats()
    }

    fn engine(&self) -> DecisionEngine {
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
fn build(sc: &Scenario, well_formed: bool) -> World {
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

// ---------------------------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------------------------

/// What the model says should happen to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Granted { released: Option<HoldId> },
    Rejected { taken: Vec<SeatId> },
    Expired,
    Invalid,
}

/// The decision rules, written as plainly as possible. Only meaningful for well-formed snapshots.
#[derive(Debug, Clone)]
struct Model {
    layout_seats: BTreeSet<SeatId>,
    blocked: BTreeSet<SeatId>,
    booked: BTreeSet<SeatId>,
    /// Seat -> (hold, user, expires_at). Entries past their expiry are simply ignored.
    held: BTreeMap<SeatId, (HoldId, UserId, DateTime<Utc>)>,
}

impl Model {
    fn new(world: &World) -> Self {
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
    fn usable_for(&self, user: &UserId, now: DateTime<Utc>) -> BTreeSet<SeatId> {
        self.layout_seats
            .iter()
            .copied()
            .filter(|s| !self.blocked.contains(s) && !self.taken_for(*s, user, now))
            .collect()
    }

    fn decide(&mut self, req: &PendingRequest, now: DateTime<Utc>) -> Expected {
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
        if let Some(p) = previous {
            self.held.retain(|_, (h, _, _)| *h != p);
        }
        let hold = HoldId::for_request(req.request_id);
        for &seat in &req.seat_ids {
            self.held
                .insert(seat, (hold, req.user_id.clone(), now + ttl()));
        }
        Expected::Granted { released: previous }
    }
}

// ---------------------------------------------------------------------------------------------
// The ledger: holds as the engine reported them
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct LedgerHold {
    id: HoldId,
    user: UserId,
    seats: BTreeSet<SeatId>,
    expires_at: DateTime<Utc>,
    released: bool,
    from_snapshot: bool,
}

impl LedgerHold {
    fn live(&self, now: DateTime<Utc>) -> bool {
        !self.released && self.expires_at > now
    }
}

#[derive(Debug, Clone, Default)]
struct Ledger {
    holds: Vec<LedgerHold>,
    /// Released hold ids the engine reported that were not live holds of the user.
    bad_releases: Vec<HoldId>,
}

impl Ledger {
    fn new(world: &World) -> Self {
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
            })
            .collect();
        Self {
            holds,
            bad_releases: vec![],
        }
    }

    fn live_of<'a>(
        &'a self,
        user: &'a UserId,
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = &'a LedgerHold> + 'a {
        self.holds
            .iter()
            .filter(move |h| h.live(now) && &h.user == user)
    }

    fn record(&mut self, decision: &Decision, now: DateTime<Utc>) {
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
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Drivers
// ---------------------------------------------------------------------------------------------

type Statuses = BTreeMap<SeatId, SeatStatus>;

fn statuses(engine: &mut DecisionEngine, world: &World, now: DateTime<Utc>) -> Statuses {
    world
        .seats()
        .iter()
        .map(|&s| (s, engine.seat_status(s, now).expect("layout seat")))
        .collect()
}

/// Everything known about one decision, for the properties to check.
struct Step<'a> {
    world: &'a World,
    engine: &'a mut DecisionEngine,
    now: DateTime<Utc>,
    request: &'a PendingRequest,
    decision: &'a Decision,
    expected: &'a Expected,
    model_before: &'a Model,
    ledger_before: &'a Ledger,
    ledger_after: &'a Ledger,
    before: &'a Statuses,
    after: &'a Statuses,
    /// `engine.live_hold_of(user)` just before the decision.
    live_before: Option<HoldId>,
}

/// Decides every request of the world one at a time and hands each decision to `check`.
fn drive(
    world: &World,
    mut check: impl FnMut(Step<'_>) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let mut engine = world.engine();
    let mut model = Model::new(world);
    let mut ledger = Ledger::new(world);
    for (now, requests) in &world.batches {
        let now = *now;
        for request in requests {
            let before = statuses(&mut engine, world, now);
            let live_before = engine.live_hold_of(&request.user_id, now);
            let model_before = model.clone();
            let ledger_before = ledger.clone();
            let decision = engine.decide(request.clone(), now);
            let expected = model.decide(request, now);
            ledger.record(&decision, now);
            let after = statuses(&mut engine, world, now);
            check(Step {
                world,
                engine: &mut engine,
                now,
                request,
                decision: &decision,
                expected: &expected,
                model_before: &model_before,
                ledger_before: &ledger_before,
                ledger_after: &ledger,
                before: &before,
                after: &after,
                live_before,
            })?;
        }
    }
    Ok(())
}

fn kind(d: &Decision) -> &'static str {
    match d {
        Decision::Granted { .. } => "Granted",
        Decision::Rejected { .. } => "Rejected",
        Decision::Expired { .. } => "Expired",
        Decision::Invalid { .. } => "Invalid",
    }
}

fn expected_kind(e: &Expected) -> &'static str {
    match e {
        Expected::Granted { .. } => "Granted",
        Expected::Rejected { .. } => "Rejected",
        Expected::Expired => "Expired",
        Expected::Invalid => "Invalid",
    }
}

/// The engine's seat map agrees with the holds it reported, and no seat is in two live holds.
fn check_exclusive(
    world: &World,
    engine: &mut DecisionEngine,
    ledger: &Ledger,
    statuses: &Statuses,
    now: DateTime<Utc>,
) -> Result<(), TestCaseError> {
    let booked: BTreeSet<SeatId> = world.snapshot.booked.iter().copied().collect();
    let mut owner: BTreeMap<SeatId, HoldId> = BTreeMap::new();
    for h in ledger.holds.iter().filter(|h| h.live(now)) {
        for &s in &h.seats {
            prop_assert!(
                !booked.contains(&s) && !world.blocked.contains(&s),
                "seat {s} is booked or blocked but in live hold {}",
                h.id
            );
            if let Some(other) = owner.insert(s, h.id) {
                prop_assert!(false, "seat {s} is in two live holds: {other} and {}", h.id);
            }
        }
    }
    for (&seat, &status) in statuses {
        let want = if world.blocked.contains(&seat) {
            SeatStatus::Blocked
        } else if booked.contains(&seat) {
            SeatStatus::Booked
        } else if owner.contains_key(&seat) {
            SeatStatus::Held
        } else {
            SeatStatus::Available
        };
        prop_assert_eq!(status, want, "status of {} at {}", seat, now);
    }
    let available = statuses
        .values()
        .filter(|s| **s == SeatStatus::Available)
        .count();
    prop_assert_eq!(engine.available_count(now), available, "available_count");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

// 256 cases each by default; `PROPTEST_CASES=20000 cargo test -p booking-core --test
// engine_properties --release` for a longer hunt.
proptest! {
    /// After every decision, no seat is in two live holds nor in a hold while booked or blocked,
    /// and the engine's seat map (and free count) is exactly what its reported holds imply.
    #[test]
    fn no_seat_is_ever_in_two_live_holds(sc in scenario()) {
        let world = build(&sc, true);
        {
            let mut engine = world.engine();
            let st = statuses(&mut engine, &world, t0());
            check_exclusive(&world, &mut engine, &Ledger::new(&world), &st, t0())?;
        }
        drive(&world, |s| {
            prop_assert!(s.ledger_after.bad_releases.is_empty(), "released a hold that was not live");
            check_exclusive(s.world, s.engine, s.ledger_after, s.after, s.now)
        })?;
    }

    /// A granted request holds exactly its seats (and frees the rest of the user's previous
    /// hold); any other outcome changes nothing at all.
    #[test]
    fn requests_are_all_or_nothing(sc in scenario()) {
        let world = build(&sc, true);
        drive(&world, |s| {
            let live_after = s.engine.live_hold_of(&s.request.user_id, s.now);
            match s.decision {
                Decision::Granted { hold_id, seat_ids, .. } => {
                    prop_assert_eq!(seat_ids, &s.request.seat_ids);
                    prop_assert_eq!(live_after, Some(*hold_id));
                    let previous: BTreeSet<SeatId> = s
                        .ledger_before
                        .live_of(&s.request.user_id, s.now)
                        .flat_map(|h| h.seats.iter().copied())
                        .collect();
                    for (seat, before) in s.before {
                        let after = s.after[seat];
                        if s.request.seat_ids.contains(seat) {
                            prop_assert_eq!(after, SeatStatus::Held, "requested seat {}", seat);
                        } else if previous.contains(seat) {
                            prop_assert_eq!(after, SeatStatus::Available, "released seat {}", seat);
                        } else {
                            prop_assert_eq!(after, *before, "unrelated seat {}", seat);
                        }
                    }
                }
                _ => {
                    prop_assert_eq!(s.after, s.before, "{} changed seats", kind(s.decision));
                    prop_assert_eq!(live_after, s.live_before, "{} changed the user's hold", kind(s.decision));
                }
            }
            Ok(())
        })?;
    }

    /// Decisions match the reference model in arrival order: same kind, same seats granted,
    /// same hold id and expiry, and a rejection names exactly the requested seats that are taken.
    #[test]
    fn decisions_follow_arrival_order_like_the_model(sc in scenario()) {
        let world = build(&sc, true);
        drive(&world, |s| {
            prop_assert_eq!(
                kind(s.decision), expected_kind(s.expected),
                "request {:?} at {}: engine {:?}, model {:?}", s.request, s.now, s.decision, s.expected
            );
            prop_assert_eq!(s.decision.request_id(), s.request.request_id);
            match (s.decision, s.expected) {
                (
                    Decision::Granted { user_id, hold_id, seat_ids, expires_at, released, .. },
                    Expected::Granted { released: want_released },
                ) => {
                    prop_assert_eq!(user_id, &s.request.user_id);
                    prop_assert_eq!(seat_ids, &s.request.seat_ids);
                    prop_assert_eq!(*hold_id, HoldId::for_request(s.request.request_id));
                    prop_assert_eq!(*expires_at, s.now + ttl());
                    prop_assert_eq!(released, want_released);
                }
                (Decision::Rejected { unavailable, .. }, Expected::Rejected { taken }) => {
                    prop_assert_eq!(unavailable, taken);
                }
                _ => {}
            }
            Ok(())
        })?;
    }

    /// A hold whose `expires_at <= now` never blocks a request (its seats read AVAILABLE and a
    /// request for them is granted), and a request whose own deadline is `<= now` is EXPIRED.
    #[test]
    fn expired_holds_never_block_and_overdue_requests_expire(sc in scenario()) {
        let world = build(&sc, true);
        drive(&world, |s| {
            if s.request.expires_at <= s.now {
                prop_assert_eq!(kind(s.decision), "Expired");
                return Ok(());
            }
            prop_assert_ne!(kind(s.decision), "Expired", "request deadline is in the future");
            // Seats of holds that have run out read AVAILABLE unless held again by a live hold.
            for h in &s.ledger_before.holds {
                if h.released || h.expires_at > s.now {
                    continue;
                }
                for seat in &h.seats {
                    let retaken = s.ledger_before.holds.iter().any(|o| o.live(s.now) && o.seats.contains(seat));
                    if !retaken {
                        prop_assert_eq!(s.before[seat], SeatStatus::Available, "seat {} of expired hold {}", seat, h.id);
                    }
                }
            }
            let blocks = |seat: &SeatId| {
                s.world.snapshot.booked.contains(seat)
                    || s.ledger_before.holds.iter().any(|h| {
                        h.live(s.now) && h.user != s.request.user_id && h.seats.contains(seat)
                    })
            };
            if let Decision::Rejected { unavailable, .. } = s.decision {
                for seat in unavailable {
                    prop_assert!(blocks(seat), "{} reported unavailable but no live hold has it", seat);
                }
            }
            let valid = !s.request.seat_ids.is_empty()
                && s.request.seat_ids.iter().enumerate().all(|(k, seat)| {
                    s.world.layout.contains(*seat)
                        && !s.world.blocked.contains(seat)
                        && !s.request.seat_ids[..k].contains(seat)
                });
            if valid && !s.request.seat_ids.iter().any(blocks) {
                prop_assert_eq!(kind(s.decision), "Granted", "nothing live blocks {:?}", s.request.seat_ids);
            }
            Ok(())
        })?;
    }

    /// A user has at most one live hold on the show, `live_hold_of` names it, and a grant
    /// reports as `released` exactly the user's previous live hold.
    #[test]
    fn one_live_hold_per_user_and_grants_release_the_previous(sc in scenario()) {
        let world = build(&sc, true);
        drive(&world, |s| {
            let previous: Vec<HoldId> = s.ledger_before.live_of(&s.request.user_id, s.now).map(|h| h.id).collect();
            prop_assert_eq!(s.live_before, previous.first().copied());
            if let Decision::Granted { released, .. } = s.decision {
                prop_assert_eq!(*released, previous.first().copied(), "released");
            }
            prop_assert!(s.ledger_after.bad_releases.is_empty(), "released a hold that was not the user's live hold");
            for u in users() {
                let live: Vec<HoldId> = s.ledger_after.live_of(&u, s.now).map(|h| h.id).collect();
                prop_assert!(live.len() <= 1, "{} has live holds {:?}", u, live);
                prop_assert_eq!(s.engine.live_hold_of(&u, s.now), live.first().copied(), "live hold of {}", u);
            }
            Ok(())
        })?;
    }

    /// Alternatives offered with a rejection: none only when the user cannot be given that many
    /// seats at all; otherwise exactly as many distinct seats, all available to the user (never
    /// blocked), and one run of adjacent seats in one row whenever such a run exists.
    #[test]
    fn alternatives_are_free_distinct_and_adjacent_when_possible(sc in scenario()) {
        let world = build(&sc, true);
        drive(&world, |s| {
            let Decision::Rejected { alternatives, .. } = s.decision else { return Ok(()) };
            let n = s.request.seat_ids.len();
            let usable = s.model_before.usable_for(&s.request.user_id, s.now);
            if usable.len() < n {
                prop_assert!(alternatives.is_empty(), "{} usable seats, {} wanted, offered {:?}", usable.len(), n, alternatives);
                return Ok(());
            }
            prop_assert_eq!(alternatives.len(), n, "offered {:?} with {} usable", alternatives, usable.len());
            let distinct: BTreeSet<SeatId> = alternatives.iter().copied().collect();
            prop_assert_eq!(distinct.len(), n, "duplicates in {:?}", alternatives);
            for seat in alternatives {
                prop_assert!(!s.world.blocked.contains(seat), "blocked seat {} offered", seat);
                prop_assert!(usable.contains(seat), "seat {} offered but not available ({:?})", seat, s.before.get(seat));
            }
            let run_exists = s.world.layout.rows().iter().any(|row| {
                let code = SeatId::parse_row_label(&row.row).unwrap();
                let mut run = 0;
                (1..=row.seats).any(|num| {
                    run = if usable.contains(&SeatId::new(code, num).unwrap()) { run + 1 } else { 0 };
                    run >= n
                })
            });
            if run_exists {
                let sorted: Vec<SeatId> = distinct.into_iter().collect();
                let one_row = sorted.iter().all(|x| x.row_code() == sorted[0].row_code());
                let consecutive = sorted.windows(2).all(|w| w[1].number() == w[0].number() + 1);
                prop_assert!(one_row && consecutive, "a run of {} exists but {:?} was offered", n, alternatives);
            }
            Ok(())
        })?;
    }

    /// The seat changes of a batch: each seat at most once, sorted, with the status the engine
    /// reports after the batch, and every seat whose status changed during the batch included.
    #[test]
    fn seat_changes_are_coalesced_sorted_and_final(sc in scenario()) {
        let world = build(&sc, true);
        let mut engine = world.engine();
        for (now, requests) in &world.batches {
            let before = statuses(&mut engine, &world, *now);
            let out = engine.decide_batch(requests.clone(), *now);
            let after = statuses(&mut engine, &world, *now);
            prop_assert_eq!(out.decisions.len(), requests.len());
            prop_assert!(
                out.seat_changes.windows(2).all(|w| w[0].seat_id < w[1].seat_id),
                "not strictly sorted: {:?}", out.seat_changes
            );
            for change in &out.seat_changes {
                prop_assert_eq!(Some(change.status), after.get(&change.seat_id).copied(), "change {:?}", change);
            }
            for (seat, status) in &after {
                if before[seat] != *status {
                    prop_assert!(
                        out.seat_changes.iter().any(|c| c.seat_id == *seat),
                        "{} went {:?} -> {:?} but is not in {:?}", seat, before[seat], status, out.seat_changes
                    );
                }
            }
        }
    }

    /// `decide_batch` decides exactly as deciding the same requests one by one would.
    #[test]
    fn batch_decisions_equal_one_by_one_decisions(sc in scenario()) {
        let world = build(&sc, true);
        let mut batched = world.engine();
        let mut single = world.engine();
        for (now, requests) in &world.batches {
            let out = batched.decide_batch(requests.clone(), *now);
            let one_by_one: Vec<Decision> = requests.iter().map(|r| single.decide(r.clone(), *now)).collect();
            prop_assert_eq!(&out.decisions, &one_by_one);
            prop_assert_eq!(statuses(&mut batched, &world, *now), statuses(&mut single, &world, *now));
            for u in users() {
                prop_assert_eq!(batched.live_hold_of(&u, *now), single.live_hold_of(&u, *now));
            }
        }
    }

    /// Snapshots a store should never produce (seats claimed twice, by holds with different
    /// expiries or by a hold and an order; a seat listed twice in one hold; unknown or blocked
    /// seats) are resolved conservatively: while any live claim on a seat remains, the seat reads
    /// HELD or BOOKED and is never granted to anyone else, and the free count stays exact.
    #[test]
    fn malformed_snapshots_never_lead_to_double_holds(sc in scenario()) {
        let world = build(&sc, false);
        let booked: BTreeSet<SeatId> = world.snapshot.booked.iter().copied().filter(|s| world.layout.contains(*s)).collect();
        let mut engine = world.engine();
        let mut ledger = Ledger::new(&world);
        for (now, requests) in &world.batches {
            let now = *now;
            for request in requests {
                let decision = engine.decide(request.clone(), now);
                ledger.record(&decision, now);
                let after = statuses(&mut engine, &world, now);
                for (i, h) in ledger.holds.iter().enumerate().filter(|(_, h)| h.live(now)) {
                    for seat in h.seats.iter().filter(|s| world.layout.contains(**s) && !world.blocked.contains(s)) {
                        let want = if booked.contains(seat) { SeatStatus::Booked } else { SeatStatus::Held };
                        prop_assert_eq!(after[seat], want, "seat {} claimed by live hold {}", seat, h.id);
                        if h.from_snapshot {
                            continue;
                        }
                        // A hold the engine granted shares no seat with any other live claim.
                        prop_assert!(!booked.contains(seat), "granted booked seat {}", seat);
                        for (j, o) in ledger.holds.iter().enumerate() {
                            prop_assert!(
                                i == j || !o.live(now) || !o.seats.contains(seat),
                                "seat {} is in granted hold {} and live hold {}", seat, h.id, o.id
                            );
                        }
                    }
                }
                let available = after.values().filter(|s| **s == SeatStatus::Available).count();
                prop_assert_eq!(engine.available_count(now), available, "available_count");
            }
        }
    }
}
