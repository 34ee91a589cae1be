//! A show's waiting room, as pure rules: who has a place, in which order they are let in, how
//! fast, and when a place or an admission is given up. No I/O and no clock of its own: the
//! stores keep a room's state, and the processes call these rules with the time and the
//! randomness (so that tests can replay any history).
//!
//! Order. Whoever arrives before the sale opens joins a *pre-queue*; at the opening its order is
//! drawn once, a uniform shuffle from a seed drawn at that moment, so arriving first by a
//! millisecond (or by a bot farm's head start) buys nothing. Whoever arrives later queues behind
//! the pre-queue in arrival order. One user holds at most one place per room.
//!
//! Admission. Places are let in, in order, at the room's rate (a bucket of one second's worth,
//! so a quiet room does not bank a surge), and never beyond `max_active` shoppers at once when
//! that is set. An admitted user has `admission_ttl` to start shopping (their first hold); a
//! shopper counts as active until they finish (bought, or left) or `shopping_ttl` passes. Either
//! way their capacity comes back at once: an admission nobody uses cannot stall the room.
//!
//! Switching itself on. A room may be *armed* instead of on: it lets everyone shop until the
//! show's hold requests go over a rate, then switches itself on, opening at that instant (who
//! joined while it was armed is its pre-queue). The processes that take the requests count them
//! and report the counts ([`DemandMeter`]), so the rate is the whole deployment's.
//!
//! Estimates. A waiting place's estimated wait is its position over the pace the room has
//! *measured* ([`AdmissionPace`]), not the rate it was set to: when `max_active` binds, or
//! shoppers take longer than hoped, the set rate would promise what the room does not do.
//!
//! Abandonment. A waiting place must be seen (a poll of it) within `grace`, or it is given up
//! and skipped, so a closed tab does not hold the queue; a short disconnect keeps it.

use crate::ids::UserId;
use crate::rng::SplitMix64;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;

/// How a room lets people in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPolicy {
    /// When the sale opens: the pre-queue's order is drawn then, and admission starts.
    pub opens_at: DateTime<Utc>,
    /// Admissions per second (at least 1).
    pub admit_per_second: u32,
    /// At most this many admitted or shopping at once, if set.
    pub max_active: Option<u32>,
    /// How long an admission waits for its first use.
    pub admission_ttl: Duration,
    /// How long a shopper counts as active at most.
    pub shopping_ttl: Duration,
    /// How long a waiting place stays without being seen.
    pub grace: Duration,
    /// Set: the room is armed, not on. It switches itself on (opening at that instant) once
    /// the show's hold requests go over this many a second ([`DemandMeter`]); until then
    /// holds need no admission.
    pub switch_on_above: Option<u32>,
}

/// Where a place is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceState {
    Waiting,
    /// Let in; must start shopping before `expires_at`.
    Admitted {
        expires_at: DateTime<Utc>,
    },
    /// Shopping since `since`.
    Shopping {
        since: DateTime<Utc>,
    },
    /// Bought, or left: its capacity is back.
    Done,
    /// Not seen within the grace period while waiting.
    Abandoned,
    /// Admitted, but the admission or the shopping time ran out.
    Expired,
}

impl PlaceState {
    /// Admitted or shopping: what `max_active` counts.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Admitted { .. } | Self::Shopping { .. })
    }

    /// Waiting, admitted or shopping: the one place a user may have in a room.
    pub fn is_live(self) -> bool {
        self == Self::Waiting || self.is_active()
    }

    /// The state a store kept as its name and its two instants (the admission's deadline, the
    /// start of shopping); `None` if they do not make a state.
    pub fn from_parts(
        name: &str,
        admitted_until: Option<DateTime<Utc>>,
        shopping_since: Option<DateTime<Utc>>,
    ) -> Option<Self> {
        Some(match name {
            "WAITING" => Self::Waiting,
            "ADMITTED" => Self::Admitted {
                expires_at: admitted_until?,
            },
            "SHOPPING" => Self::Shopping {
                since: shopping_since?,
            },
            "DONE" => Self::Done,
            "ABANDONED" => Self::Abandoned,
            "EXPIRED" => Self::Expired,
            _ => return None,
        })
    }

    /// What a hold at `now` does to a place in this state: `Ok(Some(shopping))` starts its
    /// shopping session, `Ok(None)` is a hold within a session already started (and not past
    /// `shopping_ttl`: a lapsed session is over at once, whether or not a tick has marked it).
    pub fn start_shopping(
        self,
        now: DateTime<Utc>,
        shopping_ttl: Duration,
    ) -> Result<Option<Self>, AdmissionError> {
        match self {
            Self::Admitted { expires_at } if now < expires_at => {
                Ok(Some(Self::Shopping { since: now }))
            }
            Self::Shopping { since } if now - since < shopping_ttl => Ok(None),
            Self::Admitted { .. } | Self::Shopping { .. } | Self::Expired => {
                Err(AdmissionError::Expired)
            }
            Self::Waiting | Self::Done | Self::Abandoned => Err(AdmissionError::NotAdmitted),
        }
    }

    /// The state as it stands at `now`: an admission or a shopping session whose time has run
    /// out is over, whether or not a tick has marked it yet (so a place never shows a token
    /// that a hold would refuse). The tick's rules, applied to one place.
    pub fn as_of(self, now: DateTime<Utc>, shopping_ttl: Duration) -> Self {
        match self {
            Self::Admitted { expires_at } if now >= expires_at => Self::Expired,
            Self::Shopping { since } if now - since >= shopping_ttl => Self::Expired,
            state => state,
        }
    }

    /// The state's name, as the API and the stores spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Waiting => "WAITING",
            Self::Admitted { .. } => "ADMITTED",
            Self::Shopping { .. } => "SHOPPING",
            Self::Done => "DONE",
            Self::Abandoned => "ABANDONED",
            Self::Expired => "EXPIRED",
        }
    }
}

/// How many places of a room are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomCounts {
    pub waiting: u64,
    pub admitted: u64,
    pub shopping: u64,
    /// Bought, or left.
    pub done: u64,
    pub abandoned: u64,
    pub expired: u64,
}

impl RoomCounts {
    /// Counts one place in `state`.
    pub fn add(&mut self, state: PlaceState, count: u64) {
        let cell = match state {
            PlaceState::Waiting => &mut self.waiting,
            PlaceState::Admitted { .. } => &mut self.admitted,
            PlaceState::Shopping { .. } => &mut self.shopping,
            PlaceState::Done => &mut self.done,
            PlaceState::Abandoned => &mut self.abandoned,
            PlaceState::Expired => &mut self.expired,
        };
        *cell += count;
    }

    /// Counts `count` places in the state named `name`; false if no state has that name.
    pub fn add_named(&mut self, name: &str, count: u64) -> bool {
        let epoch = Some(DateTime::<Utc>::UNIX_EPOCH);
        match PlaceState::from_parts(name, epoch, epoch) {
            Some(state) => {
                self.add(state, count);
                true
            }
            None => false,
        }
    }

    /// Admitted or shopping.
    pub fn active(&self) -> u64 {
        self.admitted + self.shopping
    }
}

/// A user's place and, while it waits and the order is drawn, its position (1 = next).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceStatus {
    pub place: Place,
    pub position: Option<u64>,
}

/// One user's place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The place's number, in arrival order (1, 2, …): unique in its room.
    pub ticket: u64,
    pub user: UserId,
    pub joined_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub state: PlaceState,
}

/// What `join` found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub ticket: u64,
    /// False when the user already had a live place (which is kept: one place per user).
    pub created: bool,
}

/// What a `tick` changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tick {
    /// Let in now, in order: (ticket, user, admission deadline).
    pub admitted: Vec<(u64, UserId, DateTime<Utc>)>,
    /// Waiting places given up for not being seen.
    pub abandoned: Vec<u64>,
    /// Admissions or shopping sessions that ran out.
    pub expired: Vec<u64>,
}

/// Why an admission cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("no place in this waiting room")]
    NoPlace,
    #[error("not admitted yet")]
    NotAdmitted,
    #[error("the admission has expired")]
    Expired,
}

/// One room's state.
#[derive(Debug, Clone)]
pub struct Room {
    policy: RoomPolicy,
    /// Every place, by ticket order; `order` says the admission order.
    places: Vec<Place>,
    by_user: HashMap<UserId, usize>,
    /// Indexes into `places`, in admission order; fixed for the pre-queue at the opening.
    order: Vec<usize>,
    /// How far admission has got in `order`.
    next: usize,
    opened: bool,
    credit: AdmissionCredit,
    pace: AdmissionPace,
    /// Waiting to switch itself on ([`RoomPolicy::switch_on_above`]).
    armed: bool,
    demand: DemandMeter,
}

/// How long a window of demand lasts before its count starts again.
pub const DEMAND_WINDOW: Duration = Duration::seconds(5);

/// How often, at most, a process reports the hold requests it counted for an armed room; a
/// report stands for that long before it at least.
pub const DEMAND_REPORT_EVERY: Duration = Duration::milliseconds(500);

/// An armed room's measure of demand: the hold requests reported since the window began.
/// The rate is over at least a second, so one burst of a few requests does not trip a room
/// set to a higher rate. The stores keep its two numbers with the room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DemandMeter {
    /// When the current window began.
    pub since: Option<DateTime<Utc>>,
    /// Requests reported within it.
    pub requests: u64,
}

impl DemandMeter {
    /// Adds a report of `requests` at `now`; true if the rate so far in the window is above
    /// `per_second`.
    pub fn record(&mut self, now: DateTime<Utc>, requests: u64, per_second: u32) -> bool {
        let since = match self.since {
            Some(since) if now - since < DEMAND_WINDOW => since,
            // A new window; its first report stands for the time before it.
            _ => {
                self.requests = 0;
                now - DEMAND_REPORT_EVERY
            }
        };
        self.since = Some(since);
        self.requests += requests;
        let elapsed_ms = (now - since).num_milliseconds().max(1_000) as u64;
        self.requests * 1_000 > u64::from(per_second) * elapsed_ms
    }
}

/// How long the room's pace is measured over before its figure is renewed.
pub const PACE_WINDOW: Duration = Duration::seconds(10);

/// How fast a room has been letting people in while people were waiting: admissions counted
/// over windows of [`PACE_WINDOW`], each window's figure replacing the last. A window only
/// measures while someone waits at every tick of it: when the queue runs dry the pace is the
/// arrivals', not the room's, so the window starts again (and the last figure stands). Before a
/// first full window the set rate is the estimate. The stores keep its three numbers with the
/// room and call the same rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdmissionPace {
    /// When the current window began; `None` while nobody waits.
    pub since: Option<DateTime<Utc>>,
    /// Admitted within the current window.
    pub admitted: u64,
    /// Thousandths of an admission per second over the last full window, if there was one.
    pub measured_milli: Option<u64>,
}

impl AdmissionPace {
    /// A tick at `now` let in `admitted`; `still_waiting`: someone waits with a position after
    /// it.
    pub fn record(&mut self, now: DateTime<Utc>, admitted: u64, still_waiting: bool) {
        if !still_waiting {
            self.since = None;
            self.admitted = 0;
            return;
        }
        let Some(since) = self.since else {
            // This tick's admissions were earned before the window: it starts counting after.
            self.since = Some(now);
            self.admitted = 0;
            return;
        };
        self.admitted += admitted;
        let elapsed_ms = (now - since).num_milliseconds();
        if elapsed_ms >= PACE_WINDOW.num_milliseconds() {
            self.measured_milli = Some(self.admitted * 1_000_000 / elapsed_ms as u64);
            self.since = Some(now);
            self.admitted = 0;
        }
    }

    /// Admissions per second, in thousandths: the measured pace, or the set rate before there
    /// is a measure.
    pub fn per_second_milli(&self, policy: &RoomPolicy) -> u64 {
        self.measured_milli
            .unwrap_or(u64::from(policy.admit_per_second.max(1)) * 1_000)
    }

    /// About how many seconds the place at `position` (1 = next) waits; `None` when the room
    /// let nobody in over its last window (every shopper's session is still running).
    pub fn estimated_wait_seconds(&self, policy: &RoomPolicy, position: u64) -> Option<u64> {
        match self.per_second_milli(policy) {
            0 => None,
            milli => Some((position * 1_000).div_ceil(milli)),
        }
    }
}

/// The admissions a room has earned and not spent: its rate's bucket, holding at most one
/// second's worth, so a quiet room does not bank a surge. The stores keep its two numbers with
/// the room and call the same rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdmissionCredit {
    /// In thousandths of an admission.
    pub milli: u64,
    /// When it was last earned up to.
    pub at: Option<DateTime<Utc>>,
}

impl AdmissionCredit {
    /// A full bucket at the opening: it may let in one second's worth at once.
    pub fn at_opening(rate: u32, now: DateTime<Utc>) -> Self {
        Self {
            milli: u64::from(rate.max(1)) * 1_000,
            at: Some(now),
        }
    }

    /// Adds what was earned since it was last earned up to, at most one second's worth. Whole
    /// milliseconds are earned; the part of one left over counts towards the next call (a tick
    /// every 200 ms would otherwise lose up to 0.5 % of the rate), unless the bucket is full.
    pub fn earn(&mut self, rate: u32, now: DateTime<Utc>) {
        let rate = u64::from(rate.max(1));
        let since = self.at.unwrap_or(now);
        let elapsed_ms = (now - since).num_milliseconds().max(0);
        let full = rate * 1_000;
        self.milli = self
            .milli
            .saturating_add((elapsed_ms as u64).saturating_mul(rate))
            .min(full);
        self.at = Some(if self.milli == full {
            now.max(since)
        } else {
            since + Duration::milliseconds(elapsed_ms)
        });
    }

    /// Whole admissions available.
    pub fn admissions(&self) -> u64 {
        self.milli / 1_000
    }

    /// Spends `count` admissions (at most what is available).
    pub fn spend(&mut self, count: u64) {
        self.milli -= count.min(self.admissions()) * 1_000;
    }
}

/// How many to let in now: what the credit allows, within the room left under `max_active`
/// with `active` admitted or shopping.
pub fn admissions_now(credit: &AdmissionCredit, max_active: Option<u32>, active: u64) -> u64 {
    let room_for = max_active.map_or(u64::MAX, |max| u64::from(max).saturating_sub(active));
    credit.admissions().min(room_for)
}

impl Room {
    pub fn new(policy: RoomPolicy) -> Self {
        Self {
            places: Vec::new(),
            by_user: HashMap::new(),
            order: Vec::new(),
            next: 0,
            opened: false,
            credit: AdmissionCredit::default(),
            pace: AdmissionPace::default(),
            armed: policy.switch_on_above.is_some(),
            demand: DemandMeter::default(),
            policy,
        }
    }

    /// Whether the room waits to switch itself on (holds need no admission yet).
    pub fn is_armed(&self) -> bool {
        self.armed
    }

    /// A process counted `requests` hold requests for the show: an armed room over its rate
    /// switches itself on, opening at `now`. True if this report did.
    pub fn record_demand(&mut self, now: DateTime<Utc>, requests: u64) -> bool {
        let Some(per_second) = self.policy.switch_on_above.filter(|_| self.armed) else {
            return false;
        };
        if !self.demand.record(now, requests, per_second) {
            return false;
        }
        self.armed = false;
        self.policy.opens_at = now;
        true
    }

    /// How fast the room has been letting people in.
    pub fn pace(&self) -> &AdmissionPace {
        &self.pace
    }

    pub fn policy(&self) -> &RoomPolicy {
        &self.policy
    }

    pub fn is_open(&self) -> bool {
        self.opened
    }

    /// The user's place, if they have one.
    pub fn place_of(&self, user: &UserId) -> Option<&Place> {
        self.by_user.get(user).map(|&i| &self.places[i])
    }

    /// Every place, in ticket order.
    pub fn places(&self) -> &[Place] {
        &self.places
    }

    /// How many places are in each state.
    pub fn counts(&self) -> RoomCounts {
        let mut counts = RoomCounts::default();
        for place in &self.places {
            counts.add(place.state, 1);
        }
        counts
    }

    /// Gives `user` a place, or finds their live one. A user whose place ended (done, abandoned,
    /// expired) joins again at the back.
    pub fn join(&mut self, user: &UserId, now: DateTime<Utc>) -> Joined {
        if let Some(&i) = self.by_user.get(user) {
            let place = &mut self.places[i];
            if matches!(
                place.state,
                PlaceState::Waiting | PlaceState::Admitted { .. } | PlaceState::Shopping { .. }
            ) {
                place.last_seen = now;
                return Joined {
                    ticket: place.ticket,
                    created: false,
                };
            }
        }
        let ticket = self.places.len() as u64 + 1;
        self.places.push(Place {
            ticket,
            user: user.clone(),
            joined_at: now,
            last_seen: now,
            state: PlaceState::Waiting,
        });
        let index = self.places.len() - 1;
        self.by_user.insert(user.clone(), index);
        // Before the opening the pre-queue's order is not known yet: it is drawn in `open`.
        if self.opened {
            self.order.push(index);
        }
        Joined {
            ticket,
            created: true,
        }
    }

    /// A sign of life from a waiting user (a poll, a ping): keeps their place.
    pub fn seen(&mut self, user: &UserId, now: DateTime<Utc>) {
        if let Some(&i) = self.by_user.get(user) {
            self.places[i].last_seen = now;
        }
    }

    /// Opens the room: the pre-queue (everyone who joined before) is shuffled uniformly with
    /// `seed`, which the caller draws at the opening from a secure source.
    pub fn open(&mut self, seed: [u8; 32], now: DateTime<Utc>) {
        if self.opened {
            return;
        }
        self.opened = true;
        self.credit = AdmissionCredit::at_opening(self.policy.admit_per_second, now);
        self.order = draw_order(self.places.len(), seed);
        // Whoever was in the pre-queue waited since the opening at the latest: a gap in their
        // signs of life before it does not count against them.
        for place in &mut self.places {
            place.last_seen = place.last_seen.max(now);
        }
    }

    /// The user's position among those still waiting (1 = next), once the order is drawn.
    pub fn position(&self, user: &UserId) -> Option<u64> {
        let &index = self.by_user.get(user)?;
        if self.places[index].state != PlaceState::Waiting || !self.opened {
            return None;
        }
        let ahead = self.order[self.next..]
            .iter()
            .take_while(|&&i| i != index)
            .filter(|&&i| self.places[i].state == PlaceState::Waiting)
            .count();
        Some(ahead as u64 + 1)
    }

    /// Places waiting now.
    pub fn waiting(&self) -> usize {
        self.places
            .iter()
            .filter(|p| p.state == PlaceState::Waiting)
            .count()
    }

    /// Places admitted or shopping now.
    pub fn active(&self) -> usize {
        self.places.iter().filter(|p| p.state.is_active()).count()
    }

    /// About how long the place at `position` waits, at the room's measured pace.
    pub fn estimated_wait_seconds(&self, position: u64) -> Option<u64> {
        self.pace.estimated_wait_seconds(&self.policy, position)
    }

    /// Moves the room to `now`: opens it when its time has come (with `seed`), gives up places
    /// not seen within the grace period and admissions or sessions that ran out, then lets in
    /// as many as the rate and `max_active` allow, in order.
    pub fn tick(&mut self, now: DateTime<Utc>, seed: impl FnOnce() -> [u8; 32]) -> Tick {
        let mut tick = Tick::default();
        if !self.opened {
            if self.armed || now < self.policy.opens_at {
                return tick;
            }
            self.open(seed(), now);
        }
        for place in &mut self.places {
            match place.state {
                PlaceState::Waiting if now - place.last_seen > self.policy.grace => {
                    place.state = PlaceState::Abandoned;
                    tick.abandoned.push(place.ticket);
                }
                PlaceState::Admitted { expires_at } if now >= expires_at => {
                    place.state = PlaceState::Expired;
                    tick.expired.push(place.ticket);
                }
                PlaceState::Shopping { since } if now - since >= self.policy.shopping_ttl => {
                    place.state = PlaceState::Expired;
                    tick.expired.push(place.ticket);
                }
                _ => {}
            }
        }
        self.credit.earn(self.policy.admit_per_second, now);
        let mut left = admissions_now(&self.credit, self.policy.max_active, self.active() as u64);
        while left > 0 && self.next < self.order.len() {
            let index = self.order[self.next];
            self.next += 1;
            let place = &mut self.places[index];
            if place.state != PlaceState::Waiting {
                continue;
            }
            let expires_at = now + self.policy.admission_ttl;
            place.state = PlaceState::Admitted { expires_at };
            tick.admitted
                .push((place.ticket, place.user.clone(), expires_at));
            self.credit.spend(1);
            left -= 1;
        }
        let still_waiting = self.order[self.next..]
            .iter()
            .any(|&i| self.places[i].state == PlaceState::Waiting);
        self.pace
            .record(now, tick.admitted.len() as u64, still_waiting);
        tick
    }

    /// The user's first hold: their admission becomes a shopping session.
    pub fn start_shopping(
        &mut self,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> Result<(), AdmissionError> {
        let &index = self.by_user.get(user).ok_or(AdmissionError::NoPlace)?;
        let place = &mut self.places[index];
        if let Some(shopping) = place.state.start_shopping(now, self.policy.shopping_ttl)? {
            place.state = shopping;
        }
        Ok(())
    }

    /// The user bought, or left: their capacity is free at once.
    pub fn finish(&mut self, user: &UserId) {
        if let Some(&index) = self.by_user.get(user) {
            let place = &mut self.places[index];
            if place.state.is_active() || place.state == PlaceState::Waiting {
                place.state = PlaceState::Done;
            }
        }
    }
}

/// The rank (1 = first let in) of each of the pre-queue's `count` places, tickets `1..=count`
/// in that order: the stores' form of [`draw_order`].
pub fn pre_queue_ranks(count: u64, seed: [u8; 32]) -> Vec<u64> {
    let order = draw_order(count as usize, seed);
    let mut ranks = vec![0; order.len()];
    for (rank, &index) in order.iter().enumerate() {
        ranks[index] = rank as u64 + 1;
    }
    ranks
}

/// The pre-queue's admission order for `count` places (indexes `0..count` in ticket order):
/// Fisher–Yates with a generator seeded by `seed`, every order equally likely. The stores call
/// this too, so a room draws the same order from the same seed wherever it is kept.
pub fn draw_order(count: usize, seed: [u8; 32]) -> Vec<usize> {
    let mut items: Vec<usize> = (0..count).collect();
    let mut rng = SplitMix64::from_seed(seed);
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_800_000_000_000 + ms).unwrap()
    }

    fn user(i: usize) -> UserId {
        format!("user-{i}").parse().unwrap()
    }

    fn policy() -> RoomPolicy {
        RoomPolicy {
            opens_at: at(0),
            admit_per_second: 10,
            max_active: None,
            admission_ttl: Duration::seconds(60),
            shopping_ttl: Duration::minutes(15),
            grace: Duration::seconds(30),
            switch_on_above: None,
        }
    }

    fn seed(run: u64) -> [u8; 32] {
        let mut rng = SplitMix64::new(run);
        let mut seed = [0u8; 32];
        for chunk in seed.chunks_exact_mut(8) {
            chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
        }
        seed
    }

    /// The users admitted by `tick`s until nobody is waiting, in order.
    fn admission_order(room: &mut Room, from_ms: i64) -> Vec<UserId> {
        let mut order = Vec::new();
        let mut now = from_ms;
        while room.waiting() > 0 {
            order.extend(
                room.tick(at(now), || seed(0))
                    .admitted
                    .into_iter()
                    .map(|a| a.1),
            );
            now += 1_000;
        }
        order
    }

    /// Pearson's chi-square of `counts` against a uniform expectation.
    fn chi_square(counts: &HashMap<Vec<usize>, u64>, cells: usize, runs: u64) -> f64 {
        let expected = runs as f64 / cells as f64;
        let seen: f64 = counts
            .values()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        seen + (cells - counts.len()) as f64 * expected
    }

    #[test]
    fn the_pre_queue_is_shuffled_uniformly() {
        // Five users who joined before the opening, in the same order every run; over 60,000
        // openings every one of the 120 orders must come up about equally often. The seeds are
        // fixed, so the test is deterministic; 180 is the chi-square of 119 degrees of freedom
        // that a uniform shuffle exceeds with a probability of about 0.0002.
        const RUNS: u64 = 60_000;
        let mut counts: HashMap<Vec<usize>, u64> = HashMap::new();
        for run in 0..RUNS {
            let mut room = Room::new(RoomPolicy {
                admit_per_second: 100,
                ..policy()
            });
            for i in 0..5 {
                room.join(&user(i), at(-1_000 + i as i64));
            }
            room.open(seed(run), at(0));
            let order: Vec<usize> = admission_order(&mut room, 0)
                .iter()
                .map(|u| (0..5).position(|i| user(i) == *u).unwrap())
                .collect();
            *counts.entry(order).or_default() += 1;
        }
        let statistic = chi_square(&counts, 120, RUNS);
        assert!(
            statistic < 180.0,
            "chi-square {statistic:.1} over 119 degrees of freedom"
        );

        // The statistic has the power to see a biased shuffle: the classic mistake (swap each
        // item with any item, not only with those not yet placed) fails it by far.
        let mut biased: HashMap<Vec<usize>, u64> = HashMap::new();
        for run in 0..RUNS {
            let mut items: Vec<usize> = (0..5).collect();
            let mut rng = SplitMix64::from_seed(seed(run));
            for i in 0..5 {
                let j = rng.below(5) as usize;
                items.swap(i, j);
            }
            *biased.entry(items).or_default() += 1;
        }
        let biased = chi_square(&biased, 120, RUNS);
        assert!(biased > 1_000.0, "a biased shuffle reads {biased:.1}");
        println!(
            "chi-square over 119 degrees of freedom: {statistic:.1}; biased shuffle: {biased:.1}"
        );
    }

    #[test]
    fn the_order_is_unknown_before_the_opening_and_later_arrivals_queue_behind() {
        let mut room = Room::new(policy());
        for i in 0..3 {
            room.join(&user(i), at(-500));
        }
        assert_eq!(
            room.position(&user(0)),
            None,
            "not drawn before the opening"
        );
        assert!(room.tick(at(-1), || seed(1)).admitted.is_empty());
        room.open(seed(1), at(0));
        for i in 3..40 {
            room.join(&user(i), at(i as i64));
        }
        let positions: Vec<u64> = (0..40).map(|i| room.position(&user(i)).unwrap()).collect();
        let mut sorted = positions.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (1..=40).collect::<Vec<u64>>());
        // The pre-queue first (in its drawn order), then arrival order.
        assert!(positions[..3].iter().all(|&p| p <= 3), "{positions:?}");
        assert_eq!(positions[3..], (4..=40).collect::<Vec<u64>>()[..]);
        let order = admission_order(&mut room, 0);
        assert_eq!(order[3..], (3..40).map(user).collect::<Vec<_>>()[..]);
        assert_eq!(
            room.estimated_wait_seconds(25),
            Some(3),
            "before a measure: the set rate"
        );
    }

    #[test]
    fn admission_keeps_to_the_rate_without_banking_a_surge() {
        let mut room = Room::new(policy()); // 10 a second
        for i in 0..200 {
            room.join(&user(i), at(-1_000));
        }
        let mut admitted = 0;
        for step in 0..=50 {
            let now = step * 100; // every 100 ms for 5 s
            for i in 0..200 {
                room.seen(&user(i), at(now));
            }
            admitted += room.tick(at(now), || seed(2)).admitted.len();
            // One second's worth at the opening, then 10 a second.
            assert!(admitted as i64 <= 10 + now / 100, "{admitted} by {now} ms");
        }
        assert_eq!(admitted, 60);

        // A room idle for a minute lets in one second's worth at once, not a minute's.
        let mut room = Room::new(policy());
        room.tick(at(0), || seed(3));
        for i in 0..100 {
            room.join(&user(i), at(60_000));
        }
        assert_eq!(room.tick(at(60_000), || seed(3)).admitted.len(), 10);
    }

    #[test]
    fn the_estimate_follows_the_measured_pace_not_the_set_rate() {
        // Set to 10 a second, but at most 2 shop at once, each for 4 s: about 0.5 a second.
        let mut room = Room::new(RoomPolicy {
            max_active: Some(2),
            ..policy()
        });
        for i in 0..100 {
            room.join(&user(i), at(-1));
        }
        let mut shopping: Vec<(UserId, i64)> = Vec::new();
        for step in 0..=120 {
            let now = step * 250; // 30 s of ticks
            for i in 0..100 {
                room.seen(&user(i), at(now));
            }
            for (who, since) in std::mem::take(&mut shopping) {
                if now - since >= 4_000 {
                    room.finish(&who);
                } else {
                    shopping.push((who, since));
                }
            }
            for (_, who, _) in room.tick(at(now), || seed(9)).admitted {
                room.start_shopping(&who, at(now)).unwrap();
                shopping.push((who, now));
            }
        }
        let measured = room.pace().measured_milli.expect("a full window");
        assert!((400..=600).contains(&measured), "{measured} milli/s");
        // 20th in line: about 40 s at the measured pace, not the 2 s the set rate promises.
        let wait = room.estimated_wait_seconds(20).unwrap();
        assert!((33..=50).contains(&wait), "{wait} s");

        // A room that let nobody in over a window has no estimate; one whose queue ran dry
        // keeps its last figure and starts measuring again.
        let mut pace = AdmissionPace::default();
        pace.record(at(0), 5, true);
        pace.record(at(10_000), 0, true);
        assert_eq!(pace.estimated_wait_seconds(&policy(), 1), None);
        pace.record(at(11_000), 3, false);
        assert_eq!((pace.since, pace.measured_milli), (None, Some(0)));
        pace.record(at(12_000), 7, true);
        pace.record(at(22_000), 40, true);
        assert_eq!(
            pace.measured_milli,
            Some(4_000),
            "40 over the 10 s after the restart"
        );
        assert_eq!(pace.estimated_wait_seconds(&policy(), 9), Some(3));
    }

    #[test]
    fn an_armed_room_switches_itself_on_above_its_rate_and_opens_then() {
        let mut room = Room::new(RoomPolicy {
            opens_at: at(0),
            switch_on_above: Some(50),
            ..policy()
        });
        room.join(&user(0), at(100));
        assert!(room.is_armed());
        assert!(
            room.tick(at(1_000), || seed(5)).admitted.is_empty(),
            "armed: not open"
        );
        assert!(!room.is_open());
        // 40 a second for three seconds: under the rate.
        for step in 1..=6 {
            assert!(!room.record_demand(at(1_000 + step * 500), 20), "{step}");
        }
        // A burst: 120 within a second, over it.
        assert!(!room.record_demand(at(4_500), 30));
        assert!(room.record_demand(at(5_000), 90));
        assert!(!room.is_armed());
        assert_eq!(room.policy().opens_at, at(5_000));
        // It opens at its next tick; whoever joined while it was armed is its pre-queue.
        let tick = room.tick(at(5_200), || seed(5));
        assert_eq!(tick.admitted.len(), 1);
        assert!(!room.record_demand(at(5_300), 10_000), "on already");

        // A room set without a rate is never armed.
        let mut plain = Room::new(policy());
        assert!(!plain.is_armed() && !plain.record_demand(at(0), 1_000_000));
    }

    #[test]
    fn demand_is_measured_over_a_second_at_least_and_in_windows() {
        let mut demand = DemandMeter::default();
        // Ten requests in one report: 10 a second, not 10 in 500 ms = 20 a second.
        assert!(!demand.record(at(0), 10, 10));
        assert!(demand.record(at(100), 1, 10));
        // A window ends: the count starts again.
        let mut demand = DemandMeter::default();
        assert!(!demand.record(at(0), 9, 10));
        assert!(!demand.record(at(6_000), 9, 10));
        assert_eq!(demand.requests, 9);
    }

    #[test]
    fn credit_keeps_the_part_of_a_millisecond_it_has_not_earned_yet() {
        // At 1,000 a second, ticks 1.5 ms apart earn 3 admissions over 3 ms, not 2.
        let mut credit = AdmissionCredit {
            milli: 0,
            at: Some(at(0)),
        };
        let half = Duration::microseconds(500);
        credit.earn(1_000, at(1) + half);
        credit.earn(1_000, at(3));
        assert_eq!(credit.admissions(), 3);
        // A full bucket does not bank the time past it.
        credit.earn(1_000, at(60_000));
        assert_eq!((credit.admissions(), credit.at), (1_000, Some(at(60_000))));
    }

    #[test]
    fn at_most_max_active_and_capacity_comes_back_at_once() {
        let mut room = Room::new(RoomPolicy {
            admit_per_second: 1_000,
            max_active: Some(3),
            admission_ttl: Duration::seconds(10),
            ..policy()
        });
        for i in 0..10 {
            room.join(&user(i), at(-1));
        }
        let first = room.tick(at(0), || seed(4)).admitted;
        assert_eq!(first.len(), 3);
        assert!(room.tick(at(1_000), || seed(4)).admitted.is_empty(), "full");

        // One buys, one leaves: two more at once.
        room.start_shopping(&first[0].1, at(1_500)).unwrap();
        room.finish(&first[0].1);
        room.finish(&first[1].1);
        assert_eq!(room.tick(at(2_000), || seed(4)).admitted.len(), 2);
        // One never comes back: at its deadline its place goes to the next.
        let late = room.tick(at(10_000), || seed(4));
        assert_eq!(late.expired, vec![first[2].0]);
        assert_eq!(late.admitted.len(), 1);
        assert_eq!(
            room.start_shopping(&first[2].1, at(10_001)),
            Err(AdmissionError::Expired)
        );
        assert_eq!(room.active(), 3);
    }

    #[test]
    fn a_place_not_seen_within_the_grace_period_is_skipped() {
        let mut room = Room::new(RoomPolicy {
            admit_per_second: 1,
            ..policy()
        });
        room.tick(at(0), || seed(5)); // opens
        for i in 0..3 {
            room.join(&user(i), at(1 + i as i64));
        }
        room.tick(at(10), || seed(5)); // user 0 admitted
        room.seen(&user(2), at(25_000)); // user 1 closed the tab
        let tick = room.tick(at(31_000), || seed(5));
        assert_eq!(tick.abandoned, vec![2]);
        assert_eq!(tick.admitted.len(), 1);
        assert_eq!(tick.admitted[0].1, user(2));
        assert_eq!(
            room.place_of(&user(1)).unwrap().state,
            PlaceState::Abandoned
        );
        // Joining again is a new place, at the back.
        let again = room.join(&user(1), at(32_000));
        assert!(again.created);
        assert_eq!(again.ticket, 4);
    }

    #[test]
    fn one_place_per_user_and_admission_is_needed_to_shop() {
        let mut room = Room::new(policy());
        let first = room.join(&user(1), at(-10));
        let second = room.join(&user(1), at(-5));
        assert_eq!(first.ticket, second.ticket);
        assert!(!second.created);
        assert_eq!(room.waiting(), 1);
        assert_eq!(
            room.start_shopping(&user(1), at(-1)),
            Err(AdmissionError::NotAdmitted)
        );
        assert_eq!(
            room.start_shopping(&user(2), at(-1)),
            Err(AdmissionError::NoPlace)
        );
        room.tick(at(0), || seed(6));
        assert_eq!(room.start_shopping(&user(1), at(1)), Ok(()));
        assert_eq!(room.start_shopping(&user(1), at(2)), Ok(()), "repeatable");
        // A session past its time is over at once, before any tick marks it.
        let lapsed = at(1) + policy().shopping_ttl;
        assert_eq!(
            room.start_shopping(&user(1), lapsed),
            Err(AdmissionError::Expired)
        );
    }
}
