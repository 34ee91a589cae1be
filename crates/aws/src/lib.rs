//! AWS adapters of the booking ports: what the Lambda functions run on.
//!
//! - [`SqsQueue`]: the per-show FIFO on SQS (`MessageGroupId` = show, so one show's requests are
//!   decided one batch at a time in arrival order; `MessageDeduplicationId` = request, so a
//!   retried enqueue is not a second message).
//! - [`DynamoRegistry`]: who is behind each API Gateway WebSocket connection, by user and by
//!   subscribed show, with a TTL so abandoned connections clean themselves up.
//! - [`GatewayNotifier`]: pushes results through the API Gateway management API
//!   (`POST /@connections/{id}`), forgetting connections that are gone.
//! - [`SqsDeadLetters`]: where the worker sets aside messages that can never be decided.
//!
//! Every client is built once per process from [`sdk_config`]; endpoints follow the standard
//! `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` variables, which is how tests point them at
//! moto and the local server.

// Unit tests are built with every dev-dependency of the package; each uses only some.
#![cfg_attr(test, allow(unused_crate_dependencies))]

mod dead_letters;
mod notifier;
mod queue;
mod registry;

pub use dead_letters::SqsDeadLetters;
pub use notifier::{Delivery, GatewayNotifier};
pub use queue::{QueueMessage, SqsQueue};
pub use registry::{DynamoRegistry, create_table as create_connections_table};

/// The shared SDK configuration: region, credentials and endpoint overrides from the
/// environment, as on Lambda.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// A management API client for the WebSocket API whose connections live at `endpoint`
/// (`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}` on AWS).
pub fn management_client(
    config: &aws_config::SdkConfig,
    endpoint: &str,
) -> aws_sdk_apigatewaymanagement::Client {
    let config = aws_sdk_apigatewaymanagement::config::Builder::from(config)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

/// An SDK error as text with its service code, for logs and `StoreError`s (the SDK's own
/// Display says only "service error").
pub(crate) fn describe<E, R>(e: &aws_sdk_sqs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("unknown"),
            service.message().unwrap_or("no message")
        ),
        None => format!("{}", aws_sdk_sqs::error::DisplayErrorContext(e)),
    }
}
