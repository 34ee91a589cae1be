//! The expirer function: one sweep per scheduled invocation.

use booking_lambda::{expirer::Expirer, init_tracing};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let expirer = &*Box::leak(Box::new(Expirer::from_env().await?));
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<Value>| async move {
        let report = expirer.handle().await?;
        Ok::<Value, Error>(json!({
            "holdsExpired": report.holds_expired,
            "requestsExpired": report.requests_expired,
        }))
    }))
    .await
}
