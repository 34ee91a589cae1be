//! The booking domain, free of I/O.
//!
//! Everything that decides *who gets which seat* lives here so that it can be tested exhaustively
//! (unit and property tests) without a database, a queue or a clock on the wall. Adapters
//! (SQLite, PostgreSQL, Redis, AWS) and the HTTP layer depend on this crate; it depends on none of
//! them. The [`ports`] module names the capabilities the application needs from the outside world.

// Unit tests are built with every dev-dependency of the package; each uses only some.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod catalog;
pub mod clock;
pub mod commit;
pub mod engine;
pub mod error;
pub mod ids;
pub mod layout;
#[macro_use]
pub mod model;
pub mod order;
pub mod ports;
pub mod protocol;
pub mod rate;
pub mod rng;
pub mod waiting_room;

pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::{
    BatchOutcome, Decision, DecisionEngine, PendingRequest, SeatChange, ShowSnapshot, SnapshotHold,
    rejection_message,
};
pub use error::{
    Chain, MirrorError, PaymentError, PortError, QueueError, StoreError, StoreFailure,
};
pub use ids::{
    HoldId, IdError, IdempotencyKey, MovieId, OrderId, PaymentId, PaymentToken, RequestId, SeatId,
    ShowId, UserId,
};
pub use layout::{Category, LayoutError, RowSpec, SeatLayout};
pub use model::*;
pub use order::*;
