//! The AWS Lambda functions, as libraries the thin binaries in `src/bin` run.
//!
//! Each function module has a `handle` taking the event type Lambda delivers, so the same code
//! runs under the Lambda runtime (and `cargo lambda watch`) and in plain tests. Clients and pools
//! are built once per process in [`wiring`], at cold start, never per invocation.
//!
//! | binary | trigger | module |
//! |---|---|---|
//! | `api` | HTTP API (`lambda_http`) | [`api`] |
//! | `worker` | SQS FIFO batches (`ReportBatchItemFailures`) | [`worker`] |
//! | `websocket` | WebSocket API `$connect` / `$disconnect` / `$default` | [`websocket`] |
//! | `expirer` | EventBridge schedule | [`expirer`] |

pub mod api;
pub mod config;
pub mod expirer;
pub mod websocket;
pub mod wiring;
pub mod worker;

/// Logs as JSON lines (CloudWatch parses them), filtered by `RUST_LOG` (default `info`), without
/// ANSI colours or timestamps (Lambda adds its own).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .with_current_span(false)
        .try_init();
}
