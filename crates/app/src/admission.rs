//! Admission tokens of the waiting room: what a user let in by a show's room shows to
//! `POST /holds` for that show. Signed (HS256), short-lived, and bound to one user and one show,
//! so one cannot be passed to a friend, used for another show, or kept for the next sale.
//!
//! They have a key of their own, never the bearer tokens' one: a bearer token names a user for
//! any route, an admission token only says "this user may shop this show until then", and with
//! two keys neither can be presented as the other. Their audience is fixed
//! ([`ADMISSION_AUDIENCE`]) as a second guard. Expiry is checked against the caller's clock (the
//! app's, so tests move it), with no leeway: an admission ends when the room said it would.

use booking_core::{ShowId, UserId};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

/// The `aud` of every admission token, and the only one accepted.
pub const ADMISSION_AUDIENCE: &str = "seatbook-admission";

/// The shortest key accepted, in bytes (HS256's own strength).
pub const MIN_KEY_BYTES: usize = 32;

/// An admission: who, to which show, which place of its room, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub user: UserId,
    pub show: ShowId,
    /// The place's number in the room: which admission this is, for the room's accounting.
    pub ticket: u64,
    pub expires_at: DateTime<Utc>,
}

/// Why a token does not admit the caller. Each is answered 403 `ADMISSION_REQUIRED` (the
/// reason in its details): the remedy is the same, to go through the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionRefused {
    #[error("the admission token is not one this server signed")]
    Invalid,
    #[error("the admission has expired")]
    Expired,
    #[error("the admission is another user's")]
    OtherUser,
    #[error("the admission is for another show")]
    OtherShow,
}

impl AdmissionRefused {
    /// The machine-readable reason, for the error's details.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Invalid => "INVALID",
            Self::Expired => "EXPIRED",
            Self::OtherUser => "OTHER_USER",
            Self::OtherShow => "OTHER_SHOW",
        }
    }
}

/// The key is shorter than [`MIN_KEY_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the admission key must be at least {MIN_KEY_BYTES} bytes")]
pub struct KeyTooShort;

#[derive(Debug, Serialize, Deserialize)]
struct AdmissionClaims {
    sub: String,
    show: String,
    ticket: u64,
    exp: i64,
    aud: String,
}

/// A fresh random secret of 64 hexadecimal characters (from the operating system's generator,
/// by way of two random UUIDs): for a key nobody else knows.
pub fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Mints and checks admission tokens.
pub struct AdmissionKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for AdmissionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdmissionKey(HS256, <secret>)")
    }
}

impl AdmissionKey {
    pub fn new(secret: &[u8]) -> Result<Self, KeyTooShort> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(KeyTooShort);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[ADMISSION_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        // Checked in `verify` against the app's clock instead.
        validation.validate_exp = false;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        })
    }

    /// The token of `admission`.
    pub fn mint(&self, admission: &Admission) -> String {
        let claims = AdmissionClaims {
            sub: admission.user.to_string(),
            show: admission.show.to_string(),
            ticket: admission.ticket,
            exp: admission.expires_at.timestamp(),
            aud: ADMISSION_AUDIENCE.to_owned(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing does not fail")
    }

    /// Checks that `token` admits `user` to `show` at `now`.
    pub fn verify(
        &self,
        token: &str,
        user: &UserId,
        show: ShowId,
        now: DateTime<Utc>,
    ) -> Result<Admission, AdmissionRefused> {
        let claims = decode::<AdmissionClaims>(token, &self.decoding, &self.validation)
            .map_err(|_| AdmissionRefused::Invalid)?
            .claims;
        let expires_at =
            DateTime::from_timestamp(claims.exp, 0).ok_or(AdmissionRefused::Invalid)?;
        let admitted_user: UserId = claims.sub.parse().map_err(|_| AdmissionRefused::Invalid)?;
        let admitted_show: ShowId = claims.show.parse().map_err(|_| AdmissionRefused::Invalid)?;
        if now >= expires_at {
            return Err(AdmissionRefused::Expired);
        }
        if admitted_user != *user {
            return Err(AdmissionRefused::OtherUser);
        }
        if admitted_show != show {
            return Err(AdmissionRefused::OtherShow);
        }
        Ok(Admission {
            user: admitted_user,
            show: admitted_show,
            ticket: claims.ticket,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Authenticator;

    const KEY: &[u8] = b"an admission key of thirty-two bytes!!";

    fn show(n: u128) -> ShowId {
        ShowId::from_uuid(uuid::Uuid::from_u128(n))
    }

    fn admission(user: &str, expires_at: DateTime<Utc>) -> Admission {
        Admission {
            user: user.parse().unwrap(),
            show: show(1),
            ticket: 7,
            expires_at,
        }
    }

    #[test]
    fn an_admission_admits_its_user_to_its_show_until_it_expires() {
        let key = AdmissionKey::new(KEY).unwrap();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let until = now + chrono::Duration::seconds(60);
        let token = key.mint(&admission("alice", until));
        let alice: UserId = "alice".parse().unwrap();
        let admitted = key.verify(&token, &alice, show(1), now).unwrap();
        assert_eq!(admitted, admission("alice", until));
        assert_eq!(
            key.verify(&token, &"mallory".parse().unwrap(), show(1), now),
            Err(AdmissionRefused::OtherUser)
        );
        assert_eq!(
            key.verify(&token, &alice, show(2), now),
            Err(AdmissionRefused::OtherShow)
        );
        assert_eq!(
            key.verify(&token, &alice, show(1), until),
            Err(AdmissionRefused::Expired),
            "no leeway"
        );
    }

    #[test]
    fn only_this_key_s_admission_tokens_are_accepted() {
        let key = AdmissionKey::new(KEY).unwrap();
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let alice: UserId = "alice".parse().unwrap();
        let token = key.mint(&admission("alice", now + chrono::Duration::seconds(60)));

        // Another key's, a tampered one, and a bearer token signed with the same bytes.
        let other = AdmissionKey::new(b"another admission key, also long enough").unwrap();
        assert_eq!(
            other.verify(&token, &alice, show(1), now),
            Err(AdmissionRefused::Invalid)
        );
        let (head, signature) = token.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        let tampered = format!("{head}.{flipped}{}", &signature[1..]);
        assert_eq!(
            key.verify(&tampered, &alice, show(1), now),
            Err(AdmissionRefused::Invalid)
        );
        let bearer = Authenticator::hs256(KEY).mint(&alice, false, chrono::Duration::hours(1));
        assert_eq!(
            key.verify(&bearer, &alice, show(1), now),
            Err(AdmissionRefused::Invalid),
            "a bearer token is no admission, even under the same bytes"
        );
        assert!(
            Authenticator::hs256(KEY).verify(&token).is_err(),
            "and an admission is no bearer token: its audience is refused"
        );
        assert!(AdmissionKey::new(&KEY[..31]).is_err());
    }
}
