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

/// The recorder of the functions' metrics (the same `booking_app::metrics` the local server
/// serves at `/metrics`): CloudWatch's embedded metric format, one JSON document per label set
/// printed on stdout after each invocation, which CloudWatch Logs turns into metrics with no
/// agent and no API call. Namespace `METRICS_NAMESPACE` (default `seatbook`); every document
/// carries the function's name as the `function` dimension and the invocation's `requestId`.
pub fn metrics() -> &'static metrics_cloudwatch_embedded::Collector {
    static COLLECTOR: std::sync::OnceLock<&'static metrics_cloudwatch_embedded::Collector> =
        std::sync::OnceLock::new();
    COLLECTOR.get_or_init(|| {
        let namespace =
            std::env::var("METRICS_NAMESPACE").unwrap_or_else(|_| "seatbook".to_owned());
        let mut builder = metrics_cloudwatch_embedded::Builder::new()
            .cloudwatch_namespace(namespace)
            .with_lambda_request_id("requestId")
            .lambda_cold_start_metric(COLD_STARTS);
        if let Ok(function) = std::env::var("AWS_LAMBDA_FUNCTION_NAME") {
            builder = builder.with_dimension("function", function);
        }
        let collector = builder.init().expect("the process's one metrics recorder");
        booking_app::metrics::describe();
        collector
    })
}

/// Counted once per process, at its first invocation.
pub const COLD_STARTS: &str = "seatbook_cold_starts_total";

/// Answers invocations with `handler` until the runtime stops the process, flushing the
/// metrics after each one (see [`metrics`]).
pub async fn serve_events<A, R>(
    handler: impl lambda_runtime::Service<
        lambda_runtime::LambdaEvent<A>,
        Response = R,
        Error = lambda_runtime::Error,
        Future: Send,
    >,
) -> Result<(), lambda_runtime::Error>
where
    A: for<'de> serde::Deserialize<'de>,
    R: serde::Serialize,
{
    metrics_cloudwatch_embedded::lambda::service::run(metrics(), handler).await
}

/// Logs as JSON lines (CloudWatch parses them), filtered by `RUST_LOG` (default `info`), without
/// ANSI colours or timestamps (Lambda adds its own); each line carries its span's fields (the
/// HTTP request's `request_id`, `user_id`, `show_id`).
///
/// `RUST_LOG` holds a level and `target=level` pairs (`warn,booking_app=debug`): a
/// [`Targets`](tracing_subscriber::filter::Targets) filter, not the local server's `EnvFilter`,
/// whose span and field directives need a regular-expression engine that made up ~0.14 MB of
/// every function. A value that does not parse is ignored for the default.
pub fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let logs = tracing_subscriber::fmt::layer()
        .json()
        .with_ansi(false)
        .without_time()
        .with_current_span(true);
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(filter)
        .try_init();
}

/// The filter of [`init_tracing`] for a `RUST_LOG` value.
fn log_filter(directives: Option<&str>) -> tracing_subscriber::filter::Targets {
    directives
        .and_then(|directives| directives.parse().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
        })
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing::Level;

    #[test]
    fn rust_log_sets_a_default_level_and_levels_per_target() {
        let filter = log_filter(Some("warn,booking_app=debug"));
        assert!(filter.would_enable("booking_app::service", &Level::DEBUG));
        assert!(!filter.would_enable("booking_app::service", &Level::TRACE));
        assert!(filter.would_enable("sqlx::query", &Level::WARN));
        assert!(!filter.would_enable("sqlx::query", &Level::INFO));
    }

    #[test]
    fn without_rust_log_or_with_one_that_does_not_parse_the_level_is_info() {
        for directives in [None, Some("booking_app=loud")] {
            let filter = log_filter(directives);
            assert!(
                filter.would_enable("booking_lambda", &Level::INFO),
                "{directives:?}"
            );
            assert!(
                !filter.would_enable("booking_lambda", &Level::DEBUG),
                "{directives:?}"
            );
        }
    }
}
