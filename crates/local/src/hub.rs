//! The local WebSocket hub: who is connected, as which user, subscribed to which shows.
//!
//! It is the local [`Notifier`]: a BOOKING_RESULT goes to every connection of its owner (and no
//! one else's), a SEATS_CHANGED to every subscriber of the show. Each connection has a bounded
//! outbox; a client too slow to drain it loses pushes rather than slowing the workers down (it
//! can always poll, which is the always-correct path).
//!
//! On shutdown ([`Notifier::close`]) every connection gets a close frame 1001 ("going away")
//! behind whatever is already in its outbox, so the last results are delivered before the
//! socket closes, and the hub waits (within the grace period) for the clients to close their end.

use async_trait::async_trait;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, close_code};
use booking_core::engine::SeatChange;
use booking_core::ports::Notifier;
use booking_core::protocol::{BookingResult, SeatState, ServerMessage};
use booking_core::{ShowId, UserId};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};

/// Messages a connection may have waiting before further pushes to it are dropped.
pub const OUTBOX_CAPACITY: usize = 1024;
pub use booking_core::protocol::MAX_SUBSCRIPTIONS;

/// A connection's id, in the same form API Gateway gives its connections.
pub type ConnectionId = String;

struct Connection {
    user: UserId,
    outbox: mpsc::Sender<Message>,
    shows: HashSet<ShowId>,
}

#[derive(Default)]
struct Registry {
    connections: HashMap<ConnectionId, Connection>,
    by_user: HashMap<UserId, HashSet<ConnectionId>>,
    by_show: HashMap<ShowId, HashSet<ConnectionId>>,
}

/// Why a subscription was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeError {
    UnknownConnection,
    TooManySubscriptions,
}

/// How many sockets the hub holds at most (per user, and in all), and how it finds dead ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketLimits {
    /// `MAX_SOCKETS_PER_USER` (default 5): a fan has a phone and a laptop; a script opening
    /// thousands is refused.
    pub per_user: usize,
    /// `MAX_SOCKETS` (default 10,000): what the server's memory is sized for.
    pub total: usize,
    /// `WS_PING_INTERVAL_SECONDS` (default 30): how often the server pings each socket. A peer
    /// heard nothing from for two intervals (no pong, no message) is gone (a phone that lost
    /// its network never says goodbye) and its socket is dropped, freeing its slot.
    pub ping_interval: std::time::Duration,
}

impl Default for SocketLimits {
    fn default() -> Self {
        Self {
            per_user: booking_core::protocol::DEFAULT_MAX_SOCKETS_PER_USER,
            total: 10_000,
            ping_interval: std::time::Duration::from_secs(30),
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitError {
    /// The user holds [`SocketLimits::per_user`] sockets already.
    TooManyForUser { max: usize },
    /// The hub holds [`SocketLimits::total`] sockets.
    Full,
}

/// A connection slot taken before the WebSocket handshake completes: the connection is
/// registered (and counted) from here on, and leaves the hub when its admission is dropped,
/// however that happens: the upgrade failed, the socket closed, its handler panicked.
pub struct Admission {
    hub: Arc<WsHub>,
    id: ConnectionId,
    outbox: Option<mpsc::Receiver<Message>>,
}

impl Admission {
    pub fn id(&self) -> &ConnectionId {
        &self.id
    }

    /// The receiving end of the connection's outbox (once).
    pub fn take_outbox(&mut self) -> mpsc::Receiver<Message> {
        self.outbox
            .take()
            .expect("an admission's outbox is taken once")
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.hub.disconnect(&self.id);
    }
}

#[derive(Default)]
pub struct WsHub {
    registry: RwLock<Registry>,
    limits: SocketLimits,
    /// Set by `close`: every connection, even one made from now on, is told to go away.
    closing: AtomicBool,
    /// Woken whenever a connection goes, so `close` can wait for the last one.
    gone: Notify,
}

/// The frame a connection gets when the server shuts down.
fn going_away() -> Message {
    Message::Close(Some(CloseFrame {
        code: close_code::AWAY,
        reason: Utf8Bytes::from_static("server shutting down"),
    }))
}

impl WsHub {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_limits(limits: SocketLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    pub fn limits(&self) -> &SocketLimits {
        &self.limits
    }

    /// Takes a slot for a new connection of `user` under a fresh id, within the limits: the
    /// check and the registration are one step, so concurrent handshakes cannot overshoot.
    pub fn admit(self: &Arc<Self>, user: UserId) -> Result<Admission, AdmitError> {
        let id = Self::new_connection_id();
        let outbox = self.connect_within_limits(id.clone(), user)?;
        Ok(Admission {
            hub: self.clone(),
            id,
            outbox: Some(outbox),
        })
    }

    /// [`WsHub::connect`], refused at the limits (checked under the write lock that registers).
    fn connect_within_limits(
        &self,
        id: ConnectionId,
        user: UserId,
    ) -> Result<mpsc::Receiver<Message>, AdmitError> {
        let r = self.registry.write().expect("hub poisoned");
        if r.by_user.get(&user).map_or(0, HashSet::len) >= self.limits.per_user {
            return Err(AdmitError::TooManyForUser {
                max: self.limits.per_user,
            });
        }
        if r.connections.len() >= self.limits.total {
            return Err(AdmitError::Full);
        }
        Ok(self.register(r, id, user))
    }

    /// A fresh connection id (handed to the client before the connection is registered).
    pub fn new_connection_id() -> ConnectionId {
        uuid::Uuid::new_v4().simple().to_string()
    }

    /// Registers a connection under `id` and returns the receiving end of its outbox, whatever
    /// the limits (see [`WsHub::admit`]).
    pub fn connect(&self, id: ConnectionId, user: UserId) -> mpsc::Receiver<Message> {
        let r = self.registry.write().expect("hub poisoned");
        self.register(r, id, user)
    }

    fn register(
        &self,
        mut r: std::sync::RwLockWriteGuard<'_, Registry>,
        id: ConnectionId,
        user: UserId,
    ) -> mpsc::Receiver<Message> {
        let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
        r.by_user
            .entry(user.clone())
            .or_default()
            .insert(id.clone());
        if self.closing.load(Ordering::SeqCst) {
            let _ = tx.try_send(going_away());
        }
        r.connections.insert(
            id.clone(),
            Connection {
                user,
                outbox: tx,
                shows: HashSet::new(),
            },
        );
        rx
    }

    pub fn disconnect(&self, id: &str) {
        let mut r = self.registry.write().expect("hub poisoned");
        self.gone.notify_waiters();
        if let Some(conn) = r.connections.remove(id) {
            if let Some(set) = r.by_user.get_mut(&conn.user) {
                set.remove(id);
                if set.is_empty() {
                    r.by_user.remove(&conn.user);
                }
            }
            for show in conn.shows {
                if let Some(set) = r.by_show.get_mut(&show) {
                    set.remove(id);
                    if set.is_empty() {
                        r.by_show.remove(&show);
                    }
                }
            }
        }
    }

    pub fn subscribe(&self, id: &str, show: ShowId) -> Result<(), SubscribeError> {
        let mut r = self.registry.write().expect("hub poisoned");
        let conn = r
            .connections
            .get_mut(id)
            .ok_or(SubscribeError::UnknownConnection)?;
        if !conn.shows.contains(&show) && conn.shows.len() >= MAX_SUBSCRIPTIONS {
            return Err(SubscribeError::TooManySubscriptions);
        }
        conn.shows.insert(show);
        r.by_show.entry(show).or_default().insert(id.to_owned());
        Ok(())
    }

    pub fn unsubscribe(&self, id: &str, show: ShowId) {
        let mut r = self.registry.write().expect("hub poisoned");
        if let Some(conn) = r.connections.get_mut(id) {
            conn.shows.remove(&show);
        }
        if let Some(set) = r.by_show.get_mut(&show) {
            set.remove(id);
        }
    }

    /// Queues a message for one connection. Returns false if it is gone.
    pub fn send_to(&self, id: &str, message: Message) -> bool {
        let r = self.registry.read().expect("hub poisoned");
        match r.connections.get(id) {
            Some(conn) => {
                Self::offer(id, conn, message);
                true
            }
            None => false,
        }
    }

    fn offer(id: &str, conn: &Connection, message: Message) {
        if let Err(mpsc::error::TrySendError::Full(_)) = conn.outbox.try_send(message) {
            tracing::warn!(
                connection = id,
                "client outbox full; push dropped (the client can poll)"
            );
        }
    }

    pub fn connection_count(&self) -> usize {
        self.registry
            .read()
            .expect("hub poisoned")
            .connections
            .len()
    }
}

pub fn encode(message: &ServerMessage) -> Message {
    Message::Text(Utf8Bytes::from(
        serde_json::to_string(message).expect("server messages always serialise"),
    ))
}

#[async_trait]
impl Notifier for WsHub {
    async fn booking_results(&self, results: &[(UserId, BookingResult)]) {
        let r = self.registry.read().expect("hub poisoned");
        for (user, result) in results {
            let Some(ids) = r.by_user.get(user) else {
                continue;
            };
            let message = encode(&ServerMessage::BookingResult(result.clone()));
            for id in ids {
                if let Some(conn) = r.connections.get(id) {
                    Self::offer(id, conn, message.clone());
                }
            }
        }
    }

    async fn to_owners(&self, messages: &[(UserId, ServerMessage)]) {
        let r = self.registry.read().expect("hub poisoned");
        for (user, message) in messages {
            let Some(ids) = r.by_user.get(user) else {
                continue;
            };
            let message = encode(message);
            for id in ids {
                if let Some(conn) = r.connections.get(id) {
                    Self::offer(id, conn, message.clone());
                }
            }
        }
    }

    async fn close(&self, grace: Duration) {
        self.closing.store(true, Ordering::SeqCst);
        {
            let r = self.registry.read().expect("hub poisoned");
            for (id, conn) in &r.connections {
                Self::offer(id, conn, going_away());
            }
        }
        let all_gone = async {
            loop {
                let gone = self.gone.notified();
                if self.connection_count() == 0 {
                    return;
                }
                gone.await;
            }
        };
        if tokio::time::timeout(grace, all_gone).await.is_err() {
            tracing::warn!(
                open = self.connection_count(),
                "WebSocket clients did not close within the grace period"
            );
        }
    }

    async fn seats_changed(&self, show: ShowId, changes: &[SeatChange]) {
        if changes.is_empty() {
            return;
        }
        let r = self.registry.read().expect("hub poisoned");
        let Some(ids) = r.by_show.get(&show) else {
            return;
        };
        // Serialised once; the text is reference-counted across every subscriber.
        let message = encode(&ServerMessage::SeatsChanged {
            show_id: show,
            seats: changes.iter().copied().map(SeatState::from).collect(),
        });
        for id in ids {
            if let Some(conn) = r.connections.get(id) {
                Self::offer(id, conn, message.clone());
            }
        }
    }
}
