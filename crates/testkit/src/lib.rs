//! The test kit: the contracts every adapter must meet, written once against the port traits,
//! and the real services the tests run on.
//!
//! A guarantee is only as good as the test that proves it, and a hand-written suite per adapter
//! drifts apart from the others; so each contract here is a set of `pub async fn` cases generic
//! over the port traits, and every adapter runs all of them:
//!
//! - [`stores`]: the store contract (catalog, requests, holds, orders and payments: no seat
//!   held twice, no accepted request lost, one decision per request, expiry by time, no money
//!   kept without a ticket), run against the embedded SQLite
//!   store and PostgreSQL through [`contract_tests!`], [`run_all`] and [`run_all_concurrently`],
//!   for any [`ContractStore`];
//! - [`mirror`]: the contract of the seat-lock mirror and the queue counters, run against Redis
//!   and process memory;
//! - [`rate`]: the contract of rate limiters (a burst, then refusals that cost nothing; one
//!   bucket shared by concurrent callers), run against Redis and process memory;
//! - [`support`]: the building blocks of the cases (fresh ids, shows, requests, grants, seat
//!   reads), public so that an adapter's own tests can use them too;
//! - [`workload`]: the deterministic hot-show workload the benchmarks and the concurrency test
//!   share.
//!
//! And the real services tests run on, never mocked; a test that needs one it cannot have fails,
//! saying how to get it, rather than silently skipping:
//!
//! - [`postgres`]: [`TestDatabase`](postgres::TestDatabase), a fresh, migrated PostgreSQL
//!   database per test, dropped with its guard;
//! - [`redis`]: [`PrivateRedis`](redis::PrivateRedis), a private `redis-server` on a free
//!   loopback port, for tests that flush, stop or restart Redis;
//! - [`tls`]: [`TestCa`](tls::TestCa), a throw-away CA and a server certificate it signs, for
//!   TLS servers the tests start themselves; [`tls_postgres`]: a private PostgreSQL cluster
//!   speaking TLS with such a certificate;
//! - [`aws`]: [`Moto`](aws::Moto), a private `moto_server` (SQS FIFO, DynamoDB, Secrets
//!   Manager), and the project's AWS tool venv, installed on first use by `scripts/aws-tools.sh`;
//! - [`idp`]: [`TestIdentityProvider`](idp::TestIdentityProvider), an OpenID Connect provider
//!   on loopback publishing RS256 and ES256 keys as a JWKS.
//!
//! And [`app`]: [`TestApp`](app::TestApp), the whole local server in the test's process, on a
//! free port, with a clock the test moves and lanes it can drain; [`faults`]: a test's hook in
//! front of a real hold store (a rival commit, an outage, a gate), and a recording notifier.

// Unit tests are built with every dev-dependency of the package; each uses only some.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod app;
pub mod aws;
pub mod faults;
pub mod idp;
pub mod mirror;
pub mod postgres;
pub mod rate;
pub mod redis;
pub mod stores;
pub mod support;
pub mod tls;
pub mod tls_postgres;
pub mod tools;
pub mod workload;

pub use stores::{ContractStore, EXPIRED_MESSAGE, case_names, run_all, run_all_concurrently};
