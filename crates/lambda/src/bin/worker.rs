//! The worker function: SQS FIFO batches, partial failures reported the FIFO way.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use booking_lambda::{init_tracing, worker::Worker};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let worker = &*Box::leak(Box::new(Worker::from_env().await?));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(worker.handle(event.payload).await)
    }))
    .await
}
