//! Tokens the way a client of the server gets them: HS256 JWTs with `sub`, `exp`, `iat` and, for
//! the admin calls, `role: "admin"`.
//!
//! The load tool is a client: it speaks the API's contract and does not link the server's
//! crates, so it mints its own tokens and carries its own defaults (the local server's
//! development secret and the demo's 500-seat show), which the server's `token` command and demo
//! catalog document.

use chrono::{Duration, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde::Serialize;

/// The local server's development secret (its default when `JWT_SECRET` is unset).
pub const DEV_JWT_SECRET: &str = "seatbook-local-development-secret-do-not-use-in-production";

/// The demo catalog's 500-seat Grand Hall premiere.
pub const GRAND_HALL: &str = "5e0c1a6e-8f1e-4c3a-9b2d-000000000001";

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: i64,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
}

/// A token for `user`, valid for `ttl`.
pub fn mint(secret: &str, user: &str, admin: bool, ttl: Duration) -> String {
    let now = Utc::now();
    let claims = Claims {
        sub: user,
        exp: (now + ttl).timestamp(),
        iat: now.timestamp(),
        role: admin.then_some("admin"),
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tool's copies of the server's defaults and token format stay the server's.
    #[test]
    fn tokens_and_defaults_are_the_servers() {
        assert_eq!(DEV_JWT_SECRET, booking_app::auth::DEV_JWT_SECRET);
        assert_eq!(
            GRAND_HALL,
            booking_app::demo::PREMIERE_GRAND_HALL.to_string()
        );
        let server = booking_app::Authenticator::hs256(DEV_JWT_SECRET.as_bytes());
        let caller = server
            .verify(&mint(DEV_JWT_SECRET, "load-1", false, Duration::minutes(5)))
            .expect("the server accepts the tool's token");
        assert_eq!(
            (caller.user_id.as_str(), caller.is_admin),
            ("load-1", false)
        );
        assert!(
            server
                .verify(&mint(
                    DEV_JWT_SECRET,
                    "load-admin",
                    true,
                    Duration::minutes(5)
                ))
                .unwrap()
                .is_admin
        );
    }
}
