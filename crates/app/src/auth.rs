//! Bearer-token authentication: JWTs with `sub` = user id, and an admin claim (by default
//! `role: "admin"`; deployed behind an identity provider, a claim only the provider sets, such as
//! `cognito:groups` containing `admin`: see [`AdminClaim`]).
//!
//! Tokens are signed either with one shared HS256 secret (the local server, and the functions in
//! `AUTH_MODE=bearer`) or by an identity provider whose public keys (its JWKS) are given to
//! [`Authenticator::from_jwks`] (RS256 or ES256, the key picked by the token's `kid`).
//!
//! The algorithm is pinned (a token that names another algorithm, including `none`, is refused),
//! `exp` is required and enforced, `nbf` is honoured, a token issued in the future or living
//! longer than [`TokenRules::max_lifetime`] is refused (a leaked long-lived token is a standing
//! key), `iss` and `aud` are checked when configured, and `sub` must be a valid [`UserId`]. The
//! same claims can come from API Gateway's JWT authorizer on AWS; this module only verifies
//! tokens itself.
//!
//! The shared secret is checked where it is configured ([`check_secret`]): at least
//! [`MIN_SECRET_BYTES`], and the public development secret only on a loopback address, since
//! anyone who knows it can mint an admin token.

use crate::config::{ConfigError, env_or};
use crate::error::ApiError;
use booking_core::UserId;
use chrono::{Duration, Utc};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
};
use serde::{Deserialize, Serialize};

/// The development secret used when `JWT_SECRET` is unset. Printed as such at start-up; never
/// acceptable in production, and refused on any address but loopback.
pub const DEV_JWT_SECRET: &str = "seatbook-local-development-secret-do-not-use-in-production";

/// The shortest HS256 secret accepted: 256 bits, the size of the hash (RFC 7518, 3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// How much clock difference between the issuer and this service is forgiven, in seconds.
const LEEWAY_SECONDS: i64 = 5;

/// The claims this service reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Written when configured; checked by the validation, which reads them itself (an `aud`
    /// may be a list).
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// The claims read off a verified token: the registered ones by name, the rest (the admin
/// claim among them) as they came.
#[derive(Debug, Deserialize)]
struct VerifiedClaims {
    sub: String,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// Which claim makes a caller an admin: `JWT_ADMIN_CLAIM` (default `role`) holding, or (for a
/// list such as `cognito:groups`) containing, `JWT_ADMIN_VALUE` (default `admin`).
///
/// Behind an identity provider this must be a claim the provider controls, never an attribute
/// users may edit about themselves: with Cognito, a group (`cognito:groups`), not a writable
/// custom attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminClaim {
    pub name: String,
    pub value: String,
}

impl Default for AdminClaim {
    fn default() -> Self {
        Self {
            name: "role".to_owned(),
            value: "admin".to_owned(),
        }
    }
}

impl AdminClaim {
    pub fn from_env() -> Result<Self, ConfigError> {
        let default = Self::default();
        let name: String = env_or("JWT_ADMIN_CLAIM", default.name)?;
        let value: String = env_or("JWT_ADMIN_VALUE", default.value)?;
        for (setting, text) in [("JWT_ADMIN_CLAIM", &name), ("JWT_ADMIN_VALUE", &value)] {
            if text.trim().is_empty() {
                return Err(ConfigError {
                    name: setting,
                    value: text.clone(),
                    reason: "must not be empty".to_owned(),
                });
            }
        }
        Ok(Self { name, value })
    }

    /// Whether a token's claim value grants admin: the value itself, or a list holding it.
    pub fn granted_by(&self, claim: Option<&serde_json::Value>) -> bool {
        match claim {
            Some(serde_json::Value::String(text)) => *text == self.value,
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .any(|item| item.as_str() == Some(self.value.as_str())),
            _ => false,
        }
    }

    /// The same for a claim as API Gateway's HTTP API JWT authorizer passes it on: every value
    /// a string, a list written `[a b c]`.
    pub fn granted_by_text(&self, claim: Option<&str>) -> bool {
        let Some(text) = claim else {
            return false;
        };
        if text == self.value {
            return true;
        }
        text.strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
            .is_some_and(|list| {
                list.split([' ', ','])
                    .any(|item| item.trim_matches('"') == self.value)
            })
    }
}

/// What a token must satisfy beyond its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRules {
    /// `JWT_ISSUER`: the `iss` every token must name, if set.
    pub issuer: Option<String>,
    /// `JWT_AUDIENCE`: the audience every token must name, if set (several separated by commas:
    /// any one of them): in its `aud`, or, in a token without `aud`, its `client_id`.
    pub audience: Option<String>,
    /// `JWT_MAX_LIFETIME_SECONDS` (default a day): the longest a token may be valid, from its
    /// `iat` and from now.
    pub max_lifetime: Duration,
    /// Which claim makes an admin.
    pub admin: AdminClaim,
}

impl Default for TokenRules {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            max_lifetime: Duration::days(1),
            admin: AdminClaim::default(),
        }
    }
}

impl TokenRules {
    pub fn from_env() -> Result<Self, ConfigError> {
        let text = |name: &'static str| -> Result<Option<String>, ConfigError> {
            Ok(Some(env_or(name, String::new())?).filter(|v| !v.is_empty()))
        };
        let seconds: i64 = env_or("JWT_MAX_LIFETIME_SECONDS", 86_400)?;
        if !(60..=31_536_000).contains(&seconds) {
            return Err(ConfigError {
                name: "JWT_MAX_LIFETIME_SECONDS",
                value: seconds.to_string(),
                reason: "must be between 60 (a minute) and 31536000 (a year)".to_owned(),
            });
        }
        Ok(Self {
            issuer: text("JWT_ISSUER")?,
            audience: text("JWT_AUDIENCE")?,
            max_lifetime: Duration::seconds(seconds),
            admin: AdminClaim::from_env()?,
        })
    }
}

/// Refuses a secret anyone could guess or read: shorter than [`MIN_SECRET_BYTES`], or the
/// development secret unless the server listens on loopback only (`public` is false).
pub fn check_secret(secret: &str, public: bool) -> Result<(), ConfigError> {
    if secret == DEV_JWT_SECRET {
        if public {
            return Err(ConfigError {
                name: "JWT_SECRET",
                value: "(unset: the development secret)".to_owned(),
                reason: "the development secret is public, so anyone could mint an admin token; \
                         set JWT_SECRET to bind to a non-loopback address"
                    .to_owned(),
            });
        }
        return Ok(());
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(ConfigError {
            name: "JWT_SECRET",
            value: format!("({} bytes)", secret.len()),
            reason: format!("must be at least {MIN_SECRET_BYTES} bytes (256 bits)"),
        });
    }
    Ok(())
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: UserId,
    pub is_admin: bool,
}

impl Caller {
    /// The caller that claims verified elsewhere describe (`sub`, and whether the admin claim
    /// grants admin), e.g. by API Gateway's JWT authorizer.
    pub fn from_verified_claims(sub: &str, is_admin: bool) -> Result<Self, ApiError> {
        let user_id = sub
            .parse()
            .map_err(|_| ApiError::unauthorized("the token's subject is not a valid user id"))?;
        Ok(Self { user_id, is_admin })
    }
}

/// Why an identity provider's key set cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeySetError {
    #[error("the key set holds no RS256 or ES256 signing key")]
    NoUsableKey,
}

/// One of an identity provider's public keys.
#[derive(Clone)]
struct PublishedKey {
    kid: Option<String>,
    key: DecodingKey,
    /// Pinned to the key's one algorithm.
    validation: Validation,
}

/// Where the keys that sign accepted tokens come from.
#[derive(Clone)]
enum Keys {
    /// One shared HS256 secret, which also mints.
    Shared {
        decoding: DecodingKey,
        encoding: EncodingKey,
        validation: Box<Validation>,
    },
    /// An identity provider's published public keys: this service verifies, never signs.
    Published(Vec<PublishedKey>),
}

/// Verifies (and, with a shared secret, for development, mints) tokens.
#[derive(Clone)]
pub struct Authenticator {
    keys: Keys,
    rules: TokenRules,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.keys {
            Keys::Shared { .. } => f.write_str("Authenticator(HS256, <secret>)"),
            Keys::Published(keys) => write!(f, "Authenticator({} published keys)", keys.len()),
        }
    }
}

/// The validation of one algorithm under `rules`.
fn validation(algorithm: Algorithm, rules: &TokenRules) -> Validation {
    let mut validation = Validation::new(algorithm);
    let mut required = vec!["exp", "sub"];
    if let Some(issuer) = &rules.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    // The audience is checked after decoding, as API Gateway's JWT authorizer checks it:
    // `aud`, or, in a token without one (a Cognito access token), `client_id`.
    validation.validate_aud = false;
    validation.set_required_spec_claims(&required);
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECONDS as u64;
    validation
}

/// The algorithm a published key signs with, if it is one this service accepts (RS256, ES256):
/// the one the key names, else the one its type implies.
fn published_algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        _ => return None,
    };
    let named = match jwk.common.key_algorithm {
        Some(KeyAlgorithm::RS256) => Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => Algorithm::ES256,
        Some(_) => return None,
        None => implied,
    };
    (named == implied).then_some(named)
}

impl Authenticator {
    /// HS256 with the default rules (no issuer or audience, tokens of at most a day).
    pub fn hs256(secret: &[u8]) -> Self {
        Self::hs256_with(secret, TokenRules::default())
    }

    pub fn hs256_with(secret: &[u8], rules: TokenRules) -> Self {
        Self {
            keys: Keys::Shared {
                decoding: DecodingKey::from_secret(secret),
                encoding: EncodingKey::from_secret(secret),
                validation: Box::new(validation(Algorithm::HS256, &rules)),
            },
            rules,
        }
    }

    /// Verifies tokens an identity provider signs, with the public keys it publishes (its
    /// JWKS). Only RS256 and ES256 signing keys are used; a token must be signed by one of
    /// them with exactly that key's algorithm.
    pub fn from_jwks(set: &JwkSet, rules: TokenRules) -> Result<Self, KeySetError> {
        let keys: Vec<PublishedKey> = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let algorithm = published_algorithm(jwk)?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some(PublishedKey {
                    kid: jwk.common.key_id.clone(),
                    key,
                    validation: validation(algorithm, &rules),
                })
            })
            .collect();
        if keys.is_empty() {
            return Err(KeySetError::NoUsableKey);
        }
        Ok(Self {
            keys: Keys::Published(keys),
            rules,
        })
    }

    /// Whether the key that signed `token` (by its `kid`) is one this authenticator has: when
    /// it is not, the identity provider may have rotated its keys, and the set is worth
    /// fetching again.
    pub fn knows_signing_key(&self, token: &str) -> bool {
        match &self.keys {
            Keys::Shared { .. } => true,
            Keys::Published(keys) => decode_header(token)
                .is_ok_and(|header| self.published_key(keys, header.kid.as_deref()).is_some()),
        }
    }

    /// The published key a token's `kid` names (with no `kid`, the only key, if there is one).
    fn published_key<'k>(
        &self,
        keys: &'k [PublishedKey],
        kid: Option<&str>,
    ) -> Option<&'k PublishedKey> {
        match kid {
            Some(kid) => keys.iter().find(|key| key.kid.as_deref() == Some(kid)),
            None if keys.len() == 1 => keys.first(),
            None => None,
        }
    }

    /// The key and validation for `token`.
    fn key_for(&self, token: &str) -> Result<(&DecodingKey, &Validation), ApiError> {
        match &self.keys {
            Keys::Shared {
                decoding,
                validation,
                ..
            } => Ok((decoding, validation.as_ref())),
            Keys::Published(keys) => {
                let header = decode_header(token)
                    .map_err(|_| ApiError::unauthorized("token is malformed"))?;
                let key = self
                    .published_key(keys, header.kid.as_deref())
                    .ok_or_else(|| ApiError::unauthorized("token is signed by an unknown key"))?;
                Ok((&key.key, &key.validation))
            }
        }
    }

    /// Checks a token and returns the caller it names.
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        self.verify_until(token).map(|(caller, _)| caller)
    }

    /// Checks a token and returns the caller it names and until when the token is valid (its
    /// `exp`): what a long-lived connection opened with it must not outlive.
    pub fn verify_until(&self, token: &str) -> Result<(Caller, chrono::DateTime<Utc>), ApiError> {
        let (key, validation) = self.key_for(token)?;
        let data = decode::<VerifiedClaims>(token, key, validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let why = match e.kind() {
                ErrorKind::ExpiredSignature => "token has expired",
                ErrorKind::ImmatureSignature => "token is not valid yet (nbf)",
                ErrorKind::InvalidSignature => "token signature is invalid",
                ErrorKind::InvalidAlgorithm => "token algorithm is not accepted",
                ErrorKind::InvalidIssuer => "token issuer is not accepted",
                ErrorKind::InvalidAudience => "token audience is not accepted",
                ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
                _ => "token is malformed",
            };
            ApiError::unauthorized(why)
        })?;
        if let Some(audience) = &self.rules.audience {
            // One audience, or several separated by commas (the template's list).
            let accepted = |aud: Option<&str>| {
                aud.is_some_and(|aud| audience.split(',').any(|a| a.trim() == aud))
            };
            let named = match data.claims.other.get("aud") {
                Some(serde_json::Value::String(aud)) => accepted(Some(aud)),
                Some(serde_json::Value::Array(auds)) => {
                    auds.iter().any(|aud| accepted(aud.as_str()))
                }
                Some(_) => false,
                None => accepted(
                    data.claims
                        .other
                        .get("client_id")
                        .and_then(|id| id.as_str()),
                ),
            };
            if !named {
                return Err(ApiError::unauthorized("token audience is not accepted"));
            }
        }
        let now = Utc::now().timestamp();
        let longest = self.rules.max_lifetime.num_seconds() + LEEWAY_SECONDS;
        if let Some(iat) = data.claims.iat {
            if iat > now + LEEWAY_SECONDS {
                return Err(ApiError::unauthorized(
                    "token is issued in the future (iat)",
                ));
            }
            if data.claims.exp - iat > longest {
                return Err(ApiError::unauthorized(
                    "token lives longer than this service accepts",
                ));
            }
        }
        if data.claims.exp - now > longest {
            return Err(ApiError::unauthorized(
                "token lives longer than this service accepts",
            ));
        }
        let user_id = data
            .claims
            .sub
            .parse::<UserId>()
            .map_err(|_| ApiError::unauthorized("token subject is not a valid user id"))?;
        let expires_at = chrono::DateTime::from_timestamp(data.claims.exp, 0)
            .ok_or_else(|| ApiError::unauthorized("token expiry is out of range"))?;
        let is_admin = self
            .rules
            .admin
            .granted_by(data.claims.other.get(&self.rules.admin.name));
        Ok((Caller { user_id, is_admin }, expires_at))
    }

    /// Reads `Authorization: Bearer <token>`.
    pub fn verify_header(&self, header: Option<&str>) -> Result<Caller, ApiError> {
        let value =
            header.ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::unauthorized("Authorization must be a Bearer token"))?;
        self.verify(token.trim())
    }

    /// Mints a token for a user (the development `token` subcommand and tests).
    ///
    /// # Panics
    ///
    /// With an identity provider's keys ([`Authenticator::from_jwks`]): only the provider signs
    /// those tokens.
    pub fn mint(&self, user: &UserId, admin: bool, ttl: Duration) -> String {
        let Keys::Shared { encoding, .. } = &self.keys else {
            panic!("tokens verified with an identity provider's keys are minted by the provider");
        };
        let now = Utc::now();
        let claims = Claims {
            sub: user.to_string(),
            exp: (now + ttl).timestamp(),
            iat: Some(now.timestamp()),
            nbf: None,
            role: None,
            iss: self.rules.issuer.clone(),
            // The first accepted audience, when several are.
            aud: self
                .rules
                .audience
                .as_deref()
                .and_then(|a| a.split(',').next())
                .map(|a| a.trim().to_owned()),
        };
        let mut claims = serde_json::to_value(claims).expect("claims always serialise");
        if admin {
            // Under whatever claim this service reads as the admin's.
            claims[&self.rules.admin.name] = self.rules.admin.value.clone().into();
        }
        encode(&Header::new(Algorithm::HS256), &claims, encoding)
            .expect("HS256 signing cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_carry_the_role() {
        let auth = Authenticator::hs256(b"secret");
        let alice: UserId = "alice".parse().unwrap();
        let caller = auth
            .verify(&auth.mint(&alice, true, Duration::minutes(5)))
            .unwrap();
        assert_eq!(
            caller,
            Caller {
                user_id: alice.clone(),
                is_admin: true
            }
        );
        assert!(
            !auth
                .verify(&auth.mint(&alice, false, Duration::minutes(5)))
                .unwrap()
                .is_admin
        );
    }

    #[test]
    fn verified_claims_name_the_caller() {
        let admin = Caller::from_verified_claims("ops", true).unwrap();
        assert_eq!(
            admin,
            Caller {
                user_id: "ops".parse().unwrap(),
                is_admin: true
            }
        );
        let refused = Caller::from_verified_claims("has space", true).unwrap_err();
        assert_eq!(refused.code, "UNAUTHORIZED");
    }

    #[test]
    fn only_the_configured_claim_makes_an_admin() {
        use serde_json::json;
        let role = AdminClaim::default();
        assert!(role.granted_by(Some(&json!("admin"))));
        assert!(!role.granted_by(Some(&json!("Admin"))), "exactly the value");
        assert!(!role.granted_by(None));
        let groups = AdminClaim {
            name: "cognito:groups".into(),
            value: "admin".into(),
        };
        assert!(groups.granted_by(Some(&json!(["fans", "admin"]))));
        assert!(!groups.granted_by(Some(&json!(["fans", "administrators"]))));
        assert!(!groups.granted_by(Some(&json!({"admin": true}))));
        // As API Gateway's JWT authorizer flattens them.
        assert!(groups.granted_by_text(Some("[fans admin]")));
        assert!(groups.granted_by_text(Some("admin")));
        assert!(!groups.granted_by_text(Some("[fans administrators]")));
        assert!(!groups.granted_by_text(Some("superadmin")));
        assert!(!groups.granted_by_text(None));

        // A shared-secret authenticator mints and reads the configured claim, and nothing else.
        let secret = b"0123456789abcdef0123456789abcdef";
        let auth = Authenticator::hs256_with(
            secret,
            TokenRules {
                admin: groups,
                ..TokenRules::default()
            },
        );
        let ops: UserId = "ops".parse().unwrap();
        assert!(
            auth.verify(&auth.mint(&ops, true, Duration::minutes(5)))
                .unwrap()
                .is_admin
        );
        let now = Utc::now().timestamp();
        let self_declared = signed(
            secret,
            serde_json::json!({"sub": "ops", "exp": now + 60, "role": "admin"}),
        );
        assert!(
            !auth.verify(&self_declared).unwrap().is_admin,
            "role is not the admin claim here"
        );
    }

    #[test]
    fn bad_tokens_are_refused() {
        let auth = Authenticator::hs256(b"secret");
        let other = Authenticator::hs256(b"other");
        let alice: UserId = "alice".parse().unwrap();
        assert!(
            auth.verify(&other.mint(&alice, false, Duration::minutes(5)))
                .is_err(),
            "wrong key"
        );
        assert!(
            auth.verify(&auth.mint(&alice, false, Duration::minutes(-5)))
                .is_err(),
            "expired"
        );
        assert!(auth.verify("not.a.jwt").is_err());
        // alg=none with the same claims must not pass.
        let none = format!(
            "{}.{}.",
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0", "eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0"
        );
        assert!(auth.verify(&none).is_err());
        // HS384 signed with the right secret: algorithm is pinned.
        let claims = Claims {
            sub: "alice".into(),
            exp: Utc::now().timestamp() + 60,
            iat: None,
            nbf: None,
            role: None,
            iss: None,
            aud: None,
        };
        let hs384 = encode(
            &Header::new(Algorithm::HS384),
            &claims,
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert!(auth.verify(&hs384).is_err());
        assert!(auth.verify_header(None).is_err());
        assert!(auth.verify_header(Some("Basic abc")).is_err());
    }

    /// Signs `claims` (as JSON) with `secret`, HS256.
    fn signed(secret: &[u8], claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn time_claims_are_honoured() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let auth = Authenticator::hs256(secret);
        let now = Utc::now().timestamp();
        let ok = signed(
            secret,
            serde_json::json!({"sub": "alice", "exp": now + 600, "iat": now}),
        );
        assert!(auth.verify(&ok).is_ok());
        let early = signed(
            secret,
            serde_json::json!({"sub": "alice", "exp": now + 7200, "nbf": now + 3600}),
        );
        assert_eq!(
            auth.verify(&early).unwrap_err().message,
            "token is not valid yet (nbf)"
        );
        let from_the_future = signed(
            secret,
            serde_json::json!({"sub": "alice", "exp": now + 7200, "iat": now + 3600}),
        );
        assert_eq!(
            auth.verify(&from_the_future).unwrap_err().message,
            "token is issued in the future (iat)"
        );
        let ten_years = signed(
            secret,
            serde_json::json!({"sub": "alice", "exp": now + 10 * 365 * 86_400, "iat": now}),
        );
        assert!(auth.verify(&ten_years).is_err(), "longer than a day");
        let no_iat = signed(
            secret,
            serde_json::json!({"sub": "alice", "exp": now + 2 * 86_400}),
        );
        assert!(
            auth.verify(&no_iat).is_err(),
            "valid for longer than a day from now"
        );
        let old_iat = signed(
            secret,
            serde_json::json!({"sub": "alice", "exp": now + 600, "iat": now - 2 * 86_400}),
        );
        assert!(
            auth.verify(&old_iat).is_err(),
            "issued for longer than a day"
        );
        let week = Authenticator::hs256_with(
            secret,
            TokenRules {
                max_lifetime: Duration::days(7),
                ..TokenRules::default()
            },
        );
        let six_days = signed(
            secret,
            serde_json::json!({"sub": "alice", "exp": now + 6 * 86_400, "iat": now}),
        );
        assert!(week.verify(&six_days).is_ok());
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let rules = TokenRules {
            issuer: Some("https://id.example".into()),
            audience: Some("seatbook".into()),
            ..TokenRules::default()
        };
        let strict = Authenticator::hs256_with(secret, rules);
        let alice: UserId = "alice".parse().unwrap();
        assert!(
            strict
                .verify(&strict.mint(&alice, false, Duration::minutes(5)))
                .is_ok(),
            "its own tokens name both"
        );
        let now = Utc::now().timestamp();
        let claims = |iss: &str, aud: serde_json::Value| serde_json::json!({"sub": "alice", "exp": now + 60, "iss": iss, "aud": aud});
        assert!(
            strict
                .verify(&signed(
                    secret,
                    claims("https://id.example", "seatbook".into())
                ))
                .is_ok()
        );
        assert!(
            strict
                .verify(&signed(
                    secret,
                    claims(
                        "https://id.example",
                        serde_json::json!(["other", "seatbook"])
                    )
                ))
                .is_ok(),
            "one of several audiences"
        );
        assert_eq!(
            strict
                .verify(&signed(
                    secret,
                    claims("https://evil.example", "seatbook".into())
                ))
                .unwrap_err()
                .message,
            "token issuer is not accepted"
        );
        assert_eq!(
            strict
                .verify(&signed(
                    secret,
                    claims("https://id.example", "other".into())
                ))
                .unwrap_err()
                .message,
            "token audience is not accepted"
        );
        let bare = signed(secret, serde_json::json!({"sub": "alice", "exp": now + 60}));
        assert!(strict.verify(&bare).is_err(), "iss and aud are required");
        let lax = Authenticator::hs256(secret);
        assert!(
            lax.verify(&signed(secret, claims("anyone", "anything".into())))
                .is_ok(),
            "not configured, not checked"
        );
    }

    #[test]
    fn several_audiences_may_be_accepted() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let either = Authenticator::hs256_with(
            secret,
            TokenRules {
                audience: Some("web, mobile".into()),
                ..TokenRules::default()
            },
        );
        let alice: UserId = "alice".parse().unwrap();
        assert!(
            either
                .verify(&either.mint(&alice, false, Duration::minutes(5)))
                .is_ok(),
            "its own tokens name the first"
        );
        let now = Utc::now().timestamp();
        for aud in ["web", "mobile"] {
            let token = signed(
                secret,
                serde_json::json!({"sub": "alice", "exp": now + 60, "aud": aud}),
            );
            assert!(either.verify(&token).is_ok(), "{aud}");
        }
        let other = signed(
            secret,
            serde_json::json!({"sub": "alice", "exp": now + 60, "aud": "web, mobile"}),
        );
        assert!(
            either.verify(&other).is_err(),
            "the list is not an audience"
        );
        let access = signed(
            secret,
            serde_json::json!({"sub": "alice", "exp": now + 60, "client_id": "mobile"}),
        );
        assert!(either.verify(&access).is_ok(), "client_id without aud");
    }

    #[test]
    fn weak_secrets_are_refused() {
        assert!(check_secret(DEV_JWT_SECRET, false).is_ok(), "on loopback");
        let public = check_secret(DEV_JWT_SECRET, true).unwrap_err();
        assert_eq!(public.name, "JWT_SECRET");
        let short = check_secret("x", false).unwrap_err();
        assert!(short.reason.contains("32 bytes"), "{short:?}");
        assert!(check_secret(&"k".repeat(31), true).is_err());
        assert!(check_secret(&"k".repeat(32), true).is_ok());
    }
}
