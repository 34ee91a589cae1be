//! The authorizer function: the WebSocket API's `$connect` REQUEST authorizer in
//! `AUTH_MODE=authorizer`.
//!
//! The HTTP API's routes are guarded by API Gateway's own JWT authorizer, but a WebSocket API
//! has no such thing: its `$connect` can only be guarded by a Lambda. This one verifies the
//! `?token=` the browser connects with exactly as the HTTP API's authorizer does (the same
//! issuer and audience, the identity provider's RS256/ES256 keys from its JWKS), and hands the
//! websocket function who is connecting, whether they are an admin (the provider's claim, see
//! [`booking_app::auth::AdminClaim`]) and when the token expires, in the request context. No
//! shared key is involved, so none can mint a WebSocket identity either.
//!
//! The key set is fetched once per instance (from `JWKS_URL`, or from the issuer's discovery
//! document) and fetched again, at most once a minute, when a token names a key the set lacks:
//! a provider's key rotation is picked up without a redeploy, and a flood of tokens with made-up
//! key ids cannot turn into a flood of fetches.

use crate::config::{self, ConfigError};
use crate::wiring::WiringError;
use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
use booking_app::auth::{Authenticator, Caller, TokenRules};
use booking_app::error::ApiError;
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The soonest the key set is fetched again after a fetch.
const REFETCH_AFTER: Duration = Duration::from_secs(60);

/// The authorizer function: one verdict per `$connect`.
pub async fn serve() -> Result<(), lambda_runtime::Error> {
    let authorizer = &*Box::leak(Box::new(ConnectAuthorizer::from_env().await?));
    crate::serve_events(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<ApiGatewayCustomAuthorizerRequestTypeRequest>| async move {
            // The refusal goes back as the invocation's error, whose message API Gateway reads.
            authorizer
                .handle(event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        },
    ))
    .await
}

/// What the authorizer tells the `$connect` route, in `requestContext.authorizer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizerContext {
    pub caller: Caller,
    pub token_expires_at: DateTime<Utc>,
}

impl AuthorizerContext {
    /// As the authorizer's response `context` (flat: API Gateway passes on only strings,
    /// numbers and booleans).
    pub fn to_context(&self) -> Value {
        json!({
            "userId": self.caller.user_id.as_str(),
            "admin": self.caller.is_admin,
            "tokenExpiresAt": self.token_expires_at.timestamp(),
        })
    }

    /// Read back from the request context of the route the authorizer allowed (values may
    /// arrive as strings).
    pub fn from_fields(fields: &HashMap<String, Value>) -> Option<Self> {
        let user = fields.get("userId")?.as_str()?;
        let admin = match fields.get("admin") {
            Some(Value::Bool(admin)) => *admin,
            Some(Value::String(text)) => text == "true",
            _ => false,
        };
        let expires_at = match fields.get("tokenExpiresAt")? {
            Value::Number(n) => n.as_i64()?,
            Value::String(text) => text.parse().ok()?,
            _ => return None,
        };
        Some(Self {
            caller: Caller::from_verified_claims(user, admin).ok()?,
            token_expires_at: DateTime::from_timestamp(expires_at, 0)?,
        })
    }
}

/// The refusal API Gateway turns into a 401: a REQUEST authorizer says "no" by failing with
/// exactly this message.
#[derive(Debug, thiserror::Error)]
#[error("Unauthorized")]
pub struct Unauthorized;

/// An identity provider's signing keys, kept fresh.
pub struct ProviderKeys {
    jwks_url: String,
    rules: TokenRules,
    http: reqwest::Client,
    current: RwLock<Arc<Authenticator>>,
    fetched_at: Mutex<Instant>,
    refetch_after: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFetchError {
    #[error("could not fetch {url}")]
    Fetch {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url} has no jwks_uri")]
    NoJwksUri { url: String },
    #[error("the key set at {url} is unusable")]
    Unusable {
        url: String,
        #[source]
        source: booking_app::auth::KeySetError,
    },
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, KeyFetchError> {
    let fetch = |source| KeyFetchError::Fetch {
        url: url.to_owned(),
        source,
    };
    http.get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(fetch)?
        .json()
        .await
        .map_err(fetch)
}

impl ProviderKeys {
    /// Fetches the key set at `jwks_url`, or, without one, at the `jwks_uri` the issuer's
    /// discovery document (`<issuer>/.well-known/openid-configuration`) names.
    pub async fn fetch(jwks_url: Option<String>, rules: TokenRules) -> Result<Self, WiringError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ConfigError::Invalid {
                name: "JWKS_URL",
                reason: format!("no HTTP client: {e}"),
            })?;
        let jwks_url = match jwks_url {
            Some(url) => url,
            None => {
                let issuer = rules
                    .issuer
                    .clone()
                    .ok_or(ConfigError::Missing("JWT_ISSUER"))?;
                let discovery = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let document: Value = get_json(&http, &discovery).await?;
                document["jwks_uri"]
                    .as_str()
                    .ok_or(KeyFetchError::NoJwksUri { url: discovery })?
                    .to_owned()
            }
        };
        let authenticator = Self::load(&http, &jwks_url, &rules).await?;
        Ok(Self {
            jwks_url,
            rules,
            http,
            current: RwLock::new(Arc::new(authenticator)),
            fetched_at: Mutex::new(Instant::now()),
            refetch_after: REFETCH_AFTER,
        })
    }

    /// Fetches again no sooner than `interval` after the last fetch (default a minute).
    pub fn refetching_after(mut self, interval: Duration) -> Self {
        self.refetch_after = interval;
        self
    }

    async fn load(
        http: &reqwest::Client,
        url: &str,
        rules: &TokenRules,
    ) -> Result<Authenticator, KeyFetchError> {
        let set: JwkSet = get_json(http, url).await?;
        Authenticator::from_jwks(&set, rules.clone()).map_err(|source| KeyFetchError::Unusable {
            url: url.to_owned(),
            source,
        })
    }

    fn current(&self) -> Arc<Authenticator> {
        self.current.read().expect("key set lock").clone()
    }

    /// Checks a token with the provider's keys, fetching them again first if the token names a
    /// key the set lacks and the last fetch is old enough.
    pub async fn verify_until(&self, token: &str) -> Result<(Caller, DateTime<Utc>), ApiError> {
        let mut auth = self.current();
        if !auth.knows_signing_key(token) && self.may_refetch() {
            match Self::load(&self.http, &self.jwks_url, &self.rules).await {
                Ok(fresh) => {
                    auth = Arc::new(fresh);
                    *self.current.write().expect("key set lock") = auth.clone();
                }
                Err(e) => {
                    tracing::warn!(error = %booking_core::Chain(&e), "could not refresh the key set")
                }
            }
        }
        auth.verify_until(token)
    }

    /// Whether a fetch may happen now (and if so, records it as happening).
    fn may_refetch(&self) -> bool {
        let mut fetched_at = self.fetched_at.lock().expect("fetch time lock");
        if fetched_at.elapsed() < self.refetch_after {
            return false;
        }
        *fetched_at = Instant::now();
        true
    }
}

pub struct ConnectAuthorizer {
    keys: ProviderKeys,
}

impl ConnectAuthorizer {
    /// `JWT_ISSUER` (required), `JWT_AUDIENCE`, `JWT_MAX_LIFETIME_SECONDS`, `JWT_ADMIN_CLAIM`,
    /// `JWT_ADMIN_VALUE`, and `JWKS_URL` (default: from the issuer's discovery document).
    pub async fn from_env() -> Result<Self, WiringError> {
        let rules = TokenRules::from_env().map_err(ConfigError::from)?;
        if rules.issuer.is_none() {
            return Err(ConfigError::Missing("JWT_ISSUER").into());
        }
        let keys = ProviderKeys::fetch(config::optional("JWKS_URL"), rules).await?;
        Ok(Self { keys })
    }

    pub fn new(keys: ProviderKeys) -> Self {
        Self { keys }
    }

    /// Allows the `$connect` of a valid token (its caller and expiry in the context), or
    /// refuses it (401).
    pub async fn handle(
        &self,
        event: ApiGatewayCustomAuthorizerRequestTypeRequest,
    ) -> Result<Value, Unauthorized> {
        let token = event
            .query_string_parameters
            .first("token")
            .ok_or(Unauthorized)?;
        let route = event.method_arn.ok_or(Unauthorized)?;
        let (caller, token_expires_at) = self.keys.verify_until(token).await.map_err(|e| {
            tracing::info!(why = %e.message, "connection refused");
            Unauthorized
        })?;
        let context = AuthorizerContext {
            caller,
            token_expires_at,
        };
        Ok(json!({
            "principalId": context.caller.user_id.as_str(),
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [{
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow",
                    "Resource": route,
                }],
            },
            "context": context.to_context(),
        }))
    }
}
