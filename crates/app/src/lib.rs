//! The application layer: use cases over the core's ports, and the one HTTP router.
//!
//! Everything here is written against `booking_core::ports` traits, never a concrete database or
//! queue, so the same code serves the local all-in-one server (embedded SQLite, in-process lanes,
//! local WebSocket hub) and the Lambda functions (PostgreSQL, Redis, SQS, API Gateway).

// Unit tests are built with every dev-dependency of the package; each uses only some.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod admission;
pub mod app;
pub mod auth;
pub mod cancellation;
pub mod catalog;
pub mod config;
pub mod demo;
pub mod error;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod orders;
pub mod payments;
pub mod processor;
pub mod service;
pub mod show_locks;
pub mod sweeper;
pub mod waiting_rooms;

pub use app::{App, AppBuilder, Ports, QueueAdapter, Stores};
pub use auth::{Authenticator, Caller};
pub use config::{BookingConfig, ConfigError};
pub use error::ApiError;
pub use orders::OrderService;
pub use payments::MockPaymentProvider;
pub use processor::BatchProcessor;
pub use service::BookingService;
