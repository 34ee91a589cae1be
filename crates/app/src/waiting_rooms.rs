//! The waiting room as a use case: an admin switches a show's room on; arrivals join it and
//! poll their place; the ticker lets them in at the room's rate; `POST /holds` for the show then
//! needs the admission token their place carries.
//!
//! The rules are `booking_core::waiting_room`'s and the state is the store's
//! ([`WaitingRoomStore`]), so every process of a deployment, and a restarted local server, sees
//! the same room. What is this module's own: validating an admin's policy, minting and checking
//! admission tokens, knowing cheaply whether a show has a room at all (every hold request
//! asks; the answer is cached for [`ROOMS_CACHE_FOR`], so a room switched on by another process
//! applies within that time, and at once in this one), and counting the hold requests of an
//! armed room, whose reports switch it on when the deployment's demand goes over its rate.

use crate::admission::{Admission, AdmissionKey, AdmissionRefused};
use crate::error::BookingError;
use crate::service::BookingService;
use booking_core::ports::{ListedRoom, Notifier, RoomRules, RoomSummary, WaitingRoomStore};
use booking_core::protocol::ServerMessage;
use booking_core::waiting_room::{
    AdmissionError, DEMAND_REPORT_EVERY, PlaceState, PlaceStatus, RoomPolicy, Tick,
};
use booking_core::{Clock, ShowId, UserId};
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How long the set of shows with a room is trusted before it is read again.
pub const ROOMS_CACHE_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// How often, at most, a poll in this process moves a room on itself (where no ticker runs,
/// the pollers are what make the room advance).
const POLL_TICK_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// How often, at least, the ticker tells each waiting user their position over the WebSocket.
const POSITIONS_EVERY_AT_LEAST: std::time::Duration = std::time::Duration::from_secs(2);
/// How often, at most: a room's pushes are spread so that it sends about
/// `POSITIONS_PER_SECOND` messages a second however long its queue.
const POSITIONS_EVERY_AT_MOST: std::time::Duration = std::time::Duration::from_secs(30);
const POSITIONS_PER_SECOND: u64 = 5_000;

/// What an admin asks for: the room's policy, with defaults for what they leave out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSettings {
    /// Default: now (the room opens at its first tick).
    pub opens_at: Option<DateTime<Utc>>,
    pub admit_per_second: u32,
    pub max_active: Option<u32>,
    /// Default 120.
    pub admission_ttl_seconds: Option<u32>,
    /// Default 900.
    pub shopping_ttl_seconds: Option<u32>,
    /// Default 60.
    pub grace_seconds: Option<u32>,
    /// Set: the room is armed, and switches itself on above this many hold requests a second.
    pub switch_on_above: Option<u32>,
}

/// The bounds of each setting, as (lowest, highest).
pub const ADMIT_PER_SECOND: (u32, u32) = (1, 100_000);
pub const MAX_ACTIVE: (u32, u32) = (1, 1_000_000);
pub const ADMISSION_TTL_SECONDS: (u32, u32) = (10, 3_600);
pub const SHOPPING_TTL_SECONDS: (u32, u32) = (60, 7_200);
pub const GRACE_SECONDS: (u32, u32) = (5, 600);
pub const SWITCH_ON_ABOVE: (u32, u32) = (1, 1_000_000);

impl RoomSettings {
    /// The policy, or what is out of bounds.
    fn policy(&self, now: DateTime<Utc>) -> Result<RoomPolicy, BookingError> {
        fn within(name: &str, value: u32, (low, high): (u32, u32)) -> Result<u32, BookingError> {
            if (low..=high).contains(&value) {
                Ok(value)
            } else {
                Err(BookingError::InvalidWaitingRoom(format!(
                    "{name} must be between {low} and {high}"
                )))
            }
        }
        let seconds = |name, value: Option<u32>, default, bounds| {
            within(name, value.unwrap_or(default), bounds).map(|s| Duration::seconds(s.into()))
        };
        Ok(RoomPolicy {
            opens_at: self.opens_at.unwrap_or(now),
            admit_per_second: within("admitPerSecond", self.admit_per_second, ADMIT_PER_SECOND)?,
            max_active: self
                .max_active
                .map(|m| within("maxActive", m, MAX_ACTIVE))
                .transpose()?,
            admission_ttl: seconds(
                "admissionTtlSeconds",
                self.admission_ttl_seconds,
                120,
                ADMISSION_TTL_SECONDS,
            )?,
            shopping_ttl: seconds(
                "shoppingTtlSeconds",
                self.shopping_ttl_seconds,
                900,
                SHOPPING_TTL_SECONDS,
            )?,
            grace: seconds("graceSeconds", self.grace_seconds, 60, GRACE_SECONDS)?,
            switch_on_above: self
                .switch_on_above
                .map(|r| within("switchOnAbove", r, SWITCH_ON_ABOVE))
                .transpose()?,
        })
    }
}

/// A user's place as they see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceInfo {
    pub show: ShowId,
    pub ticket: u64,
    pub state: PlaceState,
    /// Waiting, once the order is drawn: 1 = next.
    pub position: Option<u64>,
    /// Waiting with a position: at the room's measured pace; `None` while the room lets
    /// nobody in (every shopper's session is still running).
    pub estimated_wait_seconds: Option<u64>,
    /// When the room opens (or opened); `None` while it is armed (it opens when demand
    /// switches it on).
    pub opens_at: Option<DateTime<Utc>>,
    /// Admitted or shopping: the token `POST /holds` for the show needs, and until when.
    pub admission: Option<(String, DateTime<Utc>)>,
    /// Admitted: the first hold must be asked for before this, or the admission lapses.
    pub admitted_until: Option<DateTime<Utc>>,
    /// Whether this join made the place (false: the user's live place was found).
    pub created: bool,
    /// The room's grace period: a waiting place not polled within it is given up.
    pub poll_within_seconds: u32,
}

/// Waiting rooms, for the HTTP routes and the ticker.
pub struct WaitingRooms {
    store: Arc<dyn WaitingRoomStore>,
    service: Arc<BookingService>,
    clock: Arc<dyn Clock>,
    key: AdmissionKey,
    /// Whether every process that serves this API signs with `key` (false: a key of this
    /// process's own, which the others would not honour: no room may be switched on).
    key_shared: bool,
    /// The shows with a room (armed ones with their rate), and when that was read.
    rooms: Mutex<Option<(Instant, Arc<Gates>)>>,
    /// The hold requests of each armed room counted since this process last reported them.
    demand: Mutex<HashMap<ShowId, Counted>>,
    /// When a poll in this process last moved each room on.
    polled_ticks: Mutex<HashMap<ShowId, Instant>>,
    /// Where admissions and positions are pushed.
    notifier: Arc<dyn Notifier>,
    /// When the ticker last pushed each room's positions.
    positions_pushed: Mutex<HashMap<ShowId, Instant>>,
}

impl WaitingRooms {
    pub fn new(
        store: Arc<dyn WaitingRoomStore>,
        service: Arc<BookingService>,
        clock: Arc<dyn Clock>,
        key: AdmissionKey,
        key_shared: bool,
        notifier: Arc<dyn Notifier>,
    ) -> Self {
        Self {
            store,
            service,
            clock,
            key,
            key_shared,
            rooms: Mutex::new(None),
            demand: Mutex::new(HashMap::new()),
            polled_ticks: Mutex::new(HashMap::new()),
            notifier,
            positions_pushed: Mutex::new(HashMap::new()),
        }
    }

    /// Switches the show's room on, or changes its policy (its places are kept).
    pub async fn configure(
        &self,
        raw_show: &str,
        settings: &RoomSettings,
    ) -> Result<RoomSummary, BookingError> {
        let show = self.service.require_show(raw_show).await?;
        if show.is_cancelled() {
            return Err(BookingError::ShowCancelled(show.show_id));
        }
        if !self.key_shared {
            return Err(BookingError::NoSharedAdmissionKey);
        }
        let policy = settings.policy(self.clock.now())?;
        self.store.put_room(show.show_id, &policy).await?;
        self.forget_rooms();
        self.summary(raw_show).await
    }

    /// Switches the show's room off: anyone may shop it again.
    pub async fn switch_off(&self, raw_show: &str) -> Result<ShowId, BookingError> {
        let show = self.service.require_show(raw_show).await?.show_id;
        let removed = self.store.remove_room(show).await?;
        self.forget_rooms();
        if removed {
            Ok(show)
        } else {
            Err(BookingError::WaitingRoomNotFound)
        }
    }

    /// The room as an admin sees it.
    pub async fn summary(&self, raw_show: &str) -> Result<RoomSummary, BookingError> {
        let show = self.service.require_show(raw_show).await?.show_id;
        self.store
            .room(show)
            .await?
            .ok_or(BookingError::WaitingRoomNotFound)
    }

    /// Gives the caller a place in the show's room, or finds their live one.
    pub async fn join(&self, user: &UserId, raw_show: &str) -> Result<PlaceInfo, BookingError> {
        let show = self.service.require_show(raw_show).await?.show_id;
        let now = self.clock.now();
        let joined = self
            .store
            .join_room(show, user, now)
            .await?
            .ok_or(BookingError::WaitingRoomNotFound)?;
        let mut place = self.place(show, user, None).await?;
        place.created = joined.created;
        Ok(place)
    }

    /// The caller's place, and a sign of life that keeps it.
    pub async fn poll(&self, user: &UserId, raw_show: &str) -> Result<PlaceInfo, BookingError> {
        let show = self.service.require_show(raw_show).await?.show_id;
        // The poll answers with the place whatever the tick came to: a tick that failed is
        // tried again by the next poll or the ticker.
        if self.poll_may_tick(show)
            && let Err(e) = self.tick(show).await
        {
            tracing::warn!(show_id = %show, error = %booking_core::Chain(&e), "a poll's waiting-room tick failed");
        }
        self.place(show, user, Some(self.clock.now())).await
    }

    /// The caller leaves (or is done): their place, or their capacity, goes to the next.
    pub async fn leave(&self, user: &UserId, raw_show: &str) -> Result<(), BookingError> {
        let show = self.service.require_show(raw_show).await?.show_id;
        if self.store.room_rules(show).await?.is_none() {
            return Err(BookingError::WaitingRoomNotFound);
        }
        self.store.finish_place(show, user).await?;
        Ok(())
    }

    /// A purchase ended the user's shopping: their capacity goes to the next at once.
    pub async fn bought(&self, user: &UserId, show: ShowId) -> Result<(), BookingError> {
        if self.gate(show).await?.is_some() {
            self.store.finish_place(show, user).await?;
        }
        Ok(())
    }

    async fn place(
        &self,
        show: ShowId,
        user: &UserId,
        seen_at: Option<DateTime<Utc>>,
    ) -> Result<PlaceInfo, BookingError> {
        let RoomRules {
            policy,
            armed,
            pace,
        } = self
            .store
            .room_rules(show)
            .await?
            .ok_or(BookingError::WaitingRoomNotFound)?;
        let PlaceStatus {
            mut place,
            position,
        } = self
            .store
            .place(show, user, seen_at)
            .await?
            .ok_or(BookingError::NotInWaitingRoom)?;
        place.state = place.state.as_of(
            seen_at.unwrap_or_else(|| self.clock.now()),
            policy.shopping_ttl,
        );
        let shopping_ends = match place.state {
            PlaceState::Admitted { expires_at } => Some(expires_at + policy.shopping_ttl),
            PlaceState::Shopping { since } => Some(since + policy.shopping_ttl),
            _ => None,
        };
        let admission = shopping_ends.map(|until| self.admission(user, show, place.ticket, until));
        Ok(PlaceInfo {
            show,
            ticket: place.ticket,
            state: place.state,
            position,
            estimated_wait_seconds: position.and_then(|p| pace.estimated_wait_seconds(&policy, p)),
            opens_at: (!armed).then_some(policy.opens_at),
            admission,
            admitted_until: match place.state {
                PlaceState::Admitted { expires_at } => Some(expires_at),
                _ => None,
            },
            created: false,
            poll_within_seconds: u32::try_from(policy.grace.num_seconds()).unwrap_or(u32::MAX),
        })
    }

    /// Every room as an admin sees it (for the metrics).
    pub async fn summaries(&self) -> Result<Vec<(ShowId, RoomSummary)>, BookingError> {
        let mut rooms = Vec::new();
        for listed in self.store.rooms().await? {
            let show = listed.show;
            if let Some(room) = self.store.room(show).await? {
                rooms.push((show, room));
            }
        }
        Ok(rooms)
    }

    /// The token of an admission valid until `until` (the end of the longest shopping session
    /// it may start; the store says whether the place may still shop), and that instant.
    fn admission(
        &self,
        user: &UserId,
        show: ShowId,
        ticket: u64,
        until: DateTime<Utc>,
    ) -> (String, DateTime<Utc>) {
        // A token's expiry is in whole seconds: the instant reported is the one it keeps.
        let until = DateTime::from_timestamp(until.timestamp(), 0).unwrap_or(until);
        let token = self.key.mint(&Admission {
            user: user.clone(),
            show,
            ticket,
            expires_at: until,
        });
        (token, until)
    }

    /// Checks that `user` may ask for seats of `show` now: always where the show has no room
    /// or an armed one (whose demand this counts); with a room that is on, only with a valid
    /// admission token of their current place (its first use starts their shopping session).
    pub async fn admit_hold(
        &self,
        user: &UserId,
        show: ShowId,
        token: Option<&str>,
    ) -> Result<(), BookingError> {
        match self.gate(show).await? {
            None => return Ok(()),
            Some(Gate::Armed { above }) => {
                // The request that tips the room over still passes: it came before the switch.
                self.count_demand(show, above).await;
                return Ok(());
            }
            Some(Gate::On) => {}
        }
        let refused = |reason: &'static str| BookingError::AdmissionRequired { reason };
        let token = token.ok_or(refused("MISSING"))?;
        let now = self.clock.now();
        let admission = self
            .key
            .verify(token, user, show, now)
            .map_err(|e: AdmissionRefused| refused(e.reason()))?;
        match self
            .store
            .start_shopping(show, user, admission.ticket, now)
            .await?
        {
            Ok(()) => Ok(()),
            Err(AdmissionError::Expired) => Err(refused("EXPIRED")),
            Err(AdmissionError::NotAdmitted | AdmissionError::NoPlace) => {
                Err(refused("NOT_ADMITTED"))
            }
        }
    }

    /// Moves every room on to now (the ticker's work): opens those whose time has come, gives
    /// up lapsed places and admissions, lets in the next.
    /// A room whose tick fails is logged and left for the next round; the others go on.
    pub async fn tick_all(&self) -> Result<Vec<(ShowId, Tick)>, BookingError> {
        Ok(self.tick_rooms(&self.store.rooms().await?).await)
    }

    /// [`Self::tick_all`] over rooms already listed.
    async fn tick_rooms(&self, listed: &[ListedRoom]) -> Vec<(ShowId, Tick)> {
        let mut ticks = Vec::new();
        // An armed room has nothing to move on until demand switches it on.
        for show in listed
            .iter()
            .filter(|room| room.armed_above.is_none())
            .map(|room| room.show)
        {
            match self.tick(show).await {
                Ok(tick) => ticks.push((show, tick)),
                Err(e) => {
                    tracing::warn!(show_id = %show, error = %booking_core::Chain(&e), "waiting-room tick failed; will retry")
                }
            }
        }
        ticks
    }

    /// One round of a ticker: every room that is on moved on, and its waiting told their
    /// positions when due. False when no room is on (nothing for a ticker to do); a failure is
    /// logged and left for the next round, whose rooms' state is the store's.
    pub async fn round(&self) -> bool {
        let listed = match self.store.rooms().await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(error = %booking_core::Chain(&e), "could not list the waiting rooms; will retry");
                return true;
            }
        };
        if listed.iter().all(|room| room.armed_above.is_some()) {
            return false;
        }
        self.tick_rooms(&listed).await;
        if let Err(e) = self.push_positions_of(&listed).await {
            tracing::warn!(error = %booking_core::Chain(&e), "could not push waiting-room positions; will retry");
        }
        true
    }

    /// Ticks every room each `interval` until `stop` says so (the local server's ticker).
    pub async fn run(
        self: Arc<Self>,
        interval: std::time::Duration,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        crate::sweeper::every(interval, stop, || async {
            self.round().await;
        })
        .await;
    }

    /// Moves one room on, and tells whoever it let in, with their admission token.
    async fn tick(&self, show: ShowId) -> Result<Tick, BookingError> {
        let tick = self
            .store
            .tick_room(show, self.clock.now(), opening_seed())
            .await?;
        crate::metrics::waiting_room_tick(&tick);
        if !tick.admitted.is_empty()
            && let Some(RoomRules { policy, .. }) = self.store.room_rules(show).await?
        {
            let messages: Vec<(UserId, ServerMessage)> = tick
                .admitted
                .iter()
                .map(|(ticket, user, expires_at)| {
                    let (token, until) =
                        self.admission(user, show, *ticket, *expires_at + policy.shopping_ttl);
                    let message = ServerMessage::WaitingRoomPosition {
                        show_id: show,
                        ticket: *ticket,
                        state: PlaceState::Admitted {
                            expires_at: *expires_at,
                        }
                        .name()
                        .to_owned(),
                        position: None,
                        estimated_wait_seconds: None,
                        admission_token: Some(token),
                        admission_expires_at: Some(until),
                        admitted_until: Some(*expires_at),
                    };
                    (user.clone(), message)
                })
                .collect();
            self.notifier.to_owners(&messages).await;
        }
        Ok(tick)
    }

    /// Tells each waiting user of each room their position, coalesced: a room's positions go
    /// out every `POSITIONS_EVERY_AT_LEAST`, or less often for a long queue (about
    /// `POSITIONS_PER_SECOND` messages a second per room, at most every
    /// `POSITIONS_EVERY_AT_MOST`); between pushes, a poll reads the exact position.
    async fn push_positions_of(&self, listed: &[ListedRoom]) -> Result<(), BookingError> {
        // An armed room has not drawn its order: nobody in it has a position yet.
        for show in listed
            .iter()
            .filter(|room| room.armed_above.is_none())
            .map(|room| room.show)
        {
            let due = self
                .positions_pushed
                .lock()
                .expect("not poisoned")
                .get(&show)
                .is_none_or(|at| at.elapsed() >= POSITIONS_EVERY_AT_LEAST);
            if !due {
                continue;
            }
            let Some(RoomRules { policy, pace, .. }) = self.store.room_rules(show).await? else {
                continue;
            };
            let queue = self.store.waiting_places(show).await?;
            let spread = std::time::Duration::from_secs(queue.len() as u64 / POSITIONS_PER_SECOND)
                .clamp(POSITIONS_EVERY_AT_LEAST, POSITIONS_EVERY_AT_MOST);
            // The next push of this room waits for the spread a queue this long needs.
            self.positions_pushed
                .lock()
                .expect("not poisoned")
                .insert(show, Instant::now() + spread - POSITIONS_EVERY_AT_LEAST);
            let messages: Vec<(UserId, ServerMessage)> = queue
                .into_iter()
                .enumerate()
                .map(|(index, (user, ticket))| {
                    let position = index as u64 + 1;
                    let message = ServerMessage::WaitingRoomPosition {
                        show_id: show,
                        ticket,
                        state: PlaceState::Waiting.name().to_owned(),
                        position: Some(position),
                        estimated_wait_seconds: pace.estimated_wait_seconds(&policy, position),
                        admission_token: None,
                        admission_expires_at: None,
                        admitted_until: None,
                    };
                    (user, message)
                })
                .collect();
            for chunk in messages.chunks(1_000) {
                self.notifier.to_owners(chunk).await;
            }
        }
        Ok(())
    }

    fn poll_may_tick(&self, show: ShowId) -> bool {
        let mut last = self.polled_ticks.lock().expect("not poisoned");
        let now = Instant::now();
        match last.get(&show) {
            Some(at) if now.duration_since(*at) < POLL_TICK_EVERY => false,
            _ => {
                last.insert(show, now);
                true
            }
        }
    }

    /// Whether the show has a room, and whether it is on or armed.
    async fn gate(&self, show: ShowId) -> Result<Option<Gate>, BookingError> {
        let cached = self
            .rooms
            .lock()
            .expect("not poisoned")
            .as_ref()
            .filter(|(at, _)| at.elapsed() < ROOMS_CACHE_FOR)
            .map(|(_, rooms)| rooms.clone());
        let rooms = match cached {
            Some(rooms) => rooms,
            None => {
                let rooms: Arc<Gates> = Arc::new(
                    self.store
                        .rooms()
                        .await?
                        .into_iter()
                        .map(|listed| {
                            let gate = listed
                                .armed_above
                                .map_or(Gate::On, |above| Gate::Armed { above });
                            (listed.show, gate)
                        })
                        .collect(),
                );
                *self.rooms.lock().expect("not poisoned") = Some((Instant::now(), rooms.clone()));
                rooms
            }
        };
        Ok(rooms.get(&show).copied())
    }

    /// Counts a hold request of an armed room, and reports this process's count when it last
    /// reported `DEMAND_REPORT_EVERY` ago, or at once when its count alone is over the rate
    /// (a burst is not left waiting for the next request). A report that switches the room on
    /// makes this process see it at once; one that fails is logged and counted again later,
    /// never held against the request.
    async fn count_demand(&self, show: ShowId, above: u32) {
        let report = {
            let mut demand = self.demand.lock().expect("not poisoned");
            let counted = demand.entry(show).or_insert_with(Counted::new);
            counted.requests += 1;
            let due = counted.since.elapsed() >= DEMAND_REPORT_EVERY.to_std().expect("positive")
                || counted.requests > u64::from(above);
            due.then(|| std::mem::replace(counted, Counted::new()).requests)
        };
        let Some(requests) = report else {
            return;
        };
        match self
            .store
            .record_demand(show, requests, self.clock.now())
            .await
        {
            Ok(true) => {
                tracing::info!(show_id = %show, "demand switched the waiting room on");
                crate::metrics::waiting_room_switched_on();
                self.forget_rooms();
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(show_id = %show, error = %booking_core::Chain(&e), "could not report a waiting room's demand; will retry");
                let mut demand = self.demand.lock().expect("not poisoned");
                demand.entry(show).or_insert_with(Counted::new).requests += requests;
            }
        }
    }

    fn forget_rooms(&self) {
        *self.rooms.lock().expect("not poisoned") = None;
    }
}

/// The shows with a room, and what their hold requests must pass.
type Gates = HashMap<ShowId, Gate>;

/// What a hold request for a show with a room must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// An admission token.
    On,
    /// Nothing yet; its demand is counted, and switches it on above this many a second.
    Armed { above: u32 },
}

/// Hold requests counted for one armed room since `since`.
struct Counted {
    requests: u64,
    since: Instant,
}

impl Counted {
    fn new() -> Self {
        Self {
            requests: 0,
            since: Instant::now(),
        }
    }
}

/// The seed of a room's opening draw: 32 bytes from the operating system's generator (by way
/// of two random UUIDs, whose 122 random bits each are the generator's), drawn at the opening
/// so nobody can know the pre-queue's order before it.
fn opening_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed
}
