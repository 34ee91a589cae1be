//! Pushes to WebSocket clients through the API Gateway management API.
//!
//! The gateway holds the sockets; a push is `POST /@connections/{id}` with the message as the
//! body. All pushes of one batch go out concurrently (the batch is committed already: a push is
//! news, never a promise). A connection the gateway reports gone (410 `GoneException`) is removed
//! from the registry, so nobody pushes to it again. Failures are logged, never raised: polling
//! `GET /booking-requests/{id}` is the always-correct path.

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use booking_core::Chain;
use booking_core::engine::SeatChange;
use booking_core::ports::{ConnectionRegistry, Notifier, StoreError};
use booking_core::protocol::{BookingResult, SeatState, ServerMessage};
use booking_core::{ShowId, UserId};
use futures_util::future::join_all;
use std::sync::Arc;

/// The error code of the message a connection gets just before it is closed because its token
/// expired.
pub const TOKEN_EXPIRED: &str = "TOKEN_EXPIRED";

/// How one push went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// The connection is gone (and was forgotten).
    Gone,
    Failed(String),
}

pub struct GatewayNotifier {
    client: aws_sdk_apigatewaymanagement::Client,
    registry: Arc<dyn ConnectionRegistry>,
}

impl GatewayNotifier {
    pub fn new(
        client: aws_sdk_apigatewaymanagement::Client,
        registry: Arc<dyn ConnectionRegistry>,
    ) -> Self {
        Self { client, registry }
    }

    /// Sends one message to one connection; forgets the connection if it is gone.
    #[tracing::instrument(skip(self, message))]
    pub async fn send(&self, connection: &str, message: &ServerMessage) -> Delivery {
        let body = serde_json::to_vec(message).expect("server messages always serialise");
        self.post(connection, body).await
    }

    async fn post(&self, connection: &str, body: Vec<u8>) -> Delivery {
        let sent = self
            .client
            .post_to_connection()
            .connection_id(connection)
            .data(Blob::new(body))
            .send()
            .await;
        match sent {
            Ok(_) => Delivery::Sent,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_gone_exception()) => {
                tracing::info!(connection, "connection gone; forgetting it");
                if let Err(e) = self.registry.disconnect(connection).await {
                    tracing::warn!(connection, error = %Chain(&e), "could not forget a gone connection");
                }
                Delivery::Gone
            }
            Err(e) => {
                let why = crate::describe(&e);
                tracing::warn!(connection, error = %why, "push failed");
                Delivery::Failed(why)
            }
        }
    }

    /// Closes a connection at the gateway (`DELETE /@connections/{id}`) after telling its
    /// client why with `farewell`, and forgets it. A connection already gone counts as closed.
    #[tracing::instrument(skip(self, farewell))]
    pub async fn close(&self, connection: &str, farewell: &ServerMessage) -> Delivery {
        if let Delivery::Gone = self.send(connection, farewell).await {
            return Delivery::Gone;
        }
        let closed = self
            .client
            .delete_connection()
            .connection_id(connection)
            .send()
            .await;
        let delivery = match closed {
            Ok(_) => Delivery::Sent,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_gone_exception()) => Delivery::Gone,
            Err(e) => {
                let why = crate::describe(&e);
                tracing::warn!(connection, error = %why, "could not close the connection");
                return Delivery::Failed(why);
            }
        };
        if let Err(e) = self.registry.disconnect(connection).await {
            tracing::warn!(connection, error = %Chain(&e), "could not forget a closed connection");
        }
        delivery
    }

    /// Closes up to `limit` connections whose token had expired at `now`, each told why first
    /// (an `ERROR` with code `TOKEN_EXPIRED`), and returns how many are gone now. One that could
    /// not be closed stays registered (and unserved) for the next sweep.
    pub async fn close_token_expired(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let expired = self.registry.token_expired(now, limit).await?;
        let farewell = ServerMessage::Error {
            code: TOKEN_EXPIRED.to_owned(),
            message: "the token this connection was opened with has expired; reconnect with a \
                      fresh one"
                .to_owned(),
        };
        let closed = join_all(expired.iter().map(|c| self.close(c, &farewell))).await;
        Ok(closed
            .iter()
            .filter(|d| !matches!(d, Delivery::Failed(_)))
            .count())
    }

    /// Sends `body` to every connection in `connections`, concurrently.
    async fn post_all(&self, connections: &[String], body: &[u8]) {
        join_all(
            connections
                .iter()
                .map(|connection| self.post(connection, body.to_vec())),
        )
        .await;
    }
}

#[async_trait]
impl Notifier for GatewayNotifier {
    async fn booking_results(&self, results: &[(UserId, BookingResult)]) {
        let pushes = results.iter().map(|(user, result)| async move {
            let connections = match self.registry.connections_of(user).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(user_id = %user, error = %Chain(&e), "connection lookup failed");
                    return;
                }
            };
            let body = serde_json::to_vec(&ServerMessage::BookingResult(result.clone()))
                .expect("server messages always serialise");
            self.post_all(&connections, &body).await;
        });
        join_all(pushes).await;
    }

    async fn to_owners(&self, messages: &[(UserId, ServerMessage)]) {
        let pushes = messages.iter().map(|(user, message)| async move {
            let connections = match self.registry.connections_of(user).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(user_id = %user, error = %Chain(&e), "connection lookup failed");
                    return;
                }
            };
            let body = serde_json::to_vec(message).expect("server messages always serialise");
            self.post_all(&connections, &body).await;
        });
        join_all(pushes).await;
    }

    async fn seats_changed(&self, show: ShowId, changes: &[SeatChange]) {
        if changes.is_empty() {
            return;
        }
        let subscribers = match self.registry.subscribers(show).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(show_id = %show, error = %Chain(&e), "subscriber lookup failed");
                return;
            }
        };
        if subscribers.is_empty() {
            return;
        }
        let body = serde_json::to_vec(&ServerMessage::SeatsChanged {
            show_id: show,
            seats: changes.iter().copied().map(SeatState::from).collect(),
        })
        .expect("server messages always serialise");
        self.post_all(&subscribers, &body).await;
    }
}
