//! Bearer-token authentication: HS256 JWTs with `sub` = user id and `role: "admin"` for admins.
//!
//! The algorithm is pinned (a token that names another algorithm, including `none`, is refused),
//! `exp` is required and enforced, and `sub` must be a valid [`UserId`]. The same claims can come
//! from API Gateway's JWT authorizer on AWS; this module only verifies tokens itself.

use crate::error::ApiError;
use booking_core::UserId;
use chrono::{Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

/// The development secret used when `JWT_SECRET` is unset. Printed as such at start-up; never
/// acceptable in production.
pub const DEV_JWT_SECRET: &str = "seatbook-local-development-secret-do-not-use-in-production";

/// The claims this service reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: UserId,
    pub is_admin: bool,
}

impl Caller {
    /// The caller that claims verified elsewhere describe (`sub`, and `role` = "admin" for an
    /// admin), e.g. by API Gateway's JWT authorizer.
    pub fn from_verified_claims(sub: &str, role: Option<&str>) -> Result<Self, ApiError> {
        let user_id = sub
            .parse()
            .map_err(|_| ApiError::unauthorized("the token's subject is not a valid user id"))?;
        Ok(Self {
            user_id,
            is_admin: role == Some("admin"),
        })
    }
}

/// Verifies (and, for development, mints) tokens.
#[derive(Clone)]
pub struct Authenticator {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator(HS256, <secret>)")
    }
}

impl Authenticator {
    pub fn hs256(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        Self {
            decoding: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
            validation,
        }
    }

    /// Checks a token and returns the caller it names.
    pub fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            let why = match e.kind() {
                ErrorKind::ExpiredSignature => "token has expired",
                ErrorKind::InvalidSignature => "token signature is invalid",
                ErrorKind::InvalidAlgorithm => "token algorithm is not accepted",
                ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
                _ => "token is malformed",
            };
            ApiError::unauthorized(why)
        })?;
        let user_id = data
            .claims
            .sub
            .parse::<UserId>()
            .map_err(|_| ApiError::unauthorized("token subject is not a valid user id"))?;
        Ok(Caller {
            user_id,
            is_admin: data.claims.role.as_deref() == Some("admin"),
        })
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
    pub fn mint(&self, user: &UserId, admin: bool, ttl: Duration) -> String {
        let now = Utc::now();
        let claims = Claims {
            sub: user.to_string(),
            exp: (now + ttl).timestamp(),
            iat: Some(now.timestamp()),
            role: admin.then(|| "admin".to_owned()),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
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
    fn verified_claims_name_the_caller_and_only_admin_is_admin() {
        let admin = Caller::from_verified_claims("ops", Some("admin")).unwrap();
        assert_eq!(
            admin,
            Caller {
                user_id: "ops".parse().unwrap(),
                is_admin: true
            }
        );
        assert!(
            !Caller::from_verified_claims("alice", Some("Admin"))
                .unwrap()
                .is_admin
        );
        assert!(
            !Caller::from_verified_claims("alice", None)
                .unwrap()
                .is_admin
        );
        let refused = Caller::from_verified_claims("has space", Some("admin")).unwrap_err();
        assert_eq!(refused.code, "UNAUTHORIZED");
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
            role: None,
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
}
