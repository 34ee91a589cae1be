//! Orders: holds turned into orders between batches, and the properties that keep holds and
//! orders apart.
//!
//! An order is made from a live hold and takes over its seats: from then on the stores list
//! those seats in [`ShowSnapshot::booked`], not as a hold, for as long as the order's claim
//! lasts (until its payment deadline while PAYMENT_PENDING, for ever once CONFIRMED), and an order
//! that ends (FAILED, EXPIRED, CANCELLED) frees them. The engine never sees an order; it sees
//! only the snapshot the stores load. So these properties drive it as the stores do: before each
//! batch, some [`RawOrderAction`]s change the world (convert live holds, confirm, fail or cancel
//! orders, let payment deadlines pass), then the show's state is loaded as a store would load it
//! ([`OrderBook::load`]: live holds, and the seats of pending and confirmed orders as booked)
//! and the batch is decided by a fresh [`DecisionEngine`].
//!
//! The world's state between batches is the [`Ledger`] (holds as the engines reported them, a
//! converted hold marked as such) and the [`OrderBook`] (orders, kept as [`Order`]s so that
//! "does it still own its seats" is the domain's own [`Order::status_at`] and
//! [`OrderStatus::owns_seats`]). Both are kept independently of what any engine shows, so the
//! engine's seat map can be checked against them.

use crate::USERS;
use crate::drivers::{Statuses, Step, expected_kind, kind, statuses};
use crate::ledger::Ledger;
use crate::model::{Expected, Model};
use crate::strategies::{Scenario, scenario};
use crate::world::{World, build, user, users};
use booking_core::{
    Decision, DecisionEngine, HoldId, Order, OrderId, OrderStatus, PendingRequest, RequestId,
    SeatId, SeatLayout, SeatStatus, ShowId, ShowSnapshot, SnapshotHold, price_of, sold_until,
};
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// The most batches a [`Scenario`] has (see `strategies::scenario`): one list of actions each.
const MAX_BATCHES: usize = 8;

/// Something that happens to holds and orders between two batches. Holds and orders are picked
/// by position among those the action applies to (modulo their number), so an action almost
/// always does something; with nothing to apply to, it does nothing.
#[derive(Debug, Clone)]
pub enum RawOrderAction {
    /// Make a PAYMENT_PENDING order of a live hold, with a payment deadline this many seconds
    /// away.
    Convert { hold: u16, window: i64 },
    /// A pending order is paid: CONFIRMED, its seats sold for ever.
    Confirm(u16),
    /// A pending order's payment is declined: FAILED, its seats free.
    Fail(u16),
    /// A pending or confirmed order is cancelled (a confirmed one once refunded): CANCELLED,
    /// its seats free.
    Cancel(u16),
    /// The sweeper writes EXPIRED on every pending order whose deadline has passed. Expiry is by
    /// time, so this must change nothing the engine is shown.
    Sweep,
    /// A request, added to the next batch at position `at`, for exactly the seats of an order
    /// (of any status, so both a live order's seats and an ended one's are asked for), from
    /// `user` or, with `None`, from the order's own buyer. Random requests hit these seats only
    /// now and then; these make sure the seats of orders are asked for often.
    Ask {
        order: u16,
        user: Option<usize>,
        at: u16,
    },
}

#[derive(Debug, Clone)]
pub struct OrderScenario {
    pub scenario: Scenario,
    /// Per batch (by position; the extra lists are unused): what happens just before it.
    pub actions: Vec<Vec<RawOrderAction>>,
}

pub fn raw_order_action() -> impl Strategy<Value = RawOrderAction> {
    // Payment windows land exactly on the clock advances now and then (see
    // `strategies::raw_batch`), so an order's deadline falls exactly on a later batch's `now`.
    let window = prop_oneof![
        3 => 1i64..=600,
        2 => prop::sample::select(vec![50i64, 100, 150, 299, 300, 301]),
    ];
    prop_oneof![
        5 => (any::<u16>(), window).prop_map(|(hold, window)| RawOrderAction::Convert { hold, window }),
        2 => any::<u16>().prop_map(RawOrderAction::Confirm),
        1 => any::<u16>().prop_map(RawOrderAction::Fail),
        2 => any::<u16>().prop_map(RawOrderAction::Cancel),
        1 => Just(RawOrderAction::Sweep),
        4 => (any::<u16>(), prop::option::weighted(0.7, 0..USERS), any::<u16>())
            .prop_map(|(order, user, at)| RawOrderAction::Ask { order, user, at }),
    ]
}

pub fn order_scenario() -> impl Strategy<Value = OrderScenario> {
    (
        scenario(),
        prop::collection::vec(
            prop::collection::vec(raw_order_action(), 0..=4),
            MAX_BATCHES,
        ),
    )
        .prop_map(|(scenario, actions)| OrderScenario { scenario, actions })
}

/// The show every order is for (the engine is per show; the id only fills in the `Order`).
const SHOW: ShowId = ShowId::from_uuid(Uuid::from_u128(0x5_4000));

/// The orders of the show, in the order they were made.
#[derive(Debug, Clone, Default)]
pub struct OrderBook {
    pub orders: Vec<Order>,
}

impl OrderBook {
    /// The orders whose claim on their seats stands at `now`: pending before the deadline, or
    /// confirmed.
    pub fn owning(&self, now: DateTime<Utc>) -> impl Iterator<Item = &Order> + '_ {
        self.orders
            .iter()
            .filter(move |o| o.status_at(now).owns_seats())
    }

    /// The orders that have ended by `now` (failed, expired, by time or sweep, or cancelled).
    pub fn ended(&self, now: DateTime<Utc>) -> impl Iterator<Item = &Order> + '_ {
        self.orders
            .iter()
            .filter(move |o| !o.status_at(now).owns_seats())
    }

    /// Seat -> the order that owns it at `now`.
    pub fn owned_seats(&self, now: DateTime<Utc>) -> BTreeMap<SeatId, &Order> {
        self.owning(now)
            .flat_map(|o| o.seat_ids.iter().map(move |&s| (s, o)))
            .collect()
    }

    /// The show's state as a store loads it at `now` (see the stores' `load_show_state`): the
    /// holds still HELD and not expired, and as booked the seats sold outright plus those of
    /// every order whose claim still stands.
    pub fn load(
        &self,
        ledger: &Ledger,
        sold: &BTreeSet<SeatId>,
        now: DateTime<Utc>,
    ) -> ShowSnapshot {
        ShowSnapshot {
            holds: ledger
                .holds
                .iter()
                .filter(|h| h.live(now))
                .map(|h| SnapshotHold {
                    hold_id: h.id,
                    user_id: h.user.clone(),
                    seat_ids: h.seats.iter().copied().collect(),
                    expires_at: h.expires_at,
                })
                .collect(),
            booked: sold
                .iter()
                .copied()
                .chain(self.owning(now).flat_map(|o| o.seat_ids.iter().copied()))
                .collect(),
        }
    }

    /// Moves `order` to `next` at `at`, as the order state machine allows and nothing else.
    fn end_or_confirm(
        order: &mut Order,
        next: OrderStatus,
        at: DateTime<Utc>,
    ) -> Result<(), TestCaseError> {
        let now = order.status_at(at);
        prop_assert!(now.can_become(next), "{:?} cannot become {:?}", now, next);
        order.status = next;
        order.updated_at = at;
        if next == OrderStatus::Confirmed {
            order.seats_until = sold_until();
            order.ticket_code = Some(format!("TKT-{}", order.order_id));
        } else {
            order.reason = Some(format!("{next:?} in the property tests"));
        }
        Ok(())
    }

    /// Positions of the orders whose status at `at` passes `ok`.
    fn positions(&self, at: DateTime<Utc>, ok: impl Fn(OrderStatus) -> bool) -> Vec<usize> {
        (0..self.orders.len())
            .filter(|&i| ok(self.orders[i].status_at(at)))
            .collect()
    }

    /// Applies one action at `at`. A conversion takes the hold's seats over in one step, as the
    /// stores' transaction does: the hold stops being a hold (the ledger marks it converted) and
    /// the order owns its seats. Returns the request an [`RawOrderAction::Ask`] adds to the batch.
    fn apply(
        &mut self,
        ledger: &mut Ledger,
        layout: &SeatLayout,
        action: &RawOrderAction,
        at: DateTime<Utc>,
    ) -> Result<Option<(u16, PendingRequest)>, TestCaseError> {
        let pending = |s| s == OrderStatus::PaymentPending;
        match *action {
            RawOrderAction::Convert { hold, window } => {
                let live = (0..ledger.holds.len()).filter(|&i| ledger.holds[i].live(at));
                let Some(i) = pick(live.collect(), hold) else {
                    return Ok(None);
                };
                let h = &mut ledger.holds[i];
                h.converted = true;
                let seat_ids: Vec<SeatId> = h.seats.iter().copied().collect();
                let (amount_cents, currency) = price_of(layout, &seat_ids).expect("priced");
                let deadline = at + Duration::seconds(window);
                self.orders.push(Order {
                    order_id: OrderId::from_uuid(Uuid::from_u128(
                        0x0de_0000 + self.orders.len() as u128,
                    )),
                    hold_id: h.id,
                    user_id: h.user.clone(),
                    show_id: SHOW,
                    seat_ids,
                    status: OrderStatus::PaymentPending,
                    amount_cents,
                    currency,
                    created_at: at,
                    expires_at: deadline,
                    seats_until: deadline,
                    updated_at: at,
                    ticket_code: None,
                    reason: None,
                });
            }
            RawOrderAction::Confirm(k) => {
                if let Some(i) = pick(self.positions(at, pending), k) {
                    Self::end_or_confirm(&mut self.orders[i], OrderStatus::Confirmed, at)?;
                }
            }
            RawOrderAction::Fail(k) => {
                if let Some(i) = pick(self.positions(at, pending), k) {
                    Self::end_or_confirm(&mut self.orders[i], OrderStatus::Failed, at)?;
                }
            }
            RawOrderAction::Cancel(k) => {
                if let Some(i) = pick(self.positions(at, OrderStatus::owns_seats), k) {
                    Self::end_or_confirm(&mut self.orders[i], OrderStatus::Cancelled, at)?;
                }
            }
            RawOrderAction::Sweep => {
                for order in &mut self.orders {
                    if order.status == OrderStatus::PaymentPending
                        && order.status_at(at) == OrderStatus::Expired
                    {
                        order.status = OrderStatus::Expired;
                        order.updated_at = at;
                    }
                }
            }
            RawOrderAction::Ask {
                order,
                user: asker,
                at: position,
            } => {
                if let Some(i) = pick((0..self.orders.len()).collect(), order) {
                    let o = &self.orders[i];
                    return Ok(Some((
                        position,
                        PendingRequest {
                            // Filled in by the driver.
                            request_id: RequestId::from_uuid(Uuid::nil()),
                            user_id: asker.map_or_else(|| o.user_id.clone(), user),
                            seat_ids: o.seat_ids.clone(),
                            expires_at: at + Duration::seconds(60),
                        },
                    )));
                }
            }
        }
        Ok(None)
    }
}

/// The candidate at position `k` (modulo their number), if there are any.
fn pick(candidates: Vec<usize>, k: u16) -> Option<usize> {
    (!candidates.is_empty()).then(|| candidates[k as usize % candidates.len()])
}

/// Who claims a seat, as the world (ledger and order book) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Sold before the run began (the scenario's booked seats).
    Sold,
    Hold(HoldId),
    Pending(OrderId),
    Confirmed(OrderId),
}

/// Every claim standing at `now`, failing if a seat has two: a seat is in at most one of {a
/// live hold, a pending order, a confirmed order, sold}. Claims on unknown or blocked seats fail
/// too.
pub fn claims(
    world: &World,
    ledger: &Ledger,
    book: &OrderBook,
    sold: &BTreeSet<SeatId>,
    now: DateTime<Utc>,
) -> Result<BTreeMap<SeatId, Claim>, TestCaseError> {
    let mut claims = BTreeMap::new();
    let holds = ledger
        .holds
        .iter()
        .filter(|h| h.live(now))
        .flat_map(|h| h.seats.iter().map(|&s| (s, Claim::Hold(h.id))));
    let orders = book.owning(now).flat_map(|o| {
        let claim = match o.status_at(now) {
            OrderStatus::Confirmed => Claim::Confirmed(o.order_id),
            _ => Claim::Pending(o.order_id),
        };
        o.seat_ids.iter().map(move |&s| (s, claim))
    });
    for (seat, claim) in sold
        .iter()
        .map(|&s| (s, Claim::Sold))
        .chain(holds)
        .chain(orders)
    {
        prop_assert!(
            world.layout.contains(seat) && !world.blocked.contains(&seat),
            "{:?} on seat {} outside the layout or blocked",
            claim,
            seat
        );
        if let Some(other) = claims.insert(seat, claim) {
            prop_assert!(
                false,
                "seat {} is claimed twice at {}: {:?} and {:?}",
                seat,
                now,
                other,
                claim
            );
        }
    }
    Ok(claims)
}

/// The engine's seat map (and free count) is exactly what the claims imply: a seat of a pending
/// or confirmed order reads BOOKED, a seat of a live hold HELD, any other seat AVAILABLE (or
/// BLOCKED).
pub fn check_seat_map(
    world: &World,
    engine: &mut DecisionEngine,
    claims: &BTreeMap<SeatId, Claim>,
    statuses: &Statuses,
    now: DateTime<Utc>,
) -> Result<(), TestCaseError> {
    for (&seat, &status) in statuses {
        let want = match claims.get(&seat) {
            _ if world.blocked.contains(&seat) => SeatStatus::Blocked,
            Some(Claim::Hold(_)) => SeatStatus::Held,
            Some(_) => SeatStatus::Booked,
            None => SeatStatus::Available,
        };
        prop_assert_eq!(
            status,
            want,
            "status of {} at {} ({:?})",
            seat,
            now,
            claims.get(&seat)
        );
    }
    let available = statuses
        .values()
        .filter(|s| **s == SeatStatus::Available)
        .count();
    prop_assert_eq!(engine.available_count(now), available, "available_count");
    Ok(())
}

/// A batch's state just after it was loaded into a fresh engine, before any request.
pub struct Loaded<'a> {
    /// The batch's world: its `snapshot` is what was loaded.
    pub world: &'a World,
    pub engine: &'a mut DecisionEngine,
    pub now: DateTime<Utc>,
    pub ledger: &'a Ledger,
    pub book: &'a OrderBook,
    /// Seats sold before the run began.
    pub sold: &'a BTreeSet<SeatId>,
    pub statuses: &'a Statuses,
}

/// One decision of a batch: the [`Step`] (its `world` the batch's, its model built from the
/// loaded snapshot) and the orders as they stand during the batch.
pub struct OrderStep<'a> {
    pub step: Step<'a>,
    pub book: &'a OrderBook,
    pub sold: &'a BTreeSet<SeatId>,
}

/// Runs a scenario with orders: before each batch, applies its actions at the batch's `now`,
/// loads the state as a store would into a fresh engine (handing it to `on_load`), then decides
/// the batch one request at a time (handing each decision to `on_decide`) and records the grants
/// in the ledger, which carries the holds over to the next batch. Also checks that deciding the
/// batch at once, as the stores do, decides the same.
pub fn drive_orders(
    os: &OrderScenario,
    mut on_load: impl FnMut(Loaded<'_>) -> Result<(), TestCaseError>,
    mut on_decide: impl FnMut(OrderStep<'_>) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    let start = build(&os.scenario, true);
    let sold: BTreeSet<SeatId> = start.snapshot.booked.iter().copied().collect();
    let mut ledger = Ledger::new(&start);
    let mut book = OrderBook::default();
    // Asked requests get ids far from the scenario's (which count up from 1).
    let mut next_ask = 1u128 << 64;
    for (k, (now, scheduled)) in start.batches.iter().enumerate() {
        let now = *now;
        let mut requests = scheduled.clone();
        for action in os.actions.get(k).into_iter().flatten() {
            if let Some((at, mut ask)) = book.apply(&mut ledger, &start.layout, action, now)? {
                next_ask += 1;
                ask.request_id = RequestId::from_uuid(Uuid::from_u128(next_ask));
                requests.insert(at as usize % (requests.len() + 1), ask);
            }
        }
        let world = World {
            layout: start.layout.clone(),
            blocked: start.blocked.clone(),
            snapshot: book.load(&ledger, &sold, now),
            batches: vec![],
        };
        let mut engine = world.engine();
        let loaded = statuses(&mut engine, &world, now);
        on_load(Loaded {
            world: &world,
            engine: &mut engine,
            now,
            ledger: &ledger,
            book: &book,
            sold: &sold,
            statuses: &loaded,
        })?;
        let mut model = Model::new(&world);
        let mut decisions = Vec::with_capacity(requests.len());
        for request in &requests {
            let before = statuses(&mut engine, &world, now);
            let live_before = engine.live_hold_of(&request.user_id, now);
            let model_before = model.clone();
            let ledger_before = ledger.clone();
            let decision = engine.decide(request.clone(), now);
            let expected = model.decide(request, now);
            ledger.record(&decision, now);
            let after = statuses(&mut engine, &world, now);
            on_decide(OrderStep {
                step: Step {
                    world: &world,
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
                },
                book: &book,
                sold: &sold,
            })?;
            decisions.push(decision);
        }
        let batched = world.engine().decide_batch(requests, now);
        prop_assert_eq!(batched.decisions, decisions, "decide_batch at {}", now);
    }
    Ok(())
}

/// Whether a request is well formed: some seats, all in the layout, none blocked, none twice.
fn valid(world: &World, request: &PendingRequest) -> bool {
    !request.seat_ids.is_empty()
        && request.seat_ids.iter().enumerate().all(|(k, seat)| {
            world.layout.contains(*seat)
                && !world.blocked.contains(seat)
                && !request.seat_ids[..k].contains(seat)
        })
}

// 256 cases each by default, like the other properties: see the crate docs in `main.rs` for a
// longer hunt.
proptest! {
    /// Across batches with holds converted into orders, orders confirmed, failed, cancelled and
    /// run out between them: at every load and after every decision, no seat is in two of {a
    /// live hold, a pending order, a confirmed order, sold}, no grant releases anything but a
    /// live hold, and the engine's seat map (and free count) is exactly what those claims imply.
    #[test]
    fn holds_and_orders_never_share_a_seat(os in order_scenario()) {
        drive_orders(
            &os,
            |l| {
                let claims = claims(l.world, l.ledger, l.book, l.sold, l.now)?;
                check_seat_map(l.world, l.engine, &claims, l.statuses, l.now)
            },
            |o| {
                let s = o.step;
                prop_assert!(s.ledger_after.bad_releases.is_empty(), "released {:?}", s.ledger_after.bad_releases);
                let claims = claims(s.world, s.ledger_after, o.book, o.sold, s.now)?;
                check_seat_map(s.world, s.engine, &claims, s.after, s.now)
            },
        )?;
    }

    /// The engine never grants a seat of a pending or confirmed order, not even to the order's
    /// own buyer: a request naming one is REJECTED with every such seat among the unavailable
    /// ones (unless it is malformed or overdue), and such a seat is never offered as an
    /// alternative.
    #[test]
    fn the_engine_never_grants_a_seat_of_an_order(os in order_scenario()) {
        drive_orders(&os, |_| Ok(()), |o| {
            let s = o.step;
            let owned = o.book.owned_seats(s.now);
            let ordered: Vec<SeatId> = s.request.seat_ids.iter().copied().filter(|x| owned.contains_key(x)).collect();
            match s.decision {
                Decision::Granted { seat_ids, .. } => {
                    for seat in seat_ids {
                        prop_assert!(!owned.contains_key(seat), "granted seat {} of {:?}", seat, owned[seat]);
                    }
                }
                Decision::Rejected { unavailable, alternatives, .. } => {
                    for seat in &ordered {
                        prop_assert!(unavailable.contains(seat), "ordered seat {} not unavailable: {:?}", seat, unavailable);
                    }
                    for seat in alternatives {
                        prop_assert!(!owned.contains_key(seat), "offered seat {} of {:?}", seat, owned[seat]);
                    }
                }
                _ => {}
            }
            if !ordered.is_empty() && s.request.expires_at > s.now && valid(s.world, s.request) {
                prop_assert!(matches!(s.decision, Decision::Rejected { .. }), "{:?} asks for ordered seats {:?}: {:?}", s.request, ordered, s.decision);
            }
            Ok(())
        })?;
    }

    /// A seat freed by an ended order (FAILED, EXPIRED by time or by sweep, CANCELLED while
    /// pending or once confirmed) can be granted again: unless a live hold has taken it since,
    /// it reads AVAILABLE once loaded, and a well-formed, timely request that no live hold of
    /// another user, no standing order and no sale stands in the way of is GRANTED.
    #[test]
    fn seats_of_ended_orders_can_be_held_again(os in order_scenario()) {
        drive_orders(
            &os,
            |l| {
                let owned = l.book.owned_seats(l.now);
                for order in l.book.ended(l.now) {
                    for seat in &order.seat_ids {
                        let retaken = owned.contains_key(seat)
                            || l.ledger.holds.iter().any(|h| h.live(l.now) && h.seats.contains(seat));
                        if !retaken {
                            prop_assert_eq!(l.statuses[seat], SeatStatus::Available, "seat {} of ended order {:?}", seat, order);
                        }
                    }
                }
                Ok(())
            },
            |o| {
                let s = o.step;
                if s.request.expires_at <= s.now || !valid(s.world, s.request) {
                    return Ok(());
                }
                let owned = o.book.owned_seats(s.now);
                let blocked = |seat: &SeatId| {
                    o.sold.contains(seat)
                        || owned.contains_key(seat)
                        || s.ledger_before.holds.iter().any(|h| {
                            h.live(s.now) && h.user != s.request.user_id && h.seats.contains(seat)
                        })
                };
                if !s.request.seat_ids.iter().any(blocked) {
                    prop_assert!(
                        matches!(s.decision, Decision::Granted { .. }),
                        "nothing stands on {:?} (ended orders: {:?}): {:?}",
                        s.request.seat_ids, o.book.ended(s.now).map(|o| &o.seat_ids).collect::<Vec<_>>(), s.decision
                    );
                }
                Ok(())
            },
        )?;
    }

    /// Deciding each batch afresh from the state the stores load (holds granted by earlier
    /// engines, seats of standing orders booked) gives the reference model's decisions: same
    /// kind, same hold and expiry, the same previous hold released, exactly the taken seats named.
    #[test]
    fn decisions_across_orders_follow_the_model(os in order_scenario()) {
        drive_orders(&os, |_| Ok(()), |o| {
            let s = o.step;
            prop_assert_eq!(kind(s.decision), expected_kind(s.expected), "{:?}: engine {:?}, model {:?}", s.request, s.decision, s.expected);
            match (s.decision, s.expected) {
                (
                    Decision::Granted { hold_id, seat_ids, expires_at, released, .. },
                    Expected::Granted { released: want_released, expires_at: want_expiry },
                ) => {
                    prop_assert_eq!(seat_ids, &s.request.seat_ids);
                    prop_assert_eq!(*hold_id, HoldId::for_request(s.request.request_id));
                    prop_assert_eq!(expires_at, want_expiry);
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

    /// A user's new hold releases only their previous live hold, never their order: once a
    /// user's hold has become an order they have no live hold (`live_hold_of` says so from the
    /// first load on), their next grant releases nothing, and their orders' seats stay BOOKED
    /// through it.
    #[test]
    fn a_new_hold_never_releases_an_order(os in order_scenario()) {
        drive_orders(
            &os,
            |l| {
                for u in users() {
                    let live: Vec<HoldId> = l.ledger.live_of(&u, l.now).map(|h| h.id).collect();
                    prop_assert!(live.len() <= 1, "{} has live holds {:?}", u, live);
                    prop_assert_eq!(l.engine.live_hold_of(&u, l.now), live.first().copied(), "live hold of {}", u);
                }
                Ok(())
            },
            |o| {
                let s = o.step;
                let previous = s.ledger_before.live_of(&s.request.user_id, s.now).map(|h| h.id).next();
                prop_assert_eq!(s.live_before, previous, "live hold of {}", s.request.user_id);
                let Decision::Granted { released, .. } = s.decision else { return Ok(()) };
                prop_assert_eq!(*released, previous, "released");
                if let Some(r) = released {
                    let order = o.book.orders.iter().find(|x| x.hold_id == *r);
                    prop_assert!(order.is_none(), "grant released {} of {:?}", r, order);
                }
                for order in o.book.owning(s.now).filter(|x| x.user_id == s.request.user_id) {
                    for seat in &order.seat_ids {
                        prop_assert_eq!(s.after[seat], SeatStatus::Booked, "seat {} of {:?} after the user's new hold", seat, order);
                    }
                }
                Ok(())
            },
        )?;
    }
}
