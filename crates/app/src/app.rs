//! The composition root: the one place where adapters become a running application.
//!
//! Every process of the system (the local server, the four Lambda functions, the in-process
//! test harness, the benchmarks) runs the same use cases over different adapters. Each of them
//! builds an [`App`] from its adapters and takes the parts it serves: the router (the local server,
//! the api function), the batch processor (the worker function; the local lanes run it), the
//! sweeper (the expirer function; the local server runs it on a timer). Wiring lives here once,
//! so a new use case or port is added in one place, not once per binary.
//!
//! The one dependency that runs the other way is the queue: the local lanes decide requests in
//! this process, so they are built *around* the batch processor ([`QueueAdapter::InProcess`]),
//! while SQS only carries requests to the worker function ([`QueueAdapter::External`]).
//!
//! [`App::shutdown`] stops the parts in the order that loses nothing: the queue first (it
//! finishes deciding what it holds, within the grace period), then the sweeper, then the
//! notifier (pushes already queued go out before each socket gets its close frame).

use crate::admission::AdmissionKey;
use crate::auth::Authenticator;
use crate::cancellation::Cancellations;
use crate::catalog::CatalogAdmin;
use crate::config::BookingConfig;
use crate::http::{self, AppState, Handlers};
use crate::limits::{Limits, MemoryRateLimiter};
use crate::orders::OrderService;
use crate::payments::MockPaymentProvider;
use crate::processor::BatchProcessor;
use crate::service::BookingService;
use crate::sweeper::Sweeper;
use crate::waiting_rooms::WaitingRooms;
use async_trait::async_trait;
use axum::Router;
use booking_core::Chain;
use booking_core::engine::SeatChange;
use booking_core::ports::{
    CatalogStore, HoldStore, IdempotencyStore, Notifier, OrderStore, PaymentProvider, QueueError,
    QueueTicket, RateLimiter, RequestQueue, RequestStore, SeatMirror, ShowLocks, StoreError,
    WaitingRoomStore,
};
use booking_core::protocol::{BookingResult, ServerMessage};
use booking_core::{BookingRequest, Clock, ShowId, SystemClock, UserId};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The adapters every use case runs on. Cheap to clone (shared handles).
#[derive(Clone)]
pub struct Ports {
    pub catalog: Arc<dyn CatalogStore>,
    pub requests: Arc<dyn RequestStore>,
    pub holds: Arc<dyn HoldStore>,
    pub orders: Arc<dyn OrderStore>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub payments: Arc<dyn PaymentProvider>,
    pub notifier: Arc<dyn Notifier>,
    pub clock: Arc<dyn Clock>,
    /// The seat map's hot read path and the target of every committed change; `None` reads the
    /// store every time.
    pub mirror: Option<Arc<dyn SeatMirror>>,
    /// Serialises the deciders of a show (see [`ShowLocks`]); `None` where one lane per show in
    /// one process already does.
    pub show_locks: Option<Arc<dyn ShowLocks>>,
}

impl Ports {
    /// Runs `work` as the show's only decider where deciders are serialised
    /// ([`Ports::show_locks`]; elsewhere as it is), and lets the lock go, awaited, whatever
    /// `work` comes to.
    pub async fn as_sole_decider<T, E: From<StoreError>>(
        &self,
        show: ShowId,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let decider = match &self.show_locks {
            Some(locks) => Some(locks.lock(show).await?),
            None => None,
        };
        let done = work.await;
        if let Some(decider) = decider {
            decider.release().await;
        }
        done
    }
}

/// The state ports, which one store adapter usually serves together.
#[derive(Clone)]
pub struct Stores {
    pub catalog: Arc<dyn CatalogStore>,
    pub requests: Arc<dyn RequestStore>,
    pub holds: Arc<dyn HoldStore>,
    pub orders: Arc<dyn OrderStore>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub waiting_rooms: Arc<dyn WaitingRoomStore>,
}

impl Stores {
    /// Every state port served by one adapter.
    pub fn of<S>(store: Arc<S>) -> Self
    where
        S: CatalogStore
            + RequestStore
            + HoldStore
            + OrderStore
            + IdempotencyStore
            + WaitingRoomStore,
    {
        Self {
            catalog: store.clone(),
            requests: store.clone(),
            holds: store.clone(),
            orders: store.clone(),
            idempotency: store.clone(),
            waiting_rooms: store,
        }
    }
}

/// Builds a queue around this process's batch processor.
pub type InProcessQueue = Box<dyn FnOnce(Arc<BatchProcessor>) -> Arc<dyn RequestQueue> + Send>;

/// How accepted requests reach whoever decides them.
pub enum QueueAdapter {
    /// Deciding happens in another process: SQS carries requests to the worker function.
    External(Arc<dyn RequestQueue>),
    /// Deciding happens in this process: the queue (the local lanes) is built around the app's
    /// batch processor, and [`App::recover`] puts back what was waiting at the last stop.
    InProcess(InProcessQueue),
    /// This process accepts no requests (the worker and expirer functions): enqueueing answers
    /// "unavailable".
    Detached,
}

impl QueueAdapter {
    /// A queue built around the app's batch processor.
    pub fn in_process(
        build: impl FnOnce(Arc<BatchProcessor>) -> Arc<dyn RequestQueue> + Send + 'static,
    ) -> Self {
        Self::InProcess(Box::new(build))
    }
}

/// Configures an [`App`]; see [`App::builder`].
pub struct AppBuilder {
    stores: Stores,
    config: BookingConfig,
    notifier: Option<Arc<dyn Notifier>>,
    mirror: Option<Arc<dyn SeatMirror>>,
    clock: Option<Arc<dyn Clock>>,
    payments: Option<Arc<dyn PaymentProvider>>,
    queue: QueueAdapter,
    auth: Option<Authenticator>,
    show_locks: Option<Arc<dyn ShowLocks>>,
    rate_limiter: Option<Arc<dyn RateLimiter>>,
    admission_key: Option<AdmissionKey>,
    admission_key_shared: bool,
}

impl AppBuilder {
    /// The key of the waiting rooms' admission tokens (default: a random one, which only this
    /// process knows: enough for one process; a deployment gives every instance the same).
    pub fn admission_key(mut self, key: AdmissionKey) -> Self {
        self.admission_key = Some(key);
        self
    }

    /// This process is one of several behind the API and was given no key they share: its own
    /// random one would admit nobody on the others, so waiting rooms cannot be switched on
    /// (503 `NO_SHARED_ADMISSION_KEY`).
    pub fn no_shared_admission_key(mut self) -> Self {
        self.admission_key = None;
        self.admission_key_shared = false;
        self
    }

    /// Where rate-limit buckets are kept (default: this process's memory). Shared ones (Redis)
    /// make every process of a deployment enforce one limit per caller.
    pub fn rate_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.rate_limiter = Some(limiter);
        self
    }

    /// How deciders of one show are serialised (default: not at all, for one lane per show in one
    /// process). Needed where requests are decided as they arrive (`QUEUE_BASED_BOOKING=false`)
    /// or by several processes.
    pub fn show_locks(mut self, locks: Arc<dyn ShowLocks>) -> Self {
        self.show_locks = Some(locks);
        self
    }

    /// Who moves the money (default: the [`MockPaymentProvider`] and its test tokens).
    pub fn payments(mut self, provider: Arc<dyn PaymentProvider>) -> Self {
        self.payments = Some(provider);
        self
    }

    /// Where outcomes are pushed (default: nowhere; clients poll).
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// The seat mirror (default: none; the seat map reads the store).
    pub fn mirror(mut self, mirror: Arc<dyn SeatMirror>) -> Self {
        self.mirror = Some(mirror);
        self
    }

    /// The clock every decision and expiry is measured by (default: the wall clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// How accepted requests are queued (default: [`QueueAdapter::Detached`]).
    pub fn queue(mut self, queue: QueueAdapter) -> Self {
        self.queue = queue;
        self
    }

    /// How bearer tokens are verified (default: a random key, so no token verifies: for
    /// processes that serve no authenticated route, or whose callers an authorizer vouches for).
    pub fn authenticator(mut self, auth: Authenticator) -> Self {
        self.auth = Some(auth);
        self
    }

    pub fn build(self) -> App {
        let ports = Ports {
            catalog: self.stores.catalog,
            requests: self.stores.requests,
            holds: self.stores.holds,
            orders: self.stores.orders,
            idempotency: self.stores.idempotency,
            payments: self
                .payments
                .unwrap_or_else(|| Arc::new(MockPaymentProvider::new())),
            notifier: self.notifier.unwrap_or_else(|| Arc::new(PollingOnly)),
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            mirror: self.mirror,
            show_locks: self.show_locks,
        };
        let processor = Arc::new(BatchProcessor::new(ports.clone(), self.config.hold_ttl));
        let (queue, decides_here): (Arc<dyn RequestQueue>, bool) = match self.queue {
            QueueAdapter::External(queue) => (queue, false),
            QueueAdapter::InProcess(build) => (build(processor.clone()), true),
            QueueAdapter::Detached => (Arc::new(DetachedQueue), false),
        };
        let limits = Arc::new(Limits::new(
            self.config.rate_limits,
            self.rate_limiter
                .unwrap_or_else(|| Arc::new(MemoryRateLimiter::new())),
        ));
        let orders = Arc::new(OrderService::new(ports.clone(), self.config.clone()));
        let direct = (!self.config.queue_based).then(|| processor.clone());
        let service = Arc::new(BookingService::new(
            ports.clone(),
            queue,
            direct,
            self.config,
        ));
        let waiting_rooms = Arc::new(WaitingRooms::new(
            self.stores.waiting_rooms,
            service.clone(),
            ports.clock.clone(),
            self.admission_key.unwrap_or_else(|| {
                AdmissionKey::new(crate::admission::random_secret().as_bytes())
                    .expect("a random key is long enough")
            }),
            self.admission_key_shared,
            ports.notifier.clone(),
        ));
        let cancellations = Arc::new(Cancellations::new(ports.clone(), orders.clone()));
        let catalog = Arc::new(CatalogAdmin::new(
            ports.clone(),
            service.clone(),
            cancellations,
        ));
        App {
            ports,
            service,
            orders,
            catalog,
            processor,
            decides_here,
            auth: Arc::new(self.auth.unwrap_or_else(|| {
                Authenticator::hs256(crate::admission::random_secret().as_bytes())
            })),
            sweeper: Mutex::new(None),
            limits,
            waiting_rooms,
        }
    }
}

/// How often the local ticker moves every waiting room on: admissions go out in steps of a
/// fifth of a second's worth.
pub const WAITING_ROOM_TICK: Duration = Duration::from_millis(200);

/// A running sweeper task and the switch that stops it.
struct SweeperTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// The waiting rooms' ticker, stopped by the same switch.
    ticker: JoinHandle<()>,
}

/// The application: its use cases wired to one set of adapters.
pub struct App {
    ports: Ports,
    service: Arc<BookingService>,
    orders: Arc<OrderService>,
    catalog: Arc<CatalogAdmin>,
    processor: Arc<BatchProcessor>,
    /// Whether the queue decides in this process (and so has something to recover and drain).
    decides_here: bool,
    auth: Arc<Authenticator>,
    sweeper: Mutex<Option<SweeperTask>>,
    limits: Arc<Limits>,
    waiting_rooms: Arc<WaitingRooms>,
}

/// What [`App::shutdown`] left behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Requests still undecided when the grace period ran out (durable: decided after the next
    /// start).
    pub undecided: usize,
}

impl App {
    /// Starts configuring an app on `stores` with the business rules in `config`.
    pub fn builder(stores: Stores, config: BookingConfig) -> AppBuilder {
        AppBuilder {
            stores,
            config,
            notifier: None,
            mirror: None,
            clock: None,
            payments: None,
            queue: QueueAdapter::Detached,
            auth: None,
            show_locks: None,
            rate_limiter: None,
            admission_key: None,
            admission_key_shared: true,
        }
    }

    /// The HTTP API (every route but the WebSocket endpoint, which is the gateway's).
    pub fn router(&self) -> Router {
        http::router(AppState::new(Handlers {
            service: self.service.clone(),
            orders: self.orders.clone(),
            catalog: self.catalog.clone(),
            auth: self.auth.clone(),
            limits: self.limits.clone(),
            waiting_rooms: self.waiting_rooms.clone(),
        }))
    }

    /// The shows' waiting rooms.
    pub fn waiting_rooms(&self) -> &Arc<WaitingRooms> {
        &self.waiting_rooms
    }

    /// Catalog administration (the admin API and `seatbook import`).
    pub fn catalog(&self) -> &Arc<CatalogAdmin> {
        &self.catalog
    }

    pub fn service(&self) -> &Arc<BookingService> {
        &self.service
    }

    pub fn orders(&self) -> &Arc<OrderService> {
        &self.orders
    }

    pub fn processor(&self) -> &Arc<BatchProcessor> {
        &self.processor
    }

    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.auth
    }

    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// The expiry sweep over this app's adapters.
    pub fn sweeper(&self) -> Sweeper {
        Sweeper::new(
            self.ports.clone(),
            self.orders.clone(),
            self.service.config().request_retention,
        )
    }

    /// Puts every request that was waiting when the process last stopped back in its queue, in
    /// arrival order. Only an in-process queue forgets them (SQS keeps its own messages).
    ///
    /// First, the seat mirror of every show is marked incomplete: a process killed between a
    /// store commit and its mirror update (a batch, a release, a payment) left a shared mirror
    /// (Redis) behind the store, which would show held seats free and freed seats held until
    /// the show's completeness mark ran out. The next read of each show rebuilds it from the
    /// store.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        if let Some(mirror) = &self.ports.mirror {
            let mut shows = 0usize;
            for movie in self.ports.catalog.list_movies().await? {
                for show in self.ports.catalog.list_shows(movie.movie_id, None).await? {
                    shows += 1;
                    if let Err(e) = mirror.invalidate(show.show_id).await {
                        tracing::warn!(show_id = %show.show_id, error = %Chain(&e), "could not mark the seat mirror incomplete; it heals when its completeness mark runs out");
                    }
                }
            }
            tracing::debug!(shows, "seat mirror marked incomplete for a fresh start");
        }
        if !self.decides_here {
            return Ok(0);
        }
        // Paused lanes first, so that nothing re-queued below is decided against the operator's
        // pause (recorded in the store, it outlived the last stop).
        for show in self.ports.catalog.paused_shows().await? {
            if let Err(e) = self.service.queue().pause(show).await {
                tracing::error!(show_id = %show, error = %Chain(&e), "could not pause a lane paused before the stop");
            }
        }
        let pending = self.ports.requests.pending_requests().await?;
        let count = pending.len();
        for request in &pending {
            if let Err(e) = self.service.queue().enqueue(request).await {
                tracing::error!(request_id = %request.request_id, error = %Chain(&e), "could not re-queue a request; it is decided after the next start");
            }
        }
        Ok(count)
    }

    /// Runs the expiry sweep every `interval`, and the waiting rooms' ticker every
    /// [`WAITING_ROOM_TICK`], until [`App::shutdown`].
    pub fn spawn_sweeper(&self, interval: Duration) {
        let (stop, stopped) = watch::channel(false);
        let ticker = tokio::spawn(
            self.waiting_rooms
                .clone()
                .run(WAITING_ROOM_TICK, stopped.clone()),
        );
        let task = tokio::spawn(self.sweeper().run(interval, stopped));
        let previous = self
            .sweeper
            .lock()
            .expect("sweeper slot poisoned")
            .replace(SweeperTask { stop, task, ticker });
        if let Some(previous) = previous {
            previous.task.abort();
            previous.ticker.abort();
        }
    }

    /// Stops the app's background work in the order that loses nothing: the queue finishes
    /// deciding what it holds, the sweeper stops after its current sweep, and the notifier closes
    /// its connections once what is queued for them has gone out; all of it within `grace`.
    /// Call it once the process takes no more requests (the HTTP server has stopped).
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let started = tokio::time::Instant::now();
        let left = || grace.saturating_sub(started.elapsed());
        let undecided = self.service.queue().drain(grace).await;
        let sweeper = self.sweeper.lock().expect("sweeper slot poisoned").take();
        if let Some(SweeperTask { stop, task, ticker }) = sweeper {
            let _ = stop.send(true);
            if tokio::time::timeout(left(), ticker).await.is_err() {
                tracing::warn!(
                    "the waiting-room ticker was still running when the grace period ran out"
                );
            }
            if tokio::time::timeout(left(), task).await.is_err() {
                tracing::warn!("the expiry sweep was still running when the grace period ran out");
            }
        }
        // Close frames go out even with no time left; only the wait for answers is bounded.
        self.ports.notifier.close(left()).await;
        ShutdownReport { undecided }
    }
}

/// The notifier of a deployment without WebSockets: outcomes are there to poll.
pub struct PollingOnly;

#[async_trait]
impl Notifier for PollingOnly {
    async fn booking_results(&self, results: &[(UserId, BookingResult)]) {
        tracing::debug!(count = results.len(), "results ready to poll");
    }
    async fn seats_changed(&self, _show: ShowId, _changes: &[SeatChange]) {}
    async fn to_owners(&self, _messages: &[(UserId, ServerMessage)]) {}
}

/// The queue of a process that accepts no requests.
struct DetachedQueue;

#[async_trait]
impl RequestQueue for DetachedQueue {
    async fn enqueue(&self, _request: &BookingRequest) -> Result<QueueTicket, QueueError> {
        Err(QueueError::unavailable("this process has no request queue"))
    }
    async fn position(&self, _request: &BookingRequest) -> Option<QueueTicket> {
        None
    }
}
