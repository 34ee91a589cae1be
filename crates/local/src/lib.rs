//! The adapters that let one process run the whole system: what SQS FIFO, API Gateway's
//! WebSocket API and Redis are on AWS, in process memory.
//!
//! They live apart from the use cases (`booking-app`) because they are adapters like any other:
//! the Lambda functions never link them, and the use cases never name them. The local server
//! (`src/main.rs`) and the in-process test harness wire them in through the app's composition
//! root.
//!
//! - [`lanes`]: one FIFO lane per show, each a task that drains what waits and hands it to the
//!   batch processor; the durable queue is the request store, the lane only its order.
//! - [`hub`]: who is connected as which user, subscribed to which show; the local notifier.
//! - [`websocket`]: the `/ws` endpoint speaking the same protocol as API Gateway's WebSocket
//!   API, and `/@connections/{id}`, the gateway's management API for those sockets.
//! - [`memory_mirror`]: the seat mirror and queue counters without Redis.
//! - [`http`]: the HTTP transport with what `axum::serve` leaves out: header and body timeouts,
//!   load shedding, readable 413s, CORS.
//! - [`page`]: the seat-selector page at `/`, and the local user switcher's tokens.

// Unit tests are built with every dev-dependency of the package; each uses only some.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod http;
pub mod hub;
pub mod lanes;
pub mod memory_mirror;
pub mod metrics;
pub mod page;
pub mod websocket;

pub use hub::WsHub;
pub use lanes::{LaneOptions, LocalLanes};
pub use memory_mirror::MemoryMirror;
