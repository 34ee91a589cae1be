//! The websocket function: API Gateway WebSocket routes.
//!
//! - `$connect`: who connects is either verified here from the `token` query parameter (the
//!   same HS256 JWTs as the HTTP API, `AUTH_MODE=bearer`) or, with `AUTH_MODE=authorizer`,
//!   taken from the request context that the `$connect` REQUEST authorizer (the authorizer
//!   function, verifying the identity provider's tokens) filled in; no shared key is consulted
//!   then. The connection is recorded with its user and its token's expiry, or refused with 401
//!   (or 429 when the user already holds `MAX_SOCKETS_PER_USER` connections). Once the token
//!   expires nothing more is pushed to it, and the expirer closes it.
//! - `$disconnect`: the connection and its subscriptions are forgotten.
//! - `$default`: the client messages of the local server's protocol (`subscribe`,
//!   `unsubscribe`, `ping`); replies go back through the management API, like every push.

use crate::authorizer::AuthorizerContext;
use crate::config::{self, AuthMode};
use crate::wiring::{Shared, WiringError};
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use booking_app::auth::Authenticator;
use booking_aws::GatewayNotifier;
use booking_core::Chain;
use booking_core::ports::{CatalogStore, ConnectionRegistry, Registration, Subscription};
use booking_core::protocol::{
    ClientMessage, DEFAULT_MAX_SOCKETS_PER_USER, MAX_SUBSCRIPTIONS, ServerMessage,
};
use std::sync::Arc;

/// The websocket function: `$connect`, `$disconnect` and `$default` of the WebSocket API.
pub async fn serve() -> Result<(), lambda_runtime::Error> {
    let routes = &*Box::leak(Box::new(WebSocketRoutes::from_env().await?));
    crate::serve_events(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            Ok::<ApiGatewayProxyResponse, lambda_runtime::Error>(routes.handle(event.payload).await)
        },
    ))
    .await
}

/// How `$connect` learns who is connecting.
pub enum ConnectAuth {
    /// Verifies the `?token=` itself (`AUTH_MODE=bearer`).
    Token(Box<Authenticator>),
    /// Trusts the `$connect` REQUEST authorizer's verdict in the request context
    /// (`AUTH_MODE=authorizer`): API Gateway invokes this route only after the authorizer
    /// allowed the connection.
    Authorizer,
}

impl From<Authenticator> for ConnectAuth {
    fn from(auth: Authenticator) -> Self {
        Self::Token(Box::new(auth))
    }
}

pub struct WebSocketRoutes {
    auth: ConnectAuth,
    /// `MAX_SOCKETS_PER_USER` (default 5).
    max_sockets_per_user: usize,
    registry: Arc<dyn ConnectionRegistry>,
    notifier: Arc<GatewayNotifier>,
    catalog: Arc<dyn CatalogStore>,
}

fn respond(status: i64, body: Option<&str>) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = status;
    response.body = body.map(|b| Body::Text(b.to_owned()));
    response
}

/// The same words as every other "a dependency is down" answer of the API.
const UNAVAILABLE: &str = "A backing service is unavailable; retry shortly";

fn error(code: &str, message: &str) -> ServerMessage {
    ServerMessage::Error {
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

impl WebSocketRoutes {
    pub async fn from_env() -> Result<Self, WiringError> {
        let mode = AuthMode::from_env()?;
        let shared = Shared::from_env(mode.token_key()).await?;
        let registry = shared
            .registry()?
            .ok_or(config::ConfigError::Missing("CONNECTIONS_TABLE"))?;
        let notifier = shared
            .gateway_notifier()?
            .ok_or(config::ConfigError::Missing("WEBSOCKET_ENDPOINT"))?;
        let max_sockets_per_user =
            booking_app::config::env_or("MAX_SOCKETS_PER_USER", DEFAULT_MAX_SOCKETS_PER_USER)
                .map_err(config::ConfigError::from)?
                .max(1);
        let auth = match mode {
            AuthMode::Bearer => ConnectAuth::from(shared.authenticator()?),
            AuthMode::Authorizer => ConnectAuth::Authorizer,
        };
        Ok(Self::new(auth, registry, notifier, shared.store.clone())
            .with_max_sockets_per_user(max_sockets_per_user))
    }

    /// At most `max` connections per user (default [`DEFAULT_MAX_SOCKETS_PER_USER`]).
    pub fn with_max_sockets_per_user(mut self, max: usize) -> Self {
        self.max_sockets_per_user = max;
        self
    }

    pub fn new(
        auth: impl Into<ConnectAuth>,
        registry: Arc<dyn ConnectionRegistry>,
        notifier: Arc<GatewayNotifier>,
        catalog: Arc<dyn CatalogStore>,
    ) -> Self {
        Self {
            auth: auth.into(),
            max_sockets_per_user: DEFAULT_MAX_SOCKETS_PER_USER,
            registry,
            notifier,
            catalog,
        }
    }

    #[tracing::instrument(skip_all, fields(route, connection))]
    pub async fn handle(&self, event: ApiGatewayWebsocketProxyRequest) -> ApiGatewayProxyResponse {
        let context = &event.request_context;
        let route = context.route_key.as_deref().unwrap_or("$default");
        let Some(connection) = context.connection_id.as_deref() else {
            return respond(400, Some("no connection id"));
        };
        tracing::Span::current()
            .record("route", route)
            .record("connection", connection);
        match route {
            "$connect" => self.connect(connection, &event).await,
            "$disconnect" => {
                if let Err(e) = self.registry.disconnect(connection).await {
                    tracing::warn!(error = %Chain(&e), "could not forget the connection; its TTL will");
                }
                respond(200, None)
            }
            _ => {
                let reply = self
                    .client_message(connection, event.body.as_deref().unwrap_or_default())
                    .await;
                if let Some(reply) = reply {
                    self.notifier.send(connection, &reply).await;
                }
                respond(200, None)
            }
        }
    }

    async fn connect(
        &self,
        connection: &str,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> ApiGatewayProxyResponse {
        let (user, token_expires_at) = match &self.auth {
            ConnectAuth::Token(auth) => {
                let Some(token) = event.query_string_parameters.first("token") else {
                    return respond(401, Some("pass the token as ?token="));
                };
                match auth.verify_until(token) {
                    Ok((caller, until)) => (caller.user_id, until),
                    Err(_) => return respond(401, Some("invalid or expired token")),
                }
            }
            ConnectAuth::Authorizer => {
                match AuthorizerContext::from_fields(&event.request_context.authorizer.fields) {
                    Some(context) => (context.caller.user_id, context.token_expires_at),
                    None => {
                        tracing::error!("$connect without the authorizer's context");
                        return respond(401, Some("not authorized"));
                    }
                }
            }
        };
        match self
            .registry
            .connect(
                connection,
                &user,
                token_expires_at,
                self.max_sockets_per_user,
            )
            .await
        {
            Ok(Registration::Registered) => respond(200, None),
            Ok(Registration::TooMany) => respond(
                429,
                Some(&format!(
                    "At most {} WebSocket connections per user; close one first",
                    self.max_sockets_per_user
                )),
            ),
            Err(e) => {
                tracing::error!(error = %Chain(&e), "could not record the connection");
                respond(503, Some("try again shortly"))
            }
        }
    }

    async fn client_message(&self, connection: &str, text: &str) -> Option<ServerMessage> {
        let Ok(message) = serde_json::from_str::<ClientMessage>(text) else {
            return Some(error(
                "INVALID_MESSAGE",
                "expected {\"action\":\"subscribe\",\"showId\":...}, {\"action\":\"unsubscribe\",...} or {\"action\":\"ping\"}",
            ));
        };
        Some(match message {
            ClientMessage::Ping => ServerMessage::Pong,
            ClientMessage::Subscribe { show_id } => match self.catalog.get_show(show_id).await {
                Ok(Some(_)) => match self
                    .registry
                    .subscribe(connection, show_id, MAX_SUBSCRIPTIONS)
                    .await
                {
                    Ok(Subscription::Subscribed) => ServerMessage::Subscribed { show_id },
                    Ok(Subscription::UnknownConnection) => {
                        error("UNKNOWN_CONNECTION", "reconnect and subscribe again")
                    }
                    Ok(Subscription::TooMany) => error(
                        "TOO_MANY_SUBSCRIPTIONS",
                        "unsubscribe from a show before subscribing to another",
                    ),
                    Err(e) => {
                        tracing::warn!(error = %Chain(&e), "subscribe failed");
                        error("SERVICE_UNAVAILABLE", UNAVAILABLE)
                    }
                },
                Ok(None) => error("SHOW_NOT_FOUND", "No such show"),
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), "show lookup failed");
                    error("SERVICE_UNAVAILABLE", UNAVAILABLE)
                }
            },
            ClientMessage::Unsubscribe { show_id } => {
                if let Err(e) = self.registry.unsubscribe(connection, show_id).await {
                    tracing::warn!(error = %Chain(&e), "unsubscribe failed");
                }
                return None;
            }
        })
    }
}
