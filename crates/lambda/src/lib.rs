//! The AWS Lambda functions, as libraries the thin binaries in `src/bin` run: each binary is one
//! call, `run(<function>::serve)`.
//!
//! Each function module has a `serve` (the function's runtime loop) over a handler that takes
//! the event Lambda delivers (`handle` in the worker, websocket and expirer; the router in the
//! api), so the same code runs under the Lambda runtime (and `cargo lambda watch`) and in plain
//! tests. Clients and pools
//! are built once per process in [`wiring`], at cold start, never per invocation.
//!
//! | binary | trigger | module |
//! |---|---|---|
//! | `api` | HTTP API (`lambda_http`) | [`api`] |
//! | `worker` | SQS FIFO batches (`ReportBatchItemFailures`) | [`worker`] |
//! | `websocket` | WebSocket API `$connect` / `$disconnect` / `$default` | [`websocket`] |
//! | `expirer` | EventBridge schedule | [`expirer`] |
//! | `authorizer` | WebSocket `$connect` REQUEST authorizer (`AUTH_MODE=authorizer`) | [`authorizer`] |

// Unit tests are built with every dev-dependency of the package; each uses only some.
#![cfg_attr(test, allow(unused_crate_dependencies))]

pub mod api;
pub mod authorizer;
pub mod config;
pub mod expirer;
pub mod websocket;
pub mod wiring;
pub mod worker;

/// Runs one function: logging as CloudWatch reads it, a Tokio runtime, then `serve` (which
/// builds the function's clients once, at cold start, and answers invocations until the Lambda
/// runtime stops the process).
pub fn run<F>(serve: impl FnOnce() -> F) -> Result<(), lambda_runtime::Error>
where
    F: std::future::Future<Output = Result<(), lambda_runtime::Error>>,
{
    init_tracing();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve())
}

/// Logs as JSON lines (CloudWatch parses them), filtered by `RUST_LOG` (default `info`), without
/// ANSI colours or timestamps (Lambda adds its own); each line carries its span's fields (the
/// HTTP request's `request_id`, `user_id`, `show_id`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .with_current_span(true)
        .try_init();
}
