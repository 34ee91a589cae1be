//! Validated identifiers.
//!
//! Every id that crosses a boundary (HTTP body, path, queue message, database row) is parsed into
//! one of these types once, at the edge; the rest of the code never sees an unchecked string.
//! Seat ids are stored as `(row, number)` pairs rather than strings so the decision engine can
//! index seats without hashing or allocating.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, Type};
use uuid::Uuid;

/// The form of a seat id on the wire (row letters in either case on the way in; always upper
/// case on the way out).
pub const SEAT_PATTERN: &str = "^[A-Za-z]{1,2}[1-9][0-9]{0,2}$";

/// A UUID in the hyphenated form, the only one ids take on the wire.
const UUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// Visible ASCII, as token ids (user ids, keys, payment tokens) are made of.
const VISIBLE_ASCII: &str = "^[!-~]+$";

/// The schema of an id that is a string: its type and what it is.
fn described_string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

/// Why a string was not accepted as an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must be a UUID")]
    NotAUuid { kind: &'static str },
    #[error("seat id {0:?} is not of the form <row letters><seat number>, e.g. \"A12\"")]
    BadSeat(String),
    #[error("{kind} must be 1 to {max} visible ASCII characters")]
    BadToken { kind: &'static str, max: usize },
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub const KIND: &'static str = $kind;

            /// A fresh random id.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }

            /// A fresh id that leads with the current time (a version 7 UUID: 48 bits of Unix
            /// milliseconds, then a counter and random bits), for ids a store inserts many of
            /// a second. Ids made one after another sort next to each other, so an index on
            /// them takes each insert on the same few pages at its end instead of on a random
            /// page of the whole index: the pages a commit writes stay few however large the
            /// table grows. It tells whoever holds it when it was made, which an id returned
            /// only to its owner may.
            pub fn new_time_ordered() -> Self {
                Self(Uuid::now_v7())
            }

            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                // `Uuid::try_parse` accepts braced and URN forms too; ids on the wire are only
                // ever the plain hyphenated form, so anything else is rejected.
                if s.len() != 36 {
                    return Err(IdError::NotAUuid { kind: $kind });
                }
                Uuid::try_parse(s).map(Self).map_err(|_| IdError::NotAUuid { kind: $kind })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                described_string(concat!("A ", $kind, ": a UUID, hyphenated"))
                    .format(Some(SchemaFormat::Custom("uuid".to_owned())))
                    .pattern(Some(UUID_PATTERN))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.serialize(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

uuid_id!(
    /// A movie in the catalog.
    MovieId, "movieId"
);
uuid_id!(
    /// One screening of a movie in one hall; the unit of serialisation (one FIFO lane each).
    ShowId, "showId"
);
uuid_id!(
    /// One accepted hold request (the thing a client polls).
    RequestId, "requestId"
);
uuid_id!(
    /// A granted hold on some seats of a show.
    HoldId, "holdId"
);
uuid_id!(
    /// An order: a converted hold waiting for, or settled by, payment.
    OrderId, "orderId"
);
uuid_id!(
    /// One call to the payment provider (a charge or a refund). It is also the idempotency key
    /// the provider is given, so re-sending an attempt can never move money twice.
    PaymentId, "paymentId"
);

impl HoldId {
    /// Bits flipped to derive a hold id from its request id: every bit except the UUID version
    /// (bits 76..80) and variant (bits 62..64) fields, so the result is a well-formed UUID of
    /// the request id's version. A constant XOR keeps ids that share their leading bits
    /// together, so the holds of time-ordered requests are time-clustered too.
    const FROM_REQUEST_MASK: u128 =
        0x5a3c_96e1_d2b4_0f78_3e6d_a5c1_b7f2_9e04 & !(0xF << 76) & !(0x3 << 62);

    /// The id of the hold a request creates if it is granted.
    ///
    /// Deriving it (a bijection, so distinct requests give distinct holds) instead of drawing a
    /// random one makes processing idempotent: deciding the same request twice names the same
    /// hold, and the store's primary key turns the second insert into a no-op.
    pub fn for_request(request: RequestId) -> Self {
        Self(Uuid::from_u128(
            request.0.as_u128() ^ Self::FROM_REQUEST_MASK,
        ))
    }
}

/// A seat: a row label of one or two capital letters and a seat number (1..=999), e.g. `A12`.
///
/// Stored as a row code (`A` = 0 … `Z` = 25, `AA` = 26 … `ZZ` = 701) and a number, so it is
/// `Copy` and cheap to hash and compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeatId {
    row: u16,
    number: u16,
}

impl SeatId {
    pub const MAX_ROW_CODE: u16 = 26 + 26 * 26 - 1;
    pub const MAX_NUMBER: u16 = 999;

    /// Builds a seat id from a row code and number, if both are in range.
    pub fn new(row: u16, number: u16) -> Option<Self> {
        (row <= Self::MAX_ROW_CODE && (1..=Self::MAX_NUMBER).contains(&number))
            .then_some(Self { row, number })
    }

    pub const fn row_code(&self) -> u16 {
        self.row
    }

    pub const fn number(&self) -> u16 {
        self.number
    }

    /// Parses a row label (`A`, `Z`, `AA`, `ZZ`) into its row code.
    pub fn parse_row_label(label: &str) -> Option<u16> {
        let b = label.as_bytes();
        let letter = |c: u8| {
            c.to_ascii_uppercase()
                .is_ascii_uppercase()
                .then(|| (c.to_ascii_uppercase() - b'A') as u16)
        };
        match b.len() {
            1 => letter(b[0]),
            2 => Some(26 + letter(b[0])? * 26 + letter(b[1])?),
            _ => None,
        }
    }

    /// The label of a row code: the inverse of [`SeatId::parse_row_label`].
    pub fn row_label(code: u16) -> String {
        if code < 26 {
            char::from(b'A' + code as u8).to_string()
        } else {
            let c = code - 26;
            let mut s = String::with_capacity(2);
            s.push(char::from(b'A' + (c / 26) as u8));
            s.push(char::from(b'A' + (c % 26) as u8));
            s
        }
    }
}

impl FromStr for SeatId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let bad = || IdError::BadSeat(s.chars().take(16).collect());
        let split = s.find(|c: char| c.is_ascii_digit()).ok_or_else(bad)?;
        let (label, digits) = s.split_at(split);
        if digits.is_empty()
            || digits.len() > 3
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.starts_with('0')
        {
            return Err(bad());
        }
        let row = Self::parse_row_label(label).ok_or_else(bad)?;
        let number: u16 = digits.parse().map_err(|_| bad())?;
        Self::new(row, number).ok_or_else(bad)
    }
}

impl fmt::Display for SeatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::row_label(self.row), self.number)
    }
}

impl utoipa::PartialSchema for SeatId {
    fn schema() -> RefOr<Schema> {
        described_string("A seat: its row's letters (A to ZZ) and its number in the row (1 to 999)")
            .pattern(Some(SEAT_PATTERN))
            .examples(["A12"])
            .into()
    }
}

impl utoipa::ToSchema for SeatId {}

impl Serialize for SeatId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SeatId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn visible_ascii(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
}

macro_rules! token_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                if visible_ascii(s, $max) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(IdError::BadToken { kind: $kind, max: $max })
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                described_string(concat!("A ", $kind, ": 1 to ", stringify!($max), " visible ASCII characters"))
                    .pattern(Some(VISIBLE_ASCII))
                    .min_length(Some(1))
                    .max_length(Some($max))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

token_id!(
    /// The authenticated user: the JWT `sub` claim (a UUID, an email, `auth0|…`, …).
    UserId, "user id", 128
);
token_id!(
    /// A client-chosen key that makes a `POST` safe to retry (per user).
    IdempotencyKey, "Idempotency-Key", 128
);
token_id!(
    /// What the client's payment form handed over for one payment (a provider's single-use
    /// token, `tok_...`): opaque to us, passed to the provider as it came.
    PaymentToken, "paymentToken", 255
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seat_ids_round_trip() {
        for s in ["A1", "Z999", "AA1", "ZZ12", "B10"] {
            assert_eq!(s.parse::<SeatId>().unwrap().to_string(), s);
        }
        assert_eq!("b7".parse::<SeatId>().unwrap().to_string(), "B7");
    }

    #[test]
    fn bad_seat_ids_are_rejected() {
        for s in [
            "",
            "A",
            "1",
            "A0",
            "A01",
            "A1000",
            "AAA1",
            "A-1",
            "A1B",
            "Ä1",
            "A 1",
            "'; DROP TABLE--",
        ] {
            assert!(s.parse::<SeatId>().is_err(), "{s:?} should be rejected");
        }
    }

    #[test]
    fn row_labels_round_trip_over_the_whole_range() {
        for code in 0..=SeatId::MAX_ROW_CODE {
            assert_eq!(
                SeatId::parse_row_label(&SeatId::row_label(code)),
                Some(code)
            );
        }
    }

    #[test]
    fn hold_ids_are_derived_distinct_and_well_formed() {
        let r = RequestId::new_random();
        let h = HoldId::for_request(r);
        assert_ne!(h.as_uuid(), r.as_uuid());
        assert_eq!(h, HoldId::for_request(r));
        assert_eq!(h.as_uuid().get_version_num(), 4);
        assert_eq!(h.as_uuid().get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn time_ordered_ids_sort_in_the_order_they_were_made() {
        let ids: Vec<RequestId> = (0..1_000).map(|_| RequestId::new_time_ordered()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        // In the text form the stores index, too.
        let text: Vec<String> = ids.iter().map(ToString::to_string).collect();
        assert!(text.windows(2).all(|w| w[0] < w[1]));
        let h = HoldId::for_request(ids[0]);
        assert_eq!(h.as_uuid().get_version_num(), 7);
        assert_eq!(h.as_uuid().get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn uuid_ids_accept_only_the_hyphenated_form() {
        let id = ShowId::new_random();
        assert_eq!(id.to_string().parse::<ShowId>().unwrap(), id);
        assert!(id.as_uuid().simple().to_string().parse::<ShowId>().is_err());
        assert!("not-a-uuid".parse::<ShowId>().is_err());
    }

    #[test]
    fn user_ids_must_be_visible_ascii() {
        assert!("auth0|abc123".parse::<UserId>().is_ok());
        assert!("".parse::<UserId>().is_err());
        assert!("a b".parse::<UserId>().is_err());
        assert!("x".repeat(129).parse::<UserId>().is_err());
        assert!("é".parse::<UserId>().is_err());
    }
}
