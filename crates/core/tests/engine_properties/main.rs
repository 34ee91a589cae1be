//! Property tests of the decision engine against a deliberately simple reference model.
//!
//! The model ([`Model`](model::Model)) writes the decision rules down as plainly as possible: a
//! map `seat -> (hold, user, expires_at)` plus the booked and blocked seats, and each request
//! decided with plain loops over it. Random small halls (1-4 rows of 1-8 seats, now and then a
//! row of 62-70 seats, some blocked), random stored state, and random batches of requests from a
//! small pool of users (1-4 seats, sometimes unknown, duplicated or blocked ones, sometimes
//! already past their deadline) are fed to both, while the clock jumps forward across hold-TTL
//! boundaries.
//!
//! Besides the model, every run keeps a [`Ledger`](ledger::Ledger) built *only from what the
//! engine reported* (snapshot holds, grants, releases, expiry times), so the invariants can be
//! checked against the engine's own word: what it says it granted must be what its seat map
//! shows.
//!
//! The machinery: `strategies` (the proptest generators), `world` (a scenario made concrete),
//! `model` (the reference model), `ledger` (holds as the engine reported them) and `drivers`
//! (running a world through all three). The properties, by theme: `invariants` (no double holds,
//! all or nothing, one live hold per user, malformed snapshots), `decisions` (the model's
//! verdicts, expiry by time, alternatives) and `batches` (batched equals one by one, seat
//! changes). `orders` is both: the order lifecycle between batches (holds converted into orders,
//! orders confirmed, failed, cancelled or run out), each batch decided by a fresh engine loaded
//! from that state as the stores load it, and the properties that keep holds and orders apart.
//!
//! Each property runs 256 cases by default; `PROPTEST_CASES=20000 cargo test -p booking-core
//! --test engine_properties --release` for a longer hunt.

// Every test target of a package gets all its dependencies; each uses only some of them.
#![allow(unused_crate_dependencies)]

mod batches;
mod decisions;
mod drivers;
mod invariants;
mod ledger;
mod model;
mod orders;
mod strategies;
mod world;

const TTL_SECS: i64 = 300;
const USERS: usize = 5;
