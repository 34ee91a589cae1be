//! Domain records and their state machines (the contract in docs/API.md).
//!
//! Request: QUEUED → PROCESSING → SUCCESS | FAILED; QUEUED/PROCESSING → EXPIRED.
//! Hold: HELD → RELEASED | EXPIRED | CONVERTED.
//! The transition tables here are the single place those rules are written down; stores assert
//! them with `WHERE status IN (...)` guards derived from the same lists.

use crate::error::StoreError;
use crate::ids::{HoldId, IdempotencyKey, MovieId, RequestId, SeatId, ShowId, UserId};
use crate::layout::SeatLayout;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Defines a status enum with its wire text (SCREAMING_SNAKE_CASE, as stored and as sent),
/// `ALL`, `as_str`, `Display` and `FromStr`. Used for every state machine of the domain.
macro_rules! status_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize,
            ::utoipa::ToSchema,
        )]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::model::UnknownStatus;
            fn from_str(s: &str) -> Result<Self, $crate::model::UnknownStatus> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::model::UnknownStatus(s.to_owned())),
                }
            }
        }
    };
}

/// A status string that is not one of the known states (a corrupt row, a newer schema).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

status_enum!(
    /// Where a hold request is in its life.
    RequestStatus { Queued => "QUEUED", Processing => "PROCESSING", Success => "SUCCESS", Failed => "FAILED", Expired => "EXPIRED" }
);
status_enum!(
    /// Where a hold is in its life.
    HoldStatus { Held => "HELD", Released => "RELEASED", Expired => "EXPIRED", Converted => "CONVERTED" }
);
status_enum!(
    /// What the seat map shows for one seat.
    SeatStatus { Available => "AVAILABLE", Held => "HELD", Booked => "BOOKED", Blocked => "BLOCKED" }
);

impl RequestStatus {
    /// States a request can still leave; everything else is final.
    pub const PENDING: &'static [RequestStatus] =
        &[RequestStatus::Queued, RequestStatus::Processing];

    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Success | Self::Failed | Self::Expired)
    }

    pub const fn can_become(self, next: RequestStatus) -> bool {
        use RequestStatus::*;
        matches!(
            (self, next),
            (Queued, Processing)
                | (Queued | Processing, Success | Failed | Expired)
                | (Processing, Queued)
        )
    }
}

impl HoldStatus {
    pub const fn is_terminal(self) -> bool {
        !matches!(self, Self::Held)
    }

    pub const fn can_become(self, next: HoldStatus) -> bool {
        matches!(
            (self, next),
            (Self::Held, Self::Released | Self::Expired | Self::Converted)
        )
    }
}

/// A movie in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Movie {
    pub movie_id: MovieId,
    pub title: String,
    pub description: String,
    pub duration_minutes: u32,
    pub rating: String,
    pub genres: Vec<String>,
    pub language: String,
}

/// One screening: the unit that requests are serialised on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Show {
    pub show_id: ShowId,
    pub movie_id: MovieId,
    pub starts_at: DateTime<Utc>,
    pub auditorium: String,
    /// Shared: the engine, the seat map and the validator all read the same layout.
    pub layout: Arc<SeatLayout>,
    /// Set once an operator cancels the show; never unset. A cancelled show takes no request,
    /// order or payment, and what it had is wound up (see `booking_app::cancellation`).
    pub cancelled: Option<ShowCancellation>,
}

/// When and why a show was cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShowCancellation {
    pub at: DateTime<Utc>,
    /// What its ticket holders are told.
    pub reason: String,
}

impl Show {
    pub fn date(&self) -> NaiveDate {
        self.starts_at.date_naive()
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.is_some()
    }

    /// The message every request, order and refund of this show ends with once it is cancelled.
    pub fn cancellation_message(&self) -> Option<String> {
        self.cancelled
            .as_ref()
            .map(|c| cancellation_message(&c.reason))
    }
}

/// What a request or order of a cancelled show ends with: one text for every store and push.
pub fn cancellation_message(reason: &str) -> String {
    if reason.is_empty() {
        "The show was cancelled".to_owned()
    } else {
        format!("The show was cancelled: {reason}")
    }
}

/// What the intake hands to the store: a validated request, not yet numbered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBookingRequest {
    pub request_id: RequestId,
    pub user_id: UserId,
    pub show_id: ShowId,
    pub seat_ids: Vec<SeatId>,
    pub idempotency_key: Option<IdempotencyKey>,
    pub created_at: DateTime<Utc>,
    /// If not decided by then, the request ends EXPIRED.
    pub expires_at: DateTime<Utc>,
    /// Most undecided requests (QUEUED or PROCESSING, not dead letters) its user may have for
    /// its show, this one included; the store refuses it beyond that
    /// ([`Inserted::TooManyOpen`](crate::ports::Inserted::TooManyOpen)). `None`: no cap.
    pub max_open: Option<u32>,
}

/// A hold request as stored: what a client polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingRequest {
    pub request_id: RequestId,
    pub user_id: UserId,
    pub show_id: ShowId,
    pub seat_ids: Vec<SeatId>,
    pub status: RequestStatus,
    /// Global arrival order, assigned by the store when the request is made durable.
    pub seq: i64,
    pub idempotency_key: Option<IdempotencyKey>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub outcome: Option<RequestOutcome>,
}

/// How long past its deadline a request may stay PROCESSING before the sweep ends it EXPIRED:
/// long enough that no decider still at work on it is overtaken (a decision takes milliseconds;
/// its commit would find the request decided and decide again anyway), short enough that a
/// request whose decider was cut off (a crash, a timeout, a cancelled call) does not stay
/// undecided for ever.
pub const PROCESSING_GRACE: chrono::Duration = chrono::Duration::minutes(5);

/// The message of a request that was not decided before its deadline; one text for every adapter.
pub const REQUEST_EXPIRED_MESSAGE: &str = "Request expired before it could be processed";

/// The result recorded when a request is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOutcome {
    Granted {
        hold_id: HoldId,
        hold_expires_at: DateTime<Utc>,
    },
    Rejected {
        unavailable: Vec<SeatId>,
        alternatives: Vec<SeatId>,
        message: String,
    },
    Expired {
        message: String,
    },
}

impl RequestOutcome {
    pub fn status(&self) -> RequestStatus {
        match self {
            Self::Granted { .. } => RequestStatus::Success,
            Self::Rejected { .. } => RequestStatus::Failed,
            Self::Expired { .. } => RequestStatus::Expired,
        }
    }

    /// The human-readable line sent with the result.
    pub fn message(&self) -> String {
        match self {
            Self::Granted { .. } => "Seats held".to_owned(),
            Self::Rejected { message, .. } | Self::Expired { message } => message.clone(),
        }
    }
}

/// A request's outcome in the columns every store keeps it in, beside its status: the one
/// mapping between [`RequestOutcome`] and stored rows, so that every store writes and reads
/// outcomes alike (each adapter only encodes the columns in its own types).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutcomeColumns {
    /// The line sent with the result.
    pub message: Option<String>,
    /// SUCCESS: the hold, and when it expires.
    pub hold_id: Option<HoldId>,
    pub hold_expires_at: Option<DateTime<Utc>>,
    /// FAILED: the seats that were taken, and what was offered instead.
    pub unavailable: Option<Vec<SeatId>>,
    pub alternatives: Option<Vec<SeatId>>,
}

impl RequestOutcome {
    /// The columns that record this outcome (its status is [`RequestOutcome::status`]).
    pub fn columns(&self) -> OutcomeColumns {
        let message = Some(self.message());
        match self {
            Self::Granted {
                hold_id,
                hold_expires_at,
            } => OutcomeColumns {
                message,
                hold_id: Some(*hold_id),
                hold_expires_at: Some(*hold_expires_at),
                ..OutcomeColumns::default()
            },
            Self::Rejected {
                unavailable,
                alternatives,
                ..
            } => OutcomeColumns {
                message,
                unavailable: Some(unavailable.clone()),
                alternatives: Some(alternatives.clone()),
                ..OutcomeColumns::default()
            },
            Self::Expired { .. } => OutcomeColumns {
                message,
                ..OutcomeColumns::default()
            },
        }
    }

    /// The outcome a stored row records, if its status is final. A SUCCESS row without its hold
    /// is corrupt; missing lists read as empty and a missing message as the default one.
    pub fn from_columns(
        status: RequestStatus,
        columns: OutcomeColumns,
    ) -> Result<Option<Self>, StoreError> {
        Ok(match status {
            RequestStatus::Queued | RequestStatus::Processing => None,
            RequestStatus::Success => Some(Self::Granted {
                hold_id: columns
                    .hold_id
                    .ok_or_else(|| StoreError::corrupt("hold_id: missing on a SUCCESS request"))?,
                hold_expires_at: columns.hold_expires_at.ok_or_else(|| {
                    StoreError::corrupt("hold_expires_at: missing on a SUCCESS request")
                })?,
            }),
            RequestStatus::Failed => Some(Self::Rejected {
                unavailable: columns.unavailable.unwrap_or_default(),
                alternatives: columns.alternatives.unwrap_or_default(),
                message: columns.message.unwrap_or_default(),
            }),
            RequestStatus::Expired => Some(Self::Expired {
                message: columns
                    .message
                    .unwrap_or_else(|| REQUEST_EXPIRED_MESSAGE.to_owned()),
            }),
        })
    }
}

impl BookingRequest {
    pub fn from_new(new: NewBookingRequest, seq: i64) -> Self {
        Self {
            request_id: new.request_id,
            user_id: new.user_id,
            show_id: new.show_id,
            seat_ids: new.seat_ids,
            status: RequestStatus::Queued,
            seq,
            idempotency_key: new.idempotency_key,
            created_at: new.created_at,
            expires_at: new.expires_at,
            processed_at: None,
            outcome: None,
        }
    }
}

/// A hold on seats, created when a request is granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub hold_id: HoldId,
    pub request_id: RequestId,
    pub user_id: UserId,
    pub show_id: ShowId,
    pub seat_ids: Vec<SeatId>,
    pub status: HoldStatus,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl Hold {
    /// The status as of `now`: a HELD hold past its expiry is EXPIRED whether or not a sweeper
    /// has written that down yet (expiry is decided by time, not by cleanup).
    pub fn status_at(&self, now: DateTime<Utc>) -> HoldStatus {
        if self.status == HoldStatus::Held && self.expires_at <= now {
            HoldStatus::Expired
        } else {
            self.status
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_state_machine() {
        use RequestStatus::*;
        assert!(Queued.can_become(Processing));
        assert!(Processing.can_become(Success));
        assert!(Queued.can_become(Expired));
        for t in [Success, Failed, Expired] {
            assert!(t.is_terminal());
            for next in RequestStatus::ALL {
                assert!(!t.can_become(*next), "{t} must be final");
            }
        }
    }

    #[test]
    fn hold_state_machine() {
        use HoldStatus::*;
        assert!(
            Held.can_become(Released) && Held.can_become(Expired) && Held.can_become(Converted)
        );
        for t in [Released, Expired, Converted] {
            assert!(HoldStatus::ALL.iter().all(|n| !t.can_become(*n)));
        }
    }

    #[test]
    fn every_outcome_round_trips_through_its_columns() {
        let seat = |s: &str| s.parse::<SeatId>().unwrap();
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        for outcome in [
            RequestOutcome::Granted {
                hold_id: HoldId::new_random(),
                hold_expires_at: at,
            },
            RequestOutcome::Rejected {
                unavailable: vec![seat("A1")],
                alternatives: vec![seat("A2")],
                message: "Seat A1 is no longer available".into(),
            },
            RequestOutcome::Rejected {
                unavailable: vec![],
                alternatives: vec![],
                message: "seat Z9 is not in this show's layout".into(),
            },
            RequestOutcome::Expired {
                message: REQUEST_EXPIRED_MESSAGE.into(),
            },
        ] {
            let back = RequestOutcome::from_columns(outcome.status(), outcome.columns()).unwrap();
            assert_eq!(back, Some(outcome));
        }
        assert!(
            RequestOutcome::from_columns(RequestStatus::Success, OutcomeColumns::default())
                .is_err(),
            "a SUCCESS row without its hold is corrupt"
        );
        assert_eq!(
            RequestOutcome::from_columns(RequestStatus::Queued, OutcomeColumns::default()),
            Ok(None)
        );
    }

    #[test]
    fn statuses_round_trip_as_text() {
        for s in RequestStatus::ALL {
            assert_eq!(s.as_str().parse::<RequestStatus>().unwrap(), *s);
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
        }
    }
}
